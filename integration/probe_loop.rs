//! The whole loop on the real kernel: a bounded NTP-style flood crosses a veth pair between two
//! network namespaces; `deflect probe` on the victim's side samples it and reports to the
//! controller; the controller's policy announces a FlowSpec rule to a live GoBGP; the flood stops
//! and the rule is withdrawn. Controller, probe and GoBGP all run inside the victim's namespace.

#[path = "probe_lab/mod.rs"]
mod probe_lab;
#[path = "routers/mod.rs"]
mod routers;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use probe_lab::{A4, B4, Lab, in_netns};
use routers::{Gobgp, Session, wait_for};
use serde_json::Value;

const NODE: &str = "node-token-0123456789";
const READ: &str = "read-token-0123456789";

const POLICY: &str = "\
match:
  vectors: [amplification]
ttl: 10m
withdraw_after: 1s
steps:
  - announce: flowspec
    match: [proto, sport]
    action: discard
";

/// GET on the controller, from inside namespace `ns`.
fn api_get(ns: &str, port: u16, path: &str) -> Option<Value> {
    probe_lab::api_get(ns, port, READ, path)
}

/// GET of bytes on the controller, from inside namespace `ns`.
fn api_bytes(ns: &str, port: u16, path: &str) -> Option<Vec<u8>> {
    let url = format!("http://127.0.0.1:{port}{path}");
    in_netns(ns, move || {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        let mut r = agent
            .get(&url)
            .header("Authorization", &format!("Bearer {READ}"))
            .call()
            .map_err(std::io::Error::other)?;
        r.body_mut()
            .with_config()
            .limit(100 << 20)
            .read_to_vec()
            .map_err(std::io::Error::other)
    })
    .ok()
}

/// Starts `deflect run` on `config` in the victim's namespace, waits for its API, starts the
/// probe on the victim's veth (every 200 ms, and `extra` arguments) and waits for its first
/// reports. Returns deflect's log file.
fn controller_and_probe(lab: &mut Lab, config: &Path, api_port: u16, extra: &[&str]) -> PathBuf {
    let ns = lab.ns_b.clone();
    let cfg = config.display().to_string();
    lab.spawn_in_b_logged(
        env!("CARGO_BIN_EXE_deflect"),
        "run",
        &["--config", &cfg],
        "deflect.log",
    )
    .unwrap();
    let log = lab.dir.join("deflect.log");
    let deflect_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the API", Duration::from_secs(20), || {
        Ok(api_get(&ns, api_port, "/api/v1/health").map(|_| ()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", deflect_log()));
    let controller = format!("http://127.0.0.1:{api_port}");
    let veth = lab.veth_b.clone();
    let mut args = vec![
        "--controller",
        &controller,
        "--token",
        NODE,
        "--interface",
        &veth,
        "--interval",
        "200ms",
    ];
    args.extend_from_slice(extra);
    lab.start_probe(&args).unwrap();
    wait_for("the probe's first reports", Duration::from_secs(10), || {
        let n = api_get(&ns, api_port, "/api/v1/nodes").unwrap_or_default();
        Ok((n[0]["reports"].as_u64().unwrap_or(0) >= 10).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", deflect_log(), lab.probe_log()));
    log
}

/// NTP answers (UDP from port 123, 468 bytes) at 20k packets a second from the attacker's side to
/// 4,000 destination ports of the victim, at most `max` packets or `secs` seconds, after a warm-up
/// of the path; on its own thread. Returns (packets sent, seconds).
fn ntp_spread_flood(
    lab: &Lab,
    max: u64,
    secs: u64,
) -> std::thread::JoinHandle<std::io::Result<(u64, f64)>> {
    probe_lab::warm_up(&lab.ns_a, A4.parse().unwrap(), B4.parse().unwrap()).unwrap();
    let ns_a = lab.ns_a.clone();
    std::thread::spawn(move || {
        probe_lab::send_udp_spread(
            &ns_a,
            SocketAddr::new(A4.parse().unwrap(), 123),
            SocketAddr::new(B4.parse().unwrap(), 4444),
            4000,
            max,
            20_000,
            468,
            Duration::from_secs(secs),
        )
    })
}

#[test]
fn a_real_flood_seen_by_the_probe_becomes_a_rule_and_leaves_when_it_stops() {
    if let Some(why) = probe_lab::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut lab = Lab::new("loop").unwrap();
    let ns = lab.ns_b.clone();
    // GoBGP and the controller on the victim namespace's loopback.
    let s = Session {
        router_addr: "127.0.0.2".parse().unwrap(),
        router_port: 1179,
        router_as: 65001,
        router_id: "192.0.2.254",
        deflect_addr: "127.0.0.1".parse().unwrap(),
        deflect_as: 65000,
        md5_password: None,
        graceful_restart: false,
    };
    let g = Gobgp::start_in(s.clone(), Some(&ns)).unwrap();
    let api_port = 18179;
    let policies = lab.dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("amplification.yaml"), POLICY).unwrap();
    let config = lab.dir.join("deflect.yaml");
    std::fs::write(
        &config,
        format!(
            "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\ngraceful_restart: 0\npolicies: {}\n\
             api:\n  listen: 127.0.0.1:{api_port}\n  tokens:\n    - {{ name: victim, token: {NODE}, scope: node, serves: [0.0.0.0/0, ::/0] }}\n    - {{ name: viewer, token: {READ}, scope: read }}\n\
             neighbors:\n  - {{ name: gobgp, address: 127.0.0.2, port: 1179, remote_as: 65001, local_address: 127.0.0.1, connect_retry: 1s }}\n\
             protected:\n  lab: [192.0.2.0/24, 2001:db8::/64]\n\
             detection:\n  thresholds:\n    floor_pps: {{ udp-amp: 3000 }}\n    warmup: 1s\n    cooldown: 2s\n",
            lab.dir.join("state").display(),
            policies.display()
        ),
    )
    .unwrap();
    let cfg = config.display().to_string();
    let recording = lab.dir.join("reports.jsonl");
    let record = recording.display().to_string();
    let log = controller_and_probe(&mut lab, &config, api_port, &["--record", &record]);
    let deflect_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for("the session", Duration::from_secs(20), || {
        Ok(g.established()?.then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", deflect_log(), g.log()));

    // The flood: UDP from port 123 at 20k packets a second, for at most 6 seconds, to 4,000
    // destination ports (as a reflection's answers go to its spoofed requests' ports): far more
    // flows than a report holds.
    let flood = ntp_spread_flood(&lab, 120_000, 6);
    let started = Instant::now();
    let want = "[destination: 192.0.2.2/32][protocol: ==udp][source-port: ==123]";
    let rules = || {
        g.rib("ipv4-flowspec")
            .map(|v| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    wait_for("the rule in GoBGP", Duration::from_secs(6), || {
        Ok((rules() == [want]).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}\n{}", rules(), deflect_log(), lab.probe_log()));
    let seen_after = started.elapsed();
    let (sent, secs) = flood.join().unwrap().unwrap();
    assert!(sent > 50_000, "the flood was sent ({sent} in {secs:.1} s)");
    let attacks = api_get(&ns, api_port, "/api/v1/attacks?all=true").unwrap();
    assert_eq!(
        attacks.as_array().map(Vec::len),
        Some(1),
        "one attack, not a udp-flood beside it: {attacks}"
    );
    let a = &attacks[0];
    assert_eq!(a["vector"], "amplification", "{attacks}");
    assert_eq!(a["target"], B4);
    assert_eq!(a["signature"]["sports"], serde_json::json!([123]), "{a}");
    assert!(a["signature"].get("dports").is_none(), "{a}");
    let peak = a["peak_pps"].as_u64().unwrap();
    assert!(
        (10_000..=40_000).contains(&peak),
        "the probe's estimate of 20k pps: {peak}"
    );

    // The flood is over: the rule leaves after the cooldown and the hold-down.
    wait_for("the rule withdrawn", Duration::from_secs(15), || {
        Ok(rules().is_empty().then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", deflect_log()));
    eprintln!(
        "flood → rule in GoBGP in {:.0} ms (probe interval 200 ms)",
        seen_after.as_secs_f64() * 1e3
    );

    // The probe's own recording of its reports, replayed with the same configuration: the same
    // attack and the same rule, on the recording's timeline, and nothing announced.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(["replay", "--json", "--config", &cfg, &record])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ra = replayed["attacks"].as_array().unwrap();
    assert_eq!(ra.len(), 1, "{}", replayed["attacks"]);
    assert_eq!(ra[0]["vector"], "amplification");
    assert_eq!(ra[0]["target"], B4);
    assert_eq!(ra[0]["signature"]["sports"], serde_json::json!([123]));
    let rm = replayed["mitigations"].as_array().unwrap();
    assert_eq!(rm.len(), 1, "{}", replayed["mitigations"]);
    assert_eq!(
        rm[0]["rule"],
        "dst 192.0.2.2/32 proto udp sport 123 then discard"
    );
    assert!(
        rm[0]["withdrawn_ms"].is_u64(),
        "withdrawn in the replay too"
    );

    // The probe sent raw samples of the flood once the controller asked for them (its answers'
    // `capture`): the attack's pcap holds them, and tshark reads them back.
    let id = a["id"].as_u64().unwrap();
    let pcap = api_bytes(&ns, api_port, &format!("/api/v1/attacks/{id}/pcap")).expect("a capture");
    let file = lab.dir.join("capture.pcap");
    std::fs::write(&file, &pcap).unwrap();
    let out = std::process::Command::new("tshark")
        .arg("-r")
        .arg(&file)
        .args([
            "-T",
            "fields",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "udp.srcport",
            "-e",
            "udp.dstport",
        ])
        .output()
        .expect("tshark (Debian package tshark) runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 10, "{} packets captured", lines.len());
    for l in lines {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(f[..3], [A4, B4, "123"], "{l}");
        let port: u16 = f[3].parse().unwrap();
        assert!((4444..4444 + 4000).contains(&port), "{l}");
    }
}

/// Trusted sources on the real kernel: the controller names them in its answers, the real probe
/// leaves them out of every class, and the same flood that starts an attack above starts none;
/// it is counted apart.
#[test]
fn a_flood_from_a_trusted_source_starts_nothing_and_is_counted_apart() {
    if let Some(why) = probe_lab::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let mut lab = Lab::new("trusted").unwrap();
    let ns = lab.ns_b.clone();
    let api_port = 18180;
    let policies = lab.dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("amplification.yaml"), POLICY).unwrap();
    let config = lab.dir.join("deflect.yaml");
    std::fs::write(
        &config,
        format!(
            "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\ngraceful_restart: 0\npolicies: {}\n\
             api:\n  listen: 127.0.0.1:{api_port}\n  tokens:\n    - {{ name: victim, token: {NODE}, scope: node, serves: [0.0.0.0/0, ::/0] }}\n    - {{ name: viewer, token: {READ}, scope: read }}\n\
             protected:\n  lab: [192.0.2.0/24, 2001:db8::/64]\n\
             detection:\n  trusted_sources: [{A4}/32]\n  thresholds:\n    floor_pps: {{ udp-amp: 3000 }}\n    warmup: 1s\n    cooldown: 2s\n",
            lab.dir.join("state").display(),
            policies.display()
        ),
    )
    .unwrap();
    let log = controller_and_probe(&mut lab, &config, api_port, &[]);
    let deflect_log = || std::fs::read_to_string(&log).unwrap_or_default();

    // The same flood as above (20k pps from port 123, far above the 3,000 floor), from the
    // trusted address.
    let flood = ntp_spread_flood(&lab, 60_000, 3);
    let trusted = wait_for(
        "the flood counted as trusted",
        Duration::from_secs(5),
        || {
            let t = api_get(&ns, api_port, &format!("/api/v1/targets/{B4}")).unwrap_or_default();
            Ok(t["trusted_pps"]
                .as_u64()
                .filter(|p| *p >= 10_000)
                .map(|p| (p, t)))
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", deflect_log(), lab.probe_log()));
    let (sent, _) = flood.join().unwrap().unwrap();
    assert!(sent > 30_000, "the flood was sent ({sent})");
    std::thread::sleep(Duration::from_millis(500));
    let attacks = api_get(&ns, api_port, "/api/v1/attacks?all=true").unwrap();
    assert_eq!(attacks, serde_json::json!([]), "no attack: {attacks}");
    let (pps, t) = trusted;
    assert!(t["pps"].as_u64().unwrap() < 3_000, "{t}");
    let amp = t["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "udp-amp")
        .unwrap()
        .clone();
    assert!(amp["baseline_pps"].as_f64().unwrap() < 100.0, "{t}");
    eprintln!("trusted flood: {pps} pps counted apart, no attack; target {t}");
}

/// A node-local drop: the policy asks the victim's own probe to drop the flood with nftables.
#[test]
fn a_local_drop_is_applied_by_the_probe_with_nftables_and_removed_after() {
    if let Some(why) = probe_lab::unavailable() {
        eprintln!("skipped: {why}");
        return;
    }
    let nft_missing = std::process::Command::new("nft")
        .arg("--version")
        .output()
        .is_err();
    if nft_missing {
        eprintln!("skipped: nft (Debian package nftables) is missing");
        return;
    }
    let mut lab = Lab::new("local").unwrap();
    let ns = lab.ns_b.clone();
    let api_port = 18180;
    let policies = lab.dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(
        policies.join("amplification.yaml"),
        "match:\n  vectors: [amplification]\nwithdraw_after: 1s\nsteps:\n  - local:\n      match: [proto, sport]\n      action: drop\n",
    )
    .unwrap();
    let config = lab.dir.join("deflect.yaml");
    std::fs::write(
        &config,
        format!(
            "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\npolicies: {}\n\
             api:\n  listen: 127.0.0.1:{api_port}\n  tokens:\n    - {{ name: victim, token: {NODE}, scope: node, serves: [0.0.0.0/0, ::/0] }}\n    - {{ name: viewer, token: {READ}, scope: read }}\n\
             protected:\n  lab: [192.0.2.0/24]\n\
             detection:\n  thresholds:\n    floor_pps: {{ udp-amp: 3000 }}\n    warmup: 1s\n    cooldown: 2s\n",
            lab.dir.join("state").display(),
            policies.display()
        ),
    )
    .unwrap();
    let log = controller_and_probe(&mut lab, &config, api_port, &[]);
    let deflect_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let nft = |args: &[&str]| {
        std::process::Command::new("ip")
            .args(["netns", "exec", &ns, "nft"])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };

    probe_lab::warm_up(&lab.ns_a, A4.parse().unwrap(), B4.parse().unwrap()).unwrap();
    let ns_a = lab.ns_a.clone();
    let flood = std::thread::spawn(move || {
        probe_lab::send_udp(
            &ns_a,
            SocketAddr::new(A4.parse().unwrap(), 123),
            SocketAddr::new(B4.parse().unwrap(), 4444),
            100_000,
            20_000,
            468,
            Duration::from_secs(5),
        )
    });
    // The rule in the victim's own nftables, dropping.
    let rule = "ip daddr 192.0.2.2 udp sport 123 counter packets";
    wait_for("the local drop in nftables", Duration::from_secs(5), || {
        Ok(nft(&["list", "table", "inet", "deflect"])
            .contains(rule)
            .then_some(()))
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n{}\n{}",
            nft(&["list", "ruleset"]),
            deflect_log(),
            lab.probe_log()
        )
    });
    flood.join().unwrap().unwrap();
    let table = nft(&["list", "table", "inet", "deflect"]);
    let dropped: u64 = table
        .split("packets ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(
        dropped > 10_000,
        "the flood was dropped on the node: {table}"
    );
    let attacks = api_get(&ns, api_port, "/api/v1/attacks?all=true").unwrap();
    let timeline = attacks[0]["timeline"].to_string();
    assert!(timeline.contains("asked to drop locally"), "{timeline}");
    assert!(timeline.contains("applied local drop"), "{timeline}");
    // Over: after the cooldown and the hold-down the table is gone.
    wait_for("the local drop removed", Duration::from_secs(15), || {
        Ok((!nft(&["list", "tables"]).contains("deflect")).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", nft(&["list", "ruleset"])));
    eprintln!("figure: {dropped} flood packets dropped by the node's own nftables");
}
