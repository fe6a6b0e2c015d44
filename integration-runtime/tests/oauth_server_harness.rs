//! The OAuth2 test server and its browser (`oauth_support`) against the real
//! oidc-provider, with plain HTTP and no runtime code: authorization code
//! with PKCE, refresh-token rotation, a wrong verifier, a secret sent in the
//! body instead of basic auth, a denied consent, access tokens living as long
//! as the test says, and the server's count of token requests. What the
//! runtime's connect flow will be tested against has to behave as these
//! tests say first.

mod oauth_support;

use base64::Engine as _;
use oauth_support::OAuthServer;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::{StatusCode, Url};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// Never fetched: the browser stops at the redirect to it.
const REDIRECT_URI: &str = "http://127.0.0.1:9/connect/Reports/callback";

/// A PKCE pair: a fresh verifier (64 characters from the unreserved set)
/// and its S256 challenge.
struct Pkce {
    verifier: String,
    challenge: String,
}

impl Pkce {
    fn new() -> Pkce {
        let verifier = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        Pkce { verifier, challenge }
    }
}

fn encode(pairs: &[(&str, &str)]) -> String {
    let encoded: Vec<String> = pairs
        .iter()
        .map(|(name, value)| format!("{name}={}", utf8_percent_encode(value, NON_ALPHANUMERIC)))
        .collect();
    encoded.join("&")
}

/// What the server needs on the authorize URL: no `openid`, `prompt` or
/// `resource`; `redirect_uri` even though the client has only one.
fn authorize_url(server: &OAuthServer, state: &str, pkce: &Pkce) -> String {
    let query = encode(&[
        ("response_type", "code"),
        ("client_id", server.client_id()),
        ("redirect_uri", REDIRECT_URI),
        ("scope", "reports"),
        ("state", state),
        ("code_challenge", &pkce.challenge),
        ("code_challenge_method", "S256"),
    ]);
    format!("{}?{query}", server.authorization_url())
}

/// The query parameter `name` of the redirect `location`, which must go to
/// `REDIRECT_URI`.
fn redirect_param(location: &str, name: &str) -> Option<String> {
    assert!(
        location.starts_with(&format!("{REDIRECT_URI}?")),
        "redirect to {location}, not to the redirect URI"
    );
    let url: Url = location.parse().expect("redirect URL");
    url.query_pairs()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.into_owned())
}

/// POSTs `form` to the token endpoint with the client's basic credentials.
async fn token_request(server: &OAuthServer, form: &[(&str, &str)]) -> (StatusCode, Value) {
    post_form(server, &server.token_url(), form).await
}

/// Whether the server still holds `access_token` active (RFC 7662).
async fn is_active(server: &OAuthServer, access_token: &str) -> bool {
    let form = [("token", access_token)];
    let (status, body) = post_form(server, &server.introspection_url(), &form).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["active"].as_bool().expect("active in the introspection")
}

async fn post_form(server: &OAuthServer, url: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let response = reqwest::Client::new()
        .post(url)
        .basic_auth(server.client_id(), Some(server.client_secret()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(form))
        .send()
        .await
        .expect("request to the OAuth server");
    let status = response.status();
    let body = response.bytes().await.expect("response body");
    (status, serde_json::from_slice(&body).expect("JSON response"))
}

async fn exchange(server: &OAuthServer, code: &str, verifier: &str) -> (StatusCode, Value) {
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", verifier),
    ];
    token_request(server, &form).await
}

async fn refresh(server: &OAuthServer, refresh_token: &str) -> (StatusCode, Value) {
    let form = [("grant_type", "refresh_token"), ("refresh_token", refresh_token)];
    token_request(server, &form).await
}

/// Approves a fresh authorization request and returns its code and verifier.
async fn approved_code(server: &OAuthServer) -> (String, Pkce) {
    let pkce = Pkce::new();
    let location = server.approve(&authorize_url(server, "state-approve", &pkce)).await;
    assert_eq!(redirect_param(&location, "state").as_deref(), Some("state-approve"));
    assert_eq!(redirect_param(&location, "iss"), Some(server.issuer()));
    let code = redirect_param(&location, "code").expect("code on the redirect");
    (code, pkce)
}

fn string_field(body: &Value, name: &str) -> String {
    body[name]
        .as_str()
        .unwrap_or_else(|| panic!("no {name} in {body}"))
        .to_owned()
}

#[tokio::test]
async fn an_approved_code_exchanges_for_tokens_whose_refresh_token_rotates() {
    let Some(server) = OAuthServer::start(&[REDIRECT_URI], 5) else {
        return;
    };
    let (code, pkce) = approved_code(&server).await;

    let (status, tokens) = exchange(&server, &code, &pkce.verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "reports");
    assert_eq!(tokens["expires_in"], 5, "the TTL the test asked for");
    let access_token = string_field(&tokens, "access_token");
    let first_refresh_token = string_field(&tokens, "refresh_token");
    assert_eq!(server.token_requests().await, json!({"authorization_code": 1}));

    let (status, refreshed) = refresh(&server, &first_refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_ne!(string_field(&refreshed, "access_token"), access_token);
    let second_refresh_token = string_field(&refreshed, "refresh_token");
    assert_ne!(second_refresh_token, first_refresh_token, "rotated");
    let refreshed_access_token = string_field(&refreshed, "access_token");
    assert!(is_active(&server, &refreshed_access_token).await);

    let (status, reused) = refresh(&server, &first_refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reused["error"], "invalid_grant");
    // Reusing a rotated-out token revokes the whole grant (oidc-provider's
    // replay defence): the newest refresh token dies with it.
    let (status, revoked) = refresh(&server, &second_refresh_token).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(revoked["error"], "invalid_grant");
    assert!(!is_active(&server, &refreshed_access_token).await);

    assert_eq!(
        server.token_requests().await,
        json!({"authorization_code": 1, "refresh_token": 3})
    );
}

#[tokio::test]
async fn an_access_token_is_inactive_once_its_ttl_has_passed() {
    let Some(server) = OAuthServer::start(&[REDIRECT_URI], 1) else {
        return;
    };
    let (code, pkce) = approved_code(&server).await;
    let (status, tokens) = exchange(&server, &code, &pkce.verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    let access_token = string_field(&tokens, "access_token");
    assert!(is_active(&server, &access_token).await);

    // The server counts whole seconds: past two, a one-second token is gone.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    assert!(!is_active(&server, &access_token).await);
}

#[tokio::test]
async fn a_code_exchanged_with_the_wrong_verifier_is_an_invalid_grant() {
    let Some(server) = OAuthServer::start(&[REDIRECT_URI], 60) else {
        return;
    };
    let (code, _) = approved_code(&server).await;

    let (status, body) = exchange(&server, &code, &Pkce::new().verifier).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(body.get("access_token").is_none());
    assert_eq!(server.token_requests().await, json!({"authorization_code": 1}));
}

#[tokio::test]
async fn a_client_secret_in_the_body_is_refused_and_leaves_the_code_unused() {
    let Some(server) = OAuthServer::start(&[REDIRECT_URI], 60) else {
        return;
    };
    let (code, pkce) = approved_code(&server).await;
    let form = encode(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT_URI),
        ("code_verifier", &pkce.verifier),
        ("client_id", server.client_id()),
        ("client_secret", server.client_secret()),
    ]);
    let response = reqwest::Client::new()
        .post(server.token_url())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .await
        .expect("token request");
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_slice(&response.bytes().await.expect("body")).expect("JSON");
    assert_eq!(body["error"], "invalid_client");

    let (status, tokens) = exchange(&server, &code, &pkce.verifier).await;
    assert_eq!(status, StatusCode::OK, "{tokens}");
    assert_eq!(
        server.token_requests().await,
        json!({"without_basic_auth": 1, "authorization_code": 1})
    );
}

#[tokio::test]
async fn a_denied_consent_redirects_with_access_denied_and_the_state() {
    let Some(server) = OAuthServer::start(&[REDIRECT_URI], 60) else {
        return;
    };
    let location = server.deny(&authorize_url(&server, "state-deny", &Pkce::new())).await;

    assert_eq!(redirect_param(&location, "error").as_deref(), Some("access_denied"));
    assert_eq!(redirect_param(&location, "state").as_deref(), Some("state-deny"));
    assert_eq!(redirect_param(&location, "code"), None);
    assert_eq!(server.token_requests().await, json!({}));
}
