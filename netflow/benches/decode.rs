//! NetFlow v5, v9 and IPFIX decode rate on one core, in memory.
//!
//! `cargo bench -p deflect-netflow --bench decode`
//!
//! The datagrams: `flood/mod.rs` (for each version 10,000 distinct ones as a border router exports
//! them under a reflection flood, about 1.4 kB; the templates and sampler options first, untimed).
//!
//! What is measured: CPU time of the decoding thread (the per-task `/proc/thread-self/schedstat`
//! run time, in nanoseconds), so that the other core's load does not skew it. Each datagram is
//! decoded into its flows, which are then dropped. Five windows of 0.5 s of CPU each per version,
//! the median window reported.

use std::fs;
use std::hint::black_box;

use bytes::Bytes;
use deflect_netflow::{Limits, Session};

mod flood;

use flood::datagrams;

fn thread_cpu_ns() -> u64 {
    fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    for (version, name) in [(5u16, "NetFlow v5"), (9, "NetFlow v9"), (10, "IPFIX")] {
        let (priming, list, per) = datagrams(version);
        let octets: usize = list.iter().map(Bytes::len).sum();
        // The whole timeline is decoded at one instant of the caller's clock. After the last
        // datagram the sequence would go back (a restart): a new session starts the list again.
        let fresh = || {
            let mut s = Session::new(Limits::default());
            if let Some(p) = &priming {
                s.decode(p.clone(), 0).expect("priming decodes");
            }
            s
        };
        let mut s = fresh();
        let check = s.decode(list[0].clone(), 0).expect("decodes");
        assert_eq!(check.flows.len(), per);
        assert!(check.flows.iter().all(|f| f.sampling == Some(1000)));
        let mut windows = Vec::new();
        let mut i = 1;
        for _ in 0..5 {
            let (mut n, mut flows) = (0u64, 0u64);
            let t0 = thread_cpu_ns();
            loop {
                for _ in 0..200 {
                    if i == list.len() {
                        assert_eq!(s.stats().lost + s.stats().restarts, 0, "{name}");
                        s = fresh();
                        i = 0;
                    }
                    let p = s.decode(list[i].clone(), 0);
                    i += 1;
                    n += 1;
                    flows += black_box(p).map(|p| p.flows.len() as u64).unwrap_or(0);
                }
                if thread_cpu_ns() - t0 >= 500_000_000 {
                    break;
                }
            }
            let secs = (thread_cpu_ns() - t0) as f64 / 1e9;
            windows.push((n as f64 / secs, flows as f64 / secs));
        }
        windows.sort_by(|a, b| a.0.total_cmp(&b.0));
        let (d, f) = windows[2];
        eprintln!(
            "{name:<11} {:>5} octets/datagram, {per:>2} records: {:>9.0} datagrams/CPU-s, {:>10.0} flow records/CPU-s, {:>6.0} MB/CPU-s",
            octets / list.len(),
            d,
            f,
            d * (octets as f64 / list.len() as f64) / 1e6
        );
        let st = s.stats();
        assert_eq!(
            st.lost + st.restarts,
            0,
            "{name}: the generated sequence has no gap"
        );
        assert_eq!(st.records_malformed + st.sets_unknown_template, 0);
    }
}
