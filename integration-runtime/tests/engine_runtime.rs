//! The engine end to end: a SQLite file in a temporary directory, generated
//! integrations from `tests/specs`, and a wiremock provider on 127.0.0.1.
//! Every test is bounded by a timeout; intervals are milliseconds.

// Without `sqlite`, only the tests on the in-memory store run, and the
// helpers that only the SQLite tests use stay unused.
#![cfg_attr(not(feature = "sqlite"), allow(dead_code, unused_imports))]

mod runtime_support;
mod store_quirks;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[cfg(feature = "sqlite")]
use integration_runtime::SqliteStore;
use integration_runtime::{
    CallId, CallRecord, CallStatus, EventKind, IntoStore, ListQuery, MemoryStore, Runtime, RuntimeBuilder,
};
#[cfg(feature = "postgres")]
use runtime_support::postgres_store;
use runtime_support::{spawn_run, stop};
use serde_json::{json, Value};
use store_quirks::Quirky;
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

integration_runtime::integration!("tests/specs/engine_sync.toml");
integration_runtime::integration!("tests/specs/engine_async.toml");
integration_runtime::integration!("tests/specs/engine_breaker.toml");

const LIMIT: Duration = Duration::from_secs(20);

/// A fresh directory, deleted on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("engine-it-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.0).ok();
    }
}

/// One request the provider saw.
#[derive(Debug, Clone)]
struct Hit {
    at: Instant,
    path: String,
    key: Option<String>,
    body: Value,
}

/// How a script answers its `n`th request.
type Answer = dyn Fn(usize, &Request) -> ResponseTemplate + Send + Sync;

/// A scripted responder that records every request.
#[derive(Clone)]
struct Script {
    hits: Arc<Mutex<Vec<Hit>>>,
    answer: Arc<Answer>,
}

impl Script {
    fn new(answer: impl Fn(usize, &Request) -> ResponseTemplate + Send + Sync + 'static) -> Self {
        Script {
            hits: Arc::default(),
            answer: Arc::new(answer),
        }
    }
    /// Answers every request with `status` and the JSON `body`.
    fn always(status: u16, body: Value) -> Self {
        Script::new(move |_, _| ResponseTemplate::new(status).set_body_json(body.clone()))
    }
    /// Answers every request with 200 and the JSON `body`, after `delay`.
    fn slow(body: Value, delay: Duration) -> Self {
        Script::new(move |_, _| ResponseTemplate::new(200).set_body_json(body.clone()).set_delay(delay))
    }
    fn hits(&self) -> Vec<Hit> {
        self.hits.lock().unwrap().clone()
    }
}

impl Respond for Script {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = {
            let mut hits = self.hits.lock().unwrap();
            hits.push(Hit {
                at: Instant::now(),
                path: request.url.path().to_owned(),
                key: request
                    .headers
                    .get("idempotency-key")
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned),
                body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
            });
            hits.len() - 1
        };
        (self.answer)(n, request)
    }
}

async fn provider(route: &str, script: &Script) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(route))
        .respond_with(script.clone())
        .mount(&server)
        .await;
    server
}

/// Lets `status` answer the async integration's polls (`GET /jobs/{id}`).
async fn answer_polls(server: &MockServer, status: &Script) {
    Mock::given(method("GET"))
        .and(path_regex("^/jobs/[^/]+$"))
        .respond_with(status.clone())
        .mount(server)
        .await;
}

fn sync_integration(server: &MockServer) -> engine_sync::EngineSync {
    engine_sync::EngineSync::new(engine_sync::EngineSyncConfig { base_url: server.uri() }).unwrap()
}

fn async_integration(server: &MockServer) -> engine_async::EngineAsync {
    engine_async::EngineAsync::new(engine_async::EngineAsyncConfig { base_url: server.uri() }).unwrap()
}

fn message(text: &str) -> engine_sync::Message {
    engine_sync::Message { text: text.into() }
}

/// Creates `n` sync calls, texts `m0`, `m1`, ...
async fn create_messages(rt: &Runtime, n: usize) -> Vec<CallId> {
    let mut ids = Vec::new();
    for n in 0..n {
        ids.push(rt.create(message(&format!("m{n}"))).await.unwrap());
    }
    ids
}

fn job(text: &str) -> engine_async::Job {
    engine_async::Job { text: text.into() }
}

#[cfg(feature = "sqlite")]
async fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(dir.join("calls.db")).await.unwrap()
}

fn fast(builder: RuntimeBuilder) -> RuntimeBuilder {
    builder
        .poll_idle(Duration::from_millis(20))
        .lease(Duration::from_secs(5))
        .hook_retry(Duration::from_millis(50))
        .concurrency(8)
        .claim_batch(4)
}

/// The [`fast`] builder with `store` and the sync integration against `server`.
fn sync_builder(store: impl IntoStore, server: &MockServer) -> RuntimeBuilder {
    fast(Runtime::builder())
        .store(store)
        .integration(sync_integration(server))
}

/// The [`fast`] builder with `store` and the async integration against `server`.
fn async_builder(store: impl IntoStore, server: &MockServer) -> RuntimeBuilder {
    fast(Runtime::builder())
        .store(store)
        .integration(async_integration(server))
}

async fn sync_runtime(store: impl IntoStore, server: &MockServer) -> Runtime {
    sync_builder(store, server).build().await.unwrap()
}

async fn async_runtime(store: impl IntoStore, server: &MockServer) -> Runtime {
    async_builder(store, server).build().await.unwrap()
}

/// Waits until `done` holds, failing with `what` after [`LIMIT`].
async fn wait_until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < LIMIT, "{what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The ids of the `EngineSync` calls whose completion hook `rt` delivers.
fn record_completions(rt: &Runtime) -> Arc<Mutex<Vec<CallId>>> {
    let delivered: Arc<Mutex<Vec<CallId>>> = Arc::default();
    let sink = delivered.clone();
    rt.on_completed::<engine_sync::EngineSyncCall, _>(move |call| {
        let sink = sink.clone();
        async move { sink.lock().unwrap().push(call.id) }
    });
    delivered
}

/// Waits until call `id` is terminal and its worker has let go of it.
async fn wait_terminal(rt: &Runtime, id: CallId) -> CallRecord {
    let started = Instant::now();
    loop {
        let call = rt.get(id).await.unwrap().expect("call exists");
        // Terminal, and the worker's turn is over (it releases the lease
        // and counts the attempt right after the terminal event).
        if call.is_terminal() && call.lease_owner.is_none() {
            return call;
        }
        assert!(started.elapsed() < LIMIT, "call {id} not terminal in time: {call:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn kinds(events: &[integration_runtime::EventRecord]) -> Vec<EventKind> {
    events.iter().map(|e| e.kind).collect()
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sync_call_completes_with_exactly_three_events() {
    let dir = TempDir::new();
    let script = Script::always(200, json!({"echoed": "hi!"}));
    let server = provider("/send", &script).await;
    let rt = sync_runtime(open(&dir.0).await, &server).await;
    let mut changes = rt.subscribe();
    let id = rt.create(message("hi")).await.unwrap();
    let worker = spawn_run(&rt);
    let call = wait_terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.response_data, Some(json!({"echoed": "hi!"})));
    assert_eq!(call.external_id, Some(id.to_string()), "generated id is the call id");

    let full = rt.get_with_events(id).await.unwrap().unwrap();
    assert_eq!(
        kinds(&full.events),
        [EventKind::Initialized, EventKind::Processing, EventKind::Completed]
    );
    let keys: Vec<_> = full.events.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["initialized", "processing", "terminal"]);

    let hits = script.hits();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].key.as_deref(), Some(id.to_string().as_str()));
    assert_eq!(hits[0].body, json!({"text": "hi"}));

    // Typed access.
    let typed: engine_sync::EngineSyncCall = rt.get_typed(id).await.unwrap().unwrap();
    assert_eq!(typed.status, CallStatus::Completed);
    assert_eq!(
        typed.response_data,
        Some(engine_sync::EngineSyncResponse::Send(engine_sync::Echo {
            echoed: "hi!".into()
        }))
    );
    let wrong = rt.get_typed::<engine_async::EngineAsyncCall>(id).await.unwrap_err();
    assert!(wrong.is_type_mismatch(), "{wrong}");

    // The broadcast saw pending -> processing -> completed.
    let first = changes.recv().await.unwrap();
    assert_eq!(
        (first.call_id, first.from, first.to),
        (id, CallStatus::Pending, CallStatus::Processing)
    );
    let second = changes.recv().await.unwrap();
    assert_eq!(
        (second.from, second.to),
        (CallStatus::Processing, CallStatus::Completed)
    );
    stop(&rt, worker).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_call_goes_through_polling_to_completed() {
    let dir = TempDir::new();
    let submit = Script::always(202, json!({"job_id": "job-1"}));
    let status = Script::new(|n, _| {
        if n < 2 {
            ResponseTemplate::new(200).set_body_json(json!({"state": if n == 0 { "queued" } else { "running" }}))
        } else {
            ResponseTemplate::new(200).set_body_json(json!({"state": "done", "url": "https://cdn/x.mp3"}))
        }
    });
    let server = provider("/jobs", &submit).await;
    answer_polls(&server, &status).await;
    let rt = async_runtime(open(&dir.0).await, &server).await;
    let id = rt.create(job("speak")).await.unwrap();
    assert_eq!(rt.get(id).await.unwrap().unwrap().status, CallStatus::Pending);
    let mut changes = rt.subscribe();
    let worker = spawn_run(&rt);
    let call = wait_terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.external_id.as_deref(), Some("job-1"));
    assert_eq!(call.response_data, Some(json!({"url": "https://cdn/x.mp3"})));
    let found = rt.find_by_external_id("EngineAsync", "job-1").await.unwrap().unwrap();
    assert_eq!(found.id, id);

    let full = rt.get_with_events(id).await.unwrap().unwrap();
    assert_eq!(
        kinds(&full.events),
        [EventKind::Initialized, EventKind::Processing, EventKind::Completed]
    );
    let statuses: Vec<_> = [changes.recv().await.unwrap(), changes.recv().await.unwrap()]
        .iter()
        .map(|c| (c.from, c.to))
        .collect();
    assert_eq!(
        statuses,
        [
            (CallStatus::Pending, CallStatus::Processing),
            (CallStatus::Processing, CallStatus::Completed)
        ]
    );
    let polls = status.hits();
    assert_eq!(polls.len(), 3, "queued, running, done");
    assert!(polls.iter().all(|h| h.path == "/jobs/job-1"));
    // Polls are spaced by at least the interval (20 ms, growing).
    for pair in polls.windows(2) {
        assert!(
            pair[1].at - pair[0].at >= Duration::from_millis(15),
            "{:?}",
            pair[1].at - pair[0].at
        );
    }
    assert_eq!(submit.hits()[0].key.as_deref(), Some(id.to_string().as_str()));
    stop(&rt, worker).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn always_500_fails_after_exactly_max_attempts() {
    let dir = TempDir::new();
    let script = Script::always(500, json!({"message": "boom"}));
    let server = provider("/send", &script).await;
    let rt = sync_runtime(open(&dir.0).await, &server).await;
    let id = rt.create(message("hi")).await.unwrap();
    let worker = spawn_run(&rt);
    let call = wait_terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Failed);
    let error = call.error.unwrap();
    assert!(
        error.contains("500") && error.contains("boom") && error.contains("3 attempts"),
        "{error}"
    );
    // Give a wrongly scheduled extra attempt the chance to show up.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let hits = script.hits();
    assert_eq!(hits.len(), 3, "max_attempts = 3");
    assert!(
        hits.iter().all(|h| h.key.as_deref() == Some(id.to_string().as_str())),
        "same key on every attempt"
    );
    let full = rt.get_with_events(id).await.unwrap().unwrap();
    assert_eq!(kinds(&full.events), [EventKind::Initialized, EventKind::Failed]);
    assert_eq!(full.events[0].payload.external_id, Some(id.to_string()));
    stop(&rt, worker).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_fails_at_once_with_one_request() {
    let dir = TempDir::new();
    let script = Script::always(400, json!({"message": "bad voice"}));
    let server = provider("/send", &script).await;
    let rt = sync_runtime(open(&dir.0).await, &server).await;
    let id = rt.create(message("hi")).await.unwrap();
    let worker = spawn_run(&rt);
    let call = wait_terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Failed);
    assert!(call.error.as_deref().unwrap().contains("bad voice"), "{:?}", call.error);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(script.hits().len(), 1);
    stop(&rt, worker).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_is_honoured() {
    let dir = TempDir::new();
    let script = Script::new(|n, _| {
        if n == 0 {
            ResponseTemplate::new(429).insert_header("Retry-After", "1")
        } else {
            ResponseTemplate::new(200).set_body_json(json!({"echoed": "later"}))
        }
    });
    let server = provider("/send", &script).await;
    let rt = sync_runtime(open(&dir.0).await, &server).await;
    let id = rt.create(message("hi")).await.unwrap();
    let worker = spawn_run(&rt);
    let call = wait_terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Completed);
    let hits = script.hits();
    assert_eq!(hits.len(), 2);
    let gap = hits[1].at - hits[0].at;
    // The policy's own backoff is at most 40 ms; the provider asked for 1 s.
    assert!(gap >= Duration::from_millis(990), "retried after {gap:?}");
    assert!(gap < Duration::from_secs(3), "retried after {gap:?}");
    assert_eq!(call.attempts, 2);
    stop(&rt, worker).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_rolled_back_leaves_nothing_committed_runs() {
    let dir = TempDir::new();
    let script = Script::always(200, json!({"echoed": "ok"}));
    let server = provider("/send", &script).await;
    let store = Arc::new(open(&dir.0).await);
    let pool = store.pool().clone();
    sqlx::query("CREATE TABLE orders (id INTEGER PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    let rt = sync_runtime(store.clone(), &server).await;

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id) VALUES (1)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let rolled_back = store
        .create_in_tx(&mut tx, rt.new_call(message("rolled back")).unwrap())
        .await
        .unwrap()
        .id;
    tx.rollback().await.unwrap();
    assert!(rt.get(rolled_back).await.unwrap().is_none());

    let mut tx = pool.begin().await.unwrap();
    sqlx::query("INSERT INTO orders (id) VALUES (2)")
        .execute(&mut *tx)
        .await
        .unwrap();
    let committed = store
        .create_in_tx(&mut tx, rt.new_call(message("committed")).unwrap())
        .await
        .unwrap()
        .id;
    tx.commit().await.unwrap();

    let worker = spawn_run(&rt);
    let call = wait_terminal(&rt, committed).await;
    assert_eq!(call.status, CallStatus::Completed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let hits = script.hits();
    assert_eq!(hits.len(), 1, "only the committed call is sent");
    assert_eq!(hits[0].body, json!({"text": "committed"}));
    let page = rt.list(&ListQuery::new("EngineSync")).await.unwrap();
    assert_eq!(page.calls.len(), 1);
    let orders: i64 = sqlx::query_scalar("SELECT count(*) FROM orders")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(orders, 1, "the committed order only");
    stop(&rt, worker).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_fire_exactly_once_per_terminal_call() {
    let dir = TempDir::new();
    let script = Script::new(|_, request: &Request| {
        let body: Value = serde_json::from_slice(&request.body).unwrap_or_default();
        if body["text"].as_str().is_some_and(|t| t.starts_with("bad")) {
            ResponseTemplate::new(422).set_body_json(json!({"message": "rejected"}))
        } else {
            ResponseTemplate::new(200).set_body_json(json!({"echoed": body["text"]}))
        }
    });
    let server = provider("/send", &script).await;
    let rt = sync_runtime(open(&dir.0).await, &server).await;
    let completed: Arc<Mutex<HashMap<CallId, u32>>> = Arc::default();
    let failed: Arc<Mutex<HashMap<CallId, u32>>> = Arc::default();
    let flaky_once: Arc<Mutex<bool>> = Arc::default();
    {
        let completed = completed.clone();
        let flaky_once = flaky_once.clone();
        rt.on_completed::<engine_sync::EngineSyncCall, _>(move |call| {
            let completed = completed.clone();
            let flaky_once = flaky_once.clone();
            async move {
                assert_eq!(call.status, CallStatus::Completed);
                // The first delivery of "flaky" fails: it must be retried, and then count once.
                if call.request_params == engine_sync::EngineSyncRequest::Send(message("flaky")) {
                    let mut failed_before = flaky_once.lock().unwrap();
                    if !*failed_before {
                        *failed_before = true;
                        return Err("not yet");
                    }
                }
                *completed.lock().unwrap().entry(call.id).or_default() += 1;
                Ok(())
            }
        });
    }
    {
        let failed = failed.clone();
        rt.on_failed::<engine_sync::EngineSyncCall, _>(move |call| {
            let failed = failed.clone();
            async move {
                *failed.lock().unwrap().entry(call.id).or_default() += 1;
            }
        });
    }
    let worker = spawn_run(&rt);
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for n in 0..6 {
        good.push(rt.create(message(&format!("good {n}"))).await.unwrap());
        bad.push(rt.create(message(&format!("bad {n}"))).await.unwrap());
    }
    good.push(rt.create(message("flaky")).await.unwrap());
    for id in good.iter().chain(&bad) {
        wait_terminal(&rt, *id).await;
    }
    wait_until("hooks not delivered in time", || {
        completed.lock().unwrap().len() == good.len() && failed.lock().unwrap().len() == bad.len()
    })
    .await;
    // Let any duplicate delivery happen before counting.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let completed = completed.lock().unwrap().clone();
    let failed = failed.lock().unwrap().clone();
    assert!(good.iter().all(|id| completed.get(id) == Some(&1)), "{completed:?}");
    assert!(bad.iter().all(|id| failed.get(id) == Some(&1)), "{failed:?}");
    assert!(*flaky_once.lock().unwrap(), "the failing delivery happened");
    stop(&rt, worker).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creation_validates_and_is_idempotent_on_the_callers_key() {
    let dir = TempDir::new();
    let script = Script::always(200, json!({"echoed": "ok"}));
    let server = provider("/send", &script).await;
    let rt = sync_runtime(open(&dir.0).await, &server).await;

    let invalid = rt.create(message("")).await.unwrap_err();
    assert!(invalid.is_invalid(), "{invalid}");
    assert!(invalid.to_string().contains("text"), "{invalid}");
    let unknown = rt
        .create_json("Nope", "send", json!({"text": "x"}), None)
        .await
        .unwrap_err();
    assert!(unknown.is_unknown_integration(), "{unknown}");
    assert!(unknown.to_string().contains("`Nope`"), "{unknown}");
    let not_started = rt
        .create_json("EngineSync", "nope", json!({"text": "x"}), None)
        .await
        .unwrap_err();
    assert!(not_started.is_invalid(), "{not_started}");
    let unregistered = rt.create(job("x")).await.unwrap_err();
    assert!(unregistered.is_unknown_integration(), "{unregistered}");
    assert_eq!(rt.count_by_status(None).await.unwrap().total(), 0, "nothing stored");

    let first = rt.create_with_key(message("once"), "order-7").await.unwrap();
    let again = rt.create_with_key(message("once"), "order-7").await.unwrap();
    assert_eq!(first, again);
    let conflict = rt.create_with_key(message("other"), "order-7").await.unwrap_err();
    assert!(conflict.store_error().is_some_and(|e| e.is_conflict()), "{conflict}");
    assert_eq!(rt.count_by_status(Some("EngineSync")).await.unwrap().total(), 1);

    let builder_error = Runtime::builder().store(MemoryStore::new()).build().await.unwrap_err();
    assert!(builder_error.is_config(), "{builder_error}");
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_answer_without_external_id_fails_clearly() {
    let dir = TempDir::new();
    let submit = Script::always(202, json!({"ok": true}));
    let server = provider("/jobs", &submit).await;
    let rt = async_runtime(open(&dir.0).await, &server).await;
    let id = rt.create(job("x")).await.unwrap();
    let worker = spawn_run(&rt);
    let call = wait_terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Failed);
    assert!(
        call.error.as_deref().unwrap().contains("no external id"),
        "{:?}",
        call.error
    );
    let full = rt.get_with_events(id).await.unwrap().unwrap();
    assert_eq!(kinds(&full.events), [EventKind::Initialized, EventKind::Failed]);
    stop(&rt, worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_gives_up_after_the_deadline() {
    let submit = Script::always(202, json!({"job_id": "slow"}));
    let status = Script::always(200, json!({"state": "running"}));
    let server = provider("/jobs", &submit).await;
    answer_polls(&server, &status).await;
    let rt = async_runtime(MemoryStore::new(), &server).await;
    let started = Instant::now();
    let id = rt.create(job("x")).await.unwrap();
    let worker = spawn_run(&rt);
    let call = wait_terminal(&rt, id).await;
    let took = started.elapsed();
    assert_eq!(call.status, CallStatus::Failed);
    assert!(call.error.as_deref().unwrap().contains("timed out"), "{:?}", call.error);
    // give_up_after_s = 2, polls capped at 100 ms apart.
    assert!(
        took >= Duration::from_millis(1_900) && took < Duration::from_secs(4),
        "{took:?}"
    );
    let polls = status.hits().len();
    assert!((10..=100).contains(&polls), "{polls} polls");
    stop(&rt, worker).await;
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_and_a_poll_agree_on_one_terminal_event() {
    let dir = TempDir::new();
    let submit = Script::always(202, json!({"job_id": "j-9"}));
    let status = Script::always(200, json!({"state": "done", "url": "poll"}));
    let server = provider("/jobs", &submit).await;
    answer_polls(&server, &status).await;
    let rt = async_runtime(open(&dir.0).await, &server).await;
    let id = rt.create(job("x")).await.unwrap();
    let worker = spawn_run(&rt);
    let call = wait_terminal(&rt, id).await;
    assert_eq!(call.response_data, Some(json!({"url": "poll"})));
    // A late webhook saying the same thing records nothing new.
    let reply = integration_runtime::Reply {
        http_status: 0,
        external_id: Some("j-9".into()),
        status: Some(integration_runtime::RemoteStatus::Completed),
        result: Some(json!({"url": "webhook"})),
        error: None,
    };
    let outcomes = rt.record_reply("EngineAsync", "j-9", &reply).await.unwrap();
    assert!(
        !outcomes.is_empty() && outcomes.iter().all(|o| o.is_duplicate()),
        "{outcomes:?}"
    );
    let full = rt.get_with_events(id).await.unwrap().unwrap();
    let terminal = full
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Completed | EventKind::Failed))
        .count();
    assert_eq!(terminal, 1);
    assert_eq!(full.call.response_data, Some(json!({"url": "poll"})));
    stop(&rt, worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_bounds_calls_in_flight_and_shutdown_drains() {
    let script = Script::slow(json!({"echoed": "slow"}), Duration::from_millis(150));
    let server = provider("/send", &script).await;
    let rt = sync_builder(MemoryStore::new(), &server)
        .concurrency(3)
        .claim_batch(10)
        .build()
        .await
        .unwrap();
    let ids = create_messages(&rt, 9).await;
    let started = Instant::now();
    let worker = spawn_run(&rt);
    for id in &ids {
        wait_terminal(&rt, *id).await;
    }
    // 9 calls of 150 ms, 3 at a time: at least 3 rounds.
    assert!(
        started.elapsed() >= Duration::from_millis(440),
        "{:?}",
        started.elapsed()
    );
    // Arrival times: never more than 3 requests within one 150 ms window.
    let hits = script.hits();
    for (i, hit) in hits.iter().enumerate() {
        let window = hits[i..]
            .iter()
            .filter(|h| h.at.duration_since(hit.at) < Duration::from_millis(140))
            .count();
        assert!(window <= 3, "{window} requests in flight at once");
    }

    // Shutdown while calls are in flight: they finish within the grace.
    let late = rt.create(message("late")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(60)).await;
    stop(&rt, worker).await;
    assert_eq!(rt.get(late).await.unwrap().unwrap().status, CallStatus::Completed);
    let again = tokio::time::timeout(Duration::from_secs(1), rt.run())
        .await
        .expect("a stopped runtime returns at once");
    assert!(again.is_ok(), "a stopped runtime returns at once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_past_its_deadline_releases_calls_for_another_worker() {
    let script = Script::new(|n, _| {
        let answer = ResponseTemplate::new(200).set_body_json(json!({"echoed": "x"}));
        if n == 0 {
            answer.set_delay(Duration::from_secs(3))
        } else {
            answer
        }
    });
    let server = provider("/send", &script).await;
    let store = Arc::new(MemoryStore::new());
    let first = sync_builder(store.clone(), &server)
        .worker_id("first")
        .build()
        .await
        .unwrap();
    let id = first.create(message("slow")).await.unwrap();
    let worker = spawn_run(&first);
    let started = Instant::now();
    while script.hits().is_empty() {
        assert!(started.elapsed() < LIMIT);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let stopping = Instant::now();
    tokio::time::timeout(LIMIT, first.shutdown(Duration::from_millis(100)))
        .await
        .unwrap();
    worker.await.unwrap();
    assert!(stopping.elapsed() < Duration::from_secs(2), "{:?}", stopping.elapsed());
    let call = first.get(id).await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Pending);
    assert_eq!(call.lease_owner, None, "released, not left to expire");

    let second = sync_builder(store, &server).worker_id("second").build().await.unwrap();
    let worker = spawn_run(&second);
    let call = wait_terminal(&second, id).await;
    assert_eq!(call.status, CallStatus::Completed);
    let keys: Vec<_> = script.hits().into_iter().map(|h| h.key).collect();
    assert_eq!(keys, vec![Some(id.to_string()); 2], "re-sent with the same key");
    stop(&second, worker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_claimed_ahead_wait_for_a_slot_and_go_back_at_shutdown() {
    let script = Script::slow(json!({"echoed": "x"}), Duration::from_secs(3));
    let server = provider("/send", &script).await;
    let rt = sync_builder(MemoryStore::new(), &server)
        .concurrency(2)
        .claim_batch(4)
        .build()
        .await
        .unwrap();
    let ids = create_messages(&rt, 4).await;
    let worker = spawn_run(&rt);
    let started = Instant::now();
    // Two slots busy, and one call (half a batch of two slots) claimed ahead.
    loop {
        let leased = rt.list(&ListQuery::new("EngineSync")).await.unwrap();
        let leased = leased.calls.iter().filter(|c| c.lease_owner.is_some()).count();
        if script.hits().len() == 2 && leased == 3 {
            break;
        }
        assert!(
            started.elapsed() < LIMIT,
            "hits {}, leased {leased}",
            script.hits().len()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        script.hits().len(),
        2,
        "a call claimed ahead does not run without a slot"
    );
    tokio::time::timeout(LIMIT, rt.shutdown(Duration::from_millis(100)))
        .await
        .unwrap();
    worker.await.unwrap();
    for id in ids {
        let call = rt.get(id).await.unwrap().unwrap();
        assert_eq!(call.status, CallStatus::Pending);
        assert_eq!(call.lease_owner, None, "call {id} released, not left to expire");
    }
}

/// A call claimed ahead waits for a slot without a heartbeat. If its lease
/// runs out meanwhile, another worker may own it: it must not be started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_whose_lease_ran_out_while_waiting_for_a_slot_is_not_started() {
    let script = Script::slow(json!({"echoed": "x"}), Duration::from_millis(1500));
    let server = provider("/send", &script).await;
    let store = Arc::new(MemoryStore::new());
    let first = sync_builder(store.clone(), &server)
        .worker_id("first")
        .concurrency(2)
        .claim_batch(4)
        .lease(Duration::from_millis(300))
        .build()
        .await
        .unwrap();
    let ids = create_messages(&first, 3).await;
    let first_worker = spawn_run(&first);
    // Two calls run; the third waits in the first worker for a slot, leased.
    wait_until("two calls sent", || script.hits().len() == 2).await;
    // Its lease runs out; a second worker claims and sends it.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let second = sync_builder(store.clone(), &server)
        .worker_id("second")
        .lease(Duration::from_secs(5))
        .build()
        .await
        .unwrap();
    let second_worker = spawn_run(&second);
    for id in &ids {
        assert_eq!(wait_terminal(&first, *id).await.status, CallStatus::Completed);
    }
    // The first worker's slots came free while the second still ran the call.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut keys: Vec<_> = script.hits().into_iter().filter_map(|h| h.key).collect();
    keys.sort();
    let mut expected: Vec<_> = ids.iter().map(ToString::to_string).collect();
    expected.sort();
    assert_eq!(keys, expected, "each call sent once");
    stop(&first, first_worker).await;
    stop(&second, second_worker).await;
}

/// The engine on PostgreSQL, when `INTEGRATION_TEST_DATABASE_URL` is set
/// (skipped otherwise): calls finish and hooks fire once.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_and_hooks_on_postgres() {
    let Some((store, schema)) = postgres_store("engine").await else {
        return;
    };
    let pool = store.pool().clone();
    let script = Script::new(|n, _| {
        if n == 0 {
            ResponseTemplate::new(503)
        } else {
            ResponseTemplate::new(200).set_body_json(json!({"echoed": "pg"}))
        }
    });
    let server = provider("/send", &script).await;
    let rt = sync_runtime(store, &server).await;
    let fired = record_completions(&rt);
    let worker = spawn_run(&rt);
    let id = rt.create(message("pg")).await.unwrap();
    let call = wait_terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.attempts, 2, "one retry after the 503");
    wait_until("hook not fired", || !fired.lock().unwrap().is_empty()).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*fired.lock().unwrap(), vec![id]);
    stop(&rt, worker).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&pool)
        .await
        .unwrap();
}

#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_undelivered_hook_is_delivered_after_a_restart() {
    let dir = TempDir::new();
    let script = Script::always(200, json!({"echoed": "ok"}));
    let server = provider("/send", &script).await;

    // First process: its hook always fails, then it stops.
    let first = sync_runtime(open(&dir.0).await, &server).await;
    let tries = Arc::new(Mutex::new(0u32));
    {
        let tries = tries.clone();
        first.on_completed::<engine_sync::EngineSyncCall, _>(move |_| {
            let tries = tries.clone();
            async move {
                *tries.lock().unwrap() += 1;
                Err::<(), _>("downstream unavailable")
            }
        });
    }
    let id = first.create(message("hi")).await.unwrap();
    let worker = spawn_run(&first);
    wait_terminal(&first, id).await;
    wait_until("the failing hook is not retried", || *tries.lock().unwrap() >= 2).await;
    stop(&first, worker).await;
    drop(first);

    // Second process on the same file: delivers it, once.
    let second = sync_runtime(open(&dir.0).await, &server).await;
    let delivered = record_completions(&second);
    let worker = spawn_run(&second);
    wait_until("not delivered after the restart", || {
        !delivered.lock().unwrap().is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(*delivered.lock().unwrap(), vec![id]);
    stop(&second, worker).await;
    assert_eq!(script.hits().len(), 1, "the call itself ran once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_circuit_postpones_without_spending_an_attempt() {
    let script = Script::always(500, json!({"message": "down"}));
    let server = provider("/send", &script).await;
    let integration =
        engine_breaker::EngineBreaker::new(engine_breaker::EngineBreakerConfig { base_url: server.uri() }).unwrap();
    let rt = fast(Runtime::builder())
        .store(MemoryStore::new())
        .integration(integration)
        .build()
        .await
        .unwrap();
    let id = rt.create(engine_breaker::Message { text: "x".into() }).await.unwrap();
    let worker = spawn_run(&rt);
    let call = wait_terminal(&rt, id).await;
    // Two failures open the circuit; the third attempt waits for it to
    // half-open instead of failing with "circuit open" after two requests.
    assert_eq!(call.status, CallStatus::Failed);
    let error = call.error.unwrap();
    assert!(error.contains("500") && error.contains("3 attempts"), "{error}");
    assert_eq!(script.hits().len(), 3);
    assert_eq!(call.attempts, 3, "the refused turn did not count");
    let hits = script.hits();
    assert!(
        hits[2].at - hits[1].at >= Duration::from_millis(250),
        "{:?}",
        hits[2].at - hits[1].at
    );
    stop(&rt, worker).await;
}

/// A turn's last write takes effect before its answer arrives; meanwhile the
/// worker claims the call again (its retry is due) while still counting it
/// as running here. That claim must run it once the turn is over, not sit on
/// it until the lease runs out (a minute here, past the test's limit).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_claimed_again_before_its_turn_ended_runs_when_the_turn_ends() {
    let script = Script::new(|n, _| match n {
        0 => ResponseTemplate::new(500).set_body_json(json!({"message": "once"})),
        _ => ResponseTemplate::new(200).set_body_json(json!({"echoed": "ok"})),
    });
    let server = provider("/send", &script).await;
    let store = Arc::new(Quirky::new().late_turn_answers(Duration::from_millis(300)));
    let rt = fast(Runtime::builder())
        .store(store.clone())
        .integration(sync_integration(&server))
        .lease(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let worker = spawn_run(&rt);
    let id = rt.create(message("hi")).await.unwrap();
    let call = wait_terminal(&rt, id).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!((call.attempts, script.hits().len()), (2, 2));
    stop(&rt, worker).await;
}

/// The transactional outbox on PostgreSQL, when
/// `INTEGRATION_TEST_DATABASE_URL` is set (skipped otherwise): a call
/// created in a rolled back transaction does not exist; one created in a
/// committed transaction exists together with the transaction's own row,
/// is invisible and unsent until the commit, and a running worker then
/// completes it.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_on_postgres() {
    let Some((store, schema)) = postgres_store("outbox").await else {
        return;
    };
    let pool = store.pool().clone();
    let orders = format!("\"{schema}\".orders");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE TABLE {orders} (id integer PRIMARY KEY)"
    )))
    .execute(&pool)
    .await
    .unwrap();
    let count_orders = || {
        let pool = pool.clone();
        let sql = format!("SELECT count(*) FROM {orders}");
        async move {
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&pool)
                .await
                .unwrap()
        }
    };
    let script = Script::always(200, json!({"echoed": "pg"}));
    let server = provider("/send", &script).await;
    let store = Arc::new(store);
    let rt = sync_runtime(store.clone(), &server).await;
    let worker = spawn_run(&rt);

    // Rolled back: neither the order nor its call.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {orders} (id) VALUES (1)")))
        .execute(&mut *tx)
        .await
        .unwrap();
    let rolled_back = store
        .create_in_tx(&mut tx, rt.new_call(message("rolled back")).unwrap())
        .await
        .unwrap()
        .id;
    tx.rollback().await.unwrap();
    assert!(
        rt.get(rolled_back).await.unwrap().is_none(),
        "a rolled back call does not exist"
    );
    assert_eq!(count_orders().await, 0);

    // Committed: the order and its call.
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {orders} (id) VALUES (2)")))
        .execute(&mut *tx)
        .await
        .unwrap();
    let committed = store
        .create_in_tx(
            &mut tx,
            rt.new_call(message("committed")).unwrap().idempotency_key("order-2"),
        )
        .await
        .unwrap()
        .id;
    // Uncommitted: invisible to other connections, so no worker sends it.
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rt.get(committed).await.unwrap().is_none(), "visible before the commit");
    assert!(script.hits().is_empty(), "sent before the commit");
    tx.commit().await.unwrap();

    let call = wait_terminal(&rt, committed).await;
    assert_eq!(call.status, CallStatus::Completed);
    assert_eq!(call.response_data, Some(json!({"echoed": "pg"})));
    assert_eq!(call.idempotency_key.as_deref(), Some("order-2"));
    assert_eq!(count_orders().await, 1);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let hits = script.hits();
    assert_eq!(hits.len(), 1, "only the committed call is sent: {hits:?}");
    assert_eq!(hits[0].body, json!({"text": "committed"}));
    let page = rt.list(&ListQuery::new("EngineSync")).await.unwrap();
    assert_eq!(page.calls.len(), 1);
    // The key is the call's: replaying it outside a transaction creates nothing.
    let again = rt.create_with_key(message("committed"), "order-2").await.unwrap();
    assert_eq!(again, committed);
    stop(&rt, worker).await;

    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{schema}\" CASCADE")))
        .execute(&pool)
        .await
        .unwrap();
}
