//! Tracing follows a call: a `call_turn` span per worker turn with the
//! call's identity, the HTTP attempt nested inside it, a retried failure at
//! `warn`, and a `webhook_delivery` span per delivery. A small subscriber of
//! its own records every span (name, fields, parent) and event (level,
//! message, span).

#![cfg(all(feature = "sqlite", feature = "server"))]

mod webhook_support;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_runtime::webhook::signature::standard;
use integration_runtime::{CallStatus, MemoryStore, Runtime, Secret};
use serde_json::json;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};
use webhook_support::{initialized_call, serve, sqlite_store, TempDir};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

integration_runtime::integration!("tests/specs/engine_sync.toml");
integration_runtime::integration!("tests/specs/webhook_tts.toml");

const LIMIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
struct SpanData {
    name: &'static str,
    metadata: &'static Metadata<'static>,
    parent: Option<u64>,
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Clone)]
struct EventData {
    level: Level,
    span: Option<u64>,
    fields: BTreeMap<String, String>,
}

#[derive(Default)]
struct Captured {
    spans: Vec<SpanData>,
    events: Vec<EventData>,
}

/// Records every span and event; spans are numbered from 1 in creation order.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Captured>>);

thread_local! {
    /// The spans entered on this thread, innermost last.
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

fn current() -> Option<u64> {
    ENTERED.with(|entered| entered.borrow().last().copied())
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attributes: &Attributes<'_>) -> Id {
        let parent = if attributes.is_root() {
            None
        } else {
            attributes.parent().map(Id::into_u64).or_else(current)
        };
        let mut fields = BTreeMap::new();
        attributes.record(&mut Fields(&mut fields));
        let mut captured = self.0.lock().unwrap();
        captured.spans.push(SpanData {
            name: attributes.metadata().name(),
            metadata: attributes.metadata(),
            parent,
            fields,
        });
        Id::from_u64(captured.spans.len() as u64)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut captured = self.0.lock().unwrap();
        let index = usize::try_from(span.into_u64()).unwrap() - 1;
        values.record(&mut Fields(&mut captured.spans[index].fields));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let span = if event.is_root() {
            None
        } else {
            event.parent().map(Id::into_u64).or_else(current)
        };
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().unwrap().events.push(EventData {
            level: *event.metadata().level(),
            span,
            fields,
        });
    }

    fn current_span(&self) -> tracing_core::span::Current {
        match current() {
            Some(id) => {
                let metadata = self.0.lock().unwrap().spans[usize::try_from(id).unwrap() - 1].metadata;
                tracing_core::span::Current::new(Id::from_u64(id), metadata)
            }
            None => tracing_core::span::Current::none(),
        }
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|entered| entered.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with(|entered| {
            let mut entered = entered.borrow_mut();
            if let Some(at) = entered.iter().rposition(|id| *id == span.into_u64()) {
                entered.remove(at);
            }
        });
    }
}

impl Capture {
    fn spans(&self, name: &str) -> Vec<(u64, SpanData)> {
        let captured = self.0.lock().unwrap();
        (1..)
            .zip(captured.spans.iter().cloned())
            .filter(|(_, span)| span.name == name)
            .collect()
    }

    fn events(&self, message: &str) -> Vec<EventData> {
        let captured = self.0.lock().unwrap();
        captured
            .events
            .iter()
            .filter(|event| event.fields.get("message").map(String::as_str) == Some(message))
            .cloned()
            .collect()
    }
}

async fn wait_until(what: &str, done: impl AsyncFn() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(started.elapsed() < LIMIT, "gave up waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// One thread: the subscriber is this thread's default, and every task of
// the runtime runs here.
#[tokio::test(flavor = "current_thread")]
async fn a_worker_turn_is_a_span_with_the_call_and_its_http_attempt_inside() {
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.clone());
    let server = MockServer::start().await;
    let hits = std::sync::atomic::AtomicUsize::new(0);
    // The first attempt fails with a 500 (retried), the second succeeds.
    Mock::given(method("POST"))
        .and(path("/send"))
        .respond_with(move |_: &Request| {
            if hits.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
                ResponseTemplate::new(500).set_body_json(json!({"message": "busy"}))
            } else {
                ResponseTemplate::new(200).set_body_json(json!({"echoed": "hi"}))
            }
        })
        .mount(&server)
        .await;
    let integration = engine_sync::EngineSync::new(engine_sync::EngineSyncConfig { base_url: server.uri() }).unwrap();
    let rt = Runtime::builder()
        .store(MemoryStore::new())
        .integration(integration)
        .poll_idle(Duration::from_millis(10))
        .build()
        .await
        .unwrap();
    let hooked = Arc::new(std::sync::atomic::AtomicBool::new(false));
    {
        let hooked = Arc::clone(&hooked);
        rt.on_completed::<engine_sync::EngineSyncCall, _>(move |_| {
            let hooked = Arc::clone(&hooked);
            async move {
                tracing::info!("the hook ran");
                hooked.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
    }
    let id = rt.create(engine_sync::Message { text: "hi".into() }).await.unwrap();
    let run = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.run().await.unwrap() })
    };
    wait_until("the call to complete", async || {
        rt.get(id)
            .await
            .unwrap()
            .is_some_and(|call| call.status == CallStatus::Completed && call.lease_owner.is_none())
    })
    .await;
    wait_until("the hook", async || hooked.load(std::sync::atomic::Ordering::SeqCst)).await;
    rt.shutdown(Duration::from_secs(1)).await;
    run.await.unwrap();

    let turns = capture.spans("call_turn");
    assert_eq!(turns.len(), 2, "{turns:#?}");
    for (n, (_, turn)) in turns.iter().enumerate() {
        let expected = [
            ("call_id", id.to_string()),
            ("integration", "EngineSync".to_owned()),
            ("endpoint", "send".to_owned()),
            ("attempt", (n + 1).to_string()),
        ];
        for (field, value) in expected {
            assert_eq!(turn.fields.get(field), Some(&value), "{field} of {turn:#?}");
        }
    }
    // A sync call's external id is generated: the call id, known once answered.
    assert_eq!(turns[0].1.fields.get("external_id"), None);
    assert_eq!(turns[1].1.fields.get("external_id"), Some(&id.to_string()));

    let attempts = capture.spans("http_attempt");
    assert_eq!(attempts.len(), 2, "{attempts:#?}");
    for ((turn, _), (_, attempt)) in turns.iter().zip(&attempts) {
        assert_eq!(
            attempt.parent,
            Some(*turn),
            "the HTTP attempt nests in its turn: {attempt:#?}"
        );
    }

    let retried = capture.events("the attempt failed; the call will be retried");
    assert_eq!(retried.len(), 1, "{retried:#?}");
    assert_eq!(retried[0].level, Level::WARN);
    assert_eq!(retried[0].span, Some(turns[0].0));
    let hooks = capture.spans("hook");
    assert_eq!(hooks.len(), 1, "{hooks:#?}");
    let (hook_span, hook) = &hooks[0];
    for (field, value) in [
        ("call_id", id.to_string()),
        ("integration", "EngineSync".to_owned()),
        ("on", "completed".to_owned()),
    ] {
        assert_eq!(hook.fields.get(field), Some(&value), "{field} of {hook:#?}");
    }
    let logged = capture.events("the hook ran");
    assert_eq!(logged.len(), 1);
    assert_eq!(logged[0].span, Some(*hook_span), "what a hook logs is in its span");

    let request_failures = capture.events("request failed");
    assert_eq!(request_failures.len(), 1, "{request_failures:#?}");
    assert_eq!(
        request_failures[0].level,
        Level::DEBUG,
        "the request's own failure stays below the engine's warning"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_webhook_delivery_is_a_span_with_its_ids_and_outcome() {
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    let capture = Capture::default();
    let _default = tracing::subscriber::set_default(capture.clone());
    let dir = TempDir::new();
    let (sqlite, store) = sqlite_store(&dir).await;
    let tts = hook_tts::HookTts::new(hook_tts::HookTtsConfig {
        base_url: "http://127.0.0.1:9".into(),
        token: Secret::new("t"),
        webhook_secret: Secret::new(SECRET),
    })
    .unwrap();
    let rt = Runtime::builder().store(sqlite).integration(tts).build().await.unwrap();
    let base = serve(rt.router(None).unwrap()).await;
    initialized_call(&*store, "HookTts", "synthesize", json!({"text": "x"}), "task-t").await;
    let body = json!({"task_id": "task-t", "state": "running"}).to_string();
    let headers = standard::sign(SECRET, "msg_t", chrono::Utc::now().timestamp(), body.as_bytes()).unwrap();
    let mut request = reqwest::Client::new().post(format!("{base}/webhooks/tts")).body(body);
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.as_bytes());
    }
    assert_eq!(request.send().await.unwrap().status(), 200);

    let deliveries = capture.spans("webhook_delivery");
    assert_eq!(deliveries.len(), 1, "{deliveries:#?}");
    let fields = &deliveries[0].1.fields;
    for (field, value) in [
        ("integration", "HookTts"),
        ("delivery_id", "msg_t"),
        ("external_id", "task-t"),
        ("outcome", "ignored"),
    ] {
        assert_eq!(
            fields.get(field).map(String::as_str),
            Some(value),
            "{field} of {fields:?}"
        );
    }
}
