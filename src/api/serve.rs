//! The API's HTTP server: hyper's HTTP/1 under the limits `axum::serve` does not set.
//!
//! ```text
//!  TcpListener ──accept──► connection cap (a semaphore; when full, the connection idle the
//!                              │          longest is closed to make room; if every one is busy
//!                              │          with a request: closed at once, counted)
//!                              └──► one task per connection: [TLS handshake, bounded by the
//!                                   header timeout, when `api.tls` is set] ──► hyper http1
//!                                   (header timeout, header size) ──► the router, each request
//!                                   under a deadline ──► lingering close
//! ```
//!
//! What each limit stops: a client that opens connections and sends nothing, or a header one byte
//! at a time, is cut after `header_timeout` (the timer also runs while a kept-alive connection
//! waits for its next request, so idle connections go too); a body sent slowly, or a handler that
//! waits too long, is cut after `request_timeout` with a 503; and however many connections are
//! opened, at most `max_connections` hold a task and a file descriptor, so the process's
//! descriptors are never exhausted. A full house does not keep new clients out: a new connection
//! takes the place of the one idle the longest (no request in hand: before its first, between two
//! kept alive, or a head still trickling in), as web servers reuse idle keep-alive slots under
//! pressure. A flood of idle connections then only ever holds slots until the next comer, and a
//! real request, sent as soon as its connection opens, is answered (`benches/api_load.rs`: health
//! answered throughout 20,000 idle connections). Only when every slot is busy with a request is
//! a new connection closed at once.
//!
//! A lingering close, as web servers have long done: when a connection ends with a request body
//! unread (a 413 for a body over `max_body`, a refusal before the body), closing at once would
//! make the kernel answer the client's remaining bytes with a reset, which can destroy the
//! response before the client reads it. So the write side is shut first and what the client
//! still sends is read and dropped, for a moment and a bounded number of bytes.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use super::ApiError;
use super::tls::{Acceptor, PeerCertificate};

/// The server's limits (`api:` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; past it, a new one closes the one idle the longest, or is
    /// closed at once when all are busy.
    pub max_connections: usize,
    /// A request's headers must arrive within this, and an idle connection's next request.
    pub header_timeout: Duration,
    /// A request, its body read and its answer made, must be done within this.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Largest request head (request line and headers) read, in bytes: tokens and JSON types are
/// short, and a larger head is a client to turn away, not to buffer.
const MAX_HEADER_BYTES: usize = 16 * 1024;

/// How long the server waits for open connections to finish their requests when it stops.
const DRAIN: Duration = Duration::from_secs(5);

/// How long a new connection waits for the slot of the idle one it evicted (whose task ends at
/// once): past it, it is refused.
const EVICTION_WAIT: Duration = Duration::from_millis(250);

/// A lingering close reads and drops at most this much, for at most this long.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER: Duration = Duration::from_secs(1);

/// The router as hyper's service, with boxed (so movable) futures: the connection can then be
/// driven without its shutdown, and its socket taken back for the lingering close. It tells the
/// idle set when its connection has a request in hand and when it is idle again.
struct Service {
    router: TowerToHyperService<Router>,
    id: u64,
    idle: Arc<IdleSet>,
    /// The client's certificate (TLS with `client_ca`), handed to each request.
    peer: Option<Arc<PeerCertificate>>,
}

type Answer = Pin<
    Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
>;

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Answer {
        self.idle.busy(self.id);
        if let Some(p) = &self.peer {
            req.extensions_mut().insert(p.clone());
        }
        let (idle, id) = (self.idle.clone(), self.id);
        let answer = self.router.call(req);
        Box::pin(async move {
            let r = answer.await;
            idle.idle(id);
            r
        })
    }
}

/// The connections without a request in hand (before their first, between two, or in the middle
/// of a head still arriving), oldest idle first, each with what closes it. When every slot is
/// taken, a new connection closes the one idle the longest rather than being turned away: idle
/// connections (a flood of them, or clients keeping theirs alive) can then never keep a real
/// request out, while a connection busy with a request is never cut for another.
#[derive(Debug, Default)]
struct IdleSet {
    inner: std::sync::Mutex<IdleInner>,
}

#[derive(Debug, Default)]
struct IdleInner {
    /// Every open connection: what closes it, and since when it is idle (`None`: busy).
    conns: crate::traffic::FastMap<u64, (CancellationToken, Option<Instant>)>,
    /// The idle ones by the time they became idle.
    order: std::collections::BTreeSet<(Instant, u64)>,
}

impl IdleSet {
    fn lock(&self) -> std::sync::MutexGuard<'_, IdleInner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection, idle from now.
    fn open(&self, id: u64, close: CancellationToken) {
        let now = Instant::now();
        let mut g = self.lock();
        g.conns.insert(id, (close, Some(now)));
        g.order.insert((now, id));
    }

    fn busy(&self, id: u64) {
        let mut g = self.lock();
        let since = g.conns.get_mut(&id).and_then(|c| c.1.take());
        if let Some(t) = since {
            g.order.remove(&(t, id));
        }
    }

    fn idle(&self, id: u64) {
        let now = Instant::now();
        let mut g = self.lock();
        let Some(c) = g.conns.get_mut(&id) else {
            return;
        };
        if let Some(old) = c.1.replace(now) {
            g.order.remove(&(old, id));
        }
        g.order.insert((now, id));
    }

    fn closed(&self, id: u64) {
        let mut g = self.lock();
        if let Some((_, Some(t))) = g.conns.remove(&id) {
            g.order.remove(&(t, id));
        }
    }

    /// Closes the connection idle the longest; `false` if every connection is busy.
    fn evict_oldest(&self) -> bool {
        let mut g = self.lock();
        let Some((_, id)) = g.order.pop_first() else {
            return false;
        };
        if let Some(c) = g.conns.get_mut(&id) {
            c.1 = None;
            c.0.cancel();
        }
        true
    }
}

/// The server's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    pub connections: AtomicU64,
    pub connections_open: AtomicU64,
    /// Closed at once: `max_connections` were open, every one of them busy with a request.
    pub connections_refused: AtomicU64,
    /// Closed to make room for a new connection: the one idle the longest, when
    /// `max_connections` were open.
    pub connections_evicted: AtomicU64,
    /// Ended by an error: a header timeout, a malformed request, a reset.
    pub connection_errors: AtomicU64,
    /// TLS handshakes that failed or timed out (no certificate, an unknown CA, plain HTTP).
    pub tls_failures: AtomicU64,
}

/// Serves `app` on `listener`, over TLS when `tls` is given, until `stop` is cancelled, then lets
/// open requests finish (for a few seconds at most).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    metrics: Arc<ServerMetrics>,
    tls: Option<Arc<Acceptor>>,
    stop: CancellationToken,
) {
    let app = app.layer(axum::middleware::from_fn(move |req, next| {
        deadline(req, next, limits.request_timeout)
    }));
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let idle = Arc::new(IdleSet::default());
    let mut next_id = 0u64;
    let tracker = TaskTracker::new();
    let mut refused_logged = 0u64;
    loop {
        let (stream, peer) = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // Out of descriptors or memory for a moment: wait rather than spin.
                    warn!("API accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        metrics.connections.fetch_add(1, Ordering::Relaxed);
        let permit = match permits.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            // Full: the connection idle the longest makes room (its task ends at once).
            Err(_) if idle.evict_oldest() => {
                metrics.connections_evicted.fetch_add(1, Ordering::Relaxed);
                tokio::time::timeout(EVICTION_WAIT, permits.clone().acquire_owned())
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
            Err(_) => None,
        };
        let Some(permit) = permit else {
            let n = metrics.connections_refused.fetch_add(1, Ordering::Relaxed) + 1;
            // Said once, then at each power of two: a flood of connections is not a flood of logs.
            if n.is_power_of_two() && n > refused_logged {
                refused_logged = n;
                warn!(
                    %peer,
                    refused = n,
                    max = limits.max_connections,
                    "API connection refused: too many open, all busy (api.max_connections)"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let (id, evicted) = (next_id, CancellationToken::new());
        idle.open(id, evicted.clone());
        let service = Service {
            router: TowerToHyperService::new(app.clone()),
            id,
            idle: idle.clone(),
            peer: None,
        };
        let (metrics, stop, idle) = (metrics.clone(), stop.clone(), idle.clone());
        let acceptor = tls.as_ref().map(|t| t.current());
        tracker.spawn(async move {
            let _permit = permit;
            metrics.connections_open.fetch_add(1, Ordering::Relaxed);
            let ends = Ends {
                stop: &stop,
                evicted: &evicted,
            };
            match acceptor {
                None => connection(stream, service, limits, &metrics, ends, peer).await,
                // Boxed: the handshake's and the TLS session's state would otherwise be part of
                // every connection's task, plain ones included (thousands of probes keep theirs
                // open).
                Some(acceptor) => {
                    Box::pin(async {
                        // The handshake is bounded like a request's headers: a client that opens a
                        // connection and says nothing is cut as soon (or evicted sooner).
                        let handshake =
                            tokio::time::timeout(limits.header_timeout, acceptor.accept(stream));
                        let done = tokio::select! {
                            r = handshake => Some(r),
                            _ = evicted.cancelled() => None,
                        };
                        match done {
                            None => {}
                            Some(Ok(Ok(stream))) => {
                                let cert = stream
                                    .get_ref()
                                    .1
                                    .peer_certificates()
                                    .and_then(|c| c.first());
                                let service = Service {
                                    peer: cert
                                        .map(|c| Arc::new(PeerCertificate(c.clone().into_owned()))),
                                    ..service
                                };
                                connection(stream, service, limits, &metrics, ends, peer).await;
                            }
                            Some(Ok(Err(e))) => {
                                metrics.tls_failures.fetch_add(1, Ordering::Relaxed);
                                debug!(%peer, "API TLS handshake: {e}");
                            }
                            Some(Err(_)) => {
                                metrics.tls_failures.fetch_add(1, Ordering::Relaxed);
                                debug!(%peer, "API TLS handshake: timed out");
                            }
                        }
                    })
                    .await
                }
            }
            idle.closed(id);
            metrics.connections_open.fetch_sub(1, Ordering::Relaxed);
        });
    }
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        warn!(
            "API: open requests not done {} s after the stop",
            DRAIN.as_secs()
        );
    }
}

/// One connection, plain or TLS: its requests until it ends or the server stops, then a lingering
/// close.
/// What ends a connection from outside: the server stopping (its request may finish), or its
/// eviction to make room (it is idle: closed at once).
#[derive(Clone, Copy)]
struct Ends<'a> {
    stop: &'a CancellationToken,
    evicted: &'a CancellationToken,
}

async fn connection<S>(
    stream: S,
    service: Service,
    limits: Limits,
    metrics: &ServerMetrics,
    ends: Ends<'_>,
    peer: std::net::SocketAddr,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_header_size(MAX_HEADER_BYTES)
        .keep_alive(true);
    let mut conn = builder.serve_connection(TokioIo::new(stream), service);
    let r = tokio::select! {
        r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => r,
        _ = ends.stop.cancelled() => {
            Pin::new(&mut conn).graceful_shutdown();
            std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)).await
        }
        // Idle, and its slot wanted by a new connection: closed now, nothing to linger for.
        _ = ends.evicted.cancelled() => return,
    };
    if let Err(e) = &r {
        metrics.connection_errors.fetch_add(1, Ordering::Relaxed);
        debug!(%peer, "API connection: {e}");
    }
    linger(conn.into_parts().io.into_inner()).await;
}

/// Shuts the write side, then reads and drops what the client still sends (see the module's
/// notes), and closes.
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    if stream.shutdown().await.is_err() {
        return;
    }
    // On the heap, now: a buffer in the future itself would weigh on every open connection.
    let mut buf = vec![0u8; 4096];
    let mut read = 0;
    let _ = tokio::time::timeout(LINGER, async {
        while read < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => read += n,
            }
        }
    })
    .await;
}

/// Every request within `limit`, its body read included: past it, 503 and the connection goes
/// on (a slow body or a stuck handler never holds a connection for ever).
async fn deadline(
    req: axum::extract::Request,
    next: axum::middleware::Next,
    limit: Duration,
) -> axum::response::Response {
    use axum::http::{HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    let h = req.headers();
    let has_body = h.contains_key(header::TRANSFER_ENCODING)
        || h.get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    let mut r = match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took longer than {} s (api.request_timeout)",
                limit.as_secs()
            ),
        )
        .into_response(),
    };
    // An error to a request with a body may leave the body unread (refused before it was read,
    // too large, too slow): hyper then cannot read the next request on this connection and closes
    // it, so the client is told, and does not send its next request into a closing connection.
    let status = r.status();
    if has_body && (status.is_client_error() || status.is_server_error()) {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}
