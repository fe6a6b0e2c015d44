//! Authentication of `HttpClient::send` against a loopback server: every auth
//! kind, OAuth2 token caching, expiry, single-flight refresh, refresh-token
//! rotation and 401 handling, and that no credential ever shows in debug output,
//! error text or log lines.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_runtime::__private::{Auth, HttpClient, HttpRequest, OAuth2Config};
use integration_runtime::{IntegrationDescriptor, PolicyDescriptor, Secret};
use serde_json::json;
use tokio::task::JoinSet;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

static POLICY: PolicyDescriptor = PolicyDescriptor::DEFAULT;
static DESCRIPTOR: IntegrationDescriptor = IntegrationDescriptor {
    name: "Vault",
    module: "vault",
    endpoints: &[],
    policy: PolicyDescriptor::DEFAULT,
    polling: None,
    webhook: None,
    fingerprint: "",
};

fn get(path: &str) -> HttpRequest {
    HttpRequest {
        endpoint: "read",
        method: "GET",
        path: path.to_owned(),
        query: vec![],
        headers: vec![],
        body: None,
        error_path: None,
        policy: &POLICY,
    }
}

fn header_of<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

fn body_text(request: &Request) -> String {
    String::from_utf8_lossy(&request.body).into_owned()
}

async fn requests_to(server: &MockServer, at: &str) -> Vec<Request> {
    server
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.url.path() == at)
        .collect()
}

fn bearers(requests: &[Request]) -> Vec<String> {
    requests
        .iter()
        .map(|r| header_of(r, "authorization").unwrap_or("-").to_owned())
        .collect()
}

/// A token endpoint answering `at-1`, `at-2`, ... valid for `expires_in` seconds,
/// after `delay`.
async fn numbered_tokens(server: &MockServer, expires_in: u64, delay: Duration) {
    let issued = AtomicU64::new(0);
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(move |_: &Request| {
            let n = issued.fetch_add(1, Ordering::SeqCst) + 1;
            ResponseTemplate::new(200)
                .set_body_json(
                    json!({"access_token": format!("at-{n}"), "token_type": "bearer", "expires_in": expires_in}),
                )
                .set_delay(delay)
        })
        .mount(server)
        .await;
}

/// An API answering 200 to `Bearer {good}` and 401 to anything else (any token when `None`).
async fn api_accepting(server: &MockServer, good: Option<&'static str>) {
    Mock::given(path("/me"))
        .respond_with(move |request: &Request| {
            let ok = good.is_some_and(|good| header_of(request, "authorization") == Some(&*format!("Bearer {good}")));
            if ok {
                ResponseTemplate::new(200).set_body_json(json!({"id": 1}))
            } else {
                ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_token"}))
            }
        })
        .mount(server)
        .await;
}

fn client_credentials(server: &MockServer) -> HttpClient {
    HttpClient::for_integration(
        &DESCRIPTOR,
        &server.uri(),
        Auth::OAuth2(OAuth2Config {
            token_url: format!("{}/token", server.uri()),
            client_id: Secret::new("cid"),
            client_secret: Some(Secret::new("csecret")),
            scopes: vec![],
            refresh_token: None,
            authorization_url: None,
        }),
    )
    .unwrap()
}

#[tokio::test]
async fn static_kinds_send_their_credential_and_a_401_is_not_repeated() {
    let cases: Vec<(Auth, &str, Option<&str>)> = vec![
        (Auth::None, "authorization", None),
        (Auth::Bearer(Secret::new("b-1")), "authorization", Some("Bearer b-1")),
        (
            Auth::Basic {
                username: Secret::new("user"),
                password: Secret::new("pass"),
            },
            "authorization",
            Some("Basic dXNlcjpwYXNz"),
        ),
        (
            Auth::ApiKeyHeader {
                name: "X-Api-Key",
                key: Secret::new("k-1"),
            },
            "x-api-key",
            Some("k-1"),
        ),
    ];
    for (auth, header, expected) in cases {
        let server = MockServer::start().await;
        api_accepting(&server, None).await;
        let client = HttpClient::for_integration(&DESCRIPTOR, &server.uri(), auth).unwrap();
        let error = client.send(get("/me")).await.unwrap_err();
        assert_eq!(error.status(), Some(401));
        let requests = requests_to(&server, "/me").await;
        assert_eq!(requests.len(), 1, "{header}: one request, no retry");
        assert_eq!(header_of(&requests[0], header), expected);
    }

    let server = MockServer::start().await;
    api_accepting(&server, None).await;
    let client = HttpClient::new(
        &server.uri(),
        Auth::ApiKeyQuery {
            name: "api_key",
            key: Secret::new("q 1"),
        },
    )
    .unwrap();
    assert_eq!(client.send(get("/me")).await.unwrap_err().status(), Some(401));
    let requests = requests_to(&server, "/me").await;
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].url.query(), Some("api_key=q+1"));
}

#[tokio::test]
async fn the_token_is_cached_and_renewed_shortly_before_it_expires() {
    let server = MockServer::start().await;
    // Valid for 1 s: renewed a tenth of its lifetime early, after 0.9 s.
    numbered_tokens(&server, 1, Duration::ZERO).await;
    api_accepting(&server, Some("at-1")).await;
    Mock::given(path("/me"))
        .and(wiremock::matchers::header("authorization", "Bearer at-2"))
        .respond_with(ResponseTemplate::new(200))
        .with_priority(1)
        .mount(&server)
        .await;
    let client = client_credentials(&server);
    client.send(get("/me")).await.unwrap();
    client.clone().send(get("/me")).await.unwrap();
    assert_eq!(requests_to(&server, "/token").await.len(), 1);
    tokio::time::sleep(Duration::from_millis(950)).await;
    client.send(get("/me")).await.unwrap();
    assert_eq!(requests_to(&server, "/token").await.len(), 2);
    assert_eq!(
        bearers(&requests_to(&server, "/me").await),
        ["Bearer at-1", "Bearer at-1", "Bearer at-2"]
    );
    let token = &requests_to(&server, "/token").await[0];
    assert_eq!(body_text(token), "grant_type=client_credentials");
    assert_eq!(header_of(token, "authorization"), Some("Basic Y2lkOmNzZWNyZXQ="));
}

#[tokio::test]
async fn fifty_concurrent_calls_make_one_token_request() {
    let server = MockServer::start().await;
    numbered_tokens(&server, 3_600, Duration::from_millis(200)).await;
    api_accepting(&server, Some("at-1")).await;
    let client = client_credentials(&server);
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let client = client.clone();
        tasks.spawn(async move { client.send(get("/me")).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(requests_to(&server, "/token").await.len(), 1);
    let calls = bearers(&requests_to(&server, "/me").await);
    assert_eq!(calls.len(), 50);
    assert!(calls.iter().all(|b| b == "Bearer at-1"));
}

#[tokio::test]
async fn a_401_gets_one_new_token_and_one_repeat() {
    let server = MockServer::start().await;
    numbered_tokens(&server, 3_600, Duration::ZERO).await;
    api_accepting(&server, Some("at-2")).await;
    let client = client_credentials(&server);
    assert_eq!(client.send(get("/me")).await.unwrap().body, json!({"id": 1}));
    assert_eq!(requests_to(&server, "/token").await.len(), 2);
    assert_eq!(
        bearers(&requests_to(&server, "/me").await),
        ["Bearer at-1", "Bearer at-2"]
    );
    // The new token is kept.
    client.send(get("/me")).await.unwrap();
    assert_eq!(requests_to(&server, "/token").await.len(), 2);
}

#[tokio::test]
async fn a_second_401_is_returned_without_looping() {
    let server = MockServer::start().await;
    numbered_tokens(&server, 3_600, Duration::ZERO).await;
    api_accepting(&server, None).await;
    let client = client_credentials(&server);
    let error = client.send(get("/me")).await.unwrap_err();
    assert!(error.is_status() && !error.is_auth(), "{error}");
    assert_eq!(error.status(), Some(401));
    assert_eq!(requests_to(&server, "/token").await.len(), 2);
    assert_eq!(
        bearers(&requests_to(&server, "/me").await),
        ["Bearer at-1", "Bearer at-2"]
    );
}

#[tokio::test]
async fn fifty_concurrent_401s_share_one_refresh() {
    let server = MockServer::start().await;
    numbered_tokens(&server, 3_600, Duration::from_millis(100)).await;
    api_accepting(&server, Some("at-2")).await;
    let client = client_credentials(&server);
    let mut tasks = JoinSet::new();
    for _ in 0..50 {
        let client = client.clone();
        tasks.spawn(async move { client.send(get("/me")).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
    assert_eq!(requests_to(&server, "/token").await.len(), 2);
    let calls = bearers(&requests_to(&server, "/me").await);
    assert_eq!(calls.iter().filter(|b| *b == "Bearer at-1").count(), 50);
    assert_eq!(calls.iter().filter(|b| *b == "Bearer at-2").count(), 50);
}

/// A refresh-token endpoint that rotates: `rt-n` buys `at-n` and `rt-(n+1)`;
/// a refresh token used twice is refused, as real providers do.
async fn rotating_tokens(server: &MockServer, delay: Duration) {
    let spent = Mutex::new(Vec::<String>::new());
    Mock::given(path("/token"))
        .respond_with(move |request: &Request| {
            let body = body_text(request);
            let Some(n) = body
                .split('&')
                .find_map(|pair| pair.strip_prefix("refresh_token=rt-"))
                .and_then(|n| n.parse::<u32>().ok())
            else {
                return ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_request"}));
            };
            let mut spent = spent.lock().unwrap();
            if spent.contains(&body) {
                return ResponseTemplate::new(400).set_body_json(json!({"error": "invalid_grant"}));
            }
            spent.push(body);
            ResponseTemplate::new(200)
                .set_body_json(json!({
                    "access_token": format!("at-{n}"),
                    "expires_in": 0,
                    "refresh_token": format!("rt-{}", n + 1),
                }))
                .set_delay(delay)
        })
        .mount(server)
        .await;
}

fn refreshing(server: &MockServer) -> HttpClient {
    HttpClient::for_integration(
        &DESCRIPTOR,
        &server.uri(),
        Auth::OAuth2(OAuth2Config {
            token_url: format!("{}/token", server.uri()),
            client_id: Secret::new("public-client"),
            client_secret: None,
            scopes: vec!["read".into()],
            refresh_token: Some(Secret::new("rt-1")),
            authorization_url: None,
        }),
    )
    .unwrap()
}

#[tokio::test]
async fn a_rotated_refresh_token_is_kept_even_when_the_caller_gives_up() {
    let server = MockServer::start().await;
    rotating_tokens(&server, Duration::from_millis(300)).await;
    api_accepting(&server, Some("at-2")).await;
    let client = refreshing(&server);
    // The caller gives up while the token request (which rotates rt-1) is out.
    let abandoned = tokio::time::timeout(Duration::from_millis(50), client.send(get("/me"))).await;
    assert!(abandoned.is_err());
    // at-1 expired at once; the next token request must use rt-2, not the spent rt-1.
    client.send(get("/me")).await.unwrap();
    let tokens: Vec<String> = requests_to(&server, "/token").await.iter().map(body_text).collect();
    assert_eq!(
        tokens,
        [
            "client_id=public-client&grant_type=refresh_token&refresh_token=rt-1&scope=read",
            "client_id=public-client&grant_type=refresh_token&refresh_token=rt-2&scope=read",
        ]
    );
    assert_eq!(bearers(&requests_to(&server, "/me").await), ["Bearer at-2"]);
}

/// Collects every span and event, with all their fields, as text.
#[derive(Clone, Default)]
struct Capture {
    text: Arc<Mutex<String>>,
    ids: Arc<AtomicUsize>,
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut text = self.text.lock().unwrap();
        let _ = write!(text, "\nspan {}:", span.metadata().name());
        span.record(&mut Fields(&mut text));
        tracing::span::Id::from_u64(self.ids.fetch_add(1, Ordering::SeqCst) as u64 + 1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut text = self.text.lock().unwrap();
        text.push_str("\nrecord:");
        values.record(&mut Fields(&mut text));
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut text = self.text.lock().unwrap();
        let _ = write!(text, "\nevent {}:", event.metadata().level());
        event.record(&mut Fields(&mut text));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

#[tokio::test]
async fn secrets_show_in_no_debug_output_error_or_log_line() {
    let capture = Capture::default();
    let _guard = tracing::subscriber::set_default(capture.clone());
    let secrets = [
        "sk-bearer-7Hq2",
        "basic-user-9Zt",
        "basic-pass-4Kd",
        // base64("basic-user-9Zt:basic-pass-4Kd"), as a provider might echo it
        "YmFzaWMtdXNlci05WnQ6YmFzaWMtcGFzcy00S2Q=",
        "hdr-key-2Wx8",
        "qry-key-5Lm3",
        "oauth-client-id-1Pp",
        "oauth-client-secret-8Rr",
        "rt-first-3Nn",
        "at-issued-6Vv",
        "rt-rotated-0Bb",
    ];

    // A provider that echoes whatever credentials it got into its error messages.
    let server = MockServer::start().await;
    Mock::given(path("/me"))
        .respond_with(|request: &Request| {
            ResponseTemplate::new(500).set_body_string(format!(
                "denied: auth={} key={} query={}",
                header_of(request, "authorization").unwrap_or(""),
                header_of(request, "x-key").unwrap_or(""),
                request.url.query().unwrap_or(""),
            ))
        })
        .mount(&server)
        .await;
    let issued = AtomicUsize::new(0);
    Mock::given(path("/token"))
        .respond_with(move |request: &Request| {
            if issued.fetch_add(1, Ordering::SeqCst) == 0 {
                ResponseTemplate::new(200).set_body_json(json!({
                    "access_token": "at-issued-6Vv", "expires_in": 0, "refresh_token": "rt-rotated-0Bb"
                }))
            } else {
                ResponseTemplate::new(400).set_body_json(json!({
                    "error": "invalid_grant",
                    "error_description": format!("revoked: {}", body_text(request)),
                }))
            }
        })
        .mount(&server)
        .await;

    let auths = vec![
        Auth::Bearer(Secret::new(secrets[0])),
        Auth::Basic {
            username: Secret::new(secrets[1]),
            password: Secret::new(secrets[2]),
        },
        Auth::ApiKeyHeader {
            name: "X-Key",
            key: Secret::new(secrets[4]),
        },
        Auth::ApiKeyQuery {
            name: "key",
            key: Secret::new(secrets[5]),
        },
        Auth::OAuth2(OAuth2Config {
            token_url: format!("{}/token", server.uri()),
            client_id: Secret::new(secrets[6]),
            client_secret: Some(Secret::new(secrets[7])),
            scopes: vec![],
            refresh_token: Some(Secret::new(secrets[8])),
            authorization_url: None,
        }),
    ];
    let mut shown = String::new();
    for auth in auths {
        // Another test's thread (no subscriber) may register the span's
        // callsite first, and with one scoped subscriber tracing caches that
        // thread's "never" for every thread; rebuilt here from this thread's
        // subscriber, before each client's first span.
        tracing::callsite::rebuild_interest_cache();
        let _ = write!(shown, "\n{auth:?}");
        let client = HttpClient::for_integration(&DESCRIPTOR, &server.uri(), auth.clone()).unwrap();
        let _ = write!(shown, "\n{client:?}");
        // Twice: for OAuth2 the second goes to the token endpoint with the rotated token.
        for _ in 0..2 {
            let error = client.send(get("/me")).await.unwrap_err();
            assert!(error.status().is_some(), "{error}");
            let _ = write!(shown, "\n{error}\n{error:?}");
        }
        // A refused connection, with the same credentials.
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let closed = HttpClient::new(&format!("http://127.0.0.1:{port}"), auth).unwrap();
        let error = closed.send(get("/me")).await.unwrap_err();
        let _ = write!(shown, "\n{error}\n{error:?}");
    }
    let log = capture.text.lock().unwrap().clone();

    // The echoes did reach the messages, scrubbed; and the log has the attempts.
    assert!(shown.contains("denied: auth=Bearer ***"), "{shown}");
    assert!(shown.contains("revoked: "), "{shown}");
    assert!(
        log.contains("span http_attempt: integration=\"Vault\" endpoint=\"read\" method=\"GET\""),
        "{log}"
    );
    assert!(log.contains("status=500"), "{log}");
    assert!(log.contains("outcome=\"connect\""), "{log}");
    for secret in secrets {
        assert!(!shown.contains(secret), "`{secret}` shown in:\n{shown}");
        assert!(!log.contains(secret), "`{secret}` logged in:\n{log}");
    }
    // Only the libraries' connection events name the host; no URL (path, query) is logged.
    assert!(!log.contains("/me"), "URLs are not logged:\n{log}");
    assert!(shown.contains("query=key=***"), "{shown}");
}

/// A token endpoint answering each request in turn with `answers` (the
/// last one repeats), then `at-1` once they run out.
async fn token_answers(server: &MockServer, answers: Vec<ResponseTemplate>) {
    let seen = AtomicUsize::new(0);
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(move |_: &Request| {
            let n = seen.fetch_add(1, Ordering::SeqCst);
            answers.get(n).cloned().unwrap_or_else(|| {
                ResponseTemplate::new(200).set_body_json(json!({"access_token": "at-1", "expires_in": 3600}))
            })
        })
        .mount(server)
        .await;
}

#[tokio::test]
async fn token_endpoint_5xx_and_429_are_retried_instead_of_failing_the_call() {
    let server = MockServer::start().await;
    token_answers(
        &server,
        vec![
            ResponseTemplate::new(503).set_body_string("overloaded"),
            ResponseTemplate::new(429).insert_header("Retry-After", "0"),
        ],
    )
    .await;
    api_accepting(&server, Some("at-1")).await;
    let client = client_credentials(&server);
    client.send(get("/me")).await.unwrap();
    assert_eq!(requests_to(&server, "/token").await.len(), 3);
    assert_eq!(bearers(&requests_to(&server, "/me").await), ["Bearer at-1"]);
}

#[tokio::test]
async fn a_token_endpoint_that_drops_the_connection_is_retried() {
    // The first connection is closed as soon as the request is read; the
    // second gets a token.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let token_url = format!("http://{}/token", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&connections);
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut stream, _)) = listener.accept().await {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let mut buffer = vec![0u8; 4096];
            let _ = stream.read(&mut buffer).await;
            if n > 0 {
                let body = r#"{"access_token":"at-1","expires_in":3600}"#;
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(answer.as_bytes()).await;
            }
        }
    });
    let server = MockServer::start().await;
    api_accepting(&server, Some("at-1")).await;
    let client = HttpClient::new(
        &server.uri(),
        Auth::OAuth2(OAuth2Config {
            token_url,
            client_id: Secret::new("cid"),
            client_secret: Some(Secret::new("csecret")),
            scopes: vec![],
            refresh_token: None,
            authorization_url: None,
        }),
    )
    .unwrap();
    client.send(get("/me")).await.unwrap();
    assert_eq!(connections.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn invalid_client_fails_at_once_without_a_retry() {
    let server = MockServer::start().await;
    token_answers(
        &server,
        vec![ResponseTemplate::new(401).set_body_json(json!({"error": "invalid_client"}))],
    )
    .await;
    let error = client_credentials(&server).send(get("/me")).await.unwrap_err();
    assert!(error.is_auth(), "{error}");
    assert_eq!(error.status(), Some(401));
    assert_eq!(requests_to(&server, "/token").await.len(), 1);
}

#[tokio::test]
async fn token_retries_stop_within_the_policy_timeout() {
    static SHORT: PolicyDescriptor = PolicyDescriptor {
        timeout_ms: 1_000,
        ..PolicyDescriptor::DEFAULT
    };
    let server = MockServer::start().await;
    token_answers(&server, vec![ResponseTemplate::new(503); 1_000]).await;
    let client = client_credentials(&server);
    let started = std::time::Instant::now();
    let error = client
        .send(HttpRequest {
            policy: &SHORT,
            ..get("/me")
        })
        .await
        .unwrap_err();
    assert!(error.is_auth(), "{error}");
    assert_eq!(error.status(), Some(503));
    let attempts = requests_to(&server, "/token").await.len();
    assert!((2..=5).contains(&attempts), "{attempts} token requests");
    // Generous: the bound is the 1 s timeout, not an exact duration.
    assert!(started.elapsed() < Duration::from_secs(10));
}

#[tokio::test]
async fn secrets_echoed_in_a_successful_answer_are_redacted() {
    // A provider that echoes the credentials it got, in its JSON and a header.
    let server = MockServer::start().await;
    Mock::given(path("/me"))
        .respond_with(|request: &Request| {
            let auth = header_of(request, "authorization").unwrap_or("").to_owned();
            let key = header_of(request, "x-key").unwrap_or("").to_owned();
            let query = request.url.query().unwrap_or("").to_owned();
            ResponseTemplate::new(200)
                .insert_header("x-echo", format!("{auth}|{key}|{query}").as_str())
                .set_body_json(json!({
                    "you_sent": auth,
                    "nested": {"list": [key, {"query": query}], "count": 3},
                    auth.clone(): "as a key",
                }))
        })
        .mount(&server)
        .await;
    // A token of a realistic length: in answer data, credentials shorter
    // than 8 characters are redacted only as whole values.
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "access_token": "at-echoed-6Vb9",
            "token_type": "bearer",
            "expires_in": 3600,
        })))
        .mount(&server)
        .await;
    let cases: Vec<(Auth, &[&str])> = vec![
        (Auth::Bearer(Secret::new("sk-bearer-7Hq2")), &["sk-bearer-7Hq2"]),
        (
            Auth::Basic {
                username: Secret::new("basic-user-9Zt"),
                password: Secret::new("basic-pass-4Kd"),
            },
            &[
                "basic-user-9Zt",
                "basic-pass-4Kd",
                "YmFzaWMtdXNlci05WnQ6YmFzaWMtcGFzcy00S2Q=",
            ],
        ),
        (
            Auth::ApiKeyHeader {
                name: "X-Key",
                key: Secret::new("hdr-key-2Wx8"),
            },
            &["hdr-key-2Wx8"],
        ),
        (
            Auth::ApiKeyQuery {
                name: "key",
                key: Secret::new("qry-key-5Lm3"),
            },
            &["qry-key-5Lm3"],
        ),
        (
            Auth::OAuth2(OAuth2Config {
                token_url: format!("{}/token", server.uri()),
                client_id: Secret::new("cid"),
                client_secret: Some(Secret::new("csecret")),
                scopes: vec![],
                refresh_token: None,
                authorization_url: None,
            }),
            &["at-echoed-6Vb9"],
        ),
    ];
    for (auth, secrets) in cases {
        let client = HttpClient::new(&server.uri(), auth).unwrap();
        let response = client.send(get("/me")).await.unwrap();
        let body = response.body.to_string();
        let echo = response.header("x-echo").unwrap_or_default().to_owned();
        assert!(body.contains("***") && echo.contains("***"), "{body} {echo}");
        for secret in secrets {
            assert!(!body.contains(secret), "`{secret}` in the body: {body}");
            assert!(!echo.contains(secret), "`{secret}` in a header: {echo}");
        }
        assert_eq!(response.body["nested"]["count"], json!(3), "other values are kept");
    }
}

#[tokio::test]
async fn the_token_answer_is_bounded_by_the_size_limit() {
    static SMALL: PolicyDescriptor = PolicyDescriptor {
        max_response_bytes: 256,
        ..PolicyDescriptor::DEFAULT
    };
    let server = MockServer::start().await;
    token_answers(
        &server,
        vec![ResponseTemplate::new(200).set_body_json(json!({"access_token": "a".repeat(10_000)}))],
    )
    .await;
    api_accepting(&server, None).await;
    let error = client_credentials(&server)
        .send(HttpRequest {
            policy: &SMALL,
            ..get("/me")
        })
        .await
        .unwrap_err();
    assert!(error.is_response_too_large(), "{error}");
    assert!(requests_to(&server, "/me").await.is_empty());
}
