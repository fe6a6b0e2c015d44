//! The PostgreSQL store with several workers: three runtimes (as three
//! processes would) share one database and one queue of calls.
//!
//! ```sh
//! INTEGRATION_TEST_DATABASE_URL=postgres://postgres@127.0.0.1:5432/test cargo run --example postgres_workers
//! ```
//!
//! Without a URL it prints why it skips. Look for: 60 calls, every one
//! executed exactly once (the provider saw 60 requests for 60 distinct texts)
//! though three workers claimed from the same table, each with its own
//! connection pool (`FOR UPDATE SKIP LOCKED` with leases).

#[path = "common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::time::Duration;

use integration_runtime::{CallStatus, PostgresOptions, PostgresStore, Runtime, Secret};
use integration_testkit::FakeProvider;

integration_runtime::integration!("../specs/translate.toml");

const CALLS: usize = 60;

/// Returns the final statuses and how many requests the provider received.
async fn run(url: &str, schema: &str) -> anyhow::Result<(Vec<CallStatus>, usize)> {
    let fake = FakeProvider::from_spec_file(format!("{}/translate.toml", common::SPECS))?
        .start()
        .await?;
    let connect = || async {
        let options = PostgresOptions::default().schema(schema);
        anyhow::Ok(PostgresStore::connect_with(url.parse()?, options).await?)
    };
    let mut runtimes = Vec::new();
    for worker in 0..3 {
        let translate = translate::Translate::new(translate::TranslateConfig {
            base_url: fake.url(),
            api_key: Secret::new("k"),
        })?;
        let rt = Runtime::builder()
            .store(connect().await?)
            .integration(translate)
            .worker_id(format!("worker-{worker}"))
            .concurrency(4)
            .build()
            .await?;
        runtimes.push(rt);
    }
    let mut ids = Vec::new();
    for n in 0..CALLS {
        let request = translate::Translation {
            text: format!("Nachricht {n}"),
            source_lang: Some("de".into()),
            target_lang: "en".into(),
            formality: translate::TranslationFormality::Default,
            glossary_id: None,
        };
        ids.push(runtimes[n % 3].create(request).await?);
    }
    let workers: Vec<_> = runtimes
        .iter()
        .map(|rt| {
            let rt = rt.clone();
            tokio::spawn(async move { rt.run().await })
        })
        .collect();
    let calls = common::wait_terminal(&runtimes[0], &ids, Duration::from_secs(60)).await?;
    for rt in &runtimes {
        rt.shutdown(Duration::from_secs(5)).await;
    }
    for worker in workers {
        worker.await??;
    }
    let texts: HashSet<String> = fake
        .requests_to("translate")
        .iter()
        .filter_map(|r| r.json())
        .map(|body| body["text"].to_string())
        .collect();
    anyhow::ensure!(texts.len() == CALLS, "every call reached the provider");
    Ok((
        calls.iter().map(|c| c.status).collect(),
        fake.requests_to("translate").len(),
    ))
}

fn database_url() -> Option<String> {
    std::env::var("INTEGRATION_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Some(url) = database_url() else {
        println!("skipping: set INTEGRATION_TEST_DATABASE_URL (e.g. postgres://postgres@127.0.0.1:5432/test) to run this example");
        return Ok(());
    };
    let schema = format!("example_workers_{}", std::process::id());
    let (statuses, requests) = run(&url, &schema).await?;
    let completed = statuses.iter().filter(|s| **s == CallStatus::Completed).count();
    println!(
        "{completed}/{CALLS} calls completed by 3 workers; the provider saw {requests} requests (schema {schema})"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn three_workers_execute_every_call_exactly_once() {
        let Some(url) = database_url() else {
            eprintln!("skipping: INTEGRATION_TEST_DATABASE_URL is not set");
            return;
        };
        let schema = format!("example_workers_test_{}", std::process::id());
        let (statuses, requests) = run(&url, &schema).await.unwrap();
        assert_eq!(statuses, vec![CallStatus::Completed; CALLS]);
        assert_eq!(requests, CALLS, "no call was sent twice");
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
            .execute(&pool)
            .await
            .unwrap();
    }
}
