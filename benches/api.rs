//! The controller under load: API create → UPDATE received by a peer (p50, p99) with 10k mitigations
//! active, creates per second sustained by concurrent clients, and resident memory.
//!
//! `cargo bench --bench api` prints the figures. deflect runs as its own process (the release
//! binary, so its resident memory is its own); the "router" is a deflect speaker in this process, on
//! loopback, that counts the NLRI it receives. Goals on a 2-core machine: p99 under 5 ms, at least
//! 5,000 creates per second, under 20 MB resident with 10k rules.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deflect::peer::{Mode, PeerConfig};
use deflect::speaker::Speaker;

mod support;
use support::{free_port, rss_kib};

const TOKEN: &str = "bench-token-0123456789";

/// Resident memory split: `(anonymous, file-backed)` KiB; the file-backed part is mostly the
/// binary's own pages, shared and reclaimable, the anonymous part the heap and the stacks.
fn rss_split_kib(pid: u32) -> (u64, u64) {
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |name: &str| {
        rollup
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0)
    };
    let anon = field("Anonymous:");
    (anon, field("Rss:").saturating_sub(anon))
}

/// The i-th /32 inside 10.0.0.0/8 as a FlowSpec rule.
fn rule(i: u32) -> String {
    format!(
        "dst 10.{}.{}.{}/32 proto udp sport 123 then discard",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let state = std::env::temp_dir().join(format!("deflect-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let api_port = free_port();

    rt.block_on(async {
        // The router: a passive deflect speaker on 127.0.71.1 that counts what it receives.
        let mut rc = PeerConfig::new("127.0.71.2".parse().unwrap(), 65000);
        rc.local_as = 65001;
        rc.router_id = "192.0.2.254".parse().unwrap();
        rc.mode = Mode::Passive;
        let router = Speaker::start(vec![rc], &[SocketAddr::new("127.0.71.1".parse().unwrap(), 0)]).await.unwrap();
        let router_port = router.local_addrs()[0].port();
        let received = router.peers()[0].watch();

        let yaml = format!(
            "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\napi:\n  listen: 127.0.0.1:{api_port}\n  tokens:\n    - {{ name: bench, token: {TOKEN}, scope: write, rate: 1000000 }}\n\
             neighbors:\n  - {{ name: router, address: 127.0.71.1, port: {router_port}, remote_as: 65001, local_address: 127.0.71.2, connect_retry: 1s }}\n\
             protected:\n  bench: [10.0.0.0/8]\nlimits:\n  max_active: 200000\n  max_new_per_minute: 10000000\n  default_ttl: 1h\n",
            state.display()
        );
        std::fs::create_dir_all(&state).unwrap();
        let config = state.join("bench.yaml");
        std::fs::write(&config, yaml).unwrap();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_deflect"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .spawn()
            .expect("deflect starts");
        let pid = child.id();
        let mut w = received.clone();
        while w.borrow_and_update().state != deflect_bgp::fsm::State::Established {
            let _ = tokio::time::timeout(Duration::from_secs(10), w.changed()).await;
        }
        let rss_start = rss_kib(pid);
        let split_start = rss_split_kib(pid);
        let active = Arc::new(AtomicU64::new(0));

        let base = format!("http://127.0.0.1:{api_port}/api/v1/mitigations");
        let health = format!("http://127.0.0.1:{api_port}/api/v1/health");
        for _ in 0..100 {
            if ureq::get(&health).call().is_ok() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let next = Arc::new(AtomicU64::new(0));

        // Fill up to 10k active, then measure create → UPDATE received, one at a time.
        let mut i = 0u32;
        let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
        while active.load(Ordering::Relaxed) < 10_000 {
            let body = serde_json::json!({"kind": "flowspec", "rule": rule(i)}).to_string();
            let r = agent.post(&base).header("Authorization", &format!("Bearer {TOKEN}")).send(&body);
            if r.map(|r| r.status().as_u16() == 201).unwrap_or(false) {
                active.fetch_add(1, Ordering::Relaxed);
            }
            i += 1;
        }
        let mut w = received.clone();
        let target = active.load(Ordering::Relaxed);
        while w.borrow_and_update().nlri_received < target {
            let _ = tokio::time::timeout(Duration::from_secs(10), w.changed()).await;
        }
        let rss_10k = rss_kib(pid);
        let split_10k = rss_split_kib(pid);
        let mut lat = Vec::new();
        for _ in 0..500 {
            let before = received.borrow().nlri_received;
            let body = serde_json::json!({"kind": "flowspec", "rule": rule(i)}).to_string();
            i += 1;
            let t = Instant::now();
            let base = base.clone();
            let agent = agent.clone();
            let st = tokio::task::spawn_blocking(move || {
                agent.post(&base).header("Authorization", &format!("Bearer {TOKEN}")).send(&body).map(|r| r.status().as_u16())
            })
            .await
            .unwrap();
            assert_eq!(st.ok(), Some(201));
            active.fetch_add(1, Ordering::Relaxed);
            let mut w = received.clone();
            while w.borrow_and_update().nlri_received <= before {
                let _ = tokio::time::timeout(Duration::from_secs(5), w.changed()).await;
            }
            lat.push(t.elapsed());
        }
        lat.sort();
        eprintln!(
            "create → UPDATE received with {target} active: p50 {:.2} ms, p99 {:.2} ms (500 samples)",
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3
        );
        eprintln!("deflect's resident memory: {rss_start} KiB at start, {rss_10k} KiB with {target} active");
        eprintln!(
            "  of which anonymous / file-backed: {} / {} KiB at start, {} / {} KiB with {target} active",
            split_start.0, split_start.1, split_10k.0, split_10k.1
        );

        next.store(u64::from(i), Ordering::Relaxed);

        // Concurrent clients for a fixed time, on top of those: creates per second.
        let clients = 32;
        let run_for = Duration::from_secs(5);
        let started = Instant::now();
        let mut handles = Vec::new();
        for _ in 0..clients {
            let base = base.clone();
            let next = next.clone();
            let active = active.clone();
            handles.push(std::thread::spawn(move || {
                let agent = ureq::Agent::config_builder().http_status_as_error(false).build().new_agent();
                let mut n = 0u64;
                while started.elapsed() < run_for {
                    let i = next.fetch_add(1, Ordering::Relaxed) as u32;
                    let body = serde_json::json!({"kind": "flowspec", "rule": rule(i)}).to_string();
                    let r = agent.post(&base).header("Authorization", &format!("Bearer {TOKEN}")).send(&body);
                    if r.map(|r| r.status().as_u16() == 201).unwrap_or(false) {
                        n += 1;
                        active.fetch_add(1, Ordering::Relaxed);
                    }
                }
                n
            }));
        }
        let created: u64 = tokio::task::spawn_blocking(move || handles.into_iter().map(|h| h.join().unwrap()).sum())
            .await
            .unwrap();
        let rate = created as f64 / started.elapsed().as_secs_f64();
        eprintln!("creates: {created} in {:.1} s with {clients} clients = {rate:.0} creates/s", started.elapsed().as_secs_f64());

        let mut i = next.load(Ordering::Relaxed) as u32;
        // 100k active: the creates above count (each 201 is one more active mitigation).
        let mut n = active.load(Ordering::Relaxed);
        while n < 100_000 {
            let batch: Vec<String> = (0..64.min(100_000 - n) as u32).map(|k| rule(i + k)).collect();
            i += batch.len() as u32;
            let base2 = base.clone();
            let agent2 = agent.clone();
            n += tokio::task::spawn_blocking(move || {
                std::thread::scope(|s| {
                    let workers: Vec<_> = batch
                        .chunks(8)
                        .map(|chunk| {
                            let (base, agent) = (&base2, &agent2);
                            s.spawn(move || {
                                chunk
                                    .iter()
                                    .filter(|r| {
                                        let body = serde_json::json!({"kind": "flowspec", "rule": r}).to_string();
                                        let r = agent.post(base).header("Authorization", &format!("Bearer {TOKEN}")).send(&body);
                                        r.map(|r| r.status().as_u16() == 201).unwrap_or(false)
                                    })
                                    .count() as u64
                            })
                        })
                        .collect();
                    workers.into_iter().map(|w| w.join().unwrap()).sum::<u64>()
                })
            })
            .await
            .unwrap();
        }
        let mut w = received.clone();
        while w.borrow_and_update().nlri_received < n {
            if tokio::time::timeout(Duration::from_secs(30), w.changed()).await.is_err() {
                break;
            }
        }
        let split = rss_split_kib(pid);
        eprintln!(
            "deflect's resident memory with {n} active: {} KiB ({} NLRI at the router); anonymous / file-backed: {} / {} KiB",
            rss_kib(pid),
            received.borrow().nlri_received,
            split.0,
            split.1
        );
        // A clean stop: SIGTERM through kill(1), then wait.
        let _ = std::process::Command::new("kill").arg(pid.to_string()).status();
        let _ = child.wait();
        router.shutdown("bench over").await;
    });
    let _ = std::fs::remove_dir_all(&state);
}
