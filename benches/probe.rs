//! The probe under a flood: its resident memory and CPU while 100k packets per second arrive.
//!
//! `cargo bench --bench probe` (as root) builds two network namespaces joined by a veth pair (see
//! `integration/probe_lab`), runs the release `deflect probe` (interval 1 s) in one, with a telemetry
//! receiver beside it, and sends 100k UDP packets per second for about ten seconds from the other
//! (a paced sender thread of this process, inside that namespace). It prints the rate actually
//! achieved, the probe's CPU share over the window (as a percent of one core, from the scheduler's
//! per-thread run time), its peak resident memory, and how close its estimate was.
//! Goals: at most 10 MB resident and 1% of one core.

#[path = "../integration/probe_lab/mod.rs"]
mod probe_lab;

use std::fs;
use std::net::SocketAddr;
use std::thread;
use std::time::{Duration, Instant};

use probe_lab::{A4, B4, Lab, Receiver};

const PPS: u64 = 100_000;
const SECONDS: u64 = 10;

/// Time on CPU of every thread of `pid`, in nanoseconds (`/proc/PID/task/*/schedstat`).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs it too: only measure when benching.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if let Some(why) = probe_lab::unavailable() {
        eprintln!("probe bench skipped: {why}");
        return;
    }
    let mut lab = Lab::new("bench").expect("lab");
    let rx = Receiver::start(&lab.ns_b, 0).expect("receiver");
    let pid = lab
        .start_probe(&[
            "--controller",
            &rx.url(),
            "--token",
            "bench",
            "--interval",
            "1s",
        ])
        .expect("probe");
    if let Err(e) = rx.wait_until("the first report", Duration::from_secs(20), |r| {
        !r.is_empty()
    }) {
        panic!("{e}\n{}", lab.probe_log());
    }
    probe_lab::warm_up(&lab.ns_a, A4.parse().unwrap(), B4.parse().unwrap()).unwrap();
    // Idle cost first: three seconds with no traffic.
    let idle0 = (cpu_ns(pid), Instant::now());
    thread::sleep(Duration::from_secs(3));
    let idle_pct = 100.0 * (cpu_ns(pid) - idle0.0) as f64 / 1e9 / idle0.1.elapsed().as_secs_f64();
    let (_, rss_idle) = probe_lab::proc_usage(pid).unwrap();
    let before = rx.count();

    // Peak RSS, sampled while the flood runs.
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = {
        let (peak, done) = (peak.clone(), done.clone());
        thread::spawn(move || {
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                if let Ok((_, rss)) = probe_lab::proc_usage(pid) {
                    peak.fetch_max(rss, std::sync::atomic::Ordering::Relaxed);
                }
                thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let cpu0 = cpu_ns(pid);
    let (ticks0, _) = probe_lab::proc_usage(pid).unwrap();
    let t0 = Instant::now();
    let to: SocketAddr = format!("{B4}:4444").parse().unwrap();
    let from: SocketAddr = format!("{A4}:123").parse().unwrap();
    let (sent, secs) = probe_lab::send_udp(
        &lab.ns_a,
        from,
        to,
        PPS * SECONDS,
        PPS,
        64,
        Duration::from_secs(SECONDS + 5),
    )
    .expect("sender");
    let wall = t0.elapsed().as_secs_f64();
    let cpu = (cpu_ns(pid) - cpu0) as f64 / 1e9;
    let (ticks1, rss_end) = probe_lab::proc_usage(pid).unwrap();
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    watcher.join().unwrap();
    let rss_peak = peak.load(std::sync::atomic::Ordering::Relaxed).max(rss_end);

    let after = rx.count();
    let _ = rx.wait_until("the last report", Duration::from_secs(5), |r| {
        r.len() >= after + 2
    });
    let reports = rx.reports();
    let window = &reports[before..];
    let b4: std::net::IpAddr = B4.parse().unwrap();
    let mut est_packets = 0.0;
    let mut one_in = Vec::new();
    let mut sampled = 0;
    for r in window {
        one_in.push(r.report.one_in);
        sampled += r.report.sampled;
        if let Some(t) = r.report.targets.iter().find(|t| t.dst == b4) {
            est_packets += t.pps as f64 * f64::from(r.report.interval_ms) / 1000.0;
        }
    }
    one_in.sort_unstable();
    one_in.dedup();
    let rx_packets: u64 = window
        .iter()
        .flat_map(|r| &r.report.interfaces)
        .map(|i| i.rx_packets)
        .sum();

    eprintln!(
        "probe bench: {sent} UDP packets in {secs:.2} s = {:.0} pps achieved (goal {PPS})",
        sent as f64 / secs
    );
    eprintln!(
        "probe CPU: {:.3} s over {wall:.2} s = {:.2}% of one core (stat ticks: {} × 10 ms); goal ≤ 1%",
        cpu,
        100.0 * cpu / wall,
        ticks1 - ticks0
    );
    eprintln!("probe CPU idle: {idle_pct:.2}% of one core");
    eprintln!("probe RSS: {rss_idle} kB idle, {rss_peak} kB peak under load; goal ≤ 10240 kB");
    eprintln!(
        "probe estimate: {est_packets:.0} packets to {B4} (sent {sent}, interface counted {rx_packets}); \
         sampling 1 in {one_in:?}, {sampled} samples read ({:.0}/s)",
        sampled as f64 / wall
    );
    if std::env::var_os("PROBE_BENCH_LOG").is_some() {
        eprintln!("{}", lab.probe_log());
    }
    lab.kill_all();
}
