//! The receive path shared by the datagram collectors (sFlow, NetFlow/IPFIX): a UDP socket read
//! in batches, one `recvmmsg(2)` for up to a batch of queued datagrams, with the kernel's drop
//! counter kept.
//!
//! ```text
//!  kernel queue ──► recvmmsg (up to Batch::new's slots, MSG_DONTWAIT) ──► Batch::drain
//!  (SO_RCVBUF)        │ longer than a slot (MSG_TRUNC): counted, dropped     (Bytes, source)
//!        │            │ SO_RXQ_OVFL: the socket's drop counter, per datagram   │
//!        ▼ full       ▼                                                        ▼
//!   dropped, counted ──► DatagramSocket::drops                       the collector's decoder
//! ```
//!
//! What it owns: the socket (bound, its buffer sized, non-blocking, registered with tokio), the
//! batch's memory, and the two loss counters a collector publishes ([`SocketStats`]). What it must
//! not do: decode, or know which protocol it carries.
//!
//! Choices, measured with `cargo bench --bench ingest` (figures in that file's header):
//! - The system call is ours (`crate::sys::recv_batch`, libc's `recvmmsg`) rather than `nix`'s safe
//!   `recvmmsg`: no new dependency, no allocation per call (nix collects the results into a `Vec`
//!   on each call), and the per-datagram `msg_flags` (`MSG_TRUNC`) and control messages
//!   (`SO_RXQ_OVFL`) read directly; `sys.rs` already holds the workspace's `unsafe`.
//! - Each datagram's payload is copied out of its slot into its own `Bytes`. The alternative, one
//!   `BytesMut` per batch split per datagram, saves that copy (200 to 340 ns per 1.9 kB datagram,
//!   3 to 4% of the sFlow collector's work per datagram, see the bench) but pins the whole batch's memory (slots × slot size) for as long as
//!   any slice of any datagram is kept: a pcap frame waiting in the recorder's queue would hold
//!   half a megabyte. The copy bounds what a kept slice costs to its own datagram.
//! - 64 slots: in the bench, saturated, 8 slots gave 139,000 sFlow datagrams per CPU-second
//!   through the collector, 32 and 64 about 152,000, 128 about 163,000 (within the noise of a
//!   shared machine); 64 keeps the batch's memory at 574 kB with jumbo slots.
//! - `SO_REUSEPORT` shards (`bind_shards`): a shard changes no per-CPU-second figure, only how
//!   many cores take part; in the bench, two shards drained a full queue 1.3 to 1.5x as fast as
//!   one socket on this 2-core machine (186,000 against 122,000-145,000 sFlow datagrams per
//!   second through the collector). The kernel's own choice hashes the source address *and port*, so an
//!   exporter sending from several ports (one per line card, or a new one after a restart)
//!   would be split across shards with its sequence tracking and aggregation: `bind_shards`
//!   attaches a BPF program steering by source address only, and [`shard_of`] tells which shard
//!   an exporter's datagrams reach. The sFlow collector still runs one socket: sharding it is a
//!   `Run` task per shard, each with the `Agents` of the trusted agents `shard_of` gives it (so
//!   each exporter's state has one owner) and its part of the published stats merged.
//! - Readiness from tokio (`UdpSocket::async_io`): `recv_batch` waits until the socket is readable,
//!   then takes what is queued, up to the batch, without waiting for more. A batch is never held
//!   back to fill up, so batching adds no latency.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use bytes::Bytes;
use serde::Serialize;
use tokio::io::Interest;
use tokio::net::UdpSocket;

use crate::sys;

/// Slots in a collector's batch: the datagrams one system call takes at most.
pub const DEFAULT_SLOTS: usize = 64;

/// A slot for sFlow and NetFlow v5/v9 datagrams: a jumbo frame's payload (9000 octets of MTU).
pub const JUMBO_SLOT: usize = 9000 - 20 - 8;

/// A slot for IPFIX over UDP (RFC 7011 §10.3.3): the largest UDP payload over IPv4.
pub const MAX_UDP_SLOT: usize = 65_507;

/// What a collector publishes of its socket (the API shows it; `/metrics` as
/// `deflect_<protocol>_socket_drops_total` and `deflect_<protocol>_truncated_datagrams_total`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SocketStats {
    /// Datagrams the kernel dropped on the socket: its receive queue was full.
    pub drops: u64,
    /// Datagrams longer than a slot: counted and dropped, never decoded cut.
    pub truncated: u64,
}

/// The shard (index in [`DatagramSocket::bind_shards`]'s order) whose socket the kernel steers
/// the datagrams of `source` to: the rule of `sys::steer_by_source`, for a collector to give each
/// shard the state of exactly the exporters it will hear from (an IPv4 address and its
/// IPv4-mapped IPv6 form go to the same shard).
pub fn shard_of(source: IpAddr, shards: usize) -> usize {
    let last = match source {
        IpAddr::V4(v4) => u32::from(v4),
        IpAddr::V6(v6) => {
            let o = v6.octets();
            u32::from_be_bytes([o[12], o[13], o[14], o[15]])
        }
    };
    (last % u32::try_from(shards.max(1)).unwrap_or(u32::MAX)) as usize
}

/// The kernel's drop counter is a `u32` that wraps: this keeps a running `u64` total.
#[derive(Debug, Default)]
struct DropCount {
    /// The last raw counter seen.
    last: u32,
    total: u64,
}

impl DropCount {
    /// A raw counter read from the kernel, now or attached to a datagram (then possibly older
    /// than one already seen: a value behind the last is ignored).
    fn observe(&mut self, raw: u32) {
        let delta = raw.wrapping_sub(self.last);
        if delta != 0 && delta < 1 << 31 {
            self.total += u64::from(delta);
            self.last = raw;
        }
    }
}

/// A bound UDP socket read in batches. Must be made inside a tokio runtime.
#[derive(Debug)]
pub struct DatagramSocket {
    socket: UdpSocket,
    local: SocketAddr,
    /// Updated by `recv_batch` (the counter the kernel attaches to datagrams) and `drops` (the
    /// counter read now); a mutex so that `drops` works through `&self`, never contended.
    drops: Mutex<DropCount>,
}

impl DatagramSocket {
    /// Binds one socket (no `SO_REUSEPORT`), sets a large receive buffer (`recv_buffer` octets,
    /// capped by the kernel at `net.core.rmem_max`), enables `SO_RXQ_OVFL`.
    pub fn bind(addr: SocketAddr, recv_buffer: usize) -> io::Result<DatagramSocket> {
        Self::open(addr, false, recv_buffer)
    }

    /// `shards` sockets bound to the same address with `SO_REUSEPORT`, the datagrams steered by
    /// their source address (a BPF program, `sys::steer_by_source`): one exporter always reaches
    /// the same socket, in order, whatever its source port, so its state can be owned by one
    /// shard. With port 0, the first socket's port is used for the others.
    pub fn bind_shards(
        addr: SocketAddr,
        shards: usize,
        recv_buffer: usize,
    ) -> io::Result<Vec<DatagramSocket>> {
        if shards <= 1 {
            return Ok(vec![Self::bind(addr, recv_buffer)?]);
        }
        let first = Self::open(addr, true, recv_buffer)?;
        let addr = first.local;
        let mut all = vec![first];
        for _ in 1..shards {
            all.push(Self::open(addr, true, recv_buffer)?);
        }
        all[0].steer_by_source(shards)?;
        Ok(all)
    }

    /// One socket of a group bound to the same address (`SO_REUSEPORT`), for a shard that makes
    /// its own (in its own runtime); `addr` must have the group's port. The kernel hashes source
    /// address and port to pick the socket, unless one of the group calls [`Self::steer_by_source`].
    pub fn bind_shard(addr: SocketAddr, recv_buffer: usize) -> io::Result<DatagramSocket> {
        Self::open(addr, true, recv_buffer)
    }

    fn open(addr: SocketAddr, reuse_port: bool, recv_buffer: usize) -> io::Result<DatagramSocket> {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        if reuse_port {
            s.set_reuse_port(true)?;
        }
        // A burst of datagrams must not be dropped by a small socket buffer; the kernel caps it
        // (rmem_max), which is not an error: the drops say if it was too small.
        let _ = s.set_recv_buffer_size(recv_buffer);
        sys::set_rxq_ovfl(&s)?;
        s.set_nonblocking(true)?;
        s.bind(&addr.into())?;
        let socket = UdpSocket::from_std(s.into())?;
        let local = socket.local_addr()?;
        Ok(DatagramSocket {
            socket,
            local,
            drops: Mutex::new(DropCount::default()),
        })
    }

    /// Steers the datagrams of this socket's `SO_REUSEPORT` group by source address, over
    /// `shards` sockets (see [`Self::bind_shards`]).
    pub fn steer_by_source(&self, shards: usize) -> io::Result<()> {
        sys::steer_by_source(&self.socket, u32::try_from(shards).unwrap_or(u32::MAX))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The receive buffer the kernel granted (it doubles the request, and caps it).
    pub fn recv_buffer(&self) -> io::Result<usize> {
        socket2::SockRef::from(&self.socket).recv_buffer_size()
    }

    /// Waits for at least one datagram, then takes up to the batch's size without blocking.
    /// Returns how many the batch's `drain` yields (a datagram longer than a slot is counted in
    /// [`Batch::truncated`] instead). Cancel-safe: a datagram is taken only when this completes.
    pub async fn recv_batch(&self, batch: &mut Batch) -> io::Result<usize> {
        batch.len = 0;
        let Batch {
            buf,
            slot_size,
            received,
            ..
        } = batch;
        let n = self
            .socket
            .async_io(Interest::READABLE, || {
                sys::recv_batch(&self.socket, buf, *slot_size, received)
            })
            .await?;
        batch.len = n;
        let mut newest = None;
        let mut delivered = 0;
        for r in &batch.received[..n] {
            if r.truncated {
                batch.truncated += 1;
            } else if r.from.is_some() {
                delivered += 1;
            }
            newest = r.drops.or(newest);
        }
        if let Some(raw) = newest {
            if let Ok(mut d) = self.drops.lock() {
                d.observe(raw);
            }
        }
        Ok(delivered)
    }

    /// Receives one datagram into a slot of the batch, with one `recv_from` (no batching): what a
    /// collector did before `recv_batch`; kept for the bench's comparison.
    pub async fn recv_one(&self, batch: &mut Batch) -> io::Result<usize> {
        batch.len = 0;
        let slot = batch.slot_size;
        let Some(buf) = batch.buf.get_mut(..slot) else {
            return Ok(0);
        };
        let (n, from) = self.socket.recv_from(buf).await?;
        if let Some(r) = batch.received.first_mut() {
            *r = sys::Received {
                len: n,
                from: Some(from),
                truncated: false,
                drops: None,
            };
            batch.len = 1;
        }
        Ok(batch.len)
    }

    /// Datagrams the kernel dropped on this socket's full queue so far (SO_RXQ_OVFL), if known.
    /// Read now from the kernel (`SO_MEMINFO`) where it can be, so that drops show even before
    /// the next datagram carries the count.
    pub fn drops(&self) -> u64 {
        let now = sys::socket_drops(&self.socket).ok();
        let Ok(mut d) = self.drops.lock() else {
            return 0;
        };
        if let Some(raw) = now {
            d.observe(raw);
        }
        d.total
    }

    /// The socket's counters, with the batch it is read into.
    pub fn stats(&self, batch: &Batch) -> SocketStats {
        SocketStats {
            drops: self.drops(),
            truncated: batch.truncated(),
        }
    }
}

/// Memory for the datagrams of one `recv_batch`: `slots` slots of `slot_size` octets, allocated
/// once and reused.
#[derive(Debug)]
pub struct Batch {
    buf: Vec<u8>,
    slot_size: usize,
    received: Vec<sys::Received>,
    /// Datagrams of the last `recv_batch` not drained yet.
    len: usize,
    truncated: u64,
}

impl Batch {
    /// `slots` is capped at [`sys::MAX_BATCH`] (256); both are at least 1.
    pub fn new(slots: usize, slot_size: usize) -> Batch {
        let slots = slots.clamp(1, sys::MAX_BATCH);
        let slot_size = slot_size.max(1);
        Batch {
            buf: vec![0; slots * slot_size],
            slot_size,
            received: vec![
                sys::Received {
                    len: 0,
                    from: None,
                    truncated: false,
                    drops: None,
                };
                slots
            ],
            len: 0,
            truncated: 0,
        }
    }

    /// The datagrams of the last `recv_batch`: payload (a `Bytes`, so zero-copy decoders can keep
    /// slices) and source. Each is yielded once.
    pub fn drain(&mut self) -> impl Iterator<Item = (Bytes, SocketAddr)> + '_ {
        let len = std::mem::take(&mut self.len);
        let (buf, slot) = (&self.buf, self.slot_size);
        self.received
            .iter()
            .take(len)
            .enumerate()
            .filter(|(_, r)| !r.truncated)
            .filter_map(move |(i, r)| {
                let data = buf.get(i * slot..)?.get(..r.len)?;
                Some((Bytes::copy_from_slice(data), r.from?))
            })
    }

    /// Datagrams longer than a slot (MSG_TRUNC) so far: counted, dropped.
    pub fn truncated(&self) -> u64 {
        self.truncated
    }

    pub fn slots(&self) -> usize {
        self.received.len()
    }

    pub fn slot_size(&self) -> usize {
        self.slot_size
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::UdpSocket as StdSocket;
    use std::time::Duration;

    use super::*;

    fn loopback() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    /// Receives until `want` datagrams came, at most 5 s.
    async fn receive(
        socket: &DatagramSocket,
        batch: &mut Batch,
        want: usize,
        got: &mut Vec<(Bytes, SocketAddr)>,
    ) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while got.len() < want {
            match tokio::time::timeout_at(deadline, socket.recv_batch(batch)).await {
                Ok(r) => {
                    r.unwrap();
                    got.extend(batch.drain());
                }
                Err(_) => panic!("only {} of {want} datagrams received", got.len()),
            }
        }
    }

    #[tokio::test]
    async fn a_batch_of_many_datagrams_from_several_sources_arrives_whole_and_in_order_per_source()
    {
        let rx = DatagramSocket::bind(loopback(), 4 << 20).unwrap();
        let to = rx.local_addr();
        let senders: Vec<StdSocket> = (0..3)
            .map(|_| StdSocket::bind(loopback()).unwrap())
            .collect();
        let mut batch = Batch::new(16, 2048);
        let mut got = Vec::new();
        // Rounds of 20 per source, interleaved, well within the queue; 600 in all.
        for round in 0..10u32 {
            for i in 0..20u32 {
                for (s, tx) in senders.iter().enumerate() {
                    let seq = round * 20 + i;
                    let mut d = vec![s as u8; 100 + (seq as usize % 900)];
                    d[..4].copy_from_slice(&seq.to_be_bytes());
                    tx.send_to(&d, to).unwrap();
                }
            }
            receive(&rx, &mut batch, (round as usize + 1) * 60, &mut got).await;
        }
        assert_eq!(got.len(), 600);
        let mut next: HashMap<SocketAddr, u32> = HashMap::new();
        for (data, from) in &got {
            let seq = u32::from_be_bytes(data[..4].try_into().unwrap());
            let n = next.entry(*from).or_default();
            assert_eq!(seq, *n, "in order from {from}");
            assert_eq!(data.len(), 100 + (seq as usize % 900), "whole");
            *n += 1;
        }
        assert_eq!(next.len(), 3);
        assert!(next.values().all(|n| *n == 200));
        assert_eq!((batch.truncated(), rx.drops()), (0, 0));
    }

    #[tokio::test]
    async fn a_datagram_longer_than_a_slot_is_counted_as_truncated_not_delivered_cut() {
        let rx = DatagramSocket::bind(loopback(), 1 << 20).unwrap();
        let tx = StdSocket::bind(loopback()).unwrap();
        let mut batch = Batch::new(4, 512);
        tx.send_to(&[1; 100], rx.local_addr()).unwrap();
        tx.send_to(&[2; 513], rx.local_addr()).unwrap();
        tx.send_to(&[3; 512], rx.local_addr()).unwrap();
        let mut got = Vec::new();
        receive(&rx, &mut batch, 2, &mut got).await;
        let lens: Vec<(u8, usize)> = got.iter().map(|(d, _)| (d[0], d.len())).collect();
        assert_eq!(lens, [(1, 100), (3, 512)]);
        assert_eq!(batch.truncated(), 1);
    }

    #[tokio::test]
    async fn drops_on_a_full_queue_are_counted() {
        // The smallest buffer the kernel grants (a few kB): a few datagrams fill it.
        let rx = DatagramSocket::bind(loopback(), 1).unwrap();
        let tx = StdSocket::bind(loopback()).unwrap();
        for _ in 0..200 {
            tx.send_to(&[7; 1000], rx.local_addr()).unwrap();
        }
        let mut batch = Batch::new(64, 2048);
        let mut got = Vec::new();
        receive(&rx, &mut batch, 1, &mut got).await;
        // Whatever else was queued.
        while let Ok(Ok(_)) =
            tokio::time::timeout(Duration::from_millis(50), rx.recv_batch(&mut batch)).await
        {
            got.extend(batch.drain());
        }
        let dropped = rx.drops();
        assert!(dropped > 0, "{} received, none dropped", got.len());
        assert_eq!(got.len() as u64 + dropped, 200);
        // The count the kernel attaches to the next datagram (SO_RXQ_OVFL) agrees.
        *rx.drops.lock().unwrap() = DropCount::default();
        tx.send_to(&[8; 10], rx.local_addr()).unwrap();
        receive(&rx, &mut batch, 1, &mut Vec::new()).await;
        assert_eq!(rx.drops.lock().unwrap().total, dropped);
    }

    #[test]
    fn the_drop_count_survives_the_kernel_counter_wrapping_and_ignores_stale_values() {
        let mut d = DropCount::default();
        d.observe(10);
        d.observe(4); // an older datagram's count
        d.observe(1 << 31);
        d.observe(u32::MAX);
        d.observe(5); // wrapped
        assert_eq!(d.total, u64::from(u32::MAX) + 6);
    }

    #[tokio::test]
    async fn shards_share_one_port_and_one_sender_reaches_one_shard_whatever_its_port() {
        sender_on_one_shard(loopback(), "127.0.0.1").await;
        // IPv4 on a dual-stack socket is steered by its address too.
        if let Ok(s) = StdSocket::bind("[::]:0") {
            drop(s);
            sender_on_one_shard("[::]:0".parse().unwrap(), "127.0.0.1").await;
        }
    }

    async fn sender_on_one_shard(bind: SocketAddr, sender: &str) {
        let shards = DatagramSocket::bind_shards(bind, 2, 1 << 20).unwrap();
        assert_eq!(shards.len(), 2);
        assert_eq!(shards[0].local_addr(), shards[1].local_addr());
        // From 40 source ports: the kernel's hash would spread them over both.
        let to = SocketAddr::new(sender.parse().unwrap(), shards[0].local_addr().port());
        for _ in 0..40 {
            StdSocket::bind(SocketAddr::new(sender.parse().unwrap(), 0))
                .unwrap()
                .send_to(b"x", to)
                .unwrap();
        }
        let mine = shard_of("127.0.0.1".parse().unwrap(), 2);
        assert_eq!(mine, 1, "0x7f000001 % 2");
        assert_eq!(shard_of("::ffff:127.0.0.1".parse().unwrap(), 2), mine);
        let mut batch = Batch::new(64, 64);
        let mut got = Vec::new();
        receive(&shards[mine], &mut batch, 40, &mut got).await;
        let other = tokio::time::timeout(
            Duration::from_millis(100),
            shards[1 - mine].recv_batch(&mut batch),
        );
        assert!(other.await.is_err(), "nothing reaches the other shard");
    }
}
