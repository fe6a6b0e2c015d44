//! An async API finished by polling: the runtime asks the provider's status
//! endpoint on the spec's schedule (first after `interval_ms`, growing by
//! `backoff`, capped) until the call is terminal or the deadline passes.
//!
//! ```sh
//! cargo run --example async_polling
//! ```
//!
//! The runtime here runs the spec's schedule 100 times faster
//! (`polling_time_scale(0.01)`), the test kit's way to test polling without
//! waiting. Look for: each task is `processing` for three status queries,
//! then `completed` with its audio, or `failed` with the provider's message.

#[path = "common/mod.rs"]
mod common;

use std::time::Duration;

use integration_runtime::{CallStatus, EventKind, Runtime, Secret, SqliteStore};
use integration_testkit::{FakeProvider, Outcome, RecordedRequest};
use serde_json::json;

integration_runtime::integration!("../specs/volc_tts.toml");

/// Returns each call's final status and event kinds, and the number of status queries.
async fn run(db: &std::path::Path) -> anyhow::Result<(Vec<(CallStatus, Vec<EventKind>)>, usize)> {
    let fake = FakeProvider::from_spec_file(format!("{}/volc_tts.toml", common::SPECS))?
        .when(
            "synthesize",
            |r: &RecordedRequest| r.json().is_some_and(|b| b["input"]["voice_type"] == "en_robot_9"),
            Outcome::fail("voice `en_robot_9` is not available"),
        )
        .outcomes(
            "synthesize",
            [Outcome::complete(
                json!({ "url": "https://cdn.example.com/a.mp3", "duration_ms": 1200 }),
            )],
        )
        .polls_until_done(3)
        .start()
        .await?;
    let tts = volc_tts::VolcTts::new(volc_tts::VolcTtsConfig {
        base_url: fake.url(),
        token: Secret::new("t"),
        webhook_secret: Secret::new("whsec_dW51c2Vk"),
    })?;
    let rt = Runtime::builder()
        .store(SqliteStore::open(db).await?)
        .integration(tts)
        .polling_time_scale(0.01)
        .poll_idle(Duration::from_millis(10))
        .build()
        .await?;
    let mut ids = Vec::new();
    for voice in ["en_female_1", "en_robot_9"] {
        ids.push(
            rt.create(volc_tts::Synthesis {
                text: "Your table is ready".into(),
                voice: voice.into(),
                speed: Some(1.1),
                format: volc_tts::SynthesisFormat::Wav,
            })
            .await?,
        );
    }
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    let calls = common::wait_terminal(&rt, &ids, Duration::from_secs(30)).await?;
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;
    common::print_calls(&calls);
    let mut out = Vec::new();
    for id in ids {
        let found = rt
            .get_with_events(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("call {id} is stored"))?;
        out.push((found.call.status, found.events.iter().map(|e| e.kind).collect()));
    }
    Ok((out, fake.requests_to("query").len()))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (calls, polls) = run(&common::scratch_db("async_polling")).await?;
    for (status, events) in &calls {
        println!(
            "{status}: {}",
            events.iter().map(ToString::to_string).collect::<Vec<_>>().join(" -> ")
        );
    }
    println!("{polls} status queries in all");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn polling_drives_each_call_to_its_end() {
        let (calls, polls) = run(&common::scratch_db("async_polling_test")).await.unwrap();
        use EventKind::{Completed, Failed, Initialized, Processing};
        assert_eq!(
            calls[0],
            (CallStatus::Completed, vec![Initialized, Processing, Completed])
        );
        assert_eq!(calls[1], (CallStatus::Failed, vec![Initialized, Processing, Failed]));
        // Three `processing` answers and one final answer per call.
        assert_eq!(polls, 8);
    }
}
