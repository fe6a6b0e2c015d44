//! One event pipeline: provider news reaches the store the same way
//! whatever reports it (the worker's start and polls, a webhook through
//! `Runtime::router`, an operator's refresh, `Runtime::record_reply`), so a
//! webhook completion is published, counted and wakes the hooks like a
//! worker's, and a call never has two terminal events whichever paths race.

#![cfg(all(feature = "sqlite", feature = "server"))]

mod runtime_support;
mod webhook_support;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use integration_runtime::webhook::signature::standard;
use integration_runtime::{
    CallId, CallStatus, CallWithEvents, EventKind, EventSource, Integration, RemoteStatus, Reply, Runtime, Secret,
};
use runtime_support::{spawn_run, stop};
use serde_json::{json, Value};
use webhook_support::{answer, metric, parse_prometheus, serve, sqlite_store, TempDir};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

integration_runtime::integration!("tests/specs/webhook_tts.toml");

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const OPS_TOKEN: &str = "ops-token";
/// How long anything here may take before the test gives up.
const LIMIT: Duration = Duration::from_secs(20);

fn tts(server: &MockServer) -> Arc<dyn Integration> {
    Arc::new(
        hook_tts::HookTts::new(hook_tts::HookTtsConfig {
            base_url: server.uri(),
            token: Secret::new("t"),
            webhook_secret: Secret::new(SECRET),
        })
        .unwrap(),
    )
}

/// A provider that accepts every synthesis as `task-<n>` and answers polls
/// with `poll(task)`.
async fn provider(poll: impl Fn(&str) -> ResponseTemplate + Send + Sync + 'static) -> MockServer {
    let server = MockServer::start().await;
    let next = std::sync::atomic::AtomicUsize::new(0);
    Mock::given(method("POST"))
        .and(path("/tasks"))
        .respond_with(move |_: &Request| {
            let n = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            ResponseTemplate::new(200).set_body_json(json!({"task_id": format!("task-{n}")}))
        })
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex("^/tasks/.+$"))
        .respond_with(move |request: &Request| {
            let task = request.url.path().trim_start_matches("/tasks/").to_owned();
            poll(&task)
        })
        .mount(&server)
        .await;
    server
}

fn running(task: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({"task_id": task, "state": "running"}))
}

fn done_body(task: &str, url: &str) -> Value {
    json!({"task_id": task, "state": "done", "audio_url": url, "duration": 1500})
}

async fn deliver(base: &str, delivery: &str, body: &Value) -> webhook_support::Answer {
    let body = body.to_string();
    let headers: HeaderMap = standard::sign(SECRET, delivery, chrono::Utc::now().timestamp(), body.as_bytes()).unwrap();
    let mut request = reqwest::Client::new().post(format!("{base}/webhooks/tts")).body(body);
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.as_bytes());
    }
    answer(request.send().await.unwrap()).await
}

async fn refresh(base: &str, id: CallId) -> webhook_support::Answer {
    let response = reqwest::Client::new()
        .post(format!("{base}/ops/calls/{id}/refresh"))
        .bearer_auth(OPS_TOKEN)
        .send()
        .await
        .unwrap();
    answer(response).await
}

async fn wait_for<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(started.elapsed() < LIMIT, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the provider acknowledged call `id`; returns its external id.
async fn acknowledged(rt: &Runtime, id: CallId) -> String {
    wait_for("the external id", async || {
        rt.get(id).await.unwrap().and_then(|c| c.external_id)
    })
    .await
}

fn terminal_events(logged: &CallWithEvents) -> usize {
    logged
        .events
        .iter()
        .filter(|e| matches!(e.kind, EventKind::Completed | EventKind::Failed))
        .count()
}

fn request(text: &str) -> hook_tts::Synthesis {
    hook_tts::Synthesis { text: text.into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_completion_through_the_router_is_published_counted_and_wakes_the_hooks() {
    let dir = TempDir::new();
    let (sqlite, _) = sqlite_store(&dir).await;
    let server = provider(running).await;
    // Idle timers far longer than the test allows: only a wake-up from the
    // event that finished the call delivers its hook in time.
    let rt = Runtime::builder()
        .store(sqlite)
        .integration_arc(tts(&server))
        .poll_idle(Duration::from_secs(60))
        .hook_retry(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    let hooked: Arc<Mutex<Vec<(CallId, Instant)>>> = Arc::default();
    {
        let hooked = Arc::clone(&hooked);
        rt.on_completed::<hook_tts::HookTtsCall, _>(move |call| {
            let hooked = Arc::clone(&hooked);
            async move { hooked.lock().unwrap().push((call.id, Instant::now())) }
        });
    }
    let mut changes = rt.subscribe();
    let base = serve(rt.router(None).unwrap()).await;
    let run = spawn_run(&rt);
    let id = rt.create(request("hello")).await.unwrap();
    let task = acknowledged(&rt, id).await;

    let delivered = Instant::now();
    let a = deliver(&base, "msg_1", &done_body(&task, "https://cdn/a.mp3")).await;
    assert_eq!((a.status, &a.json["outcome"]), (200, &json!("applied")), "{}", a.text);

    // Published to subscribers...
    let change = tokio::time::timeout(LIMIT, async {
        loop {
            let change = changes.recv().await.unwrap();
            if change.to.is_terminal() {
                return change;
            }
        }
    })
    .await
    .expect("a terminal status change is published");
    assert_eq!(
        (change.call_id, change.from, change.to, change.event),
        (id, CallStatus::Processing, CallStatus::Completed, EventKind::Completed)
    );
    // ... woke the hook dispatcher (its idle timer is 5 s at the shortest)...
    let (hooked_id, at) = wait_for("the completion hook", async || hooked.lock().unwrap().first().copied()).await;
    assert_eq!(hooked_id, id);
    assert!(
        at.duration_since(delivered) < Duration::from_secs(2),
        "the hook ran {:?} after the webhook: it waited for a timer, not for the event",
        at.duration_since(delivered)
    );
    // ... and counted as finished.
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse_prometheus(&text);
    assert_eq!(
        metric(
            &samples,
            "integration_calls_finished_total",
            &[("integration", "HookTts"), ("status", "completed"), ("kind", "")]
        ),
        Some(1.0),
        "{text}"
    );
    stop(&rt, run).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ops_refresh_racing_a_webhook_adds_no_second_terminal_event() {
    let dir = TempDir::new();
    let (sqlite, _) = sqlite_store(&dir).await;
    // The provider takes its time to answer a poll: the webhook lands while
    // the refresh waits for it.
    let server = provider(|task: &str| {
        ResponseTemplate::new(200)
            .set_body_json(done_body(task, "https://cdn/poll.mp3"))
            .set_delay(Duration::from_millis(800))
    })
    .await;
    let rt = Runtime::builder()
        .store(sqlite)
        .integration_arc(tts(&server))
        .poll_idle(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let base = serve(rt.router(Some(Secret::new(OPS_TOKEN))).unwrap()).await;
    // No worker runs: the start is recorded by hand, so no worker poll races.
    let id = rt.create(request("hello")).await.unwrap();
    let task = "task-x";
    rt.store()
        .append_event(
            id,
            integration_runtime::store::NewEvent::initialized("initialized", task),
        )
        .await
        .unwrap();

    let refreshing = {
        let base = base.clone();
        tokio::spawn(async move { refresh(&base, id).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let a = deliver(&base, "msg_2", &done_body(task, "https://cdn/webhook.mp3")).await;
    assert_eq!((a.status, &a.json["outcome"]), (200, &json!("applied")), "{}", a.text);
    let refreshed = refreshing.await.unwrap();
    assert_eq!(refreshed.status, 200, "{}", refreshed.text);
    assert_eq!(refreshed.json["outcome"], json!("duplicate"), "{}", refreshed.text);

    let logged = rt.get_with_events(id).await.unwrap().unwrap();
    assert_eq!(terminal_events(&logged), 1, "{:#?}", logged.events);
    assert_eq!(
        logged.call.response_data.as_ref().and_then(|r| r.get("url")),
        Some(&json!("https://cdn/webhook.mp3")),
        "the first report wins"
    );
    // The log is the audit trail: who said it, under which delivery.
    let terminal = logged.events.iter().find(|e| e.key == "terminal").unwrap();
    assert_eq!(terminal.payload.source, Some(EventSource::Webhook));
    assert_eq!(terminal.payload.delivery_id.as_deref(), Some("msg_2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_polls_webhooks_refreshes_and_record_reply_racing_leave_one_terminal_event() {
    const CALLS: usize = 12;
    let dir = TempDir::new();
    let (sqlite, _) = sqlite_store(&dir).await;
    // Every poll already says the end: the worker's polls race the rest.
    let server =
        provider(|task: &str| ResponseTemplate::new(200).set_body_json(done_body(task, "https://cdn/poll.mp3"))).await;
    let rt = Runtime::builder()
        .store(sqlite)
        .integration_arc(tts(&server))
        .poll_idle(Duration::from_millis(10))
        // Polls within milliseconds of the start.
        .polling_time_scale(0.001)
        .build()
        .await
        .unwrap();
    let base = serve(rt.router(Some(Secret::new(OPS_TOKEN))).unwrap()).await;
    let run = spawn_run(&rt);
    let mut ids = Vec::new();
    for n in 0..CALLS {
        ids.push(rt.create(request(&format!("call {n}"))).await.unwrap());
    }
    let mut racers = tokio::task::JoinSet::new();
    for (n, &id) in ids.iter().enumerate() {
        let task = acknowledged(&rt, id).await;
        let (base_w, task_w) = (base.clone(), task.clone());
        racers.spawn(async move {
            deliver(
                &base_w,
                &format!("msg_{n}"),
                &done_body(&task_w, "https://cdn/webhook.mp3"),
            )
            .await;
        });
        let base_r = base.clone();
        racers.spawn(async move {
            // 409 once the call is terminal: the race was lost, fine.
            refresh(&base_r, id).await;
        });
        let rt_m = rt.clone();
        racers.spawn(async move {
            let reply = Reply {
                http_status: 200,
                external_id: Some(task.clone()),
                status: Some(RemoteStatus::Failed),
                result: None,
                error: Some("manual".into()),
            };
            rt_m.record_reply("HookTts", &task, &reply).await.unwrap();
        });
    }
    while let Some(raced) = racers.join_next().await {
        raced.unwrap();
    }
    for id in ids {
        let logged = wait_for("a terminal call", async || {
            rt.get_with_events(id).await.unwrap().filter(|l| l.call.is_terminal())
        })
        .await;
        assert_eq!(terminal_events(&logged), 1, "{:#?}", logged.events);
        assert_eq!(logged.events[0].payload.source, Some(EventSource::Start));
        let terminal = logged.events.iter().find(|e| e.key == "terminal").unwrap();
        let sources = [
            EventSource::Poll,
            EventSource::Webhook,
            EventSource::Refresh,
            EventSource::Manual,
        ];
        assert!(sources.contains(&terminal.payload.source.unwrap()), "{terminal:?}");
    }
    stop(&rt, run).await;
}
