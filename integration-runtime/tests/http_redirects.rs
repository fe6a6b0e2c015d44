//! Redirects against two loopback servers (two ports, two origins): no
//! credential of any auth kind, no request header and no body reaches
//! another origin, whatever the redirect status; within the origin,
//! redirects are followed with credentials.

use integration_runtime::__private::{Auth, BodyEncoding, HttpClient, HttpRequest, OAuth2Config};
use integration_runtime::{PolicyDescriptor, RedirectPolicy, Secret};
use serde_json::json;
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

static SAME_ORIGIN: PolicyDescriptor = PolicyDescriptor::DEFAULT;
static ANY_ORIGIN: PolicyDescriptor = PolicyDescriptor {
    redirects: RedirectPolicy::AnyOrigin,
    ..PolicyDescriptor::DEFAULT
};
static NO_REDIRECTS: PolicyDescriptor = PolicyDescriptor {
    redirects: RedirectPolicy::None,
    ..PolicyDescriptor::DEFAULT
};

const STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

/// Every value that must not leave the origin: credentials of each kind (the
/// Basic header's base64 form included), the mapped header and the body.
const SECRETS: [&str; 10] = [
    "tok-bearer",
    "user-basic",
    "pass-basic",
    "dXNlci1iYXNpYzpwYXNzLWJhc2lj",
    "key-header",
    "key-query",
    "at-oauth",
    "cid-oauth",
    "mapped-value",
    "body-value",
];

/// The auth kinds, each with a name for failure messages; the OAuth2 token
/// endpoint is on `origin`.
fn auth_kinds(origin: &MockServer) -> Vec<(&'static str, Auth)> {
    vec![
        ("bearer", Auth::Bearer(Secret::new("tok-bearer"))),
        (
            "basic",
            Auth::Basic {
                username: Secret::new("user-basic"),
                password: Secret::new("pass-basic"),
            },
        ),
        (
            "api key header",
            Auth::ApiKeyHeader {
                name: "X-Api-Key",
                key: Secret::new("key-header"),
            },
        ),
        (
            "api key query",
            Auth::ApiKeyQuery {
                name: "api_key",
                key: Secret::new("key-query"),
            },
        ),
        (
            "oauth2",
            Auth::OAuth2(OAuth2Config {
                token_url: format!("{}/token", origin.uri()),
                client_id: Secret::new("cid-oauth"),
                client_secret: Some(Secret::new("csecret-oauth")),
                scopes: vec![],
                refresh_token: None,
                authorization_url: None,
            }),
        ),
    ]
}

/// A POST with a mapped header and a JSON body, to `path`.
fn post(path: &str, policy: &'static PolicyDescriptor) -> HttpRequest {
    HttpRequest {
        endpoint: "create",
        method: "POST",
        path: path.to_owned(),
        query: vec![("page", json!(1))],
        headers: vec![("X-Mapped", "mapped-value".to_owned())],
        body: Some((BodyEncoding::Json, json!({"field": "body-value"}))),
        error_path: None,
        policy,
    }
}

/// The provider's origin: `/r/{status}` redirects with that status to
/// `target`, `/token` issues `at-oauth`, `/landing` answers 200.
async fn origin_redirecting_to(target: &str) -> MockServer {
    let origin = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "at-oauth", "expires_in": 3600})))
        .mount(&origin)
        .await;
    for status in STATUSES {
        Mock::given(path(format!("/r/{status}")))
            .respond_with(ResponseTemplate::new(status).insert_header("Location", target))
            .mount(&origin)
            .await;
    }
    Mock::given(path("/landing"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"at": "origin"})))
        .mount(&origin)
        .await;
    origin
}

async fn target_server() -> MockServer {
    let target = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"at": "target"})))
        .mount(&target)
        .await;
    target
}

/// Everything a request carried, as one text to search.
fn everything(request: &Request) -> String {
    let mut text = format!("{} {}\n", request.method, request.url);
    for (name, value) in &request.headers {
        text.push_str(&format!("{name}: {}\n", String::from_utf8_lossy(value.as_bytes())));
    }
    text.push_str(&String::from_utf8_lossy(&request.body));
    text
}

fn assert_clean(request: &Request, case: &str) {
    let seen = everything(request);
    for secret in SECRETS {
        assert!(!seen.contains(secret), "{case}: the target saw `{secret}`:\n{seen}");
    }
    assert!(request.headers.get("authorization").is_none(), "{case}: {seen}");
    assert!(request.headers.get("x-mapped").is_none(), "{case}: {seen}");
    assert!(request.body.is_empty(), "{case}: {seen}");
}

#[tokio::test]
async fn cross_origin_redirects_are_refused_by_default_and_the_target_sees_nothing() {
    for status in STATUSES {
        let target = target_server().await;
        let landing = format!("{}/landing?next=secret-query", target.uri());
        let origin = origin_redirecting_to(&landing).await;
        for (kind, auth) in auth_kinds(&origin) {
            let case = format!("{status} with {kind}");
            let client = HttpClient::new(&origin.uri(), auth).unwrap();
            let error = client
                .send(post(&format!("/r/{status}"), &SAME_ORIGIN))
                .await
                .expect_err(&case);
            assert!(error.is_redirect(), "{case}: {error}");
            assert!(!error.is_status() && !error.is_transport(), "{case}: {error}");
            let text = error.to_string();
            assert!(
                text.contains(&target.uri()),
                "{case}: the message names the target origin: {text}"
            );
            assert!(
                !text.contains("secret-query") && !text.contains("landing"),
                "{case}: {text}"
            );
            for secret in SECRETS {
                assert!(!text.contains(secret), "{case}: {text}");
            }
        }
        let received = target.received_requests().await.unwrap_or_default();
        assert!(received.is_empty(), "{status}: the target was requested: {received:?}");
    }
}

#[tokio::test]
async fn any_origin_redirects_reach_the_target_without_credentials_headers_or_body() {
    for status in STATUSES {
        let target = target_server().await;
        let origin = origin_redirecting_to(&format!("{}/landing?next=2", target.uri())).await;
        for (kind, auth) in auth_kinds(&origin) {
            let case = format!("{status} with {kind}");
            let client = HttpClient::new(&origin.uri(), auth).unwrap();
            let result = client.send(post(&format!("/r/{status}"), &ANY_ORIGIN)).await;
            if matches!(status, 307 | 308) {
                // These keep the method and body: re-sending the body to
                // another origin is refused.
                let error = result.expect_err(&case);
                assert!(error.is_redirect(), "{case}: {error}");
            } else {
                let response = result.unwrap_or_else(|e| panic!("{case}: {e}"));
                assert_eq!(response.body, json!({"at": "target"}), "{case}");
            }
        }
        let received = target.received_requests().await.unwrap_or_default();
        let expected = if matches!(status, 307 | 308) { 0 } else { 5 };
        assert_eq!(received.len(), expected, "{status}: {received:?}");
        for request in &received {
            assert_eq!(request.method.as_str(), "GET", "{status}");
            assert_eq!(request.url.path(), "/landing");
            assert_eq!(
                request.url.query(),
                Some("next=2"),
                "{status}: the API key is taken out"
            );
            assert_clean(request, &format!("{status}"));
        }
    }
}

#[tokio::test]
async fn any_origin_307_and_308_without_a_body_reach_the_target_clean() {
    for status in [307, 308] {
        let target = target_server().await;
        let origin = origin_redirecting_to(&format!("{}/landing", target.uri())).await;
        for (kind, auth) in auth_kinds(&origin) {
            let client = HttpClient::new(&origin.uri(), auth).unwrap();
            let request = HttpRequest {
                method: "GET",
                body: None,
                ..post(&format!("/r/{status}"), &ANY_ORIGIN)
            };
            let response = client
                .send(request)
                .await
                .unwrap_or_else(|e| panic!("{status} with {kind}: {e}"));
            assert_eq!(response.body, json!({"at": "target"}));
        }
        let received = target.received_requests().await.unwrap_or_default();
        assert_eq!(received.len(), 5);
        for request in &received {
            assert_eq!(request.method.as_str(), "GET");
            assert_eq!(request.url.query(), None);
            assert_clean(request, &format!("{status}"));
        }
    }
}

#[tokio::test]
async fn same_origin_redirects_are_followed_with_credentials() {
    for status in STATUSES {
        let origin = MockServer::start().await;
        let landing = format!("{}/landing", origin.uri());
        Mock::given(path(format!("/r/{status}")))
            .respond_with(ResponseTemplate::new(status).insert_header("Location", landing.as_str()))
            .mount(&origin)
            .await;
        Mock::given(path("/landing"))
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({"at": "landing"})))
            .mount(&origin)
            .await;
        let client = HttpClient::new(&origin.uri(), Auth::Bearer(Secret::new("tok-bearer"))).unwrap();
        let response = client
            .send(post(&format!("/r/{status}"), &SAME_ORIGIN))
            .await
            .unwrap_or_else(|e| panic!("{status}: {e}"));
        assert_eq!(response.body, json!({"at": "landing"}), "{status}");
        let received = origin.received_requests().await.unwrap_or_default();
        let landed: Vec<&Request> = received.iter().filter(|r| r.url.path() == "/landing").collect();
        assert_eq!(landed.len(), 1, "{status}");
        let landed = landed[0];
        assert_eq!(
            landed.headers.get("authorization").and_then(|v| v.to_str().ok()),
            Some("Bearer tok-bearer"),
            "{status}"
        );
        if matches!(status, 307 | 308) {
            assert_eq!(landed.method.as_str(), "POST", "{status} keeps the method");
            assert_eq!(
                serde_json::from_slice::<serde_json::Value>(&landed.body).unwrap(),
                json!({"field": "body-value"})
            );
            assert_eq!(
                landed.headers.get("x-mapped").and_then(|v| v.to_str().ok()),
                Some("mapped-value")
            );
        } else {
            assert_eq!(landed.method.as_str(), "GET", "{status} becomes a GET");
            assert!(landed.body.is_empty(), "{status}");
            assert!(landed.headers.get("content-type").is_none(), "{status}");
        }
    }
}

#[tokio::test]
async fn with_redirects_off_a_3xx_is_a_status_error() {
    let target = target_server().await;
    let origin = origin_redirecting_to(&format!("{}/landing", target.uri())).await;
    let client = HttpClient::new(&origin.uri(), Auth::Bearer(Secret::new("tok-bearer"))).unwrap();
    let error = client.send(post("/r/302", &NO_REDIRECTS)).await.unwrap_err();
    assert!(error.is_status(), "{error}");
    assert_eq!(error.status(), Some(302));
    assert!(target.received_requests().await.unwrap_or_default().is_empty());
}

#[tokio::test]
async fn a_redirect_loop_stops_after_ten_hops() {
    let origin = MockServer::start().await;
    Mock::given(path("/loop"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", "/loop"))
        .mount(&origin)
        .await;
    let client = HttpClient::new(&origin.uri(), Auth::None).unwrap();
    let error = client
        .send(HttpRequest {
            method: "GET",
            body: None,
            ..post("/loop", &SAME_ORIGIN)
        })
        .await
        .unwrap_err();
    assert!(error.is_redirect(), "{error}");
    let received = origin.received_requests().await.unwrap_or_default();
    assert_eq!(received.len(), 11, "the first request and ten redirects");
}
