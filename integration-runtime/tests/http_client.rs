//! The HTTP client against a local mock server: what goes on the wire, and how
//! answers and failures come back.

use std::time::Duration;

use integration_runtime::__private::{
    Auth, BodyEncoding, HttpClient, HttpRequest, JsonBody, OAuth2Config, PathBuilder, Seg,
};
use integration_runtime::{PolicyDescriptor, Secret};
use serde_json::{json, Value};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

static POLICY: PolicyDescriptor = PolicyDescriptor::DEFAULT;
static FAST: PolicyDescriptor = PolicyDescriptor {
    timeout_ms: 150,
    ..PolicyDescriptor::DEFAULT
};
static ERROR_MESSAGE: [Seg; 2] = [Seg::Key("error"), Seg::Key("message")];

fn get(path: &str) -> HttpRequest {
    HttpRequest {
        endpoint: "get_item",
        method: "GET",
        path: path.to_owned(),
        query: vec![],
        headers: vec![],
        body: None,
        error_path: Some(&ERROR_MESSAGE),
        policy: &POLICY,
    }
}

async fn ok_server() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"ok": true})))
        .mount(&server)
        .await;
    server
}

async fn only_request(server: &MockServer) -> Request {
    let mut requests = server.received_requests().await.unwrap_or_default();
    assert_eq!(requests.len(), 1, "expected exactly one request");
    requests.remove(0)
}

fn header_of<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

fn sorted_pairs(body: &[u8]) -> Vec<String> {
    let mut pairs: Vec<String> = String::from_utf8_lossy(body).split('&').map(str::to_owned).collect();
    pairs.sort();
    pairs
}

#[tokio::test]
async fn json_request_goes_out_exactly() {
    let server = ok_server().await;
    let client = HttpClient::new(&format!("{}/v1/", server.uri()), Auth::Bearer(Secret::new("tok-123"))).unwrap();
    let mut path = PathBuilder::new();
    path.literal("/tasks/");
    path.param(&json!("t 1"));
    let mut body = JsonBody::new();
    body.set(&["input", "text"], json!("héllo"));
    body.set(&["speed"], json!(1.5));
    let response = client
        .send(HttpRequest {
            endpoint: "synthesize",
            method: "POST",
            path: path.finish(),
            query: vec![
                ("q", json!("a b")),
                ("tag", json!(["x", "y"])),
                ("none", Value::Null),
                ("n", json!(3)),
            ],
            headers: vec![("X-Request-Source", "integration".into())],
            body: Some((BodyEncoding::Json, body.into_value())),
            error_path: None,
            policy: &POLICY,
        })
        .await
        .unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.body, json!({"ok": true}));

    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/v1/tasks/t%201");
    assert_eq!(request.url.query(), Some("q=a+b&tag=x&tag=y&n=3"));
    assert_eq!(header_of(&request, "authorization"), Some("Bearer tok-123"));
    assert_eq!(header_of(&request, "content-type"), Some("application/json"));
    assert_eq!(header_of(&request, "accept"), Some("application/json"));
    assert_eq!(header_of(&request, "x-request-source"), Some("integration"));
    let sent: Value = serde_json::from_slice(&request.body).unwrap();
    assert_eq!(sent, json!({"input": {"text": "héllo"}, "speed": 1.5}));
}

#[tokio::test]
async fn form_request_goes_out_exactly() {
    let server = ok_server().await;
    let client = HttpClient::new(&server.uri(), Auth::None).unwrap();
    client
        .send(HttpRequest {
            method: "POST",
            body: Some((
                BodyEncoding::Form,
                json!({"amount": 2000, "metadata": {"order": "a&b c"}, "expand": ["customer"], "skip": null, "live": false}),
            )),
            ..get("/v1/charges")
        })
        .await
        .unwrap();
    let request = only_request(&server).await;
    assert_eq!(request.method.as_str(), "POST");
    assert_eq!(request.url.path(), "/v1/charges");
    assert_eq!(request.url.query(), None);
    assert_eq!(
        header_of(&request, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(header_of(&request, "authorization"), None);
    assert_eq!(
        sorted_pairs(&request.body),
        [
            "amount=2000",
            "expand%5B0%5D=customer",
            "live=false",
            "metadata%5Border%5D=a%26b+c"
        ]
    );
}

#[tokio::test]
async fn each_static_auth_kind_is_applied() {
    type Check = Box<dyn Fn(&Request)>;
    let cases: Vec<(Auth, Check)> = vec![
        (
            Auth::Basic {
                username: Secret::new("user"),
                password: Secret::new("pass"),
            },
            Box::new(|r: &Request| assert_eq!(header_of(r, "authorization"), Some("Basic dXNlcjpwYXNz"))),
        ),
        (
            Auth::ApiKeyHeader {
                name: "X-Api-Key",
                key: Secret::new("k-1"),
            },
            Box::new(|r: &Request| {
                assert_eq!(header_of(r, "x-api-key"), Some("k-1"));
                assert_eq!(header_of(r, "authorization"), None);
            }),
        ),
        (
            Auth::ApiKeyQuery {
                name: "api_key",
                key: Secret::new("k/2"),
            },
            Box::new(|r: &Request| {
                assert_eq!(r.url.query(), Some("page=1&api_key=k%2F2"));
                assert_eq!(header_of(r, "authorization"), None);
            }),
        ),
        (
            Auth::Bearer(Secret::new("b-3")),
            Box::new(|r: &Request| assert_eq!(header_of(r, "authorization"), Some("Bearer b-3"))),
        ),
        (
            Auth::None,
            Box::new(|r: &Request| assert_eq!(header_of(r, "authorization"), None)),
        ),
    ];
    for (auth, check) in cases {
        let server = ok_server().await;
        let client = HttpClient::new(&server.uri(), auth).unwrap();
        client
            .send(HttpRequest {
                query: vec![("page", json!(1))],
                ..get("/items")
            })
            .await
            .unwrap();
        check(&only_request(&server).await);
    }
}

#[tokio::test]
async fn path_params_are_encoded_as_one_segment() {
    let server = ok_server().await;
    let client = HttpClient::new(&server.uri(), Auth::None).unwrap();
    let mut path = PathBuilder::new();
    path.literal("/files/");
    path.param(&json!("a/b?c#d%e é😀"));
    path.literal("/meta");
    client.send(get(&path.finish())).await.unwrap();
    let request = only_request(&server).await;
    assert_eq!(request.url.path(), "/files/a%2Fb%3Fc%23d%25e%20%C3%A9%F0%9F%98%80/meta");
    assert_eq!(request.url.query(), None);
}

#[tokio::test]
async fn header_values_with_cr_lf_are_rejected_before_sending() {
    let server = ok_server().await;
    let client = HttpClient::new(&server.uri(), Auth::None).unwrap();
    let error = client
        .send(HttpRequest {
            headers: vec![("X-Name", "ok\r\nX-Injected: yes".into())],
            ..get("/items")
        })
        .await
        .unwrap_err();
    assert!(error.is_invalid_request(), "{error}");
    assert!(!error.is_status());
    assert_eq!(server.received_requests().await.map(|r| r.len()), Some(0));
}

#[tokio::test]
async fn non_2xx_answers_carry_status_and_provider_message() {
    let server = MockServer::start().await;
    Mock::given(path("/json"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({"error": {"message": "text is too long"}})))
        .mount(&server)
        .await;
    Mock::given(path("/text"))
        .respond_with(ResponseTemplate::new(503).set_body_string("upstream unavailable\n"))
        .mount(&server)
        .await;
    Mock::given(path("/empty"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&server)
        .await;
    let client = HttpClient::new(&server.uri(), Auth::None).unwrap();

    let error = client.send(get("/json")).await.unwrap_err();
    assert!(error.is_status());
    assert_eq!(error.status(), Some(422));
    assert_eq!(error.provider_message(), Some("text is too long"));
    assert_eq!(error.endpoint(), "get_item");
    assert_eq!(
        error.to_string(),
        "endpoint `get_item`: the provider answered HTTP 422 Unprocessable Entity: text is too long"
    );

    let error = client.send(get("/text")).await.unwrap_err();
    assert_eq!(error.status(), Some(503));
    assert_eq!(error.provider_message(), Some("upstream unavailable"));

    let error = client.send(get("/empty")).await.unwrap_err();
    assert_eq!(error.status(), Some(500));
    assert_eq!(error.provider_message(), None);
    assert_eq!(
        error.to_string(),
        "endpoint `get_item`: the provider answered HTTP 500 Internal Server Error"
    );
}

#[tokio::test]
async fn bodies_are_decoded_leniently() {
    let server = MockServer::start().await;
    Mock::given(path("/empty"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;
    Mock::given(path("/text"))
        .respond_with(ResponseTemplate::new(200).set_body_string("plain"))
        .mount(&server)
        .await;
    let client = HttpClient::new(&server.uri(), Auth::None).unwrap();
    let empty = client.send(get("/empty")).await.unwrap();
    assert_eq!((empty.status, empty.body), (204, Value::Null));
    let text = client.send(get("/text")).await.unwrap();
    assert_eq!(text.body, json!("plain"));
}

#[tokio::test]
async fn slow_answers_time_out() {
    let server = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(2_000)))
        .mount(&server)
        .await;
    let client = HttpClient::new(&server.uri(), Auth::None).unwrap();
    let started = std::time::Instant::now();
    let error = client
        .send(HttpRequest {
            policy: &FAST,
            ..get("/slow")
        })
        .await
        .unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(!error.is_connect());
    assert_eq!(error.status(), None);
    assert_eq!(
        error.to_string(),
        "endpoint `get_item`: the request timed out after 150 ms"
    );
    assert!(started.elapsed() < Duration::from_millis(1_500));
}

#[tokio::test]
async fn closed_ports_are_connect_errors_without_secrets() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = HttpClient::new(
        &format!("http://127.0.0.1:{port}"),
        Auth::ApiKeyQuery {
            name: "key",
            key: Secret::new("sk-live-query-secret"),
        },
    )
    .unwrap();
    let error = client.send(get("/items")).await.unwrap_err();
    assert!(error.is_connect(), "{error}");
    assert!(!error.to_string().contains("sk-live-query-secret"), "{error}");
    assert!(!format!("{error:?}").contains("sk-live-query-secret"), "{error:?}");
}

#[tokio::test]
async fn secrets_never_show_in_debug_or_errors() {
    let secret = Secret::new("sk-live-abc123");
    assert_eq!(format!("{secret:?}"), "Secret(***)");
    assert!(!format!("{:?}", Auth::Bearer(secret.clone())).contains("sk-live-abc123"));

    let server = MockServer::start().await;
    Mock::given(path("/items"))
        .respond_with(
            ResponseTemplate::new(401).set_body_json(json!({"error": {"message": "invalid key sk-live-abc123"}})),
        )
        .mount(&server)
        .await;
    let client = HttpClient::new(
        &server.uri(),
        Auth::ApiKeyHeader {
            name: "X-Key",
            key: secret,
        },
    )
    .unwrap();
    assert!(!format!("{client:?}").contains("sk-live-abc123"));
    let error = client.send(get("/items")).await.unwrap_err();
    assert_eq!(error.status(), Some(401));
    assert_eq!(
        error.to_string(),
        "endpoint `get_item`: the provider answered HTTP 401 Unauthorized: invalid key ***"
    );
    assert!(!format!("{error:?}").contains("sk-live-abc123"));
}

#[tokio::test]
async fn oauth2_client_credentials_token_is_fetched_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth/token"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"access_token": "at-1", "token_type": "bearer", "expires_in": 3600})),
        )
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/me"))
        .and(header("authorization", "Bearer at-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": 1})))
        .expect(2)
        .mount(&server)
        .await;
    let client = HttpClient::new(
        &server.uri(),
        Auth::OAuth2(OAuth2Config {
            token_url: format!("{}/oauth/token", server.uri()),
            client_id: Secret::new("cid"),
            client_secret: Some(Secret::new("csecret")),
            scopes: vec!["read".into(), "write".into()],
            refresh_token: None,
            authorization_url: None,
        }),
    )
    .unwrap();
    assert_eq!(client.send(get("/me")).await.unwrap().body, json!({"id": 1}));
    assert_eq!(client.clone().send(get("/me")).await.unwrap().body, json!({"id": 1}));
    server.verify().await;

    let requests = server.received_requests().await.unwrap_or_default();
    let token_request = requests.iter().find(|r| r.url.path() == "/oauth/token").unwrap();
    assert_eq!(
        header_of(token_request, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(
        header_of(token_request, "authorization"),
        Some("Basic Y2lkOmNzZWNyZXQ=")
    );
    assert_eq!(
        sorted_pairs(&token_request.body),
        ["grant_type=client_credentials", "scope=read+write"]
    );
}

#[tokio::test]
async fn oauth2_refresh_token_is_used_and_rotated() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(|request: &Request| {
            let n = if String::from_utf8_lossy(&request.body).contains("refresh_token=rt-1") {
                1
            } else {
                2
            };
            // expires_in 0: every call needs a new token.
            ResponseTemplate::new(200).set_body_json(json!({
                "access_token": format!("at-{n}"),
                "expires_in": 0,
                "refresh_token": format!("rt-{}", n + 1),
            }))
        })
        .expect(2)
        .mount(&server)
        .await;
    Mock::given(path("/me"))
        .respond_with(ResponseTemplate::new(200))
        .expect(2)
        .mount(&server)
        .await;
    let client = HttpClient::new(
        &server.uri(),
        Auth::OAuth2(OAuth2Config {
            token_url: format!("{}/token", server.uri()),
            client_id: Secret::new("public-client"),
            client_secret: None,
            scopes: vec![],
            refresh_token: Some(Secret::new("rt-1")),
            authorization_url: None,
        }),
    )
    .unwrap();
    client.send(get("/me")).await.unwrap();
    client.send(get("/me")).await.unwrap();
    server.verify().await;

    let requests = server.received_requests().await.unwrap_or_default();
    let tokens: Vec<Vec<String>> = requests
        .iter()
        .filter(|r| r.url.path() == "/token")
        .map(|r| sorted_pairs(&r.body))
        .collect();
    assert_eq!(
        tokens,
        [
            [
                "client_id=public-client",
                "grant_type=refresh_token",
                "refresh_token=rt-1"
            ],
            [
                "client_id=public-client",
                "grant_type=refresh_token",
                "refresh_token=rt-2"
            ],
        ]
    );
    let bearers: Vec<Option<&str>> = requests
        .iter()
        .filter(|r| r.url.path() == "/me")
        .map(|r| header_of(r, "authorization"))
        .collect();
    assert_eq!(bearers, [Some("Bearer at-1"), Some("Bearer at-2")]);
}

#[tokio::test]
async fn oauth2_token_failures_are_auth_errors() {
    let server = MockServer::start().await;
    Mock::given(path("/token"))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"error": "invalid_client", "error_description": "bad secret for csecret"})),
        )
        .mount(&server)
        .await;
    let client = HttpClient::new(
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
    .unwrap();
    let error = client.send(get("/me")).await.unwrap_err();
    assert!(error.is_auth(), "{error}");
    assert_eq!(error.status(), Some(401));
    assert_eq!(
        error.to_string(),
        "endpoint `get_item`: could not obtain an access token (HTTP 401 Unauthorized): bad secret for ***"
    );
    let requests = server.received_requests().await.unwrap_or_default();
    assert!(requests.iter().all(|r| r.url.path() == "/token"));
}
