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

/// Descriptors kept for what is not a client connection, at most: the
/// listeners, connections to identity providers and Redis, the audit log,
/// standard streams, the runtime's own.
pub const RESERVED_DESCRIPTORS: u64 = 256;

/// What [`fit_descriptor_limit`] found and did to the soft `RLIMIT_NOFILE`
/// (the open-file limit) and `max_connections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorFit {
    /// The soft limit already holds every connection; nothing changed.
    Enough {
        /// The soft limit (`None`: unlimited).
        soft: Option<u64>,
    },
    /// The soft limit was raised, toward the hard limit, far enough.
    Raised {
        /// Before.
        from: u64,
        /// After.
        to: u64,
    },
    /// The soft limit could not be raised far enough (the hard limit, or the
    /// system, stopped it): `max_connections` was lowered to fit.
    Capped {
        /// The soft limit before.
        from: u64,
        /// The soft limit now (higher than `from` when it could be raised some).
        soft: u64,
        /// The hard limit (`None`: unlimited).
        hard: Option<u64>,
        /// `max_connections` as configured.
        wanted: usize,
        /// `max_connections` now.
        max_connections: usize,
    },
    /// The limit could not be read: left as it was.
    Unknown,
}

/// Makes the open-file limit hold `listeners` × `limits.max_connections`
/// connections and [`RESERVED_DESCRIPTORS`] more, as nginx does with
/// `worker_rlimit_nofile`: raises the soft limit toward the hard one and,
/// when that is not enough, lowers `limits.max_connections` to what the limit
/// leaves room for. Otherwise descriptors run out before the connection cap
/// applies (the usual soft limit is 1024, the default cap 4096 a listener):
/// `accept` fails, and so do the key fetches and Redis connections every
/// decision needs, while the cap that should have refused the excess cleanly
/// never fires. Says which happened with a WARN.
pub fn fit_descriptor_limit(limits: &mut ConnectionLimits, listeners: usize) -> DescriptorFit {
    let fit = fit_with(limits, listeners.max(1), &mut SystemLimit);
    match fit {
        DescriptorFit::Enough { .. } => {}
        DescriptorFit::Raised { from, to } => tracing::warn!(
            from,
            to,
            max_connections = limits.max_connections,
            "raised the soft open-file limit (RLIMIT_NOFILE) so that max_connections fits; set it in the service \
             manager (LimitNOFILE, ulimit -n) to silence this"
        ),
        DescriptorFit::Capped { from, soft, hard, wanted, max_connections } => tracing::warn!(
            from,
            soft,
            hard = %hard.map_or_else(|| "unlimited".to_string(), |h| h.to_string()),
            wanted,
            max_connections,
            "the open-file limit (RLIMIT_NOFILE) cannot hold max_connections and what else tokengate keeps open: \
             max_connections lowered; raise the hard limit (LimitNOFILE, ulimit -Hn) or lower max_connections"
        ),
        DescriptorFit::Unknown => {
            tracing::warn!("cannot read the open-file limit (RLIMIT_NOFILE); max_connections is not checked against it")
        }
    }
    fit
}

/// The process's `RLIMIT_NOFILE`, or a stand-in for tests.
trait NofileLimit {
    /// `(soft, hard)`, `None` meaning unlimited; `None` when it cannot be read.
    fn get(&mut self) -> Option<(Option<u64>, Option<u64>)>;
    /// Sets the soft limit, keeping the hard one.
    fn set_soft(&mut self, soft: u64, hard: Option<u64>) -> io::Result<()>;
}

struct SystemLimit;

#[cfg(unix)]
impl NofileLimit for SystemLimit {
    fn get(&mut self) -> Option<(Option<u64>, Option<u64>)> {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        Some((limit.current, limit.maximum))
    }

    fn set_soft(&mut self, soft: u64, hard: Option<u64>) -> io::Result<()> {
        let limit = rustix::process::Rlimit { current: Some(soft), maximum: hard };
        rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).map_err(io::Error::from)
    }
}

#[cfg(not(unix))]
impl NofileLimit for SystemLimit {
    fn get(&mut self) -> Option<(Option<u64>, Option<u64>)> {
        None
    }

    fn set_soft(&mut self, _soft: u64, _hard: Option<u64>) -> io::Result<()> {
        Err(io::Error::from(io::ErrorKind::Unsupported))
    }
}

fn fit_with(limits: &mut ConnectionLimits, listeners: usize, system: &mut impl NofileLimit) -> DescriptorFit {
    let Some((soft, hard)) = system.get() else { return DescriptorFit::Unknown };
    let per_listener = u64::try_from(limits.max_connections).unwrap_or(u64::MAX);
    let needed = per_listener.saturating_mul(listeners as u64).saturating_add(RESERVED_DESCRIPTORS);
    let Some(from) = soft.filter(|s| *s < needed) else { return DescriptorFit::Enough { soft } };
    let target = hard.map_or(needed, |h| h.min(needed));
    let mut now = from;
    if target > from {
        match system.set_soft(target, hard) {
            Ok(()) => now = target,
            // macOS refuses more than OPEN_MAX whatever the hard limit says: try the usual ceiling.
            Err(e) => {
                tracing::debug!("setrlimit(RLIMIT_NOFILE, {target}) failed: {e}");
                let ceiling = target.min(10_240);
                if ceiling > from && system.set_soft(ceiling, hard).is_ok() {
                    now = ceiling;
                }
            }
        }
    }
    if now >= needed {
        return DescriptorFit::Raised { from, to: now };
    }
    // A quarter of a small limit is enough headroom; more than RESERVED_DESCRIPTORS is never needed.
    let room = now.saturating_sub((now / 4).min(RESERVED_DESCRIPTORS)) / listeners as u64;
    let wanted = limits.max_connections;
    limits.max_connections = usize::try_from(room).unwrap_or(usize::MAX).clamp(1, wanted.max(1));
    DescriptorFit::Capped { from, soft: now, hard, wanted, max_connections: limits.max_connections }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit the test sets, recording what was asked of it.
    struct Stand {
        soft: Option<u64>,
        hard: Option<u64>,
        /// The most `set_soft` accepts (the kernel's `nr_open`, macOS's `OPEN_MAX`).
        ceiling: u64,
        asked: Vec<u64>,
    }

    impl NofileLimit for Stand {
        fn get(&mut self) -> Option<(Option<u64>, Option<u64>)> {
            Some((self.soft, self.hard))
        }
        fn set_soft(&mut self, soft: u64, _hard: Option<u64>) -> io::Result<()> {
            self.asked.push(soft);
            if soft > self.ceiling || self.hard.is_some_and(|h| soft > h) {
                return Err(io::Error::from(io::ErrorKind::InvalidInput));
            }
            self.soft = Some(soft);
            Ok(())
        }
    }

    fn fit(
        soft: Option<u64>,
        hard: Option<u64>,
        ceiling: u64,
        max: usize,
        listeners: usize,
    ) -> (DescriptorFit, usize, Stand) {
        let mut limits = ConnectionLimits { max_connections: max, ..ConnectionLimits::default() };
        let mut stand = Stand { soft, hard, ceiling, asked: Vec::new() };
        let outcome = fit_with(&mut limits, listeners, &mut stand);
        (outcome, limits.max_connections, stand)
    }

    #[test]
    fn the_usual_soft_limit_is_raised_toward_the_hard_one() {
        let (outcome, max, stand) = fit(Some(1024), Some(524_288), u64::MAX, 4096, 1);
        assert_eq!(outcome, DescriptorFit::Raised { from: 1024, to: 4096 + 256 });
        assert_eq!((max, stand.soft), (4096, Some(4352)), "only as far as needed");
        let (outcome, max, _) = fit(Some(1024), Some(524_288), u64::MAX, 4096, 2);
        assert_eq!((outcome, max), (DescriptorFit::Raised { from: 1024, to: 2 * 4096 + 256 }, 4096));
        let (outcome, _, _) = fit(Some(1024), None, u64::MAX, 4096, 1);
        assert_eq!(outcome, DescriptorFit::Raised { from: 1024, to: 4352 }, "unlimited hard limit");
    }

    #[test]
    fn a_low_hard_limit_caps_max_connections_with_headroom() {
        let (outcome, max, stand) = fit(Some(1024), Some(1024), u64::MAX, 4096, 1);
        assert_eq!(
            outcome,
            DescriptorFit::Capped { from: 1024, soft: 1024, hard: Some(1024), wanted: 4096, max_connections: 768 }
        );
        assert_eq!((max, stand.asked.len()), (768, 0), "nothing to raise");
        let (outcome, max, stand) = fit(Some(256), Some(2048), u64::MAX, 4096, 2);
        assert_eq!(stand.soft, Some(2048), "raised as far as the hard limit allows");
        assert_eq!(max, (2048 - 256) / 2);
        assert!(matches!(outcome, DescriptorFit::Capped { from: 256, soft: 2048, .. }), "{outcome:?}");
        let (_, max, _) = fit(Some(256), Some(256), u64::MAX, 4096, 1);
        assert_eq!(max, 192, "a quarter of a small limit is kept");
        let (_, max, _) = fit(Some(8), Some(8), u64::MAX, 4096, 2);
        assert_eq!(max, 3);
        let (_, max, _) = fit(Some(0), Some(0), u64::MAX, 4096, 1);
        assert_eq!(max, 1, "never 0: the listener would refuse everything");
    }

    #[test]
    fn a_system_that_refuses_the_hard_limit_gets_the_usual_ceiling() {
        // macOS: the hard limit is unlimited, setrlimit refuses more than OPEN_MAX (10240).
        let (outcome, max, stand) = fit(Some(256), None, 10_240, 16_384, 1);
        assert_eq!(stand.asked, [16_384 + 256, 10_240]);
        assert_eq!(max, 10_240 - 256);
        assert!(matches!(outcome, DescriptorFit::Capped { soft: 10_240, .. }), "{outcome:?}");
    }

    #[test]
    fn enough_or_unlimited_changes_nothing() {
        let (outcome, max, stand) = fit(Some(65_536), Some(65_536), u64::MAX, 4096, 2);
        assert_eq!((outcome, max, stand.asked.len()), (DescriptorFit::Enough { soft: Some(65_536) }, 4096, 0));
        let (outcome, max, _) = fit(None, None, u64::MAX, 4096, 1);
        assert_eq!((outcome, max), (DescriptorFit::Enough { soft: None }, 4096));
        let (outcome, max, _) = fit(Some(1024), Some(1024), u64::MAX, 100, 1);
        assert_eq!((outcome, max), (DescriptorFit::Enough { soft: Some(1024) }, 100));
    }
}
