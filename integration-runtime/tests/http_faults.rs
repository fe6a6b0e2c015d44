//! Hostile and broken answers from raw loopback servers: bodies over the
//! size limit are refused before or while they are read, error texts come
//! from a bounded prefix, and a reset or truncated answer is a transport
//! fault (the retryable class `"transport"`) that counts against the
//! circuit breaker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration_runtime::__private::{paginator, Auth, HttpClient, HttpRequest, Pagination, Seg};
use integration_runtime::{
    CircuitBreakerPolicy, ClientError, IntegrationDescriptor, Paginator, PolicyDescriptor, PolicyScope, RetryOn,
    RetryPolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

const MIB: u64 = 1024 * 1024;
/// The hostile body: fifty times the limit.
const HUGE: usize = 50_000_000;

static ONE_MIB: PolicyDescriptor = PolicyDescriptor {
    max_response_bytes: MIB,
    ..PolicyDescriptor::DEFAULT
};

fn get(policy: &'static PolicyDescriptor) -> HttpRequest {
    HttpRequest {
        endpoint: "download",
        method: "GET",
        path: "/file".to_owned(),
        query: vec![],
        headers: vec![],
        body: None,
        error_path: None,
        policy,
    }
}

/// The error of a call that must fail; a success is reported by its status
/// only (its body may be 50 MB).
async fn failure(client: &HttpClient, policy: &'static PolicyDescriptor) -> ClientError {
    match client.send(get(policy)).await {
        Ok(response) => panic!("the call succeeded with HTTP {}", response.status),
        Err(error) => error,
    }
}

/// Reads one request's head (the tests send no bodies).
async fn read_head(stream: &mut TcpStream) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
}

/// A server answering each connection with `answer`; the handle's counter
/// holds the body bytes it managed to write in all.
async fn raw_server<F, Fut>(answer: F) -> (String, Arc<AtomicUsize>, JoinHandle<()>)
where
    F: Fn(TcpStream, Arc<AtomicUsize>) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let written = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&written);
    let task = tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            read_head(&mut stream).await;
            tokio::spawn(answer(stream, Arc::clone(&counter)));
        }
    });
    (base, written, task)
}

/// Writes `HUGE` bytes of body after `head`, chunked or not, until the
/// client stops reading.
async fn write_huge(mut stream: TcpStream, written: Arc<AtomicUsize>, head: &'static str, chunked: bool) {
    if stream.write_all(head.as_bytes()).await.is_err() {
        return;
    }
    let block = vec![b'x'; 64 * 1024];
    let mut sent = 0;
    while sent < HUGE {
        let result = if chunked {
            let mut framed = format!("{:x}\r\n", block.len()).into_bytes();
            framed.extend_from_slice(&block);
            framed.extend_from_slice(b"\r\n");
            stream.write_all(&framed).await
        } else {
            stream.write_all(&block).await
        };
        if result.is_err() {
            return;
        }
        sent += block.len();
        written.fetch_add(block.len(), Ordering::SeqCst);
    }
    if chunked {
        let _ = stream.write_all(b"0\r\n\r\n").await;
    }
    let _ = stream.shutdown().await;
}

/// What the server wrote before the client hung up, once the writer is done
/// (bounded generously: a client that reads everything takes a while).
async fn written_after(written: &AtomicUsize) -> usize {
    // The writer stops when its writes fail, shortly after the client closes.
    let mut last = written.load(Ordering::SeqCst);
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = written.load(Ordering::SeqCst);
        if now == last {
            break;
        }
        last = now;
    }
    last
}

/// The server never got near the whole body out: the client stopped reading.
/// (Socket buffers take a few MiB on their own.)
fn assert_stopped_early(written: usize) {
    assert!(written < HUGE / 4, "the server wrote {written} of {HUGE} bytes");
}

#[tokio::test]
async fn a_content_length_over_the_limit_is_refused_before_the_body_is_read() {
    let (base, written, _server) = raw_server(|stream, written| {
        write_huge(
            stream,
            written,
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: 50000000\r\n\r\n",
            false,
        )
    })
    .await;
    let client = HttpClient::new(&base, Auth::None).unwrap();
    let error = failure(&client, &ONE_MIB).await;
    assert!(error.is_response_too_large(), "{error}");
    assert!(!error.is_transport() && !error.is_status(), "{error}");
    assert_eq!(
        error.to_string(),
        "endpoint `download`: the provider's answer is larger than the limit of 1048576 bytes (`max_response_bytes`)"
    );
    assert_stopped_early(written_after(&written).await);
}

#[tokio::test]
async fn a_chunked_body_over_the_limit_is_cut_while_streaming() {
    let (base, written, _server) = raw_server(|stream, written| {
        write_huge(
            stream,
            written,
            "HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ntransfer-encoding: chunked\r\n\r\n",
            true,
        )
    })
    .await;
    let client = HttpClient::new(&base, Auth::None).unwrap();
    let error = failure(&client, &ONE_MIB).await;
    assert!(error.is_response_too_large(), "{error}");
    assert_stopped_early(written_after(&written).await);
}

#[tokio::test]
async fn error_texts_are_read_from_a_bounded_prefix() {
    let (base, written, _server) = raw_server(|stream, written| {
        write_huge(
            stream,
            written,
            "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n",
            true,
        )
    })
    .await;
    let client = HttpClient::new(&base, Auth::None).unwrap();
    // The default 10 MiB limit: the prefix, not the limit, stops the read.
    static DEFAULT: PolicyDescriptor = PolicyDescriptor::DEFAULT;
    let error = failure(&client, &DEFAULT).await;
    assert_eq!(error.status(), Some(500), "{error}");
    let message = error.provider_message().unwrap_or_default();
    assert!(message.starts_with("xxxx") && message.len() < 600, "{message}");
    assert_stopped_early(written_after(&written).await);
}

#[tokio::test]
async fn a_long_message_at_the_error_path_is_stored_bounded() {
    let (base, _written, _server) = raw_server(|mut stream, _| async move {
        let body = format!("{{\"error\":{{\"message\":\"{}\"}}}}", "m".repeat(60_000));
        let head = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body.as_bytes()).await;
    })
    .await;
    let client = HttpClient::new(&base, Auth::None).unwrap();
    static MESSAGE: &[Seg] = &[Seg::Key("error"), Seg::Key("message")];
    let mut request = get(&ONE_MIB);
    request.error_path = Some(MESSAGE);
    let error = client.send(request).await.unwrap_err();
    assert_eq!(error.status(), Some(400), "{error}");
    let message = error.provider_message().unwrap_or_default();
    assert!(
        message.starts_with("mmmm") && message.len() < 600,
        "{} characters",
        message.len()
    );
}

#[tokio::test]
async fn a_body_exactly_at_the_limit_is_read() {
    static SMALL: PolicyDescriptor = PolicyDescriptor {
        max_response_bytes: 11,
        ..PolicyDescriptor::DEFAULT
    };
    let (base, _written, _server) = raw_server(|mut stream, _| async move {
        let _ = stream
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n6\r\n:12345\r\n1\r\n}\r\n0\r\n\r\n")
            .await;
    })
    .await;
    let client = HttpClient::new(&base, Auth::None).unwrap();
    let response = client.send(get(&SMALL)).await.unwrap();
    assert_eq!(response.body, serde_json::json!({"a": 12345}));
    static SMALLER: PolicyDescriptor = PolicyDescriptor {
        max_response_bytes: 10,
        ..PolicyDescriptor::DEFAULT
    };
    let error = failure(&client, &SMALLER).await;
    assert!(error.is_response_too_large(), "{error}");
}

/// Headers promising 100 bytes, then 10 bytes, then a reset (RST) or a
/// plain close (FIN).
async fn cut_short(mut stream: TcpStream, reset: bool) {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\": 123";
    let _ = stream.write_all(head.as_bytes()).await;
    let _ = stream.flush().await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    if reset {
        // A zero linger turns the close into a reset.
        // (Deprecated because a non-zero linger blocks on drop; zero does not.)
        #[allow(deprecated)]
        let _ = stream.set_linger(Some(Duration::ZERO));
    }
    drop(stream);
}

#[tokio::test]
async fn a_reset_in_the_middle_of_the_answer_is_a_transport_fault() {
    let (base, _written, _server) = raw_server(|stream, _| cut_short(stream, true)).await;
    let client = HttpClient::new(&base, Auth::None).unwrap();
    let error = failure(&client, &ONE_MIB).await;
    assert!(error.is_transport(), "{error}");
    assert!(
        !error.is_connect() && !error.is_status() && !error.is_timeout(),
        "{error}"
    );
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_is_a_transport_fault() {
    let (base, _written, _server) = raw_server(|stream, _| cut_short(stream, false)).await;
    let client = HttpClient::new(&base, Auth::None).unwrap();
    let error = failure(&client, &ONE_MIB).await;
    assert!(error.is_transport(), "{error}");
    assert!(
        !error.is_connect() && !error.is_status() && !error.is_timeout(),
        "{error}"
    );
}

#[tokio::test]
async fn transport_faults_open_the_circuit_breaker() {
    static BREAKING: IntegrationDescriptor = IntegrationDescriptor {
        name: "Flaky",
        module: "flaky",
        endpoints: &[],
        policy: PolicyDescriptor {
            circuit_breaker: Some(CircuitBreakerPolicy {
                failure_threshold: 2,
                open_for_ms: 60_000,
                half_open_probes: 1,
                scope: PolicyScope::Integration,
            }),
            ..PolicyDescriptor::DEFAULT
        },
        polling: None,
        webhook: None,
        fingerprint: "",
    };
    let (base, _written, _server) = raw_server(|stream, _| cut_short(stream, false)).await;
    let client = HttpClient::for_integration(&BREAKING, &base, Auth::None).unwrap();
    for _ in 0..2 {
        let error = client.send(get(&BREAKING.policy)).await.unwrap_err();
        assert!(error.is_transport(), "{error}");
    }
    let error = client.send(get(&BREAKING.policy)).await.unwrap_err();
    assert!(error.is_circuit_open(), "{error}");
}

/// Retries named by `on`, quickly.
const fn retrying(on: RetryOn) -> PolicyDescriptor {
    PolicyDescriptor {
        retry: RetryPolicy {
            max_attempts: 3,
            initial_backoff_ms: 10,
            max_backoff_ms: 10,
            multiplier: 1.0,
            on,
        },
        ..PolicyDescriptor::DEFAULT
    }
}

const ALL_BUT_TRANSPORT: RetryOn = RetryOn {
    server_errors: true,
    too_many_requests: true,
    timeouts: true,
    connect_errors: true,
    transport_errors: false,
    too_large: true,
};

#[tokio::test]
async fn a_truncated_page_is_retried_when_retry_on_names_transport() {
    static TRANSPORT: PolicyDescriptor = retrying(RetryOn {
        transport_errors: true,
        ..ALL_BUT_TRANSPORT
    });
    static WITHOUT: PolicyDescriptor = retrying(ALL_BUT_TRANSPORT);
    for (policy, retried) in [(&TRANSPORT, true), (&WITHOUT, false)] {
        // The first connection is cut short, the next ones get the page.
        let (base, connections, _server) = raw_server(|mut stream, connections| async move {
            if connections.fetch_add(1, Ordering::SeqCst) == 0 {
                return cut_short(stream, false).await;
            }
            let body = r#"{"items":[1,2]}"#;
            let answer = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(answer.as_bytes()).await;
        })
        .await;
        let client = HttpClient::new(&base, Auth::None).unwrap();
        let pages: Paginator<u64> = paginator(
            client,
            get(policy),
            Pagination::Offset {
                param: "offset",
                limit_param: "limit",
                limit: 10,
            },
            &[Seg::Key("items")],
        );
        let result = pages.collect_all().await;
        if retried {
            assert_eq!(result.unwrap(), [1, 2]);
            assert_eq!(connections.load(Ordering::SeqCst), 2);
        } else {
            let error = result.unwrap_err();
            assert!(error.is_transport(), "{error}");
            assert_eq!(connections.load(Ordering::SeqCst), 1);
        }
    }
}
