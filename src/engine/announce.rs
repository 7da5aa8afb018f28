//! A policy step that announces: its orders to the mitigation set (one, or one per heavy source),
//! what each replaces, and what the attack's timeline and alerts say of them.
//!
//! Replacement, as for one rule: a FlowSpec order whose match the attack already has changes its
//! actions in place (one UPDATE, no gap); the attack's other FlowSpec rules are withdrawn once the
//! step's own are in place (a `src` step's rules together replace a rule for the whole
//! destination, and the other way round). An RTBH route for the same prefix is withdrawn and made
//! again; S/RTBH routes and diversions already in place are extended by their order again. They
//! come on top of the rules, as RTBH does. A mitigation two attacks share is withdrawn when the
//! last of them lets it go ([`Engine::held_by_another`]).

use std::sync::atomic::Ordering;

use deflect_bgp::rib::RouteKey;
use tracing::warn;

use super::escalation;
use super::{Alert, Engine, EventKind};
use crate::detect::Attack;
use crate::mitigation::{Amend, Created, Refusal};
use crate::policy::Policy;
use crate::route::Kind;

impl Engine {
    /// Whether an escalation other than attack `attack`'s holds mitigation `m`: two attacks in one
    /// /24 share its diversion, two floods from one source its S/RTBH route (the second order
    /// extends the first's mitigation). It stays until the last of them lets it go.
    pub(super) fn held_by_another(&self, attack: u64, m: u64) -> bool {
        self.escalations
            .iter()
            .any(|(other, e)| *other != attack && e.made.iter().any(|x| x.id == m))
    }

    pub(super) async fn fire_announce(
        &mut self,
        id: u64,
        a: &Attack,
        policy: &Policy,
        n: usize,
        kind: Kind,
        now: u64,
    ) {
        self.metrics.policy_steps.fetch_add(1, Ordering::Relaxed);
        let actor = escalation::actor(policy, id);
        let orders = match escalation::announcements(a, policy, n, kind) {
            Ok(o) => o,
            Err(why) => {
                // A rule the signature cannot make (too long...): refused like any order.
                let what = serde_json::json!({"kind": kind, "attack": id, "step": n + 1});
                let e = self
                    .mitigations
                    .refused(&actor, what, Refusal::Invalid(why))
                    .await;
                warn!(attack = id, "policy step refused: {e}");
                self.note(id, now, format!("step {}: refused: {e}", n + 1));
                return;
            }
        };
        if orders.is_empty() {
            let share = policy.steps[n].sources.unwrap_or_default().min_share_bp;
            self.note(
                id,
                now,
                format!(
                    "step {}: no source carries {}.{:02}% of the attack or more: nothing to announce",
                    n + 1,
                    share / 100,
                    share % 100
                ),
            );
            return;
        }
        if policy.dry_run {
            for o in &orders {
                let what = o.target.to_string();
                self.note(
                    id,
                    now,
                    format!("step {} (dry-run): would announce {what}", n + 1),
                );
            }
            return;
        }
        let keys: Vec<RouteKey> = orders.iter().map(|o| o.target.key()).collect();
        // The attack's other rules of this kind, withdrawn once the step's own are in place.
        let after = self
            .escalations
            .get(&id)
            .map(|e| e.superseded(kind, &keys))
            .unwrap_or_default();
        let replaced = format!("replaced by step {}", n + 1);
        let mut made_now: Vec<(RouteKey, u64)> = Vec::new();
        let mut notes = Vec::new();
        let mut cap = None;
        for order in orders {
            let what = order.target.to_string();
            let key = order.target.key();
            let before = self
                .escalations
                .get(&id)
                .map(|e| e.replaced_by(kind, &key).0)
                .unwrap_or_default();
            // The same match with new actions: changed in place, one UPDATE, no gap in the filter.
            let mut made = None;
            for m in before {
                if made.is_none() && kind == Kind::Flowspec {
                    let amend = Amend {
                        actions: order.target.actions().to_vec(),
                        ttl: order.ttl,
                        reason: format!("step {}: {}", n + 1, order.reason),
                        actor: actor.clone(),
                    };
                    match self.mitigations.amend(m, amend).await {
                        Ok(m) => {
                            made = Some(Ok(Created::Extended(m)));
                            continue;
                        }
                        Err(e) => warn!(attack = id, mitigation = m, "not changed in place: {e}"),
                    }
                }
                // S/RTBH routes and diversions: the order again extends the one in place.
                if kind == Kind::Flowspec || kind == Kind::Rtbh {
                    let _ = self.mitigations.withdraw(m, &actor, &replaced).await;
                }
            }
            let c = escalation::cap_of(order.target.actions());
            let made = match made {
                Some(m) => m,
                None => self.mitigations.create(order).await,
            };
            match made {
                Ok(Created::New(m)) | Ok(Created::Extended(m)) => {
                    cap = c;
                    made_now.push((key, m.id));
                    notes.push(format!("mitigation {} announces {what}", m.id));
                }
                Err(e) => {
                    warn!(attack = id, "policy step refused: {e}");
                    notes.push(format!("refused: {e}"));
                }
            }
        }
        if !made_now.is_empty() {
            for o in &after {
                let _ = self.mitigations.withdraw(*o, &actor, &replaced).await;
            }
            let mut blackholed = kind == Kind::Rtbh;
            if let Some(e) = self.escalations.get_mut(&id) {
                e.made_by_step(kind, &made_now, &after);
                blackholed |= e.made.iter().any(|m| m.kind == Kind::Rtbh);
            }
            if let Some(a) = self.detector.attack_mut(id) {
                for (_, m) in &made_now {
                    if !a.mitigations.contains(m) {
                        a.mitigations.push(*m);
                    }
                }
                // Under a rate-limit the attack's traffic still shows, up to the cap; under a
                // discard or a blackhole nothing does. Sources cut off and diversions leave
                // the cap as it was.
                if blackholed {
                    a.cap = None;
                } else if kind == Kind::Flowspec {
                    a.cap = cap;
                }
            }
            // What is in place is kept in the store: after a restart, these leave after a
            // hold-down, not at the end of their lifetime.
            self.remember(id, now).await;
        }
        let note = format!("step {}: {}", n + 1, notes.join("; "));
        self.note(id, now, note.clone());
        // The first step is the attack's start; the next ones are escalations.
        if let (Some(al), Some(a), true) = (&self.alerts, self.detector.attack(id), n > 0) {
            al.send(Alert::attack(EventKind::AttackEscalate, a, &note));
        }
    }
}
