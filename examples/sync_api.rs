//! A synchronous API through the runtime: the provider's answer finishes the
//! call, and a completion hook tells business code.
//!
//! ```sh
//! cargo run --example sync_api
//! ```
//!
//! Look for: each call is recorded as `initialized -> processing -> completed`
//! at once; the hook prints every translation exactly once.

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration_runtime::{Runtime, Secret, SqliteStore};
use integration_testkit::{FakeProvider, Outcome};
use serde_json::json;

integration_runtime::integration!("../specs/translate.toml");

/// Translates three texts; returns the final calls and how often the hook ran.
async fn run(db: &std::path::Path) -> anyhow::Result<(Vec<integration_runtime::CallRecord>, usize)> {
    let fake = FakeProvider::from_spec_file(format!("{}/translate.toml", common::SPECS))?
        .outcomes(
            "translate",
            [Outcome::complete(
                json!({ "text": "Hello", "detected_lang": "de", "characters": 5 }),
            )],
        )
        .start()
        .await?;
    let translate = translate::Translate::new(translate::TranslateConfig {
        base_url: fake.url(),
        api_key: Secret::new("key"),
    })?;
    let rt = Runtime::builder()
        .store(SqliteStore::open(db).await?)
        .integration(translate)
        .build()
        .await?;

    let hooks = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hooks);
    rt.on_completed(move |call: translate::TranslateCall| {
        let seen = Arc::clone(&seen);
        async move {
            if let Some(translate::TranslateResponse::Translate(result)) = &call.response_data {
                println!("hook: call {} translated to {:?}", call.id, result.text);
            }
            seen.fetch_add(1, Ordering::SeqCst);
        }
    });

    let mut ids = Vec::new();
    for text in ["Hallo", "Guten Tag", "Servus"] {
        let request = translate::Translation {
            text: text.into(),
            source_lang: Some("de".into()),
            target_lang: "en".into(),
            formality: translate::TranslationFormality::Default,
            glossary_id: None,
        };
        ids.push(rt.create(request).await?);
    }
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    let calls = common::wait_terminal(&rt, &ids, Duration::from_secs(20)).await?;
    // Hooks run after the status change is stored; give the dispatcher a moment.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while hooks.load(Ordering::SeqCst) < ids.len() && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;
    Ok((calls, hooks.load(Ordering::SeqCst)))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let db = common::scratch_db("sync_api").keep();
    let (calls, hooks) = run(&db).await?;
    common::print_calls(&calls);
    println!("{hooks} completion hooks ran; state in {}", db.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_call_completes_and_the_hook_runs_once_each() {
        let db = common::scratch_db("sync_api_test");
        let (calls, hooks) = run(&db).await.unwrap();
        use integration_runtime::CallStatus;
        assert!(calls.iter().all(|c| c.status == CallStatus::Completed), "{calls:?}");
        assert!(calls
            .iter()
            .all(|c| c.response_data == Some(json!({ "text": "Hello", "detected_lang": "de", "characters": 5 }))));
        assert_eq!(hooks, 3);
    }
}
