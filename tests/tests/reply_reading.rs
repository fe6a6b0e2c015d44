//! What the runtime reads from a provider's first reply: an async call the
//! provider finished within the request keeps its result, and a sync reply
//! without its declared external id fails the call instead of getting a
//! made-up id unless the spec says the id may be missing.

use std::time::{Duration, Instant};

use axum::routing::{get, post};
use axum::{Json, Router};
use integration_runtime::{CallId, CallRecord, CallStatus, Runtime, SqliteStore};
use serde_json::{json, Value};

integration_runtime::integration!("tests/specs/reply_reading.toml");

use reply_reading::{Check, Job, Memo, Note, ReplyReading, ReplyReadingConfig};

/// A provider that finishes jobs within the create request and answers
/// notes without an id.
async fn provider() -> String {
    let done = json!({ "job_id": "j-1", "state": "done", "output": { "url": "https://cdn/j-1.mp3" } });
    let app = Router::new()
        .route("/jobs", post(move || async move { Json(done) }))
        // Polling would never see the job finish: only the first reply can.
        .route("/jobs/{id}", get(|| async { Json(json!({ "state": "running" })) }))
        .route("/notes", post(|| async { Json(json!({ "url": "https://cdn/note" })) }))
        // A refusal in a 200, without an id.
        .route(
            "/checks",
            post(|| async { Json(json!({ "outcome": "rejected", "reason": "text too short" })) }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

/// A running runtime on a fresh SQLite file, against the provider at `base_url`.
async fn runtime(name: &str, base_url: String) -> Runtime {
    let dir = std::env::temp_dir().join(format!("reply-reading-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("calls.db");
    std::fs::remove_file(&db).ok();
    let rt = Runtime::builder()
        .store(SqliteStore::open(&db).await.unwrap())
        .integration(ReplyReading::new(ReplyReadingConfig { base_url }).unwrap())
        .build()
        .await
        .unwrap();
    let worker = rt.clone();
    tokio::spawn(async move { worker.run().await });
    rt
}

/// The call once it is terminal (bounded generously for a loaded machine).
async fn terminal(rt: &Runtime, id: CallId) -> CallRecord {
    let started = Instant::now();
    loop {
        let call = rt.get(id).await.unwrap().unwrap();
        if call.is_terminal() {
            return call;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "call still {:?}",
            call.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_async_call_finished_in_its_first_reply_keeps_its_result() {
    let rt = runtime("async", provider().await).await;
    let id = rt.create(Job { text: "hi".into() }).await.unwrap();
    let call = terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Completed, "{:?}", call.error);
    assert_eq!(call.external_id.as_deref(), Some("j-1"));
    assert_eq!(call.response_data, Some(json!({ "url": "https://cdn/j-1.mp3" })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_reply_without_its_declared_id_fails_the_call_naming_the_path() {
    let rt = runtime("sync-missing-id", provider().await).await;
    let id = rt.create(Note { text: "hi".into() }).await.unwrap();
    let call = terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Failed, "{:?}", call.response_data);
    let error = call.error.unwrap_or_default();
    assert!(error.contains("`$.id`"), "{error}");
    assert_eq!(call.response_data, None::<Value>);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_reply_without_an_optional_id_completes_with_a_generated_id() {
    let rt = runtime("sync-optional-id", provider().await).await;
    let id = rt.create(Memo { text: "hi".into() }).await.unwrap();
    let call = terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Completed, "{:?}", call.error);
    assert_eq!(
        call.external_id,
        Some(id.to_string()),
        "the generated id is the call id"
    );
    assert_eq!(call.response_data, Some(json!({ "url": "https://cdn/note" })));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sync_reply_that_says_failed_keeps_the_providers_error_without_an_id() {
    let rt = runtime("sync-failed-no-id", provider().await).await;
    let id = rt.create(Check { text: "hi".into() }).await.unwrap();
    let call = terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Failed);
    assert_eq!(call.error.as_deref(), Some("text too short"));
}
