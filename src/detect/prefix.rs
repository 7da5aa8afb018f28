//! Prefix-level detection: carpet bombing, a flood spread over a whole /24 (or /22, or an IPv6
//! /64 at random addresses), each address under its own threshold, the prefix far above.
//!
//! Per protected group, every address belongs to one prefix of the group's length
//! ([`PrefixThresholds::v4`], [`PrefixThresholds::v6`]). Its traffic is the sum of what every
//! node reports into it, per [`Class`] and in bits per second, with its own [`Baseline`](super::Baseline)s and its
//! own floors, judged with the group's ratio, deviations, confirm, cooldown and learning.
//!
//! - The sums come from the reports' rollups (per /24 and /64, summed by the aggregator from
//!   whole counts, before the report keeps its top destinations), so a carpet whose addresses
//!   are each a few samples, or more than a report or the target table holds, adds up. Targets
//!   whose /24 or /64 has no rollup in the report (an older probe; a rollup the API dropped
//!   because the node's token does not serve its whole prefix) are rolled up here.
//! - Each node's latest contribution to a prefix is kept; the prefix is judged on the sum of all
//!   of them, at most once per reporting interval (a prefix behind a hundred probes is judged
//!   once a second, not a hundred times). A stale node's contribution is held as it was.
//! - What an address's own attack accounts for is left out of its prefix's sum in that class: a
//!   single hot address stays an address attack, and the prefix is judged on the rest.
//! - While a prefix is under attack in a class, no address inside it starts an attack in that
//!   class (the prefix's rule matches its share already): one flood, one rule. Address attacks
//!   that started before go on.
//! - A prefix attack is an [`Attack`] with `prefix` set and `target` the prefix's first address;
//!   its signature is classified from the flows merged across the prefix.
//!
//! Groups whose networks are longer than the prefix length (a protected /28 with the default
//! /24) have no prefix-level detection: a rollup there would count addresses outside the group.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;

use super::classify::{self, Class, Signature, Vector};
use super::judge::{Verdict, carry, hold_at_cap, judge};
use super::{Attack, ClassState, Detector, Event, Excluded, Thresholds, default_floor};
use crate::telemetry::{Flow, MAX_SOURCES, Report, Rollup, Source, rollup_of};
use crate::traffic::{FastMap, FastSet};

/// Prefix-level thresholds for one group.
#[derive(Debug, Clone, PartialEq)]
pub struct PrefixThresholds {
    /// False: addresses only.
    pub enabled: bool,
    /// Prefix length for IPv4 (16 to 24: sums are built from /24 rollups).
    pub v4: u8,
    /// Prefix length for IPv6 (32 to 64: from /64 rollups).
    pub v6: u8,
    /// Static floor per class over the whole prefix, packets per second.
    pub floor_pps: [f64; Class::ALL.len()],
    /// Static floor for all traffic to the prefix, bits per second (volumetric).
    pub floor_bps: f64,
}

/// Addresses of one prefix starting an attack in the same class in the same report from which
/// the flood counts as spread (carpet bombing) rather than a few hot addresses: they are folded
/// into one attack on the prefix when its sum crosses the prefix's threshold.
pub const SPREAD: usize = 4;

/// How far a prefix's default floors sit above an address's: a whole /24 of ordinary servers
/// carries more than one does, and a carpet worth a prefix rule is well above one address's
/// floor.
pub const FLOOR_FACTOR: f64 = 4.0;

impl Default for PrefixThresholds {
    fn default() -> Self {
        let mut floor_pps = [0.0; Class::ALL.len()];
        for c in Class::ALL {
            floor_pps[c.index()] = FLOOR_FACTOR * default_floor(c);
        }
        PrefixThresholds {
            enabled: true,
            v4: 24,
            v6: 64,
            floor_pps,
            floor_bps: 2e10,
        }
    }
}

/// One node's latest share of a prefix.
#[derive(Debug, Clone, Default)]
struct Contribution {
    pps: [f64; Class::ALL.len()],
    bps: [f64; Class::ALL.len()],
    total_pps: f64,
    total_bps: f64,
    addresses: u32,
    flows: Vec<Flow>,
    sources: Vec<Source>,
}

/// Everything known of one prefix.
#[derive(Debug, Clone, Default)]
pub(super) struct PrefixState {
    group: u16,
    pub(super) classes: [ClassState; Class::ALL.len()],
    pub(super) total: ClassState,
    /// Per node (by id, in order), its latest share: a sorted vector, since a prefix has one
    /// node or a few (a map's first node alone would take 2.6 KB, ten times the share).
    contrib: Vec<(u32, Contribution)>,
    /// When it was last judged (0: never).
    judged_ms: u64,
    pub(super) last_ms: u64,
}

impl PrefixState {
    /// Node `ni`'s share, in place of the one it had.
    fn contribute(&mut self, ni: u32, c: Contribution) {
        match self.contrib.binary_search_by_key(&ni, |(n, _)| *n) {
            Ok(i) => self.contrib[i].1 = c,
            Err(i) => self.contrib.insert(i, (ni, c)),
        }
    }

    /// Per class (and the total, last), whether an attack is under way on the prefix.
    fn attacked(&self) -> [bool; Class::ALL.len() + 1] {
        let mut out = [false; Class::ALL.len() + 1];
        for (i, cs) in self.classes.iter().enumerate() {
            out[i] = cs.attack.is_some();
        }
        out[Class::ALL.len()] = self.total.attack.is_some();
        out
    }

    fn any_attack(&self) -> bool {
        self.attacked().iter().any(|a| *a)
    }
}

/// The prefix `addr` belongs to for prefix-level detection in `groups`, with its group: `None`
/// when it is not protected, its group has prefix detection off, or the group's network is
/// narrower than the prefix.
fn prefix_of(groups: &[(String, Vec<IpNet>, Thresholds)], addr: IpAddr) -> Option<(usize, IpNet)> {
    let g = super::group_of(groups, addr)?;
    let (_, nets, th) = &groups[g];
    if !th.prefix.enabled {
        return None;
    }
    let len = if addr.is_ipv4() {
        th.prefix.v4
    } else {
        th.prefix.v6
    };
    let p = IpNet::new(addr, len).ok()?.trunc();
    nets.iter().any(|n| n.contains(&p)).then_some((g, p))
}

/// Rollups built from a report's targets where it has none for their prefix (an older probe, or
/// rollups the API dropped because the node does not serve all of their prefix): whole only as
/// far as the report is.
fn rollups_from_targets(r: &Report) -> Vec<Rollup> {
    let mut by: FastMap<IpNet, Rollup> = FastMap::default();
    let mut seen = FastSet::default();
    let given: FastSet<IpNet> = r.rollups.iter().map(|r| r.prefix).collect();
    for t in &r.targets {
        if !seen.insert(t.dst) {
            continue;
        }
        let p = rollup_of(t.dst);
        if given.contains(&p) {
            continue;
        }
        let e = by.entry(p).or_insert_with(|| Rollup {
            prefix: p,
            addresses: 0,
            pps: 0,
            bps: 0,
            flows: Vec::new(),
            sources: Vec::new(),
        });
        e.addresses = e.addresses.saturating_add(1);
        e.pps = e.pps.saturating_add(t.pps);
        e.bps = e.bps.saturating_add(t.bps);
        e.flows.extend(t.flows.iter().cloned());
        e.sources.extend(t.sources.iter().cloned());
    }
    by.into_values().collect()
}

/// Flows with the same key added together (their number bounded by the distinct keys).
fn merge_flows(flows: impl IntoIterator<Item = Flow>) -> Vec<Flow> {
    let mut by: FastMap<Flow, (u64, u64)> = FastMap::default();
    for f in flows {
        let key = Flow {
            pps: 0,
            bps: 0,
            ..f
        };
        let e = by.entry(key).or_default();
        e.0 = e.0.saturating_add(f.pps);
        e.1 = e.1.saturating_add(f.bps);
    }
    let mut out: Vec<Flow> = by
        .into_iter()
        .map(|(k, (pps, bps))| Flow { pps, bps, ..k })
        .collect();
    out.sort_unstable_by(|a, b| {
        b.pps
            .cmp(&a.pps)
            .then_with(|| (a.proto, a.sport, a.dport).cmp(&(b.proto, b.sport, b.dport)))
    });
    out
}

/// The top sources of several lists.
fn merge_sources(sources: impl IntoIterator<Item = Source>) -> Vec<Source> {
    let mut by: FastMap<IpAddr, u64> = FastMap::default();
    for s in sources {
        let e = by.entry(s.addr).or_default();
        *e = e.saturating_add(s.pps);
    }
    let mut out: Vec<Source> = by
        .into_iter()
        .map(|(addr, pps)| Source { addr, pps })
        .collect();
    out.sort_unstable_by(|a, b| b.pps.cmp(&a.pps).then(a.addr.cmp(&b.addr)));
    out.truncate(MAX_SOURCES);
    out
}

impl Detector {
    /// Per class (and the total, last), whether the prefix of `addr` is under attack.
    pub(super) fn covered(&self, addr: IpAddr) -> Option<[bool; Class::ALL.len() + 1]> {
        let (_, p) = prefix_of(&self.settings.groups, addr)?;
        self.prefixes.get(&p).map(PrefixState::attacked)
    }

    /// A prefix attack is seen while a node that reports into its prefix is fresh.
    pub(super) fn prefix_seen(&self, p: IpNet) -> bool {
        self.prefixes.get(&p).is_some_and(|s| {
            s.contrib
                .iter()
                .any(|(n, _)| self.nodes.get(*n as usize).is_some_and(|n| !n.stale))
        })
    }

    /// The node with the largest share of a prefix.
    pub(super) fn prefix_seen_by(&self, p: IpNet) -> Option<&str> {
        let s = self.prefixes.get(&p)?;
        let (n, _) = s
            .contrib
            .iter()
            .max_by(|a, b| a.1.total_pps.total_cmp(&b.1.total_pps))?;
        self.nodes.get(*n as usize).map(|n| n.name.as_str())
    }

    pub(super) fn watch_prefix(&mut self, p: IpNet, class: Class, vector: Vector, on: bool) {
        if let Some(s) = self.prefixes.get_mut(&p) {
            let cs = if vector == Vector::Volumetric {
                &mut s.total
            } else {
                &mut s.classes[class.index()]
            };
            cs.watched = on;
        }
    }

    /// Prefixes whose group or length changed are forgotten, as unprotected addresses are: an
    /// attack on one is then seen by nobody, and its rules leave when their lifetime runs out.
    pub(super) fn reconfigure_prefixes(&mut self) {
        let groups = &self.settings.groups;
        self.prefixes
            .retain(|p, s| match prefix_of(groups, p.addr()) {
                Some((g, q)) if q == *p => {
                    s.group = g as u16;
                    true
                }
                _ => false,
            });
        for n in &mut self.nodes {
            n.prefixes.retain(|p| self.prefixes.contains_key(p));
        }
    }

    /// Forgets prefixes nothing has reported into for `target_idle`, under no attack.
    pub(super) fn evict_idle_prefixes(&mut self, now: u64) {
        let idle = self.settings.target_idle.as_millis() as u64;
        self.prefixes
            .retain(|_, s| s.last_ms + idle > now || s.any_attack());
        for n in &mut self.nodes {
            n.prefixes.retain(|p| self.prefixes.contains_key(p));
        }
    }

    /// Whether `net` is a prefix that prefix detection judges under the groups in force.
    pub(super) fn is_protected_prefix(&self, net: IpNet) -> bool {
        prefix_of(&self.settings.groups, net.addr()).is_some_and(|(_, p)| p == net)
    }

    pub fn prefix_count(&self) -> usize {
        self.prefixes.len()
    }

    /// Takes node `ni`'s report into the prefixes it covers, and judges those due.
    pub(super) fn observe_prefixes(
        &mut self,
        ni: u32,
        r: &Report,
        excluded: &[Excluded],
        now: u64,
        was_stale: bool,
        events: &mut Vec<Event>,
    ) {
        let extra = rollups_from_targets(r);
        let rollups: Cow<[Rollup]> = if extra.is_empty() {
            Cow::Borrowed(&r.rollups)
        } else {
            Cow::Owned(r.rollups.iter().cloned().chain(extra).collect())
        };
        // This node's share of each prefix.
        let mut shares: FastMap<IpNet, (usize, Contribution)> = FastMap::default();
        let mut seen = FastSet::default();
        for ru in rollups.iter() {
            if !seen.insert(ru.prefix) {
                continue;
            }
            let Some((g, p)) = prefix_of(&self.settings.groups, ru.prefix.addr()) else {
                continue;
            };
            // A rollup must lie inside the prefix (a /24 in a /22); a longer prefix than the
            // rollup's is refused by the configuration, a mismatched family cannot happen.
            if !p.contains(&ru.prefix) {
                continue;
            }
            let (_, c) = shares
                .entry(p)
                .or_insert_with(|| (g, Contribution::default()));
            c.total_pps += ru.pps as f64;
            c.total_bps += ru.bps as f64;
            c.addresses = c.addresses.saturating_add(ru.addresses);
            for f in &ru.flows {
                let i = Class::of(f).index();
                c.pps[i] += f.pps as f64;
                c.bps[i] += f.bps as f64;
            }
            c.flows.extend(ru.flows.iter().cloned());
            c.sources.extend(ru.sources.iter().cloned());
        }
        // What addresses' own attacks account for is left out, unless so many addresses of the
        // prefix started one at once in a class that the flood is spread: those count, and are
        // folded into the prefix's attack if it starts.
        const N: usize = Class::ALL.len();
        let mut fresh: FastMap<IpNet, [Vec<(IpAddr, u64)>; N + 1]> = FastMap::default();
        for ex in excluded {
            let Some((_, p)) = prefix_of(&self.settings.groups, ex.dst) else {
                continue;
            };
            let f = fresh.entry(p).or_default();
            for (i, id) in ex.new.iter().enumerate() {
                if let Some(id) = id {
                    f[i].push((ex.dst, *id));
                }
            }
        }
        for ex in excluded {
            let Some((_, p)) = prefix_of(&self.settings.groups, ex.dst) else {
                continue;
            };
            let spread = |i: usize| fresh.get(&p).is_some_and(|f| f[i].len() >= SPREAD);
            if let Some((_, c)) = shares.get_mut(&p) {
                for i in 0..N {
                    if ex.new[i].is_none() || !spread(i) {
                        c.pps[i] = (c.pps[i] - ex.pps[i]).max(0.0);
                    }
                }
                if ex.new[N].is_none() || !spread(N) {
                    c.total_bps = (c.total_bps - ex.bps).max(0.0);
                }
            }
        }
        // Prefixes it reported into before and not now: its share is nothing (kept as such, so
        // that its reports go on judging the prefix, until the prefix is idle and forgotten).
        let before: Vec<IpNet> = self.nodes[ni as usize]
            .prefixes
            .iter()
            .filter(|p| !shares.contains_key(p))
            .copied()
            .collect();
        let mut due: Vec<IpNet> = Vec::new();
        for p in before {
            match self.prefixes.get_mut(&p) {
                Some(s) => {
                    s.contribute(ni, Contribution::default());
                    due.push(p);
                }
                None => {
                    self.nodes[ni as usize].prefixes.remove(&p);
                }
            }
        }
        for (p, (g, mut c)) in shares {
            if !self.prefixes.contains_key(&p) {
                if self.prefixes.len() >= self.settings.max_prefixes {
                    self.counters.prefixes_over_limit += 1;
                    continue;
                }
                let mut state = PrefixState {
                    group: g as u16,
                    ..PrefixState::default()
                };
                if let Some(l) = self.dormant_prefixes.remove(&p) {
                    super::take_back(&mut state.classes, &mut state.total, l, now);
                }
                self.prefixes.insert(p, state);
            }
            c.flows = merge_flows(std::mem::take(&mut c.flows));
            c.sources = merge_sources(std::mem::take(&mut c.sources));
            if let Some(s) = self.prefixes.get_mut(&p) {
                s.contribute(ni, c);
                s.last_ms = now;
            }
            self.nodes[ni as usize].prefixes.insert(p);
            due.push(p);
        }
        // Judged at most once per interval, however many nodes report into it.
        let gap = u64::from(r.interval_ms) * 3 / 4;
        for p in due {
            let judged = self.prefixes.get(&p).map_or(0, |s| s.judged_ms);
            if judged == 0 || now >= judged + gap {
                let dt = if judged == 0 {
                    u64::from(r.interval_ms)
                } else {
                    (now - judged).min(60_000)
                };
                let started = self.judge_prefix(p, ni, dt, now, was_stale, events);
                for (i, id) in started {
                    if let Some(f) = fresh.get(&p).filter(|f| f[i].len() >= SPREAD) {
                        self.fold(id, p, &f[i], events);
                    }
                }
            }
        }
    }

    /// Address attacks that started in the same report as prefix attack `into`, in its class:
    /// the same spread flood. They are forgotten (their start never told), the prefix's rule
    /// covers them.
    fn fold(&mut self, into: u64, p: IpNet, started: &[(IpAddr, u64)], events: &mut Vec<Event>) {
        let mut n = 0;
        for (dst, id) in started {
            if self.attacks.remove(id).is_none() {
                continue;
            }
            if let Some(t) = self.targets.get_mut(dst) {
                for cs in t.classes.iter_mut().chain(std::iter::once(&mut t.total)) {
                    if cs.attack() == Some(*id) {
                        cs.set_attack(None);
                        cs.quiet_since = None;
                    }
                }
            }
            events.retain(|e| *e != Event::Started(*id));
            self.counters.attacks_started = self.counters.attacks_started.saturating_sub(1);
            self.counters.covered_by_prefix += 1;
            n += 1;
        }
        if let (Some(a), true) = (self.attacks.get_mut(&into), n > 0) {
            let now = a.started_ms;
            a.note(
                now,
                format!("{n} addresses of {p} above their own threshold at once: one attack on the prefix, not {n}"),
            );
        }
    }

    /// Judges one prefix on the sum of every node's share.
    fn judge_prefix(
        &mut self,
        p: IpNet,
        ni: u32,
        dt: u64,
        now: u64,
        was_stale: bool,
        events: &mut Vec<Event>,
    ) -> Vec<(usize, u64)> {
        let mut started = Vec::new();
        // As for an address: a source's share needs a few samples behind its estimate.
        let one_in = u64::from(self.nodes[ni as usize].one_in.max(1));
        let min_source_pps = super::MIN_SOURCE_SAMPLES.saturating_mul(one_in) * 1000 / dt.max(1);
        let Some(state) = self.prefixes.get_mut(&p) else {
            return started;
        };
        state.judged_ms = now;
        let g = state.group as usize;
        let Some((gname, _, th)) = self.settings.groups.get(g) else {
            return started;
        };
        let (gname, th) = (gname.clone(), th.clone());
        let mut pps = [0f64; Class::ALL.len()];
        let mut bps = [0f64; Class::ALL.len()];
        let (mut total_pps, mut total_bps, mut addresses) = (0f64, 0f64, 0u32);
        for (_, c) in &state.contrib {
            for i in 0..Class::ALL.len() {
                pps[i] += c.pps[i];
                bps[i] += c.bps[i];
            }
            total_pps += c.total_pps;
            total_bps += c.total_bps;
            addresses = addresses.saturating_add(c.addresses);
        }
        let cooldown = th.cooldown.as_millis() as u64;
        let mut starts: Vec<(Option<Class>, f64, f64, f64)> = Vec::new();
        let mut updates: Vec<(u64, f64, f64, Option<u64>)> = Vec::new();
        let mut anomalous_class = false;
        for c in Class::ALL {
            let i = c.index();
            let cs = &mut state.classes[i];
            let Verdict {
                thr,
                start,
                mut quiet,
            } = judge(cs, pps[i], th.prefix.floor_pps[i], &th, dt, now, was_stale);
            if let Some(id) = cs.attack() {
                hold_at_cap(cs, &mut quiet, self.attacks.get(&id), pps[i], bps[i]);
            }
            anomalous_class |= start || cs.attack.is_some();
            if start {
                starts.push((Some(c), pps[i], bps[i], thr));
            } else {
                carry(cs, pps[i], bps[i], quiet, &mut updates);
            }
        }
        {
            let cs = &mut state.total;
            let Verdict {
                thr,
                start,
                mut quiet,
            } = judge(cs, total_bps, th.prefix.floor_bps, &th, dt, now, was_stale);
            if let Some(id) = cs.attack() {
                hold_at_cap(cs, &mut quiet, self.attacks.get(&id), total_pps, total_bps);
            }
            if start && !anomalous_class {
                starts.push((None, total_pps, total_bps, thr));
            } else if start {
                cs.above = 0;
            } else {
                carry(cs, total_pps, total_bps, quiet, &mut updates);
            }
        }
        if starts.is_empty() && updates.is_empty() {
            return started;
        }
        // Merged across the prefix only for an attack to classify or to follow.
        let flows = merge_flows(
            state
                .contrib
                .iter()
                .flat_map(|(_, c)| c.flows.iter().cloned()),
        );
        let sources = merge_sources(
            state
                .contrib
                .iter()
                .flat_map(|(_, c)| c.sources.iter().cloned()),
        );
        // The node with the largest share names it.
        let node = state
            .contrib
            .iter()
            .max_by(|a, b| a.1.total_pps.total_cmp(&b.1.total_pps))
            .map_or(ni, |(n, _)| *n);
        // A flash crowd across the prefix is no attack either (as for an address).
        let mut connection_flood = None;
        let mut crowd = false;
        for (class, pc, bc, thr) in starts {
            if class == Some(Class::TcpAck) && connection_flood.is_some() {
                state.classes[Class::TcpAck.index()].set_attack(connection_flood);
                continue;
            }
            if class == Some(Class::TcpSyn) {
                crowd = classify::syn_flash_crowd(&flows, &sources, total_pps as u64);
                if crowd {
                    self.counters.flash_crowds += 1;
                }
            }
            if crowd && matches!(class, Some(Class::TcpSyn | Class::TcpAck)) {
                state.classes[class.map_or(0, Class::index)].above = 0;
                continue;
            }
            let id = self.next_attack;
            self.next_attack += 1;
            let (vector, signature, cls, baseline) = match class {
                Some(c) => {
                    let (v, mut s) = classify::signature(c, &flows, &sources);
                    s.add_sources(&sources, total_pps as u64, min_source_pps);
                    if v == Vector::TcpConnectionFlood {
                        connection_flood = Some(id);
                    }
                    let cs = &mut state.classes[c.index()];
                    cs.set_attack(Some(id));
                    (v, s, c, cs.baseline.mean as f64)
                }
                None => {
                    state.total.set_attack(Some(id));
                    let mut s = Signature::default();
                    s.add_sources(&sources, total_pps as u64, min_source_pps);
                    (
                        Vector::Volumetric,
                        s,
                        Class::Other,
                        state.total.baseline.mean as f64,
                    )
                }
            };
            let mut a = Attack {
                id,
                target: p.network(),
                prefix: Some(p),
                addresses,
                group: gname.clone(),
                node: self.nodes[node as usize].name.clone(),
                vector,
                class: cls,
                signature,
                started_ms: now,
                ended_ms: None,
                pps: pc as u64,
                bps: bc as u64,
                peak_pps: pc as u64,
                peak_bps: bc as u64,
                threshold_pps: thr as u64,
                baseline_pps: baseline as u64,
                timeline: Vec::new(),
                mitigations: Vec::new(),
                policy: None,
                series: Vec::new(),
                ioc: BTreeMap::new(),
                cap: None,
                quiet_upstream: false,
            };
            a.sample(now, a.pps);
            let (rate, unit) = if class.is_some() {
                (pc, "pps")
            } else {
                (bc, "bps")
            };
            a.note(
                now,
                format!(
                    "started: {vector} over {p} ({addresses} addresses) at {} {unit} (threshold {}, baseline {})",
                    rate as u64, thr as u64, baseline as u64
                ),
            );
            self.attacks.insert(id, a);
            self.counters.attacks_started += 1;
            events.push(Event::Started(id));
            started.push((class.map_or(Class::ALL.len(), Class::index), id));
        }
        for (id, ..) in &updates {
            if let Some(a) = self.attacks.get_mut(id) {
                a.addresses = a.addresses.max(addresses);
            }
        }
        // No node upstream of the filters is told apart for prefixes: their quiet is judged
        // like a probe's (the policy's grown hold-down applies).
        self.carry_on(
            updates,
            &sources,
            total_pps as u64,
            min_source_pps,
            0,
            cooldown,
            now,
            events,
        );
        started
    }
}

#[cfg(test)]
mod tests;
