//! Circuit breaker, rate limit and concurrency limit of `HttpClient::send`,
//! against real loopback servers: what reaches the server, and when.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use integration_runtime::__private::{Auth, HttpClient, HttpRequest};
use integration_runtime::{
    CircuitBreakerPolicy, CircuitState, IntegrationDescriptor, PolicyDescriptor, PolicyScope, RateLimitPolicy,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const fn breaker(failure_threshold: u32, open_for_ms: u64) -> Option<CircuitBreakerPolicy> {
    Some(CircuitBreakerPolicy {
        failure_threshold,
        open_for_ms,
        half_open_probes: 1,
        scope: PolicyScope::Integration,
    })
}

const fn integration(policy: PolicyDescriptor) -> IntegrationDescriptor {
    IntegrationDescriptor {
        name: "Flaky",
        module: "flaky",
        endpoints: &[],
        policy,
        polling: None,
        webhook: None,
        fingerprint: "",
    }
}

fn request(endpoint: &'static str, policy: &'static PolicyDescriptor) -> HttpRequest {
    HttpRequest {
        endpoint,
        method: "GET",
        path: "/items".to_owned(),
        query: vec![],
        headers: vec![],
        body: None,
        error_path: None,
        policy,
    }
}

async fn received(server: &MockServer) -> usize {
    server.received_requests().await.map_or(0, |r| r.len())
}

/// Polls `state` every 10 ms, at most `limit`, until `wanted` holds.
async fn wait_for(client: &HttpClient, limit: Duration, wanted: impl Fn(CircuitState) -> bool) {
    let started = Instant::now();
    while !wanted(client.circuit_state()) {
        assert!(started.elapsed() < limit, "state still {:?}", client.circuit_state());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A plain TCP server on 127.0.0.1: `handler` gets each connection (after the
/// request head was read) and its index. Lives as long as the test's runtime.
async fn raw_server<F, Fut>(handler: F) -> (String, Arc<AtomicUsize>)
where
    F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = Arc::clone(&accepted);
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let index = count.fetch_add(1, Ordering::SeqCst);
            let handler = Arc::clone(&handler);
            tokio::spawn(async move {
                if read_head(&mut stream).await {
                    handler(stream, index).await;
                }
            });
        }
    });
    (format!("http://{address}"), accepted)
}

/// Reads up to the end of a request head (these tests send no bodies).
async fn read_head(stream: &mut TcpStream) -> bool {
    let mut head = Vec::new();
    let mut buffer = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 65_536 {
        match stream.read(&mut buffer).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => head.extend_from_slice(&buffer[..n]),
        }
    }
    true
}

#[tokio::test]
async fn a_5xx_burst_opens_the_circuit_and_a_successful_probe_closes_it() {
    static POLICY: PolicyDescriptor = PolicyDescriptor {
        circuit_breaker: breaker(3, 300),
        ..PolicyDescriptor::DEFAULT
    };
    static FLAKY: IntegrationDescriptor = integration(POLICY);
    let healthy = Arc::new(AtomicBool::new(false));
    let server = MockServer::start().await;
    let flag = Arc::clone(&healthy);
    Mock::given(wiremock::matchers::any())
        .respond_with(move |_: &Request| ResponseTemplate::new(if flag.load(Ordering::SeqCst) { 200 } else { 500 }))
        .mount(&server)
        .await;
    let client = HttpClient::for_integration(&FLAKY, &server.uri(), Auth::None).unwrap();
    assert_eq!(client.circuit_state(), CircuitState::Closed);

    for _ in 0..3 {
        let error = client.send(request("get", &POLICY)).await.unwrap_err();
        assert_eq!(error.status(), Some(500));
    }
    let opened = Instant::now();
    assert!(matches!(client.circuit_state(), CircuitState::Open { .. }));
    let states = client.circuit_states();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].0, "Flaky");
    assert!(matches!(states[0].1, CircuitState::Open { .. }));
    // Open: nothing is sent, and the error says when to come back.
    for _ in 0..5 {
        let error = client.clone().send(request("get", &POLICY)).await.unwrap_err();
        assert!(error.is_circuit_open(), "{error}");
        assert!(!error.is_status() && error.status().is_none());
        let after = error.admit_after().unwrap();
        assert!(
            after > Duration::ZERO && after <= Duration::from_millis(300),
            "{after:?}"
        );
    }
    assert_eq!(received(&server).await, 3);

    // Half-open after open_for_ms; a failed probe re-opens.
    wait_for(&client, Duration::from_secs(2), |s| s == CircuitState::HalfOpen).await;
    assert!(opened.elapsed() >= Duration::from_millis(290));
    assert_eq!(
        client.send(request("get", &POLICY)).await.unwrap_err().status(),
        Some(500)
    );
    assert!(matches!(client.circuit_state(), CircuitState::Open { .. }));
    assert!(client
        .send(request("get", &POLICY))
        .await
        .unwrap_err()
        .is_circuit_open());
    assert_eq!(received(&server).await, 4);

    // A successful probe closes it, and requests flow again.
    wait_for(&client, Duration::from_secs(2), |s| s == CircuitState::HalfOpen).await;
    healthy.store(true, Ordering::SeqCst);
    client.send(request("get", &POLICY)).await.unwrap();
    assert_eq!(client.circuit_state(), CircuitState::Closed);
    for _ in 0..3 {
        client.send(request("get", &POLICY)).await.unwrap();
    }
    assert_eq!(received(&server).await, 8);
}

#[tokio::test]
async fn client_errors_do_not_open_the_circuit() {
    static POLICY: PolicyDescriptor = PolicyDescriptor {
        circuit_breaker: breaker(2, 60_000),
        ..PolicyDescriptor::DEFAULT
    };
    static FLAKY: IntegrationDescriptor = integration(POLICY);
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(404))
        .mount(&server)
        .await;
    let client = HttpClient::for_integration(&FLAKY, &server.uri(), Auth::None).unwrap();
    for _ in 0..5 {
        let error = client.send(request("get", &POLICY)).await.unwrap_err();
        assert_eq!(error.status(), Some(404));
    }
    assert_eq!(received(&server).await, 5);
    assert_eq!(client.circuit_state(), CircuitState::Closed);
}

#[tokio::test]
async fn timeouts_count_as_failures() {
    static POLICY: PolicyDescriptor = PolicyDescriptor {
        timeout_ms: 100,
        circuit_breaker: breaker(2, 60_000),
        ..PolicyDescriptor::DEFAULT
    };
    static FLAKY: IntegrationDescriptor = integration(POLICY);
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_millis(1_000)))
        .mount(&server)
        .await;
    let client = HttpClient::for_integration(&FLAKY, &server.uri(), Auth::None).unwrap();
    for _ in 0..2 {
        assert!(client.send(request("get", &POLICY)).await.unwrap_err().is_timeout());
    }
    assert!(client
        .send(request("get", &POLICY))
        .await
        .unwrap_err()
        .is_circuit_open());
    assert_eq!(received(&server).await, 2);
}

#[tokio::test]
async fn refused_and_dropped_connections_count_as_failures() {
    static POLICY: PolicyDescriptor = PolicyDescriptor {
        circuit_breaker: breaker(2, 60_000),
        ..PolicyDescriptor::DEFAULT
    };
    static FLAKY: IntegrationDescriptor = integration(POLICY);

    // Nothing listens: connection refused.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = HttpClient::for_integration(&FLAKY, &format!("http://127.0.0.1:{port}"), Auth::None).unwrap();
    for _ in 0..2 {
        assert!(client.send(request("get", &POLICY)).await.unwrap_err().is_connect());
    }
    assert!(client
        .send(request("get", &POLICY))
        .await
        .unwrap_err()
        .is_circuit_open());

    // The server reads the request and drops the connection without answering.
    let (base, accepted) = raw_server(|stream, _| async move { drop(stream) }).await;
    let client = HttpClient::for_integration(&FLAKY, &base, Auth::None).unwrap();
    for _ in 0..2 {
        let error = client.send(request("get", &POLICY)).await.unwrap_err();
        assert!(!error.is_status() && !error.is_circuit_open(), "{error}");
    }
    let error = client.send(request("get", &POLICY)).await.unwrap_err();
    assert!(error.is_circuit_open(), "{error}");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_slow_body_hits_the_timeout() {
    static POLICY: PolicyDescriptor = PolicyDescriptor {
        timeout_ms: 200,
        circuit_breaker: breaker(1, 60_000),
        ..PolicyDescriptor::DEFAULT
    };
    static FLAKY: IntegrationDescriptor = integration(POLICY);
    // Headers at once, then a trickle of body that never completes in time.
    let (base, _) = raw_server(|mut stream, _| async move {
        let head = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n";
        if stream.write_all(head.as_bytes()).await.is_err() {
            return;
        }
        for _ in 0..20 {
            if stream.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    let client = HttpClient::for_integration(&FLAKY, &base, Auth::None).unwrap();
    let started = Instant::now();
    let error = client.send(request("get", &POLICY)).await.unwrap_err();
    assert!(error.is_timeout(), "{error}");
    assert!(started.elapsed() < Duration::from_millis(1_000));
    assert!(matches!(client.circuit_state(), CircuitState::Open { .. }));
}

/// A server that answers after `hold`, measuring how many requests it holds at once.
async fn concurrency_server(hold: Duration) -> (String, Arc<AtomicUsize>) {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let peak = Arc::clone(&max);
    let (base, _) = raw_server(move |mut stream, _| {
        let in_flight = Arc::clone(&in_flight);
        let max = Arc::clone(&max);
        async move {
            let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max.fetch_max(now, Ordering::SeqCst);
            tokio::time::sleep(hold).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}";
            let _ = stream.write_all(answer.as_bytes()).await;
        }
    })
    .await;
    (base, peak)
}

async fn send_all(client: &HttpClient, policy: &'static PolicyDescriptor, n: usize) {
    let mut tasks = JoinSet::new();
    for _ in 0..n {
        let client = client.clone();
        tasks.spawn(async move { client.send(request("get", policy)).await });
    }
    while let Some(result) = tasks.join_next().await {
        result.unwrap().unwrap();
    }
}

#[tokio::test]
async fn the_bulkhead_never_lets_more_than_n_requests_be_in_flight() {
    static POLICY: PolicyDescriptor = PolicyDescriptor {
        concurrency: Some(3),
        ..PolicyDescriptor::DEFAULT
    };
    static FLAKY: IntegrationDescriptor = integration(POLICY);
    let (base, peak) = concurrency_server(Duration::from_millis(100)).await;
    let client = HttpClient::for_integration(&FLAKY, &base, Auth::None).unwrap();
    send_all(&client, &POLICY, 12).await;
    assert_eq!(peak.load(Ordering::SeqCst), 3);

    // The same load without the limit: the server does see more at once.
    static OPEN: PolicyDescriptor = PolicyDescriptor::DEFAULT;
    let (base, peak) = concurrency_server(Duration::from_millis(100)).await;
    let client = HttpClient::new(&base, Auth::None).unwrap();
    send_all(&client, &OPEN, 12).await;
    assert!(peak.load(Ordering::SeqCst) > 3);
}

/// A server that notes when each request arrives.
async fn arrivals_server() -> (MockServer, Arc<Mutex<Vec<Instant>>>) {
    let arrivals = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&arrivals);
    let server = MockServer::start().await;
    Mock::given(wiremock::matchers::any())
        .respond_with(move |_: &Request| {
            log.lock().unwrap().push(Instant::now());
            ResponseTemplate::new(200)
        })
        .mount(&server)
        .await;
    (server, arrivals)
}

fn sorted(arrivals: &Mutex<Vec<Instant>>) -> Vec<Instant> {
    let mut times = arrivals.lock().unwrap().clone();
    times.sort();
    times
}

#[tokio::test]
async fn the_rate_limit_holds_the_configured_rate() {
    static POLICY: PolicyDescriptor = PolicyDescriptor {
        timeout_ms: 5_000,
        rate_limit: Some(RateLimitPolicy {
            per_second: 20.0,
            burst: 1,
            scope: PolicyScope::Integration,
        }),
        ..PolicyDescriptor::DEFAULT
    };
    static FLAKY: IntegrationDescriptor = integration(POLICY);
    let (server, arrivals) = arrivals_server().await;
    let client = HttpClient::for_integration(&FLAKY, &server.uri(), Auth::None).unwrap();
    send_all(&client, &POLICY, 51).await;
    let times = sorted(&arrivals);
    assert_eq!(times.len(), 51);
    let first = times[0];
    let span = times[50] - first;
    let rate = 50.0 / span.as_secs_f64();
    assert!((18.0..=22.0).contains(&rate), "{rate} requests/s over {span:?}");
    // Per one-second window: 20 ± 10 %.
    for window in 0..2u32 {
        let from = first + Duration::from_secs(window.into());
        let to = from + Duration::from_secs(1);
        let n = times.iter().filter(|t| **t >= from && **t < to).count();
        assert!((18..=22).contains(&n), "window {window}: {n} requests");
    }
}

#[tokio::test]
async fn a_burst_goes_at_once_then_the_rate_applies() {
    static POLICY: PolicyDescriptor = PolicyDescriptor {
        rate_limit: Some(RateLimitPolicy {
            per_second: 10.0,
            burst: 5,
            scope: PolicyScope::Integration,
        }),
        ..PolicyDescriptor::DEFAULT
    };
    static FLAKY: IntegrationDescriptor = integration(POLICY);
    let (server, arrivals) = arrivals_server().await;
    let client = HttpClient::for_integration(&FLAKY, &server.uri(), Auth::None).unwrap();
    send_all(&client, &POLICY, 10).await;
    let times = sorted(&arrivals);
    assert!(
        times[4] - times[0] < Duration::from_millis(80),
        "{:?}",
        times[4] - times[0]
    );
    let last = times[9] - times[0];
    assert!(
        last >= Duration::from_millis(450) && last < Duration::from_millis(650),
        "{last:?}"
    );
}

#[tokio::test]
async fn waits_beyond_the_timeout_are_refused_and_endpoints_with_their_own_limit_are_apart() {
    static POLICY: PolicyDescriptor = PolicyDescriptor {
        timeout_ms: 300,
        rate_limit: Some(RateLimitPolicy {
            per_second: 2.0,
            burst: 1,
            scope: PolicyScope::Integration,
        }),
        ..PolicyDescriptor::DEFAULT
    };
    static FAST: PolicyDescriptor = PolicyDescriptor {
        rate_limit: Some(RateLimitPolicy {
            per_second: 100.0,
            burst: 1,
            scope: PolicyScope::Integration,
        }),
        ..POLICY
    };
    static FLAKY: IntegrationDescriptor = integration(POLICY);
    let (server, _) = arrivals_server().await;
    let client = HttpClient::for_integration(&FLAKY, &server.uri(), Auth::None).unwrap();
    client.send(request("slow", &POLICY)).await.unwrap();
    let started = Instant::now();
    let error = client.send(request("slow_too", &POLICY)).await.unwrap_err();
    assert!(error.is_rate_limited() && !error.is_circuit_open(), "{error}");
    let after = error.admit_after().unwrap();
    assert!(
        after > Duration::from_millis(300) && after <= Duration::from_millis(500),
        "{after:?}"
    );
    // Refused at once, not after waiting out the 300+ ms it was told.
    assert!(started.elapsed() < Duration::from_millis(300));
    assert_eq!(received(&server).await, 1);
    // An endpoint whose rate limit differs has its own limiter: its requests
    // do not wait for the one above.
    let fast_started = Instant::now();
    for _ in 0..3 {
        client.send(request("fast", &FAST)).await.unwrap();
    }
    assert!(fast_started.elapsed() < Duration::from_millis(300));
    assert_eq!(received(&server).await, 4);
}
