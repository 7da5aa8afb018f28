//! `deflect replay`: detection and the policies over recorded traffic, on the recording's own
//! timeline, announcing nothing. It prints the attacks deflect would have seen and the
//! mitigations it would have made (text, or `--json`).
//!
//! ```text
//!  files ──► input (captures: probe aggregator / sFlow agents; JSON lines of reports)
//!              │ reports with node and arrival time, merged in time order
//!              ▼
//!  engine::Replay (the daemon's engine on a manual clock) ──► mitigation set (a scratch store,
//!              │ timer every tick, as the daemon's             the configuration's neighbors as
//!              ▼                                               peers that never connect)
//!  attacks, mitigations, the audit log of what was decided ──► stdout
//! ```
//!
//! The configuration (`--config`, or the embedded defaults) gives detection's groups and
//! thresholds, the guardrails, the neighbors and the policy directory (`--policies` overrides
//! it). After the recording each of its sources goes on reporting quiet intervals, as a probe
//! whose traffic stopped, until nothing waits any more (an attack's hold-down, probation) or
//! `--tail` has passed: the withdrawals that would have followed are part of the answer.

mod input;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::Serialize;
use tokio_util::sync::CancellationToken;

use self::input::{FileInfo, Options, Timed};
use crate::audit::AuditEntry;
use crate::clock::Clock;
use crate::config::{Config, Settings};
use crate::detect::Attack;
use crate::engine::{self, Replay};
use crate::mitigation::store::Store;
use crate::mitigation::{self, ListFilter, Mitigation};
use crate::peer::{self, Mode, PeerHandle};
use crate::telemetry::Report;

/// `deflect replay` arguments.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Recordings: pcap or pcapng captures (traffic as a probe samples it, and sFlow datagrams),
    /// or JSON lines of probe reports. Several are merged on one timeline.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// The configuration (detection, guardrails, neighbors, policies); embedded defaults without.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// A policy directory to try instead of the configuration's.
    #[arg(long, value_name = "DIR")]
    pub policies: Option<PathBuf>,
    /// Print JSON: the recording, attacks, mitigations and the decisions' log.
    #[arg(long)]
    pub json: bool,
    /// The probe's interval, for captures of traffic.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// The sampling rate captures of traffic were taken at: each frame stands for this many.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub one_in: u32,
    /// The node name for captures of traffic.
    #[arg(long, default_value = "replay")]
    pub node: String,
    /// UDP destination port of the sFlow datagrams in captures.
    #[arg(long, default_value_t = 6343)]
    pub sflow_port: u16,
    /// UDP destination ports of the NetFlow v5/v9 and IPFIX datagrams in captures.
    #[arg(long = "netflow-port", default_values_t = [2055, 4739, 9995, 9996])]
    pub netflow_ports: Vec<u16>,
    /// Most time the replay runs on after the recording, waiting for withdrawals.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    pub tail: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::diag::parse_duration(s)
        .ok_or_else(|| format!("{s:?}: expected a duration such as 500ms, 1s, 2m, 1h"))
}

/// What a replay found.
#[derive(Debug, Serialize)]
pub struct Outcome {
    pub files: Vec<FileInfo>,
    /// The recording's first and last report, and when the replay stopped.
    pub start_ms: u64,
    pub end_ms: u64,
    pub stopped_ms: u64,
    /// Nodes in the recording.
    pub nodes: Vec<String>,
    /// Where the policies came from.
    pub policies: String,
    pub attacks: Vec<Attack>,
    pub mitigations: Vec<Mitigation>,
    /// The audit log of the decisions, on the recording's timeline.
    pub log: Vec<LogLine>,
}

/// One audit entry, without its hash chain.
#[derive(Debug, Serialize)]
pub struct LogLine {
    pub time_ms: u64,
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

impl From<AuditEntry> for LogLine {
    fn from(e: AuditEntry) -> LogLine {
        LogLine {
            time_ms: e.time_ms,
            actor: e.actor,
            action: e.action,
            detail: e.detail,
        }
    }
}

pub fn main(args: ReplayArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("deflect replay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let out = match rt.block_on(replay(&args)) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("deflect replay: {e}");
            return ExitCode::FAILURE;
        }
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&out) {
            Ok(s) => s + "\n",
            Err(e) => {
                eprintln!("deflect replay: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        text(&out)
    };
    use std::io::Write;
    if std::io::stdout().lock().write_all(text.as_bytes()).is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

/// A scratch directory for the replay's store, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Result<Scratch, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let dir =
            std::env::temp_dir().join(format!("deflect-replay-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the replay.
pub async fn replay(args: &ReplayArgs) -> Result<Outcome, String> {
    let mut settings = match &args.config {
        Some(p) => Config::load(p),
        None => Config::embedded(),
    }
    .map_err(|e| e.to_string())?;
    if let Some(dir) = &args.policies {
        settings.policy_dir = Some(dir.clone());
    }
    let policies = settings.load_policies().map_err(|e| e.to_string())?;
    let source = policies
        .dir
        .as_ref()
        .map_or_else(|| "<shipped>".to_string(), |d| d.display().to_string());

    let opts = Options {
        interval: args.interval,
        one_in: args.one_in,
        node: args.node.clone(),
        sflow_port: args.sflow_port,
        netflow_ports: args.netflow_ports.clone(),
        max_errors: 20,
        agents: settings
            .sflow
            .as_ref()
            .map(|c| c.agents.clone())
            .unwrap_or_default(),
        exporters: settings
            .netflow
            .as_ref()
            .map(|c| c.exporters.clone())
            .unwrap_or_default(),
        max_delay: settings
            .netflow
            .as_ref()
            .map_or(crate::collector::netflow::DEFAULT_MAX_DELAY, |c| {
                c.max_delay
            }),
        trusted: settings.detection.trusted_sources.clone(),
    };
    let mut reports: Vec<Timed> = Vec::new();
    let mut files = Vec::new();
    for f in &args.files {
        let (mut r, info) = input::read(f, &opts)?;
        reports.append(&mut r);
        files.push(info);
    }
    // Stable: reports of one instant keep their file's order.
    reports.sort_by_key(|t| t.at_ms);
    let (Some(first), Some(last)) = (reports.first(), reports.last()) else {
        return Err("no report in the recording (nothing read: see the files' errors)".into());
    };
    let (start_ms, end_ms) = (first.at_ms, last.at_ms);
    // Each node's cadence and last sequence number, to go on reporting quiet after the recording.
    let mut nodes: BTreeMap<String, (u32, u32, u64)> = BTreeMap::new();
    for t in &reports {
        nodes.insert(
            t.node.clone(),
            (t.report.interval_ms.max(50), t.report.one_in, t.report.seq),
        );
    }

    let clock = Clock::manual(
        start_ms.saturating_sub(u64::from(nodes.values().map(|n| n.0).max().unwrap_or(1000))),
    );
    let scratch = Scratch::new()?;
    let store = Store::open(&scratch.0).map_err(|e| e.to_string())?;
    let stop = CancellationToken::new();
    let peers = idle_peers(&settings);
    let (mitigations, set_task) = mitigation::start(
        store,
        settings.guardrails.clone(),
        peers.clone(),
        settings.local_as,
        clock.clone(),
        stop.clone(),
    )
    .await
    .map_err(|e| e.to_string())?;
    let setup = engine::Setup {
        settings: settings.detection.clone(),
        policies,
        known: settings.known(),
        ioc: crate::ioc::Lists::load(&settings.ioc),
    };
    let mut replay = Replay::start(setup, mitigations.clone(), clock.clone()).await;
    for t in &reports {
        replay.report(&t.node, &t.report, t.at_ms).await;
    }
    // The tail: every node reports quiet intervals until nothing waits, or the tail is over.
    let deadline = end_ms.saturating_add(args.tail.as_millis() as u64);
    let mut next: BTreeMap<String, (u64, u64)> = nodes
        .iter()
        .map(|(n, (every, _, seq))| {
            (
                n.clone(),
                (
                    end_ms.saturating_add(u64::from(*every)),
                    seq.saturating_add(1),
                ),
            )
        })
        .collect();
    while replay.busy() {
        let Some((node, (at, seq))) = next
            .iter()
            .min_by_key(|(_, (at, _))| *at)
            .map(|(n, v)| (n.clone(), *v))
        else {
            break;
        };
        if at > deadline {
            break;
        }
        let (every, one_in, _) = nodes[&node];
        let quiet = Report {
            node: node.clone(),
            seq,
            time_ms: at,
            interval_ms: every,
            one_in,
            ..Report::default()
        };
        replay.report(&node, &quiet, at).await;
        next.insert(
            node,
            (at.saturating_add(u64::from(every)), seq.saturating_add(1)),
        );
    }
    let stopped_ms = replay.now_ms();
    let attacks = replay.attacks();
    let all = ListFilter {
        all: Some(true),
        ..ListFilter::default()
    };
    let mut made = mitigations.list(all).await.map_err(|e| e.to_string())?;
    made.sort_by_key(|m| m.id);
    let log = mitigations
        .audit(0, usize::MAX)
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(LogLine::from)
        .collect();
    drop(replay);
    stop.cancel();
    let _ = set_task.await;
    for (_, p) in &peers {
        p.shutdown("replay over").await;
    }
    Ok(Outcome {
        files,
        start_ms,
        end_ms,
        stopped_ms,
        nodes: nodes.into_keys().collect(),
        policies: source,
        attacks,
        mitigations: made,
        log,
    })
}

/// The configuration's neighbors as peers that only wait for a connection that never comes:
/// the set decides for them exactly as for live ones, and nothing is sent.
fn idle_peers(settings: &Settings) -> Vec<(crate::peer::Neighbor, PeerHandle)> {
    settings
        .neighbors
        .iter()
        .map(|n| {
            let mut c = n.peer.clone();
            c.mode = Mode::Passive;
            (n.clone(), peer::spawn(c))
        })
        .collect()
}

/// Time on the recording's timeline, from its first report.
fn at(out: &Outcome, ms: u64) -> String {
    let d = ms as i64 - out.start_ms as i64;
    format!(
        "{}{:.1}s",
        if d < 0 { "-" } else { "+" },
        d.unsigned_abs() as f64 / 1000.0
    )
}

/// The human form.
fn text(out: &Outcome) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for f in &out.files {
        let _ = writeln!(
            s,
            "{} ({}): {} reports{}{}{}",
            f.file,
            f.format,
            f.reports,
            if f.frames > 0 {
                format!(
                    ", {} frames ({} traffic, {} sFlow, {} NetFlow/IPFIX)",
                    f.frames, f.traffic, f.sflow_datagrams, f.netflow_datagrams
                )
            } else {
                String::new()
            },
            if f.skipped > 0 {
                format!(", {} skipped", f.skipped)
            } else {
                String::new()
            },
            f.errors
                .iter()
                .map(|e| format!("\n  {e}"))
                .collect::<String>()
        );
    }
    let _ = writeln!(
        s,
        "recording: {:.1} s from {} node(s) [{}]; policies {}; replay ran to {}\n",
        (out.end_ms - out.start_ms) as f64 / 1000.0,
        out.nodes.len(),
        out.nodes.join(", "),
        out.policies,
        at(out, out.stopped_ms)
    );
    let _ = writeln!(s, "attacks: {}", out.attacks.len());
    for a in &out.attacks {
        let _ = writeln!(
            s,
            "  {} {} {} [{}] {} to {}, peak {} pps, policy {}, mitigations {:?}",
            a.id,
            a.target,
            a.vector,
            signature(a),
            at(out, a.started_ms),
            a.ended_ms.map_or("(going on)".to_string(), |t| at(out, t)),
            a.peak_pps,
            a.policy.as_deref().unwrap_or("-"),
            a.mitigations
        );
    }
    let _ = writeln!(s, "\nmitigations: {}", out.mitigations.len());
    for m in &out.mitigations {
        let _ = writeln!(
            s,
            "  {} {} {} {} to {}{}",
            m.id,
            m.kind,
            m.rule
                .clone()
                .or_else(|| m.prefix.map(|p| p.to_string()))
                .unwrap_or_default(),
            at(out, m.created_ms),
            m.withdrawn_ms
                .map_or("(in place)".to_string(), |t| at(out, t)),
            m.withdraw_reason
                .as_ref()
                .map_or(String::new(), |r| format!(" ({r})"))
        );
    }
    let _ = writeln!(s, "\nlog:");
    for l in &out.log {
        let _ = writeln!(
            s,
            "  {} {} {} {}",
            at(out, l.time_ms),
            l.actor,
            l.action,
            l.detail
        );
    }
    s
}

/// An attack's signature in a few words.
fn signature(a: &Attack) -> String {
    let g = &a.signature;
    let mut v = Vec::new();
    if let Some(p) = g.proto {
        v.push(format!("proto {p}"));
    }
    if !g.sports.is_empty() {
        v.push(format!("sport {:?}", g.sports));
    }
    if !g.dports.is_empty() {
        v.push(format!("dport {:?}", g.dports));
    }
    if let Some((on, off)) = g.tcp_flags {
        v.push(format!("flags {on:#04x}/{off:#04x}"));
    }
    if g.fragment {
        v.push("fragments".into());
    }
    if let Some(svc) = &g.service {
        v.push(svc.clone());
    }
    v.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(seq: u64, t: u64, ntp_pps: u64) -> String {
        serde_json::json!({
            "node": "n1", "seq": seq, "time_ms": t, "interval_ms": 1000,
            "targets": [{"dst": "192.0.2.10", "pps": ntp_pps + 100, "bps": ntp_pps * 3744 + 80_000,
                "flows": [
                    {"proto": 17, "sport": 123, "pps": ntp_pps, "bps": ntp_pps * 3744},
                    {"proto": 6, "dport": 443, "tcp_flags": 16, "pps": 100, "bps": 80_000}
                ]}]
        })
        .to_string()
    }

    /// A recording of reports: an NTP flood for ten seconds, quiet, then one report stamped ten
    /// years later (a damaged clock): the replay finds the attack and its rule, withdraws it, and
    /// the gap costs no time.
    #[tokio::test]
    async fn a_recording_replays_on_its_timeline_and_a_gap_of_years_costs_nothing() {
        let dir = std::env::temp_dir().join(format!("deflect-replay-mod-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("r.jsonl");
        let t0 = 1_780_000_000_000u64;
        let mut text = String::new();
        for i in 0..60 {
            let pps = if (10..20).contains(&i) { 200_000 } else { 0 };
            text += &line(i, t0 + i * 1000, pps);
            text.push('\n');
        }
        text += &line(u64::MAX, t0 + 10 * 365 * 86_400_000, 0);
        text.push('\n');
        std::fs::write(&file, text).unwrap();
        let args = ReplayArgs {
            files: vec![file],
            config: None,
            policies: Some(dir.join("none")),
            json: true,
            interval: Duration::from_secs(1),
            one_in: 1,
            node: "replay".into(),
            sflow_port: 6343,
            netflow_ports: vec![2055, 4739],
            tail: Duration::from_secs(24 * 3600),
        };
        let started = std::time::Instant::now();
        let out = replay(&args).await.unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(out.attacks.len(), 1, "{:?}", out.attacks);
        let a = &out.attacks[0];
        assert_eq!(
            (a.vector.name(), a.started_ms),
            ("amplification", t0 + 10_000)
        );
        assert_eq!(out.mitigations.len(), 1);
        let m = &out.mitigations[0];
        assert_eq!(
            m.rule.as_deref(),
            Some("dst 192.0.2.10/32 proto udp sport 123 then discard")
        );
        assert_eq!(m.created_ms, t0 + 10_000);
        // Withdrawn after the shipped hold-down (2 min from the quiet at +20 s), on the timeline.
        let w = m.withdrawn_ms.unwrap();
        assert!((t0 + 139_000..t0 + 142_000).contains(&w), "{}", w - t0);
        assert!(out.log.iter().any(|l| l.action == "attack.over"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
