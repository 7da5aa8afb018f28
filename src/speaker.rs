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
//! counted). TCP MD5 keys are installed on the listening sockets per peer address, and re-installed
//! when a reload changes the peers ([`Speaker::reconcile`]).
//!
//! Shutdown: [`Speaker::shutdown`] asks every peer task to send a Cease (administrative shutdown,
//! RFC 9003 message) and waits for them, bounded; the listeners stop when the speaker is dropped.

use std::collections::{BTreeSet, HashMap};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use deflect_bgp::rib::{RouteAttrs, RouteKey};
use tokio::net::{TcpListener, TcpSocket};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::peer::{self, PeerConfig, PeerHandle};

type PeerMap = Arc<RwLock<HashMap<IpAddr, PeerHandle>>>;

/// Running peers and listeners.
#[derive(Debug)]
pub struct Speaker {
    peers: Vec<PeerHandle>,
    by_addr: PeerMap,
    listeners: Vec<(Arc<TcpListener>, JoinHandle<()>)>,
    /// Connections refused because no peer is configured for their address.
    pub refused_connections: Arc<AtomicU64>,
}

impl Drop for Speaker {
    fn drop(&mut self) {
        for (_, t) in &self.listeners {
            t.abort();
        }
    }
}

/// MD5 keys for `peers` on a listening socket; an empty key removes one (for peers gone).
fn set_md5_keys<S: std::os::fd::AsRawFd>(
    socket: &S,
    ipv4: bool,
    peers: &[&PeerConfig],
    clear: &[IpAddr],
) -> io::Result<()> {
    for ip in clear.iter().filter(|ip| ip.is_ipv4() == ipv4) {
        // Removing a key that was never set fails with ENOENT; nothing to undo then.
        let _ = crate::sys::set_tcp_md5(socket, *ip, None);
    }
    for c in peers.iter().filter(|c| c.remote.is_ipv4() == ipv4) {
        if let Some(pw) = &c.socket.md5_password {
            crate::sys::set_tcp_md5(socket, c.remote, Some(pw.as_bytes()))?;
        }
    }
    Ok(())
}

impl Speaker {
    /// Starts one task per peer and one listener per address in `listen`.
    pub async fn start(peers: Vec<PeerConfig>, listen: &[SocketAddr]) -> io::Result<Speaker> {
        let refused = Arc::new(AtomicU64::new(0));
        let by_addr: PeerMap = Arc::default();
        let mut listeners = Vec::new();
        let configs: Vec<&PeerConfig> = peers.iter().collect();
        for addr in listen {
            let socket = if addr.is_ipv4() {
                TcpSocket::new_v4()?
            } else {
                TcpSocket::new_v6()?
            };
            socket.set_reuseaddr(true)?;
            // MD5 keys must be on the listening socket before the SYN arrives; GTSM's minimum TTL
            // is set per accepted connection by its peer task, since not every peer uses it.
            set_md5_keys(&socket, addr.is_ipv4(), &configs, &[])?;
            // GTSM: the handshake's SYN-ACK leaves from the listening socket, so it must already
            // carry TTL 255 for a GTSM peer to accept it (RFC 5082 §3). Harmless for other peers.
            if configs
                .iter()
                .any(|c| c.socket.gtsm && c.remote.is_ipv4() == addr.is_ipv4())
            {
                let s = socket2::SockRef::from(&socket);
                if addr.is_ipv4() {
                    s.set_ttl_v4(255)?
                } else {
                    s.set_unicast_hops_v6(255)?
                }
            }
            socket.bind(*addr)?;
            let listener = Arc::new(socket.listen(64)?);
            let local = listener.local_addr()?;
            info!(%local, "listening for BGP connections");
            let span = info_span!("listener", %local);
            let task = tokio::spawn(
                accept_loop(listener.clone(), by_addr.clone(), refused.clone()).instrument(span),
            );
            listeners.push((listener, task));
        }
        let mut s = Speaker {
            peers: Vec::new(),
            by_addr,
            listeners,
            refused_connections: refused,
        };
        s.peers = peers.into_iter().map(peer::spawn).collect();
        s.publish_peers();
        Ok(s)
    }

    fn publish_peers(&self) {
        if let Ok(mut m) = self.by_addr.write() {
            *m = self
                .peers
                .iter()
                .map(|h| (h.config().remote, h.clone()))
                .collect();
        }
    }

    /// Where the listeners ended up (useful with port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .iter()
            .filter_map(|(l, _)| l.local_addr().ok())
            .collect()
    }

    pub fn peers(&self) -> &[PeerHandle] {
        &self.peers
    }

    /// Moves to the peers in `wanted`: peers named in `keep` go on untouched, every other one
    /// is stopped (Cease with `reason`) and started again with its new configuration. Returns the
    /// handles in `wanted`'s order.
    ///
    /// The one step that can fail (the listeners' MD5 keys: a kernel without TCP MD5, a key it
    /// refuses) comes first; when it fails the keys are put back as they were and nothing else
    /// changes: every session goes on, and the error says why.
    pub async fn reconcile(
        &mut self,
        wanted: Vec<PeerConfig>,
        keep: &BTreeSet<String>,
        reason: &str,
    ) -> io::Result<Vec<PeerHandle>> {
        // Running, named in `keep` and still wanted: goes on untouched. Every other running peer
        // ends; every other wanted one starts.
        let staying: BTreeSet<String> = self
            .peers
            .iter()
            .map(|h| &h.config().name)
            .filter(|n| keep.contains(*n) && wanted.iter().any(|c| &c.name == *n))
            .cloned()
            .collect();
        let starting: Vec<&PeerConfig> = wanted
            .iter()
            .filter(|c| !staying.contains(&c.name))
            .collect();
        let ending: Vec<IpAddr> = self
            .peers
            .iter()
            .filter(|h| !staying.contains(&h.config().name))
            .map(|h| h.config().remote)
            .collect();
        if let Err(e) = self.set_listener_keys(&starting, &ending) {
            let running: Vec<&PeerConfig> = self.peers.iter().map(|h| h.config()).collect();
            let added: Vec<IpAddr> = starting.iter().map(|c| c.remote).collect();
            if let Err(undo) = self.set_listener_keys(&running, &added) {
                warn!("MD5 keys of the running peers not restored on the listeners: {undo}");
            }
            return Err(e);
        }
        let mut old: HashMap<String, PeerHandle> = self
            .peers
            .drain(..)
            .map(|h| (h.config().name.clone(), h))
            .collect();
        let mut next = Vec::with_capacity(wanted.len());
        let mut gone = Vec::new();
        for c in wanted {
            match old.remove(&c.name) {
                Some(h) if staying.contains(&c.name) => next.push(Ok(h)),
                Some(h) => {
                    // Changed: the old session ends before the new one starts.
                    gone.push(h);
                    next.push(Err(c));
                }
                None => next.push(Err(c)),
            }
        }
        gone.extend(old.into_values());
        for h in &gone {
            h.shutdown(reason).await;
        }
        for h in &gone {
            h.join().await;
        }
        self.peers = next
            .into_iter()
            .map(|s| s.unwrap_or_else(peer::spawn))
            .collect();
        self.publish_peers();
        Ok(self.peers.clone())
    }

    /// MD5 keys on every listener: set for `peers`, removed for `clear`.
    fn set_listener_keys(&self, peers: &[&PeerConfig], clear: &[IpAddr]) -> io::Result<()> {
        for (l, _) in &self.listeners {
            set_md5_keys(l.as_ref(), l.local_addr()?.is_ipv4(), peers, clear)?;
        }
        Ok(())
    }

    /// Says to every peer that its table is complete (see [`PeerHandle::table_complete`]): for
    /// a speaker driven route by route rather than by the mitigation set.
    pub async fn table_complete(&self) {
        for p in &self.peers {
            p.table_complete().await;
        }
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
        for p in &self.peers {
            p.join().await;
        }
    }
}

async fn accept_loop(listener: Arc<TcpListener>, peers: PeerMap, refused: Arc<AtomicU64>) {
    loop {
        match listener.accept().await {
            Ok((stream, remote)) => {
                let ip = canonical(remote.ip());
                let peer = peers.read().ok().and_then(|m| m.get(&ip).cloned());
                match peer {
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use deflect_bgp::fsm::State;
    use deflect_bgp::rib::{RouteAttrs, RouteKey};

    use super::*;
    use crate::peer::{Mode, RouteChange};

    /// A passive "router" speaker listening on `router`, and deflect's speaker connecting to it
    /// from `local`, once their session is up.
    async fn pair(router: &str, local: &str) -> (Speaker, Speaker) {
        let mut rc = PeerConfig::new(local.parse().unwrap(), 65000);
        rc.local_as = 65001;
        rc.router_id = "192.0.2.254".parse().unwrap();
        rc.mode = Mode::Passive;
        let listen = SocketAddr::new(router.parse().unwrap(), 0);
        let r = Speaker::start(vec![rc], &[listen]).await.unwrap();
        let mut c = PeerConfig::new(router.parse().unwrap(), 65001);
        c.port = r.local_addrs()[0].port();
        c.local_as = 65000;
        c.router_id = "192.0.2.10".parse().unwrap();
        c.socket.local_addr = Some(local.parse().unwrap());
        c.connect_retry = Duration::from_millis(200);
        let d = Speaker::start(vec![c], &[]).await.unwrap();
        let mut up = d.peers()[0].watch();
        tokio::time::timeout(
            Duration::from_secs(10),
            up.wait_for(|s| s.state == State::Established),
        )
        .await
        .expect("the session comes up")
        .unwrap();
        (r, d)
    }

    /// A session that comes up before the owner has given the peer its whole table (at start,
    /// while the store is read) gets no End-of-RIB until the owner says the table is complete:
    /// one sent over a table still empty would make a graceful-restart helper drop every rule
    /// it kept, moments before they come back.
    #[tokio::test]
    async fn end_of_rib_waits_until_the_table_is_complete() {
        let (router, deflect) = pair("127.0.76.3", "127.0.76.4").await;
        let peer = &deflect.peers()[0];
        let mut up = peer.watch();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(router.peers()[0].status().updates_received, 0);
        assert!(!peer.status().synced);

        let key = RouteKey::FlowSpec("dst 10.1.0.1/32 proto udp dport 53".parse().unwrap());
        let attrs = Arc::new(RouteAttrs {
            ext_communities: vec![deflect_bgp::flowspec::Action::DISCARD.to_ext_community()],
            ..RouteAttrs::default()
        });
        peer.apply(vec![RouteChange::Set(key, attrs)]).await;
        peer.table_complete().await;
        let mut seen = router.peers()[0].watch();
        let s = tokio::time::timeout(
            Duration::from_secs(10),
            seen.wait_for(|s| s.nlri_received == 1 && s.updates_received >= 2),
        )
        .await
        .expect("the route, then End-of-RIB")
        .unwrap()
        .clone();
        assert_eq!(s.withdrawals_received, 0, "{s:?}");
        tokio::time::timeout(Duration::from_secs(10), up.wait_for(|s| s.synced))
            .await
            .expect("synced once End-of-RIB is out")
            .unwrap();
        for p in deflect.peers().iter().chain(router.peers()) {
            p.shutdown("test over").await;
            p.join().await;
        }
    }

    /// A reload whose neighbors cannot be applied (here a key the kernel refuses) changes
    /// nothing: the running session goes on, the speaker keeps its peer, and a later reload
    /// applies.
    #[tokio::test]
    async fn a_reconcile_that_fails_keeps_every_session() {
        let (mut router, deflect) = pair("127.0.76.5", "127.0.76.6").await;
        let running = router.peers()[0].config().clone();
        let keep: BTreeSet<String> = [running.name.clone()].into();
        let mut added = PeerConfig::new("127.0.76.7".parse().unwrap(), 65000);
        added.mode = Mode::Passive;
        added.socket.md5_password = Some("x".repeat(crate::sys::MD5_MAX_KEY_LEN + 1));

        let e = router
            .reconcile(vec![running.clone(), added.clone()], &keep, "test")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("MD5"), "{e}");
        assert_eq!(router.peers().len(), 1);
        tokio::time::sleep(Duration::from_millis(300)).await;
        for p in [&router.peers()[0], &deflect.peers()[0]] {
            let s = p.status();
            assert_eq!(
                (s.state, s.established_count),
                (State::Established, 1),
                "{s:?}"
            );
        }

        added.socket.md5_password = Some("secret".into());
        let handles = router
            .reconcile(vec![running, added], &keep, "test")
            .await
            .unwrap();
        assert_eq!(handles.len(), 2);
        assert_eq!(router.peers()[0].status().established_count, 1);
        for p in deflect.peers().iter().chain(router.peers()) {
            p.shutdown("test over").await;
            p.join().await;
        }
    }

    /// A group of changes given to a peer as one command leaves packed: a few UPDATEs of many
    /// NLRI each, not one per route; what the group removes again is never sent.
    #[tokio::test]
    async fn a_group_of_changes_leaves_packed_into_few_updates() {
        let (router, deflect) = pair("127.0.76.1", "127.0.76.2").await;

        let attrs = Arc::new(RouteAttrs {
            ext_communities: vec![deflect_bgp::flowspec::Action::DISCARD.to_ext_community()],
            ..RouteAttrs::default()
        });
        let key = |i: u32| {
            RouteKey::FlowSpec(
                format!("dst 10.1.{}.{}/32 proto udp dport 53", i >> 8, i & 255)
                    .parse()
                    .unwrap(),
            )
        };
        let mut changes: Vec<RouteChange> = (0..2000)
            .map(|i| RouteChange::Set(key(i), attrs.clone()))
            .collect();
        // Ten of them taken back within the group.
        changes.extend((0..10).map(|i| RouteChange::Remove(key(i * 7))));
        deflect.peers()[0].apply(changes).await;

        let mut seen = router.peers()[0].watch();
        let s = tokio::time::timeout(
            Duration::from_secs(10),
            seen.wait_for(|s| s.nlri_received >= 1990),
        )
        .await
        .expect("every route arrives")
        .unwrap()
        .clone();
        tokio::time::sleep(Duration::from_millis(200)).await;
        let s2 = router.peers()[0].status();
        assert_eq!(s2.nlri_received, 1990, "{s:?}");
        assert_eq!(s2.withdrawals_received, 0, "{s2:?}");
        // 15-octet NLRI in UPDATEs of at most 4,096 octets: about 250 each, 8 UPDATEs or so
        // (End-of-RIB markers aside).
        assert!(s2.updates_received <= 20, "{s2:?}");
        for p in deflect.peers().iter().chain(router.peers()) {
            p.shutdown("test over").await;
            p.join().await;
        }
    }
}
