//! The three tools for floods from few sources and for diversion, driven by a policy on a real
//! attack and seen in live routers: probe reports of an NTP flood whose packets come mostly from
//! two sources, posted over HTTP to the real `deflect` binary peered with BIRD 2 and GoBGP at once.
//! One policy's steps announce a FlowSpec rule per heavy source, S/RTBH routes (RFC 5635) for the
//! same sources, and the victim's /24 diverted to a scrubbing service's next hop with its
//! communities; each is read back from `birdc show route ... all` and `gobgp global rib -j`, and
//! each is gone from both after the flood ends and the hold-down passes.
//!
//! Also through the API by hand, to both routers: an IPv6 diversion, and the refusals of what no
//! neighbor takes or the guardrails forbid.

#[path = "daemon.rs"]
mod daemon;
#[path = "routers/mod.rs"]
mod routers;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use daemon::Daemon;
use routers::{Bird, Gobgp, Session, free_port, gobgp_attr, wait_for};
use serde_json::{Value, json};

const NODE: &str = "node-token-0123456789";
const WRITE: &str = "write-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);
const VICTIM: &str = "203.0.113.7";
/// The two heavy sources (50% and 25% of the flood) and a light one (2%).
const HEAVY: [&str; 2] = ["198.51.100.23", "198.51.100.24"];
const LIGHT: &str = "198.51.100.25";
const SCRUBBER: &str = "198.51.100.200";

fn temp_dir(tag: &str) -> PathBuf {
    daemon::temp_dir("tools", tag)
}

/// The policy under test: on NTP amplification, one rule per heavy source at once, then their
/// S/RTBH routes, then the /24 diverted; withdrawn 1 s after the quiet.
const POLICY: &str = "\
description: few heavy sources, then divert
match:
  vectors: [amplification]
ttl: 10m
withdraw_after: 1s
recurrence: { probation: 2s }
steps:
  - announce: flowspec
    match: [src, proto, sport]
    action: discard
    sources: { max: 4, min_share: 10% }
  - announce: source-rtbh
    sources: { max: 4, min_share: 10% }
  - announce: divert
    peers: [gobgp, bird]
    divert:
      next_hop_ipv4: 198.51.100.200
      next_hop_ipv6: 2001:db8:ffff::200
      communities: [65000:800, no-export]
      large_communities: [65000:8:1]
";

fn session(router: &str, deflect: &str) -> Session {
    Session {
        router_addr: router.parse().unwrap(),
        router_port: free_port(router.parse().unwrap()),
        router_as: 65001,
        router_id: "192.0.2.254",
        deflect_addr: deflect.parse().unwrap(),
        deflect_as: 65000,
        md5_password: None,
        graceful_restart: false,
    }
}

fn neighbor(name: &str, s: &Session) -> String {
    format!(
        "  - {{ name: {name}, address: {}, port: {}, remote_as: {}, local_address: {}, connect_retry: 1s,\n      \
         receives: [flowspec, rtbh, source-rtbh, divert],\n      \
         rtbh: {{ next_hop_ipv4: 192.0.2.1, next_hop_ipv6: '100::1' }} }}\n",
        s.router_addr, s.router_port, s.router_as, s.deflect_addr
    )
}

fn start(dir: &Path, api_port: u16, gobgp: &Session, bird: &Session) -> Daemon {
    let policies = dir.join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    std::fs::write(policies.join("few-sources.yaml"), POLICY).unwrap();
    let yaml = format!(
        "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\ngraceful_restart: 0\npolicies: {}\n\
         api:\n  listen: 127.0.0.1:{api_port}\n  tokens:\n    - {{ name: web1, token: {NODE}, scope: node, serves: [0.0.0.0/0, ::/0] }}\n    - {{ name: noc, token: {WRITE}, scope: write }}\n\
         neighbors:\n{}{}\
         protected:\n  customers: [203.0.113.0/24, 2001:db8:100::/48]\n\
         never_block: [198.51.100.53/32]\n\
         detection:\n  stale_after: 2s\n  thresholds:\n    floor_pps: {{ udp-amp: 5000 }}\n    warmup: 1s\n    cooldown: 1s\n",
        dir.join("state").display(),
        policies.display(),
        neighbor("gobgp", gobgp),
        neighbor("bird", bird),
    );
    let config = dir.join("deflect.yaml");
    std::fs::write(&config, yaml).unwrap();
    let log = dir.join("deflect.log");
    let d = Daemon::start(&config, log);
    let h = Http::new(api_port);
    wait_for("the API", WAIT, || {
        Ok(h.get("/api/v1/health").ok().map(|_| ()))
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

    fn get(&self, path: &str) -> Result<(u16, Value), String> {
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", &format!("Bearer {WRITE}"))
            .call()
            .map_err(|e| e.to_string())?;
        let st = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        Ok((
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    fn send(&self, method: &str, path: &str, token: &str, body: &str) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {token}");
        let mut resp = match method {
            "POST" => self
                .agent
                .post(url)
                .header("Authorization", &auth)
                .header("Content-Type", "application/json")
                .send(body)
                .unwrap(),
            _ => self
                .agent
                .delete(url)
                .header("Authorization", &auth)
                .call()
                .unwrap(),
        };
        let st = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            st,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

/// A report for the victim: web traffic, plus NTP answers at `ntp_pps`, half from the first heavy
/// source, a quarter from the second, 2% from a light one, the rest spread.
fn report(seq: u64, ntp_pps: u64) -> String {
    let mut flows =
        vec![json!({"proto": 6, "dport": 443, "tcp_flags": 16, "pps": 300, "bps": 2_400_000})];
    let mut sources = vec![json!({"addr": "192.0.2.77", "pps": 300})];
    if ntp_pps > 0 {
        flows.push(json!({"proto": 17, "sport": 123, "dport": 4444, "pps": ntp_pps, "bps": ntp_pps * 3_760}));
        sources = vec![
            json!({"addr": HEAVY[0], "pps": ntp_pps / 2}),
            json!({"addr": HEAVY[1], "pps": ntp_pps / 4}),
            json!({"addr": LIGHT, "pps": ntp_pps / 50}),
        ];
    }
    json!({
        "node": "web1", "seq": seq, "time_ms": 0, "interval_ms": 100, "one_in": 1,
        "interfaces": [{"name": "eth0", "rx_packets": 30 + ntp_pps / 10, "rx_bytes": 40_000, "rx_dropped": 0,
                        "tx_packets": 30, "tx_bytes": 30_000, "tx_dropped": 0}],
        "targets": [{"dst": VICTIM, "pps": 300 + ntp_pps, "bps": 2_400_000 + ntp_pps * 3_760,
                     "flows": flows, "sources": sources}]
    })
    .to_string()
}

/// BIRD's routes from deflect, one line each: the flow tables' rules with their extended
/// communities, and the unicast routes with next hop, communities and large communities.
fn bird_view(b: &Bird) -> Vec<String> {
    let mut v = Vec::new();
    for t in ["ft4", "ft6"] {
        for (rule, ec) in b.flow_routes(t).unwrap_or_default() {
            v.push(format!("{rule} => {}", ec.join(" | ")));
        }
    }
    for t in ["master4", "master6"] {
        let out = b
            .birdc(&format!("show route table {t} all"))
            .unwrap_or_default();
        for line in out.lines() {
            let l = line.trim();
            if !line.starts_with(char::is_whitespace)
                && line.contains('/')
                && !line.starts_with("Table")
            {
                // Only what deflect sent (not the edge's own static routes), with its state:
                // unicast (resolved), blackhole, unreachable.
                let mut w = line.split_whitespace();
                let (prefix, state) = (w.next().unwrap_or_default(), w.next().unwrap_or_default());
                v.push(if line.contains("[deflect ") {
                    format!("{prefix} {state}")
                } else {
                    String::new()
                });
            } else if let Some(x) = ["BGP.next_hop: ", "BGP.community: ", "BGP.large_community: "]
                .iter()
                .find_map(|p| l.strip_prefix(p).map(|rest| format!("{}{rest}", &p[4..])))
            {
                if let Some(last) = v.last_mut().filter(|l| !l.is_empty()) {
                    last.push_str(&format!(" {x}"));
                }
            }
        }
    }
    v.retain(|r| !r.is_empty());
    v.sort();
    v
}

/// GoBGP's global RIB, one line each: FlowSpec NLRI with their extended communities, unicast
/// prefixes with next hop (MP_REACH for IPv6), communities and large communities.
fn gobgp_view(g: &Gobgp) -> Vec<String> {
    let mut v = Vec::new();
    for fam in ["ipv4-flowspec", "ipv6-flowspec"] {
        for (nlri, attrs) in g.rib(fam).unwrap_or_default() {
            let ec = gobgp_attr(&attrs, 16)
                .map(|a| a["value"].to_string())
                .unwrap_or_default();
            v.push(format!("{nlri} => {ec}"));
        }
    }
    for fam in ["ipv4", "ipv6"] {
        for (nlri, attrs) in g.rib(fam).unwrap_or_default() {
            let nh = gobgp_attr(&attrs, 3)
                .map(|a| a["nexthop"].to_string())
                .or_else(|| gobgp_attr(&attrs, 14).map(|a| a["nexthop"].to_string()))
                .unwrap_or_default();
            let c = gobgp_attr(&attrs, 8)
                .map(|a| a["communities"].to_string())
                .unwrap_or_default();
            let l = gobgp_attr(&attrs, 32)
                .map(|a| a["value"].to_string())
                .unwrap_or_default();
            v.push(format!("{nlri} via {nh} communities {c} large {l}"));
        }
    }
    v.sort();
    v
}

/// What an edge router has beside its session with deflect: the discard next hop routed to a
/// blackhole (RTBH and S/RTBH routes resolve to it; with uRPF loose on its external interfaces
/// the S/RTBH routes make it drop what comes *from* those sources), and a path to the scrubbing
/// service's next hop. BIRD resolves a multihop session's next hops recursively through these.
const EDGE_STATICS: &str = "protocol static edge {\n  ipv4;\n  route 192.0.2.1/32 blackhole;\n  route 198.51.100.200/32 via \"lo\";\n}\n";

const DISCARD_BIRD: &str = "generic, 0x80060000, 0x0";
const DISCARD_GOBGP: &str = r#"[{"as":0,"rate":0,"subtype":6,"type":128}]"#;

fn bird_expected() -> Vec<String> {
    let mut v = Vec::new();
    for s in HEAVY {
        v.push(format!(
            "flow4 {{ dst 203.0.113.7/32; src {s}/32; proto 17; sport 123; }} => {DISCARD_BIRD}"
        ));
        v.push(format!(
            "{s}/32 blackhole next_hop: 192.0.2.1 community: (65535,666)"
        ));
    }
    v.push(format!(
        "203.0.113.0/24 unicast next_hop: {SCRUBBER} community: (65000,800) (65535,65281) large_community: (65000, 8, 1)"
    ));
    v.sort();
    v
}

fn gobgp_expected() -> Vec<String> {
    let mut v = Vec::new();
    for s in HEAVY {
        v.push(format!(
            "[destination: 203.0.113.7/32][source: {s}/32][protocol: ==udp][source-port: ==123] => {DISCARD_GOBGP}"
        ));
        // 4294902426 is 65535:666, BLACKHOLE (RFC 7999).
        v.push(format!(
            r#"{s}/32 via "192.0.2.1" communities [4294902426] large "#
        ));
    }
    // 4259840800 is 65000:800, 4294967041 NO_EXPORT.
    v.push(format!(
        r#"203.0.113.0/24 via "{SCRUBBER}" communities [4259840800,4294967041] large [{{"ASN":65000,"LocalData1":8,"LocalData2":1}}]"#
    ));
    v.sort();
    v
}

#[test]
fn a_policy_announces_source_rules_srtbh_and_a_diversion_to_bird_and_gobgp_and_withdraws_them() {
    let dir = temp_dir("policy");
    let gs = session("127.0.61.1", "127.0.61.2");
    let bs = session("127.0.61.3", "127.0.61.4");
    let g = Gobgp::start(gs.clone()).unwrap();
    let b = Bird::start_with(bs.clone(), EDGE_STATICS).unwrap();
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let d = start(&dir, api_port, &gs, &bs);
    let h = Http::new(api_port);
    wait_for("both sessions", WAIT, || {
        Ok((g.established()? && b.established()?).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", d.log(), b.log()));

    // Normal traffic warms the baseline up: nothing is announced.
    let mut seq = 0;
    for _ in 0..20 {
        let (st, ack) = h.send("POST", "/api/v1/telemetry", NODE, &report(seq, 0));
        assert_eq!(st, 202, "{ack}");
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(gobgp_view(&g).is_empty() && bird_view(&b).is_empty());

    // The flood: all three steps fire at once (no `after`); both routers hold all five routes.
    let (st, ack) = h.send("POST", "/api/v1/telemetry", NODE, &report(seq, 80_000));
    seq += 1;
    assert_eq!(st, 202, "{ack}");
    let attack = ack["started"][0]
        .as_u64()
        .unwrap_or_else(|| panic!("{ack}\n{}", d.log()));
    let (want_b, want_g) = (bird_expected(), gobgp_expected());
    wait_for("the five routes in BIRD and GoBGP", WAIT, || {
        Ok((bird_view(&b) == want_b && gobgp_view(&g) == want_g).then_some(()))
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nBIRD:  {:#?}\nwant:  {want_b:#?}\nGoBGP: {:#?}\nwant:  {want_g:#?}\n{}",
            bird_view(&b),
            gobgp_view(&g),
            d.log()
        )
    });
    eprintln!("BIRD holds:\n  {}", bird_view(&b).join("\n  "));
    eprintln!("GoBGP holds:\n  {}", gobgp_view(&g).join("\n  "));
    eprintln!(
        "birdc show route table master4 all:\n{}",
        b.birdc("show route table master4 all").unwrap_or_default()
    );

    // The attack's record names the five mitigations and their steps; the light source got none.
    let (_, a) = h.get(&format!("/api/v1/attacks/{attack}")).unwrap();
    assert_eq!(a["mitigations"].as_array().map(Vec::len), Some(5), "{a}");
    let timeline = a["timeline"].to_string();
    assert!(!timeline.contains(LIGHT), "{timeline}");
    let (_, ms) = h.get("/api/v1/mitigations").unwrap();
    let mut kinds: Vec<String> = ms
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m["kind"].as_str().unwrap(),
                m["actor"].as_str().unwrap()
            )
        })
        .collect();
    kinds.sort();
    let actor = format!("policy:few-sources attack:{attack}");
    assert_eq!(
        kinds,
        [
            format!("divert {actor}"),
            format!("flowspec {actor}"),
            format!("flowspec {actor}"),
            format!("source-rtbh {actor}"),
            format!("source-rtbh {actor}"),
        ]
    );
    let divert = ms
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["kind"] == "divert")
        .unwrap();
    assert_eq!(divert["prefix"], "203.0.113.0/24");
    assert_eq!(divert["next_hop"], SCRUBBER);
    assert_eq!(divert["communities"], json!(["65000:800", "no-export"]));
    assert_eq!(divert["peers"], json!(["gobgp", "bird"]));

    // Back to normal: quiet after the 1 s cooldown, all five withdrawn 1 s later, from both.
    for _ in 0..60 {
        h.send("POST", "/api/v1/telemetry", NODE, &report(seq, 0));
        seq += 1;
        std::thread::sleep(Duration::from_millis(100));
        if gobgp_view(&g).is_empty() && bird_view(&b).is_empty() {
            break;
        }
    }
    wait_for("every route withdrawn from both", WAIT, || {
        Ok((gobgp_view(&g).is_empty() && bird_view(&b).is_empty()).then_some(()))
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nBIRD: {:?}\nGoBGP: {:?}\n{}",
            bird_view(&b),
            gobgp_view(&g),
            d.log()
        )
    });
    eprintln!(
        "after the hold-down: BIRD {:?}, GoBGP {:?}",
        bird_view(&b),
        gobgp_view(&g)
    );
    let (_, all) = h.get("/api/v1/mitigations?all=true").unwrap();
    for m in all.as_array().unwrap() {
        assert_eq!(
            m["withdraw_reason"],
            format!("attack {attack} quiet for its hold-down of 1 s"),
            "{m}"
        );
    }
    // Audited as the others: one announce and one withdraw per peer and mitigation.
    let (_, audit) = h.get("/api/v1/audit?limit=1000").unwrap();
    let count = |what: &str| {
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["action"] == what && e["actor"] == actor)
            .count()
    };
    assert_eq!((count("announce"), count("withdraw")), (10, 10), "{audit}");
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}

fn cli(api_port: u16, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(args)
        .env("DEFLECT_API", format!("http://127.0.0.1:{api_port}"))
        .env("DEFLECT_TOKEN", WRITE)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn by_hand_diversions_and_srtbh_reach_the_routers_named_and_the_guardrails_refuse_the_rest() {
    let dir = temp_dir("api");
    let gs = session("127.0.62.1", "127.0.62.2");
    let bs = session("127.0.62.3", "127.0.62.4");
    let g = Gobgp::start(gs.clone()).unwrap();
    let b = Bird::start(bs.clone()).unwrap();
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let d = start(&dir, api_port, &gs, &bs);
    let h = Http::new(api_port);
    wait_for("both sessions", WAIT, || {
        Ok((g.established()? && b.established()?).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));

    let body = json!({
        "kind": "divert", "prefix": "2001:db8:100::/48", "next_hop": "2001:db8:ffff::200",
        "communities": ["65000:800"], "peers": ["gobgp", "bird"], "ttl": "10m", "reason": "scrub",
    });
    let (st, m) = h.send("POST", "/api/v1/mitigations", WRITE, &body.to_string());
    assert_eq!(st, 201, "{m}");
    let id = m["id"].as_u64().unwrap();
    let want_b = vec![
        "2001:db8:100::/48 unreachable next_hop: 2001:db8:ffff::200 community: (65000,800)"
            .to_string(),
    ];
    let want_g = vec![
        r#"2001:db8:100::/48 via "2001:db8:ffff::200" communities [4259840800] large "#.to_string(),
    ];
    wait_for("the IPv6 diversion in both", WAIT, || {
        Ok((bird_view(&b) == want_b && gobgp_view(&g) == want_g).then_some(()))
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nBIRD: {:#?}\nGoBGP: {:#?}\n{}",
            bird_view(&b),
            gobgp_view(&g),
            d.log()
        )
    });
    eprintln!("BIRD: {:?}\nGoBGP: {:?}", bird_view(&b), gobgp_view(&g));

    // Refused, each with its status and reason, and nothing reaches the routers.
    let refused = [
        (
            json!({"kind": "divert", "prefix": "192.0.2.0/24", "next_hop": SCRUBBER, "peers": ["gobgp"]}),
            422,
            "only your own space may be diverted",
        ),
        (
            json!({"kind": "divert", "prefix": "203.0.113.0/24", "next_hop": SCRUBBER}),
            422,
            "a diversion goes to peers named explicitly",
        ),
        (
            json!({"kind": "divert", "prefix": "203.0.113.0/24", "peers": ["gobgp"]}),
            400,
            "needs next_hop",
        ),
        (
            json!({"kind": "source-rtbh", "prefix": "203.0.113.9/32"}),
            422,
            "inside protected group customers",
        ),
        (
            json!({"kind": "source-rtbh", "prefix": "198.51.100.53/32"}),
            422,
            "overlaps never-block",
        ),
        (
            json!({"kind": "source-rtbh", "prefix": "198.51.100.9/32", "next_hop": SCRUBBER}),
            400,
            "takes no next_hop",
        ),
    ];
    for (body, status, want) in refused {
        let (st, v) = h.send("POST", "/api/v1/mitigations", WRITE, &body.to_string());
        assert_eq!(st, status, "{body}: {v}");
        let e = v["error"].as_str().unwrap_or_default();
        assert!(e.contains(want), "{body}: {e}");
    }
    assert_eq!(gobgp_view(&g), want_g);

    // The CLI: an S/RTBH route to GoBGP only, and a diversion to BIRD only, listed by kind.
    let (ok, out, err) = cli(
        api_port,
        &[
            "mitigation",
            "add",
            "--source-rtbh",
            "198.51.100.9/32",
            "--peer",
            "gobgp",
        ],
    );
    assert!(ok, "{out}{err}");
    let (ok, out, err) = cli(
        api_port,
        &[
            "mitigation",
            "add",
            "--divert",
            "203.0.113.0/25",
            "--next-hop",
            SCRUBBER,
            "--community",
            "65000:801",
            "--peer",
            "bird",
        ],
    );
    assert!(ok, "{out}{err}");
    let (ok, out, _) = cli(
        api_port,
        &["mitigation", "add", "--divert", "203.0.113.0/25"],
    );
    assert!(!ok, "--divert without --next-hop: {out}");
    let (_, list, _) = cli(api_port, &["mitigation", "list"]);
    eprintln!("deflect mitigation list:\n{list}");
    for want in [
        "source-rtbh 198.51.100.9/32",
        "divert      203.0.113.0/25 next-hop 198.51.100.200 community 65000:801",
        "divert      2001:db8:100::/48 next-hop 2001:db8:ffff::200 community 65000:800",
    ] {
        assert!(list.contains(want), "{want} not in\n{list}");
    }
    wait_for("each in its router", WAIT, || {
        let (bv, gv) = (bird_view(&b), gobgp_view(&g));
        Ok((bv.iter().any(|r| {
            r.starts_with(
                "203.0.113.0/25 unreachable next_hop: 198.51.100.200 community: (65000,801)",
            )
        }) && !gv.iter().any(|r| r.starts_with("203.0.113.0/25"))
            && gv.iter().any(|r| {
                r.starts_with(r#"198.51.100.9/32 via "192.0.2.1" communities [4294902426]"#)
            })
            && !bv.iter().any(|r| r.starts_with("198.51.100.9/32")))
        .then_some(()))
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\nBIRD: {:?}\nGoBGP: {:?}",
            bird_view(&b),
            gobgp_view(&g)
        )
    });

    // Withdrawn: gone from both.
    let (_, ms) = h.get("/api/v1/mitigations").unwrap();
    for m in ms.as_array().unwrap() {
        let other = m["id"].as_u64().unwrap();
        if other != id {
            let (ok, out, err) = cli(api_port, &["mitigation", "withdraw", &other.to_string()]);
            assert!(ok, "{out}{err}");
        }
    }
    let (st, _) = h.send("DELETE", &format!("/api/v1/mitigations/{id}"), WRITE, "");
    assert_eq!(st, 200);
    wait_for("the diversion withdrawn from both", WAIT, || {
        Ok((gobgp_view(&g).is_empty() && bird_view(&b).is_empty()).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", d.log()));
    drop(d);
    let _ = std::fs::remove_dir_all(&dir);
}
