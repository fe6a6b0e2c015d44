//! Retention on a running runtime: the background task started by `run`
//! deletes the finished calls past their age, and keeps the rest; a one-off
//! `Runtime::prune` does the same on demand. On SQLite and on PostgreSQL
//! (skipped, saying so, when `INTEGRATION_TEST_DATABASE_URL` is unset).

// The tests need a SQL store; without one, their helpers stay unused.
#![cfg_attr(not(any(feature = "sqlite", feature = "postgres")), allow(dead_code, unused_imports))]

use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_runtime::store::{NewEvent, NotificationOutcome};
use integration_runtime::{CallId, CallStatus, Metrics, NewCall, Retention, Runtime, Store};
use serde_json::json;

mod runtime_support;

integration_runtime::integration!("tests/specs/engine_sync.toml");

const LIMIT: Duration = Duration::from_secs(20);
/// The age past which the runtime below deletes finished calls.
const AGE: Duration = Duration::from_secs(2);

/// Stores a call of `EngineSync` that ended with `end`, its hooks delivered.
async fn finished(store: &dyn Store, end: NewEvent) -> CallId {
    let id = store
        .create(NewCall::new("EngineSync", "send", json!({"text": "x"})))
        .await
        .unwrap()
        .id;
    store.append_event(id, end).await.unwrap();
    store
        .finish_notification(id, NotificationOutcome::Delivered)
        .await
        .unwrap();
    id
}

async fn exists(store: &dyn Store, id: CallId) -> bool {
    store.get(id).await.unwrap().is_some()
}

/// Three calls finished more than [`AGE`] ago, two just now, one pending
/// (due next year, so no worker runs it): the background task deletes the
/// three old ones at once and keeps the others; a one-off prune with no
/// age deletes the two others, and never the pending call.
async fn prunes_old_finished_calls_and_keeps_the_rest(store: Arc<dyn Store>) {
    let old = [
        finished(&*store, NewEvent::completed("terminal", json!({"echoed": "a"}))).await,
        finished(&*store, NewEvent::completed("terminal", json!({"echoed": "b"}))).await,
        finished(&*store, NewEvent::failed("terminal", "no")).await,
    ];
    let next_year = chrono::Utc::now() + chrono::Duration::days(365);
    let pending = store
        .create(NewCall::new("EngineSync", "send", json!({"text": "later"})).run_at(next_year))
        .await
        .unwrap()
        .id;
    tokio::time::sleep(AGE + Duration::from_millis(200)).await;
    let new = [
        finished(&*store, NewEvent::completed("terminal", json!({"echoed": "c"}))).await,
        finished(&*store, NewEvent::failed("terminal", "no")).await,
    ];

    let metrics = Metrics::new();
    let integration = engine_sync::EngineSync::new(engine_sync::EngineSyncConfig {
        // Never sent to: no call is due.
        base_url: "http://127.0.0.1:9".into(),
    })
    .unwrap();
    let rt = Runtime::builder()
        .store(store.clone())
        .integration(integration)
        .metrics(metrics.clone())
        .poll_idle(Duration::from_millis(20))
        // One pass, when `run` starts: the new calls cannot age into a later one.
        .retention(
            Retention::new()
                .completed_after(AGE)
                .failed_after(AGE)
                .batch(2)
                .every(Duration::from_secs(3600)),
        )
        .build()
        .await
        .unwrap();
    let worker = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.run().await })
    };
    let started = Instant::now();
    for id in old {
        while exists(&*store, id).await {
            assert!(started.elapsed() < LIMIT, "call {id} is past its age and still there");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    for id in new.into_iter().chain([pending]) {
        assert!(exists(&*store, id).await, "call {id} is kept");
    }
    let counts = store.count_by_status(None).await.unwrap();
    assert_eq!((counts.completed, counts.failed, counts.pending), (1, 1, 1));
    let rendered = metrics.exporter(store.clone()).render().await;
    assert!(
        rendered.contains("integration_calls_pruned_total{status=\"completed\"} 2\n")
            && rendered.contains("integration_calls_pruned_total{status=\"failed\"} 1\n"),
        "{rendered}"
    );

    let everything = Retention::new()
        .completed_after(Duration::ZERO)
        .failed_after(Duration::ZERO);
    assert_eq!(rt.prune(&everything).await.unwrap(), 2, "the two newer calls");
    assert_eq!(rt.prune(&everything).await.unwrap(), 0, "nothing left to prune");
    let left = store.get(pending).await.unwrap().expect("the pending call is kept");
    assert_eq!(left.status, CallStatus::Pending);
    assert_eq!(store.count_by_status(None).await.unwrap().total(), 1);

    rt.shutdown(Duration::from_secs(5)).await;
    tokio::time::timeout(LIMIT, worker)
        .await
        .expect("run ends")
        .unwrap()
        .unwrap();
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_sqlite() {
    let dir = std::env::temp_dir().join(format!("retention-it-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let store = integration_runtime::SqliteStore::open(dir.join("calls.db"))
        .await
        .unwrap();
    prunes_old_finished_calls_and_keeps_the_rest(Arc::new(store)).await;
    std::fs::remove_dir_all(&dir).ok();
}

#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_on_postgres() {
    let Some((store, schema)) = runtime_support::postgres_store("retention").await else {
        return;
    };
    let pool = store.pool().clone();
    prunes_old_finished_calls_and_keeps_the_rest(Arc::new(store)).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&pool)
        .await
        .unwrap();
}
