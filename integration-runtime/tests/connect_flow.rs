//! The connect flow (OAuth2 authorization code with PKCE) end to end,
//! against a real authorization server (oidc-provider, `oauth_server`, on
//! loopback; the tests skip with a reason when `INTEGRATION_TEST_OAUTH_SERVER`
//! is not set) and the runtime's own router, on a real SQLite file and on
//! PostgreSQL (when `INTEGRATION_TEST_DATABASE_URL` is set):
//!
//! - a customer connects through the consent screen; the connection's
//!   calls carry its own access token, which the server says is active; a
//!   replayed callback is refused;
//! - a denied consent, a code exchanged with another authorization's PKCE
//!   verifier, and a tampered link store nothing;
//! - an authorization that outlives its ten minutes is refused;
//! - two processes, 50 calls, a token due for renewal: one refresh.
//!
//! The second process is this test binary re-executed with `--exact
//! child_worker` (as in `shared_protection.rs`).

#![cfg(all(feature = "sqlite", feature = "postgres", feature = "server"))]

mod oauth_support;
mod process_support;
mod runtime_support;
mod webhook_support;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use integration_runtime::connection::{Keyring, CREDENTIAL_KEY_ENV};
use integration_runtime::{
    BoxFuture, CallId, CallStatus, Clock, IntoCall, IntoStore, PostgresOptions, PostgresStore, Runtime, Secret,
    SqliteStore, Store, TimeSource,
};
use oauth_support::OAuthServer;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

use runtime_support::{spawn_run, stop};
use webhook_support::TempDir;

integration_runtime::integration!("tests/specs/connect_accounts.toml");

use accounts::{Accounts, AccountsConfig, AccountsRequest, Entry};

const LIMIT: Duration = Duration::from_secs(60);
const RETURN_TO: &str = "https://app.example.com/settings?tab=crm";

// Variables of the child process.
const CHILD_SQLITE: &str = "CONNECT_FLOW_CHILD_SQLITE";
const CHILD_POSTGRES: &str = "CONNECT_FLOW_CHILD_POSTGRES";
const CHILD_SCHEMA: &str = "CONNECT_FLOW_CHILD_SCHEMA";
const CHILD_KEY: &str = "CONNECT_FLOW_CHILD_KEY";
const CHILD_RESOURCE: &str = "CONNECT_FLOW_CHILD_RESOURCE";
const CHILD_ISSUER: &str = "CONNECT_FLOW_CHILD_ISSUER";
const CHILD_OFFSET: &str = "CONNECT_FLOW_CHILD_OFFSET_S";
/// What the child prints once its runtime is built.
const READY: &str = "connect-flow-child-ready";

/// The system clock moved by an offset the test sets: tokens are renewed
/// by the runtime's clock, so moving it makes a stored token due without
/// waiting for it.
#[derive(Clone, Default)]
struct Shifted(Arc<AtomicI64>);

impl Shifted {
    fn set(&self, seconds: i64) {
        self.0.store(seconds, Ordering::SeqCst);
    }
}

impl TimeSource for Shifted {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::seconds(self.0.load(Ordering::SeqCst))
    }

    fn sleep_until(&self, at: DateTime<Utc>) -> BoxFuture<'static, ()> {
        let wait = (at - self.now()).to_std().unwrap_or_default();
        Box::pin(tokio::time::sleep(wait))
    }
}

/// Records the bearer token of every request to the resource server.
#[derive(Clone, Default)]
struct Bearers(Arc<Mutex<Vec<String>>>);

impl Bearers {
    fn seen(&self) -> Vec<String> {
        self.0.lock().unwrap().clone()
    }
}

impl Respond for Bearers {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let bearer = request
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or_default()
            .to_owned();
        let mut seen = self.0.lock().unwrap();
        seen.push(bearer);
        ResponseTemplate::new(200)
            .set_body_json(json!({"id": format!("e-{}", seen.len())}))
            .set_delay(Duration::from_millis(50))
    }
}

async fn resource() -> (MockServer, Bearers) {
    let server = MockServer::start().await;
    let bearers = Bearers::default();
    Mock::given(method("POST"))
        .and(path("/entries"))
        .respond_with(bearers.clone())
        .mount(&server)
        .await;
    (server, bearers)
}

fn accounts(resource: &str, issuer: &str) -> Accounts {
    Accounts::new(AccountsConfig {
        base_url: resource.to_owned(),
        authorization_url: format!("{issuer}/auth"),
        token_url: format!("{issuer}/token"),
        client_id: Secret::new(oauth_support::CLIENT_ID),
        client_secret: Secret::new(oauth_support::CLIENT_SECRET),
    })
    .unwrap()
}

fn keyring(key: &str) -> Keyring {
    let key = key.to_owned();
    Keyring::from_vars(move |var| (var == CREDENTIAL_KEY_ENV).then(|| key.clone())).unwrap()
}

fn entry(text: &str) -> AccountsRequest {
    AccountsRequest::Record(Entry { text: text.to_owned() })
}

/// A runtime serving its router on 127.0.0.1, with the OAuth2 server
/// registered for its callback.
struct Served {
    rt: Runtime,
    server: OAuthServer,
    public: String,
    key: String,
    clock: Shifted,
    bearers: Bearers,
    _resource: MockServer,
}

/// `None` (said why) without the OAuth2 server.
async fn served(store: Arc<dyn Store>) -> Option<Served> {
    served_with_token_delay(store, 0).await
}

async fn served_with_token_delay(store: Arc<dyn Store>, token_delay_ms: u64) -> Option<Served> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let public = format!("http://{}", listener.local_addr().unwrap());
    let callback = format!("{public}/connect/Accounts/callback");
    let server = OAuthServer::start_slow(&[&callback], 3600, token_delay_ms)?;
    let (resource, bearers) = resource().await;
    let key = Keyring::generate("k1");
    let clock = Shifted::default();
    let rt = Runtime::builder()
        .store(store)
        .integration(accounts(&resource.uri(), &server.issuer()))
        .keyring(keyring(&key))
        .public_url(&public)
        .clock(Clock::new(clock.clone()))
        .concurrency(4)
        .poll_idle(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    assert_eq!(rt.connect_callback_url("Accounts").as_deref(), Some(callback.as_str()));
    let router = rt.router(None).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Some(Served {
        rt,
        server,
        public,
        key,
        clock,
        bearers,
        _resource: resource,
    })
}

/// A browser that does not follow redirects: each hop is checked.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// GETs `url` and returns the `Location` it redirects to.
async fn location(url: &str) -> String {
    let response = browser().get(url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::SEE_OTHER, "{url}");
    response.headers()["location"].to_str().unwrap().to_owned()
}

fn query_of(url: &str) -> Vec<(String, String)> {
    Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

fn param(url: &str, name: &str) -> Option<String> {
    query_of(url).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

impl Served {
    fn link(&self, connection: &str) -> String {
        self.rt
            .connect_link("Accounts", connection, RETURN_TO, Duration::from_secs(3600))
            .unwrap()
    }

    /// The start link's redirect: the provider's authorization URL.
    async fn authorize_url(&self, connection: &str) -> String {
        let authorize = location(&self.link(connection)).await;
        assert!(authorize.starts_with(&self.server.authorization_url()), "{authorize}");
        assert_eq!(param(&authorize, "code_challenge_method").as_deref(), Some("S256"));
        authorize
    }

    /// Connects `connection` through consent; the final redirect.
    async fn connect(&self, connection: &str) -> String {
        let callback = self.server.approve(&self.authorize_url(connection).await).await;
        assert!(callback.starts_with(&self.public), "{callback}");
        location(&callback).await
    }

    async fn active(&self, token: &str) -> bool {
        let answer = browser()
            .post(self.server.introspection_url())
            .basic_auth(oauth_support::CLIENT_ID, Some(oauth_support::CLIENT_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={}", utf8_percent_encode(token, NON_ALPHANUMERIC)))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let answer: Value = serde_json::from_slice(&answer).unwrap();
        answer["active"] == json!(true)
    }

    async fn run_calls(&self, ids: &[CallId]) {
        let run = spawn_run(&self.rt);
        wait_completed(&self.rt, ids).await;
        stop(&self.rt, run).await;
    }
}

async fn wait_completed(rt: &Runtime, ids: &[CallId]) {
    tokio::time::timeout(LIMIT, async {
        loop {
            let mut done = true;
            for id in ids {
                let call = rt.get(*id).await.unwrap().unwrap();
                assert_ne!(call.status, CallStatus::Failed, "{call:?}");
                done &= call.status == CallStatus::Completed;
            }
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    })
    .await
    .expect("the calls completed in time");
}

/// The stores: an SQLite file, and a fresh PostgreSQL schema when
/// `INTEGRATION_TEST_DATABASE_URL` is set (said when not).
async fn stores(dir: &TempDir) -> Vec<(&'static str, Arc<dyn Store>, Backend)> {
    let (_, sqlite) = webhook_support::sqlite_store(dir).await;
    let mut stores = vec![("sqlite", sqlite, Backend::Sqlite(dir.path().join("app.db")))];
    if let Some((store, schema)) = runtime_support::postgres_store("connect").await {
        let url = std::env::var("INTEGRATION_TEST_DATABASE_URL").unwrap();
        stores.push(("postgres", Arc::new(store), Backend::Postgres { url, schema }));
    }
    stores
}

/// Where the child process finds the store.
#[derive(Clone)]
enum Backend {
    Sqlite(std::path::PathBuf),
    Postgres { url: String, schema: String },
}

#[tokio::test]
async fn a_customer_connects_through_consent_and_its_calls_carry_its_grant() {
    let dir = TempDir::new();
    for (backend, store, _) in stores(&dir).await {
        let Some(served) = served(store).await else { return };
        let back = served.connect("acme").await;
        assert!(
            back.starts_with("https://app.example.com/settings?tab=crm&"),
            "{backend}: {back}"
        );
        assert_eq!(param(&back, "connection").as_deref(), Some("acme"), "{backend}");
        assert_eq!(param(&back, "status").as_deref(), Some("connected"), "{backend}");
        let shown = served.rt.connection("Accounts", "acme").await.unwrap().expect("stored");
        assert!(!shown.is_revoked());

        let mut ids = Vec::new();
        for i in 0..3 {
            ids.push(
                served
                    .rt
                    .create(entry(&format!("e{i}")).on_connection("acme"))
                    .await
                    .unwrap(),
            );
        }
        served.run_calls(&ids).await;
        let bearers = served.bearers.seen();
        assert_eq!(bearers.len(), 3, "{backend}");
        assert!(bearers.iter().all(|b| b == &bearers[0]), "{backend}: one token");
        assert!(served.active(&bearers[0]).await, "{backend}: the server issued it");
        assert_eq!(
            served.server.token_requests().await,
            json!({"authorization_code": 1}),
            "{backend}: one exchange, no refresh"
        );

        // The provider's redirect, replayed: the state was used.
        let link = served.link("acme");
        let callback = served.server.approve(&location(&link).await).await;
        assert!(location(&callback).await.contains("status=connected"));
        let replay = browser().get(&callback).send().await.unwrap();
        assert_eq!(replay.status(), StatusCode::BAD_REQUEST, "{backend}");
        assert!(replay.text().await.unwrap().contains("unknown_state"), "{backend}");
    }
}

#[tokio::test]
async fn denied_consent_a_foreign_verifier_and_a_tampered_link_store_nothing() {
    let dir = TempDir::new();
    let (_, store) = webhook_support::sqlite_store(&dir).await;
    let Some(served) = served(store).await else { return };

    let denied = served.server.deny(&served.authorize_url("acme").await).await;
    let back = location(&denied).await;
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"), "{back}");
    assert_eq!(param(&back, "connection").as_deref(), Some("acme"));
    assert!(served.rt.connection("Accounts", "acme").await.unwrap().is_none());

    // Two authorizations; the code of the first sent with the state (and
    // so the PKCE verifier) of the second, as an attacker injecting a
    // stolen code would: the server refuses the exchange.
    let first = served.server.approve(&served.authorize_url("acme").await).await;
    let second = served.server.approve(&served.authorize_url("globex").await).await;
    let mut crossed = Url::parse(&second).unwrap();
    let code = param(&first, "code").unwrap();
    let state = param(&second, "state").unwrap();
    crossed
        .query_pairs_mut()
        .clear()
        .append_pair("code", &code)
        .append_pair("state", &state);
    let back = location(crossed.as_str()).await;
    assert_eq!(
        param(&back, "error").as_deref(),
        Some("token_exchange_failed"),
        "{back}"
    );
    assert!(served.rt.connections(None).await.unwrap().is_empty(), "nothing stored");

    // A link whose connection was changed after signing.
    let tampered = served.link("acme").replace("connection=acme", "connection=globex");
    let answer = browser().get(&tampered).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    // A callback without a state, and one with a state never issued.
    let bare = format!("{}/connect/Accounts/callback?code=x", served.public);
    assert_eq!(
        browser().get(&bare).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
    let forged = format!("{bare}&state=never-issued");
    assert_eq!(
        browser().get(&forged).send().await.unwrap().status(),
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn an_authorization_older_than_ten_minutes_is_refused() {
    let dir = TempDir::new();
    let (_, store) = webhook_support::sqlite_store(&dir).await;
    let Some(served) = served(store).await else { return };
    let authorize = served.authorize_url("acme").await;
    // The user comes back eleven minutes later.
    served.clock.set(11 * 60);
    let callback = served.server.approve(&authorize).await;
    let back = location(&callback).await;
    assert_eq!(param(&back, "error").as_deref(), Some("expired"), "{back}");
    assert!(served.rt.connection("Accounts", "acme").await.unwrap().is_none());
    assert_eq!(
        served.server.token_requests().await,
        json!({}),
        "the code was never exchanged"
    );
}

// ------------------------------------------------------- two processes

/// Not a test of its own: the second process of the test below. In a
/// normal test run the variables are absent and it returns at once.
#[test]
fn child_worker() {
    let (Ok(key), Ok(resource), Ok(issuer)) = (
        std::env::var(CHILD_KEY),
        std::env::var(CHILD_RESOURCE),
        std::env::var(CHILD_ISSUER),
    ) else {
        return;
    };
    process_support::exit_when_orphaned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = match (std::env::var(CHILD_POSTGRES), std::env::var(CHILD_SQLITE)) {
            (Ok(url), _) => {
                let options = PostgresOptions::default()
                    .schema(std::env::var(CHILD_SCHEMA).unwrap())
                    .max_connections(4);
                PostgresStore::connect_with(url.parse().unwrap(), options)
                    .await
                    .unwrap()
                    .into_store()
            }
            (_, Ok(path)) => SqliteStore::open(path).await.unwrap().into_store(),
            _ => panic!("no store given"),
        };
        let clock = Shifted::default();
        clock.set(std::env::var(CHILD_OFFSET).unwrap().parse().unwrap());
        let rt = Runtime::builder()
            .store(store)
            .integration(accounts(&resource, &issuer))
            .keyring(keyring(&key))
            .clock(Clock::new(clock))
            .worker_id("child")
            .concurrency(4)
            .poll_idle(Duration::from_millis(20))
            .build()
            .await
            .unwrap();
        println!("{READY}");
        let _ = tokio::time::timeout(LIMIT, rt.run()).await;
    });
}

/// The child process, killed when dropped.
struct ChildWorker(Child);

impl Drop for ChildWorker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn spawn_child(backend: &Backend, served: &Served, resource: &str, offset_s: i64) -> ChildWorker {
    let mut command = Command::new(std::env::current_exe().unwrap());
    match backend {
        Backend::Sqlite(path) => command.env(CHILD_SQLITE, path),
        Backend::Postgres { url, schema } => command.env(CHILD_POSTGRES, url).env(CHILD_SCHEMA, schema),
    };
    let mut child = command
        .args(["--exact", "child_worker", "--nocapture", "--test-threads=1"])
        .env(CHILD_KEY, &served.key)
        .env(CHILD_RESOURCE, resource)
        .env(CHILD_ISSUER, served.server.issuer())
        .env(CHILD_OFFSET, offset_s.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn the second process");
    // Wait for its runtime (the calls are created once both take them),
    // on a thread of its own: this test's runtime keeps serving meanwhile.
    let stdout = child.stdout.take().unwrap();
    let ready = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout).lines();
        // The harness prints `test child_worker ... ` before it, on the same line.
        lines.any(|line| line.is_ok_and(|line| line.ends_with(READY)))
    });
    let ready = tokio::time::timeout(LIMIT, ready).await.expect("in time").unwrap();
    assert!(ready, "the second process started");
    ChildWorker(child)
}

#[tokio::test]
async fn two_processes_and_fifty_calls_renew_a_token_once() {
    let dir = TempDir::new();
    for (backend_name, store, backend) in stores(&dir).await {
        let Some(served) = served_with_token_delay(store, 300).await else {
            return;
        };
        served.connect("acme").await;
        // Two hours on: the token from the exchange is due for renewal.
        let offset = 2 * 3600;
        served.clock.set(offset);
        // The calls wait in the store; then both processes start at once,
        // each finding the stored token due (and the token endpoint answers
        // 300 ms late: two renewals would overlap).
        let mut ids = Vec::new();
        for i in 0..50 {
            ids.push(
                served
                    .rt
                    .create(entry(&format!("e{i}")).on_connection("acme"))
                    .await
                    .unwrap(),
            );
        }
        let (child_resource, child_bearers) = resource().await;
        let _child = spawn_child(&backend, &served, &child_resource.uri(), offset).await;
        served.run_calls(&ids).await;

        let (here, there) = (served.bearers.seen(), child_bearers.seen());
        assert!(
            !here.is_empty() && !there.is_empty(),
            "{backend_name}: both processes sent calls"
        );
        assert_eq!(here.len() + there.len(), 50, "{backend_name}");
        assert_eq!(
            served.server.token_requests().await,
            json!({"authorization_code": 1, "refresh_token": 1}),
            "{backend_name}: one renewal for both processes"
        );
        let token = &here[0];
        assert!(
            here.iter().chain(&there).all(|b| b == token),
            "{backend_name}: one token"
        );
        assert!(served.active(token).await, "{backend_name}");
    }
}

#[tokio::test]
async fn a_rotated_refresh_token_survives_a_restart() {
    let dir = TempDir::new();
    for (backend, store, _) in stores(&dir).await {
        let Some(served) = served(Arc::clone(&store)).await else {
            return;
        };
        served.connect("acme").await;
        // Due for renewal: the server rotates the refresh token.
        served.clock.set(2 * 3600);
        let first = served
            .rt
            .create(entry("before the restart").on_connection("acme"))
            .await
            .unwrap();
        served.run_calls(&[first]).await;

        // A new process on the same store, two hours later again: it must
        // renew with the rotated refresh token (the first one is spent; the
        // server revokes the whole grant when a spent one comes back).
        let clock = Shifted::default();
        clock.set(4 * 3600);
        let (resource, bearers) = resource().await;
        let restarted = Runtime::builder()
            .store(store)
            .integration(accounts(&resource.uri(), &served.server.issuer()))
            .keyring(keyring(&served.key))
            .clock(Clock::new(clock))
            .poll_idle(Duration::from_millis(20))
            .build()
            .await
            .unwrap();
        let second = restarted
            .create(entry("after the restart").on_connection("acme"))
            .await
            .unwrap();
        let run = spawn_run(&restarted);
        wait_completed(&restarted, &[second]).await;
        stop(&restarted, run).await;
        assert_eq!(
            served.server.token_requests().await,
            json!({"authorization_code": 1, "refresh_token": 2}),
            "{backend}"
        );
        let token = &bearers.seen()[0];
        assert!(served.active(token).await, "{backend}: the renewed token is live");
    }
}

#[tokio::test]
async fn changing_a_connections_settings_keeps_its_grant() {
    let dir = TempDir::new();
    let (_, store) = webhook_support::sqlite_store(&dir).await;
    let Some(served) = served(store).await else { return };
    served.connect("acme").await;
    // The application moves acme to another host of the provider: the
    // same (no) credentials, so the authorization stands.
    let (other_host, other_bearers) = resource().await;
    served
        .rt
        .put_connection(
            integration_runtime::NewConnection::new("Accounts", "acme", integration_runtime::Credentials::new())
                .base_url(other_host.uri()),
        )
        .await
        .unwrap();
    let id = served.rt.create(entry("moved").on_connection("acme")).await.unwrap();
    served.run_calls(&[id]).await;
    assert_eq!(other_bearers.seen().len(), 1, "sent to the connection's new host");
    assert!(served.active(&other_bearers.seen()[0]).await);
    assert_eq!(served.server.token_requests().await, json!({"authorization_code": 1}));
}
