//! A store that cannot write is said so, and loses nothing: a real SQLite
//! file locked from a second connection (`BEGIN EXCLUSIVE`, as another
//! process would), a loopback provider counting requests.
//!
//! While the lock is held, `/health` reports the store down, and a create
//! fails within the store's write wait instead of queueing behind the lock.
//! The worker whose result write failed retries it, so once the lock is
//! released the result lands and the provider saw one request, not two.

#![cfg(feature = "sqlite")]

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_runtime::ops::{Health, HealthStatus};
use integration_runtime::{CallStatus, Runtime, SqliteStore};
use serde_json::json;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

integration_runtime::integration!("tests/specs/engine_sync.toml");

const LIMIT: Duration = Duration::from_secs(60);

/// Longer than two busy timeouts the store once had (10 s each: the create's
/// batch, then the worker's): a write that merely waited for the lock would
/// go through once it is released.
const LOCK_HELD: Duration = Duration::from_secs(21);

/// A fresh directory, deleted on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("store-faults-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// Answers every `POST /send` after a delay, counting them.
#[derive(Clone, Default)]
struct Counted(Arc<AtomicUsize>);

impl Respond for Counted {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        self.0.fetch_add(1, Ordering::SeqCst);
        ResponseTemplate::new(200)
            .set_body_json(json!({"echoed": "ok"}))
            .set_delay(Duration::from_millis(500))
    }
}

async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < LIMIT, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_is_reported_refuses_creates_fast_and_keeps_the_workers_result() {
    let dir = TempDir::new();
    let file = dir.0.join("calls.db");
    let store = SqliteStore::open(&file).await.unwrap();
    let requests = Counted::default();
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(requests.clone())
        .mount(&server)
        .await;
    let integration = engine_sync::EngineSync::new(engine_sync::EngineSyncConfig { base_url: server.uri() }).unwrap();
    let rt = Runtime::builder()
        .store(store)
        .integration(integration)
        .poll_idle(Duration::from_millis(20))
        .lease(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let health = Health::new(rt.store().clone());
    let (status, report) = health.report().await;
    assert_eq!(status, HealthStatus::Up, "{report}");

    let worker = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.run().await.unwrap() })
    };
    let id = rt.create(engine_sync::Message { text: "hello".into() }).await.unwrap();
    // The request is at the provider, which answers in 500 ms: lock the
    // database before the worker can record the answer.
    wait_until("the request reaches the provider", || {
        requests.0.load(Ordering::SeqCst) == 1
    })
    .await;
    let mut locker = SqliteConnectOptions::new().filename(&file).connect().await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut locker).await.unwrap();
    let locked_at = Instant::now();

    let (status, report) = health.report().await;
    assert_eq!(status, HealthStatus::Down, "writes fail, yet: {report}");

    let started = Instant::now();
    let refused = rt
        .create(engine_sync::Message { text: "blocked".into() })
        .await
        .expect_err("a create cannot be stored while the database is locked");
    let waited = started.elapsed();
    assert!(waited < Duration::from_secs(8), "the create waited {waited:?}");
    let store_error = refused.store_error().expect("a store error");
    assert!(store_error.is_unavailable(), "{refused}");

    tokio::time::sleep(LOCK_HELD.saturating_sub(locked_at.elapsed())).await;
    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    locker.close().await.unwrap();

    let started = Instant::now();
    let call = loop {
        let call = rt.get(id).await.unwrap().expect("the call exists");
        if call.is_terminal() && call.lease_owner.is_none() {
            break call;
        }
        assert!(started.elapsed() < LIMIT, "the result never landed: {call:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(call.status, CallStatus::Completed, "{call:?}");
    assert_eq!(call.response_data, Some(json!({"echoed": "ok"})));
    assert_eq!(requests.0.load(Ordering::SeqCst), 1, "the request was sent again");
    let (status, report) = health.report().await;
    assert_eq!(status, HealthStatus::Up, "{report}");
    assert_eq!(
        rt.count_by_status(None).await.unwrap().total(),
        1,
        "the refused create stored nothing"
    );

    tokio::time::timeout(LIMIT, rt.shutdown(Duration::from_secs(2)))
        .await
        .unwrap();
    worker.await.unwrap();
}
