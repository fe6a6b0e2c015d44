//! Calls over time, end to end: deadlines, failure kinds and cancellation,
//! on a real SQLite file and on PostgreSQL (when
//! `INTEGRATION_TEST_DATABASE_URL` is set), against a wiremock provider on
//! 127.0.0.1. Webhook news is recorded through `Runtime::record_reply`, the
//! event sink the receiver uses too.

#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_runtime::{
    CallId, CallRecord, CallStatus, EventKind, EventSource, FailureKind, IntoStore, Runtime, Secret, Store,
};
use serde_json::{json, Value};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod runtime_support;
mod webhook_support;

use runtime_support::{postgres_store, spawn_run, stop};
use webhook_support::TempDir;

integration_runtime::integration!("tests/specs/engine_lifetime.toml");

use engine_life::{EngineLife, EngineLifeConfig, Job};

const LIMIT: Duration = Duration::from_secs(20);

/// The stores every scenario runs on: an SQLite file, and a fresh schema
/// on PostgreSQL when `INTEGRATION_TEST_DATABASE_URL` is set (said when not).
async fn stores(dir: &TempDir) -> Vec<(&'static str, Arc<dyn Store>)> {
    let (_, sqlite) = webhook_support::sqlite_store(dir).await;
    let mut stores = vec![("sqlite", sqlite)];
    // Without the URL, `postgres_store` says the PostgreSQL part is skipped.
    if let Some((store, _)) = postgres_store("over_time").await {
        stores.push(("postgres", Arc::new(store)));
    }
    stores
}

/// Every request the provider saw, by path.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<String>>>);

impl Seen {
    fn paths(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

/// Answers with `answer(n)` (the `n`th request of its route) and records the path.
struct Recording<F> {
    seen: Seen,
    count: AtomicUsize,
    answer: F,
}

impl<F> Recording<F> {
    fn new(seen: &Seen, answer: F) -> Self {
        Recording {
            seen: seen.clone(),
            count: AtomicUsize::new(0),
            answer,
        }
    }
}

impl<F: Fn(usize) -> ResponseTemplate + Send + Sync + 'static> Respond for Recording<F> {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.seen.0.lock().unwrap().push(request.url.path().to_owned());
        (self.answer)(self.count.fetch_add(1, Ordering::SeqCst))
    }
}

/// A provider whose starts answer `start(n)` and whose cancel endpoint
/// answers `cancel(n)`.
async fn provider(
    start: impl Fn(usize) -> ResponseTemplate + Send + Sync + 'static,
    cancel: impl Fn(usize) -> ResponseTemplate + Send + Sync + 'static,
) -> (MockServer, Seen) {
    let server = MockServer::start().await;
    let seen = Seen::default();
    Mock::given(method("POST"))
        .and(path("/jobs"))
        .respond_with(Recording::new(&seen, start))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path_regex("^/jobs/[^/]+/cancel$"))
        .respond_with(Recording::new(&seen, cancel))
        .mount(&server)
        .await;
    (server, seen)
}

/// A start answer: the provider accepted job `job-{n}`.
fn accepted(n: usize) -> ResponseTemplate {
    ResponseTemplate::new(202).set_body_json(json!({ "job_id": format!("job-{n}") }))
}

fn answer(status: u16, body: Value) -> impl Fn(usize) -> ResponseTemplate + Send + Sync + 'static {
    move |_| ResponseTemplate::new(status).set_body_json(body.clone())
}

async fn runtime(store: Arc<dyn Store>, server: &MockServer) -> Runtime {
    let life = EngineLife::new(EngineLifeConfig {
        base_url: server.uri(),
        webhook_secret: Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
    })
    .unwrap();
    Runtime::builder()
        .store(store.into_store())
        .integration(life)
        .poll_idle(Duration::from_millis(20))
        .lease(Duration::from_secs(5))
        .build()
        .await
        .unwrap()
}

fn job(text: &str) -> Job {
    Job { text: text.into() }
}

/// Waits until `id` satisfies `done`, failing with `what` after [`LIMIT`].
async fn wait_for(rt: &Runtime, id: CallId, what: &str, done: impl Fn(&CallRecord) -> bool) -> CallRecord {
    let started = Instant::now();
    loop {
        let call = rt.get(id).await.unwrap().expect("call exists");
        if done(&call) {
            return call;
        }
        assert!(started.elapsed() < LIMIT, "{what}: {call:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn wait_processing(rt: &Runtime, id: CallId) -> CallRecord {
    wait_for(rt, id, "call not processing in time", |c| {
        c.status == CallStatus::Processing && c.lease_owner.is_none()
    })
    .await
}

async fn wait_terminal(rt: &Runtime, id: CallId) -> CallRecord {
    wait_for(rt, id, "call not terminal in time", |c| {
        c.is_terminal() && c.lease_owner.is_none()
    })
    .await
}

/// The provider's news about `external_id`, read as the webhook receiver
/// reads a verified delivery, and recorded through the runtime's sink.
async fn webhook(rt: &Runtime, external_id: &str, body: Value) -> Vec<integration_runtime::AppendOutcome> {
    let reply = rt
        .integration("EngineLife")
        .unwrap()
        .read_webhook(&body)
        .expect("the spec has a webhook")
        .unwrap();
    rt.record_reply("EngineLife", external_id, &reply).await.unwrap()
}

async fn terminal_events(rt: &Runtime, id: CallId) -> Vec<integration_runtime::EventRecord> {
    let logged = rt.get_with_events(id).await.unwrap().unwrap();
    logged
        .events
        .into_iter()
        .filter(|e| e.applied && matches!(e.kind, EventKind::Completed | EventKind::Failed))
        .collect()
}

#[tokio::test]
async fn a_webhook_only_call_fails_at_its_deadline_and_a_late_webhook_does_not_move_it() {
    let dir = TempDir::new();
    for (name, store) in stores(&dir).await {
        let (server, _) = provider(accepted, answer(200, json!({}))).await;
        let rt = runtime(store, &server).await;
        let worker = spawn_run(&rt);
        let id = rt.create(job("late")).await.unwrap();
        let processing = wait_processing(&rt, id).await;
        let deadline = processing.deadline_at.expect("an async call has a deadline");
        let from_creation = deadline - processing.created_at;
        assert!(
            (900..=1100).contains(&from_creation.num_milliseconds()),
            "{name}: give_up_after_s = 1 counts from when the call is due, got {from_creation}"
        );
        assert_eq!(
            processing.next_run_at,
            Some(deadline),
            "{name}: scheduled for its deadline"
        );

        let failed = wait_terminal(&rt, id).await;
        assert_eq!(failed.status, CallStatus::Failed, "{name}");
        assert_eq!(failed.error_kind, Some(FailureKind::Timeout), "{name}: {failed:?}");
        assert!(
            failed.completed_at.unwrap() >= deadline,
            "{name}: not before its deadline"
        );
        let error = failed.error.as_deref().unwrap();
        assert!(
            error.contains("deadline") && error.contains("give_up_after_s"),
            "{name}: {error}"
        );

        let late = webhook(
            &rt,
            &failed.external_id.clone().unwrap(),
            json!({"job_id": "job-0", "state": "done", "url": "u"}),
        )
        .await;
        assert!(late.iter().all(|o| !o.is_applied()), "{name}: {late:?}");
        let after = rt.get(id).await.unwrap().unwrap();
        assert_eq!(
            (after.status, after.error_kind, after.response_data),
            (CallStatus::Failed, Some(FailureKind::Timeout), None),
            "{name}: a late completion never moves a timed-out call"
        );
        assert_eq!(terminal_events(&rt, id).await.len(), 1, "{name}");
        stop(&rt, worker).await;
    }
}

#[tokio::test]
async fn a_completion_before_the_deadline_wins_and_the_deadline_turn_changes_nothing() {
    let dir = TempDir::new();
    for (name, store) in stores(&dir).await {
        let (server, _) = provider(accepted, answer(200, json!({}))).await;
        let rt = runtime(store, &server).await;
        let worker = spawn_run(&rt);
        let id = rt.create(job("quick")).await.unwrap();
        let processing = wait_processing(&rt, id).await;
        webhook(
            &rt,
            "job-0",
            json!({"job_id": "job-0", "state": "done", "url": "https://cdn/x"}),
        )
        .await;
        let done = wait_terminal(&rt, id).await;
        assert_eq!(done.status, CallStatus::Completed, "{name}");
        assert_eq!(done.next_run_at, None, "{name}: the deadline turn is unscheduled");
        // Past the deadline, nothing happened to it.
        let wait = (processing.deadline_at.unwrap() - chrono::Utc::now())
            .to_std()
            .unwrap_or_default();
        tokio::time::sleep(wait + Duration::from_millis(200)).await;
        let later = rt.get(id).await.unwrap().unwrap();
        assert_eq!(
            (later.status, later.error_kind),
            (CallStatus::Completed, None),
            "{name}"
        );
        stop(&rt, worker).await;
    }
}

#[tokio::test]
async fn failures_carry_their_kind() {
    let dir = TempDir::new();
    for (name, store) in stores(&dir).await {
        // By the text of the job: refused (4xx), 5xx twice (the retry policy
        // allows two attempts), no external id in the answer, or accepted.
        let server = MockServer::start().await;
        for (text, status, body) in [
            ("refused", 422, json!({"message": "text too long"})),
            ("broken", 503, json!({"message": "down"})),
            ("odd", 200, json!({"hello": "world"})),
            ("fine", 202, json!({"job_id": "job-f"})),
            ("sad", 202, json!({"job_id": "job-s"})),
            ("stopped", 202, json!({"job_id": "job-c"})),
        ] {
            Mock::given(method("POST"))
                .and(path("/jobs"))
                .and(wiremock::matchers::body_json(json!({ "text": text })))
                .respond_with(ResponseTemplate::new(status).set_body_json(body))
                .mount(&server)
                .await;
        }
        let rt = runtime(store, &server).await;
        let worker = spawn_run(&rt);
        let mut kinds = Vec::new();
        for text in ["refused", "broken", "odd"] {
            let id = rt.create(job(text)).await.unwrap();
            kinds.push((text, wait_terminal(&rt, id).await.error_kind));
        }
        for (text, external_id, state) in [("sad", "job-s", "error"), ("stopped", "job-c", "canceled")] {
            let id = rt.create(job(text)).await.unwrap();
            wait_processing(&rt, id).await;
            webhook(
                &rt,
                external_id,
                json!({"job_id": external_id, "state": state, "message": "no"}),
            )
            .await;
            kinds.push((text, wait_terminal(&rt, id).await.error_kind));
        }
        assert_eq!(
            kinds,
            vec![
                ("refused", Some(FailureKind::Rejected)),
                ("broken", Some(FailureKind::Exhausted)),
                ("odd", Some(FailureKind::InvalidAnswer)),
                ("sad", Some(FailureKind::ProviderFailed)),
                ("stopped", Some(FailureKind::Cancelled)),
            ],
            "{name}"
        );
        // The typed record has it too.
        let failed = rt
            .list(&integration_runtime::ListQuery::new("EngineLife").status(CallStatus::Failed))
            .await
            .unwrap();
        let typed: engine_life::EngineLifeCall = rt.get_typed(failed.calls[0].id).await.unwrap().unwrap();
        assert_eq!(typed.error_kind, failed.calls[0].error_kind, "{name}");
        stop(&rt, worker).await;
    }
}

#[tokio::test]
async fn a_pending_call_is_cancelled_at_once_and_never_sent() {
    let dir = TempDir::new();
    for (name, store) in stores(&dir).await {
        let (server, seen) = provider(accepted, answer(200, json!({}))).await;
        let rt = runtime(store, &server).await;
        // No worker yet: the call stays pending.
        let id = rt.create(job("never")).await.unwrap();
        let cancelled = rt.cancel(id, "order withdrawn").await.unwrap();
        assert_eq!(cancelled.status, CallStatus::Failed, "{name}");
        assert_eq!(cancelled.error_kind, Some(FailureKind::Cancelled), "{name}");
        assert_eq!(cancelled.error.as_deref(), Some("cancelled: order withdrawn"), "{name}");
        assert_eq!(cancelled.next_run_at, None, "{name}");

        let worker = spawn_run(&rt);
        let other = rt.create(job("sent")).await.unwrap();
        wait_processing(&rt, other).await;
        assert_eq!(
            seen.paths(),
            vec!["/jobs".to_owned()],
            "{name}: only the other call was sent"
        );
        let log = rt.get_with_events(id).await.unwrap().unwrap();
        let kinds: Vec<_> = log.events.iter().map(|e| (e.kind, e.payload.source)).collect();
        assert_eq!(
            kinds,
            vec![(EventKind::Failed, Some(EventSource::Cancel))],
            "{name}: never sent, so nothing initialized it"
        );
        assert_eq!(cancelled.external_id, Some(id.to_string()), "{name}: the generated id");

        let again = rt.cancel(id, "twice").await.unwrap_err();
        assert!(again.is_terminal(), "{name}: {again}");
        assert_eq!(again.status(), Some(CallStatus::Failed), "{name}");
        let unknown = rt.cancel(CallId::new(), "").await.unwrap_err();
        assert!(unknown.is_not_found(), "{name}: {unknown}");
        stop(&rt, worker).await;
    }
}

#[tokio::test]
async fn a_processing_call_is_stopped_through_the_cancel_endpoint() {
    let dir = TempDir::new();
    for (name, store) in stores(&dir).await {
        // The first cancel is refused, the second accepted but not done, the
        // third confirmed.
        let (server, seen) = provider(accepted, |n| match n {
            0 => ResponseTemplate::new(409).set_body_json(json!({"message": "busy"})),
            1 => ResponseTemplate::new(202).set_body_json(json!({"state": "stopping"})),
            _ => ResponseTemplate::new(200).set_body_json(json!({"state": "canceled"})),
        })
        .await;
        let rt = runtime(store, &server).await;
        let worker = spawn_run(&rt);

        let refused_then_stopping = rt.create(job("a")).await.unwrap();
        wait_processing(&rt, refused_then_stopping).await;
        let refused = rt.cancel(refused_then_stopping, "").await.unwrap_err();
        assert!(refused.is_provider(), "{name}: {refused}");
        assert_eq!(refused.client_error().and_then(|e| e.status()), Some(409), "{name}");
        let still = rt.cancel(refused_then_stopping, "stop").await.unwrap();
        assert_eq!(
            still.status,
            CallStatus::Processing,
            "{name}: the provider is stopping it"
        );
        // The provider reports the end by webhook.
        webhook(&rt, "job-0", json!({"job_id": "job-0", "state": "canceled"})).await;
        let ended = wait_terminal(&rt, refused_then_stopping).await;
        assert_eq!(ended.error_kind, Some(FailureKind::Cancelled), "{name}");

        let confirmed = rt.create(job("b")).await.unwrap();
        wait_processing(&rt, confirmed).await;
        let cancelled = rt.cancel(confirmed, "no longer needed").await.unwrap();
        assert_eq!(
            (cancelled.status, cancelled.error_kind),
            (CallStatus::Failed, Some(FailureKind::Cancelled)),
            "{name}"
        );
        assert_eq!(
            cancelled.error.as_deref(),
            Some("cancelled: no longer needed"),
            "{name}"
        );
        let cancels = seen.paths().into_iter().filter(|p| p.ends_with("/cancel")).count();
        assert_eq!(
            cancels,
            3,
            "{name}: two for the first call, one for the second: {:?}",
            seen.paths()
        );
        stop(&rt, worker).await;
    }
}

#[tokio::test]
async fn a_cancel_racing_a_completion_ends_in_exactly_one_terminal_event() {
    let dir = TempDir::new();
    for (name, store) in stores(&dir).await {
        // The cancel endpoint confirms after a short, varying delay, while a
        // webhook completes the same call.
        let (server, _) = provider(accepted, |n| {
            ResponseTemplate::new(200)
                .set_body_json(json!({"state": "canceled"}))
                .set_delay(Duration::from_millis((n % 4) as u64 * 3))
        })
        .await;
        let rt = runtime(store, &server).await;
        let worker = spawn_run(&rt);
        let (mut cancels_won, mut completions_won) = (0, 0);
        for round in 0..12 {
            let id = rt.create(job(&format!("r{round}"))).await.unwrap();
            let external_id = wait_processing(&rt, id).await.external_id.unwrap();
            let body = json!({"job_id": external_id, "state": "done", "url": "u"});
            let (cancelled, completed) = tokio::join!(rt.cancel(id, "race"), webhook(&rt, &external_id, body));
            let call = wait_terminal(&rt, id).await;
            assert_eq!(terminal_events(&rt, id).await.len(), 1, "{name}: round {round}");
            match cancelled {
                Ok(record) => {
                    assert_eq!(record.error_kind, Some(FailureKind::Cancelled), "{name}");
                    assert_eq!(call.status, CallStatus::Failed, "{name}");
                    assert!(
                        completed.iter().all(|o| !o.is_applied() || !o.status().is_terminal()),
                        "{name}"
                    );
                    cancels_won += 1;
                }
                Err(error) => {
                    assert!(error.is_terminal(), "{name}: {error}");
                    assert_eq!(error.status(), Some(CallStatus::Completed), "{name}");
                    assert_eq!(call.status, CallStatus::Completed, "{name}");
                    completions_won += 1;
                }
            }
        }
        eprintln!("{name}: cancel won {cancels_won}, completion won {completions_won}");
        stop(&rt, worker).await;
    }
}

#[tokio::test]
async fn calls_a_changed_spec_cannot_finish_fail_at_startup_naming_what_changed() {
    let dir = TempDir::new();
    for (name, store) in stores(&dir).await {
        let (server, seen) = provider(accepted, answer(200, json!({}))).await;
        let old = |endpoint: &str, params: Value| {
            integration_runtime::NewCall::new("EngineLife", endpoint, params)
                .spec_fingerprint("fnv1a64:0000000000000000")
        };
        let gone = store.create(old("submit_v1", json!({"text": "a"}))).await.unwrap().id;
        let undecodable = store.create(old("submit", json!({"txt": "b"}))).await.unwrap().id;
        let still_fine = store.create(old("submit", json!({"text": "c"}))).await.unwrap().id;

        let reporting = runtime(Arc::clone(&store), &server).await;
        let mut stranded = reporting.stranded_calls().await.unwrap();
        stranded.sort_by_key(|call| call.endpoint.clone());
        let found: Vec<_> = stranded.iter().map(|call| (call.call_id, call.status)).collect();
        assert_eq!(
            found,
            vec![(undecodable, CallStatus::Pending), (gone, CallStatus::Pending)],
            "{name}: {stranded:?}"
        );
        assert!(
            stranded[1]
                .reason
                .contains("endpoint `submit_v1` is no longer in the spec"),
            "{name}"
        );
        assert!(stranded[0].reason.contains("no longer fit endpoint `submit`"), "{name}");
        assert_eq!(stranded[0].created_under.as_deref(), Some("fnv1a64:0000000000000000"));

        let rt = runtime(store, &server).await;
        let worker = spawn_run(&rt);
        for id in [gone, undecodable] {
            let failed = wait_terminal(&rt, id).await;
            assert_eq!(failed.error_kind, Some(FailureKind::SpecChanged), "{name}: {failed:?}");
            assert!(
                failed
                    .error
                    .unwrap()
                    .starts_with("the spec changed since the call was created"),
                "{name}"
            );
        }
        // A call the new spec can finish runs as usual, and nothing was sent for the others.
        wait_processing(&rt, still_fine).await;
        assert_eq!(seen.paths(), vec!["/jobs".to_owned()], "{name}");
        assert!(rt.stranded_calls().await.unwrap().is_empty(), "{name}");
        stop(&rt, worker).await;
    }
}
