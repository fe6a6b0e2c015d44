//! A delivery id is a delivery id: a second delivery under an id already
//! recorded is answered `200 duplicate` and stores nothing, whatever its
//! (validly signed) body says, through a hand-built receiver and through
//! `Runtime::router`; and a webhook secret may itself contain a comma.

#![cfg(all(feature = "sqlite", feature = "server"))]

mod webhook_support;

use std::sync::Arc;

use axum::http::HeaderMap;
use integration_runtime::webhook::signature::{generic, standard, stripe};
use integration_runtime::webhook::WebhookReceiver;
use integration_runtime::{CallStatus, Integration, Runtime, Secret, SignatureEncoding, Store};
use serde_json::json;
use webhook_support::{answer, initialized_call, serve, sqlite_store, Answer, TempDir};

integration_runtime::integration!("tests/specs/webhook_tts.toml");
integration_runtime::integration!("tests/specs/webhook_pay.toml");
integration_runtime::integration!("tests/specs/webhook_git.toml");

const TTS_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const PAY_SECRET: &str = "whsec_stripe_test_secret";

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

fn git(webhook_secret: &str) -> Arc<dyn Integration> {
    Arc::new(
        hook_git::HookGit::new(hook_git::HookGitConfig {
            base_url: "http://127.0.0.1:9".into(),
            webhook_secret: Secret::new(webhook_secret),
        })
        .unwrap(),
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn post(base: &str, path: &str, headers: HeaderMap, body: String) -> Answer {
    let mut request = reqwest::Client::new().post(format!("{base}{path}")).body(body);
    for (name, value) in &headers {
        request = request.header(name.as_str(), value.as_bytes());
    }
    answer(request.send().await.unwrap()).await
}

fn running(task: &str) -> String {
    json!({"task_id": task, "state": "running"}).to_string()
}

fn done(task: &str) -> String {
    json!({"task_id": task, "state": "done", "audio_url": "https://cdn/a.mp3", "duration": 1500}).to_string()
}

/// Delivers `first` then `second` under the same Standard Webhooks id to the
/// TTS route at `base` for a call known as `task` (and so already
/// `processing`), both validly signed; the second must be answered `200 duplicate` and leave the call as the first
/// left it.
async fn same_id_twice(base: &str, store: &dyn Store, task: &str, first: String, second: String) {
    let id = initialized_call(store, "HookTts", "synthesize", json!({"text": "hi"}), task).await;
    let delivery = format!("msg_{task}");
    let headers = standard::sign(TTS_SECRET, &delivery, now(), first.as_bytes()).unwrap();
    let a = post(base, "/webhooks/tts", headers, first).await;
    assert_eq!(a.status, 200, "{}", a.text);
    let before = store.get_with_events(id).await.unwrap().unwrap();

    let headers = standard::sign(TTS_SECRET, &delivery, now(), second.as_bytes()).unwrap();
    let a = post(base, "/webhooks/tts", headers, second).await;
    assert_eq!((a.status, &a.json["outcome"]), (200, &json!("duplicate")), "{}", a.text);
    assert_eq!(
        store.get_with_events(id).await.unwrap().unwrap(),
        before,
        "a second body under delivery id {delivery} changed the call"
    );
}

#[tokio::test]
async fn a_redelivered_id_with_another_body_records_nothing_through_a_hand_built_receiver() {
    let dir = TempDir::new();
    let (_, store) = sqlite_store(&dir).await;
    // The default event keys: one event per lifecycle step.
    let router = WebhookReceiver::new(Arc::clone(&store))
        .integration_with_secrets(tts(), &[Secret::new(TTS_SECRET)])
        .unwrap()
        .integration_with_secrets(pay(), &[Secret::new(PAY_SECRET)])
        .unwrap()
        .router();
    let base = serve(router).await;

    // `processing` (kept, ignored) then, under the same id, `completed`: not applied.
    same_id_twice(&base, &*store, "task-a", running("task-a"), done("task-a")).await;
    // `completed` then a `processing` under its id: not even kept as ignored.
    same_id_twice(&base, &*store, "task-b", done("task-b"), running("task-b")).await;

    // Stripe's delivery id is the event's `id`, inside the signed body.
    let id = initialized_call(&*store, "HookPay", "create", json!({"amount": 1200}), "pi_1").await;
    let event = |kind: &str| {
        json!({"id": "evt_1", "type": kind, "data": {"object": {"id": "pi_1", "amount_received": 1200}}}).to_string()
    };
    let first = event("payment_intent.processing");
    let a = post(
        &base,
        "/webhooks/pay",
        stripe::sign(PAY_SECRET, now(), first.as_bytes()),
        first,
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let before = store.get_with_events(id).await.unwrap().unwrap();
    let second = event("payment_intent.succeeded");
    let a = post(
        &base,
        "/webhooks/pay",
        stripe::sign(PAY_SECRET, now(), second.as_bytes()),
        second,
    )
    .await;
    assert_eq!((a.status, &a.json["outcome"]), (200, &json!("duplicate")), "{}", a.text);
    assert_eq!(store.get_with_events(id).await.unwrap().unwrap(), before);
    assert_eq!(before.call.status, CallStatus::Processing);
}

#[tokio::test]
async fn a_redelivered_id_with_another_body_records_nothing_through_the_runtime_router() {
    let dir = TempDir::new();
    let (sqlite, _) = sqlite_store(&dir).await;
    let rt = Runtime::builder()
        .store(sqlite)
        .integration_arc(tts())
        .build()
        .await
        .unwrap();
    let base = serve(rt.router(None).unwrap()).await;
    let store = Arc::clone(rt.store());

    same_id_twice(&base, &*store, "task-r", running("task-r"), done("task-r")).await;
    same_id_twice(&base, &*store, "task-s", done("task-s"), running("task-s")).await;
}

#[tokio::test]
async fn a_secret_containing_a_comma_verifies() {
    const SECRET: &str = "It's a secret, to everybody";
    let dir = TempDir::new();
    let (_, store) = sqlite_store(&dir).await;
    // During a rotation, next to an older secret; the comma of the secret
    // itself is escaped, the one between the two secrets is not.
    let router = WebhookReceiver::new(Arc::clone(&store))
        .integration(git(r"old-secret, It's a secret\, to everybody"))
        .unwrap()
        .router();
    let base = serve(router).await;
    let id = initialized_call(&*store, "HookGit", "start", json!({"repo": "a/b"}), "7").await;
    let body = json!({"build": {"id": 7, "status": "in_progress"}}).to_string();
    let sign = |secret: &str| {
        generic::sign(
            "X-Hub-Signature-256",
            secret,
            SignatureEncoding::Hex,
            "sha256=",
            body.as_bytes(),
        )
    };

    let a = post(&base, "/webhooks/git", sign(SECRET), body.clone()).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(store.get_with_events(id).await.unwrap().unwrap().events.len(), 2);
    // The older secret still verifies; neither half of the new one does.
    assert_eq!(
        post(&base, "/webhooks/git", sign("old-secret"), body.clone())
            .await
            .status,
        200
    );
    for half in ["It's a secret", "to everybody", r"It's a secret\"] {
        assert_eq!(
            post(&base, "/webhooks/git", sign(half), body.clone()).await.status,
            401,
            "{half}"
        );
    }
}
