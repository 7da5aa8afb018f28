//! Mitigations in thousands: 10,000 FlowSpec rules into a live BIRD, one batch request against one
//! request per rule (16 clients), and back out with one withdrawal by filter. Times run from the
//! first request sent to the last rule in (or out of) BIRD's table, as `birdc` counts it.
//!
//! `cargo bench --bench batch` prints the figures. deflect runs as its own process (the release
//! binary); BIRD 2 is started on loopback as the interop tests start it. Goal: 10k rules in one
//! batch in BIRD's table within 100 ms. `BATCH_ONLY=1` stops after the batch (for a profiler).

use std::net::IpAddr;
use std::time::{Duration, Instant};

#[path = "../integration/routers/mod.rs"]
mod routers;

use routers::{Bird, Session, free_port};
use serde_json::{Value, json};

const TOKEN: &str = "bench-token-0123456789";
const RULES: usize = 10_000;

fn rule(i: usize, port: u16) -> String {
    format!(
        "dst 10.{}.{}.{}/32 proto udp dport {port} then discard",
        i >> 16 & 255,
        i >> 8 & 255,
        i & 255
    )
}

/// Rules in BIRD's flow4 table (`show route table ft4 count`).
fn in_bird(b: &Bird) -> usize {
    b.birdc("show route table ft4 count")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.contains("of") && l.contains("routes"))
                .and_then(|l| l.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Waits until BIRD has `n` rules; how long from `t0`.
fn until(b: &Bird, n: usize, t0: Instant) -> Duration {
    let give_up = Instant::now() + Duration::from_secs(120);
    while in_bird(b) != n {
        assert!(Instant::now() < give_up, "BIRD never had {n} rules");
        std::thread::sleep(Duration::from_millis(2));
    }
    t0.elapsed()
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> (u16, Value) {
    let mut r = agent
        .post(url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .send_json(body)
        .expect("deflect answers");
    let st = r.status().as_u16();
    let text = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_default();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn main() {
    let router: IpAddr = "127.0.74.1".parse().unwrap();
    let session = Session {
        router_addr: router,
        router_port: free_port(router),
        router_as: 65001,
        router_id: "192.0.2.254",
        deflect_addr: "127.0.74.2".parse().unwrap(),
        deflect_as: 65000,
        md5_password: None,
        graceful_restart: false,
    };
    let bird = Bird::start(session.clone()).expect("bird starts");
    let dir = std::env::temp_dir().join(format!("deflect-bench-batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let yaml = format!(
        "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\ngraceful_restart: 0\n\
         api:\n  listen: 127.0.0.1:{api_port}\n  tokens:\n    - {{ name: feed, token: {TOKEN}, scope: write, rate: 100000 }}\n\
         neighbors:\n  - {{ name: bird, address: {}, port: {}, remote_as: 65001, local_address: {}, connect_retry: 1s, receives: [flowspec] }}\n\
         protected:\n  bench: [10.0.0.0/8]\nlimits:\n  max_ttl: 24h\n  max_active: 100000\n  max_new_per_minute: 100000\n",
        dir.join("state").display(),
        session.router_addr,
        session.router_port,
        session.deflect_addr,
    );
    std::fs::write(dir.join("bench.yaml"), yaml).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(["run", "--config"])
        .arg(dir.join("bench.yaml"))
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("deflect starts");
    let give_up = Instant::now() + Duration::from_secs(30);
    while !bird
        .birdc("show protocols deflect")
        .unwrap_or_default()
        .contains("Established")
    {
        assert!(Instant::now() < give_up, "no session with BIRD");
        std::thread::sleep(Duration::from_millis(100));
    }
    let base = format!("http://127.0.0.1:{api_port}/api/v1/mitigations");
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();

    // One batch.
    let items: Vec<Value> = (0..RULES)
        .map(|i| json!({"kind": "flowspec", "rule": rule(i, 53), "ttl": "1h", "reason": "batch"}))
        .collect();
    let body = json!({"mitigations": items});
    let t0 = Instant::now();
    let (st, v) = post(&agent, &format!("{base}/batch"), &body);
    let answered = t0.elapsed();
    assert_eq!(
        (st, v["created"].as_u64()),
        (200, Some(RULES as u64)),
        "{}",
        v["error"]
    );
    let all_in = until(&bird, RULES, t0);
    eprintln!(
        "{RULES} FlowSpec rules in one batch: answered in {:.0} ms, all in BIRD's table in {:.0} ms",
        answered.as_secs_f64() * 1e3,
        all_in.as_secs_f64() * 1e3
    );

    if std::env::var_os("BATCH_ONLY").is_some() {
        let _ = child.kill();
        let _ = child.wait();
        return;
    }

    // Out again with one filter.
    let t0 = Instant::now();
    let (st, v) = post(
        &agent,
        &format!("{base}/withdraw"),
        &json!({"filter": {"reason": "batch"}, "reason": "bench"}),
    );
    assert_eq!((st, v["withdrawn"].as_u64()), (200, Some(RULES as u64)));
    let all_out = until(&bird, 0, t0);
    eprintln!(
        "the same withdrawn by one filter: out of BIRD's table in {:.0} ms",
        all_out.as_secs_f64() * 1e3
    );

    // One request per rule, 16 clients (other rules: the withdrawn ones are kept as records).
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for c in 0..16 {
            let base = &base;
            s.spawn(move || {
                let agent = ureq::Agent::config_builder()
                    .http_status_as_error(false)
                    .build()
                    .new_agent();
                for i in (c..RULES).step_by(16) {
                    let body = json!({"kind": "flowspec", "rule": rule(i, 123), "ttl": "1h"});
                    let (st, _) = post(&agent, base, &body);
                    assert_eq!(st, 201);
                }
            });
        }
    });
    let answered = t0.elapsed();
    let all_in = until(&bird, RULES, t0);
    eprintln!(
        "{RULES} FlowSpec rules one request each, 16 clients: answered in {:.0} ms, all in BIRD's table in {:.0} ms",
        answered.as_secs_f64() * 1e3,
        all_in.as_secs_f64() * 1e3
    );

    let _ = child.kill();
    let _ = child.wait();
    drop(bird);
    let _ = std::fs::remove_dir_all(&dir);
}
