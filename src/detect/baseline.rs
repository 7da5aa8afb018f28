//! A learned baseline: exponentially weighted mean and variance of a rate, with warm-up.
//!
//! Eight bytes of state and a sample count per traffic class and target. The weight of each new
//! sample follows from the time since the last one and the half-life, so a probe reporting every
//! 100 ms and one reporting every 10 s learn at the same speed in wall-clock time.

use serde::Serialize;

/// Mean and variance of a rate (packets or bits per second).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Baseline {
    pub mean: f32,
    pub var: f32,
    /// Milliseconds of traffic learned (saturating), for the warm-up.
    pub learned_ms: u32,
}

impl Baseline {
    /// Learns one sample covering `dt_ms` milliseconds.
    pub fn learn(&mut self, x: f64, dt_ms: u64, half_life_ms: u64) {
        let dt = dt_ms.max(1) as f64;
        let alpha = if self.learned_ms == 0 {
            1.0
        } else {
            1.0 - (-(dt / half_life_ms.max(1) as f64) * std::f64::consts::LN_2).exp()
        };
        let mean = self.mean as f64;
        let diff = x - mean;
        let incr = alpha * diff;
        let var = (1.0 - alpha) * (self.var as f64 + diff * incr);
        self.mean = (mean + incr) as f32;
        self.var = var.max(0.0) as f32;
        self.learned_ms = self
            .learned_ms
            .saturating_add(dt_ms.min(u32::MAX as u64) as u32);
    }

    pub fn stddev(&self) -> f64 {
        (self.var as f64).sqrt()
    }

    pub fn warm(&self, warmup_ms: u64) -> bool {
        self.learned_ms as u64 >= warmup_ms
    }

    /// The rate at and above which traffic is anomalous: the static floor, and once warm, also
    /// `ratio` times the mean and `deviations` standard deviations above it.
    pub fn threshold(&self, floor: f64, ratio: f64, deviations: f64, warmup_ms: u64) -> f64 {
        if !self.warm(warmup_ms) {
            return floor;
        }
        let mean = self.mean as f64;
        floor
            .max(ratio * mean)
            .max(mean + deviations * self.stddev())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learns_a_steady_rate_and_its_spread() {
        let mut b = Baseline::default();
        for i in 0..600 {
            // 1000 ± 100 pps, once a second, for ten minutes.
            let x = if i % 2 == 0 { 1100.0 } else { 900.0 };
            b.learn(x, 1000, 60_000);
        }
        assert!((b.mean - 1000.0).abs() < 20.0, "{b:?}");
        assert!((b.stddev() - 100.0).abs() < 15.0, "{b:?}");
        assert!(b.warm(300_000));
        // The floor rules when traffic is small; the ratio when it is large.
        assert_eq!(b.threshold(10_000.0, 3.0, 4.0, 300_000), 10_000.0);
        let t = b.threshold(100.0, 3.0, 4.0, 300_000);
        assert!((t - 3.0 * b.mean as f64).abs() < 1.0, "{t}");
    }

    #[test]
    fn the_rate_of_learning_follows_wall_clock_time() {
        let (mut fast, mut slow) = (Baseline::default(), Baseline::default());
        fast.learn(0.0, 100, 60_000);
        slow.learn(0.0, 1000, 60_000);
        for _ in 0..600 {
            fast.learn(1000.0, 100, 60_000);
        }
        for _ in 0..60 {
            slow.learn(1000.0, 1000, 60_000);
        }
        assert!((fast.mean - slow.mean).abs() < 5.0, "{fast:?} {slow:?}");
        // One half-life: half way there.
        assert!((fast.mean - 500.0).abs() < 10.0, "{fast:?}");
    }

    #[test]
    fn cold_baselines_use_the_floor_only() {
        let mut b = Baseline::default();
        b.learn(50_000.0, 1000, 60_000);
        assert!(!b.warm(300_000));
        assert_eq!(b.threshold(10_000.0, 3.0, 4.0, 300_000), 10_000.0);
    }
}
