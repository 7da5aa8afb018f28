//! The engine on a recording's timeline, for `deflect replay`: the same detector, escalations and
//! orders as the daemon's, driven by a caller that owns a manual [`Clock`] instead of a task on
//! the wall clock.
//!
//! ```text
//!  recording ──► Replay::report(node, report, at) ─┐ clock moved to `at`, the timer run every
//!                Replay::run_until(t) ─────────────┴ TICK on the way (stale nodes, steps that
//!                                                     wait, renewals, hold-downs, probation),
//!                                                     the set's expiries after each tick
//! ```
//!
//! Nothing leaves the process: the mitigation set it is given has peers that never connect, and
//! playbook calls are audited as they would be made, not sent (the engine's runner is dry on a
//! manual clock). What deflect would have done is the set's audit log and the attacks.

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{Ack, Engine, Outlets, Setup, TICK};
use crate::clock::Clock;
use crate::detect::Attack;
use crate::mitigation::MitigationHandle;
use crate::telemetry::Report;

/// The engine, stepped by hand.
pub struct Replay {
    engine: Engine,
    clock: Clock,
    next_tick: u64,
}

impl std::fmt::Debug for Replay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replay")
            .field("now_ms", &self.clock.now_ms())
            .field("escalations", &self.engine.escalations.len())
            .finish_non_exhaustive()
    }
}

impl Replay {
    /// An engine over `mitigations` (a set on the same manual `clock`), starting at the clock's
    /// time.
    pub async fn start(setup: Setup, mitigations: MitigationHandle, clock: Clock) -> Replay {
        debug_assert!(clock.is_manual(), "a replay runs on a manual clock");
        let out = Outlets {
            mitigations,
            recorder: None,
            alerts: None,
            tasks: TaskTracker::new(),
            baselines: None,
        };
        let mut engine = Engine::new(setup, out, clock.clone(), CancellationToken::new());
        let now = clock.now_ms();
        engine.restore_memories(now).await;
        Replay {
            engine,
            clock,
            next_tick: now + TICK.as_millis() as u64,
        }
    }

    /// Moves the clock to `to` (never back), running the timer at every tick on the way, as the
    /// daemon's task would, and the set's expiries after each.
    pub async fn run_until(&mut self, to: u64) {
        let step = TICK.as_millis() as u64;
        while self.next_tick <= to {
            if !self.busy() {
                // Nothing waits for time to pass (no attack, no hold-down or probation): the
                // ticks before the last one up to `to` would find nothing due, so a long gap in
                // a recording (or a report stamped years ahead) costs no time. A node that went
                // silent in the gap is marked stale at that last tick.
                self.next_tick += (to - self.next_tick) / step * step;
            }
            let t = self.next_tick;
            self.clock.set(t);
            self.engine.tick(t).await;
            // A set that has stopped answering has nothing left to expire.
            let _ = self.engine.mitigations.expire_due().await;
            self.next_tick += step;
        }
        self.clock.set(to);
    }

    /// A report from `node` arriving at `at`: the clock is moved there first.
    pub async fn report(&mut self, node: &str, report: &Report, at: u64) -> Ack {
        self.run_until(at).await;
        self.engine.on_report(node, report).await
    }

    /// Every attack the detector still remembers, oldest first.
    pub fn attacks(&self) -> Vec<Attack> {
        let mut v: Vec<Attack> = self.engine.detector.attacks().cloned().collect();
        v.sort_by_key(|a| (a.started_ms, a.id));
        v
    }

    /// Whether anything is still waiting for time to pass: an attack under way, or an
    /// escalation in its hold-down or probation.
    pub fn busy(&self) -> bool {
        !self.engine.escalations.is_empty() || self.engine.detector.attacks().any(|a| a.is_active())
    }

    pub fn now_ms(&self) -> u64 {
        self.clock.now_ms()
    }
}
