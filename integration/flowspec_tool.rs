//! `deflect flowspec` output, round-tripped through live routers on loopback.
//!
//! - GoBGP: the printed `gobgp global rib ... add` commands are run against a gobgpd, deflect's own
//!   speaker announces the same rules to it, and (when installed) ExaBGP announces the printed
//!   `flow { route ... }` blocks too. Every rule must end up as one NLRI in GoBGP's RIB carrying one
//!   path per source, with identical components (operator bytes included) and identical extended
//!   communities, and that NLRI, rebuilt from GoBGP's JSON, must be byte for byte the one deflect
//!   encodes.
//! - BIRD: the printed `route flow4 { ... }` lines go into static protocols next to a BGP session
//!   from deflect's speaker announcing the same rules. Since BIRD keys a flow net by its NLRI bytes,
//!   each rule must show as one net holding both routes, with identical communities.
//! - nftables and iptables: the printed commands must load into a scratch network namespace.
//!
//! Each test says why it skips when a tool is missing. Every process is stopped by its PID.

#[path = "routers/mod.rs"]
mod routers;

use std::collections::BTreeMap;
use std::fs;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use deflect::peer::PeerConfig;
use deflect::speaker::Speaker;
use deflect::tools::flowspec::{to_bird, to_exabgp, to_gobgp, to_iptables, to_nftables};
use deflect_bgp::flowspec::FlowRoute;
use deflect_bgp::fsm::State;
use deflect_bgp::iana::Afi;
use deflect_bgp::rib::{RouteAttrs, RouteKey};
use ipnet::IpNet;
use routers::{Gobgp, Session, free_port, wait_for};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// Rules every router target can express: v4 and v6, prefixes, protocol lists, port ranges and
/// lists, `>=`/`<`/`!=`, TCP flags with all four tests, fragments, packet length, DSCP, ICMP,
/// flow label, and each action GoBGP's CLI can set.
const GOBGP_RULES: &[&str] = &[
    "dst 203.0.113.7/32 proto udp sport 123 then discard",
    "dst 203.0.113.8/32 src 198.51.100.0/24 proto tcp dport 1024..65535,80 tcp-flags syn&!~ack,~fin+rst,!=psh+urg pkt-len >=512&<1500 then rate-bytes 125000",
    "dst 203.0.113.9/32 proto icmp icmp-type 8 icmp-code 0 dscp !=0 fragment is-frag+first-frag,!~last-frag,~df then rate-bytes 65000:1000.5 mark 10",
    "dst 203.0.113.10/32 port <1024,>60000 then redirect 65000:100 traffic-action continue",
    "dst 203.0.113.11/32 proto 47,50..51 then redirect 192.0.2.1:7 traffic-action sample+terminal",
    "dst 203.0.113.12/32 proto udp dport 53 pkt-len >1000 then redirect-as4 65001:9 traffic-action sample+continue",
    "dst 2001:db8::1/128 next-header tcp dport 80,443 tcp-flags syn&!~ack then rate-bytes 125000",
    "dst 2001:db8::/32 src 2001:db8:1::/48 next-header 58 icmp-type 128 flow-label 5..10,70000 dscp 46 then discard",
    "dst 2001:db8:2::/48 next-header udp sport 53 pkt-len >1000 fragment first-frag then redirect 4200000000:5",
];

/// Rules BIRD can express (one fragment flag per test, flow labels up to 65535), with the actions
/// GoBGP cannot set.
const BIRD_RULES: &[&str] = &[
    "dst 203.0.113.7/32 proto udp sport 123 then discard",
    "dst 203.0.113.8/32 src 198.51.100.0/24 proto tcp dport 1024..65535,80,>8000&<9000,!=9999&>=9990&<=10010 tcp-flags syn&!~ack,~fin+rst,!=psh+urg pkt-len >=512&<1500 then rate-bytes 125000",
    "dst 203.0.113.9/32 proto icmp icmp-type 8 icmp-code 0 dscp !=0 fragment is-frag&!~last-frag,df then rate-packets 100 traffic-action terminal",
    "dst 203.0.113.10/32 port <1024,>60000 then redirect 65000:100 traffic-action continue mark 10",
    "proto 47,50..51 then redirect 192.0.2.1:7 traffic-action sample+terminal",
    "dst 2001:db8::1/128 next-header tcp dport 80,443 tcp-flags syn&!~ack then rate-bytes 125000",
    "dst 2001:db8::/32 src 2001:db8:1::/48 next-header 58 icmp-type 128 flow-label 5..10,65535 dscp 46 fragment first-frag then redirect-as4 65001:9 rate-bytes 7:100",
    "next-header udp sport 53 flow-label 0 pkt-len >1000 then redirect 4200000000:5",
];

fn parse(rules: &[&str]) -> Vec<FlowRoute> {
    rules
        .iter()
        .map(|r| r.parse().unwrap_or_else(|e| panic!("{r}: {e}")))
        .collect()
}

/// Whether `program` can be started at all.
fn installed(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

fn session(router: &str, deflect: &str) -> Session {
    let router_addr: IpAddr = router.parse().unwrap();
    Session {
        router_addr,
        router_port: free_port(router_addr),
        router_as: 65001,
        router_id: "192.0.2.254",
        deflect_addr: deflect.parse().unwrap(),
        deflect_as: 65000,
        md5_password: None,
        graceful_restart: false,
    }
}

/// deflect's speaker, connected to the router of `s` and announcing `routes`.
async fn announce(s: &Session, routes: &[FlowRoute]) -> Speaker {
    let mut c = PeerConfig::new(s.router_addr, s.router_as);
    c.port = s.router_port;
    c.local_as = s.deflect_as;
    c.router_id = "192.0.2.10".parse().unwrap();
    c.socket.local_addr = Some(s.deflect_addr);
    c.connect_retry = Duration::from_millis(500);
    let speaker = Speaker::start(vec![c], &[]).await.unwrap();
    speaker.table_complete().await;
    let peer = speaker.peers()[0].clone();
    let mut w = peer.watch();
    let up = tokio::time::timeout(WAIT, async {
        while w.borrow_and_update().state != State::Established {
            if w.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(up.is_ok(), "no session: {:#?}", peer.status());
    for r in routes {
        let attrs = RouteAttrs {
            ext_communities: r.ext_communities(),
            ..RouteAttrs::default()
        };
        speaker
            .set(RouteKey::FlowSpec(r.rule.clone()), Arc::new(attrs))
            .await;
    }
    speaker
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "deflect-flowspec-tool-{tag}-{}-{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    ));
    fs::create_dir_all(&d).unwrap();
    d
}

/// Stops a child by its PID: SIGTERM, then SIGKILL after two seconds.
fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(c.id().to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// Splits a printed shell command into its words (single quotes only, as the tool prints them).
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut started) = (false, false);
    for ch in line.chars() {
        match ch {
            '\'' => {
                quoted = !quoted;
                started = true;
            }
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut cur));
                    started = false;
                }
            }
            c => {
                cur.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(cur);
    }
    words
}

// ---------------------------------------------------------------------------------------------
// GoBGP (and ExaBGP)

/// An ExaBGP process announcing the tool's `flow` blocks to the router of `s`.
struct ExaBgp {
    dir: PathBuf,
    child: Option<Child>,
}

impl ExaBgp {
    fn start(s: &Session, local: &str, routes: &[FlowRoute]) -> ExaBgp {
        let dir = temp_dir("exabgp");
        let mut flows = String::new();
        for (i, r) in routes.iter().enumerate() {
            flows.push_str(&to_exabgp(r, &format!("r{i}")).unwrap_or_else(|e| panic!("{r}: {e}")));
        }
        let config = format!(
            "neighbor {ra} {{\n    router-id 192.0.2.11;\n    local-address {local};\n    local-as {das};\n    peer-as {ras};\n    connect {rp};\n    family {{\n        ipv4 flow;\n        ipv6 flow;\n    }}\n{flows}}}\n",
            ra = s.router_addr,
            rp = s.router_port,
            ras = s.router_as,
            das = s.deflect_as,
        );
        let conf = dir.join("exabgp.conf");
        fs::write(&conf, config).unwrap();
        let root = Command::new("id")
            .arg("-u")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
            .unwrap_or(false);
        let log = fs::File::create(dir.join("exabgp.log")).unwrap();
        let mut cmd = Command::new("exabgp");
        cmd.arg(&conf)
            .env("exabgp.daemon.daemonize", "false")
            .stdout(log.try_clone().unwrap())
            .stderr(log);
        if root {
            cmd.env("exabgp.daemon.user", "root");
        }
        let child = cmd.spawn().expect("cannot start exabgp");
        ExaBgp {
            dir,
            child: Some(child),
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("exabgp.log")).unwrap_or_default()
    }
}

impl Drop for ExaBgp {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One path of GoBGP's RIB: who sent it (`local` for the CLI), its NLRI as GoBGP decoded it, and
/// its extended communities (sorted).
#[derive(Debug, Clone, PartialEq)]
struct GobgpPath {
    source: String,
    nlri: Value,
    ext: Vec<String>,
}

/// GoBGP's FlowSpec RIBs: its text of each NLRI, with that NLRI's paths.
fn gobgp_rib(g: &Gobgp) -> routers::Result<BTreeMap<String, (Afi, Vec<GobgpPath>)>> {
    let mut rib = BTreeMap::new();
    for (afi, fam) in [(Afi::Ipv4, "ipv4-flowspec"), (Afi::Ipv6, "ipv6-flowspec")] {
        let out = g.gobgp(&format!("global rib -a {fam} -j"))?;
        let v: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        for (key, paths) in v.as_object().into_iter().flatten() {
            let paths = paths
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    let mut ext: Vec<String> = routers::gobgp_attr(&p["attrs"], 16)
                        .and_then(|a| a["value"].as_array())
                        .into_iter()
                        .flatten()
                        .map(Value::to_string)
                        .collect();
                    ext.sort();
                    GobgpPath {
                        source: p["neighbor-ip"].as_str().unwrap_or("local").to_string(),
                        nlri: p["nlri"].clone(),
                        ext,
                    }
                })
                .collect();
            rib.insert(key.clone(), (afi, paths));
        }
    }
    Ok(rib)
}

/// The NLRI GoBGP decoded, encoded again from its JSON: type, then the prefix (length, IPv6
/// offset, octets) or each operator octet with its value in the width the operator names.
fn gobgp_nlri_wire(afi: Afi, nlri: &Value) -> Result<Vec<u8>, String> {
    let bad = || format!("unexpected NLRI JSON: {nlri}");
    let mut body = Vec::new();
    for c in nlri["value"].as_array().ok_or_else(bad)? {
        let t = c["type"].as_u64().ok_or_else(bad)? as u8;
        body.push(t);
        if t == 1 || t == 2 {
            let net: IpNet = c["value"]["prefix"]
                .as_str()
                .ok_or_else(bad)?
                .parse()
                .map_err(|_| bad())?;
            let len = net.prefix_len();
            body.push(len);
            let n = usize::from(len).div_ceil(8);
            match (afi, net) {
                (Afi::Ipv4, IpNet::V4(p)) => body.extend_from_slice(&p.network().octets()[..n]),
                (Afi::Ipv6, IpNet::V6(p)) => {
                    body.push(c["offset"].as_u64().unwrap_or(0) as u8);
                    body.extend_from_slice(&p.network().octets()[..n]);
                }
                _ => return Err(bad()),
            }
        } else {
            for item in c["value"].as_array().ok_or_else(bad)? {
                let op = item["op"].as_u64().ok_or_else(bad)? as u8;
                let value = item["value"].as_u64().ok_or_else(bad)?;
                let width = 1usize << ((op >> 4) & 0x3);
                body.push(op);
                body.extend_from_slice(&value.to_be_bytes()[8 - width..]);
            }
        }
    }
    let mut wire = Vec::new();
    if body.len() < 240 {
        wire.push(body.len() as u8);
    } else {
        wire.extend_from_slice(&(0xf000 | body.len() as u16).to_be_bytes());
    }
    wire.extend_from_slice(&body);
    Ok(wire)
}

#[test]
fn gobgp_cli_and_exabgp_output_builds_the_nlri_deflect_announces() {
    if !installed("gobgpd") || !installed("gobgp") {
        eprintln!("skipping: gobgpd and gobgp are not installed (Debian: apt-get install gobgpd)");
        return;
    }
    let routes = parse(GOBGP_RULES);
    let s = session("127.0.47.1", "127.0.47.2");
    let g = Gobgp::start(s.clone()).unwrap();

    // The printed CLI commands, run against this gobgpd (its API port is added by `gobgp()`).
    for r in &routes {
        let text = to_gobgp(r).unwrap_or_else(|e| panic!("{r}: {e}"));
        let line = text.lines().find(|l| !l.starts_with('#')).unwrap();
        let words = shell_words(line);
        assert_eq!(words[0], "gobgp", "{line}");
        assert!(words.iter().all(|w| !w.contains(' ')), "{line}");
        if let Err(e) = g.gobgp(&words[1..].join(" ")) {
            panic!("gobgp refused the printed command for {r}:\n{line}\n{e}");
        }
    }

    // deflect's own speaker, announcing the same routes.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let speaker = rt.block_on(announce(&s, &routes));

    // ExaBGP with the printed flow blocks of the rules it can express, when it is installed.
    let exa_addr = "127.0.47.3";
    let by_exabgp: Vec<bool> = routes.iter().map(|r| to_exabgp(r, "x").is_ok()).collect();
    let exa = if installed("exabgp") {
        g.gobgp(&format!(
            "neighbor add {exa_addr} as {} family ipv4-flowspec,ipv6-flowspec",
            s.deflect_as
        ))
        .unwrap();
        let expressible: Vec<FlowRoute> = routes
            .iter()
            .zip(&by_exabgp)
            .filter(|(_, ok)| **ok)
            .map(|(r, _)| r.clone())
            .collect();
        Some(ExaBgp::start(&s, exa_addr, &expressible))
    } else {
        eprintln!("exabgp is not installed: checking the gobgp CLI output only");
        None
    };
    // Who must have sent each rule.
    let sources: Vec<Vec<String>> = by_exabgp
        .iter()
        .map(|ok| {
            let mut v = vec!["local".to_string(), s.deflect_addr.to_string()];
            if exa.is_some() && *ok {
                v.push(exa_addr.to_string());
            }
            v.sort();
            v
        })
        .collect();
    let total: usize = sources.iter().map(Vec::len).sum();

    let mut last = BTreeMap::new();
    let waited = wait_for("every path of every rule", WAIT, || {
        last = gobgp_rib(&g)?;
        let paths: usize = last.values().map(|(_, p)| p.len()).sum();
        Ok((paths >= total).then_some(()))
    });
    if let Err(e) = waited {
        panic!(
            "{e}\nGoBGP's RIB: {last:#?}\ngobgpd log:\n{}\nexabgp log:\n{}",
            g.log(),
            exa.as_ref().map(ExaBgp::log).unwrap_or_default()
        );
    }

    // One NLRI per rule: every source built the same one.
    assert_eq!(
        last.len(),
        routes.len(),
        "a source built a different NLRI for some rule: {last:#?}"
    );
    for (r, sources) in routes.iter().zip(&sources) {
        let found = last.iter().find(|(_, (afi, paths))| {
            *afi == r.rule.afi()
                && paths
                    .first()
                    .and_then(|p| gobgp_nlri_wire(*afi, &p.nlri).ok())
                    .as_deref()
                    == Some(r.rule.wire())
        });
        let Some((key, (_, paths))) = found else {
            panic!(
                "no NLRI in GoBGP equals deflect's {} for {r}: {last:#?}",
                hex::encode(r.rule.wire())
            );
        };
        let mut from: Vec<String> = paths.iter().map(|p| p.source.clone()).collect();
        from.sort();
        assert_eq!(&from, sources, "{r}: {key}: {paths:#?}");
        for p in paths {
            assert_eq!(p.nlri, paths[0].nlri, "{r}: {key}: {paths:#?}");
            assert_eq!(
                p.ext, paths[0].ext,
                "{r}: {key}: the actions differ by source: {paths:#?}"
            );
        }
        assert_eq!(paths[0].ext.len(), r.actions.len(), "{r}: {paths:#?}");
    }
    drop(exa);
    rt.block_on(speaker.shutdown("test over"));
}

// ---------------------------------------------------------------------------------------------
// BIRD

/// A BIRD process with the tool's static flow routes and a passive session for deflect.
struct BirdProc {
    dir: PathBuf,
    child: Option<Child>,
}

impl BirdProc {
    fn config(s: &Session, dir: &Path, routes: &[FlowRoute]) -> String {
        let (mut v4, mut v6) = (String::new(), String::new());
        for r in routes {
            let text = to_bird(r).unwrap_or_else(|e| panic!("{r}: {e}"));
            match r.rule.afi() {
                Afi::Ipv4 => v4.push_str(&text),
                Afi::Ipv6 => v6.push_str(&text),
            }
        }
        format!(
            "router id {rid};\nlog \"{log}\" all;\nflow4 table ft4;\nflow6 table ft6;\nprotocol device {{}}\n\
             protocol static tool4 {{\n  flow4 {{ table ft4; }};\n{v4}}}\n\
             protocol static tool6 {{\n  flow6 {{ table ft6; }};\n{v6}}}\n\
             protocol bgp deflect {{\n  local {ra} port {rp} as {ras};\n  neighbor {da} as {das};\n  multihop 2;\n  passive on;\n\
             flow4 {{ table ft4; import all; export none; }};\n  flow6 {{ table ft6; import all; export none; }};\n}}\n",
            rid = s.router_id,
            log = dir.join("bird.log").display(),
            ra = s.router_addr,
            rp = s.router_port,
            ras = s.router_as,
            da = s.deflect_addr,
            das = s.deflect_as,
        )
    }

    fn start(s: &Session, routes: &[FlowRoute]) -> BirdProc {
        let dir = temp_dir("bird");
        let conf = dir.join("bird.conf");
        fs::write(&conf, BirdProc::config(s, &dir, routes)).unwrap();
        // `bird -p`: parse the configuration and exit.
        let check = Command::new("bird")
            .arg("-p")
            .arg("-c")
            .arg(&conf)
            .output()
            .unwrap();
        assert!(
            check.status.success(),
            "bird -p refused the printed routes: {}{}\n{}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr),
            fs::read_to_string(&conf).unwrap_or_default()
        );
        let child = Command::new("bird")
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .arg("-s")
            .arg(dir.join("bird.ctl"))
            .arg("-P")
            .arg(dir.join("bird.pid"))
            .stdout(Stdio::null())
            .stderr(fs::File::create(dir.join("bird.stderr")).unwrap())
            .spawn()
            .expect("cannot start bird");
        let b = BirdProc {
            dir,
            child: Some(child),
        };
        wait_for("BIRD's control socket", WAIT, || {
            Ok(b.birdc("show status").ok())
        })
        .unwrap();
        b
    }

    fn birdc(&self, cmd: &str) -> Result<String, String> {
        let out = Command::new("birdc")
            .arg("-s")
            .arg(self.dir.join("bird.ctl"))
            .args(cmd.split_whitespace())
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `show route table T all`: each net as BIRD prints it, with its routes as
    /// `(protocol, extended communities)`.
    fn flow_nets(&self, table: &str) -> Result<BTreeMap<String, Vec<(String, String)>>, String> {
        let out = self.birdc(&format!("show route table {table} all"))?;
        let mut nets: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        let mut net = String::new();
        let proto_of = |s: &str| {
            s.trim_start()
                .trim_start_matches('[')
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_string()
        };
        for line in out.lines() {
            if line.starts_with("flow") {
                let (text, rest) = line.split_once("  [").unwrap_or((line, ""));
                net = text.trim().to_string();
                nets.entry(net.clone())
                    .or_default()
                    .push((proto_of(rest), String::new()));
            } else if line.starts_with(' ') && line.trim_start().starts_with('[') {
                nets.entry(net.clone())
                    .or_default()
                    .push((proto_of(line), String::new()));
            } else if let Some(ec) = line.trim().strip_prefix("BGP.ext_community: ") {
                if let Some(route) = nets.get_mut(&net).and_then(|r| r.last_mut()) {
                    route.1 = ec.to_string();
                }
            }
        }
        Ok(nets)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.dir.join("bird.log")).unwrap_or_default()
    }
}

impl Drop for BirdProc {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

#[test]
fn bird_static_routes_are_the_nets_deflect_announces() {
    if !installed("bird") || !installed("birdc") {
        eprintln!("skipping: bird and birdc are not installed (Debian: apt-get install bird2)");
        return;
    }
    let routes = parse(BIRD_RULES);
    let s = session("127.0.48.1", "127.0.48.2");
    let bird = BirdProc::start(&s, &routes);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let speaker = rt.block_on(announce(&s, &routes));

    let tables = [("ft4", "tool4", Afi::Ipv4), ("ft6", "tool6", Afi::Ipv6)];
    let mut last = Vec::new();
    let waited = wait_for("both routes of every rule", WAIT, || {
        last = Vec::new();
        let mut routes_seen = 0;
        for (t, _, _) in tables {
            let nets = bird.flow_nets(t)?;
            routes_seen += nets.values().map(Vec::len).sum::<usize>();
            last.push(nets);
        }
        Ok((routes_seen >= 2 * routes.len()).then_some(()))
    });
    if let Err(e) = waited {
        panic!("{e}\nBIRD has: {last:#?}\nits log:\n{}", bird.log());
    }
    for ((_, tool, afi), nets) in tables.iter().zip(&last) {
        let want = routes.iter().filter(|r| r.rule.afi() == *afi).count();
        assert_eq!(
            nets.len(),
            want,
            "each rule must be one net (the static route and deflect's the same NLRI): {nets:#?}"
        );
        for (net, rs) in nets {
            let mut protos: Vec<&str> = rs.iter().map(|(p, _)| p.as_str()).collect();
            protos.sort_unstable();
            assert_eq!(protos, ["deflect", *tool], "{net}: {rs:#?}");
            assert_eq!(rs[0].1, rs[1].1, "{net}: the actions differ: {rs:#?}");
            assert!(!rs[0].1.is_empty(), "{net}: no actions: {rs:#?}");
        }
    }
    // What BIRD prints for the first rules, as in integration/interop.rs.
    assert!(last[0].contains_key("flow4 { dst 203.0.113.7/32; proto 17; sport 123; }"));
    assert!(last[1].contains_key(
        "flow6 { dst 2001:db8::1/128; next header 6; dport 80,443; tcp flags 0x2/0x2 && 0x0/0x10; }"
    ));
    rt.block_on(speaker.shutdown("test over"));
    drop(bird);
}

// ---------------------------------------------------------------------------------------------
// nftables and iptables

/// Rules for the host filters, including ones that become several rules.
const HOST_RULES: &[&str] = &[
    "dst 203.0.113.7/32 proto udp sport 123 then discard",
    "dst 2001:db8::1/128 next-header tcp dport 80,443 tcp-flags syn&!~ack then rate-bytes 125000",
    "dst 192.0.2.0/24 port 53 pkt-len !=100 dscp 10..12 fragment first-frag then rate-packets 100 mark 8",
    "src 198.51.100.0/24 dport 1024..65535 pkt-len >=512&<1000,<64 dscp !=0 tcp-flags ~fin+rst,syn then rate-packets 1000 mark 8 traffic-action sample+continue",
    "proto icmp icmp-type 0,8 icmp-code 0 fragment !~is-frag then rate-bytes 1000.5",
    "dst 2001:db8::/32 icmp-type 128 fragment !~is-frag flow-label 5..10,70000 then discard",
    "dst 192.0.2.0/24 tcp-flags !=syn+ack&~fin+ack fragment ~df+last-frag then rate-packets 3 mark 63",
    "proto !=6&!=17 dscp 10,12..14 then discard",
    "dst 192.0.2.1/32 proto tcp tcp-flags ~syn+ack,fin then discard",
];

/// Runs `script` with `sh` in a new network namespace; `None` when namespaces are not available.
fn in_scratch_netns(script: &str) -> Option<Result<String, String>> {
    let probe = Command::new("unshare")
        .args(["-n", "true"])
        .stderr(Stdio::null())
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        return None;
    }
    let out = Command::new("unshare")
        .args(["-n", "sh", "-e", "-c", script])
        .output()
        .ok()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    })
}

#[test]
fn host_filter_commands_load_into_nftables_and_iptables() {
    let routes = parse(HOST_RULES);
    if installed("nft") {
        let mut script = String::from(
            "nft add table inet filter\nnft add chain inet filter input '{ type filter hook input priority 0; }'\n",
        );
        let mut n = 0;
        for r in &routes {
            let text = to_nftables(r, "t1").unwrap_or_else(|e| panic!("{r}: {e}"));
            for l in text.lines().filter(|l| !l.starts_with('#')) {
                script.push_str(l);
                script.push('\n');
                n += 1;
            }
        }
        script.push_str("nft list chain inet filter input\n");
        match in_scratch_netns(&script) {
            None => eprintln!("skipping nftables: cannot create a network namespace (unshare -n)"),
            Some(Err(e)) => panic!("nft refused the printed rules:\n{e}\n{script}"),
            Some(Ok(listing)) => {
                let loaded = listing
                    .lines()
                    .filter(|l| l.trim_end().ends_with("drop") || l.contains("counter"))
                    .count();
                assert_eq!(loaded, n, "{listing}");
            }
        }
    } else {
        eprintln!("skipping nftables: nft is not installed");
    }
    if installed("iptables") && installed("ip6tables") {
        let mut script = String::new();
        for r in &routes {
            let text = to_iptables(r, "t1").unwrap_or_else(|e| panic!("{r}: {e}"));
            for l in text.lines().filter(|l| !l.starts_with('#')) {
                script.push_str(l);
                script.push('\n');
            }
        }
        match in_scratch_netns(&script) {
            None => eprintln!("skipping iptables: cannot create a network namespace (unshare -n)"),
            Some(Err(e)) => panic!("iptables refused the printed rules:\n{e}\n{script}"),
            Some(Ok(_)) => {}
        }
    } else {
        eprintln!("skipping iptables: iptables and ip6tables are not installed");
    }
}

#[test]
fn shell_words_undo_the_tools_quoting() {
    assert_eq!(
        shell_words(
            "gobgp global rib add match protocol '==6' '==17' tcp-flags '=S&!A' then discard"
        ),
        [
            "gobgp",
            "global",
            "rib",
            "add",
            "match",
            "protocol",
            "==6",
            "==17",
            "tcp-flags",
            "=S&!A",
            "then",
            "discard"
        ]
    );
}
