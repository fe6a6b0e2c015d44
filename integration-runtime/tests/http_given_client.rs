//! An application's own `reqwest::Client` handed to the runtime: it is the
//! one that sends (its proxy and default headers reach the wire), and the
//! runtime's auth, timeout, size limit and redirect rules still apply on top.
//! Against wiremock and a small recording proxy on loopback.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use integration_runtime::__private::{Auth, HttpClient, HttpRequest, OAuth2Config};
use integration_runtime::{CallStatus, MemoryStore, PolicyDescriptor, Runtime, Secret};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use wiremock::matchers::{any, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

integration_runtime::integration!("tests/specs/webhook_tts.toml");

static POLICY: PolicyDescriptor = PolicyDescriptor::DEFAULT;
static FAST: PolicyDescriptor = PolicyDescriptor {
    timeout_ms: 200,
    ..PolicyDescriptor::DEFAULT
};
static SMALL: PolicyDescriptor = PolicyDescriptor {
    max_response_bytes: 1024,
    ..PolicyDescriptor::DEFAULT
};
const LIMIT: Duration = Duration::from_secs(20);

fn get(path: &str, policy: &'static PolicyDescriptor) -> HttpRequest {
    HttpRequest {
        endpoint: "get_item",
        method: "GET",
        path: path.to_owned(),
        query: vec![],
        headers: vec![],
        body: None,
        error_path: None,
        policy,
    }
}

/// A client that never follows redirects, with `X-Corp: blue` on every request.
fn corporate_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-corp", reqwest::header::HeaderValue::from_static("blue"));
    reqwest::Client::builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn header_of<'r>(request: &'r Request, name: &str) -> Option<&'r str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

async fn server_answering(template: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any()).respond_with(template).mount(&server).await;
    server
}

/// An HTTP proxy on loopback that records each request head it is sent and
/// answers every one itself with 200 and `body`, never forwarding.
struct Proxy {
    url: String,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    async fn start(body: &'static str) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let heads = Arc::new(Mutex::new(Vec::new()));
        let recorded = Arc::clone(&heads);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let recorded = Arc::clone(&recorded);
                tokio::spawn(async move {
                    let head = read_request(&mut socket).await;
                    recorded.lock().unwrap().push(head);
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                         connection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Proxy { url, heads }
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

/// Reads one request (its head, then `content-length` bytes of body) and
/// returns the head, lower-cased.
async fn read_request(socket: &mut tokio::net::TcpStream) -> String {
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    let head_end = loop {
        let n = socket.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the connection closed mid-head");
        bytes.extend_from_slice(&buffer[..n]);
        if let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
    };
    let head = String::from_utf8_lossy(&bytes[..head_end]).to_lowercase();
    let length: usize = head
        .lines()
        .find_map(|line| line.strip_prefix("content-length:"))
        .map_or(0, |value| value.trim().parse().unwrap());
    while bytes.len() < head_end + length {
        let n = socket.read(&mut buffer).await.unwrap();
        assert!(n > 0, "the connection closed mid-body");
        bytes.extend_from_slice(&buffer[..n]);
    }
    head
}

#[tokio::test]
async fn given_clients_default_header_goes_out_with_the_runtimes_auth() {
    let server = server_answering(ResponseTemplate::new(200).set_body_json(json!({"ok": true}))).await;
    let client = HttpClient::new(&server.uri(), Auth::Bearer(Secret::new("tok-1")))
        .unwrap()
        .with_reqwest_client(corporate_client());
    let response = client.send(get("/items/1", &POLICY)).await.unwrap();
    assert_eq!(response.body, json!({"ok": true}));
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    assert_eq!(header_of(&requests[0], "x-corp"), Some("blue"));
    assert_eq!(header_of(&requests[0], "authorization"), Some("Bearer tok-1"));
    // The runtime's own clients send their User-Agent; the given one does not.
    assert_eq!(header_of(&requests[0], "user-agent"), None);
    assert!(format!("{client:?}").contains("given"), "{client:?}");
}

#[tokio::test]
async fn given_clients_proxy_receives_the_request() {
    let proxy = Proxy::start(r#"{"from": "proxy"}"#).await;
    let through_proxy = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy.url).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // `.invalid` never resolves: only the proxy can answer.
    let client = HttpClient::new(
        "http://provider.invalid/v1",
        Auth::ApiKeyHeader {
            name: "X-Api-Key",
            key: Secret::new("key-1"),
        },
    )
    .unwrap()
    .with_reqwest_client(through_proxy);
    let response = client.send(get("/items/1", &POLICY)).await.unwrap();
    assert_eq!(response.body, json!({"from": "proxy"}));
    let heads = proxy.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("get http://provider.invalid/v1/items/1 http/1.1\r\n"),
        "{heads:?}"
    );
    assert!(heads[0].contains("\r\nx-api-key: key-1\r\n"), "{heads:?}");
}

#[tokio::test]
async fn given_client_is_used_for_oauth2_token_requests() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"access_token": "at-1", "expires_in": 3600})))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({})))
        .mount(&server)
        .await;
    let client = HttpClient::new(
        &server.uri(),
        Auth::OAuth2(OAuth2Config {
            token_url: format!("{}/token", server.uri()),
            client_id: Secret::new("cid"),
            client_secret: Some(Secret::new("cs")),
            scopes: vec![],
            refresh_token: None,
            authorization_url: None,
        }),
    )
    .unwrap()
    .with_reqwest_client(corporate_client());
    client.send(get("/items/1", &POLICY)).await.unwrap();
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].url.path(), "/token");
    assert!(
        requests.iter().all(|r| header_of(r, "x-corp") == Some("blue")),
        "{requests:?}"
    );
    assert_eq!(header_of(&requests[1], "authorization"), Some("Bearer at-1"));
}

#[tokio::test]
async fn policy_timeout_applies_to_a_given_client_without_one() {
    let server = server_answering(
        ResponseTemplate::new(200)
            .set_body_json(json!({}))
            .set_delay(Duration::from_secs(5)),
    )
    .await;
    let client = HttpClient::new(&server.uri(), Auth::None)
        .unwrap()
        .with_reqwest_client(corporate_client());
    let error = client.send(get("/slow", &FAST)).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(error.to_string().contains("200 ms"), "{error}");
}

#[tokio::test]
async fn policy_body_limit_applies_to_a_given_client() {
    let big = "x".repeat(10_000);
    let server = server_answering(ResponseTemplate::new(200).set_body_json(json!({"text": big}))).await;
    let client = HttpClient::new(&server.uri(), Auth::None)
        .unwrap()
        .with_reqwest_client(corporate_client());
    let error = client.send(get("/big", &SMALL)).await.unwrap_err();
    assert!(error.is_response_too_large(), "{error}");
}

#[tokio::test]
async fn runtime_redirect_rules_hold_for_a_given_client_without_redirects() {
    let elsewhere = server_answering(ResponseTemplate::new(200).set_body_json(json!({"from": "elsewhere"}))).await;
    let origin = MockServer::start().await;
    Mock::given(path("/moved"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "/here"))
        .mount(&origin)
        .await;
    Mock::given(path("/away"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", format!("{}/x", elsewhere.uri())))
        .mount(&origin)
        .await;
    Mock::given(path("/here"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"from": "origin"})))
        .mount(&origin)
        .await;
    let client = HttpClient::new(&origin.uri(), Auth::Bearer(Secret::new("tok-1")))
        .unwrap()
        .with_reqwest_client(corporate_client());
    let response = client.send(get("/moved", &POLICY)).await.unwrap();
    assert_eq!(response.body, json!({"from": "origin"}));
    let error = client.send(get("/away", &POLICY)).await.unwrap_err();
    assert!(error.is_redirect(), "{error}");
    assert!(elsewhere.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn given_client_following_redirects_itself_fails_the_request() {
    let elsewhere = server_answering(ResponseTemplate::new(200).set_body_json(json!({"from": "elsewhere"}))).await;
    let origin =
        server_answering(ResponseTemplate::new(302).insert_header("location", format!("{}/x?key=k", elsewhere.uri())))
            .await;
    // reqwest's default policy: follows up to 10 redirects, to any origin.
    let following = reqwest::Client::new();
    let client = HttpClient::new(
        &origin.uri(),
        Auth::ApiKeyHeader {
            name: "X-Api-Key",
            key: Secret::new("key-1"),
        },
    )
    .unwrap()
    .with_reqwest_client(following);
    let error = client.send(get("/away", &POLICY)).await.unwrap_err();
    assert!(error.is_redirect(), "{error}");
    let message = error.to_string();
    assert!(message.contains("Policy::none()"), "{message}");
    assert!(
        !message.contains(&elsewhere.uri()) && !message.contains("key"),
        "{message}"
    );
    // What the docs warn about: the client had sent the request on, API key
    // header included, before the runtime saw the answer.
    let sent_on = elsewhere.received_requests().await.unwrap();
    assert_eq!(sent_on.len(), 1);
    assert_eq!(header_of(&sent_on[0], "x-api-key"), Some("key-1"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_integration_sends_its_calls_through_the_given_client() {
    let proxy = Proxy::start(r#"{"task_id": "task-1"}"#).await;
    let through_proxy = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&proxy.url).unwrap())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let tts = hook_tts::HookTts::new(hook_tts::HookTtsConfig {
        base_url: "http://tts.invalid".into(),
        token: Secret::new("tok-1"),
        webhook_secret: Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
    })
    .unwrap()
    .with_reqwest_client(through_proxy);
    let rt = Runtime::builder()
        .store(MemoryStore::new())
        .integration(tts)
        .poll_idle(Duration::from_millis(20))
        .build()
        .await
        .unwrap();
    let worker = tokio::spawn({
        let rt = rt.clone();
        async move { rt.run().await }
    });
    let id = rt.create(hook_tts::Synthesis { text: "hi".into() }).await.unwrap();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let call = loop {
        let call = rt.get(id).await.unwrap().unwrap();
        if call.status != CallStatus::Pending || tokio::time::Instant::now() > deadline {
            break call;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    rt.shutdown(LIMIT).await;
    worker.await.unwrap().unwrap();
    assert_eq!(call.status, CallStatus::Processing, "{:?}", call.error);
    assert_eq!(call.external_id.as_deref(), Some("task-1"));
    let heads = proxy.heads();
    assert!(
        heads[0].starts_with("post http://tts.invalid/tasks http/1.1\r\n"),
        "{heads:?}"
    );
    assert!(heads[0].contains("\r\nauthorization: bearer tok-1\r\n"), "{heads:?}");
}
