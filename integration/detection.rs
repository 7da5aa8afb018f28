//! The automatic loop on loopback: probe reports of a flood, posted over HTTP to the real `deflect`
//! binary, become a FlowSpec rule in a live GoBGP; traffic back to baseline, the rule is withdrawn.
//! Carpet bombing: reports of a flood spread over a /24 become one prefix rule in both a live BIRD
//! and a live GoBGP. Also: policy hot reload with a broken file, and the telemetry endpoint's
//! answers to bad input.

#[path = "daemon.rs"]
mod daemon;
#[path = "routers/mod.rs"]
mod routers;

use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon::Daemon;
use routers::{Bird, Gobgp, Session, free_port, wait_for};
use serde_json::{Value, json};

const NODE: &str = "node-token-0123456789";
/// A node that serves 203.0.113.0/25 only.
const NODE2: &str = "node2-token-0123456789";
const READ: &str = "read-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);
const VICTIM: &str = "203.0.113.7";

fn temp_dir(tag: &str) -> PathBuf {
    daemon::temp_dir("detect", tag)
}

/// A policy for the test: NTP amplification discarded at once, withdrawn 1 s after the quiet,
/// over (the end alert) 2 s later if it has not come back.
const POLICY: &str = "\
description: test amplification policy
match:
  vectors: [amplification]
ttl: 10m
withdraw_after: 1s
recurrence: { probation: 2s }
steps:
  - announce: flowspec
    match: [proto, sport]
    action: discard
";

fn start(dir: &Path, api_port: u16, router: Option<&Session>, extra: &str) -> Daemon {
    start_warming(dir, api_port, router, extra, "1s")
}

/// The same with a warm-up of `warmup`.
fn start_warming(
    dir: &Path,
    api_port: u16,
    router: Option<&Session>,
    extra: &str,
    warmup: &str,
) -> Daemon {
    let neighbors = match router {
        Some(s) => format!(
            "neighbors:\n  - {{ name: gobgp, address: {}, port: {}, remote_as: {}, local_address: {}, connect_retry: 1s }}\n",
            s.router_addr, s.router_port, s.router_as, s.deflect_addr
        ),
        None => String::new(),
    };
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("amplification.yaml"), POLICY).unwrap();
    let yaml = format!(
        "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\ngraceful_restart: 0\npolicies: {}\n\
         api:\n  listen: 127.0.0.1:{api_port}\n  tokens:\n    - {{ name: web1, token: {NODE}, scope: node, serves: [0.0.0.0/0, ::/0] }}\n    - {{ name: web2, token: {NODE2}, scope: node, serves: [203.0.113.0/25] }}\n    - {{ name: viewer, token: {READ}, scope: read }}\n\
         {neighbors}protected:\n  customers: [203.0.113.0/24, 2001:db8:100::/48]\n\
         detection:\n  stale_after: 2s\n  thresholds:\n    floor_pps: {{ udp-amp: 5000 }}\n    warmup: {warmup}\n    cooldown: 1s\n{extra}",
        dir.join("state").display(),
        policies.display()
    );
    let config = dir.join("deflect.yaml");
    std::fs::write(&config, yaml).unwrap();
    let log = dir.join("deflect.log");
    let d = Daemon::start(&config, log);
    let h = Http::new(api_port);
    wait_for("the API", WAIT, || {
        Ok(h.get("/api/v1/health", None).ok().map(|_| ()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    d
}

struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    fn new(port: u16) -> Http {
        Http {
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent(),
        }
    }

    fn get(&self, path: &str, token: Option<&str>) -> Result<(u16, Value), String> {
        let mut r = self.agent.get(format!("{}{path}", self.base));
        if let Some(t) = token {
            r = r.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = r.call().map_err(|e| e.to_string())?;
        let st = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Ok((
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    fn post(&self, path: &str, token: &str, body: &str) -> (u16, Value) {
        self.post_as(path, token, "application/json", body.as_bytes())
    }

    fn post_as(&self, path: &str, token: &str, content_type: &str, body: &[u8]) -> (u16, Value) {
        let mut resp = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Content-Type", content_type)
            .send(body)
            .unwrap();
        let st = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// A report for the victim: normal web traffic, plus NTP answers at `ntp_pps`.
fn report(seq: u64, ntp_pps: u64) -> String {
    let mut flows = vec![
        json!({"proto": 6, "dport": 443, "tcp_flags": 16, "pps": 300, "bps": 2_400_000}),
        json!({"proto": 6, "dport": 443, "tcp_flags": 2, "pps": 20, "bps": 9_600}),
    ];
    if ntp_pps > 0 {
        flows.push(json!({"proto": 17, "sport": 123, "dport": 4444, "pps": ntp_pps, "bps": ntp_pps * 3_760}));
    }
    json!({
        "node": "web1", "seq": seq, "time_ms": 0, "interval_ms": 100, "one_in": 1,
        "interfaces": [{"name": "eth0", "rx_packets": 32 + ntp_pps / 10, "rx_bytes": 40_000, "rx_dropped": 0,
                        "tx_packets": 30, "tx_bytes": 30_000, "tx_dropped": 0}],
        "targets": [{"dst": VICTIM, "pps": 320 + ntp_pps, "bps": 2_409_600 + ntp_pps * 3_760,
                     "flows": flows, "sources": [{"addr": "198.51.100.23", "pps": ntp_pps / 10}]}]
    })
    .to_string()
}

const GOBGP_RULE: &str = "[destination: 203.0.113.7/32][protocol: ==udp][source-port: ==123]";

fn flow_rules(g: &Gobgp) -> Vec<String> {
    g.rib("ipv4-flowspec")
        .map(|v| v.into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default()
}

#[test]
fn a_reported_flood_becomes_a_rule_in_gobgp_and_leaves_when_it_ends() {
    let dir = temp_dir("loop");
    let s = Session {
        router_addr: "127.0.52.1".parse().unwrap(),
        router_port: free_port("127.0.52.1".parse().unwrap()),
        router_as: 65001,
        router_id: "192.0.2.254",
        deflect_addr: "127.0.52.2".parse().unwrap(),
        deflect_as: 65000,
        md5_password: None,
        graceful_restart: false,
    };
    let g = Gobgp::start(s.clone()).unwrap();
    let api_port = free_port("127.0.0.1".parse().unwrap());
    // Alerts go to a webhook on loopback: the start and the end of the attack.
    let hook = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hook_url = format!("http://{}/hook", hook.local_addr().unwrap());
    let (hook_tx, hook_rx) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        use std::io::{BufRead, Read, Write};
        for conn in hook.incoming().take(16) {
            let Ok(mut c) = conn else { continue };
            let mut r = std::io::BufReader::new(c.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; len];
            let _ = r.read_exact(&mut body);
            let _ = c.write_all(b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n");
            let _ = hook_tx.send(serde_json::from_slice(&body).unwrap_or_default());
        }
    });
    let d = start(
        &dir,
        api_port,
        Some(&s),
        &format!(
            "alerts:\n  - {{ name: noc-hook, kind: webhook, url: '{hook_url}', secret: k3y, events: [attack.start, attack.end] }}\n"
        ),
    );
    let h = Http::new(api_port);
    wait_for("the session", WAIT, || Ok(g.established()?.then_some(())))
        .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));

    // Two seconds of normal traffic, every 100 ms: the baseline warms up, nothing happens.
    let mut seq = 0;
    for _ in 0..20 {
        let (st, ack) = h.post("/api/v1/telemetry", NODE, &report(seq, 0));
        assert_eq!(st, 202, "{ack}");
        assert_eq!(ack["started"], json!([]));
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(flow_rules(&g).is_empty());

    // The flood: the report that carries it starts the attack, and its rule is in GoBGP.
    let (st, ack) = h.post("/api/v1/telemetry", NODE, &report(seq, 80_000));
    seq += 1;
    assert_eq!(st, 202, "{ack}");
    let attack = ack["started"][0]
        .as_u64()
        .unwrap_or_else(|| panic!("{ack}\n{}", d.log()));
    wait_for("the rule in GoBGP", WAIT, || {
        Ok((flow_rules(&g) == [GOBGP_RULE]).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", flow_rules(&g), d.log()));
    let (_, a) = h
        .get(&format!("/api/v1/attacks/{attack}"), Some(READ))
        .unwrap();
    assert_eq!(a["vector"], "amplification", "{a}");
    assert_eq!(a["signature"]["service"], "ntp");
    assert_eq!(a["policy"], "amplification");
    let mitigation = a["mitigations"][0].as_u64().expect("a mitigation");
    let (_, m) = h
        .get(&format!("/api/v1/mitigations/{mitigation}"), Some(READ))
        .unwrap();
    assert_eq!(
        m["rule"], "dst 203.0.113.7/32 proto udp sport 123 then discard",
        "{m}"
    );
    assert_eq!(m["actor"], format!("policy:amplification attack:{attack}"));

    // The flood goes on for a second: one attack, one rule.
    for _ in 0..10 {
        let (_, ack) = h.post("/api/v1/telemetry", NODE, &report(seq, 90_000));
        assert_eq!(ack["started"], json!([]));
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // Back to normal: ended after the 1 s cooldown, withdrawn 1 s after that.
    for _ in 0..40 {
        h.post("/api/v1/telemetry", NODE, &report(seq, 0));
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
        if flow_rules(&g).is_empty() {
            break;
        }
    }
    wait_for("the rule withdrawn", WAIT, || {
        Ok(flow_rules(&g).is_empty().then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let (_, a) = h
        .get(&format!("/api/v1/attacks/{attack}?"), Some(READ))
        .unwrap();
    assert!(a["ended_ms"].as_u64().is_some(), "{a}");
    assert_eq!(a["peak_pps"], 90_000);
    let (_, m) = h
        .get(&format!("/api/v1/mitigations/{mitigation}"), Some(READ))
        .unwrap();
    assert_eq!(
        m["withdraw_reason"],
        format!("attack {attack} quiet for its hold-down of 1 s"),
        "{m}"
    );
    let timeline: Vec<String> = a["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["what"].as_str().unwrap().to_string())
        .collect();
    for want in [
        "started: amplification",
        "policy amplification",
        "step 1: mitigation",
        "ended",
        "withdrew 1",
    ] {
        assert!(
            timeline.iter().any(|t| t.starts_with(want)),
            "{want} not in {timeline:#?}"
        );
    }

    // Both alerts reached the webhook, and the API and the audit log say so.
    let first = hook_rx.recv_timeout(WAIT).expect("the attack.start alert");
    assert_eq!(first["event"], "attack.start", "{first}");
    assert_eq!(first["data"]["attack"]["id"], attack);
    let last = hook_rx.recv_timeout(WAIT).expect("the attack.end alert");
    assert_eq!(last["event"], "attack.end", "{last}");
    // The hook has the alert before deflect has its answer: the delivery is listed a moment later.
    let deliveries = wait_for("both deliveries listed", WAIT, || {
        let (_, d) = h.get("/api/v1/alerts", Some(READ))?;
        Ok((d.as_array().map(Vec::len) == Some(2)).then_some(d))
    })
    .unwrap();
    assert!(
        deliveries
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["outcome"] == "delivered"),
        "{deliveries}"
    );

    // The audit log has the attack, the announce and the withdraw, by the policy.
    let (_, audit) = h.get("/api/v1/audit?limit=1000", Some(READ)).unwrap();
    let actions: Vec<&str> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for want in [
        "attack.start",
        "mitigation.create",
        "announce",
        "attack.end",
        "mitigation.withdraw",
        "withdraw",
    ] {
        assert!(actions.contains(&want), "{want} not in {actions:?}");
    }

    // Rates and baselines are visible.
    let (st, t) = h
        .get(&format!("/api/v1/targets/{VICTIM}"), Some(READ))
        .unwrap();
    assert_eq!(st, 200, "{t}");
    let ack_class = t["classes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["class"] == "tcp-ack")
        .unwrap()
        .clone();
    assert!(
        (ack_class["baseline_pps"].as_f64().unwrap() - 300.0).abs() < 1.0,
        "{t}"
    );
    let (_, nodes) = h.get("/api/v1/nodes", Some(READ)).unwrap();
    assert_eq!(nodes[0]["name"], "web1");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A carpet report: 200 addresses of 203.0.113.0/24 at `per_addr` pps of NTP answers each, as a
/// probe sends it: its top 64 addresses, and the /24's rollup summed over all 200.
fn carpet_report(seq: u64, per_addr: u64) -> String {
    carpet_report_in(seq, per_addr, "203.0.113.0/24", |i| {
        format!("203.0.113.{}", 20 + i)
    })
}

/// The same over `prefix` (a /24 or a /64), its addresses `addr(i)`.
fn carpet_report_in(seq: u64, per_addr: u64, prefix: &str, addr: impl Fn(u64) -> String) -> String {
    let web = json!({"proto": 6, "dport": 443, "tcp_flags": 16, "pps": 300, "bps": 2_400_000});
    let victim = addr(200);
    let mut targets = vec![json!({"dst": victim, "pps": 300, "bps": 2_400_000, "flows": [web]})];
    let mut rollup_flows = vec![web.clone()];
    if per_addr > 0 {
        for i in 0..63 {
            targets.push(json!({
                "dst": addr(i), "pps": per_addr, "bps": per_addr * 3_760,
                "flows": [{"proto": 17, "sport": 123, "dport": 40_000 + i, "pps": per_addr, "bps": per_addr * 3_760}],
                "sources": [{"addr": "198.51.100.23", "pps": per_addr / 2}]
            }));
        }
        rollup_flows.insert(
            0,
            json!({"proto": 17, "sport": 123, "pps": 200 * per_addr, "bps": 200 * per_addr * 3_760}),
        );
    }
    json!({
        "node": "web1", "seq": seq, "time_ms": 0, "interval_ms": 100, "one_in": 1,
        "targets": targets,
        "rollups": [{
            "prefix": prefix, "addresses": if per_addr > 0 { 201 } else { 1 },
            "pps": 300 + 200 * per_addr, "bps": 2_400_000 + 200 * per_addr * 3_760,
            "flows": rollup_flows,
            "sources": [{"addr": "198.51.100.23", "pps": 100 * per_addr}]
        }]
    })
    .to_string()
}

const CARPET_GOBGP: &str = "[destination: 203.0.113.0/24][protocol: ==udp][source-port: ==123]";
const CARPET_BIRD: &str = "flow4 { dst 203.0.113.0/24; proto 17; sport 123; }";

#[test]
fn a_carpet_over_a_24_is_one_prefix_rule_in_bird_and_gobgp_and_leaves_when_it_ends() {
    let dir = temp_dir("carpet");
    let session = |router: &str, deflect: &str, id| Session {
        router_addr: router.parse().unwrap(),
        router_port: free_port(router.parse().unwrap()),
        router_as: 65001,
        router_id: id,
        deflect_addr: deflect.parse().unwrap(),
        deflect_as: 65000,
        md5_password: None,
        graceful_restart: false,
    };
    let gs = session("127.0.53.1", "127.0.53.2", "192.0.2.254");
    let bs = session("127.0.53.3", "127.0.53.4", "192.0.2.253");
    let g = Gobgp::start(gs.clone()).unwrap();
    let b = Bird::start(bs.clone()).unwrap();
    let neighbor = |name: &str, s: &Session| {
        format!(
            "  - {{ name: {name}, address: {}, port: {}, remote_as: {}, local_address: {}, connect_retry: 1s }}\n",
            s.router_addr, s.router_port, s.router_as, s.deflect_addr
        )
    };
    // The shipped carpet policy, with the test's short hold-down.
    let policy = include_str!("../policies/carpet-amplification.yaml").replace(
        "withdraw_after: 2m",
        "withdraw_after: 1s\nrecurrence: { probation: 2s }",
    );
    assert!(policy.contains("withdraw_after: 1s"));
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(dir.join("policies/carpet-amplification.yaml"), policy).unwrap();
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let d = start(
        &dir,
        api_port,
        None,
        &format!(
            "    prefix: {{ floor_pps: {{ udp-amp: 20000 }} }}\n  trusted_sources: [192.0.2.128/25]\nneighbors:\n{}{}",
            neighbor("gobgp", &gs),
            neighbor("bird", &bs)
        ),
    );
    let h = Http::new(api_port);
    wait_for("both sessions", WAIT, || {
        Ok((g.established()? && b.established()?).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let bird_rules = || -> Vec<String> {
        b.flow_routes("ft4")
            .unwrap_or_default()
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    };

    // Normal traffic for a second: nothing. The answer names the trusted sources.
    let mut seq = 0;
    for _ in 0..10 {
        let (st, ack) = h.post("/api/v1/telemetry", NODE, &carpet_report(seq, 0));
        assert_eq!(st, 202, "{ack}");
        assert_eq!(ack["started"], json!([]));
        assert_eq!(ack["trusted"], json!(["192.0.2.128/25"]));
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    // The carpet: 1,000 pps to each of 200 addresses (each under its floor of 5,000), 200k on
    // the /24. The first report that carries it starts one attack on the prefix.
    let (st, ack) = h.post("/api/v1/telemetry", NODE, &carpet_report(seq, 1_000));
    seq += 1;
    assert_eq!(st, 202, "{ack}");
    let started = ack["started"].as_array().cloned().unwrap_or_default();
    assert_eq!(started.len(), 1, "{ack}\n{}", d.log());
    let attack = started[0].as_u64().unwrap();
    wait_for("the prefix rule in GoBGP and BIRD", WAIT, || {
        Ok((flow_rules(&g) == [CARPET_GOBGP] && bird_rules() == [CARPET_BIRD]).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?} {:?}\n{}", flow_rules(&g), bird_rules(), d.log()));
    eprintln!(
        "gobgp global rib -a ipv4-flowspec:\n{}",
        g.gobgp("global rib -a ipv4-flowspec").unwrap_or_default()
    );
    eprintln!(
        "birdc show route table ft4 all:\n{}",
        b.birdc("show route table ft4 all").unwrap_or_default()
    );
    let (_, a) = h
        .get(&format!("/api/v1/attacks/{attack}"), Some(READ))
        .unwrap();
    assert_eq!(a["prefix"], "203.0.113.0/24", "{a}");
    assert_eq!(a["target"], "203.0.113.0", "{a}");
    assert_eq!(a["vector"], "amplification", "{a}");
    assert_eq!(a["policy"], "carpet-amplification", "{a}");
    assert_eq!(a["addresses"], 201, "{a}");
    let mitigations = a["mitigations"].as_array().cloned().unwrap_or_default();
    assert_eq!(mitigations.len(), 1, "{a}");
    let (_, m) = h
        .get(
            &format!("/api/v1/mitigations/{}", mitigations[0]),
            Some(READ),
        )
        .unwrap();
    assert_eq!(
        m["rule"], "dst 203.0.113.0/24 proto udp sport 123 then discard",
        "{m}"
    );

    // It goes on for a second: still one attack, one rule in each router, no /32 beside it.
    for _ in 0..10 {
        let (_, ack) = h.post("/api/v1/telemetry", NODE, &carpet_report(seq, 1_200));
        assert_eq!(ack["started"], json!([]), "{ack}");
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(flow_rules(&g), [CARPET_GOBGP]);
    assert_eq!(bird_rules(), [CARPET_BIRD]);
    let (_, active) = h.get("/api/v1/attacks", Some(READ)).unwrap();
    assert_eq!(active.as_array().map(|a| a.len()), Some(1), "{active}");
    let (_, list) = h.get("/api/v1/mitigations", Some(READ)).unwrap();
    assert_eq!(list.as_array().map(|l| l.len()), Some(1), "{list}");

    // It ends: quiet for the 1 s cooldown, withdrawn 1 s later from both routers.
    for _ in 0..50 {
        h.post("/api/v1/telemetry", NODE, &carpet_report(seq, 0));
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
        if flow_rules(&g).is_empty() && bird_rules().is_empty() {
            break;
        }
    }
    wait_for("the rule withdrawn from both", WAIT, || {
        Ok((flow_rules(&g).is_empty() && bird_rules().is_empty()).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?} {:?}\n{}", flow_rules(&g), bird_rules(), d.log()));
    let (_, a) = h
        .get(&format!("/api/v1/attacks/{attack}"), Some(READ))
        .unwrap();
    assert!(a["ended_ms"].as_u64().is_some(), "{a}");
    let (_, m) = h
        .get(
            &format!("/api/v1/mitigations/{}", mitigations[0]),
            Some(READ),
        )
        .unwrap();
    assert_eq!(
        m["withdraw_reason"],
        format!("attack {attack} quiet for its hold-down of 1 s"),
        "{m}"
    );

    // The same over an IPv6 /64, its addresses spread at random: one rule for the /64.
    let v6 = |i: u64| {
        format!(
            "2001:db8:100:7:{:x}:{:x}::1",
            i * 7919 % 65536,
            i * 104_729 % 65536
        )
    };
    let v6_report = |seq, pps| carpet_report_in(seq, pps, "2001:db8:100:7::/64", v6);
    let gobgp6 = || -> Vec<String> {
        g.rib("ipv6-flowspec")
            .map(|v| v.into_iter().map(|(k, _)| k).collect())
            .unwrap_or_default()
    };
    let bird6 = || -> Vec<String> {
        b.flow_routes("ft6")
            .unwrap_or_default()
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    };
    for _ in 0..5 {
        let (st, ack) = h.post("/api/v1/telemetry", NODE, &v6_report(seq, 0));
        assert_eq!((st, &ack["started"]), (202, &json!([])), "{ack}");
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    let (_, ack) = h.post("/api/v1/telemetry", NODE, &v6_report(seq, 1_000));
    seq += 1;
    let started = ack["started"].as_array().cloned().unwrap_or_default();
    assert_eq!(started.len(), 1, "{ack}\n{}", d.log());
    wait_for("the /64 rule in GoBGP and BIRD", WAIT, || {
        Ok((gobgp6().len() == 1 && bird6().len() == 1).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?} {:?}\n{}", gobgp6(), bird6(), d.log()));
    assert_eq!(
        gobgp6(),
        ["[destination: 2001:db8:100:7::/64/0][protocol: ==udp][source-port: ==123]"]
    );
    assert_eq!(
        bird6(),
        ["flow6 { dst 2001:db8:100:7::/64; next header 17; sport 123; }"]
    );
    eprintln!(
        "gobgp global rib -a ipv6-flowspec:\n{}",
        g.gobgp("global rib -a ipv6-flowspec").unwrap_or_default()
    );
    eprintln!(
        "birdc show route table ft6 all:\n{}",
        b.birdc("show route table ft6 all").unwrap_or_default()
    );
    for _ in 0..50 {
        h.post("/api/v1/telemetry", NODE, &v6_report(seq, 0));
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
        if gobgp6().is_empty() && bird6().is_empty() {
            break;
        }
    }
    wait_for("the /64 rule withdrawn from both", WAIT, || {
        Ok((gobgp6().is_empty() && bird6().is_empty()).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?} {:?}\n{}", gobgp6(), bird6(), d.log()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_broken_policy_file_is_refused_and_the_policies_in_force_stay() {
    let dir = temp_dir("reload");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let d = start(&dir, api_port, None, "");
    let h = Http::new(api_port);
    let (_, p) = h.get("/api/v1/policies", Some(READ)).unwrap();
    assert_eq!(p["policies"].as_array().unwrap().len(), 1, "{p}");
    // A second file with an unknown vector on line 3.
    let bad = dir.join("policies").join("zz-bad.yaml");
    std::fs::write(
        &bad,
        "description: oops\nmatch:\n  vectors: [smurf]\nsteps:\n  - announce: rtbh\n",
    )
    .unwrap();
    let err = wait_for("the reload attempt", WAIT, || {
        let (_, p) = h.get("/api/v1/policies", Some(READ))?;
        Ok(p["last_error"].as_str().map(|s| s.to_string()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    assert!(
        err.contains("zz-bad.yaml:3:13: unknown vector \"smurf\""),
        "{err}"
    );
    let (_, p) = h.get("/api/v1/policies", Some(READ)).unwrap();
    assert_eq!(p["policies"][0]["name"], "amplification");
    // Fixed: it loads.
    std::fs::write(
        &bad,
        "description: ok\nmatch:\n  vectors: [gre-flood]\nsteps:\n  - announce: rtbh\n",
    )
    .unwrap();
    wait_for("the reload", WAIT, || {
        let (_, p) = h.get("/api/v1/policies", Some(READ))?;
        Ok((p["policies"].as_array().map(|a| a.len()) == Some(2)).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_telemetry_endpoint_answers_bad_input() {
    let dir = temp_dir("bad");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let _d = start(&dir, api_port, None, "");
    let h = Http::new(api_port);
    let many: Vec<Value> = (0..65)
        .map(|i| json!({"dst": format!("203.0.113.{i}"), "pps": 1, "bps": 1}))
        .collect();
    let too_many =
        json!({"node": "web1", "seq": 1, "time_ms": 0, "interval_ms": 1000, "targets": many})
            .to_string();
    let good = report(0, 0);
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        (READ, &good, 403, "may only read"),
        (NODE, "{", 400, ""),
        (
            NODE,
            r#"{"node":"web1","seq":1,"time_ms":0,"interval_ms":1000,"colour":1}"#,
            400,
            "colour",
        ),
        (
            NODE,
            r#"{"node":"web1","seq":1,"time_ms":0,"interval_ms":10}"#,
            422,
            "interval_ms 10",
        ),
        (
            NODE,
            r#"{"node":"web 1","seq":1,"time_ms":0,"interval_ms":1000}"#,
            422,
            "node name",
        ),
        (NODE, &too_many, 422, "targets: 65 entries, at most 64"),
        ("wrong-token-0123456789", &good, 401, ""),
    ];
    for (token, body, status, msg) in cases {
        let (st, v) = h.post("/api/v1/telemetry", token, body);
        assert_eq!(st, status, "{body}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(msg),
            "{body}: {v}"
        );
    }
    // MessagePack, the same bounds; any other type is read as JSON, as every body was before
    // MessagePack (curl -d sends application/x-www-form-urlencoded).
    let msgpack = |json: &str| {
        let r: deflect::telemetry::Report = serde_json::from_str(json).unwrap();
        deflect::telemetry::Encoding::MessagePack.encode(&r)
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str)> = vec![
        ("application/msgpack", msgpack(&good), 202, ""),
        ("application/vnd.msgpack", msgpack(&good), 202, ""),
        (
            "application/msgpack",
            msgpack(&too_many),
            422,
            "targets: 65",
        ),
        (
            "application/msgpack",
            good.clone().into_bytes(),
            400,
            "expected a MessagePack map",
        ),
        ("application/msgpack", vec![0x81, 0xa4], 400, "MessagePack"),
        (
            "application/json; charset=utf-8",
            good.clone().into_bytes(),
            202,
            "",
        ),
        ("text/plain", good.clone().into_bytes(), 202, ""),
        (
            "application/x-www-form-urlencoded",
            good.clone().into_bytes(),
            202,
            "",
        ),
        (
            "application/cbor",
            msgpack(&good),
            400,
            "expected a JSON object",
        ),
    ];
    for (content_type, body, status, msg) in cases {
        let (st, v) = h.post_as("/api/v1/telemetry", NODE, content_type, &body);
        assert_eq!(st, status, "{content_type}: {v}");
        assert!(
            v["error"].as_str().unwrap_or_default().contains(msg),
            "{content_type}: {v}"
        );
    }
    // A node token reads nothing.
    let (st, v) = h.get("/api/v1/attacks", Some(NODE)).unwrap();
    assert_eq!(st, 403, "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_node_reports_only_on_the_addresses_it_serves() {
    let dir = temp_dir("serves");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let _d = start(&dir, api_port, None, "");
    let h = Http::new(api_port);
    // web2 serves 203.0.113.0/25: a flood it reports on .200 is dropped and counted, nothing starts.
    for seq in 0..10 {
        let body = report(seq, 0).replace("\"web1\"", "\"web2\"");
        let (st, v) = h.post("/api/v1/telemetry", NODE2, &body);
        assert_eq!(st, 202, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let flood = report(10, 50_000)
        .replace("\"web1\"", "\"web2\"")
        .replace(VICTIM, "203.0.113.200");
    for _ in 0..3 {
        let (st, v) = h.post("/api/v1/telemetry", NODE2, &flood);
        assert_eq!(st, 202, "{v}");
    }
    let (_, attacks) = h.get("/api/v1/attacks?all=true", Some(READ)).unwrap();
    assert_eq!(
        attacks,
        json!([]),
        "nothing from an address web2 does not serve"
    );
    let (_, m) = h.get("/metrics", None).unwrap();
    let text = m.as_str().unwrap_or_default();
    assert!(
        text.lines().any(
            |l| l.starts_with("deflect_telemetry_targets_refused_total ") && !l.ends_with(" 0")
        ),
        "{text}"
    );
    // Its own addresses, from the same node: the flood is an attack.
    let (st, v) = h.post(
        "/api/v1/telemetry",
        NODE2,
        &report(20, 50_000).replace("\"web1\"", "\"web2\""),
    );
    assert_eq!(st, 202, "{v}");
    assert_eq!(v["started"].as_array().map(Vec::len), Some(1), "{v}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The class `class` of a target as `GET /api/v1/targets/ADDR` shows it.
fn class_view(h: &Http, class: &str) -> Value {
    let (st, t) = h
        .get(&format!("/api/v1/targets/{VICTIM}"), Some(READ))
        .unwrap();
    assert_eq!(st, 200, "{t}");
    t["classes"]
        .as_array()
        .and_then(|a| a.iter().find(|c| c["class"] == class).cloned())
        .unwrap_or_else(|| panic!("no class {class} in {t}"))
}

/// A report of an ICMP flood at the victim, beside its web traffic.
fn icmp_flood(seq: u64) -> String {
    json!({
        "node": "web1", "seq": seq, "time_ms": 0, "interval_ms": 100, "one_in": 1,
        "targets": [{"dst": VICTIM, "pps": 80_320, "bps": 330_000_000,
                     "flows": [{"proto": 6, "dport": 443, "tcp_flags": 16, "pps": 300, "bps": 2_400_000},
                               {"proto": 1, "pps": 80_000, "bps": 327_600_000}]}]
    })
    .to_string()
}

#[test]
fn a_restart_keeps_what_detection_learned_and_attack_ids_go_on_from_where_they_were() {
    let dir = temp_dir("restart");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    // A warm-up of 3 s: learned in 4 s of reports here, a whole warm-up again after a restart
    // that forgot it.
    let mut d = start_warming(&dir, api_port, None, "", "3s");
    let h = Http::new(api_port);
    for seq in 0..40 {
        let (st, v) = h.post("/api/v1/telemetry", NODE, &report(seq, 0));
        assert_eq!(st, 202, "{v}");
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = class_view(&h, "tcp-ack");
    assert_eq!(before["warm"], true, "{before}");
    let (_, ack) = h.post("/api/v1/telemetry", NODE, &icmp_flood(40));
    let first = ack["started"][0]
        .as_u64()
        .unwrap_or_else(|| panic!("no attack: {ack}\n{}", d.log()));
    assert!(first < 1000, "attack ids are short: {first}");
    let status = d.terminate().expect("deflect stops on SIGTERM");
    assert!(status.success(), "{status}\n{}", d.log());
    assert!(
        d.log()
            .contains("learned baselines written for the restart"),
        "{}",
        d.log()
    );
    assert!(dir.join("state/baselines.bin").is_file());
    drop(d);

    let d = start_warming(&dir, api_port, None, "", "3s");
    // The first report after the restart finds its baselines warm, as they were.
    let (st, v) = h.post("/api/v1/telemetry", NODE, &report(41, 0));
    assert_eq!(st, 202, "{v}");
    assert!(
        d.log().contains("learned baselines restored"),
        "{}",
        d.log()
    );
    let after = class_view(&h, "tcp-ack");
    assert_eq!(after["warm"], true, "{after}\n{}", d.log());
    let (b, a) = (
        before["baseline_pps"].as_f64().unwrap(),
        after["baseline_pps"].as_f64().unwrap(),
    );
    assert!((a - b).abs() <= b * 0.05, "baseline {b} before, {a} after");
    let (_, m) = h.get("/metrics", None).unwrap();
    let m = m.as_str().unwrap_or_default().to_string();
    assert!(
        m.contains("deflect_baselines_restored 2\n"),
        "the address and its /24: {m}"
    );
    // Ids go on from where they were (a clean stop gives back what it had reserved).
    let (_, v) = h.post("/api/v1/telemetry", NODE, &report(42, 0));
    assert_eq!(v["started"], json!([]), "{v}");
    let (_, ack) = h.post("/api/v1/telemetry", NODE, &icmp_flood(43));
    assert_eq!(ack["started"], json!([first + 1]), "{ack}\n{}", d.log());
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
