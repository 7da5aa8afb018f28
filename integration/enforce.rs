//! The routers in the path (`integration/lab`): the attacker reaches the victim through BIRD's and
//! GoBGP's namespaces, where `integration/enforcer/enforcer.py` programs what each router holds.
//! A rule in a router must stop the traffic there; a rule gone must let it through again; what a
//! router holds is enforced whatever deflect says (here: deflect killed, the routers keep the rule
//! under graceful restart, the rate cap keeps holding). Each test prints its figures on lines
//! starting with "figure:".
//!
//! Also runs the enforcer's own unit tests (Python, captured router outputs) as part of
//! `cargo test`.

#[path = "lab_rig/mod.rs"]
#[allow(dead_code)]
mod lab_rig;

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use lab_rig::{Edge, Flood, Kind, Lab, NTP_BIRD, NTP_GOBGP, poll};

const SECOND: Duration = Duration::from_secs(1);
/// An NTP-shaped flood packet as the edge forwards it: 468 bytes of payload, UDP and IPv4 headers.
const NTP_PACKET_BYTES: u64 = 468 + 8 + 20;

/// The NTP rule as `edge`'s router prints it, which is how its enforcer names the nft rule.
fn ntp_route(edge: Edge) -> &'static str {
    match edge {
        Edge::Bird => NTP_BIRD,
        Edge::Gobgp => NTP_GOBGP,
    }
}

fn router_has_ntp(lab: &Lab, edge: Edge) -> bool {
    match edge {
        Edge::Bird => lab.bird_has_ntp(),
        Edge::Gobgp => lab.gobgp_has_ntp(),
    }
}

fn show(lab: &Lab) -> String {
    let tail = |s: String| {
        let lines: Vec<&str> = s.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    };
    format!(
        "BIRD: {:#?}\nGoBGP: {:#?}\nenforced at BIRD: {:?}\nenforced at GoBGP: {:?}\nenforcer-bird.log:\n{}\nenforcer-gobgp.log:\n{}\ndeflect log (tail):\n{}",
        lab.bird_rules(),
        lab.gobgp_rules(),
        lab.enforced(Edge::Bird),
        lab.enforced(Edge::Gobgp),
        tail(lab.enforcer_log(Edge::Bird)),
        tail(lab.enforcer_log(Edge::Gobgp)),
        tail(lab.log("deflect")),
    )
}

#[test]
fn the_enforcer_reads_captured_router_outputs_into_the_expected_rules() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/integration/enforcer");
    let out = match Command::new("python3")
        .args(["-m", "unittest", "-v"])
        .current_dir(dir)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipped: python3: {e}");
            return;
        }
    };
    assert!(
        out.status.success(),
        "python3 -m unittest in {dir}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_ntp_flood_is_dropped_at_each_edge_until_the_rule_is_withdrawn() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    // Hold-down 5 s and cooldown 2 s: once the edge drops the flood, the rule stays at least
    // 7 s, longer than the 3 s measured below.
    let lab = Lab::up("enf", &[("LAB_HOLD", "5s")]).unwrap();
    for edge in Edge::BOTH {
        let route = ntp_route(edge);
        let flood = Flood::via(&lab, edge, Kind::Ntp, 15_000, 60 * SECOND);
        let started = Instant::now();
        poll(15 * SECOND, || router_has_ntp(&lab, edge).then_some(()))
            .unwrap_or_else(|| panic!("{edge:?}: the rule in the router\n{}", show(&lab)));
        let in_router = started.elapsed();
        poll(5 * SECOND, || lab.enforced_packets(edge, route))
            .unwrap_or_else(|| panic!("{edge:?}: the rule enforced\n{}", show(&lab)));
        let enforced = started.elapsed();
        // Both counters at once, and what the flood had sent by then (the middle of the reads,
        // which each start a process).
        let sample = || {
            let a = flood.sent();
            let v = lab.victim_packets(edge);
            let e = lab.enforced_packets(edge, route);
            ((a + flood.sent()) / 2, v, e)
        };
        let (s1, v1, e1) = sample();
        let e1 = e1.unwrap_or(0);
        // A measuring window, not a wait for a condition.
        thread::sleep(3 * SECOND);
        let (s2, v2, e2) = sample();
        flood.stop();
        let e2 = e2.unwrap_or_else(|| {
            panic!(
                "{edge:?}: the rule left during the measurement\n{}",
                show(&lab)
            )
        });
        let (sent, reached, dropped) = (s2 - s1, v2 - v1, e2 - e1);
        eprintln!(
            "figure: {edge:?}: rule in the router {:.1} s and enforced {:.1} s after the flood began; then {sent} sent, {dropped} dropped at the edge, {reached} reached the victim ({:.3} %)",
            in_router.as_secs_f64(),
            enforced.as_secs_f64(),
            reached as f64 * 100.0 / sent.max(1) as f64
        );
        assert!(sent > 5_000, "{edge:?}: the flood ran ({sent} packets)");
        assert!(
            reached * 100 < sent,
            "{edge:?}: {reached} of {sent} reached the victim\n{}",
            show(&lab)
        );
        assert!(
            dropped * 10 >= sent * 9,
            "{edge:?}: the edge counted {dropped} of {sent}\n{}",
            show(&lab)
        );
        // The flood is over: deflect withdraws, the router lets go, the enforcer follows.
        let stopped = Instant::now();
        poll(30 * SECOND, || {
            (!lab.bird_has_ntp()
                && !lab.gobgp_has_ntp()
                && lab.enforced_packets(Edge::Bird, NTP_BIRD).is_none()
                && lab.enforced_packets(Edge::Gobgp, NTP_GOBGP).is_none())
            .then_some(())
        })
        .unwrap_or_else(|| panic!("{edge:?}: withdrawn and unenforced\n{}", show(&lab)));
        eprintln!(
            "figure: {edge:?}: flood stopped → rule gone from both routers and both enforcers in {:.1} s",
            stopped.elapsed().as_secs_f64()
        );
        // The enforcer logs a change once nftables has it: the line follows a moment later.
        for e in Edge::BOTH {
            let logged = |log: &str| {
                log.contains(&format!("added: {}", ntp_route(e)))
                    && log.contains(&format!("removed: {}", ntp_route(e)))
            };
            let found = poll(5 * SECOND, || logged(&lab.enforcer_log(e)).then_some(()));
            assert!(
                found.is_some(),
                "{e:?}'s enforcer logged the rule coming and going\n{}",
                lab.enforcer_log(e)
            );
        }
    }
}

#[test]
fn an_rtbh_route_by_hand_makes_the_victim_unreachable_through_each_edge_until_withdrawn() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = Lab::up("rtb", &[]).unwrap();
    let ping = |edge| lab.ping(edge, Duration::from_millis(300));
    for edge in Edge::BOTH {
        poll(5 * SECOND, || ping(edge).then_some(()))
            .unwrap_or_else(|| panic!("{edge:?}: the victim answers before\n{}", show(&lab)));
    }
    let (ok, out) = lab.cli(&[
        "mitigation",
        "add",
        "--rtbh",
        "192.0.2.2/32",
        "--ttl",
        "5m",
        "--reason",
        "lab: rtbh by hand",
        "--json",
    ]);
    assert!(ok, "{out}");
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    let added = Instant::now();
    let mut placed = [None; 2];
    poll(10 * SECOND, || {
        for (i, &edge) in Edge::BOTH.iter().enumerate() {
            if placed[i].is_none() && lab.blackholes(edge).contains("blackhole 192.0.2.2") {
                placed[i] = Some(added.elapsed());
            }
        }
        placed.iter().all(Option::is_some).then_some(())
    })
    .unwrap_or_else(|| panic!("the blackhole route at both edges\n{}", show(&lab)));
    for (edge, placed) in Edge::BOTH.into_iter().zip(placed) {
        eprintln!(
            "figure: {edge:?}: RTBH added → blackhole route at the edge in {:.2} s",
            placed.unwrap_or_default().as_secs_f64()
        );
        for _ in 0..3 {
            assert!(
                !ping(edge),
                "{edge:?}: the victim answered through a blackhole\n{}",
                show(&lab)
            );
        }
    }
    let (ok, out) = lab.cli(&["mitigation", "withdraw", &m["id"].to_string()]);
    assert!(ok, "{out}");
    let withdrawn = Instant::now();
    for edge in Edge::BOTH {
        let back = poll(10 * SECOND, || ping(edge).then(Instant::now))
            .unwrap_or_else(|| panic!("{edge:?}: reachable again\n{}", show(&lab)));
        let after = back.saturating_duration_since(withdrawn);
        eprintln!(
            "figure: {edge:?}: RTBH withdrawn → victim answers through the edge in {:.2} s",
            after.as_secs_f64()
        );
        assert!(
            after < 2 * SECOND,
            "{edge:?}: reachable only {after:?} after the withdrawal"
        );
        assert_eq!(lab.blackholes(edge), "", "{edge:?}: no blackhole left");
    }
}

#[test]
fn a_rate_limit_the_routers_hold_keeps_the_flood_at_its_cap_even_with_deflect_killed() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = Lab::up("enr", &[]).unwrap();
    // 250 kB/s: about 504 of these packets a second, far under the lab's NTP floor (5000 pps), so
    // deflect's detection does not add a rule of its own.
    const CAP: f64 = 250_000.0;
    let (ok, out) = lab.cli(&[
        "mitigation",
        "add",
        "--flow",
        "dst 192.0.2.2/32 proto udp sport 123 then rate-bytes 250000",
        "--ttl",
        "10m",
        "--reason",
        "lab: rate cap",
    ]);
    assert!(ok, "{out}");
    for edge in Edge::BOTH {
        poll(10 * SECOND, || lab.enforced_packets(edge, ntp_route(edge)))
            .unwrap_or_else(|| panic!("{edge:?}: the cap enforced\n{}", show(&lab)));
    }
    let floods: Vec<Flood> = Edge::BOTH
        .iter()
        .map(|&e| Flood::via(&lab, e, Kind::Ntp, 2_000, 60 * SECOND))
        .collect();
    // What reaches the victim through each edge, in bytes a second, over a 5 s window.
    let measure = || {
        let before: Vec<(u64, u64)> = Edge::BOTH
            .iter()
            .zip(&floods)
            .map(|(&e, f)| (lab.victim_packets(e), f.sent()))
            .collect();
        let t = Instant::now();
        thread::sleep(5 * SECOND);
        Edge::BOTH
            .iter()
            .zip(&floods)
            .zip(before)
            .map(|((&e, f), (v, s))| {
                let secs = t.elapsed().as_secs_f64();
                let reached = (lab.victim_packets(e) - v) * NTP_PACKET_BYTES;
                let offered = (f.sent() - s) * NTP_PACKET_BYTES;
                (reached as f64 / secs, offered as f64 / secs)
            })
            .collect::<Vec<_>>()
    };
    // The first second fills the bucket; measure after it.
    thread::sleep(SECOND);
    let with_deflect = measure();
    lab.kill("deflect", "-KILL");
    assert!(lab.api("/api/v1/health").is_null(), "deflect's API is gone");
    // Graceful restart: both routers keep the rule, so both edges keep enforcing it.
    assert!(
        lab.bird_has_ntp() && lab.gobgp_has_ntp(),
        "the routers kept the rule\n{}",
        show(&lab)
    );
    let without = measure();
    drop(floods);
    for (when, figures) in [("deflect up", &with_deflect), ("deflect killed", &without)] {
        for (edge, (reached, offered)) in Edge::BOTH.iter().zip(figures) {
            eprintln!(
                "figure: {edge:?}, {when}: offered {:.0} kB/s, reached the victim {:.0} kB/s (cap {:.0} kB/s)",
                offered / 1e3,
                reached / 1e3,
                CAP / 1e3
            );
            assert!(
                (reached - CAP).abs() < CAP * 0.2,
                "{edge:?}, {when}: {reached:.0} B/s reached the victim, the cap is {CAP}\n{}",
                show(&lab)
            );
        }
    }
}

#[test]
fn a_flood_the_edge_hides_stays_one_attack_its_rule_back_at_once_and_held_longer_each_time() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    // Hold-down 2 s, cooldown 2 s, probe every second; the shipped recurrence (probation 15 m,
    // growth 4). 25 s of flood through the BIRD edge: the rule hides it within a second, so deflect
    // sees quiet, withdraws after 2 s of it to look, sees the flood again and puts the rule back,
    // then holds 8 s, then 32 s.
    let lab = Lab::up("one", &[("LAB_HOLD", "2s")]).unwrap();
    let edge = Edge::Bird;
    let flood = Flood::via(&lab, edge, Kind::Ntp, 15_000, 60 * SECOND);
    poll(15 * SECOND, || router_has_ntp(&lab, edge).then_some(()))
        .unwrap_or_else(|| panic!("the rule in the router\n{}", show(&lab)));
    let (s1, v1) = (flood.sent(), lab.victim_packets(edge));
    // A measuring window, not a wait for a condition.
    thread::sleep(25 * SECOND);
    let (s2, v2) = (flood.sent(), lab.victim_packets(edge));
    flood.stop();
    let attacks = lab.api("/api/v1/attacks?all=true");
    let ours: Vec<&serde_json::Value> = attacks
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["vector"] == "amplification")
        .collect();
    assert_eq!(
        ours.len(),
        1,
        "one flood, one attack: {attacks:#}\n{}",
        show(&lab)
    );
    let timeline: Vec<&str> = ours[0]["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["what"].as_str())
        .collect();
    let returns = timeline
        .iter()
        .filter(|w| w.starts_with("came back after its rules were withdrawn"))
        .count();
    let made = lab
        .api("/api/v1/mitigations?all=true")
        .as_array()
        .map_or(0, |m| {
            m.iter()
                .filter(|m| {
                    m["actor"]
                        .as_str()
                        .is_some_and(|a| a.starts_with("policy:amplification"))
                })
                .count()
        });
    let (sent, reached) = (s2 - s1, v2 - v1);
    eprintln!(
        "figure: 25 s enforced NTP flood: 1 attack, {returns} returns, {made} announcements, {reached} of {sent} packets reached the victim ({:.2}%)",
        reached as f64 * 100.0 / sent.max(1) as f64
    );
    assert!(
        (1..=2).contains(&returns),
        "withdrawn to look, back at once, held longer: {timeline:#?}"
    );
    assert_eq!(made, returns + 1, "{timeline:#?}");
    assert!(
        timeline
            .iter()
            .any(|w| w.contains("next hold-down 8 s (was 2 s)")),
        "{timeline:#?}"
    );
    // Each return lets at most about a probe interval of flood through (15k packets a second).
    assert!(
        reached <= 15_000 * 2 * returns as u64,
        "{reached} of {sent} reached the victim with {returns} returns\n{}",
        show(&lab)
    );
}
