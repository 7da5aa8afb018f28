//! The dashboard in headless Chromium (Debian `chromium`): the real binary with an attack, a
//! mitigation, a node and the audit trail; the page signed in with a token must show them all,
//! and the sign-in form without one. Screenshots are kept in `target/dashboard/`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const WRITE: &str = "write-token-0123456789";
const NODE: &str = "node-token-0123456789";

struct Daemon(Child, PathBuf);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn post(port: u16, path: &str, token: &str, body: &Value) -> (u16, Value) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut r = agent
        .post(format!("http://127.0.0.1:{port}{path}"))
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(body)
        .unwrap();
    let st = r.status().as_u16();
    (st, r.body_mut().read_json().unwrap_or_default())
}

/// Chromium, headless, on `url`: the DOM after scripts ran, and a screenshot in `shot`.
fn chromium(url: &str, shot: &std::path::Path) -> String {
    let profile = std::env::temp_dir().join(format!("deflect-chromium-{}", std::process::id()));
    let common = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--window-size=1500,1300",
        "--virtual-time-budget=5000",
    ];
    let data_dir = format!("--user-data-dir={}", profile.display());
    let shot_arg = format!("--screenshot={}", shot.display());
    let st = Command::new("chromium")
        .args(common)
        .arg(&data_dir)
        .arg(&shot_arg)
        .arg(url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("chromium runs (Debian package chromium)");
    assert!(st.success());
    let out = Command::new("chromium")
        .args(common)
        .arg(&data_dir)
        .arg("--dump-dom")
        .arg(url)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&profile);
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn the_dashboard_shows_attacks_mitigations_nodes_peers_and_the_audit_trail() {
    if Command::new("chromium").arg("--version").output().is_err() {
        eprintln!("skipped: chromium (Debian package chromium) is missing");
        return;
    }
    let dir = std::env::temp_dir().join(format!("deflect-dashboard-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let port = free_port();
    std::fs::write(
        dir.join("deflect.yaml"),
        format!(
            "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\npolicies: {}\n\
             api:\n  listen: 127.0.0.1:{port}\n  tokens:\n    - {{ name: noc, token: {WRITE}, scope: write }}\n    - {{ name: web1, token: {NODE}, scope: node, serves: [0.0.0.0/0, ::/0] }}\n\
             neighbors:\n  - {{ name: edge1, address: 127.0.0.1, port: {}, remote_as: 65001, connect_retry: 5s }}\n\
             protected:\n  customers: [203.0.113.0/24]\n\
             detection:\n  thresholds:\n    floor_pps: {{ udp-amp: 5000 }}\n    warmup: 1s\n",
            dir.join("state").display(),
            dir.join("no-policies").display(),
            free_port()
        ),
    )
    .unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(["run", "--config"])
        .arg(dir.join("deflect.yaml"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _d = Daemon(child, dir.clone());
    let start = Instant::now();
    while ureq::get(format!("http://127.0.0.1:{port}/api/v1/health"))
        .call()
        .is_err()
    {
        assert!(start.elapsed() < Duration::from_secs(20), "the API");
        std::thread::sleep(Duration::from_millis(100));
    }
    // A manual mitigation, and an NTP flood reported by a node (the shipped policy answers it).
    let (st, m) = post(
        port,
        "/api/v1/mitigations",
        WRITE,
        &json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32 proto udp dport 53 then rate-bytes 1000", "reason": "dashboard test"}),
    );
    assert_eq!(st, 201, "{m}");
    for (seq, ntp) in [(0u64, 0u64), (1, 0), (2, 60_000), (3, 80_000), (4, 70_000)] {
        let mut flows =
            vec![json!({"proto": 6, "dport": 443, "tcp_flags": 16, "pps": 300, "bps": 2_400_000})];
        if ntp > 0 {
            flows.push(
                json!({"proto": 17, "sport": 123, "dport": 4444, "pps": ntp, "bps": ntp * 3760}),
            );
        }
        let report = json!({"node": "web1", "seq": seq, "time_ms": 0, "interval_ms": 1000,
            "targets": [{"dst": "203.0.113.7", "pps": 300 + ntp, "bps": 2_400_000 + ntp * 3760, "flows": flows}]});
        let (st, ack) = post(port, "/api/v1/telemetry", NODE, &report);
        assert_eq!(st, 202, "{ack}");
        std::thread::sleep(Duration::from_millis(600));
    }

    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&shots).unwrap();
    let signed_in = shots.join("dashboard.png");
    let dom = chromium(
        &format!("http://127.0.0.1:{port}/dashboard#token={WRITE}"),
        &signed_in,
    );
    for want in [
        "amplification", // the attack
        "203.0.113.7",
        "<polyline",              // its chart
        "started: amplification", // its timeline
        "policy amplification",
        "dst 203.0.113.9/32 proto udp dport 53 then rate-bytes 1000", // the manual mitigation
        "dst 203.0.113.7/32 proto udp sport 123 then discard",        // the policy's
        "class=\"withdraw\"",                                         // with withdraw buttons
        "web1",                                                       // the node
        "edge1",                                                      // the peer
        "mitigation.create",                                          // the audit trail
        "attack.start",
    ] {
        assert!(dom.contains(want), "{want:?} not on the page:\n{dom}");
    }
    let size = std::fs::metadata(&signed_in).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "a screenshot of the page ({size} bytes)");

    // Without a token: the sign-in form.
    let signed_out = shots.join("sign-in.png");
    let dom = chromium(&format!("http://127.0.0.1:{port}/dashboard"), &signed_out);
    assert!(
        dom.contains("<div id=\"login\">"),
        "the sign-in form is shown:\n{dom}"
    );
    assert!(dom.contains("<div id=\"app\" hidden"), "and the app is not");
    eprintln!(
        "screenshots: {} and {}",
        signed_in.display(),
        signed_out.display()
    );
}
