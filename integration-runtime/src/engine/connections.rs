//! The connection limits of [`Runtime::serve`](super::Runtime::serve): how
//! long a client may take to send a request head, how long a connection may
//! sit without moving a byte, and how many connections are served at once.
//!
//! axum's `serve` sets none of these, so the runtime drives hyper's HTTP/1
//! connections itself: hyper's header-read timeout (with tokio's timer), an
//! I/O wrapper for the idle timeout, and one semaphore permit per accepted
//! connection for the cap. The accept loop waits for a permit *before*
//! accepting, so over the cap connections queue in the kernel's listen
//! backlog rather than being accepted and dropped.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};

/// How long the accept loop pauses after a failed accept (say, out of file
/// descriptors), so it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Connection limits of [`Runtime::serve_with`](super::Runtime::serve_with)
/// (and [`Runtime::serve`](super::Runtime::serve), which uses the
/// defaults), so that slow or idle clients cannot hold the server.
///
/// | limit | default | what it bounds |
/// | --- | --- | --- |
/// | [`header_read_timeout`](Self::header_read_timeout) | 10 s | receiving one request head, from when the connection is ready for it: accepted, or its previous answer sent (so it also closes a kept-alive connection left idle between requests) |
/// | [`idle_timeout`](Self::idle_timeout) | 60 s | a connection on which no byte moves either way: a body that stops arriving, a client that stops reading its answer |
/// | [`max_connections`](Self::max_connections) | 1 024 | connections served at once; past it the server accepts no more until one closes, so new clients wait in the listen backlog (they are not refused) |
///
/// Request bodies are bounded per webhook (`max_body_bytes` of the spec).
///
/// ```
/// # use std::time::Duration;
/// use integration_runtime::ServeOptions;
///
/// let options = ServeOptions::new()
///     .header_read_timeout(Duration::from_secs(5))
///     .max_connections(256);
/// assert_ne!(options, ServeOptions::default());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(docsrs, doc(cfg(feature = "server")))]
pub struct ServeOptions {
    header_read_timeout: Duration,
    idle_timeout: Duration,
    max_connections: usize,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
        }
    }
}

impl ServeOptions {
    /// The defaults: 10 s to send a request head, 60 s without a byte,
    /// 1 024 connections.
    pub fn new() -> Self {
        Self::default()
    }

    /// How long a client may take to send a whole request head (default
    /// 10 s); past it the connection is closed. Counted from when the
    /// connection is ready for a request, so a kept-alive connection idle
    /// between requests is closed after it too.
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// How long a connection may go without a byte read or written (default
    /// 60 s); past it the connection is closed, even in the middle of a
    /// request.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How many connections are served at once (default 1 024; at least
    /// 1). When all are taken, new connections wait in the listen backlog
    /// until one closes; the timeouts above make sure one does.
    #[must_use]
    pub fn max_connections(mut self, max: usize) -> Self {
        self.max_connections = max.max(1);
        self
    }
}

/// Serves `router` on `listener` within `options` until `stop` resolves;
/// then accepts no more, asks every connection to close once its request
/// in flight is answered, and waits up to `grace` for them (the rest are
/// dropped).
pub(super) async fn serve(
    listener: TcpListener,
    router: Router,
    options: ServeOptions,
    stop: impl Future<Output = ()>,
    grace: Duration,
) {
    let slots = Arc::new(Semaphore::new(options.max_connections));
    let (closing, closing_seen) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            () = &mut stop => break,
            accepted = accept(&listener, &slots) => accepted,
        };
        // Finished connections leave the set here, so it stays as small as the cap.
        while connections.try_join_next().is_some() {}
        match accepted {
            Ok((stream, slot)) => {
                connections.spawn(connection(stream, router.clone(), options, closing_seen.clone(), slot));
            }
            Err(error) => {
                tracing::warn!(%error, "accepting a connection failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
            }
        }
    }
    drop(listener);
    closing.send_replace(true);
    let drained = async { while connections.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            open = connections.len(),
            "connections still open after the shutdown grace are dropped"
        );
    }
}

/// The next connection, once a slot is free.
async fn accept(listener: &TcpListener, slots: &Arc<Semaphore>) -> io::Result<(TcpStream, OwnedSemaphorePermit)> {
    // The semaphore is never closed, so acquiring only waits.
    let slot = Arc::clone(slots)
        .acquire_owned()
        .await
        .map_err(|_| io::Error::other("the connection slots were closed"))?;
    let (stream, _) = listener.accept().await?;
    Ok((stream, slot))
}

/// Serves one connection, holding its `slot` until it closes.
async fn connection(
    stream: TcpStream,
    router: Router,
    options: ServeOptions,
    mut closing: watch::Receiver<bool>,
    _slot: OwnedSemaphorePermit,
) {
    // Small answers go out at once rather than waiting for more to send.
    let _ = stream.set_nodelay(true);
    let io = TokioIo::new(IdleIo::new(stream, options.idle_timeout));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(options.header_read_timeout);
    let served = builder.serve_connection(io, TowerToHyperService::new(router));
    tokio::pin!(served);
    let closing = async {
        // The guard this returns must not live across the await below.
        let _ = closing.wait_for(|closing| *closing).await;
    };
    let result = tokio::select! {
        result = &mut served => result,
        () = closing => {
            served.as_mut().graceful_shutdown();
            served.await
        }
    };
    if let Err(error) = result {
        // Timeouts and clients hanging up end here: routine, not failures.
        tracing::debug!(%error, "connection closed");
    }
}

/// A stream that fails with `TimedOut` once no byte was read or written for
/// `timeout` while the server waits on it.
struct IdleIo {
    stream: TcpStream,
    timeout: Duration,
    last_active: Instant,
    /// Armed at `last_active + timeout` at most; moved on when it fires
    /// early, rather than reset on every read and write.
    timer: Pin<Box<Sleep>>,
}

impl IdleIo {
    fn new(stream: TcpStream, timeout: Duration) -> Self {
        let now = Instant::now();
        IdleIo {
            stream,
            timeout,
            last_active: now,
            timer: Box::pin(tokio::time::sleep_until(now + timeout)),
        }
    }

    /// Called when the stream is not ready: `Pending` while within the
    /// timeout (the timer will wake the task), the error past it.
    fn poll_idle<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            let deadline = self.last_active + self.timeout;
            if deadline <= Instant::now() {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no byte moved within the idle timeout",
                )));
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if buf.filled().len() > before {
                    this.last_active = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx),
        }
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(result) => {
                if matches!(result, Ok(written) if written > 0) {
                    this.last_active = Instant::now();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_idle(cx),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}
