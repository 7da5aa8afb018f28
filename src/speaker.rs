//! The speaker: every peer task, and the listeners that hand accepted connections to them.
//!
//! ```text
//!  Speaker::set/remove ──► PeerHandle ──(bounded mpsc)──► peer task (owns Fsm + AdjRibOut)
//!                                                           ▲        │
//!  listener task ── accepted TcpStream by remote address ───┘        ├─► connect task (one at a time)
//!                                                                    └─► reader / writer tasks
//! ```
//!
//! Each listener checks the remote address of an accepted connection against the configured peers
//! and hands the stream to that peer's task; connections from anyone else are closed at once (and
//! counted). TCP MD5 keys for passive peers are installed on the listening socket per peer address.
//!
//! Shutdown: [`Speaker::shutdown`] asks every peer task to send a Cease (administrative shutdown,
//! RFC 9003 message) and waits for them, bounded; the listeners stop when the speaker is dropped.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use deflect_bgp::rib::{RouteAttrs, RouteKey};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::peer::{self, PeerConfig, PeerHandle};

/// Running peers and listeners.
#[derive(Debug)]
pub struct Speaker {
    peers: Vec<PeerHandle>,
    listeners: Vec<JoinHandle<()>>,
    /// Connections refused because no peer is configured for their address.
    pub refused_connections: Arc<AtomicU64>,
    local_addrs: Vec<SocketAddr>,
}

impl Speaker {
    /// Starts one task per peer and one listener per address in `listen`.
    pub async fn start(peers: Vec<PeerConfig>, listen: &[SocketAddr]) -> io::Result<Speaker> {
        let handles: Vec<PeerHandle> = peers.into_iter().map(peer::spawn).collect();
        let by_addr: Arc<HashMap<IpAddr, PeerHandle>> = Arc::new(
            handles
                .iter()
                .map(|h| (h.config().remote, h.clone()))
                .collect(),
        );
        let refused = Arc::new(AtomicU64::new(0));
        let mut listeners = Vec::new();
        let mut local_addrs = Vec::new();
        for addr in listen {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            // MD5 keys must be on the listening socket before the SYN arrives; GTSM is set per
            // accepted connection by its peer task, since not every peer uses it.
            for h in handles.iter() {
                let c = h.config();
                if let Some(pw) = &c.socket.md5_password {
                    if c.remote.is_ipv4() == addr.is_ipv4() {
                        crate::sys::set_tcp_md5(&socket, c.remote, Some(pw.as_bytes()))?;
                    }
                }
            }
            // GTSM: the handshake's SYN-ACK leaves from the listening socket, so it must already
            // carry TTL 255 for a GTSM peer to accept it (RFC 5082 §3). Harmless for other peers.
            if handles
                .iter()
                .any(|h| h.config().socket.gtsm && h.config().remote.is_ipv4() == addr.is_ipv4())
            {
                let s = socket2::SockRef::from(&socket);
                if addr.is_ipv4() {
                    s.set_ttl_v4(255)?
                } else {
                    s.set_unicast_hops_v6(255)?
                }
            }
            socket.bind(*addr)?;
            let listener = socket.listen(64)?;
            let local = listener.local_addr()?;
            local_addrs.push(local);
            info!(%local, "listening for BGP connections");
            let span = info_span!("listener", %local);
            listeners.push(tokio::spawn(
                accept_loop(listener, by_addr.clone(), refused.clone()).instrument(span),
            ));
        }
        Ok(Speaker {
            peers: handles,
            listeners,
            refused_connections: refused,
            local_addrs,
        })
    }

    /// Where the listeners ended up (useful with port 0).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    pub fn peers(&self) -> &[PeerHandle] {
        &self.peers
    }

    /// Makes a route desired on every peer whose configuration takes its family.
    pub async fn set(&self, key: RouteKey, attrs: Arc<RouteAttrs>) {
        for p in &self.peers {
            if p.config().families.contains(&key.family()) {
                p.set(key.clone(), attrs.clone()).await;
            }
        }
    }

    /// Withdraws a route from every peer.
    pub async fn remove(&self, key: RouteKey) {
        for p in &self.peers {
            p.remove(key.clone()).await;
        }
    }

    /// Sends a Cease with `reason` to every peer and waits for the peer tasks to end (bounded).
    pub async fn shutdown(self, reason: &str) {
        for p in &self.peers {
            p.shutdown(reason).await;
        }
        for p in self.peers {
            p.join().await;
        }
        for l in self.listeners {
            l.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    peers: Arc<HashMap<IpAddr, PeerHandle>>,
    refused: Arc<AtomicU64>,
) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let ip = canonical(remote.ip());
                match peers.get(&ip) {
                    Some(p) => {
                        debug!(%remote, "accepted connection");
                        p.incoming(stream).await;
                    }
                    None => {
                        refused.fetch_add(1, Ordering::Relaxed);
                        warn!(%remote, "connection from an address that is not a configured peer: closed");
                    }
                }
            }
            Err(e) => {
                // Out of file descriptors and the like: log and keep accepting after a pause.
                warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack listener) compare as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}
