//! Sampled packets → per-destination [`Target`]s for one interval. Pure: no clock, no sockets.
//!
//! Per destination address it counts packets and bytes, per flow class and per source. A flow class
//! is (protocol, source port, destination port, TCP flags, non-first fragment), with the source port
//! kept only where it means something: a privileged port or a known amplification reflector (a
//! client's ephemeral port would make every packet a class of its own). Each sample counts for the
//! packets it stands for (the sampling rate it was taken at, which may change within an interval).
//! [`Aggregator::finish`] turns the counts into rates and cuts them to the report's bounds: the
//! top [`MAX_TARGETS`] destinations, per destination the top flows with the rest folded so that
//! all of `MAX_FLOWS` still adds up, and the top [`MAX_SOURCES`] sources.
//!
//! Folding never crosses a traffic [`Class`]: flows are only merged with flows of the same class,
//! so every class's rate in a report is whole, and detection judges the same totals whatever was
//! cut. The fold is as fine as the bound allows, tried in this order for as many top flows kept as
//! possible: without the destination port (a reflection to spread ports keeps its source port),
//! without the source port (a SYN flood from spread ports keeps its destination port), by class
//! with what defines it (protocol, TCP flags, an amplifier's port, fragments), and last one flow
//! per class, named after its largest member.
//!
//! Prefix rollups: every sample also counts, flows and sources alike, in the rollup of its
//! destination's /24 or /64 ([`crate::telemetry::rollup_of`]), whether or not its destination
//! is tracked or kept in the report: carpet bombing spreads a flood over a whole prefix, a few
//! samples per address, and only whole sums show it. At most [`MAX_ROLLUPS`] rollups are
//! reported, the busiest; at most [`MAX_ROLLUP_KEYS`] are tracked per interval (samples to
//! further prefixes count as untracked).
//!
//! Trusted sources ([`Aggregator::with_trusted`]) are taken out before anything else: their
//! samples count only in their destination's `trusted_pps`/`trusted_bps`, in no flow, no class
//! and no rollup, so a speed-test server or a backup stream can never start an attack.
//!
//! Memory is bounded whatever the traffic (a flood from random sources and ports): at most
//! [`MAX_ENTRIES`] distinct keys (destinations, flows and sources together) are tracked per
//! interval. Past that, packets to already-known destinations still count in the destination's and
//! protocol's totals; packets to new destinations are only counted as untracked.

use std::collections::hash_map::Entry;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use crate::telemetry::{
    Flow, MAX_FLOWS, MAX_ROLLUPS, MAX_SOURCES, MAX_TARGETS, Rollup, Source, Target, rollup_of,
};
use crate::traffic::class::{Class, amplifier};
use crate::traffic::packet::{PROTO_TCP, PacketInfo};

/// Bounded by [`MAX_ENTRIES`] and [`MAX_ROLLUP_KEYS`].
type HashMap<K, V> = crate::traffic::FastMap<K, V>;
type HashSet<K> = crate::traffic::FastSet<K>;

/// Most keys (destinations + flows + sources) tracked in one interval: about 1 MB at worst.
pub const MAX_ENTRIES: usize = 16 * 1024;

/// Most prefix rollups tracked in one interval (their flows and sources count against
/// [`MAX_ENTRIES`], past which they fold by class as a target's do).
pub const MAX_ROLLUP_KEYS: usize = 1024;

/// Whether a source port identifies a service (and so belongs in a flow key): a privileged port,
/// or a UDP service abused as an amplifier.
pub fn meaningful_sport(port: u16) -> bool {
    port < 1024 || amplifier(port).is_some()
}

/// A flow class, as reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FlowKey {
    proto: u8,
    sport: Option<u16>,
    dport: Option<u16>,
    tcp_flags: Option<u8>,
    fragment: bool,
}

/// An address as a map key, hashed as one word: the derived hash of `IpAddr` writes its tag, a
/// length and the octets apart, and an address is hashed three or four times per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Addr(IpAddr);

impl std::hash::Hash for Addr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(match self.0 {
            IpAddr::V4(a) => 1 << 64 | u128::from(a.to_bits()),
            IpAddr::V6(a) => a.to_bits(),
        });
    }
}

/// Hashed as one word (every field packed): a key is hashed four times per sample, and the
/// derived hash wrote each field (and each `Option`'s tag) apart.
impl std::hash::Hash for FlowKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        let opt16 = |v: Option<u16>| v.map_or(0, |p| 0x1_0000 | u64::from(p));
        state.write_u64(
            u64::from(self.proto)
                | opt16(self.sport) << 8
                | opt16(self.dport) << 25
                | self.tcp_flags.map_or(0, |f| 0x100 | u64::from(f)) << 42
                | u64::from(self.fragment) << 51,
        );
    }
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

    fn class(&self) -> Class {
        Class::of_parts(self.proto, self.sport, self.tcp_flags, self.fragment)
    }

    /// What a flow that did not make the cut is folded into, at `level`; always of its class.
    fn folded(&self, level: Fold) -> FlowKey {
        match level {
            Fold::NoDport => FlowKey {
                dport: None,
                ..*self
            },
            Fold::NoSport => FlowKey {
                sport: self.class_sport(),
                ..*self
            },
            Fold::Class => FlowKey {
                sport: self.class_sport(),
                dport: None,
                ..*self
            },
        }
    }

    /// The source port where it decides the class (a UDP amplifier's), else none.
    fn class_sport(&self) -> Option<u16> {
        self.sport
            .filter(|&p| self.proto == PROTO_UDP && !self.fragment && amplifier(p).is_some())
    }
}

const PROTO_UDP: u8 = 17;

/// How far flows that did not make the cut are folded, finest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fold {
    NoDport,
    NoSport,
    Class,
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
    /// Packets whose flow could not be tracked (entry budget spent), folded by class (at most a
    /// few hundred keys: TCP flag combinations, amplifier ports, protocols).
    untracked_flows: HashMap<FlowKey, Count>,
    sources: HashMap<Addr, u64>,
    /// From trusted sources: in nothing above.
    trusted: Count,
}

/// One /24 or /64: like a target, plus how many destinations were seen in it.
#[derive(Debug, Default)]
struct RollupAcc {
    acc: TargetAcc,
    addresses: u32,
}

/// What one interval gives: the report's targets and rollups.
#[derive(Debug, Default)]
pub struct Finished {
    pub targets: Vec<Target>,
    pub rollups: Vec<Rollup>,
}

/// Counts one interval's samples. Fill with [`add`](Self::add), empty with [`finish`](Self::finish).
#[derive(Debug, Default)]
pub struct Aggregator {
    targets: HashMap<Addr, TargetAcc>,
    rollups: HashMap<IpNet, RollupAcc>,
    /// Sources never counted as attack traffic (`detection.trusted_sources`).
    trusted: Vec<IpNet>,
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
        let trusted = !self.trusted.is_empty() && self.trusted.iter().any(|n| n.contains(&p.src));
        let mut new_target = false;
        let target = match self.targets.entry(Addr(p.dst)) {
            Entry::Occupied(e) => Some(e.into_mut()),
            Entry::Vacant(_) if self.entries >= MAX_ENTRIES => {
                self.untracked += 1;
                None
            }
            Entry::Vacant(e) => {
                self.entries += 1;
                new_target = true;
                Some(e.insert(TargetAcc::default()))
            }
        };
        if trusted {
            if let Some(t) = target {
                t.trusted.add(weight, bytes);
            }
            return;
        }
        let key = FlowKey::of(p);
        if let Some(t) = target {
            count(t, &mut self.entries, key, p.src, weight, bytes);
        }
        // The rollup counts every sample, its destination tracked or not.
        let prefix = rollup_of(p.dst);
        let full = self.rollups.len() >= MAX_ROLLUP_KEYS;
        let rollup = match self.rollups.entry(prefix) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(_) if full => return,
            Entry::Vacant(e) => e.insert(RollupAcc::default()),
        };
        if new_target {
            rollup.addresses = rollup.addresses.saturating_add(1);
        }
        count(
            &mut rollup.acc,
            &mut self.entries,
            key,
            p.src,
            weight,
            bytes,
        );
    }

    /// Sources whose packets are never counted as attack traffic, only as trusted.
    pub fn with_trusted(mut self, trusted: Vec<IpNet>) -> Aggregator {
        self.trusted = trusted;
        self
    }

    /// The trusted sources in force (kept across intervals by whoever owns the aggregator).
    pub fn trusted(&self) -> &[IpNet] {
        &self.trusted
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
        self.finish_all(interval).targets
    }

    /// Estimated rates per destination and per rollup prefix over `interval`, largest first,
    /// within the report's bounds.
    pub fn finish_all(self, interval: Duration) -> Finished {
        let secs = interval.as_secs_f64().max(0.001);
        let loss = if self.weighted == 0 {
            1.0
        } else {
            (self.weighted + self.lost) as f64 / self.weighted as f64
        };
        let scale = loss / secs;
        let rate = |n: u64| (n as f64 * scale).round() as u64;
        let per_sec = |c: Count| (rate(c.packets), rate(c.bytes.saturating_mul(8)));

        // What a target or a rollup reports: rates, flows folded within their class, top sources.
        let breakdown = |acc: TargetAcc| {
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
                .collect::<Vec<_>>();
            let mut sources: Vec<(IpAddr, u64)> =
                acc.sources.into_iter().map(|(a, n)| (a.0, n)).collect();
            sources.sort_unstable_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            sources.truncate(MAX_SOURCES);
            let sources = sources
                .into_iter()
                .map(|(addr, n)| Source { addr, pps: rate(n) })
                .collect::<Vec<_>>();
            (pps, bps, flows, sources)
        };

        let mut targets: Vec<(IpAddr, TargetAcc)> =
            self.targets.into_iter().map(|(a, t)| (a.0, t)).collect();
        targets.sort_unstable_by(|a, b| {
            b.1.total
                .packets
                .cmp(&a.1.total.packets)
                .then(b.1.total.bytes.cmp(&a.1.total.bytes))
                .then(b.1.trusted.packets.cmp(&a.1.trusted.packets))
                .then(a.0.cmp(&b.0))
        });
        targets.truncate(MAX_TARGETS);
        let targets = targets
            .into_iter()
            .map(|(dst, acc)| {
                let (trusted_pps, trusted_bps) = per_sec(acc.trusted);
                let (pps, bps, flows, sources) = breakdown(acc);
                Target {
                    dst,
                    pps,
                    bps,
                    flows,
                    sources,
                    trusted_pps,
                    trusted_bps,
                }
            })
            .collect();
        let mut rollups: Vec<(IpNet, RollupAcc)> = self.rollups.into_iter().collect();
        rollups.sort_unstable_by(|a, b| {
            b.1.acc
                .total
                .packets
                .cmp(&a.1.acc.total.packets)
                .then(b.1.acc.total.bytes.cmp(&a.1.acc.total.bytes))
                .then(a.0.cmp(&b.0))
        });
        rollups.truncate(MAX_ROLLUPS);
        let rollups = rollups
            .into_iter()
            .map(|(prefix, r)| {
                let addresses = r.addresses;
                let (pps, bps, flows, sources) = breakdown(r.acc);
                Rollup {
                    prefix,
                    addresses,
                    pps,
                    bps,
                    flows,
                    sources,
                }
            })
            .collect();
        Finished { targets, rollups }
    }
}

/// Counts one sample in `acc`: its total, its flow (folded by class once the entry budget is
/// spent) and its source (left out once it is).
fn count(
    acc: &mut TargetAcc,
    entries: &mut usize,
    key: FlowKey,
    src: IpAddr,
    weight: u64,
    bytes: u64,
) {
    acc.total.add(weight, bytes);
    match acc.flows.get_mut(&key) {
        Some(c) => c.add(weight, bytes),
        None if *entries < MAX_ENTRIES => {
            *entries += 1;
            acc.flows.entry(key).or_default().add(weight, bytes);
        }
        None => acc
            .untracked_flows
            .entry(key.folded(Fold::Class))
            .or_default()
            .add(weight, bytes),
    }
    match acc.sources.get_mut(&Addr(src)) {
        Some(n) => *n += weight,
        None if *entries < MAX_ENTRIES => {
            *entries += 1;
            acc.sources.insert(Addr(src), weight);
        }
        None => {}
    }
}

/// At most [`MAX_FLOWS`] flows, largest first: as many top flows as they are as the bound allows,
/// the rest folded within their class (see the module documentation). Every class keeps its whole
/// count.
///
/// How many flows a fold leaves is known before it is made: the top flows, plus the folded keys of
/// the rest that are not among them. Those keys are kept per fold level while flows move from the
/// top to the rest one by one, so a target of thousands of flows costs one pass over them, not one
/// per top flow given up (a flood to spread ports gives up most of them).
fn top_flows(
    flows: HashMap<FlowKey, Count>,
    untracked: HashMap<FlowKey, Count>,
) -> Vec<(FlowKey, Count)> {
    let mut all: Vec<(FlowKey, Count)> = flows.into_iter().collect();
    all.sort_unstable_by(by_size);
    if all.len() <= MAX_FLOWS && untracked.is_empty() {
        return all;
    }
    let untracked: Vec<(FlowKey, Count)> = untracked.into_iter().collect();
    const LEVELS: [Fold; 3] = [Fold::NoDport, Fold::NoSport, Fold::Class];
    let first = all.len().min(MAX_FLOWS);
    // Per level, the keys the rest (and the untracked) fold into when `keep` flows are kept.
    let mut folded = LEVELS.map(|level| {
        all[first..]
            .iter()
            .chain(&untracked)
            .map(|(k, _)| k.folded(level))
            .collect::<HashSet<FlowKey>>()
    });
    for keep in (0..=first).rev() {
        let (top, rest) = all.split_at(keep);
        // The finer folds, the one that leaves fewest flows when both fit (it dropped the field
        // that was spread).
        let fine = LEVELS
            .into_iter()
            .zip(&folded)
            .map(|(level, keys)| {
                let shared = top.iter().filter(|(k, _)| keys.contains(k)).count();
                (level, keep + keys.len() - shared)
            })
            .filter(|&(_, n)| n <= MAX_FLOWS)
            .min_by_key(|&(_, n)| n);
        if let Some((level, _)) = fine {
            return sorted(fold(top, rest, &untracked, |k| k.folded(level)));
        }
        if keep + Class::ALL.len() <= MAX_FLOWS {
            return sorted(one_per_class(top, rest, &untracked));
        }
        // The last top flow goes to the rest.
        if let Some((k, _)) = keep.checked_sub(1).map(|i| all[i]) {
            for (level, keys) in LEVELS.into_iter().zip(&mut folded) {
                keys.insert(k.folded(level));
            }
        }
    }
    // Unreachable: keep 0 leaves at most one flow per class.
    sorted(fold(&[], &all, &untracked, |k| k.folded(Fold::Class)))
}

/// `top` as they are, and the rest one flow per class, named after the class's largest folded
/// flow: at most ten.
fn one_per_class(
    top: &[(FlowKey, Count)],
    rest: &[(FlowKey, Count)],
    untracked: &[(FlowKey, Count)],
) -> HashMap<FlowKey, Count> {
    let mut largest: HashMap<Class, (FlowKey, u64)> = HashMap::default();
    for (k, c) in rest.iter().chain(untracked) {
        let k = k.folded(Fold::Class);
        let e = largest.entry(k.class()).or_insert((k, 0));
        if c.packets > e.1 || (c.packets == e.1 && key_order(&k) < key_order(&e.0)) {
            *e = (k, c.packets);
        }
    }
    fold(top, rest, untracked, |k| largest[&k.class()].0)
}

/// `top` as they are, and `rest` and `untracked` merged into what `to` makes of their keys.
fn fold(
    top: &[(FlowKey, Count)],
    rest: &[(FlowKey, Count)],
    untracked: &[(FlowKey, Count)],
    to: impl Fn(&FlowKey) -> FlowKey,
) -> HashMap<FlowKey, Count> {
    let mut out: HashMap<FlowKey, Count> = top.iter().copied().collect();
    for (k, c) in rest.iter().chain(untracked) {
        out.entry(to(k)).or_default().merge(*c);
    }
    out
}

fn sorted(flows: HashMap<FlowKey, Count>) -> Vec<(FlowKey, Count)> {
    let mut v: Vec<(FlowKey, Count)> = flows.into_iter().collect();
    v.sort_unstable_by(by_size);
    v
}

/// Largest first; ties in a fixed order.
fn by_size(a: &(FlowKey, Count), b: &(FlowKey, Count)) -> std::cmp::Ordering {
    b.1.packets
        .cmp(&a.1.packets)
        .then(b.1.bytes.cmp(&a.1.bytes))
        .then_with(|| key_order(&a.0).cmp(&key_order(&b.0)))
}

/// A total order on flow keys, for deterministic output among equal counts.
fn key_order(k: &FlowKey) -> (u8, Option<u16>, Option<u16>, Option<u8>, bool) {
    (k.proto, k.sport, k.dport, k.tcp_flags, k.fragment)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

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
    fn many_flows_fold_within_their_class_and_within_the_bound() {
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
        // Folded: no destination port, the amplifier's source port kept (it decides the class).
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

    /// Packets per class, as the flows of a report say.
    fn by_class(flows: &[Flow]) -> HashMap<Class, u64> {
        let mut m = HashMap::new();
        for f in flows {
            *m.entry(Class::of(f)).or_default() += f.pps;
        }
        m
    }

    #[test]
    fn a_reflection_to_spread_ports_stays_one_class_with_its_source_port() {
        // NTP answers to 2,000 destination ports (what spoofed requests from random ports give),
        // beside a web server's ACKs: the report's bound is 32 flows.
        let mut agg = Aggregator::new();
        for i in 0..2000u16 {
            for _ in 0..3 {
                agg.add(
                    &pkt("198.51.100.1", "192.0.2.2", 17, Some(123), Some(1024 + i)),
                    16,
                );
            }
        }
        let mut ack = pkt("198.51.100.7", "192.0.2.2", 6, Some(51000), Some(443));
        ack.tcp_flags = Some(0x10);
        for _ in 0..500 {
            agg.add(&ack, 16);
        }
        let t = agg.finish(Duration::from_secs(1));
        let flows = &t[0].flows;
        assert!(flows.len() <= MAX_FLOWS);
        let classes = by_class(flows);
        assert_eq!(classes[&Class::UdpAmp], 2000 * 3 * 16, "{flows:?}");
        assert_eq!(classes[&Class::TcpAck], 500 * 16);
        assert_eq!(
            classes.get(&Class::Udp),
            None,
            "no NTP counted as plain UDP"
        );
        // The fold keeps the source port: the bulk reads `udp sport 123`, any destination port.
        let bulk = &flows[0];
        assert_eq!(
            (bulk.proto, bulk.sport, bulk.dport),
            (17, Some(123), None),
            "{flows:?}"
        );
        assert!(flows.iter().all(|f| f.proto != 17 || f.sport == Some(123)));
    }

    #[test]
    fn a_syn_flood_from_spread_ports_keeps_its_destination_port_and_flags() {
        let mut agg = Aggregator::new();
        for sport in 1..1000u16 {
            let mut syn = pkt("198.51.100.1", "192.0.2.2", 6, Some(sport), Some(80));
            syn.tcp_flags = Some(0x02);
            agg.add(&syn, 1);
            agg.add(&syn, 1);
        }
        let t = agg.finish(Duration::from_secs(1));
        let flows = &t[0].flows;
        assert_eq!(by_class(flows), HashMap::from([(Class::TcpSyn, 999 * 2)]));
        assert!(
            flows
                .iter()
                .all(|f| f.dport == Some(80) && f.tcp_flags == Some(0x02)),
            "{flows:?}"
        );
    }

    #[test]
    fn flows_past_the_entry_budget_still_count_in_their_class() {
        let mut agg = Aggregator::new();
        // Spend the budget on a reflection to spread ports from spread sources...
        for i in 0..MAX_ENTRIES as u32 {
            let mut p = pkt("198.51.100.1", "192.0.2.2", 17, Some(389), Some(i as u16));
            p.src = IpAddr::V4((0x0a00_0000 + i).into());
            agg.add(&p, 1);
        }
        // ...then a SYN flood and more reflection on keys never seen: untracked, not unclassified.
        for i in 0..300u16 {
            let mut syn = pkt("198.51.100.2", "192.0.2.2", 6, Some(i % 1000), Some(i));
            syn.tcp_flags = Some(0x02);
            agg.add(&syn, 1);
            agg.add(
                &pkt("198.51.100.3", "192.0.2.2", 17, Some(1900), Some(60000 - i)),
                1,
            );
        }
        let t = agg.finish(Duration::from_secs(1));
        let classes = by_class(&t[0].flows);
        assert_eq!(classes[&Class::TcpSyn], 300);
        assert!(classes[&Class::UdpAmp] >= MAX_ENTRIES as u64 / 2 + 300);
        assert_eq!(classes.values().sum::<u64>(), t[0].pps);
        assert_eq!(
            classes.get(&Class::TcpAck),
            None,
            "no SYN counted as established"
        );
    }

    #[test]
    fn rollups_stay_whole_past_the_top_destinations_and_the_entry_budget() {
        let mut agg = Aggregator::new();
        // 1,000 destinations over four /24s and a /64, one sample each, and a random-source
        // flood that spends the entry budget first.
        for i in 0..(MAX_ENTRIES as u32) {
            let mut p = pkt("198.51.100.1", "192.0.2.2", 17, Some(53), Some(i as u16));
            p.src = IpAddr::V4((0x0a00_0000 + i).into());
            agg.add(&p, 1);
        }
        for i in 0..1000u32 {
            let dst = if i % 5 == 4 {
                format!("2001:db8:100:7::{i:x}")
            } else {
                format!("203.0.{}.{}", 110 + i % 5, i % 250)
            };
            agg.add(&pkt("198.51.100.9", &dst, 17, Some(123), Some(4444)), 10);
        }
        let f = agg.finish_all(Duration::from_secs(1));
        assert!(f.targets.len() <= MAX_TARGETS);
        let by: HashMap<String, u64> = f
            .rollups
            .iter()
            .map(|r| (r.prefix.to_string(), r.pps))
            .collect();
        for n in 110..114 {
            assert_eq!(by[&format!("203.0.{n}.0/24")], 2000, "{by:?}");
        }
        assert_eq!(by["2001:db8:100:7::/64"], 2000);
        assert_eq!(by["192.0.2.0/24"], MAX_ENTRIES as u64);
        // Each rollup's flows add up to its rate, by class.
        for r in &f.rollups {
            assert_eq!(r.flows.iter().map(|f| f.pps).sum::<u64>(), r.pps, "{r:?}");
            assert!(r.flows.len() <= MAX_FLOWS && r.sources.len() <= MAX_SOURCES);
        }
    }

    #[test]
    fn trusted_sources_count_in_no_flow_and_no_rollup() {
        let mut agg = Aggregator::new().with_trusted(vec!["192.0.2.0/28".parse().unwrap()]);
        agg.add(
            &pkt("192.0.2.10", "203.0.113.7", 17, Some(5201), Some(5201)),
            1000,
        );
        agg.add(
            &pkt("192.0.2.20", "203.0.113.7", 17, Some(123), Some(4444)),
            10,
        );
        assert_eq!(agg.trusted().len(), 1);
        let f = agg.finish_all(Duration::from_secs(1));
        assert_eq!(f.targets.len(), 1);
        let t = &f.targets[0];
        assert_eq!((t.pps, t.trusted_pps, t.trusted_bps), (10, 1000, 800_000));
        assert_eq!(t.flows.iter().map(|f| f.pps).sum::<u64>(), 10);
        assert!(t.sources.iter().all(|s| s.addr.to_string() == "192.0.2.20"));
        assert_eq!(f.rollups.len(), 1);
        assert_eq!(f.rollups[0].pps, 10);
    }

    /// What `top_flows` did before it kept the folded keys per level: every fold made in full for
    /// each number of top flows kept, largest first (the last resort, one flow per class, is
    /// shared). The answers must be the same.
    fn top_flows_by_trying_each_keep(
        flows: HashMap<FlowKey, Count>,
        untracked: HashMap<FlowKey, Count>,
    ) -> Vec<(FlowKey, Count)> {
        let mut all: Vec<(FlowKey, Count)> = flows.into_iter().collect();
        all.sort_unstable_by(by_size);
        if all.len() <= MAX_FLOWS && untracked.is_empty() {
            return all;
        }
        let untracked: Vec<(FlowKey, Count)> = untracked.into_iter().collect();
        for keep in (0..=all.len().min(MAX_FLOWS)).rev() {
            let (top, rest) = all.split_at(keep);
            let fine = [Fold::NoDport, Fold::NoSport, Fold::Class]
                .into_iter()
                .map(|level| fold(top, rest, &untracked, |k| k.folded(level)))
                .filter(|out| out.len() <= MAX_FLOWS)
                .min_by_key(|out| out.len());
            if let Some(out) = fine {
                return sorted(out);
            }
            if keep + Class::ALL.len() <= MAX_FLOWS {
                return sorted(one_per_class(top, rest, &untracked));
            }
        }
        sorted(fold(&[], &all, &untracked, |k| k.folded(Fold::Class)))
    }

    /// Flow keys near what floods make: a few protocols, amplifier and other source ports, ports
    /// spread or not, flags, fragments.
    fn flow_keys() -> impl proptest::strategy::Strategy<Value = Vec<(FlowKey, Count)>> {
        use proptest::prelude::*;
        proptest::collection::vec(
            (
                proptest::sample::select(vec![6u8, 17, 1, 47]),
                proptest::option::of(proptest::sample::select(vec![
                    123u16, 53, 11211, 1900, 19, 389, 80, 443, 22,
                ])),
                proptest::option::of(prop_oneof![0u16..8, 1024u16..1100]),
                proptest::option::of(proptest::sample::select(vec![0x02u8, 0x10, 0x12, 0x04])),
                any::<bool>(),
                1u64..50,
            )
                .prop_map(|(proto, sport, dport, tcp_flags, fragment, n)| {
                    let key = FlowKey {
                        proto,
                        sport,
                        dport,
                        tcp_flags: tcp_flags.filter(|_| proto == PROTO_TCP),
                        fragment,
                    };
                    (
                        key,
                        Count {
                            packets: n,
                            bytes: n * 100,
                        },
                    )
                }),
            0..300,
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(1024))]

        #[test]
        fn top_flows_answer_as_trying_each_keep_did(flows in flow_keys(), untracked in flow_keys()) {
            let to_maps = |v: Vec<(FlowKey, Count)>| {
                let mut fast: super::HashMap<FlowKey, Count> = super::HashMap::default();
                for (k, c) in v {
                    fast.entry(k).or_default().merge(c);
                }
                fast
            };
            let (flows, untracked) = (to_maps(flows), to_maps(untracked));
            let reference = top_flows_by_trying_each_keep(
                flows.iter().map(|(k, c)| (*k, *c)).collect(),
                untracked.iter().map(|(k, c)| (*k, *c)).collect(),
            );
            let got = top_flows(flows, untracked);
            let show = |v: &[(FlowKey, Count)]| v.iter().map(|(k, c)| (*k, c.packets, c.bytes)).collect::<Vec<_>>();
            proptest::prop_assert_eq!(show(&got), show(&reference));
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

        /// Whatever the traffic, each rollup holds every untrusted packet to its prefix, class by
        /// class, and trusted packets are only in their targets' trusted rates.
        #[test]
        fn rollups_keep_every_class_whole_and_trusted_apart(
            packets in proptest::collection::vec(
                (
                    0u16..400,
                    proptest::sample::select(vec![6u8, 17, 1]),
                    proptest::option::of(proptest::sample::select(vec![123u16, 53, 40000])),
                    proptest::prelude::any::<bool>(),
                    1u32..64,
                ),
                1..1500,
            )
        ) {
            let trusted: IpNet = "192.0.2.0/24".parse().unwrap();
            let mut agg = Aggregator::new().with_trusted(vec![trusted]);
            let mut want: HashMap<(IpNet, Class), u64> = HashMap::new();
            let mut want_trusted = 0u64;
            for (d, proto, sport, from_trusted, one_in) in packets {
                let dst = format!("203.0.{}.{}", 110 + d / 100, d % 100);
                let src = if from_trusted { "192.0.2.5" } else { "198.51.100.5" };
                let p = pkt(src, &dst, proto, sport, Some(80));
                agg.add(&p, one_in);
                if from_trusted {
                    want_trusted += u64::from(one_in);
                } else {
                    let k = (rollup_of(p.dst), FlowKey::of(&p).class());
                    *want.entry(k).or_default() += u64::from(one_in);
                }
            }
            let f = agg.finish_all(Duration::from_secs(1));
            let mut got: HashMap<(IpNet, Class), u64> = HashMap::new();
            for r in &f.rollups {
                for fl in &r.flows {
                    *got.entry((r.prefix, Class::of(fl))).or_default() += fl.pps;
                }
            }
            proptest::prop_assert_eq!(got, want);
            // 400 destinations: the trusted rate is whole over the ones kept, at most.
            let kept: u64 = f.targets.iter().map(|t| t.trusted_pps).sum();
            proptest::prop_assert!(kept <= want_trusted);
        }

        /// Whatever the traffic and the bound, every class's rate in a report is whole.
        #[test]
        fn every_class_keeps_its_whole_rate(
            packets in proptest::collection::vec(
                (
                    proptest::sample::select(vec![1u8, 6, 17, 47, 58, 132]),
                    proptest::option::of(proptest::prop_oneof![0u16..1100, proptest::sample::select(vec![123u16, 53, 389, 1900, 11211, 40000])]),
                    proptest::option::of(0u16..3000),
                    proptest::option::of(proptest::prelude::any::<u8>()),
                    proptest::prelude::any::<bool>(),
                    1u32..64,
                ),
                1..2000,
            )
        ) {
            let mut agg = Aggregator::new();
            let mut want: HashMap<Class, u64> = HashMap::new();
            for (proto, sport, dport, flags, frag, one_in) in packets {
                let mut p = pkt("198.51.100.1", "192.0.2.2", proto, sport, dport);
                p.tcp_flags = flags;
                p.fragment = frag;
                agg.add(&p, one_in);
                let k = FlowKey::of(&p);
                *want.entry(k.class()).or_default() += u64::from(one_in);
            }
            let t = agg.finish(Duration::from_secs(1));
            proptest::prop_assert!(t[0].flows.len() <= MAX_FLOWS);
            proptest::prop_assert_eq!(by_class(&t[0].flows), want);
        }
    }
}
