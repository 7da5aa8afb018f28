//! sFlow decode rate on one core, in memory.
//!
//! `cargo bench -p deflect-sflow --bench decode`. The datagrams: `flood/mod.rs` (10,000 distinct
//! ones as a switch exports them under a reflection flood, about 1.9 kB, 8 flow samples and 1
//! counter sample each).
//!
//! What is measured, as CPU time of the decoding thread (the per-task `/proc/thread-self/schedstat`
//! run time, in nanoseconds), so that the other core's load does not skew it:
//!
//! 1. decode only: [`decode`] of every datagram, every sample and record (19 MB of datagrams, so
//!    mostly out of cache), then the result dropped; five windows of 0.6 s of CPU each, the median
//!    window reported.
//! 2. decode and parse: as 1, plus each sampled header parsed down to its UDP ports with etherparse,
//!    which is what a collector (and sfacctd) does with every sample.
//!
//! End to end over a UDP socket, the collector's own receive path against pmacct's `sfacctd` on the
//! same datagrams: `benches/ingest.rs` in the root crate.

use std::fs;
use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use deflect_sflow::{FlowRecord, Sample, decode};
use etherparse::{LaxSlicedPacket, TransportSlice};

mod flood;

use flood::{FLOW_SAMPLES, flood_datagrams};

/// Run time of the calling thread, from the scheduler, in nanoseconds.
fn thread_cpu_ns() -> u64 {
    schedstat_ns(Path::new("/proc/thread-self/schedstat")).unwrap_or(0)
}

fn schedstat_ns(path: &Path) -> Option<u64> {
    fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    datagrams: u64,
    samples: u64,
    records: u64,
    headers_parsed: u64,
    port_sum: u64,
}

/// Decodes one datagram fully; with `parse`, each sampled header down to its UDP ports.
fn consume(bytes: Bytes, parse: bool, t: &mut Tally) {
    let d = match decode(bytes) {
        Ok(d) => d,
        Err(e) => panic!("a generated datagram does not decode: {e}"),
    };
    t.datagrams += 1;
    for s in &d.samples {
        t.samples += 1;
        match s {
            Sample::Flow(f) => {
                t.records += f.records.len() as u64;
                if parse {
                    for r in &f.records {
                        if let FlowRecord::RawHeader(h) = r {
                            if let Ok(p) = LaxSlicedPacket::from_ethernet(&h.header) {
                                t.headers_parsed += 1;
                                if let Some(TransportSlice::Udp(u)) = &p.transport {
                                    t.port_sum += u64::from(u.source_port());
                                }
                            }
                        }
                    }
                }
            }
            Sample::Counters(c) => t.records += c.records.len() as u64,
            Sample::Unknown { .. } => {}
        }
    }
    black_box(&d);
}

#[derive(Debug, Clone, Copy)]
struct Rate {
    tally: Tally,
    cpu_s: f64,
}

impl Rate {
    fn per_cpu_s(&self, n: u64) -> f64 {
        n as f64 / self.cpu_s.max(1e-9)
    }
}

/// Rounds of the whole set, in memory, on this thread, until `min` has passed (at most 1000).
fn in_memory(set: &[Bytes], parse: bool, min: Duration) -> Rate {
    // One round to warm caches and the allocator.
    let mut warm = Tally::default();
    for b in set {
        consume(b.clone(), parse, &mut warm);
    }
    let mut t = Tally::default();
    let start = Instant::now();
    let cpu0 = thread_cpu_ns();
    for _ in 0..1000 {
        for b in set {
            consume(b.clone(), parse, &mut t);
        }
        if start.elapsed() >= min {
            break;
        }
    }
    let cpu = thread_cpu_ns().saturating_sub(cpu0);
    Rate {
        tally: t,
        cpu_s: cpu as f64 / 1e9,
    }
}

fn median(rates: &[f64]) -> (f64, f64, f64) {
    let mut v = rates.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.get(v.len() / 2).copied().unwrap_or(0.0);
    (
        mid,
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}

#[allow(clippy::print_stdout)]
fn main() {
    // `cargo test --benches` runs this with `--bench` absent: keep it quick there.
    let bench = std::env::args().any(|a| a == "--bench");
    let set = flood_datagrams();
    let octets: usize = set.iter().map(Bytes::len).sum();
    let samples_per = (FLOW_SAMPLES + 1) as f64;
    println!(
        "sFlow decode: {} distinct datagrams, {} flow samples (128-octet Ethernet/IPv4/UDP header + \
         extended switch) and 1 counter sample (generic + Ethernet) each, {} octets on average",
        set.len(),
        FLOW_SAMPLES,
        octets / set.len()
    );
    if !bench {
        let r = in_memory(&set[..100], true, Duration::ZERO);
        println!(
            "smoke run: {} datagrams decoded (run with `cargo bench` for figures)",
            r.tally.datagrams
        );
        return;
    }

    // Windows of 0.6 s of CPU, the median: a burst of load on the machine moves it little.
    let windows = |parse: bool| -> Vec<Rate> {
        (0..5)
            .map(|_| in_memory(&set, parse, Duration::from_millis(600)))
            .collect()
    };
    let line = |what: &str, rates: &[Rate]| -> f64 {
        let per: Vec<f64> = rates
            .iter()
            .map(|r| r.per_cpu_s(r.tally.datagrams))
            .collect();
        let (mid, lo, hi) = median(&per);
        let datagrams: u64 = rates.iter().map(|r| r.tally.datagrams).sum();
        let cpu: f64 = rates.iter().map(|r| r.cpu_s).sum();
        println!(
            "{what:<42} {mid:>9.0} datagrams/s {:>10.0} samples/s per CPU-second \
             (median of {}: {lo:.0}..{hi:.0}; {datagrams} datagrams, {cpu:.2} s CPU)",
            mid * samples_per,
            per.len(),
        );
        mid
    };
    let ours = line("ours, decode only, in memory", &windows(false));
    let parsed = windows(true);
    assert!(
        parsed
            .iter()
            .all(|r| r.tally.headers_parsed == r.tally.datagrams * FLOW_SAMPLES as u64)
    );
    let parsed_rate = line("ours, decode + sampled header parse", &parsed);
    println!(
        "ratio: decode only / decode and parse = {:.1}x; over a socket, against sfacctd: \
         `cargo bench --bench ingest`",
        ours / parsed_rate
    );
}
