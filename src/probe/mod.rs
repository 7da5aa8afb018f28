//! `deflect probe`: the node agent. It watches this machine's interfaces and tells the controller,
//! once per interval, what arrived: interface counters, and per destination address an estimate of
//! the traffic by flow class and source (a [`Report`], see [`crate::telemetry`]).
//!
//! Design, for a probe that must stay cheap (goal: under 10 MB resident and 1% of one core while
//! 100k packets per second arrive) and correct under a flood:
//!
//! ```text
//!  kernel                        probe thread (this module)                    sender thread
//!  ------                        --------------------------                    -------------
//!  AF_PACKET + BPF filter  ──►  every 20 ms (100 idle): drain ─► parse ─► Aggregator
//!  (inbound, watched ifs,        every 50 ms: flood? raise N
//!   1 in N, 128 bytes)           interval end: RTM_GETLINK dump (counter deltas),
//!        ▲                         finish() → Report → MessagePack ─► Backlog (bounded) ──► POST /api/v1/telemetry
//!        │                         adapt N                                                  (keep-alive, back-off)
//!        └──── SO_ATTACH_FILTER ───┘
//! ```
//!
//! - Sampling happens in the kernel ([`sampler`]): a classic BPF filter drops outgoing packets and
//!   keeps one inbound packet in `N` (`SKF_AD_RANDOM`), cut to 128 bytes. `N` is a power of two
//!   that keeps at most about 2,000 samples a second reaching user space, whatever the load: raised
//!   within 50 ms when a flood starts, lowered (halved) at the end of a quiet interval. Each sample
//!   counts for the `N` in force when it was read, so a change within an interval keeps the
//!   estimates right; samples lost to a full socket queue are counted by the kernel and scale the
//!   estimates up.
//! - The probe's own thread owns the socket, the aggregation and the interval clock; it never waits
//!   on the network. The sender thread owns the HTTP connection ([`send`]). They share only the
//!   backlog, bounded in reports, oldest dropped first. No tokio: two threads suffice.
//! - Pure parts, unit-tested without a kernel: frame parsing ([`crate::traffic::packet`]), aggregation
//!   and the report's bounds ([`crate::traffic::aggregate`], shared with the sFlow collector), counter deltas ([`counters`]), the BPF program and the rate
//!   adaptation ([`sampler`]), back-off and backlog ([`send`]). `integration/probe.rs` runs the
//!   binary against real traffic between network namespaces; `benches/probe.rs` measures it.
//! - Needs `CAP_NET_RAW` (the packet socket), nothing else; no `unsafe` here (the one socket option
//!   no crate wraps, `PACKET_STATISTICS`, is in [`crate::sys`]).
//! - Runs until killed (SIGINT/SIGTERM end it at once; reports still in the backlog are lost).
//!
//! Known limitations: only interfaces with Ethernet framing are sampled (others report counters
//! only); at most 64 interfaces are sampled; interfaces chosen by default are re-evaluated every
//! interval, but a named interface that disappears is simply left out until it returns; the few
//! packets queued in the socket when `N` changes are counted at the new `N`; `one_in` in a report
//! is the rate in force at its end.

pub mod counters;
pub mod nft;
pub mod sampler;
pub mod send;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Args;
use ipnet::IpNet;
use tracing::{debug, error, info, info_span, warn};

use crate::api::tls::ClientTls;
use crate::telemetry::{Encoding, MAX_INTERFACES, Report};
use crate::traffic::aggregate::{Aggregator, Finished};
use counters::{Deltas, Link, Netlink};
use sampler::{Sampler, SamplerError};
use send::{Backlog, Client};

/// Shortest interval.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest interval.
pub const MAX_INTERVAL: Duration = Duration::from_secs(60);
/// How often the packet socket is drained within an interval.
const DRAIN_PERIOD: Duration = Duration::from_millis(20);
/// ... and how often at most when nothing arrives (doubling from `DRAIN_PERIOD`): an idle probe
/// wakes about ten times a second. A flood that starts meanwhile overflows the socket queue for
/// at most this long; the kernel counts what it drops and the estimate is scaled up.
const IDLE_DRAIN_PERIOD: Duration = Duration::from_millis(100);
/// Most packets read in one drain (the socket queue is bounded anyway; this bounds one pass).
const DRAIN_BUDGET: usize = 8192;
/// How often, within an interval, the sample rate is checked for a flood that needs a larger `N`.
const RAISE_CHECK: Duration = Duration::from_millis(50);
/// A flood that starts within an interval closes it early, so that detection does not wait for
/// the interval's end: when the packet rate seen since the last check is this many times the
/// previous interval's...
const SURGE_FACTOR: f64 = 4.0;
/// ...and at least this many packets a second.
const SURGE_MIN_PPS: f64 = 2000.0;
/// The shortest interval a surge closes (a report every 50 ms at most).
const SURGE_MIN_INTERVAL: Duration = Duration::from_millis(50);

/// The shortest time at one rate on which to judge it at the end of an interval.
const MIN_RATE_WINDOW: Duration = Duration::from_millis(200);

/// Samples read since an instant.
#[derive(Debug, Clone, Copy)]
struct Window {
    since: Instant,
    samples: u64,
}

impl Window {
    fn new(since: Instant) -> Window {
        Window { since, samples: 0 }
    }

    fn per_sec(&self, now: Instant) -> f64 {
        self.samples as f64 / (now - self.since).as_secs_f64().max(0.001)
    }
}

/// `deflect probe`.
#[derive(Debug, Clone, Args)]
pub struct ProbeArgs {
    /// The controller's base URL, e.g. https://192.0.2.10:8179 (or http:// where its API is
    /// plain HTTP).
    #[arg(long, env = "DEFLECT_CONTROLLER")]
    pub controller: String,
    /// The CA (PEM) the controller's certificate must chain to. Default: the public web's roots.
    #[arg(long, env = "DEFLECT_CA", value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// This node's certificate (PEM), for a controller that asks clients for one (api.tls.client_ca).
    #[arg(
        long,
        env = "DEFLECT_CLIENT_CERT",
        value_name = "FILE",
        requires = "client_key"
    )]
    pub client_cert: Option<std::path::PathBuf>,
    /// The key of --client-cert (PEM).
    #[arg(
        long,
        env = "DEFLECT_CLIENT_KEY",
        value_name = "FILE",
        requires = "client_cert"
    )]
    pub client_key: Option<std::path::PathBuf>,
    /// A bearer token the controller accepts for telemetry.
    #[arg(long, env = "DEFLECT_TOKEN", hide_env_values = true)]
    pub token: String,
    /// An interface to watch (repeat for more). Default: every non-loopback interface that is up.
    #[arg(long = "interface", value_name = "IF")]
    pub interfaces: Vec<String>,
    /// Report interval, 100ms to 60s (e.g. 1s, 250ms).
    #[arg(long, default_value = "1s", value_parser = parse_interval)]
    pub interval: Duration,
    /// This node's name in reports. Default: the hostname.
    #[arg(long)]
    pub node: Option<String>,
    /// Reports kept while the controller is unreachable (2 MB of reports at most); the oldest are
    /// dropped beyond.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub backlog: u32,
    /// Also append every report to this file, one JSON line each, for `deflect replay`
    /// (a report is a few kB: about 10 MB an hour at 1s; rotate it as any log).
    #[arg(long, value_name = "FILE")]
    pub record: Option<std::path::PathBuf>,
}

/// Parses an interval: a whole number with its unit (`ms`, `s` or `m`), between 100ms and 60s.
pub fn parse_interval(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if !s.ends_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!(
            "`{s}`: expected a number and a unit, like 1s or 250ms"
        ));
    }
    let d = crate::diag::parse_duration(s).ok_or_else(|| {
        format!("`{s}`: expected a number and a unit (ms, s or m), like 1s or 250ms")
    })?;
    if !(MIN_INTERVAL..=MAX_INTERVAL).contains(&d) {
        return Err(format!("`{s}`: the interval must be between 100ms and 60s"));
    }
    Ok(d)
}

/// Why the probe could not start (or stopped).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Sampler(#[from] SamplerError),
    #[error("unknown interface {name:?} (this namespace has: {have})")]
    UnknownInterface { name: String, have: String },
    #[error(
        "node name {0:?} is not usable in reports (1 to 64 letters, digits, '.', '-', '_'): pass --node"
    )]
    Node(String),
    #[error("cannot read the hostname ({0}): pass --node")]
    Hostname(std::io::Error),
    #[error("--controller {0:?}: expected https://HOST[:PORT] or http://HOST[:PORT]")]
    Controller(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("--record {0}: {1}")]
    Record(String, std::io::Error),
    #[error("rtnetlink: {0}")]
    Netlink(std::io::Error),
    #[error("cannot start the sender thread: {0}")]
    Thread(std::io::Error),
}

/// `deflect probe`: runs until killed; returns only when it cannot start or cannot go on.
pub fn main(args: ProbeArgs) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            error!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// The node name: `--node`, or the kernel's hostname; checked against the report's rules.
fn node_name(node: Option<&str>) -> Result<String, ProbeError> {
    let name = match node {
        Some(n) => n.to_string(),
        None => std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map_err(ProbeError::Hostname)?
            .trim()
            .to_string(),
    };
    let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
    if name.is_empty() || name.len() > 64 || !name.chars().all(ok_char) {
        return Err(ProbeError::Node(name));
    }
    Ok(name)
}

fn check_interfaces(links: &[Link], names: &[String]) -> Result<(), ProbeError> {
    for name in names {
        if !links.iter().any(|l| &l.name == name) {
            let mut have: Vec<&str> = links.iter().map(|l| l.name.as_str()).collect();
            have.sort_unstable();
            return Err(ProbeError::UnknownInterface {
                name: name.clone(),
                have: have.join(", "),
            });
        }
    }
    Ok(())
}

/// Interface indexes to sample: the selected interfaces with Ethernet framing.
fn sampled(selected: &[&Link]) -> Vec<u32> {
    let mut v: Vec<u32> = selected
        .iter()
        .filter(|l| l.ethernet)
        .map(|l| l.index)
        .collect();
    v.sort_unstable();
    v.truncate(sampler::MAX_IFINDEXES);
    v
}

fn run(args: ProbeArgs) -> Result<(), ProbeError> {
    let node = node_name(args.node.as_deref())?;
    let span = info_span!("probe", node = %node);
    let _g = span.enter();
    let controller = args.controller.trim();
    let host = controller
        .strip_prefix("https://")
        .or_else(|| controller.strip_prefix("http://"));
    if host.is_none_or(str::is_empty) {
        return Err(ProbeError::Controller(args.controller.clone()));
    }
    let tls = ClientTls {
        ca: args.ca.clone(),
        cert: args.client_cert.clone(),
        key: args.client_key.clone(),
    };
    if controller.starts_with("http://") && tls != ClientTls::default() {
        return Err(ProbeError::Tls(
            "--ca and --client-cert are for an https:// controller".into(),
        ));
    }

    let mut netlink = Netlink::open().map_err(ProbeError::Netlink)?;
    let links = netlink.links().map_err(ProbeError::Netlink)?;
    check_interfaces(&links, &args.interfaces)?;
    let mut sampler = Sampler::open()?;

    let mut deltas = Deltas::new();
    let selected = counters::select(&links, &args.interfaces);
    deltas.update(&selected);
    let mut ifindexes = sampled(&selected);
    sampler.configure(&ifindexes, 1).map_err(SamplerError::Io)?;
    let names: Vec<&str> = selected.iter().map(|l| l.name.as_str()).collect();
    if selected.len() > ifindexes.len() {
        warn!(
            "only interfaces with Ethernet framing are sampled (at most 64); the others report counters only"
        );
    }
    if selected.is_empty() {
        warn!(
            "no interface to watch yet (none is up besides loopback); reports will be empty until one is"
        );
    }

    let backlog = Backlog::new(args.backlog as usize);
    let mut record = match &args.record {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| ProbeError::Record(p.display().to_string(), e))?,
        ),
        None => None,
    };
    let wanted_drops: nft::Wanted = Default::default();
    let mut applied = nft::Applied::default();
    // The controller's trusted sources, from its answers; taken out of the next interval.
    let trusted: Arc<Mutex<Vec<IpNet>>> = Default::default();
    let client = Client::with_tls(controller, &args.token, &tls)
        .map_err(ProbeError::Tls)?
        .with_capture(sampler.capture.wanted.clone())
        .with_drops(wanted_drops.clone())
        .with_trusted(trusted.clone());
    info!(
        interfaces = %names.join(","),
        interval = ?args.interval,
        url = client.url(),
        backlog = args.backlog,
        "probe started"
    );
    // Detached: it lives as long as the process, which ends when this loop does.
    let _sender = send::spawn(backlog.clone(), client, span.clone()).map_err(ProbeError::Thread)?;

    let mut agg = Aggregator::new();
    let mut start = Instant::now();
    let mut deadline = start + args.interval;
    let mut seq = 0u64;
    let mut recv_error_logged = false;
    // Samples read since the last check for a flood, and since the rate in force was set.
    let mut check = Window::new(start);
    let mut at_rate = Window::new(start);
    let mut nap = DRAIN_PERIOD;
    // Packets a second in the last interval, for surges.
    let mut last_pps = f64::INFINITY;
    loop {
        match sampler.drain(&mut agg, DRAIN_BUDGET) {
            Ok((read, lost)) => {
                check.samples += read + lost;
                at_rate.samples += read + lost;
                nap = if read == 0 {
                    (nap * 2).min(IDLE_DRAIN_PERIOD)
                } else {
                    DRAIN_PERIOD
                };
            }
            Err(e) if !recv_error_logged => {
                warn!("reading the packet socket: {e}");
                recv_error_logged = true;
            }
            Err(_) => {}
        }
        let now = Instant::now();
        if now < deadline {
            // A flood that starts within an interval raises the rate at once, not at its end; twice
            // the target, so that the noise of a short window does not move it.
            if now - check.since >= RAISE_CHECK {
                let rate = check.per_sec(now);
                let one_in = sampler.one_in();
                let pps = rate * f64::from(one_in);
                if pps >= SURGE_MIN_PPS
                    && pps >= SURGE_FACTOR * last_pps
                    && now - start >= SURGE_MIN_INTERVAL
                {
                    debug!(
                        pps = pps as u64,
                        last_pps = last_pps as u64,
                        "surge: reporting now"
                    );
                    deadline = now;
                    continue;
                }
                if rate > 2.0 * sampler::TARGET_MAX {
                    let next = sampler::next_one_in(one_in, rate);
                    if next != one_in {
                        sampler
                            .configure(&ifindexes, next)
                            .map_err(SamplerError::Io)?;
                        debug!(
                            from = one_in,
                            to = next,
                            samples_per_sec = rate as u64,
                            "sampling rate"
                        );
                        at_rate = Window::new(now);
                    }
                }
                check = Window::new(now);
            }
            thread::sleep(nap.min(deadline - now));
            continue;
        }

        // The interval is over: close it (the last drain was just above).
        let end = Instant::now();
        let elapsed = end - start;
        let interfaces = match netlink.links() {
            Ok(links) => {
                let selected = counters::select(&links, &args.interfaces);
                ifindexes = sampled(&selected);
                let mut v = deltas.update(&selected);
                v.truncate(MAX_INTERFACES);
                v
            }
            Err(e) => {
                warn!("rtnetlink dump failed, no counters this interval: {e}");
                Vec::new()
            }
        };
        let one_in = sampler.one_in();
        let samples = agg.samples();
        if agg.untracked() > 0 {
            debug!(
                untracked = agg.untracked(),
                "too many destinations to track them all"
            );
        }
        let next = Aggregator::new().with_trusted(
            trusted
                .lock()
                .map(|l| l.clone())
                .unwrap_or_else(|e| e.into_inner().clone()),
        );
        let Finished { targets, rollups } = std::mem::replace(&mut agg, next).finish_all(elapsed);
        last_pps = targets.iter().map(|t| t.pps as f64).sum::<f64>();
        applied.sync(&wanted_drops);
        let report = Report {
            node: node.clone(),
            seq,
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            interval_ms: elapsed.as_millis().clamp(50, 60_000) as u32,
            one_in,
            sampled: samples,
            interfaces,
            targets,
            rollups,
            packets: std::mem::take(&mut sampler.capture.frames),
            applied: applied.ids(),
            drop_error: applied.error.clone(),
        };
        match report.validate() {
            Ok(()) => {
                if let Some(f) = record.as_mut() {
                    use std::io::Write;
                    let line = Encoding::Json.encode(&report);
                    if let Err(e) = f.write_all(&line).and_then(|()| f.write_all(b"\n")) {
                        warn!("recording stopped: {e}");
                        record = None;
                    }
                }
                let body = Encoding::MessagePack.encode(&report);
                if let Some(dropped) = backlog.push(seq, body) {
                    debug!(dropped, "backlog full: dropped the oldest report");
                }
            }
            Err(e) => error!(seq, "report not sent: {e}"),
        }

        // Judge the rate in force on at least a fifth of a second of it (it may be new).
        let rate = at_rate.per_sec(end);
        let next = if end - at_rate.since >= MIN_RATE_WINDOW {
            sampler::next_one_in(one_in, rate)
        } else {
            one_in
        };
        if next != one_in {
            debug!(
                from = one_in,
                to = next,
                samples_per_sec = rate as u64,
                "sampling rate"
            );
            at_rate = Window::new(end);
        }
        sampler
            .configure(&ifindexes, next)
            .map_err(SamplerError::Io)?;
        seq += 1;
        start = end;
        deadline += args.interval;
        if deadline <= end {
            // Fell behind, or closed early by a surge: the next interval is a whole one.
            deadline = end + args.interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(parse_interval("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_interval("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_interval("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_interval("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_interval("1m"), Ok(Duration::from_secs(60)));
        for bad in [
            "99ms",
            "61s",
            "2m",
            "1",
            "s",
            "",
            "1.5s",
            "-1s",
            "1h",
            "18446744073709551615m",
        ] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_names() {
        assert_eq!(node_name(Some("edge-1.fra")).unwrap(), "edge-1.fra");
        assert!(matches!(node_name(Some("a b")), Err(ProbeError::Node(_))));
        assert!(matches!(node_name(Some("")), Err(ProbeError::Node(_))));
        assert!(node_name(None).is_ok() || matches!(node_name(None), Err(ProbeError::Node(_))));
    }

    #[test]
    fn unknown_interface_is_named() {
        let links = Netlink::open().unwrap().links().unwrap();
        let err = check_interfaces(&links, &["nosuch0".into()])
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"nosuch0\"") && err.contains("lo"), "{err}");
        check_interfaces(&links, &["lo".into()]).unwrap();
    }

    #[test]
    fn probe_args_parse_with_defaults() {
        use clap::Parser;
        #[derive(Debug, Parser)]
        struct Cli {
            #[command(flatten)]
            probe: ProbeArgs,
        }
        let cli = Cli::try_parse_from([
            "probe",
            "--controller",
            "http://192.0.2.10:8179",
            "--token",
            "t",
            "--interface",
            "eth0",
            "--interface",
            "eth1",
        ])
        .unwrap();
        assert_eq!(cli.probe.interfaces, ["eth0", "eth1"]);
        assert_eq!(cli.probe.interval, Duration::from_secs(1));
        assert_eq!(cli.probe.backlog, 300);
        assert!(
            Cli::try_parse_from([
                "probe",
                "--controller",
                "x",
                "--token",
                "t",
                "--interval",
                "10ms"
            ])
            .is_err()
        );
        assert!(
            Cli::try_parse_from([
                "probe",
                "--controller",
                "x",
                "--token",
                "t",
                "--backlog",
                "0"
            ])
            .is_err()
        );
    }
}
