//! Detection: per protected address and traffic class, a learned baseline; attacks that start
//! the interval a threshold is crossed, carry a classification and a signature, and end after a
//! quiet cooldown.
//!
//! The [`Detector`] is pure: reports and the time go in, [`Event`]s come out. It is owned by the
//! detection task (the engine), which feeds it telemetry and hands its events to the
//! policies.
//!
//! - A target is an address inside a protected group, measured by the node that reports it. Its
//!   state is a baseline per [`Class`] (8 bytes and a counter each) and the attacks under way.
//! - Thresholds per class: `max(floor, ratio × mean, mean + deviations × stddev)`, the last two only
//!   once the baseline is warm. Floors are per class because a download's ACKs and a SYN flood
//!   live at different scales. Baselines do not learn from traffic above their threshold.
//! - An attack starts after `confirm` intervals above (1: the same interval), and ends when its
//!   class stays below `end_ratio` of the threshold for `cooldown`. Between the two it holds:
//!   hysteresis, so it never flaps. Its end time is when the quiet began, declared a cooldown
//!   later.
//! - What deflect's own mitigation does to the traffic is told back by the engine: a class under
//!   a rate-limit rule whose traffic presses at the cap is not quiet ([`Attack::cap`]); a class
//!   whose attack may come back is watched, and starts again on its first interval above
//!   ([`Detector::watch`]); an attack that comes back is reopened ([`Detector::reopen`]).
//! - A node that stops reporting is stale after `stale_after`: its targets are frozen, neither
//!   started nor ended on missing data; the quiet time restarts when it is back.
//! - Beside addresses, each protected prefix (a /24, a /64 by default) is judged on the sum over
//!   its addresses, with its own baselines ([`prefix`]): carpet bombing is one attack on the
//!   prefix, with `Attack::prefix` set.

pub mod baseline;
pub mod classify;
mod judge;
pub mod prefix;
pub mod snapshot;
pub(crate) mod view;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::num::NonZeroU64;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

pub use baseline::Baseline;
pub use classify::{Class, Signature, Vector};
pub use prefix::PrefixThresholds;
pub use view::Traffic;

use judge::{Verdict, carry, hold_at_cap, judge};

use crate::telemetry::{Report, Source, Target};
use crate::traffic::{FastMap, FastSet};

/// Thresholds, resolved, for one prefix group.
#[derive(Debug, Clone, PartialEq)]
pub struct Thresholds {
    /// Static floor per class, packets per second.
    pub floor_pps: [f64; Class::ALL.len()],
    /// Static floor for all traffic to the address, bits per second (volumetric).
    pub floor_bps: f64,
    pub ratio: f64,
    pub deviations: f64,
    /// Intervals above the threshold before an attack starts.
    pub confirm: u32,
    /// Below this share of the threshold counts as quiet.
    pub end_ratio: f64,
    pub cooldown: Duration,
    pub warmup: Duration,
    pub half_life: Duration,
    /// Sums over each prefix of the group (carpet bombing): their own floors and lengths; the
    /// ratios, confirm, cooldown and learning above apply to them too.
    pub prefix: PrefixThresholds,
}

impl Default for Thresholds {
    fn default() -> Self {
        let mut floor_pps = [0.0; Class::ALL.len()];
        for c in Class::ALL {
            floor_pps[c.index()] = default_floor(c);
        }
        Thresholds {
            floor_pps,
            floor_bps: 5e9,
            ratio: 3.0,
            deviations: 4.0,
            confirm: 1,
            end_ratio: 0.5,
            cooldown: Duration::from_secs(30),
            warmup: Duration::from_secs(300),
            half_life: Duration::from_secs(600),
            prefix: PrefixThresholds::default(),
        }
    }
}

/// Default floors: what no ordinary server receives in that class.
pub fn default_floor(c: Class) -> f64 {
    match c {
        Class::TcpSyn => 10_000.0,
        Class::TcpRst => 10_000.0,
        // A server sending at 10 Gb/s gets ~400k ACKs a second back: downloads are not attacks.
        Class::TcpAck => 500_000.0,
        Class::TcpOther => 10_000.0,
        Class::UdpAmp => 20_000.0,
        Class::Udp => 100_000.0,
        Class::Icmp => 5_000.0,
        Class::Fragment => 10_000.0,
        Class::Gre => 20_000.0,
        Class::Other => 50_000.0,
    }
}

/// Detection settings: thresholds per group, and the rest.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Protected groups with their thresholds.
    pub groups: Vec<(String, Vec<IpNet>, Thresholds)>,
    pub stale_after: Duration,
    /// Most targets tracked; beyond, new addresses are counted and ignored.
    pub max_targets: usize,
    /// Most targets one node's reports may add: one node cannot fill the table for everyone.
    pub max_targets_per_node: usize,
    /// A target nothing has reported for this long, and under no attack, is forgotten (its
    /// baselines with it).
    pub target_idle: Duration,
    /// Nodes that see traffic before the edge's filters (sFlow agents marked `pre_filter`): a
    /// quiet they see is not deflect's own rule at work.
    pub upstream: Vec<String>,
    /// Sources never counted as attack traffic (speed-test servers, partners, backups): taken
    /// out where samples are aggregated (the probe, told in each answer; the sFlow collector).
    pub trusted_sources: Vec<IpNet>,
    /// Most prefixes tracked (carpet bombing); beyond, new ones are counted and ignored.
    pub max_prefixes: usize,
}

/// Most trusted source prefixes (each answer to a probe carries them).
pub const MAX_TRUSTED: usize = 256;

impl Default for Settings {
    fn default() -> Self {
        Settings {
            groups: Vec::new(),
            stale_after: Duration::from_secs(5),
            max_targets: 100_000,
            max_targets_per_node: 10_000,
            target_idle: Duration::from_secs(600),
            upstream: Vec::new(),
            trusted_sources: Vec::new(),
            max_prefixes: 10_000,
        }
    }
}

/// Samples a source's estimate must stand on before its share of an attack counts (for the steps
/// that act on heavy sources).
const MIN_SOURCE_SAMPLES: u64 = 8;

/// How often idle targets are looked for.
const SWEEP_MS: u64 = 10_000;

/// One point in an attack's life.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Moment {
    pub time_ms: u64,
    pub what: String,
}

/// Most points of an attack's rate kept.
pub const MAX_SERIES: usize = 240;

/// Most moments kept per attack (the first ones and the last ones).
const MAX_TIMELINE: usize = 64;

/// An attack on one address, or on a prefix (carpet bombing), by one vector.
///
/// A prefix attack has `prefix` (e.g. `198.51.100.0/24`) and `target` its first address, so
/// that everything that reads an address (the API, alerts, the audit log) still does; its rule
/// is on the prefix ([`Attack::dst`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attack {
    pub id: u64,
    pub target: IpAddr,
    /// A prefix attack: the prefix the flood is spread over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<IpNet>,
    /// A prefix attack: the addresses of the prefix it reached (at its start, then its most).
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub addresses: u32,
    pub group: String,
    pub node: String,
    pub vector: Vector,
    pub class: Class,
    pub signature: Signature,
    pub started_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_ms: Option<u64>,
    /// The class's rate in the last interval.
    pub pps: u64,
    pub bps: u64,
    pub peak_pps: u64,
    pub peak_bps: u64,
    /// The threshold it crossed, and the baseline behind it.
    pub threshold_pps: u64,
    pub baseline_pps: u64,
    pub timeline: Vec<Moment>,
    /// Mitigations made for it (filled in by the policies).
    pub mitigations: Vec<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Its class's rate over time: (time_ms, pps), at most [`MAX_SERIES`] points (thinned out
    /// evenly as it grows).
    pub series: Vec<(u64, u64)>,
    /// Sources seen in indicator lists: sightings per list.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub ioc: BTreeMap<String, u64>,
    /// A rate-limit rule in force for it: traffic still pressing at this cap is the attack going
    /// on, not its end (set by the engine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cap: Option<Cap>,
    /// Its quiet was seen before the edge's filters too: the flood ended, not hidden by a rule.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub quiet_upstream: bool,
}

/// The rate a rate-limit mitigation lets through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Cap {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pps: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bps: Option<u64>,
}

/// The share of a cap at which traffic counts as pressing on it. Traffic through a limiter never
/// exceeds the cap, so the attack's own threshold says nothing there; what the victim's legitimate
/// traffic in the same class adds is usually far below half of a cap chosen for a flood.
const PRESSURE_SHARE: f64 = 0.5;

impl Cap {
    fn pressed(&self, pps: f64, bps: f64) -> bool {
        self.pps
            .is_some_and(|c| c > 0 && pps >= PRESSURE_SHARE * c as f64)
            || self
                .bps
                .is_some_and(|c| c > 0 && bps >= PRESSURE_SHARE * c as f64)
    }
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl Attack {
    /// What its rules match as destination: the address (/32, /128) or the prefix.
    pub fn dst(&self) -> IpNet {
        self.prefix.unwrap_or_else(|| IpNet::from(self.target))
    }

    /// The address, or the prefix, as an operator reads it.
    pub fn what(&self) -> String {
        match self.prefix {
            Some(p) => p.to_string(),
            None => self.target.to_string(),
        }
    }

    pub fn note(&mut self, time_ms: u64, what: impl Into<String>) {
        if self.timeline.len() >= MAX_TIMELINE {
            // Keep the start; drop the oldest of the rest.
            self.timeline.remove(1);
        }
        self.timeline.push(Moment {
            time_ms,
            what: what.into(),
        });
    }

    pub fn is_active(&self) -> bool {
        self.ended_ms.is_none()
    }

    fn sample(&mut self, time_ms: u64, pps: u64) {
        if self.series.len() >= MAX_SERIES {
            // Keep every other point: the whole attack stays in view at half the resolution.
            let mut i = 0;
            self.series.retain(|_| {
                i += 1;
                i % 2 == 1
            });
        }
        self.series.push((time_ms, pps));
    }
}

/// What the detector tells the policies.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Started(u64),
    /// Still going: new rates (every report while active).
    Updated(u64),
    Ended(u64),
}

/// A class's state on one target.
#[derive(Debug, Clone, Default)]
struct ClassState {
    baseline: Baseline,
    /// Consecutive intervals above the threshold.
    above: u16,
    /// The attack under way in this class.
    attack: Option<NonZeroU64>,
    /// Since when it has been quiet (attacks only).
    quiet_since: Option<NonZeroU64>,
    /// An attack here may come back (its policy watches for it): one interval above starts it.
    watched: bool,
}

impl ClassState {
    fn attack(&self) -> Option<u64> {
        self.attack.map(NonZeroU64::get)
    }

    fn set_attack(&mut self, id: Option<u64>) {
        self.attack = id.and_then(NonZeroU64::new);
    }
}

/// Everything known of one address.
#[derive(Debug, Clone)]
struct TargetState {
    group: u16,
    node: u32,
    classes: [ClassState; Class::ALL.len()],
    /// All traffic, bits per second (volumetric).
    total: ClassState,
    last_ms: u64,
    /// When a node upstream of the edge's filters last reported it (0: never).
    upstream_ms: u64,
    pps: u32,
    bps: u64,
    /// From trusted sources, left out of all the above (shown, never judged).
    trusted_pps: u32,
    /// Per class, its rate in the last interval (packets per second).
    class_pps: [u32; Class::ALL.len()],
}

/// The rates of an address that its own attacks account for, per class (and in bits per
/// second, for a volumetric one): left out of its prefix's sums.
#[derive(Debug, Clone)]
struct Excluded {
    dst: IpAddr,
    pps: [f64; Class::ALL.len()],
    bps: f64,
    /// Per class (and the total, last): the attack that started on it in this very report. When
    /// several addresses of one prefix start in the same class at once, the flood is spread: they
    /// are the prefix's attack, and folded into it.
    new: [Option<u64>; Class::ALL.len() + 1],
}

/// A reporting node.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub name: String,
    pub last_report_ms: u64,
    pub interval_ms: u32,
    pub seq: u64,
    pub reports: u64,
    pub stale: bool,
    /// Sum of the interfaces' received packets per second in the last report.
    pub rx_pps: u64,
    pub rx_bps: u64,
    pub one_in: u32,
    /// It sees traffic before the edge's filters.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub upstream: bool,
    /// Packets per second from trusted sources in its last report (counted in no class).
    #[serde(skip_serializing_if = "is_zero")]
    pub trusted_pps: u64,
    #[serde(skip)]
    targets: FastSet<IpAddr>,
    /// The prefixes its last report contributed to.
    #[serde(skip)]
    prefixes: FastSet<IpNet>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A target as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub addr: IpAddr,
    pub group: String,
    pub node: String,
    pub pps: u64,
    pub bps: u64,
    /// From trusted sources, not in `pps` (counted in no class).
    #[serde(skip_serializing_if = "is_zero")]
    pub trusted_pps: u64,
    pub last_ms: u64,
    pub classes: Vec<ClassView>,
    pub attacks: Vec<u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClassView {
    pub class: Class,
    /// Its rate in the last interval.
    pub pps: u64,
    pub baseline_pps: f64,
    pub stddev_pps: f64,
    pub threshold_pps: f64,
    pub warm: bool,
}

/// Counters for `/metrics`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Counters {
    pub reports: u64,
    pub targets_unprotected: u64,
    pub targets_over_limit: u64,
    /// New addresses refused because their node reached its own limit.
    pub targets_over_node_limit: u64,
    /// Targets forgotten after `target_idle` without a report.
    pub targets_evicted: u64,
    pub attacks_started: u64,
    pub attacks_ended: u64,
    /// Attacks that came back and were reopened (not counted as started again).
    pub attacks_reopened: u64,
    /// Intervals whose SYNs above the threshold were a flash crowd (handshakes completed, no
    /// source standing out): no attack.
    pub flash_crowds: u64,
    /// Address-intervals above a threshold that started no attack: their prefix was under
    /// attack in the same class, and its rule matches them.
    pub covered_by_prefix: u64,
    /// New prefixes refused: `max_prefixes` reached.
    pub prefixes_over_limit: u64,
}

/// The detector.
#[derive(Debug)]
pub struct Detector {
    settings: Settings,
    targets: FastMap<IpAddr, TargetState>,
    nodes: Vec<Node>,
    node_index: FastMap<String, u32>,
    attacks: BTreeMap<u64, Attack>,
    /// Per protected prefix: sums over its addresses (`prefix.rs`).
    prefixes: FastMap<IpNet, prefix::PrefixState>,
    next_attack: u64,
    pub counters: Counters,
    /// When idle targets were last looked for.
    last_sweep: u64,
    /// Baselines read back from a snapshot at start, until the first report of their address
    /// takes them ([`Detector::restore`]); forgotten once idle as long as a target would be.
    dormant: FastMap<IpAddr, snapshot::Learned>,
    /// The same for prefixes.
    dormant_prefixes: FastMap<IpNet, snapshot::Learned>,
}

/// What [`Detector::restore`] made of a snapshot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Restored {
    pub targets: usize,
    pub prefixes: usize,
    /// Left out: idle longer than `target_idle` (they would have been forgotten).
    pub idle: usize,
    /// Left out: no longer protected, or past `max_targets` / `max_prefixes`.
    pub refused: usize,
}

/// Ended attacks kept for the API.
const MAX_ENDED: usize = 1000;

impl Detector {
    /// `first_id`: attack ids start here (the engine keeps them unique across restarts).
    pub fn new(settings: Settings, first_id: u64) -> Detector {
        Detector {
            settings,
            targets: FastMap::default(),
            nodes: Vec::new(),
            node_index: FastMap::default(),
            attacks: BTreeMap::new(),
            prefixes: FastMap::default(),
            next_attack: first_id.max(1),
            counters: Counters::default(),
            last_sweep: 0,
            dormant: FastMap::default(),
            dormant_prefixes: FastMap::default(),
        }
    }

    /// The id the next attack gets.
    pub fn next_attack_id(&self) -> u64 {
        self.next_attack
    }

    /// Attack ids go on from `id` (never back).
    pub fn skip_attack_ids_to(&mut self, id: u64) {
        self.next_attack = self.next_attack.max(id);
    }

    /// What is learned, as a snapshot file's bytes ([`snapshot`]): the baselines of every target
    /// and prefix, and those restored and not yet taken. Returns the bytes and the entries.
    pub fn snapshot(&self, now: u64) -> (Vec<u8>, usize) {
        let mut w = snapshot::Writer::new(
            now,
            self.targets.len()
                + self.dormant.len()
                + self.prefixes.len()
                + self.dormant_prefixes.len(),
        );
        for (addr, t) in &self.targets {
            w.target(*addr, t.last_ms, &slots(&t.classes, &t.total));
        }
        for (addr, l) in &self.dormant {
            w.target(*addr, l.last_ms, &l.baselines);
        }
        for (net, p) in &self.prefixes {
            w.prefix(*net, p.last_ms, &slots(&p.classes, &p.total));
        }
        for (net, l) in &self.dormant_prefixes {
            w.prefix(*net, l.last_ms, &l.baselines);
        }
        let n = w.len();
        (w.finish(), n)
    }

    /// Takes back what a snapshot learned: each address (and prefix) still protected and not
    /// idle longer than `target_idle` gets its baselines back with its first report, within the
    /// limits of the table. The time a baseline was not learning counts against its warm-up: one
    /// restored within seconds is warm at once, one that had learned six minutes and was away
    /// two needs one more minute of a five-minute warm-up.
    pub fn restore(&mut self, s: snapshot::Snapshot, now: u64) -> Restored {
        let idle = self.settings.target_idle.as_millis() as u64;
        let mut r = Restored::default();
        for (addr, l) in s.targets {
            if l.last_ms.saturating_add(idle) <= now {
                r.idle += 1;
            } else if group_of(&self.settings.groups, addr).is_none()
                || self.targets.contains_key(&addr)
                || self.dormant.len() >= self.settings.max_targets
            {
                r.refused += 1;
            } else if self.dormant.insert(addr, l).is_none() {
                r.targets += 1;
            }
        }
        for (net, l) in s.prefixes {
            if l.last_ms.saturating_add(idle) <= now {
                r.idle += 1;
            } else if !self.is_protected_prefix(net)
                || self.prefixes.contains_key(&net)
                || self.dormant_prefixes.len() >= self.settings.max_prefixes
            {
                r.refused += 1;
            } else if self.dormant_prefixes.insert(net, l).is_none() {
                r.prefixes += 1;
            }
        }
        r
    }

    /// Restored baselines not yet taken by a report.
    pub fn dormant_count(&self) -> usize {
        self.dormant.len() + self.dormant_prefixes.len()
    }

    /// Restored baselines idle as long as a target would be are forgotten.
    fn evict_idle_dormant(&mut self, now: u64) {
        let idle = self.settings.target_idle.as_millis() as u64;
        self.dormant.retain(|_, l| l.last_ms + idle > now);
        self.dormant_prefixes.retain(|_, l| l.last_ms + idle > now);
    }

    /// New thresholds and groups; learned baselines are kept for addresses still protected.
    pub fn reconfigure(&mut self, settings: Settings) {
        self.settings = settings;
        for n in &mut self.nodes {
            n.upstream = self.settings.upstream.contains(&n.name);
        }
        let groups = &self.settings.groups;
        self.targets
            .retain(|addr, t| match group_of(groups, *addr) {
                Some(g) => {
                    t.group = g as u16;
                    true
                }
                None => false,
            });
        self.reconfigure_prefixes();
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    pub fn attack(&self, id: u64) -> Option<&Attack> {
        self.attacks.get(&id)
    }

    pub fn attack_mut(&mut self, id: u64) -> Option<&mut Attack> {
        self.attacks.get_mut(&id)
    }

    pub fn attacks(&self) -> impl Iterator<Item = &Attack> {
        self.attacks.values()
    }

    pub fn nodes(&self) -> &[Node] {
        &self.nodes
    }

    /// Whether an attack's target is still seen: the node that reports it now (whichever that
    /// is) is not stale. An attack on a target nobody sees any more is held, on no evidence.
    pub fn is_seen(&self, a: &Attack) -> bool {
        if let Some(p) = a.prefix {
            return self.prefix_seen(p);
        }
        self.targets
            .get(&a.target)
            .and_then(|t| self.nodes.get(t.node as usize))
            .is_some_and(|n| !n.stale)
    }

    /// Watches (or stops watching) a target's class for the return of an attack: while watched,
    /// one interval above the threshold starts it, whatever `confirm` says. For an attack whose
    /// rule was withdrawn, a second interval of flood is a second interval let through.
    /// A prefix attack's class is watched on its prefix (`prefix`), an address's on the address.
    pub fn watch(
        &mut self,
        target: IpAddr,
        prefix: Option<IpNet>,
        class: Class,
        vector: Vector,
        on: bool,
    ) {
        if let Some(p) = prefix {
            self.watch_prefix(p, class, vector, on);
            return;
        }
        if let Some(t) = self.targets.get_mut(&target) {
            let cs = if vector == Vector::Volumetric {
                &mut t.total
            } else {
                &mut t.classes[class.index()]
            };
            cs.watched = on;
        }
    }

    /// Folds `new`, an attack that has just started, into `old`, an ended one on the same target
    /// and vector: `old` is active again with `new`'s figures, and `new` is forgotten. The
    /// attack's timeline says how long it was away. False (and nothing changed) when `old` is no
    /// longer remembered, is still active, or is not the same target and vector.
    pub fn reopen(&mut self, new: u64, old: u64, now: u64) -> bool {
        let fits = match (self.attacks.get(&new), self.attacks.get(&old)) {
            (Some(n), Some(o)) => {
                n.is_active()
                    && !o.is_active()
                    && n.target == o.target
                    && n.prefix == o.prefix
                    && n.vector == o.vector
            }
            _ => false,
        };
        if !fits {
            return false;
        }
        let Some(n) = self.attacks.remove(&new) else {
            return false;
        };
        let states = match n.prefix {
            Some(p) => self
                .prefixes
                .get_mut(&p)
                .map(|s| (&mut s.classes, &mut s.total)),
            None => self
                .targets
                .get_mut(&n.target)
                .map(|t| (&mut t.classes, &mut t.total)),
        };
        if let Some((classes, total)) = states {
            for cs in classes.iter_mut().chain(std::iter::once(total)) {
                if cs.attack() == Some(new) {
                    cs.set_attack(Some(old));
                }
            }
        }
        let Some(o) = self.attacks.get_mut(&old) else {
            return false;
        };
        let away = now.saturating_sub(o.ended_ms.unwrap_or(now));
        o.ended_ms = None;
        o.quiet_upstream = false;
        o.pps = n.pps;
        o.bps = n.bps;
        o.peak_pps = o.peak_pps.max(n.pps);
        o.peak_bps = o.peak_bps.max(n.bps);
        o.node = n.node;
        o.threshold_pps = n.threshold_pps;
        o.addresses = o.addresses.max(n.addresses);
        o.signature.merge_sources(&n.signature);
        for (list, n) in n.ioc {
            let c = o.ioc.entry(list).or_default();
            *c = c.saturating_add(n);
        }
        o.sample(now, n.pps);
        o.note(
            now,
            format!(
                "returned {} s after it went quiet, at {} pps",
                away / 1000,
                n.pps
            ),
        );
        self.counters.attacks_started = self.counters.attacks_started.saturating_sub(1);
        self.counters.attacks_reopened += 1;
        true
    }

    /// The name of the node that reports an attack's target now.
    pub fn seen_by(&self, a: &Attack) -> Option<&str> {
        if let Some(p) = a.prefix {
            return self.prefix_seen_by(p);
        }
        self.targets
            .get(&a.target)
            .and_then(|t| self.nodes.get(t.node as usize))
            .map(|n| n.name.as_str())
    }

    pub fn target_count(&self) -> usize {
        self.targets.len()
    }

    /// One target's rates and baselines.
    pub fn target(&self, addr: IpAddr) -> Option<TargetView> {
        let t = self.targets.get(&addr)?;
        let (gname, _, th) = &self.settings.groups[t.group as usize];
        let warm = th.warmup.as_millis() as u64;
        Some(TargetView {
            addr,
            group: gname.clone(),
            node: self.nodes[t.node as usize].name.clone(),
            pps: t.pps as u64,
            bps: t.bps,
            trusted_pps: t.trusted_pps as u64,
            last_ms: t.last_ms,
            classes: Class::ALL
                .iter()
                .map(|c| {
                    let s = &t.classes[c.index()];
                    ClassView {
                        class: *c,
                        pps: t.class_pps[c.index()] as u64,
                        baseline_pps: s.baseline.mean as f64,
                        stddev_pps: s.baseline.stddev(),
                        threshold_pps: s.baseline.threshold(
                            th.floor_pps[c.index()],
                            th.ratio,
                            th.deviations,
                            warm,
                        ),
                        warm: s.baseline.warm(warm),
                    }
                })
                .collect(),
            attacks: t
                .classes
                .iter()
                .chain(std::iter::once(&t.total))
                .filter_map(|c| c.attack())
                .collect(),
        })
    }

    /// The busiest targets, up to `limit`.
    pub fn top_targets(&self, limit: usize) -> Vec<TargetView> {
        self.busiest(limit)
            .into_iter()
            .filter_map(|a| self.target(a))
            .collect()
    }

    fn node_id(&mut self, name: &str) -> u32 {
        if let Some(i) = self.node_index.get(name) {
            return *i;
        }
        let i = self.nodes.len() as u32;
        self.nodes.push(Node {
            name: name.to_string(),
            last_report_ms: 0,
            interval_ms: 0,
            seq: 0,
            reports: 0,
            stale: false,
            rx_pps: 0,
            rx_bps: 0,
            one_in: 1,
            upstream: self.settings.upstream.iter().any(|u| u == name),
            trusted_pps: 0,
            targets: FastSet::default(),
            prefixes: FastSet::default(),
        });
        self.node_index.insert(name.to_string(), i);
        i
    }

    /// Marks nodes that stopped reporting as stale; returns their names when they become so.
    pub fn check_stale(&mut self, now: u64) -> Vec<String> {
        let stale_ms = self.settings.stale_after.as_millis() as u64;
        let mut out = Vec::new();
        for n in &mut self.nodes {
            let late = n.last_report_ms + stale_ms.max(3 * n.interval_ms as u64) <= now;
            if late && !n.stale {
                n.stale = true;
                out.push(n.name.clone());
                // Frozen: attacks on its targets hold; their quiet time starts over when it is back.
                for addr in &n.targets {
                    if let Some(t) = self.targets.get(addr) {
                        for c in t.classes.iter().chain(std::iter::once(&t.total)) {
                            if let Some(a) = c.attack().and_then(|id| self.attacks.get_mut(&id)) {
                                a.note(now, format!("node {} stale: holding", n.name));
                            }
                        }
                    }
                }
            }
        }
        if now >= self.last_sweep + SWEEP_MS {
            self.last_sweep = now;
            self.evict_idle(now);
            self.evict_idle_prefixes(now);
            self.evict_idle_dormant(now);
        }
        out
    }

    /// Forgets the targets nothing has reported for `target_idle` and that are under no attack.
    fn evict_idle(&mut self, now: u64) {
        let idle = self.settings.target_idle.as_millis() as u64;
        let gone: Vec<(IpAddr, u32)> = self
            .targets
            .iter()
            .filter(|(_, t)| t.last_ms + idle <= now)
            .filter(|(_, t)| {
                t.classes
                    .iter()
                    .chain(std::iter::once(&t.total))
                    .all(|c| c.attack.is_none())
            })
            .map(|(a, t)| (*a, t.node))
            .collect();
        for (addr, node) in gone {
            self.targets.remove(&addr);
            if let Some(n) = self.nodes.get_mut(node as usize) {
                n.targets.remove(&addr);
            }
            self.counters.targets_evicted += 1;
        }
    }

    /// Takes one report from `node` (the token's name) at `now`; returns what changed.
    pub fn ingest(&mut self, node: &str, r: &Report, now: u64) -> Vec<Event> {
        self.counters.reports += 1;
        let ni = self.node_id(node);
        let was_stale;
        {
            let n = &mut self.nodes[ni as usize];
            was_stale = n.stale;
            n.stale = false;
            n.last_report_ms = now;
            n.interval_ms = r.interval_ms;
            n.seq = r.seq;
            n.reports += 1;
            n.one_in = r.one_in;
            let secs = r.interval_ms as f64 / 1000.0;
            n.rx_pps = (r
                .interfaces
                .iter()
                .map(|i| i.rx_packets as f64)
                .sum::<f64>()
                / secs) as u64;
            n.rx_bps =
                (r.interfaces.iter().map(|i| i.rx_bytes as f64).sum::<f64>() * 8.0 / secs) as u64;
        }
        let dt = r.interval_ms as u64;
        let mut events = Vec::new();
        let mut seen = FastSet::default();
        let mut excluded = Vec::new();
        let mut trusted = 0u64;
        for t in &r.targets {
            if !seen.insert(t.dst) {
                continue;
            }
            trusted = trusted.saturating_add(t.trusted_pps);
            excluded.extend(self.observe(ni, t, dt, now, was_stale, &mut events));
        }
        self.nodes[ni as usize].trusted_pps = trusted;
        // Targets this node reported before and not now: nothing reached them.
        let gone: Vec<IpAddr> = self.nodes[ni as usize]
            .targets
            .iter()
            .filter(|a| !seen.contains(a))
            .copied()
            .collect();
        for addr in gone {
            let belongs = self.targets.get(&addr).is_some_and(|t| t.node == ni);
            if !belongs {
                self.nodes[ni as usize].targets.remove(&addr);
                continue;
            }
            let idle = Target {
                dst: addr,
                pps: 0,
                bps: 0,
                flows: Vec::new(),
                sources: Vec::new(),
                trusted_pps: 0,
                trusted_bps: 0,
            };
            self.observe(ni, &idle, dt, now, was_stale, &mut events);
        }
        // The same report, summed per prefix (carpet bombing).
        self.observe_prefixes(ni, r, &excluded, now, was_stale, &mut events);
        events
    }

    fn observe(
        &mut self,
        ni: u32,
        t: &Target,
        dt: u64,
        now: u64,
        was_stale: bool,
        events: &mut Vec<Event>,
    ) -> Option<Excluded> {
        let Some(g) = group_of(&self.settings.groups, t.dst) else {
            self.counters.targets_unprotected += 1;
            return None;
        };
        // The rate a source needs to be judged by its share: a few samples behind the estimate.
        let one_in = u64::from(self.nodes[ni as usize].one_in.max(1));
        let min_source_pps = MIN_SOURCE_SAMPLES.saturating_mul(one_in) * 1000 / dt.max(1);
        if !self.targets.contains_key(&t.dst) {
            if self.nodes[ni as usize].targets.len() >= self.settings.max_targets_per_node {
                self.counters.targets_over_node_limit += 1;
                return None;
            }
            if self.targets.len() >= self.settings.max_targets {
                self.counters.targets_over_limit += 1;
                return None;
            }
            let mut state = TargetState {
                group: g as u16,
                node: ni,
                classes: Default::default(),
                total: ClassState::default(),
                last_ms: now,
                upstream_ms: 0,
                pps: 0,
                bps: 0,
                trusted_pps: 0,
                class_pps: [0; Class::ALL.len()],
            };
            if let Some(l) = self.dormant.remove(&t.dst) {
                take_back(&mut state.classes, &mut state.total, l, now);
            }
            self.targets.insert(t.dst, state);
        }
        self.nodes[ni as usize].targets.insert(t.dst);
        let th = self.settings.groups[g].2.clone();
        // The classes in which the address's prefix is under attack.
        let covered = self.covered(t.dst);

        // Rates per class.
        let mut pps = [0f64; Class::ALL.len()];
        let mut bps = [0f64; Class::ALL.len()];
        for f in &t.flows {
            let c = Class::of(f).index();
            pps[c] += f.pps as f64;
            bps[c] += f.bps as f64;
        }
        let state = self.targets.get_mut(&t.dst)?;
        if state.node != ni {
            // Another node now sees this address (it moved): take its figures from here on.
            state.node = ni;
        }
        state.last_ms = now;
        if self.nodes[ni as usize].upstream {
            state.upstream_ms = now;
        }
        let upstream_ms = state.upstream_ms;
        state.pps = t.pps.min(u32::MAX as u64) as u32;
        state.bps = t.bps;
        state.trusted_pps = t.trusted_pps.min(u32::MAX as u64) as u32;
        for (s, x) in state.class_pps.iter_mut().zip(pps) {
            *s = x as u32;
        }

        let cooldown = th.cooldown.as_millis() as u64;
        let mut starts: Vec<(Option<Class>, f64, f64, f64)> = Vec::new();
        // (attack, pps, bps, quiet since: its end once the cooldown has passed)
        let mut updates: Vec<(u64, f64, f64, Option<u64>)> = Vec::new();
        let mut anomalous_class = false;

        for c in Class::ALL {
            let i = c.index();
            let cs = &mut state.classes[i];
            let Verdict {
                thr,
                mut start,
                mut quiet,
            } = judge(cs, pps[i], th.floor_pps[i], &th, dt, now, was_stale);
            if let Some(id) = cs.attack() {
                hold_at_cap(cs, &mut quiet, self.attacks.get(&id), pps[i], bps[i]);
            }
            if start && covered.is_some_and(|cv| cv[i]) {
                // Its prefix is under attack in this class: the prefix's rule matches this
                // address's share of the flood already. No second attack, no /32 beside the /24.
                start = false;
                self.counters.covered_by_prefix += 1;
            }
            if start || cs.attack.is_some() {
                anomalous_class = true;
            }
            if start {
                starts.push((Some(c), pps[i], bps[i], thr));
            } else {
                carry(cs, pps[i], bps[i], quiet, &mut updates);
            }
        }
        // All traffic, in bits per second: a flood no class explains.
        {
            let cs = &mut state.total;
            let x = t.bps as f64;
            let Verdict {
                thr,
                mut start,
                mut quiet,
            } = judge(cs, x, th.floor_bps, &th, dt, now, was_stale);
            if start && covered.is_some_and(|cv| cv[Class::ALL.len()]) {
                start = false;
                self.counters.covered_by_prefix += 1;
            }
            if let Some(id) = cs.attack() {
                hold_at_cap(cs, &mut quiet, self.attacks.get(&id), t.pps as f64, x);
            }
            if start && !anomalous_class {
                starts.push((None, t.pps as f64, x, thr));
            } else if start {
                cs.above = 0;
            } else {
                carry(cs, t.pps as f64, x, quiet, &mut updates);
            }
        }

        // Attacks begin. A connection flood is SYNs and ACKs together: one attack for both
        // classes (SYN comes first in class order).
        // A flash crowd (handshakes completed, no source standing out) is no attack, in its SYNs
        // nor in the ACKs of its handshakes; both are judged again at the next interval.
        let mut connection_flood = None;
        let mut crowd = false;
        for (class, p, b, thr) in starts {
            if class == Some(Class::TcpAck) && connection_flood.is_some() {
                state.classes[Class::TcpAck.index()].set_attack(connection_flood);
                continue;
            }
            if class == Some(Class::TcpSyn) {
                crowd = classify::syn_flash_crowd(&t.flows, &t.sources, t.pps);
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
                    let (v, mut s) = classify::signature(c, &t.flows, &t.sources);
                    s.add_sources(&t.sources, t.pps, min_source_pps);
                    if v == Vector::TcpConnectionFlood {
                        connection_flood = Some(id);
                    }
                    let base = state.classes[c.index()].baseline.mean as f64;
                    state.classes[c.index()].set_attack(Some(id));
                    (v, s, c, base)
                }
                None => {
                    state.total.set_attack(Some(id));
                    let mut s = Signature::default();
                    s.add_sources(&t.sources, t.pps, min_source_pps);
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
                target: t.dst,
                prefix: None,
                addresses: 0,
                // Names are copied only when an attack starts, not on every report.
                group: self.settings.groups[g].0.clone(),
                node: self.nodes[ni as usize].name.clone(),
                vector,
                class: cls,
                signature,
                started_ms: now,
                ended_ms: None,
                pps: p as u64,
                bps: b as u64,
                peak_pps: p as u64,
                peak_bps: b as u64,
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
            let unit = if class.is_some() { "pps" } else { "bps" };
            a.note(
                now,
                format!(
                    "started: {vector} at {} {unit} (threshold {}, baseline {})",
                    if class.is_some() { p } else { b } as u64,
                    thr as u64,
                    baseline as u64
                ),
            );
            self.attacks.insert(id, a);
            self.counters.attacks_started += 1;
            events.push(Event::Started(id));
        }
        self.carry_on(
            updates,
            &t.sources,
            t.pps,
            min_source_pps,
            upstream_ms,
            cooldown,
            now,
            events,
        );
        // What its own attacks account for is not the prefix's to judge again.
        let state = self.targets.get(&t.dst)?;
        let mut ex = Excluded {
            dst: t.dst,
            pps: [0.0; Class::ALL.len()],
            bps: 0.0,
            new: [None; Class::ALL.len() + 1],
        };
        let new = |id: Option<u64>| {
            id.filter(|id| {
                self.attacks
                    .get(id)
                    .is_some_and(|a| a.started_ms == now && a.target == t.dst)
            })
        };
        for (i, cs) in state.classes.iter().enumerate() {
            if cs.attack.is_some() {
                ex.pps[i] = pps[i];
                ex.new[i] = new(cs.attack());
            }
        }
        if state.total.attack.is_some() {
            ex.bps = t.bps as f64;
            ex.new[Class::ALL.len()] = new(state.total.attack());
        }
        Some(ex)
    }

    /// Attacks under way go on with new rates, or end (quiet for the cooldown): `updates` holds
    /// (attack, pps, bps, quiet since) per class, an attack of two classes twice.
    #[allow(clippy::too_many_arguments)]
    fn carry_on(
        &mut self,
        updates: Vec<(u64, f64, f64, Option<u64>)>,
        sources: &[Source],
        total_pps: u64,
        min_source_pps: u64,
        upstream_ms: u64,
        cooldown: u64,
        now: u64,
        events: &mut Vec<Event>,
    ) {
        let mut ended_any = false;
        let mut merged: Vec<(u64, f64, f64, Option<u64>)> = Vec::new();
        for (id, p, b, quiet) in updates {
            match merged.iter_mut().find(|m| m.0 == id) {
                Some(m) => {
                    m.1 += p;
                    m.2 += b;
                    // Quiet when every class of it is, since the last one went quiet.
                    m.3 = m.3.zip(quiet).map(|(x, y)| x.max(y));
                }
                None => merged.push((id, p, b, quiet)),
            }
        }
        for (id, p, b, quiet) in merged {
            let Some(a) = self.attacks.get_mut(&id) else {
                continue;
            };
            a.pps = p as u64;
            a.bps = b as u64;
            a.sample(now, a.pps);
            if a.pps > a.peak_pps {
                a.peak_pps = a.pps;
            }
            if a.bps > a.peak_bps {
                a.peak_bps = a.bps;
            }
            // Sources seen while it lasts join the signature.
            a.signature.add_sources(sources, total_pps, min_source_pps);
            if let Some(since) = quiet {
                a.ended_ms = Some(since);
                // A node upstream of the filters reported it during the quiet, and saw quiet
                // too (a report above would have ended the quiet).
                a.quiet_upstream = upstream_ms >= since;
                a.note(
                    now,
                    format!(
                        "ended: quiet for {} s, peak {} pps",
                        cooldown / 1000,
                        a.peak_pps
                    ),
                );
                self.counters.attacks_ended += 1;
                events.push(Event::Ended(id));
                ended_any = true;
            } else {
                events.push(Event::Updated(id));
            }
        }
        if ended_any {
            self.trim_ended();
        }
    }

    fn trim_ended(&mut self) {
        let ended = self.attacks.values().filter(|a| !a.is_active()).count();
        if ended > MAX_ENDED {
            let drop: Vec<u64> = self
                .attacks
                .values()
                .filter(|a| !a.is_active())
                .take(ended - MAX_ENDED)
                .map(|a| a.id)
                .collect();
            for id in drop {
                self.attacks.remove(&id);
            }
        }
    }
}

/// The group (index) an address belongs to.
/// A target's (or prefix's) baselines in snapshot order: its classes, then the total.
fn slots(
    classes: &[ClassState; Class::ALL.len()],
    total: &ClassState,
) -> [Baseline; snapshot::SLOTS] {
    let mut b = [Baseline::default(); snapshot::SLOTS];
    for (x, c) in b
        .iter_mut()
        .zip(classes.iter().chain(std::iter::once(total)))
    {
        *x = c.baseline;
    }
    b
}

/// Restored baselines into a new target's (or prefix's) classes, less the time since they last
/// learned (see [`Detector::restore`]).
fn take_back(
    classes: &mut [ClassState; Class::ALL.len()],
    total: &mut ClassState,
    l: snapshot::Learned,
    now: u64,
) {
    let away = now.saturating_sub(l.last_ms).min(u32::MAX as u64) as u32;
    for (c, mut b) in classes
        .iter_mut()
        .chain(std::iter::once(total))
        .zip(l.baselines)
    {
        b.learned_ms = b.learned_ms.saturating_sub(away);
        if b.learned_ms == 0 {
            b = Baseline::default();
        }
        c.baseline = b;
    }
}

fn group_of(groups: &[(String, Vec<IpNet>, Thresholds)], addr: IpAddr) -> Option<usize> {
    groups
        .iter()
        .position(|(_, nets, _)| nets.iter().any(|n| n.contains(&addr)))
}

#[cfg(test)]
mod tests;
