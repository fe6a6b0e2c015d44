//! Connections end to end, on a real SQLite file and on PostgreSQL (when
//! `INTEGRATION_TEST_DATABASE_URL` is set): each call is sent with its own
//! connection's credentials, base URL and overrides only; unknown and
//! revoked connections fail with their kind; credentials are sealed in the
//! store, the key is checked at startup and can be rotated.

#![cfg(all(feature = "sqlite", feature = "postgres"))]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_runtime::connection::{Keyring, CREDENTIAL_KEY_ENV, OLD_CREDENTIAL_KEYS_ENV};
use integration_runtime::{
    CallId, CallStatus, Credentials, FailureKind, IntoCall, ListQuery, NewConnection, Runtime, Secret, Store,
};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

mod runtime_support;
mod webhook_support;

use runtime_support::{postgres_store, spawn_run, stop};
use webhook_support::TempDir;

integration_runtime::integration!("tests/specs/engine_connections.toml");

use tenants::{Note, Tenants, TenantsConfig};

const LIMIT: Duration = Duration::from_secs(20);

/// The stores every scenario runs on: an SQLite file, and a fresh schema
/// on PostgreSQL when `INTEGRATION_TEST_DATABASE_URL` is set (said when not).
async fn stores(dir: &TempDir) -> Vec<(&'static str, Arc<dyn Store>)> {
    let (_, sqlite) = webhook_support::sqlite_store(dir).await;
    let mut stores = vec![("sqlite", sqlite)];
    if let Some((store, _)) = postgres_store("connections").await {
        stores.push(("postgres", Arc::new(store)));
    }
    stores
}

/// A keyring of the variables `vars`.
fn keyring(vars: &[(&str, &str)]) -> Keyring {
    let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    Keyring::from_vars(move |var| vars.iter().find(|(k, _)| k == var).map(|(_, v)| v.clone())).unwrap()
}

/// One request a provider saw.
#[derive(Debug, Clone)]
struct Seen {
    authorization: String,
    body: Value,
}

/// Records every request and answers with an id.
#[derive(Clone, Default)]
struct Recorder(Arc<Mutex<Vec<Seen>>>);

impl Recorder {
    fn seen(&self) -> Vec<Seen> {
        self.0.lock().unwrap().clone()
    }
}

impl Respond for Recorder {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let seen = Seen {
            authorization: request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned(),
            body: serde_json::from_slice(&request.body).unwrap_or(Value::Null),
        };
        let mut all = self.0.lock().unwrap();
        all.push(seen);
        ResponseTemplate::new(200).set_body_json(json!({"id": format!("n-{}", all.len())}))
    }
}

async fn provider() -> (MockServer, Recorder) {
    let server = MockServer::start().await;
    let recorder = Recorder::default();
    Mock::given(method("POST"))
        .and(path("/notes"))
        .respond_with(recorder.clone())
        .mount(&server)
        .await;
    (server, recorder)
}

async fn runtime(store: &Arc<dyn Store>, base_url: &str, keys: Keyring) -> Runtime {
    let tenants = Tenants::new(TenantsConfig {
        base_url: base_url.to_owned(),
        token: Secret::new("app-token"),
    })
    .unwrap();
    Runtime::builder()
        .store(Arc::clone(store))
        .integration(tenants)
        .keyring(keys)
        .concurrency(8)
        .poll_idle(Duration::from_millis(20))
        .build()
        .await
        .unwrap()
}

fn note(text: &str) -> tenants::TenantsRequest {
    tenants::TenantsRequest::Save(Note {
        text: text.to_owned(),
        region: "us".to_owned(),
    })
}

async fn wait_terminal(rt: &Runtime, ids: &[CallId]) {
    tokio::time::timeout(LIMIT, async {
        loop {
            let mut done = true;
            for id in ids {
                done &= rt.get(*id).await.unwrap().unwrap().is_terminal();
            }
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the calls ended in time");
}

#[tokio::test]
async fn each_call_carries_its_own_connections_credentials_only() {
    let dir = TempDir::new();
    for (backend, store) in stores(&dir).await {
        let (shared, shared_seen) = provider().await;
        let (own, own_seen) = provider().await;
        let rt = runtime(
            &store,
            &shared.uri(),
            keyring(&[(CREDENTIAL_KEY_ENV, &Keyring::generate("k1"))]),
        )
        .await;
        rt.put_connection(NewConnection::new("Tenants", "acme", Credentials::bearer("acme-token")))
            .await
            .unwrap();
        // Globex has a host of its own and always writes to the EU region.
        rt.put_connection(
            NewConnection::new("Tenants", "globex", Credentials::bearer("globex-token"))
                .base_url(own.uri())
                .param("region", "eu"),
        )
        .await
        .unwrap();
        let mut ids = Vec::new();
        for i in 0..20 {
            ids.push(
                rt.create(note(&format!("acme-{i}")).on_connection("acme"))
                    .await
                    .unwrap(),
            );
            ids.push(
                rt.create(note(&format!("globex-{i}")).on_connection("globex"))
                    .await
                    .unwrap(),
            );
        }
        for i in 0..5 {
            ids.push(rt.create(note(&format!("default-{i}"))).await.unwrap());
        }
        let run = spawn_run(&rt);
        wait_terminal(&rt, &ids).await;
        stop(&rt, run).await;

        for id in &ids {
            let call = rt.get(*id).await.unwrap().unwrap();
            assert_eq!(call.status, CallStatus::Completed, "{backend}: {call:?}");
        }
        let shared_seen = shared_seen.seen();
        let own_seen = own_seen.seen();
        assert_eq!(
            shared_seen.len(),
            25,
            "{backend}: acme's and the default calls go to the shared host"
        );
        assert_eq!(own_seen.len(), 20, "{backend}: globex's calls go to its own host");
        for seen in &shared_seen {
            let text = seen.body["text"].as_str().unwrap();
            let expected = if text.starts_with("acme-") {
                "Bearer acme-token"
            } else {
                "Bearer app-token"
            };
            assert_eq!(seen.authorization, expected, "{backend}: {text}");
            assert_eq!(seen.body["region"], "us", "{backend}: {text}");
        }
        for seen in &own_seen {
            assert!(seen.body["text"].as_str().unwrap().starts_with("globex-"), "{backend}");
            assert_eq!(seen.authorization, "Bearer globex-token", "{backend}");
            assert_eq!(seen.body["region"], "eu", "{backend}: the connection's override");
        }
        // The call records and the listing know each call's connection.
        let page = rt
            .list(&ListQuery::new("Tenants").connection("globex").limit(100))
            .await
            .unwrap();
        assert_eq!(page.calls.len(), 20, "{backend}");
        assert!(page
            .calls
            .iter()
            .all(|call| call.connection.as_deref() == Some("globex")));
        let typed: Option<tenants::TenantsCall> = rt.get_typed(ids[0]).await.unwrap();
        assert_eq!(typed.unwrap().connection.as_deref(), Some("acme"), "{backend}");
    }
}

#[tokio::test]
async fn unknown_and_revoked_connections_fail_with_their_kind_and_send_nothing() {
    let dir = TempDir::new();
    for (backend, store) in stores(&dir).await {
        let (server, seen) = provider().await;
        let rt = runtime(
            &store,
            &server.uri(),
            keyring(&[(CREDENTIAL_KEY_ENV, &Keyring::generate("k1"))]),
        )
        .await;
        rt.put_connection(NewConnection::new("Tenants", "acme", Credentials::bearer("acme-token")))
            .await
            .unwrap();
        let unknown = rt.create(note("nobody's").on_connection("nobody")).await.unwrap();
        // Due in an hour: still pending when the connection is revoked.
        let later = chrono::Utc::now() + chrono::Duration::hours(1);
        let mut pending = Vec::new();
        for i in 0..3 {
            pending.push(
                rt.create_at(later, note(&format!("later-{i}")).on_connection("acme"))
                    .await
                    .unwrap(),
            );
        }
        let revoked = rt.revoke_connection("Tenants", "acme").await.unwrap();
        assert_eq!(revoked.calls_failed, 3, "{backend}");
        assert!(revoked.connection.is_revoked());
        let after = rt.create(note("after").on_connection("acme")).await.unwrap();

        let run = spawn_run(&rt);
        wait_terminal(&rt, &[unknown, after]).await;
        stop(&rt, run).await;
        let kind = |id: CallId| {
            let rt = rt.clone();
            async move { rt.get(id).await.unwrap().unwrap().error_kind }
        };
        assert_eq!(kind(unknown).await, Some(FailureKind::UnknownConnection), "{backend}");
        assert_eq!(kind(after).await, Some(FailureKind::Revoked), "{backend}");
        for id in pending {
            let call = rt.get(id).await.unwrap().unwrap();
            assert_eq!(call.status, CallStatus::Failed, "{backend}");
            assert_eq!(call.error_kind, Some(FailureKind::Revoked), "{backend}");
        }
        assert!(seen.seen().is_empty(), "{backend}: nothing was sent for them");
        let error = rt.revoke_connection("Tenants", "nobody").await.unwrap_err();
        assert!(error.is_not_found(), "{error}");
    }
}

#[tokio::test]
async fn credentials_are_sealed_in_the_database_file() {
    let dir = TempDir::new();
    let (_, store) = webhook_support::sqlite_store(&dir).await;
    let rt = runtime(
        &store,
        "http://127.0.0.1:9",
        keyring(&[(CREDENTIAL_KEY_ENV, &Keyring::generate("k1"))]),
    )
    .await;
    let marker = "sk-live-7b1e2c-ONLY-IN-THE-SEALED-ROW";
    let shown = rt
        .put_connection(NewConnection::new("Tenants", "acme", Credentials::bearer(marker)))
        .await
        .unwrap();
    assert_eq!(shown.credential_names, vec!["token".to_owned()]);
    assert_eq!(shown.key_id.as_deref(), Some("k1"));
    assert!(!format!("{shown:?}").contains(marker));
    assert!(!serde_json::to_string(&shown).unwrap().contains(marker));
    drop(rt);
    drop(store);
    // Every file of the database (the WAL too): the token is nowhere.
    let mut files = 0;
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        files += 1;
        assert!(
            !bytes.windows(marker.len()).any(|window| window == marker.as_bytes()),
            "the credential is in the database files"
        );
    }
    assert!(files >= 1);
}

#[tokio::test]
async fn the_key_is_checked_at_startup_and_rotated_by_resealing() {
    let dir = TempDir::new();
    for (backend, store) in stores(&dir).await {
        let (server, seen) = provider().await;
        let (old, new) = (Keyring::generate("2025"), Keyring::generate("2026"));
        let rt = runtime(&store, &server.uri(), keyring(&[(CREDENTIAL_KEY_ENV, &old)])).await;
        rt.put_connection(NewConnection::new("Tenants", "acme", Credentials::bearer("acme-token")))
            .await
            .unwrap();
        drop(rt);

        let build = |keys: Option<Keyring>| {
            let store = Arc::clone(&store);
            async move {
                let tenants = Tenants::new(TenantsConfig {
                    base_url: "http://127.0.0.1:9".to_owned(),
                    token: Secret::new("app-token"),
                })
                .unwrap();
                let mut builder = Runtime::builder().store(store).integration(tenants);
                if let Some(keys) = keys {
                    builder = builder.keyring(keys);
                }
                builder.build().await
            }
        };
        // No key, with sealed credentials stored: refused, naming the variable.
        if std::env::var(CREDENTIAL_KEY_ENV).is_err() {
            let error = build(None).await.unwrap_err().to_string();
            assert!(error.contains(CREDENTIAL_KEY_ENV), "{backend}: {error}");
        }
        // Another key under the same id: refused before anything is opened.
        let impostor = Keyring::generate("2025");
        let error = build(Some(keyring(&[(CREDENTIAL_KEY_ENV, &impostor)])))
            .await
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(CREDENTIAL_KEY_ENV) && error.contains("does not open"),
            "{backend}: {error}"
        );
        // Only the new key: the old one's values cannot be opened.
        let error = build(Some(keyring(&[(CREDENTIAL_KEY_ENV, &new)])))
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("`2025`"), "{backend}: {error}");

        // The rotation: the new key current, the old one retired, reseal.
        let rotating = build(Some(keyring(&[
            (CREDENTIAL_KEY_ENV, &new),
            (OLD_CREDENTIAL_KEYS_ENV, &old),
        ])))
        .await
        .unwrap();
        assert_eq!(rotating.reseal_credentials().await.unwrap(), 1, "{backend}");
        assert_eq!(
            rotating.reseal_credentials().await.unwrap(),
            0,
            "{backend}: nothing left under the old key"
        );
        drop(rotating);

        // Then the old key is dropped, and the connection still works.
        let rt = runtime(&store, &server.uri(), keyring(&[(CREDENTIAL_KEY_ENV, &new)])).await;
        let shown = rt.connection("Tenants", "acme").await.unwrap().unwrap();
        assert_eq!(shown.key_id.as_deref(), Some("2026"), "{backend}");
        let id = rt.create(note("after rotation").on_connection("acme")).await.unwrap();
        let run = spawn_run(&rt);
        wait_terminal(&rt, &[id]).await;
        stop(&rt, run).await;
        assert_eq!(
            rt.get(id).await.unwrap().unwrap().status,
            CallStatus::Completed,
            "{backend}"
        );
        assert_eq!(seen.seen()[0].authorization, "Bearer acme-token", "{backend}");
    }
}

#[tokio::test]
async fn a_connection_that_does_not_fit_is_refused_before_it_is_stored() {
    let dir = TempDir::new();
    let (_, store) = webhook_support::sqlite_store(&dir).await;
    let rt = runtime(
        &store,
        "http://127.0.0.1:9",
        keyring(&[(CREDENTIAL_KEY_ENV, &Keyring::generate("k1"))]),
    )
    .await;
    let wrong_name = Credentials::new().with("api_key", "the-value-never-shown");
    let error = rt
        .put_connection(NewConnection::new("Tenants", "acme", wrong_name))
        .await
        .unwrap_err();
    assert!(error.is_invalid(), "{error}");
    let text = error.to_string();
    assert!(text.contains("`api_key`") && text.contains("token"), "{text}");
    assert!(!text.contains("the-value-never-shown"), "{text}");
    let error = rt
        .put_connection(NewConnection::new("Tenants", "acme", Credentials::new()))
        .await
        .unwrap_err();
    assert!(error.to_string().contains("lacks token"), "{error}");
    let error = rt
        .put_connection(NewConnection::new("Tenants", "a/b", Credentials::bearer("t")))
        .await
        .unwrap_err();
    assert!(error.is_invalid(), "{error}");
    let error = rt
        .put_connection(NewConnection::new("Tenants", "acme", Credentials::bearer("t")).base_url("ftp://x"))
        .await
        .unwrap_err();
    assert!(error.is_invalid(), "{error}");
    let error = rt
        .put_connection(NewConnection::new("Nope", "acme", Credentials::bearer("t")))
        .await
        .unwrap_err();
    assert!(error.is_unknown_integration(), "{error}");
    assert!(rt.connections(None).await.unwrap().is_empty(), "nothing was stored");
    // A call naming a malformed connection id is refused at creation.
    let error = rt.create(note("x").on_connection("a b")).await.unwrap_err();
    assert!(error.is_invalid(), "{error}");
}

mod job_runner_spec {
    integration_runtime::integration!("../specs/job_runner.toml");
}

use job_runner_spec::job_runner::{
    JobRunner, JobRunnerConfig, JobRunnerRequest, ReportJob, ReportJobFormat, ReportJobReport,
};

/// A token endpoint that counts its requests, and a job runner that wants
/// its token.
async fn oauth_provider() -> (MockServer, Arc<std::sync::atomic::AtomicUsize>) {
    let server = MockServer::start().await;
    let issued = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = Arc::clone(&issued);
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(move |_: &Request| {
            let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            ResponseTemplate::new(200).set_body_json(json!({"access_token": format!("at-{n}"), "expires_in": 3600}))
        })
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(wiremock::matchers::header("authorization", "Bearer at-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"report": {"url": "u", "pages": 1}})))
        .mount(&server)
        .await;
    (server, issued)
}

fn job_runner(server: &MockServer) -> JobRunner {
    JobRunner::new(JobRunnerConfig {
        base_url: server.uri(),
        token_url: format!("{}/oauth/token", server.uri()),
        client_id: Secret::new("reporting-service"),
        client_secret: Secret::new("cs-secret"),
    })
    .unwrap()
}

fn report() -> JobRunnerRequest {
    JobRunnerRequest::Render(ReportJob {
        report: ReportJobReport::Sales,
        month: "2026-11".to_owned(),
        format: ReportJobFormat::Pdf,
    })
}

#[tokio::test]
async fn the_default_connections_token_is_shared_through_the_store() {
    let dir = TempDir::new();
    for (backend, store) in stores(&dir).await {
        let (server, issued) = oauth_provider().await;
        let key = Keyring::generate("k1");
        // Two runtimes on one store, each with a client of its own (as two
        // processes would have): the second takes the first one's token.
        for process in 0..2 {
            let rt = Runtime::builder()
                .store(Arc::clone(&store))
                .integration(job_runner(&server))
                .keyring(keyring(&[(CREDENTIAL_KEY_ENV, &key)]))
                .poll_idle(Duration::from_millis(20))
                .build()
                .await
                .unwrap();
            let id = rt.create(report()).await.unwrap();
            let run = spawn_run(&rt);
            wait_terminal(&rt, &[id]).await;
            stop(&rt, run).await;
            let call = rt.get(id).await.unwrap().unwrap();
            assert_eq!(
                call.status,
                CallStatus::Completed,
                "{backend}, process {process}: {call:?}"
            );
        }
        assert_eq!(
            issued.load(std::sync::atomic::Ordering::SeqCst),
            1,
            "{backend}: one token for both"
        );
    }
}

mod engine_life_spec {
    integration_runtime::integration!("tests/specs/engine_lifetime.toml");
}

/// A provider of async jobs that records the paths it was asked.
async fn job_provider() -> (MockServer, Arc<Mutex<Vec<String>>>) {
    let server = MockServer::start().await;
    let paths = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&paths);
    Mock::given(method("POST"))
        .respond_with(move |request: &Request| {
            let path = request.url.path().to_owned();
            seen.lock().unwrap().push(path.clone());
            if path.ends_with("/cancel") {
                ResponseTemplate::new(200).set_body_json(json!({"state": "canceled"}))
            } else {
                ResponseTemplate::new(202).set_body_json(json!({"job_id": "job-1"}))
            }
        })
        .mount(&server)
        .await;
    (server, paths)
}

#[tokio::test]
async fn a_connections_call_is_cancelled_at_the_connections_provider() {
    use engine_life_spec::engine_life::{EngineLife, EngineLifeConfig, EngineLifeRequest, Job};
    let dir = TempDir::new();
    let (_, store) = webhook_support::sqlite_store(&dir).await;
    let (default_host, default_paths) = job_provider().await;
    let (own_host, own_paths) = job_provider().await;
    let life = EngineLife::new(EngineLifeConfig {
        base_url: default_host.uri(),
        webhook_secret: Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
    })
    .unwrap();
    let rt = Runtime::builder()
        .store(store)
        .integration(life)
        .keyring(keyring(&[(CREDENTIAL_KEY_ENV, &Keyring::generate("k1"))]))
        .poll_idle(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    rt.put_connection(NewConnection::new("EngineLife", "acme", Credentials::new()).base_url(own_host.uri()))
        .await
        .unwrap();
    let request = EngineLifeRequest::Submit(Job {
        text: "render".to_owned(),
    });
    let id = rt.create(request.on_connection("acme")).await.unwrap();
    let run = spawn_run(&rt);
    tokio::time::timeout(LIMIT, async {
        while rt.get(id).await.unwrap().unwrap().status != CallStatus::Processing {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the provider took the job");
    let cancelled = rt.cancel(id, "no longer needed").await.unwrap();
    stop(&rt, run).await;
    assert_eq!(cancelled.error_kind, Some(FailureKind::Cancelled));
    assert_eq!(
        *own_paths.lock().unwrap(),
        vec!["/jobs".to_owned(), "/jobs/job-1/cancel".to_owned()]
    );
    assert!(
        default_paths.lock().unwrap().is_empty(),
        "nothing went to the default host"
    );
}

/// A clock that never moves: every write lands in the same millisecond.
struct Frozen(chrono::DateTime<chrono::Utc>);

impl integration_runtime::TimeSource for Frozen {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        self.0
    }

    fn sleep_until(&self, _: chrono::DateTime<chrono::Utc>) -> integration_runtime::BoxFuture<'static, ()> {
        Box::pin(std::future::ready(()))
    }
}

#[tokio::test]
async fn new_credentials_are_used_even_when_stored_in_the_same_millisecond() {
    let dir = TempDir::new();
    let (_, store) = webhook_support::sqlite_store(&dir).await;
    let (server, seen) = provider().await;
    let tenants = Tenants::new(TenantsConfig {
        base_url: server.uri(),
        token: Secret::new("app-token"),
    })
    .unwrap();
    let rt = Runtime::builder()
        .store(store)
        .integration(tenants)
        .keyring(keyring(&[(CREDENTIAL_KEY_ENV, &Keyring::generate("k1"))]))
        .clock(integration_runtime::Clock::new(Frozen(chrono::Utc::now())))
        .poll_idle(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let run = spawn_run(&rt);
    for token in ["first-token", "rotated-token"] {
        rt.put_connection(NewConnection::new("Tenants", "acme", Credentials::bearer(token)))
            .await
            .unwrap();
        let id = rt.create(note(token).on_connection("acme")).await.unwrap();
        wait_terminal(&rt, &[id]).await;
    }
    stop(&rt, run).await;
    let seen: Vec<String> = seen.seen().into_iter().map(|s| s.authorization).collect();
    assert_eq!(seen, vec!["Bearer first-token", "Bearer rotated-token"]);
}
