//! Detection delay with a real exporter in the path: from a flood's first packet to the FlowSpec
//! rule in GoBGP's RIB, and from its last packet to the withdrawal, with pmacct's `nfprobe` at 1 s
//! active and idle timeouts (the setting the README recommends for DDoS use), IPFIX and NetFlow v9.
//!
//! `cargo bench --bench netflow_lab` (root: network namespaces; pmacct, gobgpd, python3). Each run
//! starts a fresh rig (`integration/netflow_rig`: deflect, GoBGP, pmacctd in namespaces), so every
//! flood is a new attack, not the return of the last one. The flood: NTP-shaped answers from 20
//! reflectors at 8,000 pps for 8 s; the shipped-like amplification policy (a discard rule on
//! protocol and source port, withdrawn 1 s after the quiet); detection's warm-up and cool-down at 1
//! s. Every run and wait is bounded; everything started is stopped by its PID.

#[path = "../integration/netflow_rig/mod.rs"]
mod rig;

use std::time::{Duration, Instant};

use rig::{Export, Rig};

const RUNS: usize = 3;

fn main() {
    if let Some(why) = rig::unavailable() {
        eprintln!("netflow_lab: cannot run: {why}");
        return;
    }
    for (name, export) in [
        (
            "IPFIX",
            Export {
                version: 10,
                sampling: None,
            },
        ),
        (
            "NetFlow v9 1:10",
            Export {
                version: 9,
                sampling: Some(10),
            },
        ),
    ] {
        let mut to_rule = Vec::new();
        let mut to_withdrawal = Vec::new();
        let mut delays = Vec::new();
        for run in 0..RUNS {
            let mut r = match Rig::start(&format!("bench{run}")) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("netflow_lab: rig: {e}");
                    return;
                }
            };
            if let Err(e) = r.export(export) {
                eprintln!("netflow_lab: {e}");
                return;
            }
            let started = Instant::now();
            let (sent, rule) = std::thread::scope(|s| {
                let h = s.spawn(|| r.flood(8000, 8.0));
                let rule = r.until_rule(started, Duration::from_secs(30));
                (h.join().unwrap(), rule)
            });
            let ended = Instant::now();
            let withdrawn = r
                .until_withdrawn(Duration::from_secs(60))
                .ok()
                .map(|_| ended.elapsed());
            let delay_ms = r.api("/api/v1/netflow")["exporters"][0]["delay_ms"]
                .as_u64()
                .unwrap_or(0);
            eprintln!(
                "  {name} run {}: {} datagrams sent; rule {}; withdrawn {} after the flood; learned delay {delay_ms} ms",
                run + 1,
                sent.unwrap_or(0),
                rule.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64())),
                withdrawn.map_or("never".into(), |d| format!("{:.2} s", d.as_secs_f64())),
            );
            to_rule.extend(rule);
            to_withdrawal.extend(withdrawn);
            delays.push(delay_ms);
        }
        let median = |v: &mut Vec<Duration>| {
            v.sort();
            v.get(v.len() / 2)
                .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64()))
        };
        eprintln!(
            "{name} at 1 s timeouts, {RUNS} runs: flood start to rule median {} (min {}, max {}); flood end to withdrawal median {}; learned delay {:?} ms",
            median(&mut to_rule.clone()),
            to_rule
                .iter()
                .min()
                .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
            to_rule
                .iter()
                .max()
                .map_or("-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
            median(&mut to_withdrawal),
            delays,
        );
    }
}
