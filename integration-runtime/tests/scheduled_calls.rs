//! Calls scheduled for later (`Runtime::create_at`, `create_after`, and the
//! outbox's `new_call_at`) start on time: never before their time, and soon
//! after it even though the worker's idle bound (`poll_idle`) is long, on
//! SQLite and on PostgreSQL (which skips, saying why, without
//! `INTEGRATION_TEST_DATABASE_URL`). The provider is a loopback HTTP server
//! that records when each request arrives.
//!
//! The bound here is generous (machines under load); the bench figure
//! `punctuality` measures the real lateness.

// Both stores are the subject; without either feature there is nothing to run.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod process_support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use integration_runtime::{PostgresOptions, PostgresStore, Runtime, SqliteStore, Store};
use serde_json::json;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

integration_runtime::integration!("tests/specs/engine_sync.toml");

/// How many calls each test schedules, spread over [`SPREAD`].
const CALLS: usize = 50;
const SPREAD: Duration = Duration::from_millis(2_500);
/// The worker's idle bound: far longer than the lateness allowed, so only
/// sleeping until the next due call can make the calls punctual.
const POLL_IDLE: Duration = Duration::from_secs(5);
/// How late a call may start here (generous: a loaded test machine).
const LATE_AT_MOST: chrono::Duration = chrono::Duration::milliseconds(250);

/// When each message's request reached the provider.
#[derive(Clone, Default)]
struct Arrivals(Arc<Mutex<HashMap<String, DateTime<Utc>>>>);

impl Respond for Arrivals {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let arrived = Utc::now();
        let text = serde_json::from_slice::<serde_json::Value>(&request.body)
            .ok()
            .and_then(|body| body["text"].as_str().map(str::to_owned))
            .unwrap_or_default();
        // A retried request keeps its first arrival.
        self.0.lock().unwrap().entry(text).or_insert(arrived);
        ResponseTemplate::new(200).set_body_json(json!({"echoed": "hi"}))
    }
}

async fn provider() -> (MockServer, Arrivals) {
    let server = MockServer::start().await;
    let arrivals = Arrivals::default();
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(arrivals.clone())
        .mount(&server)
        .await;
    (server, arrivals)
}

async fn runtime(store: Arc<dyn Store>, server: &MockServer) -> Runtime {
    let integration = engine_sync::EngineSync::new(engine_sync::EngineSyncConfig { base_url: server.uri() }).unwrap();
    Runtime::builder()
        .store(store)
        .integration(integration)
        .concurrency(8)
        .poll_idle(POLL_IDLE)
        .build()
        .await
        .unwrap()
}

fn message(n: usize) -> engine_sync::Message {
    engine_sync::Message { text: format!("m{n}") }
}

/// `offset` from `start`, a whole millisecond (stores keep milliseconds).
fn at(start: DateTime<Utc>, offset: Duration) -> DateTime<Utc> {
    let millis = start.timestamp_millis() + i64::try_from(offset.as_millis()).unwrap();
    DateTime::from_timestamp_millis(millis).unwrap()
}

/// Schedules `CALLS` calls of `rt` over [`SPREAD`] from half a second on,
/// alternately with `create_at` and `create_after`; returns when each is
/// due, by message text. `create_after` is measured from just before the
/// call, so its due time is bounded below by that.
async fn schedule(rt: &Runtime, start: DateTime<Utc>) -> HashMap<String, DateTime<Utc>> {
    let step = SPREAD / u32::try_from(CALLS).unwrap();
    let mut due = HashMap::new();
    for n in 0..CALLS {
        let offset = Duration::from_millis(500) + step * u32::try_from(n).unwrap();
        let when = at(start, offset);
        if n % 2 == 0 {
            rt.create_at(when, message(n)).await.unwrap();
            due.insert(format!("m{n}"), when);
        } else {
            let asked = Utc::now();
            let delay = (when - asked).to_std().unwrap_or_default();
            rt.create_after(delay, message(n)).await.unwrap();
            // Stored to the millisecond below `asked + delay`.
            due.insert(format!("m{n}"), at(asked, delay) - chrono::Duration::milliseconds(1));
        }
    }
    due
}

/// Waits until every scheduled message arrived (or 20 s passed), then
/// checks each against its due time.
async fn check_punctual(arrivals: &Arrivals, due: &HashMap<String, DateTime<Utc>>) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while arrivals.0.lock().unwrap().len() < due.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrived = arrivals.0.lock().unwrap().clone();
    let mut latest = (chrono::Duration::zero(), "");
    for (text, when) in due {
        let Some(arrival) = arrived.get(text) else {
            panic!("{text}, due at {when}, never reached the provider");
        };
        assert!(
            arrival >= when,
            "{text} reached the provider at {arrival}, before its time {when}"
        );
        let late = *arrival - *when;
        assert!(late <= LATE_AT_MOST, "{text} started {late} late (due {when})");
        latest = latest.max((late, text.as_str()));
    }
    eprintln!(
        "{} scheduled calls, the latest {} ms late ({})",
        due.len(),
        latest.0.num_milliseconds(),
        latest.1
    );
}

/// A fresh directory, deleted on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("scheduled-calls-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_calls_start_on_time_on_sqlite() {
    let dir = TempDir::new();
    let store = Arc::new(SqliteStore::open(dir.0.join("calls.db")).await.unwrap());
    let (server, arrivals) = provider().await;
    let rt = runtime(store, &server).await;
    let worker = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.run().await.unwrap() })
    };
    // Let the worker go idle first: it must wake for calls scheduled later.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut due = schedule(&rt, Utc::now()).await;
    // A time in the past means now.
    let asked = Utc::now();
    rt.create_at(asked - chrono::Duration::hours(1), message(CALLS))
        .await
        .unwrap();
    due.insert(format!("m{CALLS}"), asked);
    check_punctual(&arrivals, &due).await;
    rt.shutdown(Duration::from_secs(5)).await;
    worker.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduled_calls_start_on_time_on_postgres() {
    let Ok(url) = std::env::var("INTEGRATION_TEST_DATABASE_URL") else {
        eprintln!("skipping: INTEGRATION_TEST_DATABASE_URL is not set");
        return;
    };
    let schema = format!("irt_sched_{}", uuid::Uuid::new_v4().simple());
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let _drop_schema = DropSchema(options.clone(), schema.clone());
    let connect = || PostgresStore::connect_with(options.clone(), PostgresOptions::default().schema(&schema));
    let (server, arrivals) = provider().await;
    // Two processes' worth of runtimes: one runs the worker, the other
    // only creates, so the worker hears of the calls through NOTIFY alone.
    let worker_rt = runtime(Arc::new(connect().await.unwrap()), &server).await;
    let producer_store = Arc::new(connect().await.unwrap());
    let producer = runtime(producer_store.clone(), &server).await;
    let worker = {
        let rt = worker_rt.clone();
        tokio::spawn(async move { rt.run().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let start = Utc::now();
    let mut due = schedule(&producer, start).await;
    // The outbox: a scheduled call created in the caller's transaction.
    for n in CALLS..CALLS + 5 {
        let when = at(
            start,
            Duration::from_millis(700) + Duration::from_millis(400) * u32::try_from(n - CALLS).unwrap(),
        );
        let mut tx = producer_store.pool().begin().await.unwrap();
        let call = producer.new_call_at(when, message(n)).unwrap();
        producer_store.create_in_tx(&mut tx, call).await.unwrap();
        tx.commit().await.unwrap();
        due.insert(format!("m{n}"), when);
    }
    check_punctual(&arrivals, &due).await;
    worker_rt.shutdown(Duration::from_secs(5)).await;
    worker.await.unwrap();
}

/// Drops the test's schema when the test ends, however it ends.
struct DropSchema(sqlx::postgres::PgConnectOptions, String);

impl Drop for DropSchema {
    fn drop(&mut self) {
        process_support::drop_schema(self.0.clone(), &self.1);
    }
}
