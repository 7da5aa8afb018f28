//! The API's HTTP server: hyper's HTTP/1 under the limits `axum::serve` does not set.
//!
//! ```text
//!  TcpListener ──accept──► connection cap (a semaphore; past it: closed at once, counted)
//!                              │
//!                              └──► one task per connection: [TLS handshake, bounded by the
//!                                   header timeout, when `api.tls` is set] ──► hyper http1 (header timeout,
//!                                   header size) ──► the router, each request under a deadline
//!                                   ──► lingering close
//! ```
//!
//! What each limit stops: a client that opens connections and sends nothing, or a header one byte
//! at a time, is cut after `header_timeout` (the timer also runs while a kept-alive connection
//! waits for its next request, so idle connections go too); a body sent slowly, or a handler that
//! waits too long, is cut after `request_timeout` with a 503; and however many connections are
//! opened, at most `max_connections` hold a task and a file descriptor: the rest are closed as
//! they come, so the process's descriptors are never exhausted and `/health` keeps answering.
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
use std::time::Duration;

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
use super::tls::Acceptor;

/// The server's limits (`api:` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are closed as they come.
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

/// A lingering close reads and drops at most this much, for at most this long.
const LINGER_BYTES: usize = 256 * 1024;
const LINGER: Duration = Duration::from_secs(1);

/// The router as hyper's service, with boxed (so movable) futures: the connection can then be
/// driven without its shutdown, and its socket taken back for the lingering close.
struct Service(TowerToHyperService<Router>);

type Answer = Pin<
    Box<dyn Future<Output = Result<axum::response::Response, std::convert::Infallible>> + Send>,
>;

impl hyper::service::Service<hyper::Request<Incoming>> for Service {
    type Response = axum::response::Response;
    type Error = std::convert::Infallible;
    type Future = Answer;

    fn call(&self, req: hyper::Request<Incoming>) -> Answer {
        Box::pin(self.0.call(req))
    }
}

/// The server's counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct ServerMetrics {
    pub connections: AtomicU64,
    pub connections_open: AtomicU64,
    /// Closed at once: `max_connections` were open.
    pub connections_refused: AtomicU64,
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
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            let n = metrics.connections_refused.fetch_add(1, Ordering::Relaxed) + 1;
            // Said once, then at each power of two: a flood of connections is not a flood of logs.
            if n.is_power_of_two() && n > refused_logged {
                refused_logged = n;
                warn!(
                    %peer,
                    refused = n,
                    max = limits.max_connections,
                    "API connection refused: too many open (api.max_connections)"
                );
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = Service(TowerToHyperService::new(app.clone()));
        let (metrics, stop) = (metrics.clone(), stop.clone());
        let acceptor = tls.as_ref().map(|t| t.current());
        tracker.spawn(async move {
            let _permit = permit;
            metrics.connections_open.fetch_add(1, Ordering::Relaxed);
            match acceptor {
                None => connection(stream, service, limits, &metrics, &stop, peer).await,
                Some(acceptor) => {
                    // The handshake is bounded like a request's headers: a client that opens a
                    // connection and says nothing is cut as soon.
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(stream)) => {
                            connection(stream, service, limits, &metrics, &stop, peer).await;
                        }
                        Ok(Err(e)) => {
                            metrics.tls_failures.fetch_add(1, Ordering::Relaxed);
                            debug!(%peer, "API TLS handshake: {e}");
                        }
                        Err(_) => {
                            metrics.tls_failures.fetch_add(1, Ordering::Relaxed);
                            debug!(%peer, "API TLS handshake: timed out");
                        }
                    }
                }
            }
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
async fn connection<S>(
    stream: S,
    service: Service,
    limits: Limits,
    metrics: &ServerMetrics,
    stop: &CancellationToken,
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
        _ = stop.cancelled() => {
            Pin::new(&mut conn).graceful_shutdown();
            std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)).await
        }
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
    let mut buf = [0u8; 4096];
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
