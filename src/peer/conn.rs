//! One TCP connection of a peer: socket setup, a reader task and a writer task.
//!
//! The tasks only do IO. The reader cuts the byte stream into whole BGP messages (it does not decode
//! them: the peer task owns the negotiated codec context) and sends them, in order, to the peer task.
//! The writer drains a bounded queue of encoded messages into the socket. Both stop when the
//! [`Connection`] is dropped (their handles abort on drop).
//!
//! Back-pressure: the write queue holds [`WRITE_QUEUE`] messages. The peer task only takes routes out
//! of its Adj-RIB-Out when the queue has room, so a slow router leaves changes pending (and coalescing)
//! in the Adj-RIB-Out instead of piling up in memory.
//!
//! Send hold timer (RFC 9687): a write that makes no progress for the send hold time ends the
//! connection with [`ConnEvent::SendHoldExpired`].

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use deflect_bgp::header::{self, HeaderError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tracing::{debug, trace};

use crate::sys;

/// Encoded messages waiting for the socket, per connection.
pub const WRITE_QUEUE: usize = 64;

/// What a connection's tasks report to the peer task. Every event carries the connection's id so
/// that reports from a connection already given up are ignored.
#[derive(Debug)]
pub enum ConnEvent {
    /// One whole message, header included.
    Frame(u64, Bytes),
    /// The byte stream is not BGP: the header is malformed.
    BadHeader(u64, HeaderError),
    /// The peer closed the connection, or reading failed.
    Closed(u64, Option<io::Error>),
    /// Writing failed.
    WriteFailed(u64, io::Error),
    /// A write made no progress for the send hold time (RFC 9687).
    SendHoldExpired(u64),
}

/// Socket options for a peer's connections.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// RFC 2385 key.
    pub md5_password: Option<String>,
    /// RFC 5082: send with TTL 255 and accept only TTL >= 254 (directly connected peers).
    pub gtsm: bool,
    /// Source address for outgoing connections.
    pub local_addr: Option<IpAddr>,
}

/// Aborts the task when dropped.
#[derive(Debug)]
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A live connection, owned by the peer task.
#[derive(Debug)]
pub struct Connection {
    pub id: u64,
    pub remote: SocketAddr,
    pub local: SocketAddr,
    /// Initiated by us (for collision resolution, RFC 4271 §6.8).
    pub outbound: bool,
    writer: Option<mpsc::Sender<Bytes>>,
    writer_task: Option<JoinHandle<()>>,
    _reader_task: AbortOnDrop,
}

impl Connection {
    /// Starts the reader and writer tasks on `stream`.
    pub fn start(
        id: u64,
        stream: TcpStream,
        outbound: bool,
        events: mpsc::Sender<ConnEvent>,
        send_hold_time: Duration,
    ) -> io::Result<Connection> {
        let remote = stream.peer_addr()?;
        let local = stream.local_addr()?;
        stream.set_nodelay(true)?;
        let (mut rd, mut wr) = stream.into_split();
        let (tx, mut rx) = mpsc::channel::<Bytes>(WRITE_QUEUE);

        let ev = events.clone();
        let reader = tokio::spawn(async move {
            let mut buf = BytesMut::with_capacity(header::MAX_EXTENDED_LEN * 2);
            loop {
                // Hand over every whole message already buffered.
                loop {
                    match header::frame(&buf, header::MAX_EXTENDED_LEN) {
                        Ok(Some(f)) => {
                            let frame = buf.split_to(f.len).freeze();
                            trace!(len = frame.len(), "read message");
                            if ev.send(ConnEvent::Frame(id, frame)).await.is_err() {
                                return;
                            }
                        }
                        Ok(None) => break,
                        Err(e) => {
                            let _ = ev.send(ConnEvent::BadHeader(id, e)).await;
                            return;
                        }
                    }
                }
                match rd.read_buf(&mut buf).await {
                    Ok(0) => {
                        let _ = ev.send(ConnEvent::Closed(id, None)).await;
                        return;
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = ev.send(ConnEvent::Closed(id, Some(e))).await;
                        return;
                    }
                }
            }
        });

        let writer = tokio::spawn(async move {
            while let Some(msg) = rx.recv().await {
                match tokio::time::timeout(send_hold_time, wr.write_all(&msg)).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        let _ = events.send(ConnEvent::WriteFailed(id, e)).await;
                        return;
                    }
                    Err(_) => {
                        let _ = events.send(ConnEvent::SendHoldExpired(id)).await;
                        return;
                    }
                }
            }
            // The queue was closed: everything queued is written; close our side.
            let _ = wr.shutdown().await;
        });

        Ok(Connection {
            id,
            remote,
            local,
            outbound,
            writer: Some(tx),
            writer_task: Some(writer),
            _reader_task: AbortOnDrop(reader),
        })
    }

    /// Room in the write queue, waited for. `None` once the writer is gone.
    pub async fn reserve(&self) -> Option<mpsc::Permit<'_, Bytes>> {
        self.writer.as_ref()?.reserve().await.ok()
    }

    /// Queues a message without waiting; false when the queue is full or the writer gone.
    pub fn try_send(&self, msg: Bytes) -> bool {
        self.writer
            .as_ref()
            .is_some_and(|w| w.try_send(msg).is_ok())
    }

    /// Free slots in the write queue (0 once the writer is gone).
    pub fn capacity(&self) -> usize {
        self.writer.as_ref().map_or(0, |w| w.capacity())
    }

    /// Queues `last` (a NOTIFICATION, typically), lets the writer flush everything queued, and
    /// closes the socket; waits at most `timeout`.
    pub async fn close_with(mut self, last: Option<Bytes>, timeout: Duration) {
        if let (Some(w), Some(msg)) = (self.writer.as_ref(), last) {
            let _ = tokio::time::timeout(timeout, w.send(msg)).await;
        }
        self.writer = None; // closes the queue: the writer flushes and shuts the socket down
        if let Some(t) = self.writer_task.take() {
            let abort = t.abort_handle();
            if tokio::time::timeout(timeout, t).await.is_err() {
                abort.abort();
            }
        }
        debug!(remote = %self.remote, "connection closed");
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(t) = self.writer_task.take() {
            t.abort();
        }
    }
}

/// Opens an outgoing connection with the peer's socket options, giving up after `timeout`.
pub async fn connect(
    remote: SocketAddr,
    opts: &SocketOptions,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let socket = if remote.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    apply_options(&socket, remote.ip(), opts)?;
    if let Some(local) = opts.local_addr {
        socket.bind(SocketAddr::new(local, 0))?;
    }
    match tokio::time::timeout(timeout, socket.connect(remote)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connect to {remote} timed out"),
        )),
    }
}

/// MD5 key and GTSM on a socket about to connect (or listen for `peer`).
pub fn apply_options<S: std::os::fd::AsRawFd + std::os::fd::AsFd>(
    socket: &S,
    peer: IpAddr,
    opts: &SocketOptions,
) -> io::Result<()> {
    if let Some(pw) = &opts.md5_password {
        sys::set_tcp_md5(socket, peer, Some(pw.as_bytes()))?;
    }
    if opts.gtsm {
        set_gtsm(socket, peer.is_ipv6())?;
    }
    Ok(())
}

/// GTSM (RFC 5082 §3): outgoing TTL 255, incoming TTL at least 254.
pub fn set_gtsm<S: std::os::fd::AsRawFd + std::os::fd::AsFd>(
    socket: &S,
    ipv6: bool,
) -> io::Result<()> {
    let s = socket2::SockRef::from(socket);
    if ipv6 {
        s.set_unicast_hops_v6(255)?;
    } else {
        s.set_ttl_v4(255)?;
    }
    sys::set_min_ttl(socket, ipv6, 254)
}
