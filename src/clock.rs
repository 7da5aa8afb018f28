//! The wall clock, in the one unit deflect stores and serves: milliseconds since the Unix epoch.
//!
//! The owners of time-driven state (the engine, the mitigation set) read it through a [`Clock`]:
//! the wall's in the daemon, or one that the caller moves by hand, so that `deflect replay` runs
//! a recording on its own timeline, as fast as it can, with the same code deciding.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where an owner reads the time: the wall clock, or a manual one shared by everyone its driver
/// hands it to (clones read the same time).
#[derive(Debug, Clone, Default)]
pub struct Clock {
    manual: Option<Arc<AtomicU64>>,
}

impl Clock {
    /// The wall clock.
    pub fn wall() -> Clock {
        Clock::default()
    }

    /// A clock that stands at `start_ms` until [`Clock::set`] moves it.
    pub fn manual(start_ms: u64) -> Clock {
        Clock {
            manual: Some(Arc::new(AtomicU64::new(start_ms))),
        }
    }

    pub fn is_manual(&self) -> bool {
        self.manual.is_some()
    }

    pub fn now_ms(&self) -> u64 {
        match &self.manual {
            Some(t) => t.load(Ordering::Acquire),
            None => now_ms(),
        }
    }

    /// Moves a manual clock forward to `ms` (never back; the wall clock ignores it).
    pub fn set(&self, ms: u64) {
        if let Some(t) = &self.manual {
            t.fetch_max(ms, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_is_shared_by_its_clones_and_never_goes_back() {
        let c = Clock::manual(1_000);
        let d = c.clone();
        c.set(5_000);
        assert_eq!(d.now_ms(), 5_000);
        d.set(2_000);
        assert_eq!(c.now_ms(), 5_000);
        assert!(c.is_manual() && !Clock::wall().is_manual());
        assert!(Clock::wall().now_ms() > 1_700_000_000_000);
    }
}
