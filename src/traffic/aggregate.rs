//! Sampled packets → per-destination [`Target`]s for one interval. Pure: no clock, no sockets.
//!
//! Per destination address it counts packets and bytes, per flow class and per source. A flow class
//! is (protocol, source port, destination port, TCP flags, non-first fragment), with the source port
//! kept only where it means something: a privileged port or a known amplification reflector (a
//! client's ephemeral port would make every packet a class of its own). Each sample counts for the
//! packets it stands for (the sampling rate it was taken at, which may change within an interval).
//! [`Aggregator::finish`] turns the counts into rates and cuts them to the report's bounds: the
//! top [`MAX_TARGETS`] destinations, per destination the top flows with the rest folded into one
//! class per protocol (no ports, no flags) so that all of `MAX_FLOWS` still adds up, and the top
//! [`MAX_SOURCES`] sources.
//!
//! Memory is bounded whatever the traffic (a flood from random sources and ports): at most
//! [`MAX_ENTRIES`] distinct keys (destinations, flows and sources together) are tracked per
//! interval. Past that, packets to already-known destinations still count in the destination's and
//! protocol's totals; packets to new destinations are only counted as untracked.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::time::Duration;

use crate::telemetry::{Flow, MAX_FLOWS, MAX_SOURCES, MAX_TARGETS, Source, Target};

use crate::traffic::packet::{PROTO_TCP, PacketInfo};

/// Most keys (destinations + flows + sources) tracked in one interval: about 1 MB at worst.
pub const MAX_ENTRIES: usize = 16 * 1024;

/// Source ports above 1023 that are kept in flow keys: UDP services abused as amplifiers.
pub const AMPLIFICATION_PORTS: &[u16] = &[
    1434,  // MS SQL resolution
    1900,  // SSDP
    3283,  // Apple Remote Desktop
    3478,  // STUN
    3702,  // WS-Discovery
    5353,  // mDNS
    5683,  // CoAP
    10001, // Ubiquiti discovery
    11211, // memcached
    27015, // Steam / Source engine
    32414, // Plex
    33848, // Jenkins discovery
    37810, // DVR DHCPDiscover
];

/// Whether a source port identifies a service (and so belongs in a flow key).
pub fn meaningful_sport(port: u16) -> bool {
    port < 1024 || AMPLIFICATION_PORTS.contains(&port)
}

/// A flow class, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct FlowKey {
    proto: u8,
    sport: Option<u16>,
    dport: Option<u16>,
    tcp_flags: Option<u8>,
    fragment: bool,
}

impl FlowKey {
    fn of(p: &PacketInfo) -> FlowKey {
        FlowKey {
            proto: p.proto,
            sport: p.sport.filter(|&s| meaningful_sport(s)),
            dport: p.dport,
            tcp_flags: if p.proto == PROTO_TCP {
                p.tcp_flags
            } else {
                None
            },
            fragment: p.fragment,
        }
    }

    /// The class that flows which did not make the cut are folded into.
    fn folded(proto: u8) -> FlowKey {
        FlowKey {
            proto,
            sport: None,
            dport: None,
            tcp_flags: None,
            fragment: false,
        }
    }
}

/// Estimated packets and bytes: each sample counts for the sampling rate it was taken at.
#[derive(Debug, Clone, Copy, Default)]
struct Count {
    packets: u64,
    bytes: u64,
}

impl Count {
    /// One sample standing for `weight` packets of `bytes` each.
    fn add(&mut self, weight: u64, bytes: u64) {
        self.packets += weight;
        self.bytes += weight * bytes;
    }

    fn merge(&mut self, other: Count) {
        self.packets += other.packets;
        self.bytes += other.bytes;
    }
}

#[derive(Debug, Default)]
struct TargetAcc {
    total: Count,
    flows: HashMap<FlowKey, Count>,
    /// Packets whose flow could not be tracked (entry budget spent), per protocol.
    untracked_flows: HashMap<u8, Count>,
    sources: HashMap<IpAddr, u64>,
}

/// Counts one interval's samples. Fill with [`add`](Self::add), empty with [`finish`](Self::finish).
#[derive(Debug, Default)]
pub struct Aggregator {
    targets: HashMap<IpAddr, TargetAcc>,
    /// Keys tracked so far, against [`MAX_ENTRIES`].
    entries: usize,
    /// Samples read (not weighted).
    samples: u64,
    /// Packets the samples read stand for (weighted by their sampling rate).
    weighted: u64,
    /// Packets that samples lost in the socket queue (they passed the filter but were dropped
    /// before they could be read) stood for: the estimates are scaled up by
    /// `(weighted + lost) / weighted`, assuming the lost ones looked like the rest.
    lost: u64,
    /// Samples to destinations that could not be tracked (entry budget spent).
    untracked: u64,
}

impl Aggregator {
    pub fn new() -> Aggregator {
        Aggregator::default()
    }

    /// Counts one sampled packet, taken at one packet in `one_in` (so it stands for `one_in`
    /// packets: the rate may change within an interval).
    pub fn add(&mut self, p: &PacketInfo, one_in: u32) {
        self.samples += 1;
        let weight = u64::from(one_in.max(1));
        self.weighted += weight;
        let bytes = u64::from(p.wire_len);
        let target = match self.targets.entry(p.dst) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                if self.entries >= MAX_ENTRIES {
                    self.untracked += 1;
                    return;
                }
                self.entries += 1;
                e.insert(TargetAcc::default())
            }
        };
        target.total.add(weight, bytes);
        let key = FlowKey::of(p);
        match target.flows.get_mut(&key) {
            Some(c) => c.add(weight, bytes),
            None if self.entries < MAX_ENTRIES => {
                self.entries += 1;
                target.flows.entry(key).or_default().add(weight, bytes);
            }
            None => target
                .untracked_flows
                .entry(p.proto)
                .or_default()
                .add(weight, bytes),
        }
        match target.sources.get_mut(&p.src) {
            Some(n) => *n += weight,
            None if self.entries < MAX_ENTRIES => {
                self.entries += 1;
                target.sources.insert(p.src, weight);
            }
            None => {}
        }
    }

    /// Records `n` samples, taken at one in `one_in`, that passed the filter but were dropped before
    /// they could be read.
    pub fn add_lost(&mut self, n: u64, one_in: u32) {
        self.lost += n * u64::from(one_in.max(1));
    }

    /// Samples counted so far.
    pub fn samples(&self) -> u64 {
        self.samples
    }

    /// Samples to destinations that were not tracked for lack of room.
    pub fn untracked(&self) -> u64 {
        self.untracked
    }

    /// Estimated rates per destination over `interval`: largest first, within the report's bounds.
    pub fn finish(self, interval: Duration) -> Vec<Target> {
        let secs = interval.as_secs_f64().max(0.001);
        let loss = if self.weighted == 0 {
            1.0
        } else {
            (self.weighted + self.lost) as f64 / self.weighted as f64
        };
        let scale = loss / secs;
        let rate = |n: u64| (n as f64 * scale).round() as u64;
        let per_sec = |c: Count| (rate(c.packets), rate(c.bytes.saturating_mul(8)));

        let mut targets: Vec<(IpAddr, TargetAcc)> = self.targets.into_iter().collect();
        targets.sort_unstable_by(|a, b| {
            b.1.total
                .packets
                .cmp(&a.1.total.packets)
                .then(b.1.total.bytes.cmp(&a.1.total.bytes))
                .then(a.0.cmp(&b.0))
        });
        targets.truncate(MAX_TARGETS);
        targets
            .into_iter()
            .map(|(dst, acc)| {
                let (pps, bps) = per_sec(acc.total);
                let flows = top_flows(acc.flows, acc.untracked_flows)
                    .into_iter()
                    .map(|(k, c)| {
                        let (pps, bps) = per_sec(c);
                        Flow {
                            proto: k.proto,
                            sport: k.sport,
                            dport: k.dport,
                            tcp_flags: k.tcp_flags,
                            fragment: k.fragment,
                            pps,
                            bps,
                        }
                    })
                    .collect();
                let mut sources: Vec<(IpAddr, u64)> = acc.sources.into_iter().collect();
                sources.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
                sources.truncate(MAX_SOURCES);
                let sources = sources
                    .into_iter()
                    .map(|(addr, n)| Source { addr, pps: rate(n) })
                    .collect();
                Target {
                    dst,
                    pps,
                    bps,
                    flows,
                    sources,
                }
            })
            .collect()
    }
}

/// At most [`MAX_FLOWS`] flow classes, largest first: the top ones as they are, the rest folded into
/// one class per protocol (merged with an identical top class if there is one). With more than
/// `MAX_FLOWS` protocols in the rest, the smallest protocols are left out of the breakdown (they
/// still count in the target's totals).
fn top_flows(
    flows: HashMap<FlowKey, Count>,
    untracked: HashMap<u8, Count>,
) -> Vec<(FlowKey, Count)> {
    let mut all: Vec<(FlowKey, Count)> = flows.into_iter().collect();
    let by_size = |a: &(FlowKey, Count), b: &(FlowKey, Count)| {
        b.1.packets
            .cmp(&a.1.packets)
            .then(b.1.bytes.cmp(&a.1.bytes))
            .then_with(|| key_order(&a.0).cmp(&key_order(&b.0)))
    };
    all.sort_unstable_by(by_size);
    if all.len() <= MAX_FLOWS && untracked.is_empty() {
        return all;
    }
    // Keep as many top classes as leave room for the folded ones.
    let mut keep = all.len().min(MAX_FLOWS);
    let result = loop {
        let mut out: HashMap<FlowKey, Count> = all[..keep].iter().copied().collect();
        for (proto, c) in all[keep..]
            .iter()
            .map(|(k, c)| (k.proto, *c))
            .chain(untracked.iter().map(|(&p, &c)| (p, c)))
        {
            out.entry(FlowKey::folded(proto)).or_default().merge(c);
        }
        if out.len() <= MAX_FLOWS || keep == 0 {
            break out;
        }
        keep -= 1;
    };
    let mut result: Vec<(FlowKey, Count)> = result.into_iter().collect();
    result.sort_unstable_by(by_size);
    result.truncate(MAX_FLOWS);
    result
}

/// A total order on flow keys, for deterministic output among equal counts.
fn key_order(k: &FlowKey) -> (u8, Option<u16>, Option<u16>, Option<u8>, bool) {
    (k.proto, k.sport, k.dport, k.tcp_flags, k.fragment)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pkt(src: &str, dst: &str, proto: u8, sport: Option<u16>, dport: Option<u16>) -> PacketInfo {
        PacketInfo {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto,
            sport,
            dport,
            tcp_flags: None,
            fragment: false,
            wire_len: 100,
        }
    }

    #[test]
    fn counts_are_scaled_by_the_sampling_rate_and_the_interval() {
        let mut agg = Aggregator::new();
        for _ in 0..25 {
            agg.add(
                &pkt("198.51.100.1", "192.0.2.2", 17, Some(123), Some(4444)),
                8,
            );
        }
        // The rate changed within the interval: later samples stand for more packets.
        for _ in 0..10 {
            agg.add(
                &pkt("198.51.100.1", "192.0.2.2", 17, Some(123), Some(4444)),
                20,
            );
        }
        assert_eq!(agg.samples(), 35);
        let t = agg.finish(Duration::from_millis(500));
        assert_eq!(t.len(), 1);
        // (25 × 8 + 10 × 20) / 0.5 s
        assert_eq!((t[0].pps, t[0].bps), (800, 800 * 800));
        assert_eq!(
            t[0].flows,
            vec![Flow {
                proto: 17,
                sport: Some(123),
                dport: Some(4444),
                pps: 800,
                bps: 640_000,
                ..Flow::default()
            }]
        );
        assert_eq!(
            t[0].sources,
            vec![Source {
                addr: "198.51.100.1".parse().unwrap(),
                pps: 800
            }]
        );
    }

    #[test]
    fn lost_samples_scale_the_estimate_up() {
        let mut agg = Aggregator::new();
        for _ in 0..100 {
            agg.add(&pkt("198.51.100.1", "192.0.2.2", 17, Some(53), Some(1)), 1);
        }
        agg.add_lost(100, 1);
        for _ in 0..10 {
            agg.add(&pkt("198.51.100.1", "192.0.2.2", 17, Some(53), Some(1)), 20);
        }
        agg.add_lost(5, 20);
        // (100 + 100 + 10 × 20 + 5 × 20) / 1 s, all of it in the one flow.
        let t = agg.finish(Duration::from_secs(1));
        assert_eq!(t[0].pps, 500);
        assert_eq!(t[0].flows[0].pps, 500);
    }

    #[test]
    fn ephemeral_source_ports_are_dropped_and_amplifiers_kept() {
        let mut agg = Aggregator::new();
        agg.add(
            &pkt("198.51.100.1", "192.0.2.2", 17, Some(40000), Some(53)),
            1,
        );
        agg.add(
            &pkt("198.51.100.1", "192.0.2.2", 17, Some(40001), Some(53)),
            1,
        );
        agg.add(
            &pkt("198.51.100.1", "192.0.2.2", 17, Some(11211), Some(9)),
            1,
        );
        agg.add(&pkt("198.51.100.1", "192.0.2.2", 17, Some(19), Some(9)), 1);
        let t = agg.finish(Duration::from_secs(1));
        let flows: Vec<_> = t[0]
            .flows
            .iter()
            .map(|f| (f.sport, f.dport, f.pps))
            .collect();
        assert_eq!(
            flows,
            vec![
                (None, Some(53), 2),
                (Some(19), Some(9), 1),
                (Some(11211), Some(9), 1)
            ]
        );
    }

    #[test]
    fn tcp_flags_are_part_of_the_key_and_fragments_have_their_own_class() {
        let mut agg = Aggregator::new();
        let mut syn = pkt("198.51.100.1", "192.0.2.2", 6, Some(50000), Some(80));
        syn.tcp_flags = Some(0x02);
        let mut ack = syn;
        ack.tcp_flags = Some(0x10);
        let mut frag = pkt("198.51.100.1", "192.0.2.2", 17, None, None);
        frag.fragment = true;
        for p in [syn, syn, ack, frag] {
            agg.add(&p, 1);
        }
        let t = agg.finish(Duration::from_secs(1));
        let flows: Vec<_> = t[0]
            .flows
            .iter()
            .map(|f| (f.proto, f.tcp_flags, f.fragment, f.pps))
            .collect();
        assert_eq!(
            flows,
            vec![
                (6, Some(2), false, 2),
                (6, Some(0x10), false, 1),
                (17, None, true, 1)
            ]
        );
    }

    #[test]
    fn many_flows_fold_into_one_class_per_protocol_within_the_bound() {
        let mut agg = Aggregator::new();
        // 100 UDP destination ports (port p sent p+1 times, so the order is known) and 40 TCP ports.
        for port in 0..100u16 {
            for _ in 0..=port {
                agg.add(
                    &pkt("198.51.100.1", "192.0.2.2", 17, Some(53), Some(port)),
                    1,
                );
            }
        }
        for port in 0..40u16 {
            agg.add(
                &pkt("198.51.100.1", "192.0.2.2", 6, Some(50000), Some(port)),
                1,
            );
        }
        agg.add(&pkt("198.51.100.1", "192.0.2.2", 1, None, None), 1);
        let total: u64 = (1..=100u64).sum::<u64>() + 40 + 1;
        let t = agg.finish(Duration::from_secs(1));
        assert_eq!(t[0].pps, total);
        let flows = &t[0].flows;
        assert_eq!(flows.len(), MAX_FLOWS);
        assert_eq!(
            flows.iter().map(|f| f.pps).sum::<u64>(),
            total,
            "nothing lost in folding"
        );
        // The largest ports are kept as they are (the folded rest may well be larger).
        let kept: Vec<_> = flows
            .iter()
            .filter_map(|f| f.dport.map(|p| (p, f.pps)))
            .collect();
        assert_eq!(kept[..3], [(99, 100), (98, 99), (97, 98)]);
        assert_eq!(flows[0].dport, None, "the folded UDP rest leads: {flows:?}");
        // Folded classes: one per protocol, no ports, no flags.
        let folded: Vec<u8> = flows
            .iter()
            .filter(|f| f.dport.is_none())
            .map(|f| f.proto)
            .collect();
        let mut folded_sorted = folded.clone();
        folded_sorted.sort();
        assert_eq!(folded_sorted, vec![1, 6, 17]);
        assert!(flows.windows(2).all(|w| w[0].pps >= w[1].pps));
    }

    #[test]
    fn top_targets_and_sources_are_bounded() {
        let mut agg = Aggregator::new();
        for d in 0..100u8 {
            for s in 0..20u8 {
                for _ in 0..=d {
                    agg.add(
                        &pkt(
                            &format!("198.51.100.{s}"),
                            &format!("203.0.113.{d}"),
                            17,
                            None,
                            Some(1),
                        ),
                        1,
                    );
                }
            }
        }
        let t = agg.finish(Duration::from_secs(1));
        assert_eq!(t.len(), MAX_TARGETS);
        assert_eq!(t[0].dst, "203.0.113.99".parse::<IpAddr>().unwrap());
        assert!(t.windows(2).all(|w| w[0].pps >= w[1].pps));
        assert!(t.iter().all(|t| t.sources.len() == MAX_SOURCES));
    }

    #[test]
    fn a_random_source_flood_stays_within_the_entry_budget() {
        let mut agg = Aggregator::new();
        for i in 0..(2 * MAX_ENTRIES as u32) {
            let mut p = pkt("198.51.100.1", "192.0.2.2", 17, Some(53), Some(i as u16));
            p.src = IpAddr::V4(i.into());
            agg.add(&p, 1);
        }
        // A new destination once the budget is spent is not tracked, but counted.
        agg.add(&pkt("198.51.100.1", "192.0.2.9", 17, None, Some(1)), 1);
        assert!(agg.entries <= MAX_ENTRIES);
        assert_eq!(agg.untracked(), 1);
        let t = agg.finish(Duration::from_secs(1));
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].pps, 2 * MAX_ENTRIES as u64);
        assert_eq!(t[0].flows.iter().map(|f| f.pps).sum::<u64>(), t[0].pps);
    }

    #[test]
    fn nothing_sampled_gives_no_targets() {
        assert!(Aggregator::new().finish(Duration::from_secs(1)).is_empty());
    }
}
