//! Accepting connections for `tokengate serve` with the limits a server on
//! the path of every request needs: a deadline for a request's headers, an
//! idle timeout, and a cap on open connections.
//!
//! Without them a few hundred half-sent requests (slowloris) hold every file
//! descriptor and real decisions time out. `axum::serve` sets none of these,
//! so connections are driven here with hyper directly.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tower::ServiceExt;

/// Default [`ConnectionLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default [`ConnectionLimits::idle_timeout`]: longer than nginx's upstream `keepalive_timeout`
/// (60s), so the proxy retires a pooled connection before tokengate closes it under it.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(75);
/// Default [`ConnectionLimits::max_connections`].
pub const DEFAULT_MAX_CONNECTIONS: usize = 4096;

/// The limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// A request's headers must arrive within this, counted from its first
    /// byte (from the accept, for a new connection; over HTTP/2, frames that
    /// open no stream count as such bytes).
    pub header_read_timeout: Duration,
    /// A connection with no request started, finished or in progress for this
    /// long is closed, whatever else moves on it (HTTP/2 PINGs keep nothing open).
    pub idle_timeout: Duration,
    /// Open connections at most; one more is closed as soon as it is accepted.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// Serves `app` on `listener` under `limits` until `shutdown` completes, then
/// lets open connections finish for at most `drain`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) -> io::Result<()> {
    let open = Arc::new(tokio::sync::Semaphore::new(limits.max_connections.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper's own header timer also runs while a kept-alive connection waits
    // for its next request, which would close proxies' pooled connections
    // after 10s; the watchdog below times only bytes that are waiting.
    builder.http1().timer(TokioTimer::new()).header_read_timeout(None);
    builder.http2().timer(TokioTimer::new());
    let builder = Arc::new(builder);
    let mut refused_since_log = 0u64;
    let mut last_refusal_log: Option<Instant> = None;
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up: keep serving the others.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            drop(stream);
            refused_since_log += 1;
            if last_refusal_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    max_connections = limits.max_connections,
                    refused = refused_since_log,
                    "connection limit reached; closing new connections"
                );
                last_refusal_log = Some(Instant::now());
                refused_since_log = 0;
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::new());
        let service = {
            let (app, activity) = (app.clone(), activity.clone());
            hyper::service::service_fn(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                let request = InFlight::start(activity.clone());
                let response = app.clone().oneshot(req);
                async move {
                    let response = response.await;
                    drop(request);
                    response
                }
            })
        };
        let io = Tracked { stream, activity: activity.clone() };
        let connection = builder.serve_connection(TokioIo::new(io), service);
        let connection = graceful.watch(connection.into_owned());
        let (header_read, idle) = (limits.header_read_timeout, limits.idle_timeout);
        tokio::spawn(async move {
            let _permit = permit;
            tokio::select! {
                result = connection => if let Err(e) = result {
                    tracing::debug!("connection from {peer} ended: {e}");
                },
                _ = activity.expired(header_read, idle) => tracing::debug!("closing idle or stalled connection from {peer}"),
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(drain) => {
            tracing::warn!("requests still in flight after {}s; stopping anyway", drain.as_secs());
        }
    }
    Ok(())
}

/// What a connection's watchdog needs: when a request last started or
/// finished, how many are in progress, and since when bytes have been
/// waiting to become a request.
struct Activity {
    born: Instant,
    last_ms: AtomicU64,
    /// Milliseconds since `born` when unconsumed request bytes first arrived; `NONE` when none wait.
    waiting_since_ms: AtomicU64,
    in_flight: AtomicUsize,
}

const NONE: u64 = u64::MAX;

impl Activity {
    fn new() -> Self {
        Activity {
            born: Instant::now(),
            last_ms: AtomicU64::new(0),
            // A new connection owes its first request from the accept on.
            waiting_since_ms: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        self.born.elapsed().as_millis() as u64
    }

    fn bytes_arrived(&self) {
        let _ = self.waiting_since_ms.compare_exchange(NONE, self.now_ms(), Ordering::Relaxed, Ordering::Relaxed);
    }

    /// Completes when the connection should be closed: bytes have waited
    /// `header_read` without becoming a request (half-sent headers, HTTP/2
    /// frames that open no stream, a silent new connection), or nothing
    /// started or finished for `idle`; never while a request is answered.
    async fn expired(&self, header_read: Duration, idle: Duration) {
        loop {
            let now = self.now_ms();
            let mut wait = idle.as_millis() as u64;
            if self.in_flight.load(Ordering::Relaxed) == 0 {
                let waiting = self.waiting_since_ms.load(Ordering::Relaxed);
                if waiting != NONE {
                    let left = (header_read.as_millis() as u64).saturating_sub(now.saturating_sub(waiting));
                    if left == 0 {
                        return;
                    }
                    wait = wait.min(left);
                }
                let quiet = now.saturating_sub(self.last_ms.load(Ordering::Relaxed));
                let left = (idle.as_millis() as u64).saturating_sub(quiet);
                if left == 0 {
                    return;
                }
                wait = wait.min(left);
            }
            tokio::time::sleep(Duration::from_millis(wait.max(10))).await;
        }
    }
}

/// One request being answered; counted until dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> Self {
        activity.last_ms.store(activity.now_ms(), Ordering::Relaxed);
        activity.waiting_since_ms.store(NONE, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let now = self.0.now_ms();
        self.0.last_ms.store(now, Ordering::Relaxed);
        // Bytes that came during the request (a pipelined next one) wait from now on.
        let _ =
            self.0.waiting_since_ms.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |w| (w != NONE).then_some(now));
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A TCP stream that tells its [`Activity`] when request bytes arrive.
struct Tracked {
    stream: tokio::net::TcpStream,
    activity: Arc<Activity>,
}

impl tokio::io::AsyncRead for Tracked {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = std::pin::Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        poll
    }
}

impl tokio::io::AsyncWrite for Tracked {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        data: &[u8],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> std::task::Poll<io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
