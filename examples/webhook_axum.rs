//! An async API finished by webhooks, with the receiver mounted into your
//! own axum application next to your own routes.
//!
//! ```sh
//! cargo run --example webhook_axum
//! ```
//!
//! Look for: the app serves `/orders/{id}` (business code) and
//! `/webhooks/volc-tts` (the receiver) from one router; each speech task is
//! `processing` until its signed webhook arrives, then `completed`; a
//! duplicate delivery changes nothing.

#[path = "common/mod.rs"]
mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::routing::get;
use integration_runtime::{CallId, CallStatus, Integration, Runtime, Secret, SqliteStore};
use integration_testkit::{FakeProvider, Outcome, WebhookSender};
use serde_json::json;

integration_runtime::integration!("../specs/volc_tts.toml");

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// Your own handler: the status of an order's voice message.
async fn order_status(State(rt): State<Runtime>, Path(id): Path<String>) -> axum::Json<serde_json::Value> {
    let call = match id.parse::<CallId>() {
        Ok(id) => rt.get(id).await.ok().flatten(),
        Err(_) => None,
    };
    axum::Json(json!({ "status": call.map(|c| c.status.as_str()) }))
}

/// Returns the final statuses, the event count of the first call, and what
/// `/orders/{id}` answered at the end.
async fn run(db: &std::path::Path) -> anyhow::Result<(Vec<CallStatus>, usize, serde_json::Value)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app_url = format!("http://{}", listener.local_addr()?);
    let fake = FakeProvider::from_spec_file(format!("{}/volc_tts.toml", common::SPECS))?
        .outcomes(
            "synthesize",
            [Outcome::complete(
                json!({ "url": "https://cdn.example.com/a.mp3", "duration_ms": 700 }),
            )],
        )
        .polls_until_done(1000) // only webhooks finish calls here
        .webhooks_to(
            format!("{app_url}/webhooks/volc-tts"),
            WebhookSender::standard_webhooks(SECRET),
            Duration::from_millis(100),
        )
        .start()
        .await?;
    let tts: Arc<dyn Integration> = Arc::new(volc_tts::VolcTts::new(volc_tts::VolcTtsConfig {
        base_url: fake.url(),
        token: Secret::new("t"),
        webhook_secret: Secret::new(SECRET),
    })?);
    let rt = Runtime::builder()
        .store(SqliteStore::open(db).await?)
        .integration_arc(Arc::clone(&tts))
        .build()
        .await?;

    // Your application: your routes plus the receiver's.
    let receiver = rt
        .webhook_receiver()
        .integration_with_secrets(tts, &[Secret::new(SECRET)])?
        .router();
    let app = axum::Router::new()
        .route("/orders/{id}", get(order_status))
        .with_state(rt.clone())
        .merge(receiver);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let mut ids = Vec::new();
    for text in ["Your order has shipped", "Thank you for your order"] {
        ids.push(
            rt.create(volc_tts::Synthesis {
                text: text.into(),
                voice: "en_female_1".into(),
                speed: None,
                format: volc_tts::SynthesisFormat::Mp3,
            })
            .await?,
        );
    }
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    let calls = common::wait_terminal(&rt, &ids, Duration::from_secs(20)).await?;
    common::print_calls(&calls);

    // The provider delivers the last webhook again: stored once, nothing changes.
    let replay = json!({ "task_id": calls[0].external_id, "state": "done", "audio_url": "https://cdn.example.com/a.mp3", "duration": 700 });
    let status = WebhookSender::standard_webhooks(SECRET)
        .send(&format!("{app_url}/webhooks/volc-tts"), &replay)
        .await?;
    anyhow::ensure!(status < 300, "replay answered {status}");
    let events = rt.get_with_events(ids[0]).await?.map_or(0, |c| c.events.len());

    let answer: serde_json::Value = reqwest_get(&format!("{app_url}/orders/{}", ids[0])).await?;
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await??;
    Ok((calls.iter().map(|c| c.status).collect(), events, answer))
}

async fn reqwest_get(url: &str) -> anyhow::Result<serde_json::Value> {
    Ok(serde_json::from_str(&reqwest::get(url).await?.text().await?)?)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (statuses, events, answer) = run(&common::scratch_db("webhook_axum")).await?;
    println!("statuses {statuses:?}; first call has {events} events; GET /orders/<id> -> {answer}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn webhooks_complete_the_calls_and_a_replay_changes_nothing() {
        let (statuses, events, answer) = run(&common::scratch_db("webhook_axum_test")).await.unwrap();
        assert_eq!(statuses, vec![CallStatus::Completed; 2]);
        assert_eq!(events, 2, "initialized + completed; the replay is a duplicate");
        assert_eq!(answer, json!({ "status": "completed" }));
    }
}
