//! A hostile HTTP/1.1 server on 127.0.0.1, on a raw `TcpListener`: it
//! records every request it receives (request line, headers, body, time) and
//! answers each one as its script says, including answers no well-behaved
//! framework would send (silence, a reset, a body shorter than announced).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::Result;

/// Largest request head or body the server reads: the harness's own requests are tiny.
const MAX_REQUEST: usize = 1 << 20;

/// How long one connection may live: every fault ends well before.
const CONNECTION_LIMIT: Duration = Duration::from_secs(60);

/// The filler of large bodies, written in pieces of this size.
const PIECE: usize = 64 * 1024;

/// One request as it arrived.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// When it was read in full.
    pub(crate) at: Instant,
    /// The request line and headers, as sent.
    pub(crate) head: String,
    /// The body, lossily as text.
    pub(crate) body: String,
}

/// How one request is answered.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// A complete answer with `Content-Length`.
    Full {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    },
    /// Nothing, ever: the connection stays open until the client gives up.
    Silence,
    /// A complete answer of `body`, one byte per second.
    Trickle { body: Vec<u8> },
    /// Headers announcing `declared` bytes, `sent` bytes, then a TCP reset.
    Reset { declared: usize, sent: Vec<u8> },
    /// Headers announcing `declared` bytes, `sent` bytes, then an orderly close.
    Truncated { declared: usize, sent: Vec<u8> },
    /// A JSON object `{"id": id, "echoed": "aaa…"}` of exactly `bytes`
    /// bytes, streamed (never held in memory), with `Content-Length` or chunked.
    Huge { id: String, bytes: usize, chunked: bool },
}

impl Answer {
    /// A JSON answer.
    pub(crate) fn json(status: u16, body: &serde_json::Value) -> Answer {
        Answer::Full {
            status,
            headers: vec![("Content-Type".into(), "application/json".into())],
            body: body.to_string().into_bytes(),
        }
    }

    /// The same answer with one more header.
    pub(crate) fn with_header(self, name: &str, value: &str) -> Answer {
        match self {
            Answer::Full {
                status,
                mut headers,
                body,
            } => {
                headers.push((name.into(), value.into()));
                Answer::Full { status, headers, body }
            }
            other => other,
        }
    }
}

/// The answer to the request with this index (0: the first one received).
pub(crate) type Script = Arc<dyn Fn(usize) -> Answer + Send + Sync>;

/// A running hostile server; stops when dropped.
pub(crate) struct Hostile {
    pub(crate) url: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    /// Starts a server answering with `script`.
    pub(crate) async fn start(script: Script) -> Result<Hostile> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let received = Arc::new(Mutex::new(Vec::new()));
        let log = received.clone();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((stream, _)) = listener.accept().await {
                let (script, log) = (script.clone(), log.clone());
                connections.spawn(async move {
                    let _ = tokio::time::timeout(CONNECTION_LIMIT, serve(stream, script, log)).await;
                });
            }
        });
        Ok(Hostile { url, received, task })
    }

    /// Every request received so far.
    pub(crate) fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }
}

/// Answers one request, then closes: no keep-alive, so every attempt of the
/// client is a new connection and a fresh request to count.
async fn serve(mut stream: TcpStream, script: Script, log: Arc<Mutex<Vec<Received>>>) -> Result<()> {
    let Some((head, body)) = read_request(&mut stream).await? else {
        return Ok(());
    };
    let index = {
        let mut log = log.lock().unwrap_or_else(PoisonError::into_inner);
        log.push(Received {
            at: Instant::now(),
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        });
        log.len() - 1
    };
    match script(index) {
        Answer::Full { status, headers, body } => {
            let mut out = head_bytes(status, &headers, Some(body.len()));
            out.extend_from_slice(&body);
            stream.write_all(&out).await?;
            stream.shutdown().await?;
        }
        Answer::Silence => {
            // Read until the client hangs up: the server never says a word.
            let mut sink = [0u8; 1024];
            while stream.read(&mut sink).await? > 0 {}
        }
        Answer::Trickle { body } => {
            stream
                .write_all(&head_bytes(200, &json_type(), Some(body.len())))
                .await?;
            for byte in body {
                tokio::time::sleep(Duration::from_secs(1)).await;
                stream.write_all(&[byte]).await?;
            }
        }
        Answer::Reset { declared, sent } => {
            stream.write_all(&head_bytes(200, &json_type(), Some(declared))).await?;
            stream.write_all(&sent).await?;
            stream.flush().await?;
            // A zero linger makes the close send RST at once, without
            // blocking the thread (the reason tokio deprecates linger).
            #[allow(deprecated)]
            stream.set_linger(Some(Duration::ZERO))?;
            drop(stream);
        }
        Answer::Truncated { declared, sent } => {
            stream.write_all(&head_bytes(200, &json_type(), Some(declared))).await?;
            stream.write_all(&sent).await?;
            stream.shutdown().await?;
        }
        Answer::Huge { id, bytes, chunked } => write_huge(&mut stream, &id, bytes, chunked).await?,
    }
    Ok(())
}

fn json_type() -> Vec<(String, String)> {
    vec![("Content-Type".into(), "application/json".into())]
}

/// Status line and headers; `Connection: close` always.
fn head_bytes(status: u16, headers: &[(String, String)], length: Option<usize>) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status} {}\r\nConnection: close\r\n", reason(status));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    match length {
        Some(length) => head.push_str(&format!("Content-Length: {length}\r\n")),
        None => head.push_str("Transfer-Encoding: chunked\r\n"),
    }
    head.push_str("\r\n");
    head.into_bytes()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        307 => "Temporary Redirect",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

/// Streams `{"id":"<id>","echoed":"aaa…"}`, `bytes` long in all; stops
/// quietly when the client hangs up.
async fn write_huge(stream: &mut TcpStream, id: &str, bytes: usize, chunked: bool) -> Result<()> {
    let prefix = format!("{{\"id\":\"{id}\",\"echoed\":\"");
    let suffix = "\"}";
    let mut filler = bytes.saturating_sub(prefix.len() + suffix.len());
    let length = (!chunked).then_some(prefix.len() + filler + suffix.len());
    stream.write_all(&head_bytes(200, &json_type(), length)).await?;
    let piece = vec![b'a'; PIECE];
    write_part(stream, prefix.as_bytes(), chunked).await?;
    while filler > 0 {
        let n = filler.min(PIECE);
        if write_part(stream, &piece[..n], chunked).await.is_err() {
            return Ok(());
        }
        filler -= n;
    }
    write_part(stream, suffix.as_bytes(), chunked).await?;
    if chunked {
        stream.write_all(b"0\r\n\r\n").await?;
    }
    stream.shutdown().await?;
    Ok(())
}

async fn write_part(stream: &mut TcpStream, part: &[u8], chunked: bool) -> std::io::Result<()> {
    if chunked {
        stream.write_all(format!("{:x}\r\n", part.len()).as_bytes()).await?;
        stream.write_all(part).await?;
        stream.write_all(b"\r\n").await
    } else {
        stream.write_all(part).await
    }
}

/// Reads one request: the head up to the blank line, then `Content-Length`
/// bytes of body. `None` when the client closed without sending one.
async fn read_request(stream: &mut TcpStream) -> Result<Option<(String, Vec<u8>)>> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = loop {
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at;
        }
        if buffer.len() > MAX_REQUEST {
            return Err("request head too large".into());
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0usize)
        .min(MAX_REQUEST);
    let mut body = buffer[end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Some((head, body)))
}
