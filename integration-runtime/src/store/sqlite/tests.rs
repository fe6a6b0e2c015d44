use std::sync::Arc;

use serde_json::json;

use super::*;
use std::path::PathBuf;

use crate::testing::Fixture;

/// A fresh, empty directory under the system's temporary directory.
pub(super) fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("integration-runtime-store-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}

/// Removes its directory when dropped: a fixture's guard.
struct RemoveDir(PathBuf);

impl Drop for RemoveDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

async fn fixture() -> Fixture {
    let dir = temp_dir();
    let store = SqliteStore::open(dir.join("store.db")).await.expect("open store");
    Fixture::new(store).with_guard(RemoveDir(dir))
}

crate::store_conformance_tests!(fixture);

async fn open_in(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join("store.db")).await.expect("open store")
}

#[tokio::test]
async fn outbox_rolled_back_leaves_no_call_committed_is_claimable() {
    let dir = temp_dir();
    let store = open_in(&dir).await;

    let mut tx = store.pool().begin().await.unwrap();
    let rolled_back = store
        .create_in_tx(&mut tx, NewCall::new("acme", "send", json!({"n": 1})))
        .await
        .unwrap();
    tx.rollback().await.unwrap();
    assert_eq!(store.get(rolled_back.id).await.unwrap(), None);
    assert!(store.claim("w", 10, Duration::from_secs(30)).await.unwrap().is_empty());

    let mut tx = store.pool().begin().await.unwrap();
    let committed = store
        .create_in_tx(&mut tx, NewCall::new("acme", "send", json!({"n": 2})))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    let claimed = store.claim("w", 10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claimed.iter().map(|c| c.id).collect::<Vec<_>>(), vec![committed.id]);

    // A dropped (neither committed nor rolled back) transaction also leaves nothing.
    let dropped = {
        let mut tx = store.pool().begin().await.unwrap();
        store
            .create_in_tx(&mut tx, NewCall::new("acme", "send", json!({})))
            .await
            .unwrap()
    };
    assert_eq!(store.get(dropped.id).await.unwrap(), None);
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn outbox_sees_idempotency_keys_of_committed_calls() {
    let dir = temp_dir();
    let store = open_in(&dir).await;
    let first = store
        .create(NewCall::new("acme", "send", json!({})).idempotency_key("k"))
        .await
        .unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    let again = store
        .create_in_tx(&mut tx, NewCall::new("acme", "send", json!({})).idempotency_key("k"))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(
        again,
        Created {
            id: first.id,
            created: false
        }
    );
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

/// Runs `ops` (futures queued in order by one `join!`) in one writer
/// batch: a write queued first waits for the file's write lock, held by
/// another connection, so everything queued meanwhile goes together.
async fn in_one_batch<T: Send + 'static>(
    store: &Arc<SqliteStore>,
    ops: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    let blocker = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    let stuck = tokio::spawn({
        let store = store.clone();
        async move { store.create(NewCall::new("acme", "send", json!({"stuck": true}))).await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    let ops = tokio::spawn(ops);
    tokio::time::sleep(Duration::from_millis(50)).await;
    blocker.rollback().await.unwrap();
    stuck.await.unwrap().unwrap();
    ops.await.unwrap()
}

async fn claimed(store: &SqliteStore, n: u32) -> Vec<CallId> {
    let mut ids = Vec::new();
    for i in 0..n {
        ids.push(
            store
                .create(NewCall::new("acme", "send", json!({"i": i})))
                .await
                .unwrap()
                .id,
        );
    }
    let claimed = store.claim("w", n, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claimed.len(), n as usize);
    ids
}

#[tokio::test]
async fn appends_in_one_batch_fold_as_if_one_after_the_other() {
    let dir = temp_dir();
    let store = Arc::new(open_in(&dir).await);
    let ids = claimed(&store, 3).await;
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    let ops = {
        let store = store.clone();
        async move {
            let turn = |id, ext: &str| {
                let events = vec![
                    NewEvent::initialized("initialized", ext),
                    NewEvent::processing("processing"),
                ];
                store.finish_turn(id, "w", events, None)
            };
            tokio::join!(
                turn(a, "x"),
                // The same worker again on `a`: the first turn released the lease.
                turn(a, "x"),
                // Another call claiming `a`'s external id, set earlier in this batch.
                turn(b, "x"),
                // A webhook for the id the first turn set, and the same event twice.
                store.append_event_by_external_id("acme", "x", NewEvent::completed("terminal", json!({"ok": 1}))),
                store.append_event_by_external_id("acme", "x", NewEvent::completed("terminal", json!({"ok": 2}))),
                turn(c, "y"),
            )
        }
    };
    let (first, again, taken, hook, hook_again, other) = in_one_batch(&store, ops).await;

    let first = first.unwrap();
    assert!(
        matches!(
            first[0],
            AppendOutcome::Applied {
                to: CallStatus::Processing,
                ..
            }
        ),
        "{first:?}"
    );
    assert!(again.unwrap_err().is_lease_lost());
    let taken = taken.unwrap_err();
    assert!(taken.is_conflict() && !taken.is_lease_lost(), "{taken}");
    let hook = hook.unwrap();
    assert!(
        matches!(
            hook,
            AppendOutcome::Applied {
                to: CallStatus::Completed,
                ..
            }
        ),
        "{hook:?}"
    );
    match hook_again.unwrap() {
        AppendOutcome::Duplicate { event_id, status, .. } => {
            assert_eq!(event_id, hook.event_id());
            assert_eq!(status, CallStatus::Completed);
        }
        outcome => panic!("not a duplicate: {outcome:?}"),
    }
    other.unwrap();

    let a = store.get_with_events(a).await.unwrap().unwrap();
    assert_eq!(a.call.status, CallStatus::Completed);
    assert_eq!(a.call.response_data, Some(json!({"ok": 1})));
    assert_eq!((a.call.attempts, a.call.lease_owner.as_deref()), (1, None));
    assert_eq!(a.events.len(), 3, "{:?}", a.events);
    let b = store.get_with_events(b).await.unwrap().unwrap();
    assert_eq!(b.call.status, CallStatus::Pending, "the conflicting turn wrote nothing");
    assert_eq!((b.call.attempts, b.call.lease_owner.as_deref()), (0, Some("w")));
    assert!(b.events.is_empty());
    let c = store.get(c).await.unwrap().unwrap();
    assert_eq!(
        (c.status, c.external_id.as_deref()),
        (CallStatus::Processing, Some("y"))
    );
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn writes_queued_together_all_commit_and_a_failing_one_fails_alone() {
    let dir = temp_dir();
    let store = Arc::new(open_in(&dir).await);
    let keyed = || NewCall::new("acme", "send", json!({"n": 0})).idempotency_key("k");
    let first = store.create(keyed()).await.unwrap();
    // Another connection holds the file's write lock, so the writes
    // below queue up and go into one transaction when it lets go.
    let blocker = store.pool().begin_with("BEGIN IMMEDIATE").await.unwrap();
    let creates: Vec<_> = (1..=20)
        .map(|n| {
            let store = store.clone();
            tokio::spawn(async move { store.create(NewCall::new("acme", "send", json!({"n": n}))).await })
        })
        .collect();
    let conflicting = {
        let store = store.clone();
        tokio::spawn(async move {
            let reused = NewCall::new("acme", "send", json!({"n": "other"})).idempotency_key("k");
            store.create(reused).await
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    blocker.rollback().await.unwrap();

    let error = conflicting.await.unwrap().unwrap_err();
    assert!(error.is_conflict(), "{error}");
    let mut ids = vec![first.id];
    for create in creates {
        let created = create
            .await
            .unwrap()
            .expect("the conflict leaves the other writes alone");
        assert!(created.created);
        ids.push(created.id);
    }
    for id in ids {
        assert!(store.get(id).await.unwrap().is_some(), "call {id} was not committed");
    }
    assert_eq!(store.count_by_status(None).await.unwrap().total(), 21);
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn reopening_keeps_data_and_applies_each_migration_once() {
    let dir = temp_dir();
    let store = open_in(&dir).await;
    let created = store
        .create(NewCall::new("acme", "send", json!({"a": 1})))
        .await
        .unwrap();
    store
        .append_event(created.id, NewEvent::initialized("i", "ext-1"))
        .await
        .unwrap();
    store.pool().close().await;
    drop(store);

    let store = open_in(&dir).await;
    let again = store.get_with_events(created.id).await.unwrap().expect("call kept");
    assert_eq!(again.call.status, CallStatus::Processing);
    assert_eq!(again.call.external_id.as_deref(), Some("ext-1"));
    assert_eq!(again.events.len(), 1);
    let versions: Vec<i64> = sqlx::query_scalar("SELECT version FROM integration_store_migrations ORDER BY version")
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(versions, MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn a_database_of_the_previous_schema_upgrades_and_keeps_its_calls() {
    let dir = temp_dir();
    let path = dir.join("store.db");
    // The schema before notification dead letters, with a terminal call
    // whose hooks are due.
    let options = SqliteConnectOptions::new().filename(&path).create_if_missing(true);
    let old = SqlitePool::connect_with(options).await.unwrap();
    migrate(&old, &MIGRATIONS[..3]).await.unwrap();
    let id = CallId::new();
    sqlx::query(
        "INSERT INTO integration_calls (id, integration, endpoint, status, params, response_data, \
         attempts, created_at, updated_at, completed_at, notify_at) \
         VALUES (?, 'acme', 'send', 'completed', '{\"a\":1}', '{\"ok\":true}', 2, 1, 1, 1, 1)",
    )
    .bind(id.to_string())
    .execute(&old)
    .await
    .unwrap();
    old.close().await;

    let store = open_in(&dir).await;
    super::super::shared::assert_upgraded_call_kept(&store, id).await;
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

/// The steps of an `EXPLAIN QUERY PLAN` query.
async fn query_plan(
    store: &SqliteStore,
    explain: sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
) -> Vec<String> {
    let rows = explain.fetch_all(store.pool()).await.unwrap();
    rows.iter().map(|row| row.get::<String, _>("detail")).collect()
}

#[tokio::test]
async fn claiming_walks_the_due_index() {
    let dir = temp_dir();
    let store = open_in(&dir).await;
    let explain = sqlx::query(
        "EXPLAIN QUERY PLAN SELECT seq FROM integration_calls \
         WHERE next_run_at <= ?1 AND status IN ('pending', 'processing') \
           AND (lease_expires_at IS NULL OR lease_expires_at <= ?1) \
         ORDER BY next_run_at, seq LIMIT ?2",
    );
    let plan = query_plan(&store, explain.bind(0_i64).bind(10_i64)).await;
    assert!(
        plan.iter().any(|step| step.contains("integration_calls_due")),
        "claim does not use the due index: {plan:?}"
    );
    assert!(
        !plan.iter().any(|step| step.contains("TEMP B-TREE")),
        "claim sorts: {plan:?}"
    );
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn listing_a_connections_calls_walks_its_index_without_sorting() {
    let dir = temp_dir();
    let store = open_in(&dir).await;
    for (status, index) in [
        (None, "integration_calls_by_connection"),
        (Some("pending"), "integration_calls_by_connection_status"),
    ] {
        let status_filter = if status.is_some() { "AND status = ?" } else { "" };
        let sql = format!(
            "EXPLAIN QUERY PLAN SELECT {CALL_COLUMNS} FROM integration_calls \
             WHERE integration = ? AND connection = ? {status_filter} AND seq < ? ORDER BY seq DESC LIMIT ?"
        );
        let mut explain = sqlx::query(AssertSqlSafe(sql)).bind("acme").bind("cust-1");
        if let Some(status) = status {
            explain = explain.bind(status);
        }
        let plan = query_plan(&store, explain.bind(i64::MAX).bind(101_i64)).await;
        assert!(
            plan.iter().any(|step| step.contains(index)),
            "{status:?}: the listing does not use {index}: {plan:?}"
        );
        assert!(
            !plan.iter().any(|step| step.contains("TEMP B-TREE")),
            "{status:?}: the listing sorts: {plan:?}"
        );
    }
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn appends_find_calls_by_external_id_through_the_index() {
    let dir = temp_dir();
    let store = open_in(&dir).await;
    let sql = format!("EXPLAIN QUERY PLAN {}", appends::select_by_external_ids(3));
    let mut explain = sqlx::query(AssertSqlSafe(sql));
    for value in ["acme", "a", "b", "c"] {
        explain = explain.bind(value);
    }
    let plan = query_plan(&store, explain).await;
    assert!(
        plan.iter().any(|step| step.contains("integration_calls_external_id")),
        "the lookup scans: {plan:?}"
    );
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}

#[tokio::test]
async fn corrupt_rows_are_reported_not_panicked_on() {
    let dir = temp_dir();
    let store = open_in(&dir).await;
    let created = store.create(NewCall::new("acme", "send", json!({}))).await.unwrap();
    sqlx::query("UPDATE integration_calls SET status = 'done' WHERE id = ?")
        .bind(created.id.to_string())
        .execute(store.pool())
        .await
        .unwrap();
    let error = store.get(created.id).await.unwrap_err();
    assert!(error.is_corrupt(), "{error}");
    drop(store);
    std::fs::remove_dir_all(dir).ok();
}
