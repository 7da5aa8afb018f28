//! `deflect probe` on a real kernel: the real binary runs in a network namespace joined by a veth pair
//! to another one, from which a bounded flood is sent; what the probe reports to a local receiver is
//! checked against what was sent: interface counters, the flood's target and flow class with an
//! estimate within a factor of two, TCP SYNs with their flags, IPv6, the node name and token.
//! Then the backlog: a controller that is down for a while gets, once up, at most the backlog's
//! bound of queued reports, in order. And the two startup errors a user meets first.
//!
//! Needs root (network namespaces) and `ip`; skips with a message otherwise.

#[path = "probe_lab/mod.rs"]
mod probe_lab;

use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use deflect::telemetry::{Flow, Report, Target};
use probe_lab::{A4, A6, B4, B6, Lab, Received, Receiver};

const WAIT: Duration = Duration::from_secs(20);

macro_rules! skip_unless_lab {
    () => {
        if let Some(why) = probe_lab::unavailable() {
            eprintln!("skipping: {why}");
            return;
        }
    };
}

fn addr(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(ip.parse().unwrap(), port)
}

fn target<'a>(r: &'a Report, dst: &str) -> Option<&'a Target> {
    let dst: IpAddr = dst.parse().unwrap();
    r.targets.iter().find(|t| t.dst == dst)
}

/// Estimated packets (rate × interval) of the flows matching `f`, to `dst`, over `reports`, and
/// the largest rate seen.
fn estimate(reports: &[Received], dst: &str, f: impl Fn(&Flow) -> bool) -> (f64, u64) {
    let mut total = 0.0;
    let mut max = 0;
    for r in reports {
        let Some(t) = target(&r.report, dst) else {
            continue;
        };
        let pps: u64 = t.flows.iter().filter(|fl| f(fl)).map(|fl| fl.pps).sum();
        total += pps as f64 * f64::from(r.report.interval_ms) / 1000.0;
        max = max.max(pps);
    }
    (total, max)
}

fn rx_packets(reports: &[Received], ifname: &str) -> u64 {
    reports
        .iter()
        .flat_map(|r| &r.report.interfaces)
        .filter(|i| i.name == ifname)
        .map(|i| i.rx_packets)
        .sum()
}

/// Waits for `n` more reports than `after`, or fails with the probe's log.
fn wait_reports(lab: &Lab, rx: &Receiver, what: &str, n: usize) {
    if let Err(e) = rx.wait_until(what, WAIT, |r| r.len() >= n) {
        panic!("{e}\nprobe log:\n{}", lab.probe_log());
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

fn within(what: &str, got: f64, want: f64) {
    eprintln!("{what}: estimated {got:.0}, actual {want:.0}");
    assert!(
        got >= want * 0.5 && got <= want * 2.0,
        "{what}: estimated {got:.0}, actual {want:.0} (not within 0.5x..2x)"
    );
}

#[test]
fn ipv4_udp_flood_and_syns_are_counted_and_estimated() {
    skip_unless_lab!();
    let mut lab = Lab::new("v4").unwrap();
    let rx = Receiver::start(&lab.ns_b, 0).unwrap();
    lab.start_probe(&[
        "--controller",
        &rx.url(),
        "--token",
        "t0k3n",
        "--interval",
        "500ms",
    ])
    .unwrap();
    wait_reports(&lab, &rx, "the first report", 1);
    probe_lab::warm_up(&lab.ns_a, A4.parse().unwrap(), B4.parse().unwrap()).unwrap();
    let before = rx.count();

    // 20,000 datagrams from the NTP port at 8,000 per second, then 300 SYNs to port 80.
    let (sent, secs) = probe_lab::send_udp(
        &lab.ns_a,
        addr(A4, 123),
        addr(B4, 4444),
        20_000,
        8_000,
        100,
        Duration::from_secs(10),
    )
    .unwrap();
    let syns = probe_lab::send_syns(&lab.ns_a, addr(B4, 80), 300).unwrap();
    assert_eq!(sent, 20_000, "the sender could not send everything in time");
    // Three more intervals so the last packets are in a report.
    let after = rx.count();
    wait_reports(&lab, &rx, "reports after the flood", after + 3);
    let all = rx.reports();
    let reports = &all[before..];

    for r in &all {
        assert_eq!(
            r.report.node,
            hostname(),
            "node name defaults to the hostname"
        );
        assert_eq!(r.auth, "Bearer t0k3n");
        let names: Vec<&str> = r
            .report
            .interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        assert_eq!(names, [lab.veth_b.as_str()], "default: up, not loopback");
    }
    let seqs: Vec<u64> = all.iter().map(|r| r.report.seq).collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");

    let rx_pkts = rx_packets(reports, &lab.veth_b);
    let expected = sent + syns;
    assert!(
        rx_pkts as f64 >= expected as f64 * 0.99,
        "rx_packets {rx_pkts} < sent {expected}"
    );

    let (total, max_pps) = estimate(reports, B4, |f| {
        f.proto == 17 && f.sport == Some(123) && f.dport == Some(4444)
    });
    within("UDP sport 123 packets", total, sent as f64);
    within(
        "UDP sport 123 peak rate",
        max_pps as f64,
        sent as f64 / secs,
    );
    assert!(
        reports.iter().any(|r| r.report.one_in > 1),
        "8,000 pps must raise the sampling rate above 1 in 1"
    );
    let t = reports.iter().find_map(|r| target(&r.report, B4)).unwrap();
    assert!(
        t.sources
            .iter()
            .any(|s| s.addr == A4.parse::<IpAddr>().unwrap())
    );
    assert!(
        t.bps > t.pps * 8 * 100,
        "bytes counted from the IP length, not the 128-byte capture"
    );

    let (syn_total, _) = estimate(reports, B4, |f| {
        f.proto == 6 && f.dport == Some(80) && f.tcp_flags == Some(0x02) && f.sport.is_none()
    });
    assert!(syn_total > 0.0, "no SYN flow to port 80 reported");
    assert!(
        target(&reports[0].report, A4).is_none()
            && reports.iter().all(|r| target(&r.report, A4).is_none()),
        "outgoing packets (RSTs, ICMP errors to {A4}) must not be sampled"
    );
    assert!(rx.invalid.lock().unwrap().is_empty());
}

#[test]
fn ipv6_udp_flood_is_estimated() {
    skip_unless_lab!();
    let mut lab = Lab::new("v6").unwrap();
    let rx = Receiver::start(&lab.ns_b, 0).unwrap();
    let veth_b = lab.veth_b.clone();
    lab.start_probe(&[
        "--controller",
        &rx.url(),
        "--token",
        "t",
        "--interface",
        &veth_b,
        "--node",
        "edge-6.test",
    ])
    .unwrap();
    wait_reports(&lab, &rx, "the first report", 1);
    probe_lab::warm_up(&lab.ns_a, A6.parse().unwrap(), B6.parse().unwrap()).unwrap();
    let before = rx.count();
    let (sent, secs) = probe_lab::send_udp(
        &lab.ns_a,
        addr(A6, 53),
        addr(B6, 4444),
        12_000,
        4_000,
        200,
        Duration::from_secs(10),
    )
    .unwrap();
    assert_eq!(sent, 12_000);
    let after = rx.count();
    wait_reports(&lab, &rx, "reports after the flood", after + 2);
    let all = rx.reports();
    let reports = &all[before..];
    assert!(all.iter().all(|r| r.report.node == "edge-6.test"));
    assert!(rx_packets(reports, &veth_b) as f64 >= sent as f64 * 0.99);
    let (total, max_pps) = estimate(reports, B6, |f| {
        f.proto == 17 && f.sport == Some(53) && f.dport == Some(4444)
    });
    within("IPv6 UDP sport 53 packets", total, sent as f64);
    within(
        "IPv6 UDP sport 53 peak rate",
        max_pps as f64,
        sent as f64 / secs,
    );
    let t = reports.iter().find_map(|r| target(&r.report, B6)).unwrap();
    assert_eq!(t.sources[0].addr, A6.parse::<IpAddr>().unwrap());
}

#[test]
fn backlog_is_bounded_and_delivered_in_order_once_the_controller_is_up() {
    skip_unless_lab!();
    let mut lab = Lab::new("bl").unwrap();
    let port = Receiver::free_port(&lab.ns_b).unwrap();
    let url = format!("http://127.0.0.1:{port}");
    lab.start_probe(&[
        "--controller",
        &url,
        "--token",
        "t",
        "--interval",
        "100ms",
        "--backlog",
        "5",
    ])
    .unwrap();
    // Down for about 15 intervals: three times the backlog.
    let down = std::time::Instant::now();
    while !lab.probe_log().contains("controller unreachable") {
        assert!(down.elapsed() < WAIT, "probe log:\n{}", lab.probe_log());
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    let up_ms = probe_lab::now_ms();
    let rx = Receiver::start(&lab.ns_b, port).unwrap();
    if let Err(e) = rx.wait_until("fresh reports after the backlog", WAIT, |r| {
        r.iter().filter(|x| x.report.time_ms > up_ms).count() >= 5
    }) {
        panic!("{e}\nprobe log:\n{}", lab.probe_log());
    }
    let all = rx.reports();
    let seqs: Vec<u64> = all.iter().map(|r| r.report.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "in order, no gap after the backlog: {seqs:?}"
    );
    assert!(seqs[0] >= 10, "the oldest reports were dropped: {seqs:?}");
    // Every report made before the controller came up was queued, so at most the bound of them
    // can arrive; the first delivery empties a full backlog in one burst.
    let before_up = all.iter().filter(|r| r.report.time_ms < up_ms).count();
    assert!(
        before_up <= 5,
        "{before_up} reports from before the controller was up"
    );
    let burst = all
        .iter()
        .filter(|r| r.report.time_ms < all[0].at_ms)
        .count();
    assert!(
        burst >= 5,
        "the backlog was full: {burst} queued reports arrived"
    );
    let log = lab.probe_log();
    let waiting: usize = log
        .split_once("sending the backlog (")
        .and_then(|(_, rest)| rest.split_once(' '))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no recovery in the log:\n{log}"));
    assert!(
        waiting <= 5,
        "{waiting} still waiting after the first delivery: over the bound"
    );
}

#[test]
fn an_unknown_interface_is_named() {
    skip_unless_lab!();
    let out = Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args([
            "probe",
            "--controller",
            "http://127.0.0.1:9",
            "--token",
            "t",
        ])
        .args(["--interface", "lo", "--interface", "nosuch0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(r#"unknown interface "nosuch0""#), "{err}");
}

#[test]
fn without_cap_net_raw_the_probe_says_how_to_grant_it() {
    skip_unless_lab!();
    // As nobody, with no capabilities at all.
    let out = match Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_deflect"))
        .args([
            "probe",
            "--controller",
            "http://127.0.0.1:9",
            "--token",
            "t",
            "--interface",
            "lo",
        ])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("skipping: setpriv: {e}");
            return;
        }
    };
    let err = String::from_utf8_lossy(&out.stderr);
    if err.contains("Permission denied") && !err.contains("CAP_NET_RAW") {
        eprintln!("skipping: nobody cannot run the test binary here: {err}");
        return;
    }
    assert!(!out.status.success());
    assert!(
        err.contains("deflect probe needs CAP_NET_RAW: run as root or `setcap cap_net_raw+ep $(which deflect)`"),
        "{err}"
    );
}
