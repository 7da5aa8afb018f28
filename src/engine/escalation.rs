//! One attack's way through its policy: which step is due, what it orders, what a new rule
//! replaces, when lifetimes are renewed and when everything is withdrawn.
//!
//! Pure, like `deflect_bgp::fsm`: attack and clock in, decisions out. The engine carries the
//! decisions out (the mitigation set, alerts, playbook calls, node-local drops) and reports back
//! what was made ([`Escalation::made`]).
//!
//! ```text
//!   attack starts ──► Escalation::new (or take_over: same target and vector in hold-down)
//!   every report and tick ──► next_due ──► announcement / local_drop / a call   (step fired)
//!   attack ends ──► end ──► tick: Renew every ttl/3 while it lasts, Withdraw after withdraw_after
//!   no evidence (its node stale) ──► no renewal, no step; tick: Starved once the lifetime granted
//!                                    runs out: withdrawn, and the steps start over on evidence
//! ```
//!
//! Evidence: a mitigation lives on what deflect sees. While nothing sees the attacked address (its
//! node stopped reporting, and no other node or agent reports it), the attack is held but its
//! mitigations are not renewed and no further step fires: a node that dies or lies and goes
//! silent cannot keep a rule in the routers for ever.

use std::time::Duration;

use deflect_bgp::rib::RouteKey;

use crate::alert::Event as Alert;
use crate::detect::Attack;
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
    /// The hold-down after the attack's end is over: withdraw and undo everything.
    Withdraw,
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
    /// Steps fired so far.
    pub fired: usize,
    pub made: Vec<Made>,
    /// Playbook calls made, with the event they were made for: undone on withdrawal, even if the
    /// attack itself is no longer remembered by then.
    pub calls: Vec<(Call, Alert)>,
    /// Node-local drops asked for: (node, drop id).
    pub locals: Vec<(String, u64)>,
    pub last_refresh: u64,
    pub ended_at: Option<u64>,
}

impl Escalation {
    pub fn new(policy: Policy, now: u64) -> Escalation {
        Escalation {
            policy,
            fired: 0,
            made: Vec::new(),
            calls: Vec::new(),
            locals: Vec::new(),
            last_refresh: now,
            ended_at: None,
        }
    }

    /// Takes over what an earlier attack on the same target and vector made during its hold-down:
    /// nothing is withdrawn and announced again, and the steps go on where they were.
    pub fn take_over(&mut self, old: Escalation) {
        self.fired = old.fired;
        self.made = old.made;
        self.calls = old.calls;
        self.locals = old.locals;
    }

    /// Whether it is in its hold-down: a new attack on the same target and vector takes it over.
    pub fn holds_down(&self) -> bool {
        self.ended_at.is_some()
    }

    /// The next step whose time and rate condition have come, marked fired. Nothing fires on no
    /// evidence (`seen` false).
    pub fn next_due(&mut self, a: &Attack, now: u64, seen: bool) -> Option<usize> {
        if self.ended_at.is_some() || !seen {
            return None;
        }
        let step = self.policy.steps.get(self.fired)?;
        if now < a.started_ms + step.after.as_millis() as u64 {
            return None;
        }
        if step.if_above_pps.is_some_and(|x| a.pps < x) {
            return None;
        }
        self.fired += 1;
        Some(self.fired - 1)
    }

    /// The attack ended at `now`: the hold-down starts.
    pub fn end(&mut self, now: u64) {
        self.ended_at = Some(now);
    }

    /// What the timer does now; `seen`: whether the attack still has evidence.
    pub fn tick(&self, now: u64, seen: bool) -> Tick {
        match self.ended_at {
            Some(t) if now >= t + self.policy.withdraw_after.as_millis() as u64 => Tick::Withdraw,
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
    pub fn made(&mut self, kind: Kind, key: RouteKey, id: u64) {
        self.made
            .retain(|x| !(x.kind == kind && (x.key == key || kind == Kind::Flowspec)));
        self.made.push(Made { id, kind, key });
    }
}

/// The actor a policy acts as, in the mitigation set and the audit log.
pub fn actor(policy: &Policy, attack: u64) -> String {
    format!("policy:{} attack:{attack}", policy.name)
}

/// The order step `n` (an announcement of `kind`) gives for attack `a`.
pub fn announcement(a: &Attack, policy: &Policy, n: usize, kind: Kind) -> Result<Order, String> {
    let step = &policy.steps[n];
    let target = match kind {
        Kind::Flowspec => {
            let route = policy::flowspec_route(a.target, &a.signature, &step.parts, &step.actions)
                .map_err(|e| format!("rule: {e}"))?;
            Target::flowspec(route)?
        }
        Kind::Rtbh => Target::host(a.target),
    };
    Ok(Order {
        target,
        ttl: Some(Duration::from_secs(policy.ttl.as_secs().max(1))),
        peers: step.peers.clone(),
        reason: format!(
            "{} on {} ({} pps), policy {} step {}",
            a.vector,
            a.target,
            a.pps,
            policy.name,
            n + 1
        ),
        actor: actor(policy, a.id),
    })
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
        let mut e = Escalation::new(policy(TWO_STEPS), 10_000);
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
        let mut e = Escalation::new(policy(TWO_STEPS), 10_000);
        e.made(Kind::Flowspec, host_key("203.0.113.7".parse().unwrap()), 1);
        e.end(12_000);
        assert_eq!(e.next_due(&attack(80_000), 12_000, true), None);
        assert_eq!(e.tick(16_999, true), Tick::Wait);
        assert_eq!(e.tick(17_000, true), Tick::Withdraw);
    }

    #[test]
    fn lifetimes_are_renewed_every_third_of_the_ttl_while_something_is_made() {
        let mut e = Escalation::new(policy(TWO_STEPS), 0);
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
        let mut e = Escalation::new(policy(TWO_STEPS), 0);
        let a = attack(80_000);
        let first = announcement(&a, &e.policy, 0, Kind::Flowspec)
            .unwrap()
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
        let o = announcement(&attack(80_000), &p, 1, Kind::Rtbh).unwrap();
        assert_eq!(o.target, Target::host("203.0.113.7".parse().unwrap()));
        assert_eq!(o.ttl, Some(Duration::from_secs(30)));
        assert_eq!(
            o.reason,
            "amplification on 203.0.113.7 (80000 pps), policy p step 2"
        );
        assert_eq!(o.actor, "policy:p attack:7");
    }

    #[test]
    fn without_evidence_nothing_is_renewed_and_the_rules_go_when_their_lifetime_does() {
        let mut e = Escalation::new(policy(TWO_STEPS), 0);
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
}
