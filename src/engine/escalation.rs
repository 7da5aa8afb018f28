//! One attack's way through its policy: which step is due, what it orders, what a new rule
//! replaces, when lifetimes are renewed and when everything is withdrawn.
//!
//! Pure, like `deflect_bgp::fsm`: attack and clock in, decisions out. The engine carries the
//! decisions out (the mitigation set, alerts, playbook calls, node-local drops) and reports back
//! what was made ([`Escalation::made`]).
//!
//! ```text
//!   attack starts ──► Escalation::new
//!   every report and tick ──► next_due ──► announcement / local_drop / a call   (step fired)
//!   active: tick ──► Renew every ttl/3 while it lasts and is seen
//!   attack goes quiet ──► end ──► hold-down ──tick: Withdraw after `hold`──► probation
//!   probation ──tick: Close after `recurrence.probation`──► gone (the attack is over)
//!   comes back in hold-down or probation ──► come_back: the same attack, `hold` × growth;
//!                  after a withdrawal the steps fired before fire again at once
//!   no evidence (its node stale) ──► no renewal, no step; tick: Starved once the lifetime granted
//!                                    runs out: withdrawn, and the steps start over on evidence
//! ```
//!
//! Quiet is no proof: once deflect's rule is enforced, the flood it matches disappears from any
//! telemetry behind the edge. The hold-down is how long deflect trusts its own rule before it
//! withdraws it to look; a flood that comes back shows it looked too soon, so the next look
//! waits longer. A rate-limit rule lets the attack through at its cap, and traffic pressing at
//! the cap keeps the attack going (`detect::Cap`).
//!
//! Evidence: a mitigation lives on what deflect sees. While nothing sees the attacked address (its
//! node stopped reporting, and no other node or agent reports it), the attack is held but its
//! mitigations are not renewed and no further step fires: a node that dies or lies and goes
//! silent cannot keep a rule in the routers for ever.

use std::net::IpAddr;
use std::time::Duration;

use deflect_bgp::rib::RouteKey;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::alert::Event as Alert;
use crate::detect::{Attack, Cap, Class, Vector};
use crate::mitigation::Order;
use crate::policy::{self, Call, LocalStep, Part, Policy};
use crate::route::{Kind, Target};
use crate::telemetry::LocalDrop;

/// A mitigation a policy step made.
#[derive(Debug, Clone, PartialEq)]
pub struct Made {
    pub id: u64,
    pub kind: Kind,
    /// What identifies it on the wire: a rule's match, or the prefix.
    pub key: RouteKey,
}

/// What the timer should do for one escalation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tick {
    /// Nothing yet.
    Wait,
    /// The attack lasts: renew every mitigation's lifetime to this.
    Renew(Duration),
    /// The hold-down after the attack went quiet is over: withdraw and undo everything, and
    /// watch for its return.
    Withdraw,
    /// The probation after the withdrawal is over: the attack is over.
    Close,
    /// The attack has had no evidence for the lifetime its mitigations were given: withdraw them
    /// (the attack itself is held), and start the steps over when it is seen again.
    Starved,
}

/// How long before its mitigations would expire a starved escalation withdraws them itself, so
/// that the record says why (the engine's timer runs every 250 ms).
const STARVE_MARGIN_MS: u64 = 1000;

/// One attack's escalation.
#[derive(Debug, Clone)]
pub struct Escalation {
    pub policy: Policy,
    /// What it answers: the attack it watches for when it comes back.
    pub target: IpAddr,
    /// A prefix attack's prefix (carpet bombing): its return is on the prefix, not an address.
    pub prefix: Option<IpNet>,
    pub vector: Vector,
    pub class: Class,
    /// Steps fired so far.
    pub fired: usize,
    /// Steps fired before the last withdrawal: when the attack comes back they fire again at
    /// once; the steps after them count their `after` from `since`.
    pub reached: usize,
    /// When the steps' `after` counts from: the attack's start, or its last return after a
    /// withdrawal.
    pub since: u64,
    pub made: Vec<Made>,
    /// Playbook calls made, with the event they were made for: undone on withdrawal, even if the
    /// attack itself is no longer remembered by then.
    pub calls: Vec<(Call, Alert)>,
    /// Node-local drops asked for: (node, drop id).
    pub locals: Vec<(String, u64)>,
    pub last_refresh: u64,
    /// When the attack went quiet: the hold-down runs from then.
    pub ended_at: Option<u64>,
    /// When its mitigations were withdrawn after the hold-down: on probation since.
    pub withdrawn_at: Option<u64>,
    /// The hold-down in force: `withdraw_after`, grown by each return.
    pub hold: Duration,
    /// Times the attack came back.
    pub returns: u32,
    /// Its end was told when it went quiet (nothing it made could hide the flood); otherwise it
    /// is told when the escalation closes.
    pub end_told: bool,
    /// Its last quiet was seen before the edge's filters: the flood really ended, and the
    /// policy's first hold-down is enough.
    pub quiet_upstream: bool,
}

/// What is kept in the store of an escalation that waits for its attack's return, so that a
/// restart neither forgets that the attack came back nor resets its hold-down.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Memory {
    pub attack: u64,
    pub target: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<IpNet>,
    pub vector: Vector,
    pub class: Class,
    pub policy: String,
    pub hold_ms: u64,
    pub returns: u32,
    pub reached: usize,
    /// Remembered until then: the end of the probation (or of the hold-down and probation both,
    /// while the rules are still in place).
    pub until_ms: u64,
    /// Its mitigations in place when it was written: after a restart the escalation takes back
    /// those still active, so they leave after a hold-down rather than at the end of their
    /// lifetime (nothing would see a flood their own enforcement hides).
    #[serde(default)]
    pub made: Vec<u64>,
}

impl Memory {
    /// The store's key: one memory per target and vector.
    pub fn key(&self) -> String {
        memory_key(self.target, self.prefix, self.vector)
    }
}

/// `ADDRESS VECTOR`, or `PREFIX VECTOR` for a prefix attack.
pub fn memory_key(target: IpAddr, prefix: Option<IpNet>, vector: Vector) -> String {
    match prefix {
        Some(p) => format!("{p} {vector}"),
        None => format!("{target} {vector}"),
    }
}

impl Escalation {
    pub fn new(policy: Policy, a: &Attack, now: u64) -> Escalation {
        Escalation {
            target: a.target,
            prefix: a.prefix,
            vector: a.vector,
            class: a.class,
            fired: 0,
            reached: 0,
            since: a.started_ms,
            made: Vec::new(),
            calls: Vec::new(),
            locals: Vec::new(),
            last_refresh: now,
            ended_at: None,
            withdrawn_at: None,
            hold: policy.withdraw_after,
            returns: 0,
            end_told: false,
            quiet_upstream: false,
            policy,
        }
    }

    /// An escalation remembered from before a restart: on probation until the memory's end, or,
    /// if some of its mitigations are still in place (`adopted`), in a hold-down from `now` with
    /// them: withdrawn after it unless the attack is seen again.
    pub fn remembered(policy: Policy, m: &Memory, adopted: Vec<Made>, now: u64) -> Escalation {
        let probation = policy.recurrence.probation.as_millis() as u64;
        let withdrawn = m.until_ms.saturating_sub(probation);
        let mut e = Escalation {
            target: m.target,
            prefix: m.prefix,
            vector: m.vector,
            class: m.class,
            fired: 0,
            reached: m.reached.min(policy.steps.len()),
            since: withdrawn,
            made: Vec::new(),
            calls: Vec::new(),
            locals: Vec::new(),
            last_refresh: withdrawn,
            ended_at: None,
            withdrawn_at: Some(withdrawn),
            hold: Duration::from_millis(m.hold_ms)
                .clamp(policy.withdraw_after, policy.recurrence.max_withdraw_after),
            returns: m.returns,
            end_told: false,
            quiet_upstream: false,
            policy,
        };
        if !adopted.is_empty() {
            e.made = adopted;
            e.fired = e.reached;
            e.withdrawn_at = None;
            e.ended_at = Some(now);
            e.last_refresh = now;
        }
        e
    }

    /// What to keep in the store so that a restart does not forget it: how long its hold-down
    /// has grown and how often the attack came back (`None`: nothing worth keeping, an attack
    /// that never went quiet and never came back).
    pub fn memory(&self, attack: u64, now: u64) -> Option<Memory> {
        let probation = self.policy.recurrence.probation.as_millis() as u64;
        let hold = self.hold.as_millis() as u64;
        let until = match (self.ended_at, self.withdrawn_at) {
            (_, Some(w)) => w + probation,
            (Some(t), None) => t + hold + probation,
            // Active, its rules in place (or after a return): they live at most their TTL if
            // deflect stops now.
            (None, None) if self.returns > 0 || !self.made.is_empty() => {
                now + self.ttl().as_millis() as u64 + hold + probation
            }
            (None, None) => return None,
        };
        Some(Memory {
            attack,
            target: self.target,
            prefix: self.prefix,
            vector: self.vector,
            class: self.class,
            policy: self.policy.name.clone(),
            hold_ms: self.hold.as_millis() as u64,
            returns: self.returns,
            reached: self.reached.max(self.fired),
            until_ms: until,
            made: self.made.iter().map(|m| m.id).collect(),
        })
    }

    /// Whether it waits for its attack to come back: in its hold-down or on probation.
    pub fn awaits_return(&self) -> bool {
        self.ended_at.is_some() || self.withdrawn_at.is_some()
    }

    /// Whether its mitigations were withdrawn and it is on probation.
    pub fn on_probation(&self) -> bool {
        self.withdrawn_at.is_some()
    }

    /// The attack came back at `now`: it goes on, and the next hold-down is longer. In the
    /// hold-down the rules are still in place and stay; after a withdrawal the steps fired
    /// before fire again at once.
    pub fn come_back(&mut self, now: u64) {
        let r = &self.policy.recurrence;
        self.returns += 1;
        self.hold = self
            .hold
            .saturating_mul(r.growth)
            .min(r.max_withdraw_after)
            .max(self.policy.withdraw_after);
        if self.withdrawn_at.take().is_some() {
            self.since = now;
            self.last_refresh = now;
        }
        self.ended_at = None;
        self.end_told = false;
        self.quiet_upstream = false;
    }

    /// The next step whose time and rate condition have come, marked fired. Nothing fires on no
    /// evidence (`seen` false).
    pub fn next_due(&mut self, a: &Attack, now: u64, seen: bool) -> Option<usize> {
        if self.awaits_return() || !seen {
            return None;
        }
        let step = self.policy.steps.get(self.fired)?;
        // Steps reached before a withdrawal come back at once: the attack already earned them.
        let again = self.fired < self.reached;
        if !again && now < self.since + step.after.as_millis() as u64 {
            return None;
        }
        if step.if_above_pps.is_some_and(|x| a.pps < x) {
            return None;
        }
        self.fired += 1;
        Some(self.fired - 1)
    }

    /// The attack went quiet at `at`: the hold-down runs from then. `upstream`: the quiet was
    /// seen before the edge's filters too, so no rule of deflect's hid the flood.
    pub fn end(&mut self, at: u64, upstream: bool) {
        self.ended_at = Some(at);
        self.quiet_upstream = upstream;
        self.end_told = upstream || !self.hides();
    }

    /// The hold-down of this quiet: the grown one, unless the quiet was seen upstream of the
    /// filters (then there is nothing to doubt).
    pub fn this_hold(&self) -> Duration {
        if self.quiet_upstream {
            self.policy.withdraw_after
        } else {
            self.hold
        }
    }

    /// Whether something it made may hide the flood from deflect's telemetry: a rule at the edge,
    /// or a call (a diversion to a scrubbing service). Node-local drops do not: the probe sees
    /// packets before its own filter.
    pub fn hides(&self) -> bool {
        !self.made.is_empty() || !self.calls.is_empty()
    }

    /// Its mitigations were withdrawn at `now` after the hold-down (playbook calls undone,
    /// node-local drops removed): on probation.
    pub fn withdrawn(&mut self, now: u64) {
        self.reached = self.reached.max(self.fired);
        self.fired = 0;
        self.made.clear();
        self.calls.clear();
        self.locals.clear();
        self.ended_at = None;
        self.withdrawn_at = Some(now);
    }

    /// What the timer does now; `seen`: whether the attack still has evidence.
    pub fn tick(&self, now: u64, seen: bool) -> Tick {
        if let Some(w) = self.withdrawn_at {
            return if now >= w + self.policy.recurrence.probation.as_millis() as u64 {
                Tick::Close
            } else {
                Tick::Wait
            };
        }
        match self.ended_at {
            Some(t) if now >= t + self.this_hold().as_millis() as u64 => Tick::Withdraw,
            Some(_) => Tick::Wait,
            None if !seen => {
                // The lifetime granted at the last renewal runs out: withdrawn on record, a
                // moment before the set would expire them on its own.
                let granted = self.last_refresh + self.ttl().as_millis() as u64;
                if !self.made.is_empty() && now + STARVE_MARGIN_MS >= granted {
                    Tick::Starved
                } else {
                    Tick::Wait
                }
            }
            None => {
                // Renew at a third of the TTL, so a live attack never loses its rule.
                let every = (self.policy.ttl.as_millis() as u64 / 3).max(1000);
                if now >= self.last_refresh + every && !self.made.is_empty() {
                    Tick::Renew(self.ttl())
                } else {
                    Tick::Wait
                }
            }
        }
    }

    /// Lifetimes were renewed at `now`.
    pub fn renewed(&mut self, now: u64) {
        self.last_refresh = now;
    }

    /// Its mitigations were withdrawn for want of evidence: nothing is made any more, and the
    /// steps start over once the attack is seen again. Playbook calls and node-local drops stay
    /// until the attack ends (they are undone then).
    pub fn starved(&mut self, now: u64) -> Vec<Made> {
        self.reached = self.reached.max(self.fired);
        self.fired = 0;
        self.last_refresh = now;
        std::mem::take(&mut self.made)
    }

    /// Each mitigation's lifetime, whole seconds (at least one).
    pub fn ttl(&self) -> Duration {
        Duration::from_secs(self.policy.ttl.as_secs().max(1))
    }

    /// Which earlier mitigations a new one of `kind` identified by `key` replaces: those with the
    /// same identity are withdrawn before it is made (one rule on the wire per match), other rules
    /// of the same kind once it is in place (FlowSpec only: a narrower or wider rule for the same
    /// attack).
    pub fn replaced_by(&self, kind: Kind, key: &RouteKey) -> (Vec<u64>, Vec<u64>) {
        let (same, others): (Vec<&Made>, Vec<&Made>) = self
            .made
            .iter()
            .filter(|m| m.kind == kind)
            .partition(|m| &m.key == key);
        let after = if kind == Kind::Flowspec {
            others.iter().map(|m| m.id).collect()
        } else {
            Vec::new()
        };
        (same.iter().map(|m| m.id).collect(), after)
    }

    /// A step made mitigation `id`: it replaces what [`Escalation::replaced_by`] named.
    #[cfg(test)]
    pub fn made(&mut self, kind: Kind, key: RouteKey, id: u64) {
        let keys = [key.clone()];
        let gone = self.superseded(kind, &keys);
        self.made_by_step(kind, &[(key, id)], &gone);
    }

    /// The attack's FlowSpec rules a step whose own rules are `keys` replaces once they are in
    /// place: every other one (none for the other kinds, which come on top).
    pub fn superseded(&self, kind: Kind, keys: &[RouteKey]) -> Vec<u64> {
        if kind != Kind::Flowspec {
            return Vec::new();
        }
        self.made
            .iter()
            .filter(|m| m.kind == kind && !keys.contains(&m.key))
            .map(|m| m.id)
            .collect()
    }

    /// A step made these mitigations of `kind` (each replacing one of the same identity), and
    /// withdrew `gone`.
    pub fn made_by_step(&mut self, kind: Kind, made: &[(RouteKey, u64)], gone: &[u64]) {
        self.made.retain(|x| {
            let replaced = x.kind == kind && made.iter().any(|(k, _)| *k == x.key);
            !(gone.contains(&x.id) || replaced)
        });
        for (key, id) in made {
            self.made.push(Made {
                id: *id,
                kind,
                key: key.clone(),
            });
        }
    }
}

/// The actor a policy acts as, in the mitigation set and the audit log.
pub fn actor(policy: &Policy, attack: u64) -> String {
    format!("policy:{} attack:{attack}", policy.name)
}

/// The orders step `n` (an announcement of `kind`) gives for attack `a`: one rule or route, or
/// one per heavy source (a `src` FlowSpec step, a source-rtbh step: none when no source carries
/// the step's share). Each goes through the set's guardrails on its own.
pub fn announcements(
    a: &Attack,
    policy: &Policy,
    n: usize,
    kind: Kind,
) -> Result<Vec<Order>, String> {
    let step = &policy.steps[n];
    let select = step.sources.unwrap_or_default();
    let targets = match kind {
        Kind::Flowspec if step.parts.contains(&Part::Src) => {
            policy::source_routes(a.dst(), &a.signature, &step.parts, &step.actions, &select)
                .map_err(|e| format!("rule: {e}"))?
                .into_iter()
                .map(Target::flowspec)
                .collect::<Result<Vec<_>, _>>()?
        }
        Kind::Flowspec => {
            // A prefix attack's rule is on its prefix.
            let route =
                policy::flowspec_route_to(a.dst(), &a.signature, &step.parts, &step.actions)
                    .map_err(|e| format!("rule: {e}"))?;
            vec![Target::flowspec(route)?]
        }
        // A prefix attack's blackhole is the prefix: the guardrails' rtbh_min_prefix decide.
        Kind::Rtbh => vec![Target::Rtbh(a.dst())],
        Kind::SourceRtbh => policy::heavy_sources(a.dst(), &a.signature, &select)
            .into_iter()
            .map(|s| Target::SourceRtbh(ipnet::IpNet::from(s)))
            .collect(),
        Kind::Divert => {
            let d = step
                .divert
                .as_ref()
                .ok_or("a divert step without its route")?;
            vec![Target::Divert(policy::divert_target(a.dst(), d)?)]
        }
    };
    let reason = format!(
        "{} on {} ({} pps), policy {} step {}",
        a.vector,
        a.what(),
        a.pps,
        policy.name,
        n + 1
    );
    Ok(targets
        .into_iter()
        .map(|target| Order {
            reason: match &target {
                Target::SourceRtbh(s) => format!("{reason}: source {}", s.addr()),
                Target::Flowspec(r) if r.rule.source().is_some() => {
                    format!(
                        "{reason}: source {}",
                        r.rule.source().map(|s| s.addr()).unwrap_or(a.target)
                    )
                }
                _ => reason.clone(),
            },
            target,
            ttl: Some(Duration::from_secs(policy.ttl.as_secs().max(1))),
            peers: step.peers.clone(),
            actor: actor(policy, a.id),
        })
        .collect())
}

/// The node-local drop a `local` step asks the attacked node's probe for.
pub fn local_drop(a: &Attack, step: &LocalStep, id: u64) -> LocalDrop {
    let sig = &a.signature;
    let has = |p: Part| step.parts.contains(&p);
    LocalDrop {
        id,
        dst: a.target,
        src: sig.sources.first().copied().filter(|_| has(Part::Sources)),
        proto: sig.proto.filter(|_| {
            has(Part::Proto)
                || (has(Part::Sport) && !sig.sports.is_empty())
                || (has(Part::Dport) && !sig.dports.is_empty())
                || (has(Part::TcpFlags) && sig.tcp_flags.is_some())
        }),
        sports: if has(Part::Sport) {
            sig.sports.clone()
        } else {
            Vec::new()
        },
        dports: if has(Part::Dport) {
            sig.dports.clone()
        } else {
            Vec::new()
        },
        tcp_flags: sig.tcp_flags.filter(|_| has(Part::TcpFlags)),
        fragment: sig.fragment && has(Part::Fragment),
        rate_bytes: step.rate_bytes,
    }
}

/// The rate a FlowSpec rule with these actions lets through, if it is a rate-limit (a rate of 0
/// discards: nothing passes, nothing can press on it).
pub fn cap_of(actions: &[deflect_bgp::flowspec::Action]) -> Option<Cap> {
    use deflect_bgp::flowspec::Action;
    actions.iter().find_map(|a| match *a {
        Action::TrafficRateBytes { rate, .. } if rate > 0.0 => Some(Cap {
            pps: None,
            bps: Some((f64::from(rate) * 8.0) as u64),
        }),
        Action::TrafficRatePackets { rate, .. } if rate > 0.0 => Some(Cap {
            pps: Some(f64::from(rate) as u64),
            bps: None,
        }),
        _ => None,
    })
}

/// Whether node-local drops can reach `node`: only a probe reads the answers to its reports.
pub fn has_probe(node: &str) -> bool {
    !node.starts_with("sflow:")
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::detect::{Class, Signature, Vector};

    fn host_key(addr: IpAddr) -> RouteKey {
        Target::host(addr).key()
    }

    fn policy(text: &str) -> Policy {
        let known = policy::Known {
            groups: ["customers".to_string()].into(),
            ..policy::Known::default()
        };
        policy::Policies::parse(&[("p.yaml".into(), text.into())], &known)
            .unwrap()
            .list
            .remove(0)
    }

    fn attack(pps: u64) -> Attack {
        Attack {
            id: 7,
            target: "203.0.113.7".parse().unwrap(),
            group: "customers".into(),
            node: "web1".into(),
            vector: Vector::Amplification,
            class: Class::UdpAmp,
            signature: Signature {
                proto: Some(17),
                sports: vec![123],
                ..Signature::default()
            },
            started_ms: 10_000,
            ended_ms: None,
            pps,
            bps: pps * 1000,
            peak_pps: pps,
            peak_bps: pps * 1000,
            threshold_pps: 1000,
            baseline_pps: 10,
            timeline: Vec::new(),
            mitigations: Vec::new(),
            policy: None,
            series: Vec::new(),
            ioc: Default::default(),
            cap: None,
            quiet_upstream: false,
            prefix: None,
            addresses: 0,
        }
    }

    const TWO_STEPS: &str = "\
match:
  vectors: [amplification]
ttl: 30s
withdraw_after: 5s
steps:
  - announce: flowspec
    match: [proto, sport]
    action: rate-bytes 125000
  - after: 10s
    if_above_pps: 50000
    announce: rtbh
";

    #[test]
    fn steps_fire_in_order_once_their_time_and_rate_have_come() {
        let mut e = Escalation::new(policy(TWO_STEPS), &attack(80_000), 10_000);
        assert_eq!(e.next_due(&attack(80_000), 10_000, true), Some(0));
        assert_eq!(
            e.next_due(&attack(80_000), 10_000, true),
            None,
            "the next one waits"
        );
        assert_eq!(
            e.next_due(&attack(20_000), 25_000, true),
            None,
            "under its rate"
        );
        assert_eq!(e.next_due(&attack(80_000), 25_000, true), Some(1));
        assert_eq!(
            e.next_due(&attack(80_000), 99_000, true),
            None,
            "no step left"
        );
    }

    #[test]
    fn an_ended_attack_fires_nothing_and_is_withdrawn_after_its_hold_down() {
        let mut e = Escalation::new(policy(TWO_STEPS), &attack(80_000), 10_000);
        e.made(Kind::Flowspec, host_key("203.0.113.7".parse().unwrap()), 1);
        e.end(12_000, false);
        assert_eq!(e.next_due(&attack(80_000), 12_000, true), None);
        assert_eq!(e.tick(16_999, true), Tick::Wait);
        assert_eq!(e.tick(17_000, true), Tick::Withdraw);
    }

    #[test]
    fn lifetimes_are_renewed_every_third_of_the_ttl_while_something_is_made() {
        let mut e = Escalation::new(policy(TWO_STEPS), &attack(80_000), 0);
        assert_eq!(
            e.tick(20_000, true),
            Tick::Wait,
            "nothing made, nothing to renew"
        );
        e.made(Kind::Rtbh, host_key("203.0.113.7".parse().unwrap()), 1);
        assert_eq!(e.tick(9_999, true), Tick::Wait);
        assert_eq!(e.tick(10_000, true), Tick::Renew(Duration::from_secs(30)));
        e.renewed(10_000);
        assert_eq!(e.tick(19_999, true), Tick::Wait);
    }

    #[test]
    fn a_new_rule_replaces_the_same_match_first_and_other_rules_after() {
        let mut e = Escalation::new(policy(TWO_STEPS), &attack(80_000), 0);
        let a = attack(80_000);
        let first = announcements(&a, &e.policy, 0, Kind::Flowspec)
            .unwrap()
            .remove(0)
            .target;
        assert_eq!(
            first.to_string(),
            "dst 203.0.113.7/32 proto udp sport 123 then rate-bytes 125000"
        );
        e.made(Kind::Flowspec, first.key(), 1);
        // The same match with other actions: withdrawn before.
        assert_eq!(
            e.replaced_by(Kind::Flowspec, &first.key()),
            (vec![1], vec![])
        );
        // Another match: withdrawn after.
        let wider = Target::parse(Kind::Flowspec, "dst 203.0.113.7/32 then discard")
            .unwrap()
            .key();
        assert_eq!(e.replaced_by(Kind::Flowspec, &wider), (vec![], vec![1]));
        e.made(Kind::Flowspec, wider.clone(), 2);
        assert_eq!(e.made.len(), 1, "{:?}", e.made);
        // RTBH keeps the rules.
        e.made(Kind::Rtbh, host_key(a.target), 3);
        assert_eq!(e.made.len(), 2);
        assert_eq!(
            e.replaced_by(Kind::Rtbh, &host_key(a.target)),
            (vec![3], vec![])
        );
    }

    #[test]
    fn an_announcement_orders_the_policy_lifetime_and_says_why() {
        let p = policy(TWO_STEPS);
        let o = announcements(&attack(80_000), &p, 1, Kind::Rtbh)
            .unwrap()
            .remove(0);
        assert_eq!(o.target, Target::host("203.0.113.7".parse().unwrap()));
        assert_eq!(o.ttl, Some(Duration::from_secs(30)));
        assert_eq!(
            o.reason,
            "amplification on 203.0.113.7 (80000 pps), policy p step 2"
        );
        assert_eq!(o.actor, "policy:p attack:7");
    }

    #[test]
    fn quiet_starts_the_hold_down_then_a_withdrawal_then_probation_then_the_end() {
        let mut e = Escalation::new(policy(TWO_STEPS), &attack(80_000), 10_000);
        assert_eq!(e.next_due(&attack(80_000), 10_000, true), Some(0));
        e.made(Kind::Flowspec, host_key("203.0.113.7".parse().unwrap()), 1);
        assert!(e.hides());
        e.end(20_000, false);
        assert!(e.awaits_return() && !e.on_probation());
        assert!(
            !e.end_told,
            "a rule in place may hide the flood: the end waits"
        );
        assert_eq!(e.tick(24_999, true), Tick::Wait);
        assert_eq!(e.tick(25_000, true), Tick::Withdraw, "5 s from the quiet");
        e.withdrawn(25_000);
        assert!(e.made.is_empty() && e.on_probation());
        assert_eq!(e.reached, 1);
        let probation = e.policy.recurrence.probation.as_millis() as u64;
        assert_eq!(e.tick(25_000 + probation - 1, false), Tick::Wait);
        assert_eq!(e.tick(25_000 + probation, false), Tick::Close);
    }

    #[test]
    fn a_return_after_the_withdrawal_fires_the_steps_reached_at_once_and_grows_the_hold_down() {
        let text = TWO_STEPS.replace(
            "withdraw_after: 5s\n",
            "withdraw_after: 5s\nrecurrence: { growth: 4, max_withdraw_after: 60s }\n",
        );
        let mut e = Escalation::new(policy(&text), &attack(80_000), 10_000);
        let a = attack(80_000);
        assert_eq!(e.next_due(&a, 10_000, true), Some(0));
        assert_eq!(e.next_due(&a, 20_000, true), Some(1), "10 s in, above 50k");
        e.end(30_000, false);
        assert_eq!(
            e.next_due(&a, 31_000, true),
            None,
            "nothing fires while quiet"
        );
        e.withdrawn(35_000);
        // It comes back: both steps at once, not 10 s apart.
        e.come_back(36_000);
        assert_eq!((e.returns, e.hold), (1, Duration::from_secs(20)));
        assert!(!e.awaits_return());
        assert_eq!(e.next_due(&a, 36_000, true), Some(0));
        assert_eq!(e.next_due(&a, 36_000, true), Some(1));
        // Quiet again: withdrawn 20 s after the quiet now; the next return caps at 60 s.
        e.end(40_000, false);
        assert_eq!(e.tick(59_999, true), Tick::Wait);
        assert_eq!(e.tick(60_000, true), Tick::Withdraw);
        e.come_back(45_000);
        assert_eq!(
            e.hold,
            Duration::from_secs(60),
            "80 s capped at max_withdraw_after"
        );
        assert!(
            e.made.is_empty() && e.fired == 2,
            "in the hold-down nothing is withdrawn or fired again"
        );
    }

    #[test]
    fn a_quiet_seen_upstream_of_the_filters_is_believed_at_once() {
        let mut e = Escalation::new(policy(TWO_STEPS), &attack(80_000), 10_000);
        assert_eq!(e.next_due(&attack(80_000), 10_000, true), Some(0));
        e.made(Kind::Flowspec, host_key("203.0.113.7".parse().unwrap()), 1);
        e.end(20_000, false);
        e.withdrawn(25_000);
        e.come_back(26_000);
        assert_eq!(e.hold, Duration::from_secs(20));
        e.made(Kind::Flowspec, host_key("203.0.113.7".parse().unwrap()), 2);
        // This time a switch before the edge saw the quiet too: the first hold-down, and the
        // end is told now.
        e.end(30_000, true);
        assert!(e.end_told);
        assert_eq!(e.tick(35_000, true), Tick::Withdraw);
        assert_eq!(
            e.hold,
            Duration::from_secs(20),
            "the back-off is kept for the next time"
        );
    }

    #[test]
    fn steps_past_those_reached_count_their_time_from_the_return() {
        let mut e = Escalation::new(policy(TWO_STEPS), &attack(80_000), 10_000);
        let a = attack(80_000);
        assert_eq!(e.next_due(&a, 10_000, true), Some(0));
        e.end(12_000, false);
        e.withdrawn(17_000);
        e.come_back(100_000);
        assert_eq!(
            e.next_due(&a, 100_000, true),
            Some(0),
            "reached before: at once"
        );
        assert_eq!(e.next_due(&a, 100_000, true), None, "step 2 waits its 10 s");
        assert_eq!(e.next_due(&a, 110_000, true), Some(1));
    }

    #[test]
    fn memory_survives_a_restart_with_its_hold_down_and_its_returns() {
        let mut e = Escalation::new(policy(TWO_STEPS), &attack(80_000), 10_000);
        assert_eq!(
            e.memory(7, 10_000),
            None,
            "an active first attack has nothing to keep"
        );
        assert_eq!(e.next_due(&attack(80_000), 10_000, true), Some(0));
        e.end(20_000, false);
        e.withdrawn(25_000);
        e.come_back(26_000);
        e.end(27_000, false);
        let m = e.memory(7, 27_000).unwrap();
        assert_eq!(m.key(), "203.0.113.7 amplification");
        assert_eq!((m.returns, m.hold_ms, m.reached), (1, 20_000, 1));
        let probation = e.policy.recurrence.probation.as_millis() as u64;
        assert_eq!(m.until_ms, 27_000 + 20_000 + probation);
        let json = serde_json::to_vec(&m).unwrap();
        let back: Memory = serde_json::from_slice(&json).unwrap();
        let r = Escalation::remembered(e.policy.clone(), &back, Vec::new(), 30_000);
        assert!(r.on_probation());
        assert_eq!((r.hold, r.returns, r.reached), (e.hold, 1, 1));
        // A hold-down out of the policy's bounds (a store edited by hand) is brought back in.
        let wild = Memory {
            hold_ms: u64::MAX,
            ..back
        };
        let r = Escalation::remembered(e.policy.clone(), &wild, Vec::new(), 30_000);
        assert_eq!(r.hold, r.policy.recurrence.max_withdraw_after);
    }

    #[test]
    fn the_cap_of_a_rule_is_its_rate_limit_and_a_discard_has_none() {
        let t = |s: &str| Target::parse(Kind::Flowspec, s).unwrap();
        let bytes = t("dst 203.0.113.7/32 then rate-bytes 125000");
        assert_eq!(
            cap_of(bytes.actions()),
            Some(Cap {
                pps: None,
                bps: Some(1_000_000)
            })
        );
        let packets = t("dst 203.0.113.7/32 then rate-packets 5000");
        assert_eq!(
            cap_of(packets.actions()),
            Some(Cap {
                pps: Some(5000),
                bps: None
            })
        );
        assert_eq!(cap_of(t("dst 203.0.113.7/32 then discard").actions()), None);
    }

    #[test]
    fn without_evidence_nothing_is_renewed_and_the_rules_go_when_their_lifetime_does() {
        let mut e = Escalation::new(policy(TWO_STEPS), &attack(80_000), 0);
        let a = attack(80_000);
        assert_eq!(
            e.next_due(&a, 10_000, false),
            None,
            "no step on no evidence"
        );
        assert_eq!(e.next_due(&a, 10_000, true), Some(0));
        e.made(Kind::Rtbh, host_key(a.target), 1);
        e.renewed(10_000);
        // The node goes silent: a third of the TTL passes, nothing is renewed.
        assert_eq!(e.tick(20_000, false), Tick::Wait);
        assert_eq!(
            e.next_due(&a, 25_000, false),
            None,
            "nor does the next step fire"
        );
        // The 30 s granted at the last renewal run out: withdrawn, a moment before the set would.
        assert_eq!(e.tick(38_999, false), Tick::Wait);
        assert_eq!(e.tick(39_000, false), Tick::Starved);
        let gone = e.starved(39_000);
        assert_eq!(gone.iter().map(|m| m.id).collect::<Vec<_>>(), [1]);
        assert_eq!(
            e.tick(99_000, false),
            Tick::Wait,
            "nothing left to withdraw"
        );
        // Seen again, still going: the steps start over.
        assert_eq!(e.next_due(&a, 99_000, true), Some(0));
    }

    /// An attack with three sources: two heavy (40% and 10% of its packets), one light (1%), and
    /// one of the other family.
    fn from_sources() -> Attack {
        let mut a = attack(100_000);
        let src = |s: &str, pps| crate::telemetry::Source {
            addr: s.parse().unwrap(),
            pps,
        };
        a.signature.add_sources(
            &[
                src("198.51.100.1", 40_000),
                src("2001:db8:5::1", 30_000),
                src("198.51.100.2", 10_000),
                src("198.51.100.3", 1_000),
            ],
            100_000,
            1,
        );
        a
    }

    const SOURCE_STEPS: &str = "\
match:
  vectors: [amplification]
ttl: 30s
steps:
  - announce: flowspec
    match: [src, proto, sport]
    action: discard
  - announce: source-rtbh
    sources: { max: 1 }
  - announce: divert
    peers: [scrubber]
    divert: { next_hop_ipv4: 198.51.100.10, communities: [65000:800] }
  - announce: flowspec
    match: [proto, sport]
    action: discard
";

    fn source_policy() -> Policy {
        let known = policy::Known {
            groups: ["customers".to_string()].into(),
            peers: [(
                "scrubber".to_string(),
                [Kind::Divert, Kind::SourceRtbh, Kind::Flowspec].into(),
            )]
            .into(),
            ..policy::Known::default()
        };
        policy::Policies::parse(&[("p.yaml".into(), SOURCE_STEPS.into())], &known)
            .unwrap()
            .list
            .remove(0)
    }

    fn texts(orders: &[Order]) -> Vec<String> {
        orders.iter().map(|o| o.target.to_string()).collect()
    }

    #[test]
    fn a_src_step_orders_one_rule_per_heavy_source_of_the_targets_family() {
        let p = source_policy();
        let a = from_sources();
        let o = announcements(&a, &p, 0, Kind::Flowspec).unwrap();
        assert_eq!(
            texts(&o),
            [
                "dst 203.0.113.7/32 src 198.51.100.1/32 proto udp sport 123 then discard",
                "dst 203.0.113.7/32 src 198.51.100.2/32 proto udp sport 123 then discard",
            ]
        );
        assert_eq!(
            o[1].reason,
            "amplification on 203.0.113.7 (100000 pps), policy p step 1: source 198.51.100.2"
        );
        // No source heavy enough (a spoofed flood from everywhere): no order at all.
        let mut spread = attack(100_000);
        spread.signature.add_sources(
            &[crate::telemetry::Source {
                addr: "198.51.100.9".parse().unwrap(),
                pps: 4_999,
            }],
            100_000,
            1,
        );
        assert!(
            announcements(&spread, &p, 0, Kind::Flowspec)
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn an_srtbh_step_orders_the_heaviest_sources_up_to_its_max() {
        let o = announcements(&from_sources(), &source_policy(), 1, Kind::SourceRtbh).unwrap();
        assert_eq!(texts(&o), ["198.51.100.1/32"]);
        assert_eq!(o[0].target.kind(), Kind::SourceRtbh);
        assert!(o[0].peers.is_empty(), "every neighbor that receives it");
    }

    #[test]
    fn a_divert_step_orders_the_covering_prefix_with_its_route_to_its_peers() {
        let p = source_policy();
        let o = announcements(&from_sources(), &p, 2, Kind::Divert).unwrap();
        assert_eq!(
            texts(&o),
            ["203.0.113.0/24 next-hop 198.51.100.10 community 65000:800"]
        );
        assert_eq!(o[0].peers, ["scrubber"]);
        // An IPv6 victim and no IPv6 next hop: refused, saying why.
        let mut v6 = from_sources();
        v6.target = "2001:db8:100::7".parse().unwrap();
        let e = announcements(&v6, &p, 2, Kind::Divert).unwrap_err();
        assert!(e.contains("no next_hop_ipv6"), "{e}");
    }

    #[test]
    fn a_src_steps_rules_replace_the_rules_before_together_and_are_replaced_together() {
        let p = source_policy();
        let a = from_sources();
        let mut e = Escalation::new(p.clone(), &a, 0);
        let whole = announcements(&a, &p, 3, Kind::Flowspec).unwrap();
        e.made(Kind::Flowspec, whole[0].target.key(), 1);
        let per_source = announcements(&a, &p, 0, Kind::Flowspec).unwrap();
        let keys: Vec<RouteKey> = per_source.iter().map(|o| o.target.key()).collect();
        assert_eq!(e.superseded(Kind::Flowspec, &keys), [1]);
        e.made_by_step(
            Kind::Flowspec,
            &[(keys[0].clone(), 2), (keys[1].clone(), 3)],
            &[1],
        );
        assert_eq!(e.made.iter().map(|m| m.id).collect::<Vec<_>>(), [2, 3]);
        // S/RTBH routes and diversions come on top and replace nothing.
        assert!(e.superseded(Kind::SourceRtbh, &[]).is_empty());
        let s = announcements(&a, &p, 1, Kind::SourceRtbh).unwrap();
        e.made_by_step(Kind::SourceRtbh, &[(s[0].target.key(), 4)], &[]);
        assert_eq!(e.made.len(), 3);
        // The whole-destination rule again: both source rules go once it is in place.
        assert_eq!(
            e.superseded(Kind::Flowspec, &[whole[0].target.key()]),
            [2, 3]
        );
    }

    #[test]
    fn a_prefix_attack_is_answered_on_its_prefix_and_remembered_apart_from_its_first_address() {
        let p = policy(TWO_STEPS);
        let mut a = attack(80_000);
        a.target = "203.0.113.0".parse().unwrap();
        a.prefix = Some("203.0.113.0/24".parse().unwrap());
        let o = announcements(&a, &p, 0, Kind::Flowspec).unwrap().remove(0);
        assert_eq!(
            o.target.to_string(),
            "dst 203.0.113.0/24 proto udp sport 123 then rate-bytes 125000"
        );
        assert_eq!(
            o.reason,
            "amplification on 203.0.113.0/24 (80000 pps), policy p step 1"
        );
        let o = announcements(&a, &p, 1, Kind::Rtbh).unwrap().remove(0);
        assert_eq!(o.target, Target::Rtbh("203.0.113.0/24".parse().unwrap()));
        let mut e = Escalation::new(p, &a, 0);
        e.end(1_000, false);
        let m = e.memory(7, 1_000).unwrap();
        assert_eq!(m.key(), "203.0.113.0/24 amplification");
        let back: Memory = serde_json::from_slice(&serde_json::to_vec(&m).unwrap()).unwrap();
        assert_eq!(back.prefix, a.prefix);
        // An address's memory, as stored before prefixes existed, still reads and keys the same.
        let old: Memory = serde_json::from_str(
            r#"{"attack":1,"target":"203.0.113.0","vector":"amplification","class":"udp-amp",
                "policy":"p","hold_ms":5000,"returns":0,"reached":1,"until_ms":9}"#,
        )
        .unwrap();
        assert_eq!(old.key(), "203.0.113.0 amplification");
    }
}
