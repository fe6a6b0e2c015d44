//! OAuth2 client credentials: the runtime gets a token from the token
//! endpoint, caches it, and sends it with every call.
//!
//! ```sh
//! cargo run --example oauth2
//! ```
//!
//! Look for: five report calls, one token request; every call carries
//! `Authorization: Bearer <the issued token>`; the client secret never shows
//! in the output (the config's `Debug` prints `***`).

#[path = "common/mod.rs"]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use integration_runtime::{CallStatus, Runtime, Secret, SqliteStore};
use integration_testkit::{FakeProvider, Outcome};
use serde_json::json;

integration_runtime::integration!("../specs/job_runner.toml");

const TOKEN: &str = "at-7f3c9e";

/// What the run observed.
struct Observed {
    statuses: Vec<CallStatus>,
    token_requests: usize,
    authorizations: Vec<Option<String>>,
    config_debug: String,
}

async fn run(db: &std::path::Path) -> anyhow::Result<Observed> {
    // The authorization server: counts token requests, issues one token.
    let token_requests = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&token_requests);
    let auth_server = axum::Router::new().route(
        "/oauth/token",
        post(move |body: String| {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                assert!(body.contains("grant_type=client_credentials"), "{body}");
                axum::Json(json!({ "access_token": TOKEN, "token_type": "Bearer", "expires_in": 3600 }))
            }
        }),
    );
    let auth_url = common::serve(auth_server).await?;

    let fake = FakeProvider::from_spec_file(format!("{}/job_runner.toml", common::SPECS))?
        .outcomes(
            "render",
            [Outcome::complete(
                json!({ "url": "https://files.example.com/r.pdf", "pages": 12 }),
            )],
        )
        .start()
        .await?;
    let config = job_runner::JobRunnerConfig {
        base_url: fake.url(),
        token_url: format!("{auth_url}/oauth/token"),
        client_id: Secret::new("reporting-service"),
        client_secret: Secret::new("cs-super-secret-value"),
    };
    let config_debug = format!("{config:?}");
    let rt = Runtime::builder()
        .store(SqliteStore::open(db).await?)
        .integration(job_runner::JobRunner::new(config)?)
        .concurrency(5)
        .build()
        .await?;
    let mut ids = Vec::new();
    for month in ["2026-06", "2026-07", "2026-08", "2026-09", "2026-10"] {
        let job = job_runner::ReportJob {
            report: job_runner::ReportJobReport::Sales,
            month: month.into(),
            format: job_runner::ReportJobFormat::Pdf,
        };
        ids.push(rt.create(job).await?);
    }
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    let calls = common::wait_terminal(&rt, &ids, Duration::from_secs(20)).await?;
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;
    common::print_calls(&calls);
    Ok(Observed {
        statuses: calls.iter().map(|c| c.status).collect(),
        token_requests: token_requests.load(Ordering::SeqCst),
        authorizations: fake
            .requests_to("render")
            .iter()
            .map(|r| r.header("authorization").map(str::to_owned))
            .collect(),
        config_debug,
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let observed = run(&common::scratch_db("oauth2")).await?;
    println!(
        "{} calls, {} token request(s); config: {}",
        observed.statuses.len(),
        observed.token_requests,
        observed.config_debug
    );
    println!(
        "statuses {:?}; Authorization headers seen {:?}",
        observed.statuses, observed.authorizations
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_token_serves_every_call_and_the_secret_stays_hidden() {
        let observed = run(&common::scratch_db("oauth2_test")).await.unwrap();
        assert_eq!(observed.statuses, vec![CallStatus::Completed; 5]);
        assert_eq!(observed.token_requests, 1);
        assert_eq!(observed.authorizations, vec![Some(format!("Bearer {TOKEN}")); 5]);
        assert!(
            !observed.config_debug.contains("cs-super-secret-value"),
            "{}",
            observed.config_debug
        );
    }
}
