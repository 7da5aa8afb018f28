//! The sFlow path end to end: `deflect sflow-flood` describes a bounded NTP flood as sFlow v5
//! datagrams; the real `deflect` binary collects them, detects the attack, announces the FlowSpec
//! rule to a live GoBGP, captures the sampled packets to a pcap file that tshark reads back, and
//! withdraws the rule when the flood is over. Datagrams from an untrusted address are counted and
//! dropped.

#[path = "routers/mod.rs"]
mod routers;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use routers::{Gobgp, Session, free_port, wait_for};
use serde_json::Value;

const READ: &str = "read-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

struct Daemon {
    child: Child,
    log: PathBuf,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn get(port: u16, path: &str) -> Result<(u16, Vec<u8>), String> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut r = agent
        .get(format!("http://127.0.0.1:{port}{path}"))
        .header("Authorization", &format!("Bearer {READ}"))
        .call()
        .map_err(|e| e.to_string())?;
    let st = r.status().as_u16();
    let body = r
        .body_mut()
        .with_config()
        .limit(100 << 20)
        .read_to_vec()
        .map_err(|e| e.to_string())?;
    Ok((st, body))
}

fn get_json(port: u16, path: &str) -> Value {
    let (_, b) = get(port, path).unwrap();
    serde_json::from_slice(&b).unwrap_or(Value::Null)
}

fn flood(sflow_port: u16, bind: &str, seconds: &str) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args([
            "sflow-flood",
            "--to",
            &format!("127.0.0.1:{sflow_port}"),
            "--bind",
            bind,
            "--target",
            "203.0.113.9",
            "--sport",
            "123",
            // Answers to the ports spoofed requests came from: thousands of destination ports,
            // far more flows than a report holds.
            "--dport",
            "1024",
            "--dport-spread",
            "4000",
            "--pps",
            "200000",
            "--sampling-rate",
            "512",
            "--seconds",
            seconds,
        ])
        .output()
        .unwrap()
}

#[test]
fn an_sflow_flood_becomes_a_rule_a_capture_and_leaves() {
    let dir = std::env::temp_dir().join(format!("deflect-sflow-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies/amplification.yaml"),
        "match:\n  vectors: [amplification]\nwithdraw_after: 1s\nsteps:\n  - announce: flowspec\n    match: [proto, sport]\n    action: discard\n",
    )
    .unwrap();
    let s = Session {
        router_addr: "127.0.53.1".parse().unwrap(),
        router_port: free_port("127.0.53.1".parse().unwrap()),
        router_as: 65001,
        router_id: "192.0.2.254",
        deflect_addr: "127.0.53.2".parse().unwrap(),
        deflect_as: 65000,
        md5_password: None,
        graceful_restart: false,
    };
    let g = Gobgp::start(s.clone()).unwrap();
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let sflow_port = {
        let u = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        u.local_addr().unwrap().port()
    };
    let yaml = format!(
        "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\ngraceful_restart: 0\npolicies: {}\n\
         api:\n  listen: 127.0.0.1:{api_port}\n  tokens:\n    - {{ name: viewer, token: {READ}, scope: read }}\n\
         neighbors:\n  - {{ name: gobgp, address: {}, port: {}, remote_as: 65001, local_address: {}, connect_retry: 1s }}\n\
         protected:\n  customers: [203.0.113.0/24]\n\
         detection:\n  thresholds:\n    floor_pps: {{ udp-amp: 5000 }}\n    warmup: 1s\n    cooldown: 1s\n\
         sflow:\n  listen: 127.0.0.1:{sflow_port}\n  agents:\n    - {{ address: 127.0.0.1, name: sw1 }}\n\
         forensics:\n  pcap_duration: 30s\n",
        dir.join("state").display(),
        dir.join("policies").display(),
        s.router_addr,
        s.router_port,
        s.deflect_addr,
    );
    std::fs::write(dir.join("deflect.yaml"), yaml).unwrap();
    let log = dir.join("deflect.log");
    let child = Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(["run", "--config"])
        .arg(dir.join("deflect.yaml"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let d = Daemon {
        child,
        log: log.clone(),
        dir: dir.clone(),
    };
    let deflect_log = || std::fs::read_to_string(&d.log).unwrap_or_default();
    wait_for("the session", WAIT, || Ok(g.established()?.then_some(())))
        .unwrap_or_else(|e| panic!("{e}\n{}", deflect_log()));
    wait_for("the API", WAIT, || {
        Ok(get(api_port, "/api/v1/health").ok().map(|_| ()))
    })
    .unwrap();

    // An untrusted exporter: counted, dropped, nothing detected.
    let out = flood(sflow_port, "127.0.0.2", "0.5");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for("the untrusted datagrams counted", WAIT, || {
        let st = get_json(api_port, "/api/v1/sflow");
        Ok((st["untrusted"].as_u64().unwrap_or(0) > 0).then_some(()))
    })
    .unwrap();
    assert_eq!(
        get_json(api_port, "/api/v1/attacks?all=true"),
        Value::Array(vec![])
    );

    // The flood, from the trusted agent: the rule reaches GoBGP.
    let rules = || {
        g.rib("ipv4-flowspec")
            .map(|v| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    // The datagrams are captured as an operator would (dumpcap, tshark's capturer: pcapng), to be
    // replayed below.
    let capture = dir.join("sflow.pcapng");
    let mut dumpcap = Command::new("dumpcap")
        .args([
            "-q",
            "-i",
            "lo",
            "-f",
            &format!("udp dst port {sflow_port}"),
            "-w",
        ])
        .arg(&capture)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("dumpcap (Debian package tshark) runs");
    std::thread::sleep(Duration::from_millis(1500));
    let exporter = std::thread::spawn(move || flood(sflow_port, "127.0.0.1", "4"));
    let want = "[destination: 203.0.113.9/32][protocol: ==udp][source-port: ==123]";
    wait_for("the rule in GoBGP", WAIT, || {
        Ok((rules() == [want]).then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}\n{}", rules(), deflect_log()));
    let out = exporter.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::thread::sleep(Duration::from_millis(500));
    let _ = Command::new("kill")
        .args(["-INT", &dumpcap.id().to_string()])
        .status();
    let _ = dumpcap.wait();
    let attacks = get_json(api_port, "/api/v1/attacks?all=true");
    assert_eq!(
        attacks.as_array().map(Vec::len),
        Some(1),
        "one attack, not a udp-flood beside it: {attacks}"
    );
    let a = &attacks[0];
    assert_eq!(a["vector"], "amplification", "{attacks}");
    assert_eq!(a["signature"]["sports"], serde_json::json!([123]), "{a}");
    assert!(a["signature"].get("dports").is_none(), "{a}");
    assert_eq!(a["node"], "sflow:sw1");
    let peak = a["peak_pps"].as_u64().unwrap();
    assert!(
        (100_000..=400_000).contains(&peak),
        "estimated {peak} pps for 200k"
    );
    let st = get_json(api_port, "/api/v1/sflow");
    let sw1 = &st["agents"][0];
    assert_eq!(sw1["name"], "sw1");
    assert!(sw1["flow_samples"].as_u64().unwrap() > 1000, "{st}");
    assert_eq!(sw1["lost"], 0, "{st}");
    assert_eq!(sw1["decode_errors"], 0, "{st}");

    // Over: withdrawn after the cooldown and the hold-down.
    wait_for("the rule withdrawn", WAIT, || {
        Ok(rules().is_empty().then_some(()))
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", deflect_log()));

    // The captured datagrams, replayed with the same configuration: the same attack from the
    // same agent, and the same rule, withdrawn after the flood.
    let out = Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args([
            "replay",
            "--json",
            "--sflow-port",
            &sflow_port.to_string(),
            "--config",
        ])
        .arg(dir.join("deflect.yaml"))
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        replayed["files"][0]["sflow_datagrams"]
            .as_u64()
            .unwrap_or(0)
            > 100,
        "{}",
        replayed["files"]
    );
    let ra = replayed["attacks"].as_array().unwrap();
    assert_eq!(ra.len(), 1, "{}", replayed["attacks"]);
    assert_eq!(ra[0]["vector"], "amplification");
    assert_eq!(ra[0]["node"], "sflow:sw1", "the configured agent's name");
    assert_eq!(ra[0]["signature"]["sports"], serde_json::json!([123]));
    let rm = replayed["mitigations"].as_array().unwrap();
    assert_eq!(rm.len(), 1, "{}", replayed["mitigations"]);
    assert_eq!(
        rm[0]["rule"],
        "dst 203.0.113.9/32 proto udp sport 123 then discard"
    );
    assert!(rm[0]["withdrawn_ms"].is_u64());

    // The capture: listed, downloaded, and tshark sees the flood's packets in it.
    let id = a["id"].as_u64().unwrap();
    let list = get_json(api_port, "/api/v1/pcaps");
    assert_eq!(list[0]["attack"], id, "{list}");
    let (st, pcap) = get(api_port, &format!("/api/v1/attacks/{id}/pcap")).unwrap();
    assert_eq!(st, 200);
    let file = dir.join("capture.pcap");
    std::fs::write(&file, &pcap).unwrap();
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(&file)
        .args([
            "-T",
            "fields",
            "-e",
            "ip.dst",
            "-e",
            "udp.srcport",
            "-e",
            "frame.len",
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
    assert!(lines.len() > 100, "{} packets in the capture", lines.len());
    for l in &lines {
        let f: Vec<&str> = l.split('\t').collect();
        assert_eq!(&f[..2], ["203.0.113.9", "123"], "{l}");
        // The frame's length on the wire: 14 + 20 + 8 + 468.
        assert_eq!(f[2], "510", "{l}");
    }
    // An attack that never was has no capture (ids count up from 1).
    let (st, _) = get(api_port, &format!("/api/v1/attacks/{}/pcap", id + 1000)).unwrap();
    assert_eq!(st, 404);
}
