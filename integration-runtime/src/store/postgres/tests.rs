//! The PostgreSQL store's own tests (the conformance suite included), on
//! the server of `INTEGRATION_TEST_DATABASE_URL`; skipped when it is unset.

use std::sync::Arc;

use serde_json::json;
use sqlx::{AssertSqlSafe, Connection};

use super::schema::MAX_IDENTIFIER_BYTES;
use super::*;
use crate::store::{system_now as now, CallId, Store};
use crate::testing::Fixture;

/// The test database's URL, or `None` (saying so) when it is not configured.
pub(super) fn test_url() -> Option<String> {
    match std::env::var("INTEGRATION_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            eprintln!("skipping: INTEGRATION_TEST_DATABASE_URL is not set");
            None
        }
    }
}

/// A fresh schema name, dropped with everything in it when this is
/// dropped, even after a failed assertion.
pub(super) struct TestSchema {
    url: String,
    pub(super) name: String,
}

impl TestSchema {
    pub(super) fn new(url: &str) -> Self {
        TestSchema {
            url: url.to_owned(),
            name: format!("irt_unit_{}", uuid::Uuid::new_v4().simple()),
        }
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        // A runtime of its own, on a thread of its own: this runs inside
        // the test's runtime.
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let mut conn = PgConnection::connect(&url).await?;
                let quoted = quote_identifier(&name).expect("valid name");
                sqlx::raw_sql(AssertSqlSafe(format!(
                    "SET lock_timeout = '10s'; DROP SCHEMA IF EXISTS {quoted} CASCADE"
                )))
                .execute(&mut conn)
                .await?;
                conn.close().await
            })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test schema {}: {dropped:?}", self.name);
        }
    }
}

pub(super) async fn open(url: &str, schema: &str) -> PostgresStore {
    PostgresStore::connect_with(
        url.parse().expect("valid test database URL"),
        PostgresOptions::default().schema(schema).max_connections(4),
    )
    .await
    .expect("connect to the test database")
}

async fn fixture() -> Option<Fixture> {
    let url = test_url()?;
    let schema = TestSchema::new(&url);
    let store = open(&url, &schema.name).await;
    Some(Fixture::new(store).with_guard(schema))
}

crate::store_conformance_tests!(optional: fixture);

#[test]
fn identifiers_are_quoted_and_bounded() {
    assert_eq!(quote_identifier("calls").unwrap(), r#""calls""#);
    assert_eq!(quote_identifier(r#"a"b"#).unwrap(), r#""a""b""#);
    assert_eq!(quote_identifier("x; DROP TABLE t").unwrap(), r#""x; DROP TABLE t""#);
    for bad in ["", "a\0b", &"x".repeat(64)] {
        assert!(quote_identifier(bad).unwrap_err().is_backend(), "{bad:?}");
    }
    assert!(quote_identifier(&"x".repeat(63)).is_ok());
}

#[test]
fn channel_names_fit_an_identifier() {
    assert_eq!(channel_name("public"), "integration_work:public");
    let long = channel_name(&"é".repeat(31));
    assert!(long.len() <= MAX_IDENTIFIER_BYTES, "{}", long.len());
    assert!(long.starts_with("integration_work:é"));
}

#[tokio::test]
async fn migrations_are_recorded_once_per_schema() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let store = open(&url, &schema.name).await;
    let again = open(&url, &schema.name).await;
    let versions: Vec<i64> = sqlx::query_scalar(AssertSqlSafe(format!(
        "SELECT version FROM {}.integration_store_migrations ORDER BY version",
        quote_identifier(&schema.name).unwrap()
    )))
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert_eq!(versions, MIGRATIONS.iter().map(|m| m.0).collect::<Vec<_>>());
    assert_eq!(again.schema(), schema.name);
    store.pool().close().await;
    again.pool().close().await;
}

#[tokio::test]
async fn a_schema_of_the_previous_version_upgrades_and_keeps_its_calls() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let quoted = quote_identifier(&schema.name).unwrap();
    // The schema before notification dead letters, with a terminal call
    // whose hooks are due.
    let old = PgPool::connect(&url).await.unwrap();
    migrate(&old, &schema.name, &quoted, &MIGRATIONS[..2]).await.unwrap();
    let id = CallId::new();
    sqlx::query(AssertSqlSafe(format!(
        "INSERT INTO {quoted}.integration_calls (id, integration, endpoint, status, params, response_data, \
         attempts, created_at, updated_at, completed_at, notify_at) \
         VALUES ($1, 'acme', 'send', 'completed', '{{\"a\":1}}', '{{\"ok\":true}}', 2, now(), now(), now(), now())"
    )))
    .bind(id.as_uuid())
    .execute(&old)
    .await
    .unwrap();
    old.close().await;

    let store = open(&url, &schema.name).await;
    super::super::shared::assert_upgraded_call_kept(&store, id).await;
    store.pool().close().await;
}

#[tokio::test]
async fn the_default_schema_is_the_current_one() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    // A search_path naming the (fresh) schema first: the store resolves
    // and then names it explicitly.
    let setup = open(&url, &schema.name).await;
    setup.pool().close().await;
    let connect: PgConnectOptions = url.parse().unwrap();
    let connect = connect.options([("search_path", schema.name.as_str())]);
    let store = PostgresStore::connect_with(connect, PostgresOptions::default())
        .await
        .unwrap();
    assert_eq!(store.schema(), schema.name);
    store.pool().close().await;
}

#[tokio::test]
async fn claiming_and_next_due_walk_the_due_index() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let store = open(&url, &schema.name).await;
    let calls = &store.calls;
    // A backlog of finished calls and a few due ones, with statistics.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "INSERT INTO {calls} (id, integration, endpoint, status, params, created_at, \
             updated_at, next_run_at) \
         SELECT gen_random_uuid(), 'acme', 'send', \
             CASE WHEN g % 100 = 0 THEN 'pending' ELSE 'completed' END, '{{}}', now(), \
             now(), CASE WHEN g % 100 = 0 THEN now() END \
         FROM generate_series(1, 5000) AS g; \
         ANALYZE {calls}"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "EXPLAIN (COSTS OFF) SELECT seq FROM {calls} \
         WHERE next_run_at <= $1 AND status IN ('pending', 'processing') \
           AND (lease_expires_at IS NULL OR lease_expires_at <= $1) \
         ORDER BY next_run_at, seq LIMIT $2 FOR UPDATE SKIP LOCKED"
    )))
    .bind(now())
    .bind(10_i64)
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(
        plan.iter().any(|line| line.contains("integration_calls_due")),
        "claim does not use the due index: {plan:#?}"
    );
    assert!(!plan.iter().any(|line| line.contains("Sort")), "claim sorts: {plan:#?}");
    let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
        "EXPLAIN (COSTS OFF) {}",
        super::store_impl::next_due_query(calls)
    )))
    .bind(now())
    .fetch_all(store.pool())
    .await
    .unwrap();
    assert!(
        plan.iter().any(|line| line.contains("integration_calls_due")),
        "next_due does not use the due index: {plan:#?}"
    );
    assert!(
        !plan.iter().any(|line| line.contains("Sort")),
        "next_due sorts: {plan:#?}"
    );
    assert_eq!(store.claim("w", 100, Duration::from_secs(60)).await.unwrap().len(), 50);
    store.pool().close().await;
}

#[tokio::test]
async fn listing_a_connections_calls_walks_its_index_without_sorting() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let store = open(&url, &schema.name).await;
    let calls = &store.calls;
    // Mostly finished calls of 50 connections and of the default one.
    sqlx::raw_sql(AssertSqlSafe(format!(
        "INSERT INTO {calls} (id, integration, endpoint, status, params, created_at, updated_at, connection) \
         SELECT gen_random_uuid(), 'acme', 'send', \
             CASE WHEN g % 20 = 0 THEN 'pending' ELSE 'completed' END, '{{}}', now(), now(), \
             CASE WHEN g % 3 = 0 THEN NULL ELSE 'cust-' || (g % 50) END \
         FROM generate_series(1, 5000) AS g; \
         ANALYZE {calls}"
    )))
    .execute(store.pool())
    .await
    .unwrap();
    for (status_filter, index) in [
        ("", "integration_calls_by_connection"),
        ("AND c.status = 'pending'", "integration_calls_by_connection_status"),
    ] {
        let plan: Vec<String> = sqlx::query_scalar(AssertSqlSafe(format!(
            "EXPLAIN (COSTS OFF) SELECT c.seq FROM {calls} c \
             WHERE c.integration = $1 AND c.seq < $2 AND c.connection = $3 {status_filter} \
             ORDER BY c.seq DESC LIMIT $4"
        )))
        .bind("acme")
        .bind(i64::MAX)
        .bind("cust-7")
        .bind(101_i64)
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert!(
            plan.iter().any(|line| line.contains(&format!("{index} "))),
            "the listing does not use {index}: {plan:#?}"
        );
        assert!(
            !plan.iter().any(|line| line.contains("Sort")),
            "the listing sorts: {plan:#?}"
        );
    }
    store.pool().close().await;
}

#[tokio::test]
async fn without_listen_waiters_still_wake_on_local_changes() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let store = Arc::new(
        PostgresStore::connect_with(
            url.parse().unwrap(),
            PostgresOptions::default().schema(&schema.name).listen(false),
        )
        .await
        .unwrap(),
    );
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.wait_for_work().await })
    };
    let woke = tokio::time::timeout(Duration::from_secs(5), async {
        let mut n = 0;
        while !waiter.is_finished() {
            store
                .create(NewCall::new("acme", "send", json!({ "n": n })))
                .await
                .unwrap();
            n += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert!(woke.is_ok(), "wait_for_work never woke");
    assert!(store.listener.get().is_none(), "no LISTEN connection");
    store.pool().close().await;
}

#[tokio::test]
async fn corrupt_rows_are_reported_not_panicked_on() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let store = open(&url, &schema.name).await;
    let created = store.create(NewCall::new("acme", "send", json!({}))).await.unwrap();
    sqlx::query(AssertSqlSafe(format!(
        "UPDATE {} SET status = 'done' WHERE id = $1",
        store.calls
    )))
    .bind(created.id.as_uuid())
    .execute(store.pool())
    .await
    .unwrap();
    let error = store.get(created.id).await.unwrap_err();
    assert!(error.is_corrupt(), "{error}");
    store.pool().close().await;
}

#[tokio::test]
async fn json_round_trips_exactly() {
    let Some(url) = test_url() else { return };
    let schema = TestSchema::new(&url);
    let store = open(&url, &schema.name).await;
    // Key order, a NUL character, big and fractional numbers: `json`
    // keeps the text, so the value comes back as written (and an
    // idempotent replay still compares equal).
    let params = json!({"z": 1, "a": "nul\u{0}char", "big": u64::MAX, "f": 1.5e300});
    let created = store
        .create(NewCall::new("acme", "send", params.clone()).idempotency_key("k"))
        .await
        .unwrap();
    assert_eq!(store.get(created.id).await.unwrap().unwrap().params, params);
    let again = store
        .create(NewCall::new("acme", "send", params).idempotency_key("k"))
        .await
        .unwrap();
    assert_eq!((again.id, again.created), (created.id, false));
    store.pool().close().await;
}
