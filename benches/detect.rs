//! Detection under load: probe report arrival → UPDATE received by a peer (p50, p99), 10,000
//! targets each reported once a second (deflect's CPU share, memory per target), and one node
//! at its table's limit flooding reports beside 20 honest nodes (their report round trips), and a
//! restart with those targets learned (how soon every address is judged on its learned baseline
//! again). First, in process: what the baselines snapshot and a `/metrics` scrape cost the engine
//! at 10,000 and 100,000 addresses (`SNAPSHOT_ONLY=1` stops there).
//!
//! `cargo bench --bench detect` prints the figures. deflect runs as its own process (the release
//! binary); the "router" is a deflect speaker in this process on loopback that counts the NLRI it
//! receives. Goals on this 2-core machine: p99 under 10 ms; at most 1 KB per target.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use deflect::peer::{Mode, PeerConfig};
use deflect::speaker::Speaker;
use serde_json::json;

mod support;
use support::{cpu_ticks, free_port, status_kib};

const NODES: usize = 200;
const PER_NODE: usize = 50;

/// One report from every node, from 8 connections at once.
fn all_nodes_once(agents: &[ureq::Agent], bodies: &[Vec<String>], base: &str, sec: u64) {
    std::thread::scope(|s| {
        for (c, agent) in agents.iter().enumerate() {
            s.spawn(move || {
                for n in (c..NODES).step_by(agents.len()) {
                    let body = report(n, sec, &bodies[n], 0);
                    let _ = agent
                        .post(base)
                        .header("Authorization", &format!("Bearer {}", token(n)))
                        .send(&body);
                }
            });
        }
    });
}

fn agents(n: usize) -> Vec<ureq::Agent> {
    (0..n)
        .map(|_| {
            ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent()
        })
        .collect()
}

/// Every node's addresses.
fn node_targets() -> Vec<Vec<String>> {
    (0..NODES)
        .map(|n| {
            (0..PER_NODE)
                .map(|k| format!("10.{}.{}.{}", n / 200 + 1, n % 200, k + 1))
                .collect()
        })
        .collect()
}

/// What a snapshot of the learned baselines costs the engine's task (written every minute and at
/// shutdown) and what reading it back costs at start, at 10,000 and 100,000 addresses, in
/// process: each address with web traffic and DNS answers learned (two busy classes, the rest
/// quiet), its /24 too.
fn snapshot_cost() {
    use deflect::detect::{Detector, Settings, Thresholds, snapshot};
    use deflect::telemetry::{Flow, Report, Target};
    for n in [10_000usize, 100_000] {
        let settings = Settings {
            groups: vec![(
                "bench".into(),
                vec!["10.0.0.0/8".parse().unwrap()],
                Thresholds::default(),
            )],
            max_targets: 200_000,
            max_targets_per_node: 200_000,
            max_prefixes: 10_000,
            ..Settings::default()
        };
        let mut d = Detector::new(settings.clone(), 1);
        let flows = vec![
            Flow {
                proto: 6,
                dport: Some(443),
                tcp_flags: Some(16),
                pps: 300,
                bps: 2_400_000,
                ..Flow::default()
            },
            Flow {
                proto: 17,
                sport: Some(53),
                dport: Some(40000),
                pps: 10,
                bps: 8_000,
                ..Flow::default()
            },
        ];
        // Reports of 64 addresses each from 1,000 nodes: `flows` to each of `which`.
        let round = |d: &mut Detector, which: Vec<usize>, flows: &[Flow], seq: u64, now: u64| {
            for (i, chunk) in which.chunks(64).enumerate() {
                let r = Report {
                    node: format!("n{}", i % 1000),
                    seq,
                    interval_ms: 1000,
                    one_in: 1,
                    targets: chunk
                        .iter()
                        .map(|k| {
                            let dst = std::net::IpAddr::from([
                                10,
                                (k >> 16) as u8,
                                (k >> 8) as u8,
                                *k as u8,
                            ]);
                            Target::of_flows(dst, flows.to_vec())
                        })
                        .collect(),
                    ..Report::default()
                };
                d.ingest(&r.node.clone(), &r, now);
            }
        };
        let mut now = 1_000_000;
        for seq in 0..3u64 {
            now += 1000;
            round(&mut d, (0..n).collect(), &flows, seq, now);
        }
        // One address in a hundred flooded (ICMP), for the scrape below.
        now += 1000;
        let mut flooded = flows.clone();
        flooded.push(Flow {
            proto: 1,
            pps: 80_000,
            bps: 327_680_000,
            ..Flow::default()
        });
        round(&mut d, (0..n).step_by(100).collect(), &flooded, 3, now);
        // What a scrape of /metrics costs the engine: the busiest 20 and 500 of the attacked.
        let mut scrape = Duration::MAX;
        for _ in 0..20 {
            let t = Instant::now();
            let view = d.traffic(20, 500);
            scrape = scrape.min(t.elapsed());
            // The busiest 20 are flooded ones: 500 more of the attacked beyond them.
            assert_eq!(view.targets.len(), 520.min(n / 100));
        }
        eprintln!(
            "/metrics at {n} addresses, {} attacked: the engine chooses its targets in {:.2} ms (best of 20)",
            n / 100,
            scrape.as_secs_f64() * 1e3
        );
        let t = Instant::now();
        let (bytes, entries) = d.snapshot(now);
        let encode = t.elapsed();
        let t = Instant::now();
        let s = snapshot::decode(&bytes).unwrap();
        let mut back = Detector::new(settings, 1);
        let r = back.restore(s, now + 1000);
        let read = t.elapsed();
        eprintln!(
            "baselines snapshot at {n} addresses: {entries} entries, {} KiB, encoded in {:.1} ms on the engine's task; read back and restored in {:.1} ms ({} addresses, {} prefixes)",
            bytes.len() / 1024,
            encode.as_secs_f64() * 1e3,
            read.as_secs_f64() * 1e3,
            r.targets,
            r.prefixes
        );
    }
}

const READ: &str = "read-token-0123456789";
/// The bench's warm-up: the 10k phase learns longer than this.
const WARMUP_S: u64 = 10;

/// Stops deflect (SIGTERM, as systemd would) with every address learned and starts it again:
/// how long the stop took and the snapshot it wrote, then from the new process's start, when its
/// API answered, how long the engine took to read the baselines back, and when one report from
/// every node had been judged, with how many of the addresses warm.
fn restart(
    child: &mut std::process::Child,
    config: &std::path::Path,
    dir: &std::path::Path,
    api_port: u16,
) {
    // Every node reports once more (the fairness phase left most of them silent for a while).
    let base = format!("http://127.0.0.1:{api_port}/api/v1/telemetry");
    all_nodes_once(&agents(8), &node_targets(), &base, 999_999);
    let t = Instant::now();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let stopped = t.elapsed();
    let size = std::fs::metadata(dir.join("state/baselines.bin"))
        .map(|m| m.len())
        .unwrap_or(0);
    let log = dir.join("restart.log");
    let t0 = Instant::now();
    *child = deflect(config, "warn,deflect::engine=info", Some(&log));
    let health = format!("http://127.0.0.1:{api_port}/api/v1/health");
    while ureq::get(&health).call().is_err() && t0.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    let api = t0.elapsed();
    all_nodes_once(&agents(8), &node_targets(), &base, 1_000_000);
    let judged = t0.elapsed();
    // `took_ms=N` in the log, its colours taken out.
    let mut text = String::new();
    let mut escape = false;
    for c in std::fs::read_to_string(&log).unwrap_or_default().chars() {
        match (escape, c) {
            (false, '\x1b') => escape = true,
            (true, 'm') => escape = false,
            (false, c) => text.push(c),
            (true, _) => {}
        }
    }
    let took: String = text
        .split("took_ms=")
        .nth(1)
        .map(|r| r.chars().take_while(char::is_ascii_digit).collect())
        .unwrap_or_else(|| "?".into());
    let v: serde_json::Value = ureq::get(format!(
        "http://127.0.0.1:{api_port}/api/v1/targets?limit=10000"
    ))
    .header("Authorization", &format!("Bearer {READ}"))
    .call()
    .expect("GET /api/v1/targets")
    .body_mut()
    .with_config()
    // 10,000 targets with every class: past ureq's 10 MB default.
    .limit(64 << 20)
    .read_json()
    .expect("the targets' JSON");
    let views = v.as_array().cloned().unwrap_or_default();
    let warm = views
        .iter()
        .filter(|t| {
            t["classes"].as_array().is_some_and(|c| {
                c.iter()
                    .any(|c| c["class"] == "tcp-ack" && c["warm"] == true)
            })
        })
        .count();
    eprintln!(
        "restart with {} addresses learned: stopped in {} ms (snapshot {} KiB); after the new start: API up at {} ms, baselines read back in {took} ms, one report from every node judged at {} ms with {warm} of {} addresses warm (without the snapshot: none for the {WARMUP_S} s warm-up)",
        NODES * PER_NODE,
        stopped.as_millis(),
        size / 1024,
        api.as_millis(),
        judged.as_millis(),
        views.len()
    );
}

/// `deflect run` on `config` (the release binary), logging at `level` to `log` (or the bench's own
/// standard error).
fn deflect(
    config: &std::path::Path,
    level: &str,
    log: Option<&std::path::Path>,
) -> std::process::Child {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_deflect"));
    c.args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", level);
    if let Some(l) = log {
        c.stderr(std::fs::File::create(l).unwrap());
    }
    c.spawn().expect("deflect starts")
}

fn token(n: usize) -> String {
    format!("node-token-{n:010}")
}

/// A report from node `n` about its targets, with `flood` pps of NTP answers to the first one.
fn report(n: usize, seq: u64, targets: &[String], flood: u64) -> String {
    let t: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(i, dst)| {
            let mut flows = vec![
                json!({"proto": 6, "dport": 443, "tcp_flags": 16, "pps": 300, "bps": 2_400_000}),
                json!({"proto": 17, "sport": 53, "dport": 40000, "pps": 10, "bps": 8_000}),
            ];
            if i == 0 && flood > 0 {
                flows.push(json!({"proto": 17, "sport": 123, "dport": 4444, "pps": flood, "bps": flood * 3760}));
            }
            json!({"dst": dst, "pps": 310 + if i == 0 { flood } else { 0 }, "bps": 2_408_000, "flows": flows})
        })
        .collect();
    json!({"node": format!("n{n}"), "seq": seq, "time_ms": 0, "interval_ms": 1000, "targets": t})
        .to_string()
}

/// The one-node-against-the-others figures (see `main`).
fn fairness(base: &str, pid: u32) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let agent = || {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
    };
    const HOSTILE: usize = NODES - 1;
    // Its table filled: 157 reports of 64 new addresses.
    let a = agent();
    for i in 0..157u64 {
        let targets: Vec<String> = (0..64).map(|k| format!("10.100.{}.{}", i, k + 1)).collect();
        let _ = a
            .post(base)
            .header("Authorization", &format!("Bearer {}", token(HOSTILE)))
            .send(&report(HOSTILE, 10_000 + i, &targets, 0));
    }
    let honest = |secs: u64, stop: &AtomicBool| -> (Vec<Duration>, u64) {
        let refused = AtomicU64::new(0);
        let lat = std::sync::Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for n in 0..20usize {
                let (lat, refused) = (&lat, &refused);
                s.spawn(move || {
                    let a = agent();
                    let targets: Vec<String> = (0..PER_NODE)
                        .map(|k| format!("10.{}.{}.{}", n / 200 + 1, n % 200, k + 1))
                        .collect();
                    let start = Instant::now();
                    let mut seq = 1_000_000 + secs * 100;
                    while start.elapsed() < Duration::from_secs(secs) {
                        seq += 1;
                        let body = report(n, seq, &targets, 0);
                        let t = Instant::now();
                        let st = a
                            .post(base)
                            .header("Authorization", &format!("Bearer {}", token(n)))
                            .send(&body)
                            .map(|r| r.status().as_u16());
                        let took = t.elapsed();
                        if st.ok() == Some(202) {
                            lat.lock().unwrap().push(took);
                        } else {
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                        std::thread::sleep(Duration::from_millis(100).saturating_sub(took));
                    }
                });
            }
        });
        stop.store(true, Ordering::Relaxed);
        let mut v = lat.into_inner().unwrap();
        v.sort();
        (v, refused.into_inner())
    };
    let show = |what: &str, v: &[Duration], refused: u64| {
        eprintln!(
            "  honest reports {what}: p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms ({} reports, {refused} refused)",
            percentile(v, 0.5).as_secs_f64() * 1e3,
            percentile(v, 0.99).as_secs_f64() * 1e3,
            v.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
            v.len(),
        );
    };
    eprintln!(
        "one node at its 10,000-address limit against 20 honest nodes (reports every 100 ms):"
    );
    let (quiet, refused) = honest(5, &AtomicBool::new(false));
    show("alone", &quiet, refused);
    let stop = AtomicBool::new(false);
    let (accepted, busy) = (AtomicU64::new(0), AtomicU64::new(0));
    let cpu0 = cpu_ticks(pid);
    let t0 = Instant::now();
    let (loud, refused) = std::thread::scope(|s| {
        for c in 0..16u64 {
            let (stop, accepted, busy) = (&stop, &accepted, &busy);
            s.spawn(move || {
                let a = agent();
                let mut seq = 100_000 + c * 1_000_000;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let st = a
                        .post(base)
                        .header("Authorization", &format!("Bearer {}", token(HOSTILE)))
                        .send(&report(HOSTILE, seq, &[], 0))
                        .map(|r| r.status().as_u16());
                    match st.ok() {
                        Some(202) => accepted.fetch_add(1, Ordering::Relaxed),
                        _ => busy.fetch_add(1, Ordering::Relaxed),
                    };
                }
            });
        }
        honest(10, &stop)
    });
    let wall = t0.elapsed().as_secs_f64();
    show("beside it", &loud, refused);
    eprintln!(
        "  the loud node: {:.0} reports/s judged, {:.0}/s refused (429); deflect at {:.0}% of one core",
        accepted.load(Ordering::Relaxed) as f64 / wall,
        busy.load(Ordering::Relaxed) as f64 / wall,
        (cpu_ticks(pid) - cpu0) as f64 / 100.0 / wall * 100.0
    );
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    snapshot_cost();
    if std::env::var_os("SNAPSHOT_ONLY").is_some() {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = std::env::temp_dir().join(format!("deflect-bench-detect-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    std::fs::write(
        dir.join("policies/amplification.yaml"),
        "match:\n  vectors: [amplification]\nwithdraw_after: 1h\nsteps:\n  - announce: flowspec\n    match: [proto, sport]\n    action: discard\n",
    )
    .unwrap();
    let api_port = free_port();

    rt.block_on(async {
        let mut rc = PeerConfig::new("127.0.72.2".parse().unwrap(), 65000);
        rc.local_as = 65001;
        rc.router_id = "192.0.2.254".parse().unwrap();
        rc.mode = Mode::Passive;
        let router = Speaker::start(vec![rc], &[SocketAddr::new("127.0.72.1".parse().unwrap(), 0)]).await.unwrap();
        let router_port = router.local_addrs()[0].port();
        let received = router.peers()[0].watch();

        let tokens: String = (0..NODES)
            .map(|n| format!("    - {{ name: n{n}, token: {}, scope: node, serves: [10.0.0.0/8], rate: 1000000 }}\n", token(n)))
            .chain(std::iter::once(format!("    - {{ name: reader, token: {READ}, scope: read }}\n")))
            .collect();
        let yaml = format!(
            "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\npolicies: {}\napi:\n  listen: 127.0.0.1:{api_port}\n  max_body: 1000000\n  tokens:\n{tokens}\
             neighbors:\n  - {{ name: router, address: 127.0.72.1, port: {router_port}, remote_as: 65001, local_address: 127.0.72.2, connect_retry: 1s }}\n\
             protected:\n  bench: [10.0.0.0/8]\nlimits:\n  max_active: 200000\n  max_new_per_minute: 100000\n\
             detection:\n  max_targets: 200000\n  thresholds:\n    floor_pps: {{ udp-amp: 5000 }}\n    warmup: {WARMUP_S}s\n",
            dir.join("state").display(),
            dir.join("policies").display()
        );
        std::fs::write(dir.join("bench.yaml"), yaml).unwrap();
        let mut child = deflect(&dir.join("bench.yaml"), "warn", None);
        let pid = child.id();
        let mut w = received.clone();
        let deadline = Instant::now() + Duration::from_secs(60);
        while w.borrow_and_update().state != deflect_bgp::fsm::State::Established {
            assert!(Instant::now() < deadline, "no BGP session with deflect within 60 s");
            let _ = tokio::time::timeout(Duration::from_secs(10), w.changed()).await;
        }
        let base = format!("http://127.0.0.1:{api_port}/api/v1/telemetry");
        let health = format!("http://127.0.0.1:{api_port}/api/v1/health");
        for _ in 0..100 {
            if ureq::get(&health).call().is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        // Report → UPDATE: one victim at a time, a normal report, then the flood.
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        let mut lat = Vec::new();
        for i in 0..500usize {
            let victim = vec![format!("10.200.{}.{}", i / 250, i % 250 + 1)];
            let (a, b) = (agent.clone(), base.clone());
            let normal = report(0, i as u64 * 2, &victim, 0);
            tokio::task::spawn_blocking(move || {
                a.post(&b).header("Authorization", &format!("Bearer {}", token(0))).send(&normal).unwrap()
            })
            .await
            .unwrap();
            let before = received.borrow().nlri_received;
            let flood = report(0, i as u64 * 2 + 1, &victim, 80_000);
            let (a, b) = (agent.clone(), base.clone());
            let t = Instant::now();
            let st = tokio::task::spawn_blocking(move || {
                a.post(&b).header("Authorization", &format!("Bearer {}", token(0))).send(&flood).map(|r| r.status().as_u16())
            })
            .await
            .unwrap();
            assert_eq!(st.ok(), Some(202));
            let mut w = received.clone();
            while w.borrow_and_update().nlri_received <= before {
                let _ = tokio::time::timeout(Duration::from_secs(5), w.changed()).await;
            }
            lat.push(t.elapsed());
        }
        lat.sort();
        eprintln!(
            "report → UPDATE received: p50 {:.2} ms, p99 {:.2} ms ({} attacks)",
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
            lat.len()
        );

        // 10k targets: NODES nodes with PER_NODE targets each, once a second, for 20 s.
        let rss_before = status_kib(pid, "VmRSS:");
        let seconds = 20u64;
        let t0 = Instant::now();
        let mut cpu0 = 0;
        let mut t_cpu0 = t0;
        tokio::task::spawn_blocking(move || {
            let agents = agents(8);
            let bodies = node_targets();
            for sec in 0..seconds {
                if sec == 5 {
                    // Measure from here: every target exists and the first reports are done.
                    cpu0 = cpu_ticks(pid);
                    t_cpu0 = Instant::now();
                }
                let start = Instant::now();
                all_nodes_once(&agents, &bodies, &base, sec);
                if let Some(rest) = Duration::from_secs(1).checked_sub(start.elapsed()) {
                    std::thread::sleep(rest);
                }
            }
            let cpu = cpu_ticks(pid) - cpu0;
            let wall = t_cpu0.elapsed().as_secs_f64();
            let hz = 100.0; // USER_HZ on Linux
            let rss_after = status_kib(pid, "VmRSS:");
            eprintln!(
                "{} targets from {NODES} nodes once a second: deflect at {:.1}% of one core; resident {} KiB before, {} KiB after = {} bytes per target",
                NODES * PER_NODE,
                cpu as f64 / hz / wall * 100.0,
                rss_before,
                rss_after,
                (rss_after.saturating_sub(rss_before)) * 1024 / (NODES * PER_NODE) as u64
            );
        })
        .await
        .unwrap();

        // One node against the others: a node at its table's limit (10,000 addresses, each of its
        // reports judges them all) sends empty reports from 16 connections as fast as they are
        // answered, its token's rate unlimited; 20 honest nodes report every 100 ms. Their report
        // round trips, quiet and then beside it.
        let base3 = format!("http://127.0.0.1:{api_port}/api/v1/telemetry");
        tokio::task::spawn_blocking(move || fairness(&base3, pid)).await.unwrap();

        let config = dir.join("bench.yaml");
        let state = dir.clone();
        let mut child = tokio::task::spawn_blocking(move || {
            restart(&mut child, &config, &state, api_port);
            child
        })
        .await
        .unwrap();
        let _ = std::process::Command::new("kill").arg(child.id().to_string()).status();
        let _ = child.wait();
        router.shutdown("bench over").await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}
