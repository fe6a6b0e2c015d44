//! The webhook receiver over real HTTP, against a SQLite store: signed
//! deliveries of the three schemes finish calls exactly once, and every
//! adversarial delivery gets the right status while the store stays unchanged.

#![cfg(all(feature = "sqlite", feature = "server"))]

mod webhook_support;

use std::sync::Arc;

use axum::http::HeaderMap;
use integration_runtime::webhook::signature::{generic, standard, stripe};
use integration_runtime::webhook::WebhookReceiver;
use integration_runtime::{
    CallId, CallStatus, CallWithEvents, EventSource, Integration, Metrics, Secret, SignatureEncoding, Store,
};
use serde_json::{json, Value};
use webhook_support::{answer, initialized_call, metric, parse_prometheus, serve, sqlite_store, Answer, TempDir};

integration_runtime::integration!("tests/specs/webhook_tts.toml");
integration_runtime::integration!("tests/specs/webhook_pay.toml");
integration_runtime::integration!("tests/specs/webhook_git.toml");

const TTS_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const TTS_OLD_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const PAY_SECRET: &str = "whsec_stripe_test_secret";
const GIT_SECRET: &str = "It's a Secret to Everybody";

fn tts() -> Arc<dyn Integration> {
    Arc::new(
        hook_tts::HookTts::new(hook_tts::HookTtsConfig {
            base_url: "http://127.0.0.1:9".into(),
            token: Secret::new("t"),
            webhook_secret: Secret::new(TTS_SECRET),
        })
        .unwrap(),
    )
}

fn pay() -> Arc<dyn Integration> {
    Arc::new(
        hook_pay::HookPay::new(hook_pay::HookPayConfig {
            base_url: "http://127.0.0.1:9".into(),
            webhook_secret: Secret::new(PAY_SECRET),
        })
        .unwrap(),
    )
}

fn git() -> Arc<dyn Integration> {
    Arc::new(
        hook_git::HookGit::new(hook_git::HookGitConfig {
            base_url: "http://127.0.0.1:9".into(),
            webhook_secret: Secret::new(GIT_SECRET),
        })
        .unwrap(),
    )
}

struct Env {
    _dir: TempDir,
    store: Arc<dyn Store>,
    base: String,
    http: reqwest::Client,
    metrics: Metrics,
}

/// A receiver of the three integrations (the TTS one with two active
/// secrets, as during a rotation), served on a loopback port.
async fn env() -> Env {
    let dir = TempDir::new();
    let (_, store) = sqlite_store(&dir).await;
    let metrics = Metrics::new();
    let router = WebhookReceiver::new(Arc::clone(&store))
        .metrics(metrics.clone())
        .integration_with_secrets(tts(), &[Secret::new(format!("{TTS_OLD_SECRET},{TTS_SECRET}"))])
        .unwrap()
        .integration_with_secrets(pay(), &[Secret::new(PAY_SECRET)])
        .unwrap()
        .integration_with_secrets(git(), &[Secret::new(GIT_SECRET)])
        .unwrap()
        .router();
    let router = router.merge(metrics.exporter(Arc::clone(&store)).integration(&*tts()).router());
    Env {
        _dir: dir,
        store,
        base: serve(router).await,
        http: reqwest::Client::new(),
        metrics,
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Env {
    async fn post(&self, path: &str, headers: HeaderMap, body: impl Into<Vec<u8>>) -> Answer {
        let mut request = self.http.post(format!("{}{path}", self.base)).body(body.into());
        for (name, value) in &headers {
            request = request.header(name.as_str(), value.as_bytes());
        }
        answer(request.send().await.unwrap()).await
    }

    async fn tts(&self, id: &str, timestamp: i64, body: &str) -> Answer {
        let headers = standard::sign(TTS_SECRET, id, timestamp, body.as_bytes()).unwrap();
        self.post("/webhooks/tts", headers, body).await
    }

    async fn snapshot(&self, id: CallId) -> CallWithEvents {
        self.store.get_with_events(id).await.unwrap().unwrap()
    }

    async fn tts_call(&self, external_id: &str) -> CallId {
        initialized_call(
            &*self.store,
            "HookTts",
            "synthesize",
            json!({"text": "hi"}),
            external_id,
        )
        .await
    }
}

fn done(task: &str) -> String {
    json!({"task_id": task, "state": "done", "audio_url": "https://cdn/a.mp3", "duration": 1500}).to_string()
}

#[tokio::test]
async fn a_signed_webhook_completes_the_call_once() {
    let env = env().await;
    let id = env.tts_call("task-1").await;

    for attempt in 0..5 {
        let a = env.tts("msg_done_1", now(), &done("task-1")).await;
        assert_eq!(a.status, 200, "{}", a.text);
        let expected = if attempt == 0 { "applied" } else { "duplicate" };
        assert_eq!(a.json, json!({"received": true, "outcome": expected}));
    }
    let after_done = env.snapshot(id).await;
    assert_eq!(after_done.call.status, CallStatus::Completed);
    assert_eq!(
        after_done.call.response_data,
        Some(json!({"url": "https://cdn/a.mp3", "duration_ms": 1500}))
    );
    assert_eq!(after_done.events.len(), 2, "initialized + one completed");
    let completed = &after_done.events[1];
    assert_eq!(completed.key, "terminal", "the lifecycle key, as every path uses");
    assert_eq!(completed.payload.delivery_id.as_deref(), Some("msg_done_1"));
    assert_eq!(completed.payload.source, Some(EventSource::Webhook));

    // A late `processing` is kept in the log but changes nothing.
    let late = json!({"task_id": "task-1", "state": "running"}).to_string();
    let a = env.tts("msg_running_1", now(), &late).await;
    assert_eq!((a.status, &a.json["outcome"]), (200, &json!("ignored")));
    let after_late = env.snapshot(id).await;
    assert_eq!(after_late.call.status, CallStatus::Completed);
    assert_eq!(after_late.call.response_data, after_done.call.response_data);
    assert_eq!(after_late.call.completed_at, after_done.call.completed_at);
    assert_eq!(after_late.events.len(), 3);
    assert!(!after_late.events[2].applied);
}

#[tokio::test]
async fn a_failure_webhook_fails_the_call_with_the_providers_message() {
    let env = env().await;
    let id = env.tts_call("task-f").await;
    let body = json!({"task_id": "task-f", "state": "error", "message": "voice not found"}).to_string();
    assert_eq!(env.tts("msg_f", now(), &body).await.status, 200);
    let call = env.snapshot(id).await.call;
    assert_eq!(call.status, CallStatus::Failed);
    assert_eq!(call.error.as_deref(), Some("voice not found"));
}

#[tokio::test]
async fn signatures_from_every_active_secret_are_accepted() {
    let env = env().await;
    let id = env.tts_call("task-rot").await;
    let body = json!({"task_id": "task-rot", "state": "running"}).to_string();
    let headers = standard::sign(TTS_OLD_SECRET, "msg_old", now(), body.as_bytes()).unwrap();
    assert_eq!(env.post("/webhooks/tts", headers, body.clone()).await.status, 200);
    let headers = standard::sign(TTS_SECRET, "msg_new", now(), body.as_bytes()).unwrap();
    let a = env.post("/webhooks/tts", headers, body).await;
    // Verified, and the same news: one `processing` in the log.
    assert_eq!((a.status, &a.json["outcome"]), (200, &json!("duplicate")), "{}", a.text);
    assert_eq!(env.snapshot(id).await.events.len(), 2);
}

/// Every adversarial delivery: the expected status and error code, and the
/// call exactly as it was.
#[tokio::test]
async fn adversarial_deliveries_are_refused_and_change_nothing() {
    let env = env().await;
    let id = env.tts_call("task-adv").await;
    let body = done("task-adv");
    let ts = now();
    let signed = |id: &str, ts: i64, body: &str| standard::sign(TTS_SECRET, id, ts, body.as_bytes()).unwrap();
    let before = env.snapshot(id).await;

    let mut cases: Vec<(&str, HeaderMap, String, u16, &str)> = Vec::new();
    let tampered = body.replace("a.mp3", "evil.mp3");
    cases.push((
        "tampered body",
        signed("m1", ts, &body),
        tampered,
        401,
        "signature_mismatch",
    ));
    let wrong = standard::sign("whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldA==", "m2", ts, body.as_bytes()).unwrap();
    cases.push(("wrong secret", wrong, body.clone(), 401, "signature_mismatch"));
    for header in [
        standard::ID_HEADER,
        standard::TIMESTAMP_HEADER,
        standard::SIGNATURE_HEADER,
    ] {
        let mut headers = signed("m3", ts, &body);
        headers.remove(header);
        cases.push(("missing header", headers, body.clone(), 401, "missing_header"));
    }
    let mut garbled = signed("m4", ts, &body);
    garbled.insert(standard::SIGNATURE_HEADER, "v1,not base64!".parse().unwrap());
    cases.push(("garbled signature", garbled, body.clone(), 401, "malformed_header"));
    cases.push((
        "stale timestamp",
        signed("m5", ts - 360, &body),
        body.clone(),
        401,
        "stale_timestamp",
    ));
    cases.push((
        "future timestamp",
        signed("m6", ts + 360, &body),
        body.clone(),
        401,
        "future_timestamp",
    ));
    let big = json!({"task_id": "task-adv", "state": "done", "pad": "x".repeat(3000)}).to_string();
    cases.push((
        "oversized body",
        signed("m7", ts, &big),
        big.clone(),
        413,
        "body_too_large",
    ));
    let broken = "{\"task_id\": \"task-adv\", ".to_owned();
    cases.push((
        "malformed JSON",
        signed("m8", ts, &broken),
        broken.clone(),
        400,
        "malformed_json",
    ));
    let unknown = json!({"task_id": "task-adv", "state": "exploded"}).to_string();
    cases.push((
        "unknown status",
        signed("m9", ts, &unknown),
        unknown.clone(),
        422,
        "unreadable_payload",
    ));
    let no_id = json!({"state": "done", "audio_url": "u", "duration": 1}).to_string();
    cases.push((
        "no external id",
        signed("m10", ts, &no_id),
        no_id.clone(),
        422,
        "unreadable_payload",
    ));
    let missing_field = json!({"task_id": "task-adv", "state": "done"}).to_string();
    cases.push((
        "missing result field",
        signed("m11", ts, &missing_field),
        missing_field.clone(),
        422,
        "unreadable_payload",
    ));

    for (what, headers, body, status, code) in cases {
        let a = env.post("/webhooks/tts", headers, body).await;
        assert_eq!(a.status, status, "{what}: {}", a.text);
        assert_eq!(a.json["error"], json!(code), "{what}: {}", a.text);
        assert!(a.json["message"].is_string(), "{what}: {}", a.text);
        assert!(
            !a.text.contains("C2FVsBQ") && !a.text.contains("whsec"),
            "{what} leaks: {}",
            a.text
        );
        assert_eq!(env.snapshot(id).await, before, "{what} changed the store");
    }

    // Replay of an accepted delivery: answered 200, stored once.
    let accepted = signed("m-ok", ts, &body);
    assert_eq!(
        env.post("/webhooks/tts", accepted.clone(), body.clone()).await.status,
        200
    );
    let after = env.snapshot(id).await;
    assert_eq!(after.call.status, CallStatus::Completed);
    let replay = env.post("/webhooks/tts", accepted, body).await;
    assert_eq!((replay.status, &replay.json["outcome"]), (200, &json!("duplicate")));
    assert_eq!(env.snapshot(id).await, after, "a replay changed the store");

    // Wrong method: not a delivery.
    let get = env.http.get(format!("{}/webhooks/tts", env.base)).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
}

#[tokio::test]
async fn a_webhook_that_beats_initialized_is_asked_to_come_back() {
    let env = env().await;
    let body = done("task-early");
    let headers = standard::sign(TTS_SECRET, "msg_early", now(), body.as_bytes()).unwrap();
    let early = env.post("/webhooks/tts", headers.clone(), body.clone()).await;
    assert_eq!(early.status, 503, "{}", early.text);
    assert_eq!(early.json["error"], json!("unknown_external_id"));
    assert_eq!(early.headers["retry-after"], "10");

    // Nothing was stored: the call, created now, only has `initialized`.
    let id = env.tts_call("task-early").await;
    assert_eq!(env.snapshot(id).await.events.len(), 1);
    let redelivery = env.post("/webhooks/tts", headers, body).await;
    assert_eq!(
        (redelivery.status, &redelivery.json["outcome"]),
        (200, &json!("applied"))
    );
    assert_eq!(env.snapshot(id).await.call.status, CallStatus::Completed);
}

fn stripe_event(event_id: &str, kind: &str, payment: &str) -> String {
    json!({
        "id": event_id,
        "type": kind,
        "data": {"object": {"id": payment, "amount_received": 1200,
                            "last_payment_error": {"message": "card declined"}}}
    })
    .to_string()
}

#[tokio::test]
async fn stripe_signed_webhooks_finish_payments_once() {
    let env = env().await;
    let id = initialized_call(&*env.store, "HookPay", "create", json!({"amount": 1200}), "pi_1").await;
    let body = stripe_event("evt_1", "payment_intent.payment_failed", "pi_1");
    let headers = stripe::sign(PAY_SECRET, now(), body.as_bytes());
    for _ in 0..3 {
        assert_eq!(
            env.post("/webhooks/pay", headers.clone(), body.clone()).await.status,
            200
        );
    }
    let after = env.snapshot(id).await;
    assert_eq!(after.call.status, CallStatus::Failed);
    assert_eq!(after.call.error.as_deref(), Some("card declined"));
    assert_eq!(after.events.len(), 2);
    assert_eq!(
        after.events[1].payload.delivery_id.as_deref(),
        Some("evt_1"),
        "the Stripe event id is the delivery id"
    );

    // The same event, re-signed later (Stripe's own retry): still one event.
    let retried = stripe::sign(PAY_SECRET, now() + 5, body.as_bytes());
    assert_eq!(
        env.post("/webhooks/pay", retried, body.clone()).await.json["outcome"],
        json!("duplicate")
    );

    let stale = stripe::sign(PAY_SECRET, now() - 360, body.as_bytes());
    let a = env.post("/webhooks/pay", stale, body.clone()).await;
    assert_eq!((a.status, &a.json["error"]), (401, &json!("stale_timestamp")));
    let forged = stripe::sign("whsec_guess", now(), body.as_bytes());
    assert_eq!(env.post("/webhooks/pay", forged, body).await.status, 401);
    assert_eq!(env.snapshot(id).await, after);
}

#[tokio::test]
async fn github_style_webhooks_are_verified_and_recorded_once() {
    let env = env().await;
    let id = initialized_call(&*env.store, "HookGit", "start", json!({"repo": "a/b"}), "42").await;
    let body = json!({"build": {"id": 42, "status": "success", "conclusion": "green"}}).to_string();
    let sign = |secret: &str, body: &str| {
        generic::sign(
            "X-Hub-Signature-256",
            secret,
            SignatureEncoding::Hex,
            "sha256=",
            body.as_bytes(),
        )
    };
    let a = env.post("/webhooks/git", sign(GIT_SECRET, &body), body.clone()).await;
    assert_eq!((a.status, &a.json["outcome"]), (200, &json!("applied")), "{}", a.text);
    let after = env.snapshot(id).await;
    assert_eq!(after.call.response_data, Some(json!({"conclusion": "green"})));
    assert_eq!(after.events[1].key, "terminal");
    assert_eq!(
        after.events[1].payload.delivery_id, None,
        "the generic scheme names no delivery"
    );

    let replay = env.post("/webhooks/git", sign(GIT_SECRET, &body), body.clone()).await;
    assert_eq!(replay.json["outcome"], json!("duplicate"));
    let tampered = body.replace("green", "red");
    assert_eq!(
        env.post("/webhooks/git", sign(GIT_SECRET, &body), tampered)
            .await
            .status,
        401
    );
    assert_eq!(
        env.post("/webhooks/git", sign("wrong", &body), body.clone())
            .await
            .status,
        401
    );
    assert_eq!(env.post("/webhooks/git", HeaderMap::new(), body).await.status, 401);
    assert_eq!(env.snapshot(id).await, after);
}

#[tokio::test]
async fn secrets_come_from_the_environment_and_missing_ones_are_reported() {
    let dir = TempDir::new();
    let (_, store) = sqlite_store(&dir).await;
    // Integrations configured from the environment report a missing secret
    // with its purpose, before any receiver exists.
    std::env::remove_var("HOOK_PAY_WEBHOOK_SECRET");
    let error = hook_pay::HookPay::from_env().unwrap_err();
    assert!(error.to_string().contains("HOOK_PAY_WEBHOOK_SECRET"), "{error}");

    // A configured integration brings its secret(s) to the receiver;
    // several comma-separated secrets are all accepted (rotation).
    std::env::set_var("HOOK_GIT_WEBHOOK_SECRET", format!("old-secret, {GIT_SECRET}"));
    let git_from_env: Arc<dyn Integration> = Arc::new(hook_git::HookGit::from_env().unwrap());
    let router = WebhookReceiver::new(Arc::clone(&store))
        .integration(git_from_env)
        .unwrap()
        .router();
    let base = serve(router).await;
    let body = json!({"build": {"id": 7, "status": "in_progress"}}).to_string();
    let id = initialized_call(&*store, "HookGit", "start", json!({"repo": "a/b"}), "7").await;
    let headers = generic::sign(
        "X-Hub-Signature-256",
        GIT_SECRET,
        SignatureEncoding::Hex,
        "sha256=",
        body.as_bytes(),
    );
    let mut request = reqwest::Client::new().post(format!("{base}/webhooks/git")).body(body);
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.as_bytes());
    }
    assert_eq!(request.send().await.unwrap().status().as_u16(), 200);
    assert_eq!(store.get(id).await.unwrap().unwrap().status, CallStatus::Processing);

    let no_webhook = WebhookReceiver::new(store).integration_with_secrets(Arc::new(NoWebhook), &[Secret::new("x")]);
    assert!(no_webhook.unwrap_err().to_string().contains("has no [webhook]"));
}

/// An integration without a webhook, to check the receiver refuses it.
struct NoWebhook;

static NO_WEBHOOK: integration_runtime::IntegrationDescriptor = integration_runtime::IntegrationDescriptor {
    name: "Plain",
    module: "plain",
    endpoints: &[],
    policy: integration_runtime::PolicyDescriptor::DEFAULT,
    polling: None,
    webhook: None,
    fingerprint: "",
};

impl Integration for NoWebhook {
    fn descriptor(&self) -> &'static integration_runtime::IntegrationDescriptor {
        &NO_WEBHOOK
    }
    fn validate(&self, _: &str, _: &Value) -> Result<(), integration_runtime::ClientError> {
        Ok(())
    }
    fn start<'a>(
        &'a self,
        _: &'a str,
        _: &'a Value,
        _: &'a integration_runtime::CallOptions,
    ) -> integration_runtime::BoxFuture<'a, Result<integration_runtime::Reply<Value>, integration_runtime::ClientError>>
    {
        Box::pin(async { unreachable!("never started") })
    }
    fn poll<'a>(
        &'a self,
        _: &'a str,
    ) -> Option<
        integration_runtime::BoxFuture<'a, Result<integration_runtime::Reply<Value>, integration_runtime::ClientError>>,
    > {
        None
    }
    fn read_webhook(
        &self,
        _: &Value,
    ) -> Option<Result<integration_runtime::Reply<Value>, integration_runtime::ClientError>> {
        None
    }
}

#[tokio::test]
async fn metrics_count_deliveries_by_outcome_and_reason() {
    let env = env().await;
    let id = env.tts_call("task-m").await;
    let body = done("task-m");
    env.tts("msg_m", now(), &body).await; // applied
    env.tts("msg_m", now(), &body).await; // duplicate
    env.tts("msg_m2", now() - 1000, &body).await; // stale
    let tampered = standard::sign(TTS_SECRET, "msg_m3", now(), b"{}").unwrap();
    env.post("/webhooks/tts", tampered, body.clone()).await; // mismatch
    let text = env.http.get(format!("{}/metrics", env.base)).send().await.unwrap();
    assert_eq!(
        text.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    let samples = parse_prometheus(&text.text().await.unwrap());
    let deliveries = |result: &str, reason: &str| {
        metric(
            &samples,
            "integration_webhook_deliveries_total",
            &[("integration", "HookTts"), ("result", result), ("reason", reason)],
        )
    };
    assert_eq!(deliveries("accepted", "applied"), Some(1.0));
    assert_eq!(deliveries("accepted", "duplicate"), Some(1.0));
    assert_eq!(deliveries("rejected", "stale_timestamp"), Some(1.0));
    assert_eq!(deliveries("rejected", "signature_mismatch"), Some(1.0));
    assert_eq!(
        metric(
            &samples,
            "integration_webhook_duration_seconds_count",
            &[("integration", "HookTts")]
        ),
        Some(4.0)
    );
    let calls = |status: &str| {
        metric(
            &samples,
            "integration_calls",
            &[("integration", "HookTts"), ("status", status)],
        )
    };
    assert_eq!((calls("completed"), calls("pending")), (Some(1.0), Some(0.0)));
    assert_eq!(metric(&samples, "integration_store_up", &[]), Some(1.0));
    assert_eq!(env.snapshot(id).await.call.status, CallStatus::Completed);
    let _ = &env.metrics;
}

#[tokio::test]
async fn lifecycle_keys_agree_with_the_engine() {
    use integration_runtime::store::NewEvent;
    use integration_runtime::{lifecycle_event_key, EventKind};

    let dir = TempDir::new();
    let (_, store) = sqlite_store(&dir).await;
    let router = WebhookReceiver::new(Arc::clone(&store))
        .integration_with_secrets(tts(), &[Secret::new(TTS_SECRET)])
        .unwrap()
        .router();
    let base = serve(router).await;
    let id = initialized_call(&*store, "HookTts", "synthesize", json!({"text": "x"}), "task-l").await;
    // The engine's poll finished the call first, under its own key.
    let key = lifecycle_event_key(EventKind::Completed);
    store
        .append_event(id, NewEvent::completed(key, json!({"url": "p", "duration_ms": 1})))
        .await
        .unwrap();
    let before = store.get_with_events(id).await.unwrap().unwrap();

    let body = done("task-l");
    let headers = standard::sign(TTS_SECRET, "msg_l", now(), body.as_bytes()).unwrap();
    let mut request = reqwest::Client::new().post(format!("{base}/webhooks/tts")).body(body);
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.as_bytes());
    }
    let a = answer(request.send().await.unwrap()).await;
    assert_eq!((a.status, &a.json["outcome"]), (200, &json!("duplicate")), "{}", a.text);
    assert_eq!(
        store.get_with_events(id).await.unwrap().unwrap(),
        before,
        "one terminal event only"
    );
}

#[tokio::test]
async fn concurrent_redeliveries_are_stored_once() {
    let env = Arc::new(env().await);
    let id = env.tts_call("task-c").await;
    let ts = now();
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let env = Arc::clone(&env);
            tokio::spawn(async move { env.tts("msg_c", ts, &done("task-c")).await.status })
        })
        .collect();
    let mut statuses = Vec::new();
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let after = env.snapshot(id).await;
    assert_eq!(after.call.status, CallStatus::Completed);
    assert_eq!(after.events.len(), 2);
}
