//! One class of one target (an address or a prefix) judged for one interval: its threshold,
//! whether an attack starts, whether one under way has been quiet for its cooldown.

use std::num::NonZeroU64;

use super::{Attack, ClassState, Thresholds};

/// One class judged for one interval.
pub(super) struct Verdict {
    pub thr: f64,
    /// An attack starts in it.
    pub start: bool,
    /// Its attack's quiet began then, and has lasted the cooldown: it is over.
    pub quiet: Option<u64>,
}

/// Judges `x`, a class's rate over the last `dt` ms, against its threshold: above (and confirmed)
/// starts an attack, below learns (no attack) or counts towards the quiet (an attack).
pub(super) fn judge(
    cs: &mut ClassState,
    x: f64,
    floor: f64,
    th: &Thresholds,
    dt: u64,
    now: u64,
    was_stale: bool,
) -> Verdict {
    let warm = th.warmup.as_millis() as u64;
    let half = th.half_life.as_millis() as u64;
    let cooldown = th.cooldown.as_millis() as u64;
    let thr = cs.baseline.threshold(floor, th.ratio, th.deviations, warm);
    let mut start = false;
    if was_stale {
        cs.quiet_since = None;
    }
    if x >= thr {
        cs.above = cs.above.saturating_add(1);
        cs.quiet_since = None;
        let confirm = if cs.watched { 1 } else { th.confirm.max(1) };
        if cs.attack.is_none() && cs.above as u32 >= confirm {
            start = true;
        }
    } else {
        cs.above = 0;
        if cs.attack.is_none() {
            cs.baseline.learn(x, dt, half);
        } else if x < th.end_ratio * thr {
            cs.quiet_since
                .get_or_insert(NonZeroU64::new(now).unwrap_or(NonZeroU64::MIN));
        } else {
            cs.quiet_since = None;
        }
    }
    let quiet = cs
        .quiet_since
        .map(NonZeroU64::get)
        .filter(|q| now.saturating_sub(*q) >= cooldown);
    Verdict { thr, start, quiet }
}

/// A class whose attack is under a rate-limit rule is not quiet while its traffic presses at the
/// cap: the limiter, not the end of the flood, is what keeps it under the threshold.
pub(super) fn hold_at_cap(
    cs: &mut ClassState,
    quiet: &mut Option<u64>,
    attack: Option<&Attack>,
    pps: f64,
    bps: f64,
) {
    if attack
        .and_then(|a| a.cap)
        .is_some_and(|c| c.pressed(pps, bps))
    {
        cs.quiet_since = None;
        *quiet = None;
    }
}

/// A class's attack going on: its rates for the interval go to `updates`, and once the attack is
/// quiet (`quiet`) the class lets go of it. Nothing when the class has no attack.
pub(super) fn carry(
    cs: &mut ClassState,
    pps: f64,
    bps: f64,
    quiet: Option<u64>,
    updates: &mut Vec<(u64, f64, f64, Option<u64>)>,
) {
    if let Some(id) = cs.attack() {
        updates.push((id, pps, bps, quiet));
        if quiet.is_some() {
            cs.attack = None;
            cs.quiet_since = None;
        }
    }
}
