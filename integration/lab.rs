//! End to end on the namespace lab (`integration/lab`): real bounded floods from the attacker's
//! namespace, `deflect probe` on the victim, deflect with the shipped policies, BIRD and GoBGP in
//! their own namespaces, in the path and enforcing what they hold (the two fault tests that need
//! the flood to stay visible while a router or deflect restarts run with `LAB_ENFORCE=0`). Each flood must become the right FlowSpec rule (components and action) in
//! both routers and leave both when it stops; the CLI announces and withdraws by hand; the sFlow
//! path works with the synthetic exporter.

#[path = "lab_rig/mod.rs"]
#[allow(dead_code)]
mod lab_rig;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use lab_rig::{Kind, Lab, flood, poll};

/// What each router must show for a flood: (BIRD's route line, BIRD's action), (GoBGP's NLRI text,
/// GoBGP's action in its JSON: a traffic-rate of 0 is discard).
fn expected(kind: Kind) -> (&'static str, &'static str, &'static str, &'static str) {
    match kind {
        // policies/amplification.yaml: drop UDP from the amplifier's port.
        Kind::Ntp => (
            "flow4 { dst 192.0.2.2/32; proto 17; sport 123; }",
            "(generic, 0x80060000, 0x0)",
            "[destination: 192.0.2.2/32][protocol: ==udp][source-port: ==123]",
            "\"rate\":0,",
        ),
        // The lab's SYN, UDP and ICMP floods come from one host (the attacker's address), not
        // spoofed: policies/few-sources.yaml drops that host's traffic to the victim, and
        // nothing else (the vector's own policy takes a flood from everywhere; the corpus and
        // the interop tests cover those rules).
        Kind::Syn => (
            "flow4 { dst 192.0.2.2/32; src 203.0.113.9/32; proto 6; }",
            "(generic, 0x80060000, 0x0)",
            "[destination: 192.0.2.2/32][source: 203.0.113.9/32][protocol: ==tcp]",
            "\"rate\":0,",
        ),
        Kind::Udp => (
            "flow4 { dst 192.0.2.2/32; src 203.0.113.9/32; proto 17; }",
            "(generic, 0x80060000, 0x0)",
            "[destination: 192.0.2.2/32][source: 203.0.113.9/32][protocol: ==udp]",
            "\"rate\":0,",
        ),
        Kind::Icmp => (
            "flow4 { dst 192.0.2.2/32; src 203.0.113.9/32; proto 1; }",
            "(generic, 0x80060000, 0x0)",
            "[destination: 192.0.2.2/32][source: 203.0.113.9/32][protocol: ==icmp]",
            "\"rate\":0,",
        ),
    }
}

fn show(lab: &Lab) -> String {
    format!(
        "BIRD: {:#?}\nGoBGP: {:#?}\ndeflect log (tail):\n{}",
        lab.bird_rules(),
        lab.gobgp_rules(),
        lab.log("deflect")
            .lines()
            .rev()
            .take(30)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Waits until both routers hold exactly the rule of `kind`, with its action.
fn wait_rule(lab: &Lab, kind: Kind, timeout: Duration) -> bool {
    let (bird, bird_action, gobgp, gobgp_action) = expected(kind);
    poll(timeout, || {
        let b = lab.bird_rules();
        let g = lab.gobgp_rules();
        let bird_ok = b.len() == 1 && b[0].starts_with(bird) && b[0].contains(bird_action);
        let gobgp_ok = g.len() == 1 && g[0].0 == gobgp && g[0].1.to_string().contains(gobgp_action);
        (bird_ok && gobgp_ok).then_some(())
    })
    .is_some()
}

fn wait_empty(lab: &Lab, timeout: Duration) -> bool {
    poll(timeout, || {
        (lab.bird_rules().is_empty() && lab.gobgp_rules().is_empty()).then_some(())
    })
    .is_some()
}

#[test]
fn floods_become_the_right_rules_in_both_routers_and_leave_when_they_stop() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = Lab::up("e2e", &[("LAB_INTERVAL", "1s"), ("LAB_HOLD", "2s")]).unwrap();
    for kind in [Kind::Ntp, Kind::Syn, Kind::Icmp] {
        let stop = Arc::new(AtomicBool::new(false));
        let (ns, s) = (lab.ns("att"), stop.clone());
        let sender =
            std::thread::spawn(move || flood(&ns, kind, 15_000, Duration::from_secs(20), s));
        let seen = wait_rule(&lab, kind, Duration::from_secs(10));
        stop.store(true, Ordering::Relaxed);
        let (sent, _) = sender.join().unwrap().unwrap();
        assert!(
            seen,
            "{kind:?} ({sent} packets sent): the rule in both routers\n{}",
            show(&lab)
        );
        // Stopped: the attack ends after the cooldown (2 s), the rule leaves after the hold-down
        // (2 s).
        assert!(
            wait_empty(&lab, Duration::from_secs(20)),
            "{kind:?}: withdrawn from both routers\n{}",
            show(&lab)
        );
    }
    let attacks = lab.api("/api/v1/attacks?all=true");
    let vectors: Vec<&str> = attacks
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["vector"].as_str().unwrap())
        .collect();
    assert_eq!(
        vectors,
        ["amplification", "syn-flood", "icmp-flood"],
        "{attacks}"
    );
}

#[test]
fn the_cli_announces_and_withdraws_by_hand() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = Lab::up("cli", &[]).unwrap();
    let (ok, out) = lab.cli(&["peers"]);
    assert!(ok && out.matches("Established").count() == 2, "{out}");
    let (ok, out) = lab.cli(&[
        "mitigation",
        "add",
        "--flow",
        "dst 192.0.2.2/32 proto udp sport 123 then discard",
        "--ttl",
        "5m",
        "--reason",
        "lab by hand",
        "--json",
    ]);
    assert!(ok, "{out}");
    let m: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        wait_rule(&lab, Kind::Ntp, Duration::from_secs(10)),
        "{}",
        show(&lab)
    );
    let id = m["id"].to_string();
    let (ok, out) = lab.cli(&["mitigation", "withdraw", &id, "--reason", "done"]);
    assert!(ok, "{out}");
    assert!(wait_empty(&lab, Duration::from_secs(10)), "{}", show(&lab));
    // RTBH by hand reaches both routers with the BLACKHOLE community and each one's next hop.
    let (ok, out) = lab.cli(&["mitigation", "add", "--rtbh", "192.0.2.2/32", "--ttl", "1m"]);
    assert!(ok, "{out}");
    let bird = poll(Duration::from_secs(10), || {
        let sock = lab.dir.join("bird.ctl").display().to_string();
        let out = lab
            .exec(
                "bird",
                &["birdc", "-s", &sock, "show", "route", "192.0.2.2/32", "all"],
            )
            .ok()?;
        out.contains("(65535,666)").then_some(out)
    });
    assert!(
        bird.is_some(),
        "BIRD has the RTBH route with BLACKHOLE\n{}",
        show(&lab)
    );
}

#[test]
fn the_sflow_path_with_the_synthetic_exporter() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = Lab::up("sfl", &[("LAB_HOLD", "1s")]).unwrap();
    // A DNS reflection flood seen by a "switch" on the host side of the controller.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args([
            "sflow-flood",
            "--bind",
            "198.51.100.5",
            "--to",
            "198.51.100.6:6343",
            "--target",
            "192.0.2.2",
            "--sport",
            "53",
            "--pps",
            "100000",
            "--sampling-rate",
            "256",
            "--seconds",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let attacks = lab.api("/api/v1/attacks?all=true");
    let a = &attacks[0];
    assert_eq!(a["vector"], "amplification", "{attacks}\n{}", show(&lab));
    assert_eq!(a["node"], "sflow:lab-switch");
    assert_eq!(a["signature"]["service"], "dns");
    // The rule was announced (it may already be gone: the flood is over).
    let m = lab.api(&format!("/api/v1/mitigations/{}", a["mitigations"][0]));
    assert_eq!(
        m["rule"], "dst 192.0.2.2/32 proto udp sport 53 then discard",
        "{m}"
    );
    assert!(wait_empty(&lab, Duration::from_secs(40)), "{}", show(&lab));
}

// ---------------------------------------------------------------------------------------------
// Faults in the middle of an attack. Each asserts, and prints its figure.

use std::time::Instant;

use lab_rig::Flood;

const SECOND: Duration = Duration::from_secs(1);

#[test]
fn a_router_restarted_mid_attack_gets_the_rule_back() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    // Unenforced: with BIRD's enforcer dropping the flood, the attack can end (cooldown 2 s, hold
    // 1 s) before GoBGP is back, and this test is about GoBGP getting a live attack's rule back.
    let lab = Lab::up("frr", &[("LAB_HOLD", "1s"), ("LAB_ENFORCE", "0")]).unwrap();
    let flood = Flood::start(&lab, Kind::Ntp, 15_000, Duration::from_secs(60));
    assert!(wait_rule(&lab, Kind::Ntp, 10 * SECOND), "{}", show(&lab));
    lab.restart("gobgpd", "-TERM").unwrap();
    let up = poll(20 * SECOND, || lab.sessions_up().1.then(Instant::now))
        .unwrap_or_else(|| panic!("GoBGP's session back\n{}", show(&lab)));
    let full = poll(10 * SECOND, || lab.gobgp_has_ntp().then(Instant::now))
        .unwrap_or_else(|| panic!("the rule back in GoBGP\n{}", show(&lab)));
    eprintln!(
        "figure: GoBGP restarted mid-attack: Established → full table in {:.0} ms",
        (full.saturating_duration_since(up)).as_secs_f64() * 1e3
    );
    assert!(lab.bird_has_ntp(), "BIRD kept it all along\n{}", show(&lab));
    flood.stop();
    assert!(wait_empty(&lab, 20 * SECOND), "{}", show(&lab));
}

#[test]
fn deflect_killed_mid_attack_loses_nothing_and_leaks_nothing() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    // Unenforced: the flood must stay visible across the restart. Enforced, the probe sees nothing
    // once deflect is back, the attack did not survive the restart (GET /attacks is empty), so
    // nothing ends the restored mitigation: it stays until its ttl (10 min), still in both routers
    // 30 s after the flood stopped.
    let lab = Lab::up("fkl", &[("LAB_HOLD", "1s"), ("LAB_ENFORCE", "0")]).unwrap();
    let flood = Flood::start(&lab, Kind::Ntp, 15_000, Duration::from_secs(90));
    assert!(wait_rule(&lab, Kind::Ntp, 10 * SECOND), "{}", show(&lab));
    lab.kill("deflect", "-KILL");
    let killed = Instant::now();
    // Graceful restart: both routers keep the rule while deflect is away.
    for _ in 0..20 {
        assert!(
            lab.bird_has_ntp() && lab.gobgp_has_ntp(),
            "a router dropped the rule {:?} after the kill\n{}",
            killed.elapsed(),
            show(&lab)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    lab.start("deflect").unwrap();
    let up = poll(30 * SECOND, || {
        (lab.sessions_up() == (true, true)).then(Instant::now)
    })
    .unwrap_or_else(|| panic!("sessions back\n{}", show(&lab)));
    // Reconciled: the restored mitigation is re-announced, the stale marks are gone, nothing else.
    assert!(
        wait_rule(&lab, Kind::Ntp, 10 * SECOND),
        "the rule after the restart\n{}",
        show(&lab)
    );
    eprintln!(
        "figure: deflect SIGKILLed mid-attack: rule kept by both routers throughout; restart → sessions up in {:.0} ms",
        up.saturating_duration_since(killed).as_secs_f64() * 1e3 - 2000.0
    );
    // The flood stops: the rule goes, from both, and nothing is left behind.
    flood.stop();
    assert!(wait_empty(&lab, 30 * SECOND), "{}", show(&lab));
    let active = lab.api("/api/v1/mitigations");
    assert_eq!(active, serde_json::json!([]), "no mitigation left active");
}

#[test]
fn the_controller_unreachable_from_the_probe_for_30_s() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = Lab::up("fun", &[("LAB_HOLD", "1s")]).unwrap();
    poll(10 * SECOND, || {
        (lab.api("/api/v1/nodes")[0]["reports"].as_u64() >= Some(2)).then_some(())
    })
    .unwrap_or_else(|| {
        panic!(
            "the probe reporting
{}",
            lab.log("probe")
        )
    });
    let dev = format!("{}vc", lab.id);
    lab.link("vic", &dev, false);
    let cut = Instant::now();
    let stale = poll(10 * SECOND, || {
        (lab.api("/api/v1/nodes")[0]["stale"] == true).then(Instant::now)
    })
    .unwrap_or_else(|| panic!("the node marked stale\n{}", show(&lab)));
    let rss = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/status"))
            .ok()
            .and_then(|s| {
                s.lines()
                    .find(|l| l.starts_with("VmRSS:"))
                    .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            })
            .unwrap_or(0)
    };
    let probe = lab.pid("probe").unwrap();
    let before = rss(probe);
    std::thread::sleep(Duration::from_secs(30).saturating_sub(cut.elapsed()));
    let during = rss(probe);
    assert!(
        std::path::Path::new(&format!("/proc/{probe}")).exists(),
        "the probe is alive"
    );
    lab.link("vic", &dev, true);
    let back = Instant::now();
    let fresh = poll(30 * SECOND, || {
        let n = lab.api("/api/v1/nodes");
        (n[0]["stale"] == false).then(Instant::now)
    })
    .unwrap_or_else(|| panic!("the node reporting again\n{}", lab.log("probe")));
    assert!(
        lab.log("probe").contains("controller unreachable"),
        "{}",
        lab.log("probe")
    );
    // Detection works again.
    let flood = Flood::start(&lab, Kind::Ntp, 15_000, Duration::from_secs(30));
    assert!(wait_rule(&lab, Kind::Ntp, 10 * SECOND), "{}", show(&lab));
    flood.stop();
    eprintln!(
        "figure: probe cut off for 30 s: stale after {:.1} s; probe RSS {} → {} kB; reporting again {:.1} s after the link is back",
        stale.saturating_duration_since(cut).as_secs_f64(),
        before,
        during,
        fresh.saturating_duration_since(back).as_secs_f64()
    );
    assert!(
        during < before + 4096,
        "the backlog stays bounded: {before} → {during} kB"
    );
    assert!(wait_empty(&lab, 20 * SECOND), "{}", show(&lab));
}

#[test]
fn a_link_flap_to_a_router_loses_nothing() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let lab = Lab::up("ffl", &[]).unwrap();
    let (ok, out) = lab.cli(&[
        "mitigation",
        "add",
        "--flow",
        "dst 192.0.2.2/32 proto udp sport 123 then discard",
        "--ttl",
        "10m",
    ]);
    assert!(ok, "{out}");
    assert!(wait_rule(&lab, Kind::Ntp, 10 * SECOND), "{}", show(&lab));
    // The controller's link to GoBGP goes down for 5 s, then back.
    let dev = format!("{}cg", lab.id);
    lab.link("ctl", &dev, false);
    std::thread::sleep(5 * SECOND);
    lab.link("ctl", &dev, true);
    let back = Instant::now();
    let whole = poll(30 * SECOND, || {
        (lab.sessions_up().1 && lab.gobgp_has_ntp()).then(Instant::now)
    })
    .unwrap_or_else(|| panic!("GoBGP with the rule after the flap\n{}", show(&lab)));
    eprintln!(
        "figure: 5 s link flap to GoBGP: session and rule in place {:.0} ms after the link is back",
        whole.saturating_duration_since(back).as_secs_f64() * 1e3
    );
    assert!(wait_rule(&lab, Kind::Ntp, 10 * SECOND), "{}", show(&lab));
}
