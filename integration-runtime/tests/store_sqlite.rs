//! The SQLite store through the public API, as an application uses it: as an
//! `Arc<dyn Store>`, sharing its database file for the outbox, and across
//! restarts and processes.

#![cfg(feature = "sqlite")]

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use integration_runtime::store::NewEvent;
use integration_runtime::{AppendOutcome, CallStatus, EventKind, ListQuery, NewCall, SqliteStore, Store};
use serde_json::json;

const LEASE: Duration = Duration::from_secs(30);

/// A fresh directory, deleted on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("integration-runtime-store-it-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    fn db(&self) -> PathBuf {
        self.0.join("app.db")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

async fn open(path: &Path) -> Arc<dyn Store> {
    Arc::new(SqliteStore::open(path).await.expect("open store"))
}

#[tokio::test]
async fn a_call_goes_through_its_whole_lifecycle() {
    let dir = TempDir::new();
    let store = open(&dir.db()).await;

    let id = store
        .create(NewCall::new("acme", "transcribe", json!({"url": "u"})).idempotency_key("job-1"))
        .await
        .unwrap()
        .id;

    // The worker starts the call and schedules a poll.
    let claimed = store.claim("worker-1", 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let key = NewEvent::key_for(EventKind::Initialized, id, claimed[0].attempts);
    store
        .append_event(id, NewEvent::initialized(key, "task-9"))
        .await
        .unwrap();
    store
        .reschedule(id, "worker-1", Some(chrono::Utc::now()))
        .await
        .unwrap();

    // The poll says "still processing"; then a webhook says "done".
    let polled = store.claim("worker-2", 10, LEASE).await.unwrap();
    assert_eq!((polled[0].id, polled[0].status), (id, CallStatus::Processing));
    let outcome = store
        .append_event_by_external_id("acme", "task-9", NewEvent::processing("poll:1"))
        .await
        .unwrap();
    assert!(matches!(
        outcome,
        AppendOutcome::Ignored {
            status: CallStatus::Processing,
            ..
        }
    ));
    store
        .reschedule(id, "worker-2", Some(chrono::Utc::now()))
        .await
        .unwrap();
    let done = store
        .append_event_by_external_id("acme", "task-9", NewEvent::completed("whk_1", json!({"text": "hi"})))
        .await
        .unwrap();
    assert!(done.is_applied());
    assert!(
        store.claim("worker-3", 10, LEASE).await.unwrap().is_empty(),
        "done: never claimed"
    );

    let stored = store.get_with_events(id).await.unwrap().unwrap();
    assert_eq!(stored.call.status, CallStatus::Completed);
    assert_eq!(stored.call.response_data, Some(json!({"text": "hi"})));
    assert_eq!(stored.call.attempts, 2);
    assert_eq!(stored.events.len(), 3);
    assert!(stored.call.completed_at.is_some());
}

#[tokio::test]
async fn the_outbox_commits_business_data_and_the_call_together() {
    let dir = TempDir::new();
    let store = SqliteStore::open(dir.db()).await.unwrap();
    // The application's own table, in the same file.
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY, item TEXT NOT NULL)")
        .execute(store.pool())
        .await
        .unwrap();

    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO orders (item) VALUES ('lost')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let lost = store
        .create_in_tx(&mut tx, NewCall::new("acme", "ship", json!({"item": "lost"})))
        .await
        .unwrap();
    tx.rollback().await.unwrap();

    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query("INSERT INTO orders (item) VALUES ('kept')")
        .execute(&mut *tx)
        .await
        .unwrap();
    let kept = store
        .create_in_tx(&mut tx, NewCall::new("acme", "ship", json!({"item": "kept"})))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    let items: Vec<String> = sqlx::query_scalar("SELECT item FROM orders")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(items, ["kept"]);
    assert_eq!(store.get(lost.id).await.unwrap(), None);
    let claimed = store.claim("w", 10, LEASE).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), [kept.id]);
}

#[tokio::test]
async fn reopening_an_existing_file_keeps_everything() {
    let dir = TempDir::new();
    // A file that already holds application data before the store first opens it.
    {
        let pool = sqlx::SqlitePool::connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.db())
                .create_if_missing(true),
        )
        .await
        .unwrap();
        sqlx::query("CREATE TABLE notes (body TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("INSERT INTO notes VALUES ('keep me')")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }

    let mut ids = Vec::new();
    {
        let store = SqliteStore::open(dir.db()).await.unwrap();
        for n in 0..3 {
            ids.push(
                store
                    .create(NewCall::new("acme", "send", json!({"n": n})))
                    .await
                    .unwrap()
                    .id,
            );
        }
        store
            .append_event(ids[0], NewEvent::completed("c", json!(1)))
            .await
            .unwrap();
        store.pool().close().await;
    }

    for _ in 0..2 {
        let store = SqliteStore::open(dir.db()).await.unwrap();
        let notes: Vec<String> = sqlx::query_scalar("SELECT body FROM notes")
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(notes, ["keep me"]);
        let page = store.list(&ListQuery::new("acme")).await.unwrap();
        assert_eq!(page.calls.iter().map(|c| c.id).collect::<Vec<_>>(), ids);
        assert_eq!(page.calls[0].status, CallStatus::Completed);
        assert_eq!(page.calls[0].response_data, Some(json!(1)));
        let counts = store.count_by_status(Some("acme")).await.unwrap();
        assert_eq!((counts.pending, counts.completed), (2, 1));
        store.pool().close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_on_one_file_behave_like_two_processes() {
    let dir = TempDir::new();
    let (a, b) = (open(&dir.db()).await, open(&dir.db()).await);
    for n in 0..30 {
        a.create(NewCall::new("acme", "send", json!({"n": n}))).await.unwrap();
    }
    let (from_a, from_b) = tokio::join!(
        async {
            let mut got = Vec::new();
            loop {
                let batch = a.claim("a", 4, LEASE).await.unwrap();
                if batch.is_empty() {
                    break got;
                }
                got.extend(batch.into_iter().map(|c| c.id));
            }
        },
        async {
            let mut got = Vec::new();
            loop {
                let batch = b.claim("b", 4, LEASE).await.unwrap();
                if batch.is_empty() {
                    break got;
                }
                got.extend(batch.into_iter().map(|c| c.id));
            }
        }
    );
    let mut all: Vec<_> = from_a.iter().chain(&from_b).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 30);
    assert_eq!(from_a.len() + from_b.len(), 30, "no call claimed by both");

    // An event recorded through one is a duplicate through the other.
    let id = from_a.first().or(from_b.first()).copied().unwrap();
    a.append_event(id, NewEvent::initialized("init", "ext-1"))
        .await
        .unwrap();
    let again = b
        .append_event(id, NewEvent::initialized("init", "ext-1"))
        .await
        .unwrap();
    assert!(again.is_duplicate());
    assert_eq!(b.find_by_external_id("acme", "ext-1").await.unwrap().unwrap().id, id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_to_a_locked_file_are_refused_within_the_write_wait_and_store_nothing() {
    use sqlx::{ConnectOptions, Connection};

    let dir = TempDir::new();
    let file = dir.0.join("calls.db");
    let store = open(&file).await;
    store.probe_write().await.expect("an unlocked file takes writes");
    let mut locker = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&file)
        .connect()
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE").execute(&mut locker).await.unwrap();

    // The create queues while the probe's batch waits for the lock: it
    // waits behind it, yet not longer than the store's 5 s write wait.
    let timed = |write: integration_runtime::BoxFuture<'static, Result<(), integration_runtime::StoreError>>| async move {
        let started = std::time::Instant::now();
        (write.await, started.elapsed())
    };
    let probing = Arc::clone(&store);
    let creating = Arc::clone(&store);
    let ((probe, probe_waited), (created, create_waited)) =
        tokio::join!(timed(Box::pin(async move { probing.probe_write().await })), async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let new = NewCall::new("acme", "send", json!({"n": 1}));
            timed(Box::pin(async move { creating.create(new).await.map(drop) })).await
        });
    let probe = probe.expect_err("no write while the file is locked");
    let created = created.expect_err("no create while the file is locked");
    assert!(probe.is_unavailable() && probe.is_backend(), "{probe}");
    assert!(created.is_unavailable(), "{created}");
    assert!(
        probe_waited < Duration::from_secs(8),
        "the probe waited {probe_waited:?}"
    );
    assert!(
        create_waited < Duration::from_secs(8),
        "the create waited {create_waited:?}"
    );
    // Reads still work: only a write probe tells.
    assert_eq!(store.count_by_status(None).await.unwrap().total(), 0, "nothing stored");

    sqlx::query("ROLLBACK").execute(&mut locker).await.unwrap();
    locker.close().await.unwrap();
    store.probe_write().await.expect("writes work again");
    store
        .create(NewCall::new("acme", "send", json!({"n": 1})))
        .await
        .expect("creates work again");
}
