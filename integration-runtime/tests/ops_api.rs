//! The operations API, `/health` and `/metrics` over real HTTP, against a
//! SQLite store and (for refresh) a mock provider; connections through a
//! runtime's router, with a credential key.

#![cfg(all(feature = "sqlite", feature = "server"))]

mod webhook_support;

use std::sync::{Arc, Mutex};
use std::time::Instant;

use integration_runtime::connection::{Keyring, CREDENTIAL_KEY_ENV};
use integration_runtime::ops::{CircuitReport, Health, OpsApi};
use integration_runtime::store::NewEvent;
use integration_runtime::{
    CallId, CallStatus, CircuitState, Credentials, FailureKind, Integration, IntoCall, Metrics, NewCall, NewConnection,
    Runtime, Secret, Store,
};
use serde_json::{json, Value};
use webhook_support::{answer, initialized_call, metric, parse_prometheus, serve, sqlite_store, Answer, TempDir};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

integration_runtime::integration!("tests/specs/webhook_tts.toml");

const TOKEN: &str = "ops-token-0123456789";

fn tts(base_url: &str) -> Arc<dyn Integration> {
    Arc::new(
        hook_tts::HookTts::new(hook_tts::HookTtsConfig {
            base_url: base_url.into(),
            token: Secret::new("provider-token"),
            webhook_secret: Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
        })
        .unwrap(),
    )
}

struct Env {
    _dir: TempDir,
    store: Arc<dyn Store>,
    base: String,
    http: reqwest::Client,
    provider: MockServer,
}

async fn env() -> Env {
    let dir = TempDir::new();
    let (_, store) = sqlite_store(&dir).await;
    let provider = MockServer::start().await;
    let ops = OpsApi::new(Arc::clone(&store))
        .integration(tts(&provider.uri()))
        .token(Some(Secret::new(TOKEN)))
        .router();
    let router = axum::Router::new().nest("/ops", ops);
    Env {
        _dir: dir,
        store,
        base: serve(router).await,
        http: reqwest::Client::new(),
        provider,
    }
}

impl Env {
    async fn get(&self, path: &str) -> Answer {
        let request = self.http.get(format!("{}/ops{path}", self.base)).bearer_auth(TOKEN);
        answer(request.send().await.unwrap()).await
    }

    async fn post(&self, path: &str) -> Answer {
        let request = self.http.post(format!("{}/ops{path}", self.base)).bearer_auth(TOKEN);
        answer(request.send().await.unwrap()).await
    }

    async fn pending(&self, text: &str) -> CallId {
        let call = NewCall::new("HookTts", "synthesize", json!({"text": text}));
        self.store.create(call).await.unwrap().id
    }

    async fn failed(&self, text: &str) -> CallId {
        let id = self.pending(text).await;
        self.store
            .append_event(id, NewEvent::failed(format!("failed:{id}"), "provider said no"))
            .await
            .unwrap();
        id
    }
}

#[tokio::test]
async fn the_api_needs_the_token_and_is_off_without_one() {
    let env = env().await;
    let url = format!("{}/ops/calls?integration=HookTts", env.base);
    let none = answer(env.http.get(&url).send().await.unwrap()).await;
    assert_eq!((none.status, &none.json["error"]), (401, &json!("unauthorized")));
    assert_eq!(none.headers["www-authenticate"], "Bearer");
    let wrong = answer(
        env.http
            .get(&url)
            .bearer_auth("ops-token-0123456788")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(wrong.status, 401);
    let short = answer(env.http.get(&url).bearer_auth("o").send().await.unwrap()).await;
    assert_eq!(short.status, 401);
    let basic = answer(
        env.http
            .get(&url)
            .basic_auth("admin", Some(TOKEN))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(basic.status, 401);
    assert_eq!(env.get("/calls?integration=HookTts").await.status, 200);
    // Refresh and retry are behind the same check.
    let id = env.failed("x").await;
    let retry = env
        .http
        .post(format!("{}/ops/calls/{id}/retry", env.base))
        .send()
        .await
        .unwrap();
    assert_eq!(retry.status().as_u16(), 401);

    // No token: everything is 404, as if not mounted.
    let disabled = OpsApi::new(Arc::clone(&env.store)).token(None);
    assert!(!disabled.is_enabled());
    let base = serve(axum::Router::new().nest("/ops", disabled.router())).await;
    let off = env
        .http
        .get(format!("{base}/ops/calls?integration=HookTts"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(off.status().as_u16(), 404);
    let empty = OpsApi::new(Arc::clone(&env.store)).token(Some(Secret::new("")));
    assert!(!empty.is_enabled());
}

#[tokio::test]
async fn calls_are_listed_by_page_and_status_and_shown_with_events() {
    let env = env().await;
    let a = env.pending("a").await;
    let b = env.failed("b").await;
    let c = initialized_call(&*env.store, "HookTts", "synthesize", json!({"text": "c"}), "t-c").await;

    let first = env.get("/calls?integration=HookTts&limit=2").await;
    assert_eq!(first.status, 200, "{}", first.text);
    let ids: Vec<&Value> = first.json["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["id"])
        .collect();
    assert_eq!(ids, [&json!(a.to_string()), &json!(b.to_string())]);
    let next = first.json["next"].as_str().unwrap();
    let second = env
        .get(&format!("/calls?integration=HookTts&limit=2&after={next}"))
        .await;
    assert_eq!(second.json["calls"][0]["id"], json!(c.to_string()));
    assert_eq!(second.json["calls"][0]["external_id"], json!("t-c"));
    assert_eq!(second.json["next"], Value::Null);

    let newest = env.get("/calls?integration=HookTts&order=newest&limit=1").await;
    assert_eq!(newest.json["calls"][0]["id"], json!(c.to_string()));
    let processing = env.get("/calls?integration=HookTts&status=processing").await;
    assert_eq!(processing.json["calls"].as_array().unwrap().len(), 1);
    let failed = env.get("/failed?integration=HookTts").await;
    assert_eq!(failed.json["calls"].as_array().unwrap().len(), 1);
    assert_eq!(failed.json["calls"][0]["error"], json!("provider said no"));

    for bad in [
        "/calls",
        "/calls?integration=HookTts&status=done",
        "/calls?integration=HookTts&after=xyz",
        "/calls?integration=HookTts&order=sideways",
        "/calls?integration=HookTts&limit=-1",
        "/failed?integration=HookTts&status=pending",
    ] {
        let answer = env.get(bad).await;
        assert_eq!(
            (answer.status, &answer.json["error"]),
            (400, &json!("bad_request")),
            "{bad}: {}",
            answer.text
        );
    }

    let shown = env.get(&format!("/calls/{c}")).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.json["call"]["status"], json!("processing"));
    assert_eq!(shown.json["events"][0]["kind"], json!("initialized"));
    assert_eq!(env.get(&format!("/calls/{}", CallId::new())).await.status, 404);
    let bad_id = env.get("/calls/not-a-uuid").await;
    assert_eq!((bad_id.status, &bad_id.json["error"]), (400, &json!("bad_request")));

    let integrations = env.get("/integrations").await;
    assert_eq!(
        integrations.json,
        json!({"integrations": [{"name": "HookTts", "polling": true, "webhook": "/webhooks/tts",
            "calls": {"pending": 1, "processing": 1, "completed": 0, "failed": 1}}]})
    );
}

#[tokio::test]
async fn refresh_asks_the_provider_and_records_its_answer() {
    let env = env().await;
    Mock::given(method("GET"))
        .and(path("/tasks/t-9"))
        .and(header("authorization", "Bearer provider-token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"state": "running"})))
        .up_to_n_times(2)
        .mount(&env.provider)
        .await;
    Mock::given(method("GET"))
        .and(path("/tasks/t-9"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"state": "done", "audio_url": "https://cdn/9.mp3", "duration": 900})),
        )
        .mount(&env.provider)
        .await;
    let id = initialized_call(&*env.store, "HookTts", "synthesize", json!({"text": "9"}), "t-9").await;

    let running = env.post(&format!("/calls/{id}/refresh")).await;
    assert_eq!(running.status, 200, "{}", running.text);
    assert_eq!(
        running.json["outcome"],
        json!("ignored"),
        "processing after initialized moves nothing"
    );
    let again = env.post(&format!("/calls/{id}/refresh")).await;
    assert_eq!(again.json["outcome"], json!("duplicate"));
    let done = env.post(&format!("/calls/{id}/refresh")).await;
    assert_eq!(done.json["outcome"], json!("applied"));
    assert_eq!(done.json["call"]["status"], json!("completed"));
    assert_eq!(
        done.json["call"]["response_data"],
        json!({"url": "https://cdn/9.mp3", "duration_ms": 900})
    );
    assert_eq!(env.store.get_with_events(id).await.unwrap().unwrap().events.len(), 3);

    let terminal = env.post(&format!("/calls/{id}/refresh")).await;
    assert_eq!(
        (terminal.status, &terminal.json["error"]),
        (409, &json!("already_terminal"))
    );
    let pending = env.pending("p").await;
    let no_id = env.post(&format!("/calls/{pending}/refresh")).await;
    assert_eq!((no_id.status, &no_id.json["error"]), (409, &json!("no_external_id")));

    // The provider failing is a 502 with its message, and nothing is recorded.
    Mock::given(method("GET"))
        .and(path("/tasks/t-bad"))
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({"message": "on fire"})))
        .mount(&env.provider)
        .await;
    let bad = initialized_call(&*env.store, "HookTts", "synthesize", json!({"text": "b"}), "t-bad").await;
    let failed = env.post(&format!("/calls/{bad}/refresh")).await;
    assert_eq!((failed.status, &failed.json["error"]), (502, &json!("provider_error")));
    assert!(
        failed.json["message"].as_str().unwrap().contains("on fire"),
        "{}",
        failed.text
    );
    assert_eq!(env.store.get_with_events(bad).await.unwrap().unwrap().events.len(), 1);
}

#[tokio::test]
async fn cancel_fails_a_pending_call_and_refuses_what_it_cannot_stop() {
    let env = env().await;
    let cancel = |id: CallId, body: &'static str| {
        let request = env
            .http
            .post(format!("{}/ops/calls/{id}/cancel", env.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/json")
            .body(body);
        async move { answer(request.send().await.unwrap()).await }
    };
    let pending = env.pending("p").await;
    let cancelled = cancel(pending, r#"{"reason": "customer left"}"#).await;
    assert_eq!(cancelled.status, 200, "{}", cancelled.text);
    assert_eq!(cancelled.json["call"]["status"], json!("failed"));
    assert_eq!(cancelled.json["call"]["error_kind"], json!("cancelled"));
    assert_eq!(cancelled.json["call"]["error"], json!("cancelled: customer left"));
    // No body is fine too; a finished call is refused.
    let again = env.post(&format!("/calls/{pending}/cancel")).await;
    assert_eq!((again.status, &again.json["error"]), (409, &json!("already_terminal")));
    // HookTts declares no cancel endpoint: a processing call cannot be stopped.
    let processing = initialized_call(&*env.store, "HookTts", "synthesize", json!({"text": "x"}), "t-x").await;
    let refused = cancel(processing, "").await;
    assert_eq!(
        (refused.status, &refused.json["error"]),
        (409, &json!("not_cancellable"))
    );
    assert!(
        refused.json["message"].as_str().unwrap().contains("no cancel endpoint"),
        "{}",
        refused.text
    );
    assert_eq!(
        env.store.get(processing).await.unwrap().unwrap().status,
        CallStatus::Processing
    );
    let bad = cancel(processing, r#"{"why": 1}"#).await;
    assert_eq!(bad.status, 400, "{}", bad.text);
    let unknown = cancel(CallId::new(), "").await;
    assert_eq!(unknown.status, 404);
}

#[tokio::test]
async fn retry_creates_a_linked_new_call_once_and_refuses_live_ones() {
    let env = env().await;
    let old = env.failed("again").await;
    let first = env.post(&format!("/calls/{old}/retry")).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(first.json["retry_of"], json!(old.to_string()));
    assert_eq!(first.json["created"], json!(true));
    let new: CallId = first.json["call_id"].as_str().unwrap().parse().unwrap();
    assert_ne!(new, old);
    let record = env.store.get(new).await.unwrap().unwrap();
    assert_eq!(record.status, CallStatus::Pending);
    assert_eq!(record.params, json!({"text": "again"}));
    assert_eq!(record.endpoint, "synthesize");
    assert_eq!(record.idempotency_key, Some(format!("retry-of:{old}")));
    assert_eq!(env.store.get(old).await.unwrap().unwrap().status, CallStatus::Failed);

    let second = env.post(&format!("/calls/{old}/retry")).await;
    assert_eq!(
        (second.status, &second.json["call_id"], &second.json["created"]),
        (200, &json!(new.to_string()), &json!(false))
    );

    let done = initialized_call(&*env.store, "HookTts", "synthesize", json!({"text": "d"}), "t-d").await;
    env.store
        .append_event(done, NewEvent::completed("done", json!({})))
        .await
        .unwrap();
    let refused = env.post(&format!("/calls/{done}/retry")).await;
    assert_eq!(refused.status, 409);
    assert_eq!(refused.json["error"], json!("not_retryable"));
    assert_eq!(
        refused.json["message"],
        json!(format!("call {done} is completed; only failed calls can be retried"))
    );
    let in_flight = env.post(&format!("/calls/{new}/retry")).await;
    assert_eq!(
        (in_flight.status, &in_flight.json["error"]),
        (409, &json!("not_retryable"))
    );
    assert_eq!(env.post(&format!("/calls/{}/retry", CallId::new())).await.status, 404);
}

#[tokio::test]
async fn health_reports_the_store_and_circuits() {
    let dir = TempDir::new();
    let (sqlite, store) = sqlite_store(&dir).await;
    let state = Arc::new(Mutex::new(CircuitState::Closed));
    let circuits = {
        let state = Arc::clone(&state);
        move || {
            vec![CircuitReport {
                name: "HookTts".into(),
                state: *state.lock().unwrap(),
            }]
        }
    };
    let base = serve(Health::new(Arc::clone(&store)).circuits(Arc::new(circuits)).router()).await;
    let http = reqwest::Client::new();
    let health = || async { answer(http.get(format!("{base}/health")).send().await.unwrap()).await };

    let up = health().await;
    assert_eq!(up.status, 200, "{}", up.text);
    assert_eq!(up.json["status"], json!("up"));
    assert_eq!(up.json["checks"]["store"]["status"], json!("up"));
    assert_eq!(up.json["checks"]["circuits"]["detail"], json!({"HookTts": "closed"}));

    *state.lock().unwrap() = CircuitState::Open { until: Instant::now() };
    let degraded = health().await;
    assert_eq!((degraded.status, &degraded.json["status"]), (200, &json!("degraded")));
    assert_eq!(
        degraded.json["checks"]["circuits"]["detail"],
        json!({"HookTts": "open"})
    );

    sqlite.pool().close().await;
    let down = health().await;
    assert_eq!((down.status, &down.json["status"]), (503, &json!("down")));
    assert_eq!(down.json["checks"]["store"]["status"], json!("down"));
}

#[tokio::test]
async fn metrics_export_store_state_circuits_and_recorded_counts() {
    let env = env().await;
    env.pending("q1").await;
    env.pending("q2").await;
    env.failed("f").await;
    let metrics = Metrics::new();
    metrics.call_created("HookTts");
    metrics.call_finished("HookTts", CallStatus::Failed, Some(FailureKind::Rejected));
    metrics.attempt("HookTts", "synthesize", "ok", std::time::Duration::from_millis(30));
    let circuits = || {
        vec![CircuitReport {
            name: "HookTts".into(),
            state: CircuitState::Open { until: Instant::now() },
        }]
    };
    let exporter = metrics
        .exporter(Arc::clone(&env.store))
        .integration(&*tts("http://127.0.0.1:9"))
        .circuits(Arc::new(circuits));
    let base = serve(exporter.router()).await;
    let text = env
        .http
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let samples = parse_prometheus(&text);
    let tts = [("integration", "HookTts")];
    assert_eq!(metric(&samples, "integration_queue_depth", &tts), Some(2.0));
    assert_eq!(
        metric(&samples, "integration_calls", &[tts[0], ("status", "failed")]),
        Some(1.0)
    );
    assert_eq!(metric(&samples, "integration_calls_created_total", &tts), Some(1.0));
    assert_eq!(
        metric(
            &samples,
            "integration_calls_finished_total",
            &[tts[0], ("status", "failed"), ("kind", "rejected")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &samples,
            "integration_attempts_total",
            &[tts[0], ("endpoint", "synthesize"), ("outcome", "ok")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &samples,
            "integration_attempt_duration_seconds_bucket",
            &[tts[0], ("endpoint", "synthesize"), ("le", "0.05")]
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(&samples, "integration_circuit_state", &[("circuit", "HookTts")]),
        Some(2.0)
    );
    assert_eq!(metric(&samples, "integration_store_up", &[]), Some(1.0));
}

integration_runtime::integration!("tests/specs/engine_connections.toml");

const ACME_SECRET: &str = "acme-secret-token-4f1c";
const GLOBEX_SECRET: &str = "globex-secret-token-9b2e";

/// A runtime with a credential key (not running: its calls stay pending),
/// two connections of `Tenants`, and its router served with the ops API.
struct Connected {
    _dir: TempDir,
    rt: Runtime,
    store: Arc<dyn Store>,
    key: String,
    base: String,
    http: reqwest::Client,
    acme_calls: Vec<CallId>,
    globex_call: CallId,
    default_call: CallId,
}

async fn connected() -> Connected {
    let dir = TempDir::new();
    let (_, store) = sqlite_store(&dir).await;
    let key = Keyring::generate("k1");
    let var = key.clone();
    let keyring = Keyring::from_vars(move |name| (name == CREDENTIAL_KEY_ENV).then(|| var.clone())).unwrap();
    let tenants = tenants::Tenants::new(tenants::TenantsConfig {
        base_url: "http://127.0.0.1:9".to_owned(),
        token: Secret::new("app-token"),
    })
    .unwrap();
    let rt = Runtime::builder()
        .store(Arc::clone(&store))
        .integration(tenants)
        .keyring(keyring)
        .build()
        .await
        .unwrap();
    for (id, secret) in [("acme", ACME_SECRET), ("globex", GLOBEX_SECRET)] {
        rt.put_connection(NewConnection::new("Tenants", id, Credentials::bearer(secret)))
            .await
            .unwrap();
    }
    let note = |text: &str| {
        tenants::TenantsRequest::Save(tenants::Note {
            text: text.to_owned(),
            region: "us".to_owned(),
        })
    };
    let mut acme_calls = Vec::new();
    for text in ["a1", "a2"] {
        acme_calls.push(rt.create(note(text).on_connection("acme")).await.unwrap());
    }
    let globex_call = rt.create(note("g1").on_connection("globex")).await.unwrap();
    let default_call = rt.create(note("d1")).await.unwrap();
    let base = serve(rt.router(Some(Secret::new(TOKEN))).unwrap()).await;
    Connected {
        _dir: dir,
        rt,
        store,
        key,
        base,
        http: reqwest::Client::new(),
        acme_calls,
        globex_call,
        default_call,
    }
}

impl Connected {
    async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let answer = answer(request.bearer_auth(TOKEN).send().await.unwrap()).await;
        // Whatever the route: no credential, no key, no sealed value.
        for secret in [
            ACME_SECRET,
            GLOBEX_SECRET,
            "app-token",
            &self.key,
            self.key.split(':').nth(1).unwrap(),
        ] {
            assert!(!answer.text.contains(secret), "a secret in an answer: {}", answer.text);
        }
        assert!(
            !answer.text.contains("v1.k1."),
            "a sealed value in an answer: {}",
            answer.text
        );
        answer
    }

    async fn get(&self, path: &str) -> Answer {
        self.send(self.http.get(format!("{}/ops{path}", self.base))).await
    }

    async fn post(&self, path: &str) -> Answer {
        self.send(self.http.post(format!("{}/ops{path}", self.base))).await
    }
}

fn ids_of(listed: &Value, field: &str, member: &str) -> Vec<String> {
    listed[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item[member].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn connections_are_listed_shown_and_revoked_without_a_secret() {
    let env = connected().await;
    let listed = env.get("/connections").await;
    assert_eq!(listed.status, 200, "{}", listed.text);
    assert_eq!(ids_of(&listed.json, "connections", "id"), ["acme", "globex"]);
    for connection in listed.json["connections"].as_array().unwrap() {
        assert_eq!(connection["integration"], json!("Tenants"));
        assert_eq!(connection["credential_names"], json!(["token"]));
        assert_eq!(connection["key_id"], json!("k1"));
        assert_eq!(connection["revoked_at"], Value::Null);
    }
    let of_tenants = env.get("/connections?integration=Tenants").await;
    assert_eq!(of_tenants.json["connections"].as_array().unwrap().len(), 2);
    let of_other = env.get("/connections?integration=HookTts").await;
    assert_eq!(of_other.json, json!({"connections": []}));

    let shown = env.get("/connections/Tenants/acme").await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.json["connection"], listed.json["connections"][0]);

    let revoked = env.post("/connections/Tenants/acme/revoke").await;
    assert_eq!(revoked.status, 200, "{}", revoked.text);
    assert_eq!(revoked.json["calls_failed"], json!(2));
    assert_eq!(revoked.json["connection"]["id"], json!("acme"));
    assert_eq!(revoked.json["connection"]["credential_names"], json!(["token"]));
    assert!(revoked.json["connection"]["revoked_at"].is_string(), "{}", revoked.text);
    for id in &env.acme_calls {
        let call = env.store.get(*id).await.unwrap().unwrap();
        assert_eq!(
            (call.status, call.error_kind),
            (CallStatus::Failed, Some(FailureKind::Revoked))
        );
    }
    for id in [env.globex_call, env.default_call] {
        let call = env.store.get(id).await.unwrap().unwrap();
        assert_eq!(call.status, CallStatus::Pending, "other connections' calls stay");
    }
    let runtime_view = env.rt.connection("Tenants", "acme").await.unwrap().unwrap();
    assert!(runtime_view.is_revoked());
    let again = env.post("/connections/Tenants/acme/revoke").await;
    assert_eq!(
        (again.status, &again.json["calls_failed"]),
        (200, &json!(0)),
        "{}",
        again.text
    );
    let shown = env.get("/connections/Tenants/acme").await;
    assert_eq!(
        shown.json["connection"]["revoked_at"],
        revoked.json["connection"]["revoked_at"]
    );

    for unknown in [
        env.get("/connections/Tenants/nobody").await,
        env.get("/connections/Nothing/acme").await,
        env.post("/connections/Tenants/nobody/revoke").await,
    ] {
        assert_eq!(
            (unknown.status, &unknown.json["error"]),
            (404, &json!("not_found")),
            "{}",
            unknown.text
        );
    }
    let bad = env.get("/connections?integration=Tenants&id=acme").await;
    assert_eq!(bad.status, 400, "{}", bad.text);
}

#[tokio::test]
async fn connection_routes_need_the_token() {
    let env = connected().await;
    for request in [
        env.http.get(format!("{}/ops/connections", env.base)),
        env.http.get(format!("{}/ops/connections/Tenants/acme", env.base)),
        env.http
            .post(format!("{}/ops/connections/Tenants/acme/revoke", env.base)),
        env.http
            .post(format!("{}/ops/connections/Tenants/acme/revoke", env.base))
            .bearer_auth("ops-token-0123456788"),
    ] {
        let refused = answer(request.send().await.unwrap()).await;
        assert_eq!((refused.status, &refused.json["error"]), (401, &json!("unauthorized")));
    }
    let acme = env.rt.connection("Tenants", "acme").await.unwrap().unwrap();
    assert!(!acme.is_revoked(), "a refused revoke revokes nothing");
    assert_eq!(
        env.store.get(env.acme_calls[0]).await.unwrap().unwrap().status,
        CallStatus::Pending
    );
}

#[tokio::test]
async fn an_api_without_the_key_shows_no_credential_names() {
    let env = connected().await;
    let ops = OpsApi::new(Arc::clone(&env.store))
        .token(Some(Secret::new(TOKEN)))
        .router();
    let base = serve(axum::Router::new().nest("/ops", ops)).await;
    let request = env.http.get(format!("{base}/ops/connections/Tenants/globex"));
    let shown = env.send(request).await;
    assert_eq!(shown.status, 200, "{}", shown.text);
    assert_eq!(shown.json["connection"]["credential_names"], json!([]));
    assert_eq!(shown.json["connection"]["key_id"], json!("k1"));
}

#[tokio::test]
async fn calls_are_filtered_by_connection() {
    let env = connected().await;
    let all = env.get("/calls?integration=Tenants").await;
    assert_eq!(all.json["calls"].as_array().unwrap().len(), 4, "{}", all.text);
    let acme = env.get("/calls?integration=Tenants&connection=acme").await;
    assert_eq!(acme.status, 200, "{}", acme.text);
    let expected: Vec<String> = env.acme_calls.iter().map(ToString::to_string).collect();
    assert_eq!(ids_of(&acme.json, "calls", "id"), expected);
    for call in acme.json["calls"].as_array().unwrap() {
        assert_eq!(call["connection"], json!("acme"));
    }
    let globex = env.get("/calls?integration=Tenants&connection=globex").await;
    assert_eq!(ids_of(&globex.json, "calls", "id"), [env.globex_call.to_string()]);
    let nobody = env.get("/calls?integration=Tenants&connection=nobody").await;
    assert_eq!(nobody.json["calls"], json!([]));

    env.post("/connections/Tenants/acme/revoke").await;
    let failed = env.get("/failed?integration=Tenants&connection=acme").await;
    assert_eq!(ids_of(&failed.json, "calls", "id").len(), 2, "{}", failed.text);
    let failed_globex = env.get("/failed?integration=Tenants&connection=globex").await;
    assert_eq!(failed_globex.json["calls"], json!([]));
}
