//! Packet sampling: one `AF_PACKET` socket for all watched interfaces, with a classic BPF filter that
//! does the sampling in the kernel, so the probe only ever sees about [`TARGET_MAX`] packets per
//! second, whatever the load.
//!
//! The filter (see [`filter`]) keeps a packet when it is inbound (not `PACKET_OUTGOING`), arrived on
//! one of the watched interfaces (`SKF_AD_IFINDEX`), and `random() % N == 0` (`SKF_AD_RANDOM`); it
//! keeps the first [`SNAP_LEN`] bytes. The probe's loop picks `N` from the rate of samples
//! ([`next_one_in`]) and the filter is re-attached (`SO_ATTACH_FILTER` replaces the old one
//! atomically). The socket is read without blocking, drained every few milliseconds by the probe's
//! loop; its queue is the only buffer, bounded by `SO_RCVBUF`. What overflows it is counted by the
//! kernel (`PACKET_STATISTICS`) and corrects the estimates.

use std::collections::HashSet;
use std::io::{self, Read};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use socket2::{Domain, Protocol, SockFilter, Socket, Type};

use crate::telemetry::{MAX_PACKET_BYTES, MAX_PACKETS, Packet};
use crate::traffic::aggregate::Aggregator;
use crate::traffic::packet;

/// Bytes kept of each sampled packet: enough for Ethernet, two VLAN tags, IPv6 with a fragment header
/// and the start of TCP.
pub const SNAP_LEN: u32 = 128;
/// Samples per second above which `N` grows.
pub const TARGET_MAX: f64 = 2000.0;
/// Samples per second under which `N` shrinks (a quarter of the maximum, so that halving `N` cannot
/// push the rate straight back over it).
pub const TARGET_MIN: f64 = TARGET_MAX / 4.0;
/// The largest `N`.
pub const MAX_ONE_IN: u32 = 65536;
/// The most interfaces one filter checks (`jt` offsets are 8 bits).
pub const MAX_IFINDEXES: usize = 64;
/// Asked for; the kernel caps it at `net.core.rmem_max` (×2).
const RECV_BUFFER: usize = 1 << 20;
/// `PACKET_OUTGOING` from `<linux/if_packet.h>`.
const PACKET_OUTGOING: u32 = 4;

/// One classic BPF instruction (`struct sock_filter`), kept readable for tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Insn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const LD_ABS_W: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const MOD_K: u16 = (libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K) as u16;
const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

const fn ld_ancillary(what: i32) -> Insn {
    Insn {
        code: LD_ABS_W,
        jt: 0,
        jf: 0,
        k: (libc::SKF_AD_OFF + what) as u32,
    }
}

const fn jeq(k: u32, jt: u8, jf: u8) -> Insn {
    Insn {
        code: JEQ_K,
        jt,
        jf,
        k,
    }
}

const fn ret(k: u32) -> Insn {
    Insn {
        code: RET_K,
        jt: 0,
        jf: 0,
        k,
    }
}

/// The sampling filter (see the module documentation). With no interfaces it drops everything.
pub fn filter(ifindexes: &[u32], one_in: u32) -> Vec<Insn> {
    let ifindexes = &ifindexes[..ifindexes.len().min(MAX_IFINDEXES)];
    if ifindexes.is_empty() {
        return vec![ret(0)];
    }
    // 0 ld pkttype; 1 jeq outgoing → drop; 2 ld ifindex; 3.. jeq index → sample (one per
    // interface); then drop; then, sampling only, ld random, mod N, jeq 0 → keep, drop; keep.
    let drop_at = 3 + ifindexes.len();
    let mut f = Vec::with_capacity(drop_at + 6);
    f.push(ld_ancillary(libc::SKF_AD_PKTTYPE));
    f.push(jeq(PACKET_OUTGOING, (drop_at - 2) as u8, 0));
    f.push(ld_ancillary(libc::SKF_AD_IFINDEX));
    for (i, &index) in ifindexes.iter().enumerate() {
        // Over the remaining compares and the drop.
        f.push(jeq(index, (drop_at - (3 + i)) as u8, 0));
    }
    f.push(ret(0));
    if one_in > 1 {
        f.push(ld_ancillary(libc::SKF_AD_RANDOM));
        f.push(Insn {
            code: MOD_K,
            jt: 0,
            jf: 0,
            k: one_in,
        });
        f.push(jeq(0, 1, 0));
        f.push(ret(0));
    }
    f.push(ret(SNAP_LEN));
    f
}

fn to_kernel(prog: &[Insn]) -> Vec<SockFilter> {
    prog.iter()
        .map(|i| SockFilter::new(i.code, i.jt, i.jf, i.k))
        .collect()
}

/// The sampling rate for the next interval, from the samples per second that passed the filter
/// (read or lost) in this one: as many doublings as bring it back under [`TARGET_MAX`], or one
/// halving when it fell under [`TARGET_MIN`]; within `1..=`[`MAX_ONE_IN`].
pub fn next_one_in(one_in: u32, samples_per_sec: f64) -> u32 {
    let mut n = one_in.clamp(1, MAX_ONE_IN);
    let mut rate = samples_per_sec;
    if rate > TARGET_MAX {
        while rate > TARGET_MAX && n < MAX_ONE_IN {
            n *= 2;
            rate /= 2.0;
        }
    } else if rate < TARGET_MIN && n > 1 {
        n /= 2;
    }
    n
}

/// The packet socket and the filter in force on it.
#[derive(Debug)]
pub struct Sampler {
    socket: Socket,
    ifindexes: Vec<u32>,
    one_in: u32,
    buf: [u8; 256],
    /// Addresses the controller captures (from its answers), and the frames kept for them.
    pub capture: Capture,
}

/// Raw frames kept for the controller's captures: only to the addresses it asks for, bounded.
#[derive(Debug, Default)]
pub struct Capture {
    pub wanted: Arc<Mutex<HashSet<IpAddr>>>,
    pub frames: Vec<Packet>,
}

/// Why the sampler could not start.
#[derive(Debug, thiserror::Error)]
pub enum SamplerError {
    #[error(
        "deflect probe needs CAP_NET_RAW: run as root or `setcap cap_net_raw+ep $(which deflect)`"
    )]
    NeedCapNetRaw,
    #[error("packet socket: {0}")]
    Io(#[from] io::Error),
}

impl Sampler {
    /// Opens the socket with a filter that drops everything, and empties whatever arrived before.
    pub fn open() -> Result<Sampler, SamplerError> {
        let all = Protocol::from(i32::from((libc::ETH_P_ALL as u16).to_be()));
        let socket = Socket::new(Domain::PACKET, Type::RAW, Some(all)).map_err(|e| {
            if matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES)) {
                SamplerError::NeedCapNetRaw
            } else {
                SamplerError::Io(e)
            }
        })?;
        socket.attach_filter(&to_kernel(&filter(&[], 1)))?;
        socket.set_nonblocking(true)?;
        socket.set_recv_buffer_size(RECV_BUFFER)?;
        let mut s = Sampler {
            socket,
            ifindexes: Vec::new(),
            one_in: 1,
            buf: [0; 256],
            capture: Capture::default(),
        };
        s.drain(&mut Aggregator::new(), usize::MAX)?;
        Ok(s)
    }

    /// The sampling rate in force.
    pub fn one_in(&self) -> u32 {
        self.one_in
    }

    /// Watches `ifindexes` at one packet in `one_in`; re-attaches the filter when either changed.
    pub fn configure(&mut self, ifindexes: &[u32], one_in: u32) -> io::Result<()> {
        let one_in = one_in.clamp(1, MAX_ONE_IN);
        if ifindexes == self.ifindexes.as_slice() && one_in == self.one_in {
            return Ok(());
        }
        self.socket
            .attach_filter(&to_kernel(&filter(ifindexes, one_in)))?;
        self.ifindexes = ifindexes.to_vec();
        self.one_in = one_in;
        Ok(())
    }

    /// Reads what is queued, at most `budget` packets, into `agg`, with the samples the queue
    /// dropped since the last call; returns how many samples were read and lost.
    pub fn drain(&mut self, agg: &mut Aggregator, budget: usize) -> io::Result<(u64, u64)> {
        let mut read = 0;
        let wanted = self
            .capture
            .wanted
            .lock()
            .map(|w| w.clone())
            .unwrap_or_default();
        while read < budget {
            match (&self.socket).read(&mut self.buf) {
                Ok(len) => {
                    read += 1;
                    if let Some(info) = packet::parse(&self.buf[..len]) {
                        agg.add(&info, self.one_in);
                        if !wanted.is_empty()
                            && wanted.contains(&info.dst)
                            && self.capture.frames.len() < MAX_PACKETS
                        {
                            let n = len.min(MAX_PACKET_BYTES);
                            self.capture.frames.push(Packet {
                                time_ms: SystemTime::now()
                                    .duration_since(UNIX_EPOCH)
                                    .map_or(0, |d| d.as_millis() as u64),
                                orig_len: info.wire_len,
                                data: hex::encode(&self.buf[..n]),
                            });
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // Drops happen at the rate in force now (the filter only changes between drains).
        let (_, lost) = self.statistics()?;
        agg.add_lost(u64::from(lost), self.one_in);
        Ok((read as u64, u64::from(lost)))
    }

    /// Packets that passed the filter and packets dropped for a full queue since the last call.
    fn statistics(&self) -> io::Result<(u32, u32)> {
        crate::sys::packet_statistics(&self.socket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A classic BPF interpreter for the instructions the filter uses, to check its logic without a
    /// kernel: (pkttype, ifindex, random) → bytes kept. Panics on anything else, or a jump out.
    fn run(prog: &[Insn], pkttype: u32, ifindex: u32, random: u32) -> u32 {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_ABS_W => {
                    a = match i.k.wrapping_sub(libc::SKF_AD_OFF as u32) as i32 {
                        libc::SKF_AD_PKTTYPE => pkttype,
                        libc::SKF_AD_IFINDEX => ifindex,
                        libc::SKF_AD_RANDOM => random,
                        other => panic!("load {other}"),
                    }
                }
                JEQ_K => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                MOD_K => a %= i.k,
                RET_K => return i.k,
                other => panic!("opcode {other:#x}"),
            }
        }
    }

    #[test]
    fn filter_keeps_inbound_on_watched_interfaces_one_in_n() {
        let prog = filter(&[7, 9], 4);
        for pkttype in [0, 1, 2, 3] {
            assert_eq!(
                run(&prog, pkttype, 7, 8),
                SNAP_LEN,
                "host/broadcast/multicast/otherhost"
            );
            assert_eq!(run(&prog, pkttype, 9, 0), SNAP_LEN);
            assert_eq!(run(&prog, pkttype, 9, 5), 0, "not the one in four");
            assert_eq!(run(&prog, pkttype, 8, 0), 0, "not a watched interface");
        }
        assert_eq!(run(&prog, 4, 7, 0), 0, "outgoing");
        let kept = (0..1000).filter(|&r| run(&prog, 0, 7, r) > 0).count();
        assert_eq!(kept, 250);
        // N = 1: no random step at all.
        let every = filter(&[7], 1);
        assert!(every.iter().all(|i| i.code != MOD_K));
        assert!((0..100).all(|r| run(&every, 0, 7, r) == SNAP_LEN));
        // Nothing watched: nothing kept.
        assert_eq!(run(&filter(&[], 1), 0, 7, 0), 0);
    }

    #[test]
    fn filter_jumps_stay_in_range_with_the_most_interfaces() {
        let many: Vec<u32> = (1..=200).collect();
        let prog = filter(&many, 65536);
        assert_eq!(run(&prog, 0, 64, 65536 * 3), SNAP_LEN);
        assert_eq!(run(&prog, 0, 65, 0), 0, "past MAX_IFINDEXES");
        assert_eq!(run(&prog, 4, 1, 0), 0);
    }

    #[test]
    fn next_one_in_doubles_as_needed_and_halves_one_step() {
        assert_eq!(next_one_in(1, 100.0), 1);
        assert_eq!(next_one_in(1, 1999.0), 1);
        assert_eq!(next_one_in(1, 2001.0), 2);
        // 100k samples/s at N=1 → N=64 gives 1562/s.
        assert_eq!(next_one_in(1, 100_000.0), 64);
        assert_eq!(next_one_in(64, 1000.0), 64);
        assert_eq!(next_one_in(64, 400.0), 32);
        assert_eq!(next_one_in(1, 0.0), 1);
        assert_eq!(next_one_in(MAX_ONE_IN, 1e12), MAX_ONE_IN);
        assert_eq!(next_one_in(0, 0.0), 1);
    }

    #[test]
    fn stable_under_a_steady_load() {
        // Whatever the offered load, the rate settles and N stops moving.
        for load in [10.0, 3_000.0, 50_000.0, 1e6, 1e8] {
            let mut n = 1;
            for _ in 0..40 {
                n = next_one_in(n, load / f64::from(n));
            }
            let settled = next_one_in(n, load / f64::from(n));
            assert_eq!(settled, n, "load {load}");
            let rate = load / f64::from(n);
            assert!(
                rate <= TARGET_MAX && (rate >= TARGET_MIN || n == 1),
                "load {load}, N {n}"
            );
        }
    }
}
