//! Figures with the routers in the path and enforcing, the shipped policies and timers: what a
//! long flood, a pulse wave, an RTBH step and a dead probe look like end to end. Not a timed test:
//! it prints what it measured, and asserts nothing.
//!
//! `cargo bench --bench enforce` (as root, with bird2, gobgpd, nftables and python3 installed);
//! `ENFORCE_MINUTES` (default 10) sets each flood's length. The lab runs with `LAB_HOLD=shipped`
//! (each policy's own withdraw_after) and `LAB_COOLDOWN=shipped` (deflect's 30 s), probe interval
//! 1 s; every flood is split over both edges (the attacker's two source addresses).
//!
//! Per vector (amplification: UDP from port 123; SYN flood to port 80; plain UDP flood to one
//! port): a sustained flood of ENFORCE_MINUTES. Printed: attacks recorded for the victim
//! (`GET /api/v1/attacks?all=true`), announce/withdraw cycles (mitigations deflect's policies made,
//! `GET /api/v1/mitigations?all=true`, and rule appearances seen in BIRD's table), packets reaching
//! the victim after the first rule reached an enforcer as a share of those sent after it, and the
//! time from the flood's end to the rule leaving both routers.
//! Then a pulse wave (20 s on, 40 s off, for ENFORCE_MINUTES): attacks recorded, and withdrawals
//! that fell between pulses. Then an RTBH step by hand: reachability during and after. Then the
//! probe killed mid-attack: time until the rule leaves both routers.

#[path = "../integration/lab_rig/mod.rs"]
#[allow(dead_code)]
mod lab_rig;

use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lab_rig::{Edge, Flood, Kind, Lab, poll};

const SECOND: Duration = Duration::from_secs(1);
/// Longest the bench waits for a rule to leave once a flood is over: a hold-down grown by a return
/// (the shipped amplification policy: 2 m, then 8 m, then 32 m) is what deflect waits before it
/// looks again.
const WITHDRAW_BOUND: Duration = Duration::from_secs(40 * 60);
/// The shipped amplification policy's ttl (policies/amplification.yaml).
const AMPLIFICATION_TTL: Duration = Duration::from_secs(600);

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

fn victim_total(lab: &Lab) -> u64 {
    Edge::BOTH.iter().map(|&e| lab.victim_packets(e)).sum()
}

fn routers_empty(lab: &Lab) -> bool {
    lab.bird_rules().is_empty() && lab.gobgp_rules().is_empty()
}

fn enforcing(lab: &Lab) -> bool {
    Edge::BOTH.iter().any(|&e| !lab.enforced(e).is_empty())
}

/// Waits (bounded) until neither router holds a rule; how long it took. Then (bounded) until
/// neither enforcer does, so that the next flood starts from nothing.
fn until_withdrawn(lab: &Lab, bound: Duration) -> Option<Duration> {
    let t = Instant::now();
    let gone = poll(bound, || {
        let empty = routers_empty(lab);
        if !empty {
            thread::sleep(Duration::from_millis(200));
        }
        empty.then(|| t.elapsed())
    });
    let _ = poll(5 * SECOND, || (!enforcing(lab)).then_some(()));
    gone
}

/// Attacks on the victim by `vector` that started at or after `since_ms`.
fn attacks_since(lab: &Lab, vector: &str, since_ms: u64) -> Vec<serde_json::Value> {
    lab.api("/api/v1/attacks?all=true")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| {
            a["target"] == "192.0.2.2"
                && a["vector"] == vector
                && a["started_ms"].as_u64() >= Some(since_ms)
        })
        .collect()
}

/// Mitigations deflect's policies made at or after `since_ms`.
fn policy_mitigations_since(lab: &Lab, since_ms: u64) -> Vec<serde_json::Value> {
    lab.api("/api/v1/mitigations?all=true")
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| {
            m["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("policy:"))
                && m["created_ms"].as_u64() >= Some(since_ms)
        })
        .collect()
}

fn floods(lab: &Lab, kind: Kind, pps_per_edge: u64, max: Duration) -> Vec<Flood> {
    Edge::BOTH
        .iter()
        .map(|&e| Flood::via(lab, e, kind, pps_per_edge, max))
        .collect()
}

fn sent(floods: &[Flood]) -> u64 {
    floods.iter().map(Flood::sent).sum()
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("not within the bound".into(), |d| {
        format!("{:.1} s", d.as_secs_f64())
    })
}

fn sustained(lab: &Lab, kind: Kind, vector: &str, pps_per_edge: u64, length: Duration) {
    let since = now_ms();
    let running = floods(lab, kind, pps_per_edge, length);
    let start = Instant::now();
    let mut first_rule: Option<(Duration, u64, u64)> = None;
    let (mut in_bird, mut appearances) = (false, 0u32);
    while start.elapsed() < length {
        if first_rule.is_none() && enforcing(lab) {
            first_rule = Some((start.elapsed(), sent(&running), victim_total(lab)));
        }
        let now_in_bird = !lab.bird_rules().is_empty();
        appearances += u32::from(now_in_bird && !in_bird);
        in_bird = now_in_bird;
        thread::sleep(Duration::from_millis(500));
    }
    let total_sent: u64 = running.into_iter().map(|f| f.stop().0).sum();
    let victim_end = victim_total(lab);
    let withdrawn = until_withdrawn(lab, WITHDRAW_BOUND);
    let attacks = attacks_since(lab, vector, since);
    let mitigations = policy_mitigations_since(lab, since);
    let withdrawals = mitigations
        .iter()
        .filter(|m| m["withdrawn_ms"].is_u64())
        .count();
    eprintln!(
        "{vector}: {:.1} min at {} pps over 2 edges, {total_sent} packets",
        length.as_secs_f64() / 60.0,
        2 * pps_per_edge
    );
    eprintln!("  attacks recorded for the victim: {}", attacks.len());
    eprintln!(
        "  policy mitigations: {} made, {withdrawals} withdrawn; the rule appeared in BIRD {appearances} times (seen every 0.5 s)",
        mitigations.len()
    );
    match first_rule {
        Some((at, s, v)) => {
            let after = total_sent.saturating_sub(s);
            let reached = victim_end.saturating_sub(v);
            eprintln!(
                "  first rule at an enforcer {:.1} s in; after it {reached} of {after} packets reached the victim ({:.2} %)",
                at.as_secs_f64(),
                reached as f64 * 100.0 / after.max(1) as f64
            );
        }
        None => eprintln!("  no rule reached an enforcer"),
    }
    eprintln!(
        "  flood's end → rule gone from both routers: {}",
        secs(withdrawn)
    );
    for m in &mitigations {
        eprintln!(
            "    mitigation {}: {} (created {:+.1} s, withdrawn {})",
            m["id"],
            m["rule"].as_str().unwrap_or("rtbh"),
            (m["created_ms"].as_u64().unwrap_or(0) as f64 - since as f64) / 1e3,
            m["withdrawn_ms"].as_u64().map_or("no".into(), |w| format!(
                "{:+.1} s, {}",
                (w as f64 - since as f64) / 1e3,
                m["withdraw_reason"].as_str().unwrap_or("")
            ))
        );
    }
}

fn pulse_wave(lab: &Lab, length: Duration) {
    let since = now_ms();
    let cycles = (length.as_secs_f64() / 60.0).ceil().max(1.0) as u32;
    let (mut gaps, mut met) = (Vec::new(), 0);
    for _ in 0..cycles {
        met += u32::from(enforcing(lab));
        let on = floods(lab, Kind::Ntp, 8_000, 20 * SECOND);
        thread::sleep(20 * SECOND);
        drop(on);
        let gap = now_ms();
        thread::sleep(40 * SECOND);
        gaps.push((gap, now_ms()));
    }
    let last_pulse_end = gaps.last().map_or(0, |g| g.0);
    let withdrawn = until_withdrawn(lab, WITHDRAW_BOUND);
    let attacks = attacks_since(lab, "amplification", since);
    let mitigations = policy_mitigations_since(lab, since);
    let withdrawals: Vec<u64> = mitigations
        .iter()
        .filter_map(|m| m["withdrawn_ms"].as_u64())
        .collect();
    let between = withdrawals
        .iter()
        .filter(|w| gaps.iter().any(|(a, b)| (a..b).contains(w)))
        .count();
    eprintln!("pulse wave (NTP, 20 s on at 16000 pps over 2 edges, 40 s off), {cycles} pulses");
    eprintln!("  attacks recorded for the victim: {}", attacks.len());
    eprintln!(
        "  policy mitigations: {} made; {between} withdrawn between pulses; {met} pulses met a rule still in place",
        mitigations.len()
    );
    match (withdrawn, withdrawals.iter().max()) {
        (Some(_), Some(&w)) => eprintln!(
            "  last withdrawal {:+.1} s from the last pulse's end",
            (w as f64 - last_pulse_end as f64) / 1e3
        ),
        _ => eprintln!(
            "  the rule was still in a router {} s after the last pulse",
            40 + WITHDRAW_BOUND.as_secs()
        ),
    }
}

fn rtbh_step(lab: &Lab) {
    let ping = |e| lab.ping(e, Duration::from_millis(300));
    let before: Vec<bool> = Edge::BOTH.iter().map(|&e| ping(e)).collect();
    let (ok, out) = lab.cli(&[
        "mitigation",
        "add",
        "--rtbh",
        "192.0.2.2/32",
        "--ttl",
        "5m",
        "--reason",
        "bench: rtbh step",
        "--json",
    ]);
    if !ok {
        eprintln!("rtbh step: the CLI refused: {out}");
        return;
    }
    let id = serde_json::from_str::<serde_json::Value>(&out).unwrap_or_default()["id"].to_string();
    let added = Instant::now();
    eprintln!("rtbh step (192.0.2.2/32 by hand), answered before: {before:?}");
    let mut placed = [None; 2];
    poll(10 * SECOND, || {
        for (i, &e) in Edge::BOTH.iter().enumerate() {
            if placed[i].is_none() && lab.blackholes(e).contains("blackhole 192.0.2.2") {
                placed[i] = Some(added.elapsed());
            }
        }
        placed.iter().all(Option::is_some).then_some(())
    });
    for (e, placed) in Edge::BOTH.into_iter().zip(placed) {
        let answered = (0..10).filter(|_| ping(e)).count();
        eprintln!(
            "  {e:?}: blackhole at the edge after {}; during: {answered} of 10 pings answered",
            secs(placed)
        );
    }
    let (ok, out) = lab.cli(&["mitigation", "withdraw", &id]);
    if !ok {
        eprintln!("  withdraw refused: {out}");
        return;
    }
    let withdrawn = Instant::now();
    for e in Edge::BOTH {
        let back = poll(10 * SECOND, || ping(e).then(|| withdrawn.elapsed()));
        eprintln!(
            "  {e:?}: reachable again {} after the withdrawal",
            secs(back)
        );
    }
}

fn probe_killed(lab: &Lab) {
    let running = floods(lab, Kind::Ntp, 8_000, AMPLIFICATION_TTL + 3 * 60 * SECOND);
    let both = poll(30 * SECOND, || {
        (lab.bird_has_ntp() && lab.gobgp_has_ntp()).then_some(())
    });
    if both.is_none() {
        eprintln!("probe killed mid-attack: the rule never reached both routers");
        return;
    }
    lab.kill("probe", "-KILL");
    let gone = until_withdrawn(lab, AMPLIFICATION_TTL + 60 * SECOND);
    drop(running);
    eprintln!(
        "probe killed mid-attack (NTP flood going on through both edges): rule gone from both routers {} after the kill (policy ttl {} s)",
        secs(gone),
        AMPLIFICATION_TTL.as_secs()
    );
}

fn main() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("enforce bench skipped: {why}");
        return;
    }
    let minutes: f64 = std::env::var("ENFORCE_MINUTES")
        .ok()
        .and_then(|m| m.parse().ok())
        .unwrap_or(10.0);
    let length = Duration::from_secs_f64(minutes * 60.0);
    // ENFORCE_ONLY=amplification,syn,udp,pulse,rtbh,kill (default: all).
    let only = std::env::var("ENFORCE_ONLY").unwrap_or_default();
    let wanted = |part: &str| only.is_empty() || only.split(',').any(|p| p.trim() == part);
    eprintln!(
        "settings: ENFORCE_MINUTES={minutes}, shipped policies and timers (cooldown 30 s), probe interval 1 s, both edges enforcing; a fresh lab for each part (an attack on probation would take the next one for its return)"
    );
    // A fresh lab (and deflect) per part, its baselines learned on the quiet victim first
    // (detection warmup 5 s).
    let part = |name: &str, run: &dyn Fn(&Lab)| {
        if !wanted(name) {
            return;
        }
        match Lab::up(
            "ben",
            &[("LAB_HOLD", "shipped"), ("LAB_COOLDOWN", "shipped")],
        ) {
            Ok(lab) => {
                thread::sleep(6 * SECOND);
                run(&lab);
            }
            Err(e) => eprintln!("{name}: lab: {e}"),
        }
    };
    part("amplification", &|lab| {
        sustained(lab, Kind::Ntp, "amplification", 8_000, length)
    });
    part("syn", &|lab| {
        sustained(lab, Kind::Syn, "syn-flood", 8_000, length)
    });
    // The lab's floor for a plain UDP flood is 20000 pps.
    part("udp", &|lab| {
        sustained(lab, Kind::Udp, "udp-flood", 12_000, length)
    });
    part("pulse", &|lab| pulse_wave(lab, length));
    part("rtbh", &|lab| rtbh_step(lab));
    part("kill", &|lab| probe_killed(lab));
}
