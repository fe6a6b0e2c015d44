//! `Runtime::serve_with` over real sockets: clients that trickle a request
//! head, stall a body or sit idle are closed in bounded time, a capped
//! server makes new connections wait for a free slot instead of refusing
//! them, `/health` keeps answering through it all, and shutdown ends the
//! server.

#![cfg(all(feature = "sqlite", feature = "server"))]

mod webhook_support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use integration_runtime::{EngineError, Integration, Runtime, Secret, ServeOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use webhook_support::{sqlite_store, TempDir};

integration_runtime::integration!("tests/specs/webhook_tts.toml");

/// Generous bound on anything the small limits below should end.
const BOUND: Duration = Duration::from_secs(30);

fn tts() -> Arc<dyn Integration> {
    Arc::new(
        hook_tts::HookTts::new(hook_tts::HookTtsConfig {
            base_url: "http://127.0.0.1:9".into(),
            token: Secret::new("t"),
            webhook_secret: Secret::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"),
        })
        .unwrap(),
    )
}

struct Served {
    _dir: TempDir,
    rt: Runtime,
    address: SocketAddr,
    server: JoinHandle<Result<(), EngineError>>,
}

/// A runtime served with `options` on a loopback port, answering `/health`.
async fn served(options: ServeOptions) -> Served {
    let dir = TempDir::new();
    let (sqlite, _) = sqlite_store(&dir).await;
    let rt = Runtime::builder()
        .store(sqlite)
        .integration_arc(tts())
        .build()
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = {
        let rt = rt.clone();
        tokio::spawn(async move { rt.serve_with(listener, options).await })
    };
    let served = Served {
        _dir: dir,
        rt,
        address,
        server,
    };
    assert_eq!(served.health().await, Ok(200), "the server came up");
    served
}

impl Served {
    /// `GET /health` on a fresh connection: its status, or why there was none
    /// within [`BOUND`].
    async fn health(&self) -> Result<u16, String> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(BOUND)
            .build()
            .unwrap();
        match http.get(format!("http://{}/health", self.address)).send().await {
            Ok(response) => Ok(response.status().as_u16()),
            Err(error) => Err(error.to_string()),
        }
    }

    /// Shuts the runtime down; `serve_with` must return soon after.
    async fn stop(self) {
        self.rt.shutdown(Duration::from_secs(2)).await;
        let ended = tokio::time::timeout(BOUND, self.server).await;
        assert!(
            matches!(ended, Ok(Ok(Ok(())))),
            "serve_with did not end after shutdown: {ended:?}"
        );
    }
}

/// Whether the server closed `stream` within `bound`: reads (and drops)
/// whatever it answers until end of stream or an error.
async fn closed_within(stream: &mut TcpStream, bound: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let read_to_end = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(bound, read_to_end).await.is_ok()
}

/// Opens a connection and sends a request head that never ends, one byte
/// every 200 ms, for at most [`BOUND`]; how long until the server closed it,
/// or `None` if it never did.
async fn trickle(address: SocketAddr) -> Option<Duration> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(address).await.ok()?;
    let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    let mut sent = 0;
    while started.elapsed() < BOUND {
        let byte = head.get(sent).copied().unwrap_or(b'a');
        if stream.write_all(&[byte]).await.is_err() {
            return Some(started.elapsed());
        }
        sent += 1;
        if closed_within(&mut stream, Duration::from_millis(200)).await {
            return Some(started.elapsed());
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_header_clients_are_closed_in_bounded_time_while_health_answers() {
    let served = served(
        ServeOptions::new()
            .header_read_timeout(Duration::from_secs(1))
            .max_connections(400),
    )
    .await;
    // A thousand, more than twice the cap: most of them also wait for a slot.
    let tricklers: Vec<_> = (0..1000).map(|_| tokio::spawn(trickle(served.address))).collect();
    tokio::time::sleep(Duration::from_millis(300)).await;

    for _ in 0..3 {
        assert_eq!(served.health().await, Ok(200), "health on a fresh connection");
    }
    let mut open = 0;
    let mut slowest = Duration::ZERO;
    for trickler in tricklers {
        match trickler.await.unwrap() {
            Some(took) => slowest = slowest.max(took),
            None => open += 1,
        }
    }
    assert_eq!(open, 0, "slow clients still connected after {BOUND:?}");
    println!("the last of 1000 slow clients was closed after {slowest:?}");
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_closed_after_the_idle_timeout() {
    // A long header timeout: only the idle timeout can end this connection.
    let served = served(
        ServeOptions::new()
            .idle_timeout(Duration::from_secs(1))
            .header_read_timeout(Duration::from_secs(60)),
    )
    .await;
    let mut stream = TcpStream::connect(served.address).await.unwrap();
    // A webhook delivery announcing 100 bytes of body and sending one.
    let head =
        "POST /webhooks/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    assert!(
        closed_within(&mut stream, BOUND).await,
        "a connection without a byte for {BOUND:?} is still open"
    );
    assert_eq!(served.health().await, Ok(200));
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_kept_alive_connection_is_closed() {
    // A long idle timeout: only the header timeout can end this connection.
    let served = served(
        ServeOptions::new()
            .header_read_timeout(Duration::from_secs(1))
            .idle_timeout(Duration::from_secs(60)),
    )
    .await;
    let mut stream = TcpStream::connect(served.address).await.unwrap();
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    stream.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200", "answered, connection kept alive");
    assert!(
        closed_within(&mut stream, BOUND).await,
        "an idle kept-alive connection is still open after {BOUND:?}"
    );
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_wait_for_a_free_slot() {
    let served = served(
        ServeOptions::new()
            .header_read_timeout(Duration::from_secs(30))
            .max_connections(2),
    )
    .await;
    let mut holders = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(served.address).await.unwrap();
        stream.write_all(b"GET /health HTTP/1.1\r\n").await.unwrap();
        holders.push(stream);
    }
    // Both slots are held by heads that will not end for 30 s: a third
    // connection is not served (it waits; it is not refused)...
    let waiting = {
        let address = served.address;
        tokio::spawn(async move {
            let mut stream = TcpStream::connect(address).await.unwrap();
            stream
                .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await.unwrap();
            answer
        })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!waiting.is_finished(), "a connection over the cap was served");
    // ...until a slot frees.
    drop(holders.pop());
    let answer = tokio::time::timeout(BOUND, waiting).await.unwrap().unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    drop(holders);
    served.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_stops_accepting_and_answers_the_request_in_flight() {
    let served = served(ServeOptions::new()).await;
    let mut stream = TcpStream::connect(served.address).await.unwrap();
    let head = "POST /webhooks/tts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{";
    stream.write_all(head.as_bytes()).await.unwrap();
    // Let the server read the head, so that the request is in flight.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let shutdown = {
        let rt = served.rt.clone();
        tokio::spawn(async move { rt.shutdown(Duration::from_secs(2)).await })
    };
    let started = Instant::now();
    while TcpStream::connect(served.address).await.is_ok() {
        assert!(started.elapsed() < BOUND, "still accepting after shutdown");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The delivery in flight is finished and answered (unsigned: 401).
    stream.write_all(b"}").await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(BOUND, stream.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(
        answer.starts_with(b"HTTP/1.1 401"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    shutdown.await.unwrap();
    served.stop().await;
}
