//! The PostgreSQL store through the public API, against a real server, as
//! several worker processes use it: concurrent claimers, concurrent creates
//! and appends, the outbox, a server dropping connections, migrations racing.
//!
//! The server is `INTEGRATION_TEST_DATABASE_URL`; without it every test says
//! `skipping: INTEGRATION_TEST_DATABASE_URL is not set` and passes. Each test
//! works in a fresh schema that is dropped at its end, even when it fails.
#![cfg(feature = "postgres")]

mod process_support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_runtime::store::{ConnectionRow, ConnectionStore, NewEvent};
use integration_runtime::{
    AppendOutcome, CallId, CallStatus, EventKind, ListQuery, NewCall, PostgresOptions, PostgresStore, Store,
};
use serde_json::json;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

const LEASE: Duration = Duration::from_secs(60);

/// The test server and one fresh schema on it, dropped (with everything in
/// it) when this is dropped.
struct TestDb {
    url: String,
    schema: String,
}

impl TestDb {
    /// `None`, after saying so, when no test server is configured.
    fn new() -> Option<Self> {
        match std::env::var("INTEGRATION_TEST_DATABASE_URL") {
            Ok(url) if !url.is_empty() => Some(TestDb {
                url,
                schema: format!("irt_it_{}", uuid::Uuid::new_v4().simple()),
            }),
            _ => {
                eprintln!("skipping: INTEGRATION_TEST_DATABASE_URL is not set");
                None
            }
        }
    }

    fn connect_options(&self) -> PgConnectOptions {
        self.url.parse().expect("valid INTEGRATION_TEST_DATABASE_URL")
    }

    fn options(&self) -> PostgresOptions {
        PostgresOptions::default().schema(&self.schema).max_connections(4)
    }

    /// A store on the schema, like one more worker process.
    async fn store(&self) -> PostgresStore {
        self.store_with(self.connect_options(), self.options()).await
    }

    async fn store_with(&self, connect: PgConnectOptions, options: PostgresOptions) -> PostgresStore {
        PostgresStore::connect_with(connect, options)
            .await
            .expect("connect to the test database")
    }

    /// A plain connection, for what the test itself checks or breaks.
    async fn admin(&self) -> PgConnection {
        PgConnection::connect_with(&self.connect_options())
            .await
            .expect("admin connection")
    }

    fn quoted_schema(&self) -> String {
        process_support::quote_schema(&self.schema)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        process_support::drop_schema(self.connect_options(), &self.schema);
    }
}

fn call(n: u32) -> NewCall {
    NewCall::new("acme", "send", json!({ "n": n }))
}

/// Calls `wake` until `store.wait_for_work()` returns, for at most 10 s.
async fn wakes(store: Arc<PostgresStore>, mut wake: impl FnMut(u32) -> NewCall, by: &dyn Store) {
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_work().await })
    };
    let woke = tokio::time::timeout(Duration::from_secs(10), async {
        let mut n = 0;
        while !waiter.is_finished() {
            by.create(wake(n)).await.expect("create");
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(woke.is_ok(), "wait_for_work never woke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_commits_business_data_and_the_call_together() {
    let Some(db) = TestDb::new() else { return };
    let store = db.store().await;
    let orders = format!("{}.orders", db.quoted_schema());
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {orders} (id BIGSERIAL PRIMARY KEY, item TEXT NOT NULL)"
    )))
    .execute(store.pool())
    .await
    .unwrap();

    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {orders} (item) VALUES ('lost')"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let lost = store
        .create_in_tx(&mut tx, NewCall::new("acme", "ship", json!({"item": "lost"})))
        .await
        .unwrap();
    assert!(lost.created);
    // Not visible outside the transaction before it commits.
    assert_eq!(store.get(lost.id).await.unwrap(), None);
    tx.rollback().await.unwrap();
    assert_eq!(store.get(lost.id).await.unwrap(), None);
    assert!(store.claim("w", 10, LEASE).await.unwrap().is_empty());

    let existing = store
        .create(NewCall::new("acme", "ship", json!({"item": "kept"})).idempotency_key("order-1"))
        .await
        .unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {orders} (item) VALUES ('kept')"
    )))
    .execute(&mut *tx)
    .await
    .unwrap();
    let kept = store
        .create_in_tx(&mut tx, NewCall::new("acme", "ship", json!({"item": "kept"})))
        .await
        .unwrap();
    // A replayed key returns the existing call and leaves the transaction usable.
    let replay = store
        .create_in_tx(
            &mut tx,
            NewCall::new("acme", "ship", json!({"item": "kept"})).idempotency_key("order-1"),
        )
        .await
        .unwrap();
    assert_eq!((replay.id, replay.created), (existing.id, false));
    tx.commit().await.unwrap();

    let items: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT item FROM {orders}")))
        .fetch_all(store.pool())
        .await
        .unwrap();
    assert_eq!(items, ["kept"]);
    let claimed: HashSet<CallId> = store
        .claim("w", 10, LEASE)
        .await
        .unwrap()
        .iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(claimed, HashSet::from([kept.id, existing.id]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_committed_outbox_call_wakes_workers_of_other_processes() {
    let Some(db) = TestDb::new() else { return };
    let worker = Arc::new(db.store().await);
    let app = db.store().await;
    let waiter = {
        let worker = worker.clone();
        tokio::spawn(async move { worker.wait_for_work().await })
    };
    let woke = tokio::time::timeout(Duration::from_secs(10), async {
        let mut n = 0;
        while !waiter.is_finished() {
            let mut tx = app.pool().begin().await.unwrap();
            app.create_in_tx(&mut tx, call(n)).await.unwrap();
            tx.commit().await.unwrap();
            n += 1;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(woke.is_ok(), "the other process's worker never woke");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_claimers_never_get_the_same_call() {
    const CALLS: u32 = 500;
    const CLAIMERS: usize = 8;
    let Some(db) = TestDb::new() else { return };
    let setup = Arc::new(db.store().await);
    let creators: Vec<_> = (0..4)
        .map(|part| {
            let store = setup.clone();
            tokio::spawn(async move {
                for n in (part..CALLS).step_by(4) {
                    store.create(call(n)).await.unwrap();
                }
            })
        })
        .collect();
    for creator in creators {
        creator.await.unwrap();
    }

    // Eight processes, one connection each, claiming small batches.
    let mut stores = Vec::new();
    for _ in 0..CLAIMERS {
        stores.push(Arc::new(
            db.store_with(db.connect_options(), db.options().max_connections(1))
                .await,
        ));
    }
    let claimers: Vec<_> = stores
        .iter()
        .enumerate()
        .map(|(w, store)| {
            let store = store.clone();
            tokio::spawn(async move {
                let worker = format!("w{w}");
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim(&worker, 7, LEASE).await.unwrap();
                    if batch.is_empty() {
                        break mine;
                    }
                    assert!(batch.len() <= 7);
                    assert!(batch.iter().all(|c| c.lease_owner.as_deref() == Some(&*worker)));
                    mine.extend(batch.into_iter().map(|c| (c.id, worker.clone())));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().map(|(id, _)| *id).collect();
    assert_eq!(distinct.len(), all.len(), "a call was claimed twice");
    assert_eq!(all.len(), CALLS as usize, "every call claimed once");
    // The store agrees on who holds each lease.
    for (id, worker) in all.iter().step_by(37) {
        let record = setup.get(*id).await.unwrap().unwrap();
        assert_eq!(record.lease_owner.as_deref(), Some(worker.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_creates_with_one_key_make_one_call() {
    let Some(db) = TestDb::new() else { return };
    let (a, b) = (Arc::new(db.store().await), Arc::new(db.store().await));
    for round in 0..5 {
        let key = format!("order-{round}");
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let store = if i % 2 == 0 { a.clone() } else { b.clone() };
                let key = key.clone();
                tokio::spawn(async move { store.create(call(round).idempotency_key(key)).await.unwrap() })
            })
            .collect();
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        assert_eq!(results.iter().filter(|c| c.created).count(), 1, "{results:?}");
        let ids: HashSet<_> = results.iter().map(|c| c.id).collect();
        assert_eq!(ids.len(), 1, "{results:?}");
    }
    assert_eq!(a.count_by_status(Some("acme")).await.unwrap().total(), 5);
    // A key replayed for another request is still a conflict.
    let error = b.create(call(99).idempotency_key("order-0")).await.unwrap_err();
    assert!(error.is_conflict(), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_terminal_appends_apply_exactly_one() {
    let Some(db) = TestDb::new() else { return };
    // A webhook receiver and a poller: two processes.
    let (webhook, poller) = (Arc::new(db.store().await), Arc::new(db.store().await));
    for round in 0..10 {
        let id = webhook.create(call(round)).await.unwrap().id;
        let external = format!("ext-{round}");
        poller
            .append_event(id, NewEvent::initialized("init", &external))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let store = if i % 2 == 0 { webhook.clone() } else { poller.clone() };
                let external = external.clone();
                tokio::spawn(async move {
                    let event = if i % 3 == 0 {
                        NewEvent::failed(format!("d{i}"), "boom")
                    } else {
                        NewEvent::completed(format!("d{i}"), json!({"by": i}))
                    };
                    // Half of them also deliver a second time, concurrently.
                    let again = event.clone();
                    let first = store
                        .append_event_by_external_id("acme", &external, event)
                        .await
                        .unwrap();
                    let second = if i % 2 == 0 {
                        Some(
                            store
                                .append_event_by_external_id("acme", &external, again)
                                .await
                                .unwrap(),
                        )
                    } else {
                        None
                    };
                    (first, second)
                })
            })
            .collect();
        let mut outcomes = Vec::new();
        for task in tasks {
            outcomes.push(task.await.unwrap());
        }
        let applied: Vec<_> = outcomes.iter().filter(|(first, _)| first.is_applied()).collect();
        assert_eq!(applied.len(), 1, "{outcomes:?}");
        let terminal = applied[0].0.status();
        assert!(terminal.is_terminal());
        for (first, second) in &outcomes {
            if !first.is_applied() {
                assert!(matches!(first, AppendOutcome::Ignored { status, .. } if *status == terminal));
            }
            if let Some(second) = second {
                assert!(second.is_duplicate(), "{second:?}");
                assert_eq!(second.event_id(), first.event_id());
            }
        }

        let stored = poller.get_with_events(id).await.unwrap().unwrap();
        assert_eq!(stored.call.status, terminal);
        assert!(stored.call.completed_at.is_some());
        assert_eq!(stored.events.len(), 9, "init and one event per key");
        let applied_terminal: Vec<_> = stored
            .events
            .iter()
            .filter(|e| e.applied && matches!(e.kind, EventKind::Completed | EventKind::Failed))
            .collect();
        assert_eq!(applied_terminal.len(), 1);
        match terminal {
            CallStatus::Completed => {
                assert_eq!(stored.call.response_data, applied_terminal[0].payload.result);
                assert_eq!(stored.call.error, None);
            }
            _ => {
                assert_eq!(stored.call.error.as_deref(), Some("boom"));
                assert_eq!(stored.call.response_data, None);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hook_dispatchers_never_get_the_same_notification() {
    const CALLS: u32 = 60;
    let Some(db) = TestDb::new() else { return };
    let setup = db.store().await;
    for n in 0..CALLS {
        let id = setup.create(call(n)).await.unwrap().id;
        let event = if n % 2 == 0 {
            NewEvent::completed("done", json!(n))
        } else {
            NewEvent::failed("done", "no")
        };
        setup.append_event(id, event).await.unwrap();
    }
    let mut dispatchers = Vec::new();
    for _ in 0..4 {
        let store = Arc::new(
            db.store_with(db.connect_options(), db.options().max_connections(1))
                .await,
        );
        dispatchers.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = store.claim_notifications(4, LEASE).await.unwrap();
                if batch.is_empty() {
                    break mine;
                }
                assert!(batch.iter().all(|c| c.is_terminal()));
                for notified in batch {
                    store
                        .finish_notification(notified.id, integration_runtime::store::NotificationOutcome::Delivered)
                        .await
                        .unwrap();
                    mine.push(notified.id);
                }
            }
        }));
    }
    let mut all = Vec::new();
    for dispatcher in dispatchers {
        all.extend(dispatcher.await.unwrap());
    }
    let distinct: HashSet<_> = all.iter().collect();
    assert_eq!(distinct.len(), all.len(), "a notification was handed out twice");
    assert_eq!(all.len(), CALLS as usize);
    assert!(setup.claim_notifications(100, LEASE).await.unwrap().is_empty());
}

/// The server ends the store's connections (a restart, a failover, an
/// operator): in-flight operations may fail, the next ones succeed, and the
/// listener comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn terminated_connections_are_replaced() {
    let Some(db) = TestDb::new() else { return };
    let app_name = format!("irt-terminate-{}", uuid::Uuid::new_v4().simple());
    let store = Arc::new(
        db.store_with(db.connect_options().application_name(&app_name), db.options())
            .await,
    );
    let other = db.store().await;
    let mut admin = db.admin().await;

    // Start the listener and check it works before the failure.
    wakes(store.clone(), call, &other).await;
    let id = store.create(call(1000)).await.unwrap().id;

    // Keep the store busy while its connections are cut.
    let stop = Arc::new(AtomicUsize::new(0));
    let busy = {
        let (store, stop) = (store.clone(), stop.clone());
        tokio::spawn(async move {
            let mut failures = 0;
            let mut n = 2000;
            while stop.load(Ordering::Relaxed) == 0 {
                if store.create(call(n)).await.is_err() {
                    failures += 1;
                }
                if store.claim("busy", 2, LEASE).await.is_err() {
                    failures += 1;
                }
                n += 1;
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Two statements: in one, PostgreSQL may call pg_terminate_backend
    // before filtering, on every backend.
    let terminated: Vec<i32> = sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(&app_name)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    let signalled: Vec<bool> = sqlx::query_scalar("SELECT pg_terminate_backend(pid) FROM unnest($1::int4[]) AS pid")
        .bind(&terminated)
        .fetch_all(&mut admin)
        .await
        .unwrap();
    assert!(signalled.iter().all(|ok| *ok), "{signalled:?}");
    assert!(terminated.len() >= 2, "pool and listener connections: {terminated:?}");
    stop.store(1, Ordering::Relaxed);
    let failures = busy.await.unwrap();
    eprintln!("{failures} in-flight operations failed");

    // Wait until the terminated backends are gone, as after a restart.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)")
            .bind(&terminated)
            .fetch_one(&mut admin)
            .await
            .unwrap();
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "backends still alive");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A restart takes longer than the second after which the pool tests a
    // connection before handing it out; one closed within that second of
    // its last use may fail once, as the store's docs say.
    tokio::time::sleep(Duration::from_millis(1_100)).await;

    // The next operations succeed, on fresh connections.
    let record = store.get(id).await.expect("the pool reconnects");
    assert_eq!(record.unwrap().id, id);
    let created = store.create(call(3000)).await.unwrap();
    assert!(created.created);
    store
        .append_event(created.id, NewEvent::initialized("i", "ext-after"))
        .await
        .unwrap();
    assert_eq!(
        store
            .find_by_external_id("acme", "ext-after")
            .await
            .unwrap()
            .unwrap()
            .id,
        created.id
    );

    // The listener reconnected: another process's create wakes this one.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listening: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE application_name = $1 AND query LIKE 'LISTEN%'",
        )
        .bind(&app_name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        if listening > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the listener never reconnected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wakes(store.clone(), |n| call(5000 + n), &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_from_several_processes_at_once_are_safe() {
    let Some(db) = TestDb::new() else { return };
    // The schema does not exist yet; four processes start at once.
    let (a, b, c, d) = tokio::join!(db.store(), db.store(), db.store(), db.store());
    let id = a.create(call(1)).await.unwrap().id;
    for store in [&b, &c, &d] {
        assert_eq!(store.get(id).await.unwrap().unwrap().id, id);
    }
    let versions = format!(
        "SELECT version FROM {}.integration_store_migrations ORDER BY version",
        db.quoted_schema()
    );
    let first: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(versions.as_str()))
        .fetch_all(a.pool())
        .await
        .unwrap();
    // Each step recorded once, in order (1, 2, ...; a number reserved by
    // a step not merged yet may be missing).
    assert_eq!(first.first(), Some(&1), "{first:?}");
    assert!(
        first.windows(2).all(|pair| pair[0] < pair[1]),
        "each step recorded once: {first:?}"
    );
    for store in [a, b, c, d] {
        store.pool().close().await;
    }

    // And again, twice in a row: nothing re-applied, data kept.
    for _ in 0..2 {
        let store = db.store().await;
        let again: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(versions.as_str()))
            .fetch_all(store.pool())
            .await
            .unwrap();
        assert_eq!(again, first);
        let page = store.list(&ListQuery::new("acme")).await.unwrap();
        assert_eq!(page.calls.iter().map(|c| c.id).collect::<Vec<_>>(), [id]);
        store.pool().close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_schema_name_is_quoted_safely() {
    let Some(mut db) = TestDb::new() else { return };
    db.schema = format!("Mixed \"Case\"; DROP TABLE x -- é {}", &db.schema[7..19]);
    let store = db.store().await;
    let id = store.create(call(1)).await.unwrap().id;
    assert_eq!(store.claim("w", 1, LEASE).await.unwrap()[0].id, id);
    assert_eq!(store.schema(), db.schema);
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema = $1 ORDER BY table_name",
    )
    .bind(&db.schema)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(
        tables,
        [
            "integration_call_events",
            "integration_calls",
            "integration_circuit_breakers",
            "integration_connection_authorizations",
            "integration_connection_tokens",
            "integration_connections",
            "integration_rate_limiters",
            "integration_store_migrations"
        ]
    );
    // The connection statements name the schema too.
    let connection = ConnectionRow {
        integration: "acme".into(),
        id: "cust-1".into(),
        credentials: "sealed".into(),
        base_url: None,
        params: json!({}),
        rate_per_second: None,
        rate_burst: None,
        created_at: chrono::Utc::now(),
        updated_at: chrono::Utc::now(),
        revoked_at: None,
    };
    store.put_connection(connection).await.unwrap();
    assert!(store.lease_token("acme", "cust-1", "w", LEASE).await.unwrap());
    assert!(store.save_token("acme", "cust-1", "w", "tokens".into()).await.unwrap());
    assert_eq!(store.sealed_values().await.unwrap().len(), 2);
    assert!(store.revoke_connection("acme", "cust-1").await.unwrap().is_some());
    // Notifications work on its (long, odd) channel too.
    let store = Arc::new(store);
    let other = db.store().await;
    wakes(store, call, &other).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_lifecycle_across_two_processes() {
    let Some(db) = TestDb::new() else { return };
    let (api, worker): (Arc<dyn Store>, Arc<dyn Store>) = (Arc::new(db.store().await), Arc::new(db.store().await));
    let id = api
        .create(NewCall::new("acme", "transcribe", json!({"url": "u"})).idempotency_key("job-1"))
        .await
        .unwrap()
        .id;
    let claimed = worker.claim("worker-1", 10, LEASE).await.unwrap();
    assert_eq!(claimed.len(), 1);
    let key = NewEvent::key_for(EventKind::Initialized, id, claimed[0].attempts);
    worker
        .append_event(id, NewEvent::initialized(key, "task-9"))
        .await
        .unwrap();
    worker
        .reschedule(id, "worker-1", Some(chrono::Utc::now() + chrono::Duration::hours(1)))
        .await
        .unwrap();
    let done = api
        .append_event_by_external_id("acme", "task-9", NewEvent::completed("whk_1", json!({"t": 1})))
        .await
        .unwrap();
    assert!(done.is_applied());
    let stored = worker.get_with_events(id).await.unwrap().unwrap();
    assert_eq!(stored.call.status, CallStatus::Completed);
    assert_eq!(stored.call.next_run_at, None);
    assert_eq!(stored.call.attempts, 1);
    assert_eq!(stored.events.len(), 2);
    assert!(worker.claim("worker-2", 10, LEASE).await.unwrap().is_empty());
}
