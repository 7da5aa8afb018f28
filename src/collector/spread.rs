//! Flow records into per-interval rates, honestly.
//!
//! A NetFlow or IPFIX record is an aggregate: so many packets between a start and an end time,
//! exported when the flow ended (after the router's *idle* timeout) or, for a flow still going,
//! every *active* timeout. It tells about the past, and it arrives late. Counting it when it
//! arrives would put a 60-second flow into one second (a spike that is not there) and leave the
//! seconds it really covered empty; that makes detection flap.
//!
//! So each exporter has a [`Spread`]: a record's packets are spread evenly over the time it
//! covers, into buckets one collector interval wide, on the collector's clock (the record's times
//! are shifted by the difference between the datagram's arrival and its header's export time, so
//! the exporter's clock may be off). A bucket is handed to detection only once the data that will
//! cover it has arrived: `delay` after its end. The delay is learned: it is the lateness under
//! which 99% of the packets arrived over the last minute or so (a decaying histogram), which is
//! about the exporter's active timeout for long flows and its idle timeout for short ones. An
//! operator who knows the exporter's timeouts can set it (`export_delay`); until there is data, the
//! timeouts the exporter announced (options data) or two intervals stand in. It never goes beyond
//! `max_delay` and never grows by more than half an interval per interval, so a report is never
//! skipped twice in a row.
//!
//! Packets for a bucket already handed over are *late*: they are counted, and not added to the
//! present, where they did not happen. Packets of a record beyond the entry budget are counted
//! as dropped. Both show in the API; a steady share of late packets says the delay is too short.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::traffic::aggregate::Aggregator;
use crate::traffic::packet::PacketInfo;

/// Most bucket entries one exporter holds (about 60 bytes each): a flood of distinct records
/// beyond this in the delay window is counted, not stored.
pub const MAX_ENTRIES: usize = 256 * 1024;

/// The share of packets the learned delay waits for.
const QUANTILE: f64 = 0.99;

/// Lateness histogram slots (in intervals); the last one takes anything later.
const SLOTS: usize = 128;

/// Per flush, the histogram keeps this much of its past (a half-life of about 35 intervals).
const DECAY: f64 = 0.98;

/// One record's share of one bucket.
#[derive(Debug, Clone, Copy)]
struct Entry {
    info: PacketInfo,
    weight: u32,
}

/// One record, as the collector hands it over.
#[derive(Debug, Clone, Copy)]
pub struct Record {
    /// Addresses, protocol, ports and flags; `wire_len` the mean packet length.
    pub info: PacketInfo,
    /// Packets it stands for (its count times the sampling rate).
    pub packets: u64,
    /// Its start and end on the collector's clock, in ms since the epoch; `None` when the record
    /// carries no times (then it is taken as arriving now, in one instant).
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
}

/// What one flush hands over.
#[derive(Debug)]
pub struct Due {
    pub agg: Aggregator,
    /// How much time it covers (whole buckets).
    pub elapsed: Duration,
}

/// Counters shown by the API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpreadStats {
    /// Packets that arrived for time already handed to detection.
    pub late_packets: u64,
    /// Packets not stored: the entry budget was spent.
    pub dropped_packets: u64,
    /// The delay in force, in ms.
    pub delay_ms: u64,
}

/// One exporter's buckets and learned delay.
#[derive(Debug)]
pub struct Spread {
    interval_ms: u64,
    max_delay_ms: u64,
    /// The operator's delay, when set: never learned then.
    fixed_ms: Option<u64>,
    /// Until there is data: the exporter's announced timeouts, or two intervals.
    fallback_ms: u64,
    /// Buckets not yet handed over, by index (ms / interval).
    buckets: BTreeMap<u64, Vec<Entry>>,
    entries: usize,
    /// Buckets before this index have been handed over.
    next: Option<u64>,
    /// Packets by lateness, in intervals after their bucket's end.
    lateness: [f64; SLOTS],
    delay_ms: u64,
    stats: SpreadStats,
}

impl Spread {
    pub fn new(interval: Duration, max_delay: Duration, fixed: Option<Duration>) -> Spread {
        let interval_ms = (interval.as_millis() as u64).max(1);
        let max_delay_ms = max_delay.as_millis() as u64;
        let fixed_ms = fixed.map(|d| (d.as_millis() as u64).min(max_delay_ms));
        let fallback_ms = (2 * interval_ms).min(max_delay_ms);
        Spread {
            interval_ms,
            max_delay_ms,
            fixed_ms,
            fallback_ms,
            buckets: BTreeMap::new(),
            entries: 0,
            next: None,
            lateness: [0.0; SLOTS],
            delay_ms: fixed_ms.unwrap_or(fallback_ms),
            stats: SpreadStats::default(),
        }
    }

    /// The operator's delay (a reload), or `None` to learn it.
    pub fn set_fixed(&mut self, fixed: Option<Duration>) {
        self.fixed_ms = fixed.map(|d| (d.as_millis() as u64).min(self.max_delay_ms));
        if let Some(f) = self.fixed_ms {
            self.delay_ms = f;
        }
    }

    /// The exporter's announced timeouts (options data), used until lateness is measured.
    pub fn announced(&mut self, active_ms: Option<u64>, idle_ms: Option<u64>) {
        if let Some(t) = active_ms.max(idle_ms) {
            self.fallback_ms = t.clamp(self.interval_ms, self.max_delay_ms.max(self.interval_ms));
        }
    }

    pub fn stats(&self) -> SpreadStats {
        SpreadStats {
            delay_ms: self.delay_ms,
            ..self.stats
        }
    }

    /// Whether buckets wait to be handed over.
    pub fn pending(&self) -> bool {
        !self.buckets.is_empty()
    }

    /// Spreads one record, arriving at `now_ms`.
    pub fn add(&mut self, r: &Record, now_ms: u64) {
        if r.packets == 0 {
            return;
        }
        let i = self.interval_ms;
        // Times after the arrival are a lying clock: the record cannot cover the future.
        let end = r.end_ms.unwrap_or(now_ms).min(now_ms);
        let start = r.start_ms.unwrap_or(end).min(end);
        let span = end - start;
        let (first, last) = (start / i, end / i);
        // Buckets before the horizon are beyond any delay: their share is late, and not learned
        // from (waiting could not have helped). Buckets before `next` are handed over: late too,
        // but they say how long to wait.
        let horizon = now_ms.saturating_sub(self.max_delay_ms + i) / i;
        let next = self.next.unwrap_or(0);
        let mut placed = 0u64;
        if first.max(horizon) <= last {
            // The share of [start, end] up to a point, rounded so that the shares sum exactly.
            let upto = |t: u64| -> u64 {
                let t = t.clamp(start, end);
                ((u128::from(r.packets) * u128::from(t - start)) / u128::from(span)) as u64
            };
            for k in first.max(horizon)..=last {
                let share = if span == 0 {
                    r.packets
                } else {
                    upto((k + 1) * i) - upto(k * i)
                };
                if share == 0 {
                    continue;
                }
                self.learn(k, share, now_ms);
                if k < next {
                    continue;
                }
                placed += share;
                if self.entries >= MAX_ENTRIES {
                    self.stats.dropped_packets = self.stats.dropped_packets.saturating_add(share);
                    continue;
                }
                self.entries += 1;
                self.buckets.entry(k).or_default().push(Entry {
                    info: r.info,
                    weight: u32::try_from(share).unwrap_or(u32::MAX),
                });
            }
        }
        let late = r.packets - placed;
        if late > 0 {
            self.stats.late_packets = self.stats.late_packets.saturating_add(late);
        }
    }

    /// Counts `packets` of bucket `k` as arriving at `now_ms`.
    fn learn(&mut self, k: u64, packets: u64, now_ms: u64) {
        let end = (k + 1) * self.interval_ms;
        let slot = now_ms.saturating_sub(end).div_ceil(self.interval_ms) as usize;
        self.lateness[slot.min(SLOTS - 1)] += packets as f64;
    }

    /// The delay the histogram asks for: the lateness under which [`QUANTILE`] of the packets
    /// arrived.
    fn learned_ms(&self) -> Option<u64> {
        let total: f64 = self.lateness.iter().sum();
        if total < 1.0 {
            return None;
        }
        let mut acc = 0.0;
        for (slot, n) in self.lateness.iter().enumerate() {
            acc += n;
            if acc >= QUANTILE * total {
                return Some(slot as u64 * self.interval_ms);
            }
        }
        Some((SLOTS as u64 - 1) * self.interval_ms)
    }

    /// The buckets due at `now_ms`, as one aggregator over the time they cover; `None` when none
    /// is (the delay just grew, or nothing was ever handed over and nothing is due yet).
    pub fn flush(&mut self, now_ms: u64, trusted: &[ipnet::IpNet]) -> Option<Due> {
        let i = self.interval_ms;
        let target = self
            .fixed_ms
            .or_else(|| self.learned_ms())
            .unwrap_or(self.fallback_ms)
            .min(self.max_delay_ms);
        // Up by half an interval a flush at most (no two reports in a row skipped); down at once.
        self.delay_ms = if target > self.delay_ms {
            (self.delay_ms + i / 2).min(target)
        } else {
            target
        };
        for n in &mut self.lateness {
            *n *= DECAY;
        }
        // The last bucket whose end is `delay` or more in the past.
        let due_end = now_ms.saturating_sub(self.delay_ms) / i;
        let mut next = *self.next.get_or_insert_with(|| {
            // The first flush hands over only the last due bucket (the collector just started).
            due_end.saturating_sub(1)
        });
        if next > due_end + (self.max_delay_ms / i) + 2 {
            // The clock stepped back: start again from here rather than wait for it to catch up.
            self.buckets.clear();
            self.entries = 0;
            next = due_end.saturating_sub(1);
        }
        // Buckets before `next` (records of before the first hand-over, or of before a clock step)
        // are not this report's time: late, not summed into it.
        let kept = self.buckets.split_off(&next);
        for (_, entries) in std::mem::replace(&mut self.buckets, kept) {
            self.entries -= entries.len();
            let packets: u64 = entries.iter().map(|e| u64::from(e.weight)).sum();
            self.stats.late_packets = self.stats.late_packets.saturating_add(packets);
        }
        if due_end <= next {
            return None;
        }
        let mut agg = Aggregator::new().with_trusted(trusted.to_vec());
        let later = self.buckets.split_off(&due_end);
        let due = std::mem::replace(&mut self.buckets, later);
        for (_, entries) in due {
            self.entries -= entries.len();
            for e in entries {
                agg.add(&e.info, e.weight);
            }
        }
        self.next = Some(due_end);
        Some(Due {
            agg,
            elapsed: Duration::from_millis((due_end - next) * i),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    const I: u64 = 1000;

    fn info(dst: &str) -> PacketInfo {
        PacketInfo {
            src: "198.51.100.1".parse().unwrap(),
            dst: dst.parse().unwrap(),
            proto: 17,
            sport: Some(123),
            dport: Some(4444),
            tcp_flags: None,
            fragment: false,
            wire_len: 468,
        }
    }

    fn record(packets: u64, start: u64, end: u64) -> Record {
        Record {
            info: info("203.0.113.9"),
            packets,
            start_ms: Some(start),
            end_ms: Some(end),
        }
    }

    fn pps(due: Due) -> u64 {
        let t = due.agg.finish(due.elapsed);
        t.iter()
            .filter(|t| t.dst == "203.0.113.9".parse::<IpAddr>().unwrap())
            .map(|t| t.pps)
            .sum()
    }

    /// A steady flow of 10,000 pps exported every `active` ms, flushed every second: the rate
    /// each flush hands over, from `from` to `to` seconds.
    fn steady(spread: &mut Spread, active: u64, from: u64, to: u64) -> Vec<u64> {
        let t0 = 1_000_000_000;
        let mut out = Vec::new();
        let mut exported = t0 + from * I;
        for s in from..to {
            let now = t0 + s * I;
            while exported + active <= now {
                spread.add(&record(10 * active, exported, exported + active), now);
                exported += active;
            }
            if let Some(d) = spread.flush(now + 1, &[]) {
                out.push(pps(d));
            }
        }
        out
    }

    #[test]
    fn a_steady_flow_gives_a_steady_rate_whatever_the_active_timeout() {
        for active in [1000, 5000, 10_000, 30_000] {
            let mut s = Spread::new(Duration::from_secs(1), Duration::from_secs(60), None);
            let rates = steady(&mut s, active, 0, 120);
            // Once the delay is learned, every report is the true rate, none skipped.
            let tail = &rates[rates.len() - 40..];
            assert!(
                tail.iter().all(|&r| r == 10_000),
                "active {active}: {tail:?}"
            );
            assert!(
                s.stats().delay_ms >= active - I && s.stats().delay_ms <= active + I,
                "active {active}: delay {}",
                s.stats().delay_ms
            );
        }
    }

    #[test]
    fn a_long_record_is_not_a_spike() {
        // Learned at a 1 s active timeout; then one record of 60 s of traffic arrives at once.
        let mut s = Spread::new(Duration::from_secs(1), Duration::from_secs(60), None);
        steady(&mut s, 1000, 0, 30);
        let now = 1_000_000_000 + 31 * I;
        s.add(&record(600_000, now - 60 * I, now), now);
        let mut rates = Vec::new();
        for k in 1..5 {
            if let Some(d) = s.flush(now + k * I, &[]) {
                rates.push(pps(d));
            }
        }
        assert!(rates.iter().all(|&r| r <= 10_000), "{rates:?}");
        assert!(s.stats().late_packets >= 500_000, "{:?}", s.stats());
    }

    #[test]
    fn shares_sum_to_the_record_and_land_where_the_record_was() {
        let fixed = Some(Duration::from_secs(5));
        let mut s = Spread::new(Duration::from_secs(1), Duration::from_secs(60), fixed);
        let t0 = 2_000_000_000;
        s.flush(t0, &[]);
        // 3,001 packets over [t0 + 0.5 s, t0 + 3.5 s]: 500, 1000, 1000, 500 (and one by rounding).
        let mut got = Vec::new();
        for k in 1..=12 {
            if k == 4 {
                s.add(&record(3001, t0 + 500, t0 + 3500), t0 + 3600);
            }
            if let Some(d) = s.flush(t0 + k * I, &[]) {
                assert_eq!(d.elapsed, Duration::from_secs(1));
                got.push(pps(d));
            }
        }
        assert_eq!(got.iter().sum::<u64>(), 3001, "{got:?}");
        // Handed over 5 s after each bucket's end, where the record was.
        assert_eq!(&got[5..10], &[500, 1000, 1000, 501, 0], "{got:?}");
    }

    #[test]
    fn records_without_times_count_when_they_arrive_and_future_times_are_clamped() {
        let mut s = Spread::new(
            Duration::from_secs(1),
            Duration::from_secs(60),
            Some(Duration::ZERO),
        );
        let t0 = 3_000_000_000;
        s.flush(t0, &[]);
        let mut r = record(500, 0, 0);
        r.start_ms = None;
        r.end_ms = None;
        s.add(&r, t0 + 10);
        s.add(&record(500, t0 + 5000, t0 + 9000), t0 + 20);
        let d = s.flush(t0 + I, &[]).unwrap();
        assert_eq!(pps(d), 1000);
    }

    #[test]
    fn the_store_is_bounded_and_old_records_are_late() {
        let mut s = Spread::new(Duration::from_secs(1), Duration::from_secs(10), None);
        let now = 4_000_000_000;
        // One hour of traffic in one record: only what is within max_delay could be placed.
        s.add(&record(3_600_000, now - 3_600_000, now), now);
        assert!(s.entries <= 12, "{}", s.entries);
        assert!(s.stats().late_packets >= 3_580_000);
        for k in 0..(MAX_ENTRIES as u64 + 10) {
            let mut r = record(1, now, now);
            r.info.dst = IpAddr::from((k as u32).to_be_bytes());
            s.add(&r, now);
        }
        assert!(s.entries <= MAX_ENTRIES);
        assert!(s.stats().dropped_packets >= 10);
    }

    #[test]
    fn the_first_hand_over_is_one_interval_not_all_that_came_before() {
        let fixed = Some(Duration::from_secs(1));
        let mut s = Spread::new(Duration::from_secs(1), Duration::from_secs(60), fixed);
        let now = 5_000_000_000;
        // Ten seconds of 1,000 pps, in records that arrive before the first hand-over.
        for k in 0..10 {
            s.add(&record(1000, now - (10 - k) * I, now - (9 - k) * I), now);
        }
        let d = s.flush(now + 1, &[]).unwrap();
        assert_eq!(d.elapsed, Duration::from_secs(1));
        assert_eq!(pps(d), 1000);
        assert_eq!(s.stats().late_packets, 8000, "{:?}", s.stats());
    }

    #[test]
    fn a_clock_stepped_back_does_not_stop_the_reports() {
        let mut s = Spread::new(Duration::from_secs(1), Duration::from_secs(60), None);
        steady(&mut s, 1000, 0, 10);
        let back = 1_000_000_000 - 3_600_000;
        let mut reports = 0;
        for k in 0..5 {
            let now = back + k * I;
            s.add(&record(10_000, now - I, now), now);
            reports += usize::from(s.flush(now + 1, &[]).is_some());
        }
        assert!(reports >= 3, "{reports}");
    }

    #[test]
    fn the_delay_never_grows_faster_than_an_interval_per_flush() {
        let mut s = Spread::new(Duration::from_secs(1), Duration::from_secs(60), None);
        let rates = steady(&mut s, 1000, 0, 20);
        assert!(rates.len() >= 17);
        // The exporter's active timeout becomes 20 s: reports go on, one skipped at most in a row.
        let t0 = 1_000_000_000;
        let mut skipped_in_a_row = 0;
        let mut worst = 0;
        let mut exported = t0 + 20 * I;
        for sec in 20..80 {
            let now = t0 + sec * I;
            while exported + 20 * I <= now {
                s.add(&record(200_000, exported, exported + 20 * I), now);
                exported += 20 * I;
            }
            match s.flush(now + 1, &[]) {
                Some(_) => skipped_in_a_row = 0,
                None => skipped_in_a_row += 1,
            }
            worst = worst.max(skipped_in_a_row);
        }
        assert!(worst <= 1, "{worst}");
    }
}
