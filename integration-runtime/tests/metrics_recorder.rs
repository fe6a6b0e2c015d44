//! What the engine itself records, through the `metrics` facade and in its
//! own `/metrics`: real calls through a runtime (SQLite file, loopback
//! provider, signed webhook deliveries over HTTP) under a global capturing
//! recorder. The recorder is process-wide, so this binary holds one test.

#![cfg(all(feature = "sqlite", feature = "server"))]

mod webhook_support;

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Path;
use axum::routing::{get, post};
use axum::{Json, Router};
use integration_runtime::webhook::signature::standard;
use integration_runtime::{CallId, CallStatus, Runtime, Secret};
use metrics::{Counter, Gauge, Histogram, HistogramFn, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use serde_json::{json, Value};
use webhook_support::{metric, parse_prometheus, serve, sqlite_store, TempDir};

integration_runtime::integration!("tests/specs/webhook_tts.toml");

const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const LIMIT: Duration = Duration::from_secs(20);

/// A series: the metric's name and its labels, sorted.
type Series = (String, Vec<(String, String)>);

/// A metric's unit and help text, as described to the recorder.
type Description = (Option<Unit>, String);

/// Every value a histogram was given.
#[derive(Default)]
struct Values(Mutex<Vec<f64>>);

impl HistogramFn for Values {
    fn record(&self, value: f64) {
        self.0.lock().unwrap().push(value);
    }
}

/// A recorder that keeps every counter, histogram value and description.
#[derive(Clone, Default)]
struct Capture {
    counters: Arc<Mutex<BTreeMap<Series, Arc<AtomicU64>>>>,
    histograms: Arc<Mutex<BTreeMap<Series, Arc<Values>>>>,
    described: Arc<Mutex<BTreeMap<String, Description>>>,
}

fn series(key: &Key) -> Series {
    let mut labels: Vec<(String, String)> = key
        .labels()
        .map(|label| (label.key().to_owned(), label.value().to_owned()))
        .collect();
    labels.sort();
    (key.name().to_owned(), labels)
}

fn wanted(name: &str, labels: &[(&str, &str)]) -> Series {
    let mut labels: Vec<(String, String)> = labels
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    labels.sort();
    (name.to_owned(), labels)
}

impl Capture {
    fn describe(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        let name: &str = key.borrow();
        self.described
            .lock()
            .unwrap()
            .insert(name.to_owned(), (unit, description.to_string()));
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        let counters = self.counters.lock().unwrap();
        counters
            .get(&wanted(name, labels))
            .map_or(0, |value| value.load(Ordering::Relaxed))
    }

    fn histogram(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        let histograms = self.histograms.lock().unwrap();
        histograms
            .get(&wanted(name, labels))
            .map_or_else(Vec::new, |values| values.0.lock().unwrap().clone())
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.describe(key, unit, description);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        let mut counters = self.counters.lock().unwrap();
        Counter::from_arc(Arc::clone(counters.entry(series(key)).or_default()))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        let mut histograms = self.histograms.lock().unwrap();
        Histogram::from_arc(Arc::clone(histograms.entry(series(key)).or_default()))
    }
}

/// A provider of async tasks: `POST /tasks` starts `task-N`; task `task-1`
/// is done when polled, any other still running.
async fn provider() -> String {
    let started = Arc::new(AtomicU64::new(0));
    let router = Router::new()
        .route(
            "/tasks",
            post(move || {
                let n = started.fetch_add(1, Ordering::SeqCst) + 1;
                async move { Json(json!({"task_id": format!("task-{n}")})) }
            }),
        )
        .route(
            "/tasks/{id}",
            get(|Path(id): Path<String>| async move {
                Json(if id == "task-1" {
                    json!({"state": "done", "audio_url": "https://cdn/1.mp3", "duration": 900})
                } else {
                    json!({"state": "running"})
                })
            }),
        );
    serve(router).await
}

async fn wait_status(rt: &Runtime, id: CallId, status: CallStatus) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let call = rt.get(id).await.unwrap().unwrap();
        if call.status == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "call {id} stayed {:?}",
            call.status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn deliver(http: &reqwest::Client, url: &str, secret: &str, body: &Value) -> u16 {
    let body = body.to_string();
    let headers = standard::sign(secret, "msg-1", chrono::Utc::now().timestamp(), body.as_bytes()).unwrap();
    http.post(url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_records_calls_attempts_and_webhooks_to_the_global_recorder_and_its_metrics() {
    let capture = Capture::default();
    metrics::set_global_recorder(capture.clone()).unwrap();

    let dir = TempDir::new();
    let tts = hook_tts::HookTts::new(hook_tts::HookTtsConfig {
        base_url: provider().await,
        token: Secret::new("token-1"),
        webhook_secret: Secret::new(SECRET),
    })
    .unwrap();
    let rt = Runtime::builder()
        .store(sqlite_store(&dir).await.0)
        .integration(tts)
        .polling_time_scale(0.01)
        .poll_idle(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let base = serve(rt.router(None).unwrap()).await;
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });

    // task-1 completes by polling; task-2 stays running until its webhook.
    let polled = rt.create(hook_tts::Synthesis { text: "one".into() }).await.unwrap();
    wait_status(&rt, polled, CallStatus::Completed).await;
    let hooked = rt.create(hook_tts::Synthesis { text: "two".into() }).await.unwrap();
    wait_status(&rt, hooked, CallStatus::Processing).await;
    let webhook = format!("{base}/webhooks/tts");
    let done = json!({"task_id": "task-2", "state": "done", "audio_url": "https://cdn/2.mp3", "duration": 5});
    let http = reqwest::Client::new();
    let forged = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    assert_eq!(deliver(&http, &webhook, forged, &done).await, 401);
    assert_eq!(deliver(&http, &webhook, SECRET, &done).await, 200);
    wait_status(&rt, hooked, CallStatus::Completed).await;
    rt.shutdown(LIMIT).await;
    worker.await.unwrap().unwrap();

    let tts = ("integration", "HookTts");
    let start = [tts, ("endpoint", "synthesize")];
    assert_eq!(capture.counter("integration_calls_created_total", &[tts]), 2);
    assert_eq!(
        capture.counter(
            "integration_calls_finished_total",
            &[tts, ("status", "completed"), ("kind", "")]
        ),
        2,
        "the call completed by polling and the one its webhook completed: both go through the event sink"
    );
    assert_eq!(
        capture.counter("integration_attempts_total", &[start[0], start[1], ("outcome", "ok")]),
        2
    );
    let latencies = capture.histogram("integration_attempt_duration_seconds", &start);
    assert_eq!(latencies.len(), 2, "{latencies:?}");
    assert!(
        latencies.iter().all(|s| *s > 0.0 && *s < LIMIT.as_secs_f64()),
        "{latencies:?}"
    );
    let accepted = [tts, ("result", "accepted"), ("reason", "applied")];
    assert_eq!(capture.counter("integration_webhook_deliveries_total", &accepted), 1);
    let rejected = [tts, ("result", "rejected"), ("reason", "signature_mismatch")];
    assert_eq!(capture.counter("integration_webhook_deliveries_total", &rejected), 1);
    assert_eq!(
        capture.histogram("integration_webhook_duration_seconds", &[tts]).len(),
        2
    );
    let described = capture.described.lock().unwrap().clone();
    assert_eq!(
        described.get("integration_attempt_duration_seconds"),
        Some(&(Some(Unit::Seconds), "Latency of requests to providers.".to_owned()))
    );

    // The same numbers in the runtime's own `/metrics`.
    let text = http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse_prometheus(&text);
    assert_eq!(metric(&samples, "integration_calls_created_total", &[tts]), Some(2.0));
    assert_eq!(
        metric(
            &samples,
            "integration_attempts_total",
            &[start[0], start[1], ("outcome", "ok")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&samples, "integration_attempt_duration_seconds_count", &start),
        Some(2.0)
    );
    assert_eq!(
        metric(
            &samples,
            "integration_calls_finished_total",
            &[tts, ("status", "completed"), ("kind", "")]
        ),
        Some(2.0)
    );
    assert_eq!(
        metric(&samples, "integration_webhook_deliveries_total", &rejected),
        Some(1.0)
    );
}
