//! The NetFlow and IPFIX collector: flow records from trusted routers become the same
//! per-interval [`Report`]s a probe sends.
//!
//! ```text
//!  UDP :2055, :4739 ──► trusted? ──► per exporter: deflect_netflow::Session (templates, options,
//!   (reader tasks,        │ no: dropped,   sampling, sequence) ──► flow records
//!    batches)             ▼ counted                                   │ × sampling rate
//!                      counters                                       ▼
//!                                         Spread: spread over the time each covers, buckets
//!                                         handed over once the late data is in (spread.rs)
//!                                                                     │ every interval
//!                                                                     ▼
//!                                  Report { node: "netflow:NAME" } ──► engine (detection)
//! ```
//!
//! One task owns every exporter's state; the sockets' reader tasks only receive and forward
//! batches (an exporter may send NetFlow v9 to one port and IPFIX to another: one state).
//!
//! What one exporter can claim is bounded as for sFlow agents: a record announcing a sparser
//! sampling than `max_sampling_rate` is dropped and counted, and an interval estimated beyond
//! `max_pps` is refused whole. Templates, held data sets and sampler entries are bounded per
//! exporter by the decoder's [`Limits`](deflect_netflow::Limits); the spread's entries by
//! [`spread::MAX_ENTRIES`](super::spread::MAX_ENTRIES).
//!
//! A record whose sampling is not announced (NetFlow v5 without a sampling interval, v9 or IPFIX
//! without sampler options) is taken as unsampled unless the exporter's `sampling_rate` says
//! otherwise: an underestimate, never an invented flood.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use deflect_netflow::{Flow, Section, Session};
use ipnet::IpNet;
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tracing::{Instrument, debug, info, info_span, warn};

use super::recv::{Batch, DEFAULT_SLOTS, DatagramSocket, MAX_UDP_SLOT, SocketStats};
use super::spread::{Record, Spread};
use super::{TrustedAgent, refuse_interval, sanitize, unmapped};
use crate::clock::now_ms;
use crate::engine::EngineHandle;
use crate::pcap::with_ethernet;
use crate::telemetry::Report;
use crate::traffic::FastMap;
use crate::traffic::aggregate::Finished;
use crate::traffic::packet::{self, PacketInfo};

/// The collector's settings (the `netflow` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Where datagrams arrive: NetFlow v5/v9 and IPFIX alike on each (2055 and 4739 by default).
    pub listen: Vec<SocketAddr>,
    /// How often estimates are handed to detection.
    pub interval: Duration,
    /// The most a bucket waits for late records (`max_delay`).
    pub max_delay: Duration,
    pub exporters: Vec<TrustedAgent>,
    /// Sources never counted as attack traffic (`detection.trusted_sources`), as for sFlow.
    pub trusted: Vec<IpNet>,
}

/// The default `max_delay`: the longest active timeout worth waiting for.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(60);

/// The node an exporter's reports come from, for detection.
pub fn node(a: &TrustedAgent) -> String {
    format!("netflow:{}", a.name)
}

/// What the API shows of one exporter.
#[derive(Debug, Clone, Serialize)]
pub struct ExporterStats {
    pub name: String,
    pub address: IpAddr,
    pub datagrams: u64,
    /// Datagrams per version: v5, v9, IPFIX.
    pub v5: u64,
    pub v9: u64,
    pub ipfix: u64,
    /// Flow records read.
    pub records: u64,
    /// Records without addresses (or whose packet section held none): not counted.
    pub records_unusable: u64,
    /// Datagrams, or data sets within them, that did not decode.
    pub decode_errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub last_seen_ms: u64,
    /// Missing from the sequence (v5: flows; v9: datagrams; IPFIX: records).
    pub lost: u64,
    pub restarts: u64,
    /// The sampling rate of the last record (or the configured override); 1 when unknown.
    pub sampling_rate: u32,
    /// Records dropped: their sampling rate was above `max_sampling_rate`.
    pub records_refused: u64,
    /// Intervals refused: their estimate was above `max_pps`.
    pub intervals_refused: u64,
    /// The wait for late records in force, in ms (learned unless `export_delay` is set).
    pub delay_ms: u64,
    /// Packets (as estimated) that arrived for an interval already handed to detection.
    pub late_packets: u64,
    /// Packets not stored: the exporter's entry budget was spent.
    pub dropped_packets: u64,
    /// The active and idle timeouts the exporter announced, in ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_timeout_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Templates in force, and what happened to others.
    pub templates: usize,
    pub templates_evicted: u64,
    pub templates_expired: u64,
    pub templates_refused: u64,
    /// Data sets that came before their template: held, decoded later, or dropped.
    pub sets_held: u64,
    pub sets_decoded_late: u64,
    pub sets_dropped: u64,
}

/// What the API shows of the collector.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CollectorStats {
    pub listen: Vec<SocketAddr>,
    pub exporters: Vec<ExporterStats>,
    /// Datagrams from addresses that are not trusted exporters.
    pub untrusted: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_untrusted: Option<IpAddr>,
    /// Datagrams lost on the collector's sockets (queues full, or longer than a slot), summed.
    pub socket: SocketStats,
}

/// Shared, read by the API.
pub type SharedStats = Arc<Mutex<CollectorStats>>;

/// One exporter's state.
struct Exporter {
    config: TrustedAgent,
    stats: ExporterStats,
    session: Session,
    spread: Spread,
    seq: u64,
}

/// An exporter that sent nothing for this long (beyond its delay) is silent.
const SILENT: Duration = Duration::from_secs(30);

impl Exporter {
    fn new(a: &TrustedAgent, interval: Duration, max_delay: Duration) -> Exporter {
        Exporter {
            config: a.clone(),
            stats: ExporterStats {
                name: a.name.clone(),
                address: a.address,
                datagrams: 0,
                v5: 0,
                v9: 0,
                ipfix: 0,
                records: 0,
                records_unusable: 0,
                decode_errors: 0,
                last_error: None,
                last_seen_ms: 0,
                lost: 0,
                restarts: 0,
                sampling_rate: a.sampling_rate.unwrap_or(1),
                records_refused: 0,
                intervals_refused: 0,
                delay_ms: 0,
                late_packets: 0,
                dropped_packets: 0,
                active_timeout_ms: None,
                idle_timeout_ms: None,
                templates: 0,
                templates_evicted: 0,
                templates_expired: 0,
                templates_refused: 0,
                sets_held: 0,
                sets_decoded_late: 0,
                sets_dropped: 0,
            },
            session: Session::new(deflect_netflow::Limits::default()),
            spread: Spread::new(interval, max_delay, a.export_delay),
            seq: 0,
        }
    }

    /// One datagram from this exporter, received at `now_ms`.
    fn take(&mut self, data: Bytes, now_ms: u64) {
        self.stats.datagrams += 1;
        self.stats.last_seen_ms = now_ms;
        let result = self.session.decode(data, now_ms);
        self.copy_session_stats();
        let p = match result {
            Ok(p) => p,
            Err(e) => {
                self.stats.decode_errors += 1;
                debug!(exporter = %self.config.name, "undecodable datagram: {e}");
                self.stats.last_error = Some(e.to_string());
                return;
            }
        };
        // A set that did not decode: the others in the datagram did.
        if let Some(e) = p.errors.last() {
            self.stats.decode_errors += p.errors.len() as u64;
            debug!(exporter = %self.config.name, "undecodable set: {e}");
            self.stats.last_error = Some(e.to_string());
        }
        match p.version {
            5 => self.stats.v5 += 1,
            9 => self.stats.v9 += 1,
            _ => self.stats.ipfix += 1,
        }
        self.stats.lost += p.lost;
        if p.restarted {
            self.stats.restarts += 1;
            info!(exporter = %self.config.name, domain = p.domain, "exporter restarted");
        }
        if p.active_timeout_ms.is_some() || p.idle_timeout_ms.is_some() {
            self.stats.active_timeout_ms = p.active_timeout_ms;
            self.stats.idle_timeout_ms = p.idle_timeout_ms;
            self.spread
                .announced(p.active_timeout_ms, p.idle_timeout_ms);
        }
        // The exporter's clock to ours: its export time is our arrival time.
        let shift = |t: u64| {
            (i128::from(t) + i128::from(now_ms) - i128::from(p.export_ms))
                .clamp(0, i128::from(now_ms)) as u64
        };
        for f in &p.flows {
            self.stats.records += 1;
            let Some(info) = packet_of(f) else {
                self.stats.records_unusable += 1;
                continue;
            };
            let rate = match (self.config.sampling_rate, f.sampling) {
                (Some(r), _) => r,
                (None, Some(r)) if r > self.config.max_sampling_rate => {
                    self.stats.records_refused += 1;
                    if self.stats.records_refused.is_power_of_two() {
                        warn!(
                            exporter = %self.config.name,
                            rate = r,
                            max = self.config.max_sampling_rate,
                            refused = self.stats.records_refused,
                            "flow records announcing a sampling rate above max_sampling_rate: dropped"
                        );
                    }
                    self.stats.last_error = Some(format!(
                        "sampling rate 1:{r} above max_sampling_rate 1:{}: record dropped",
                        self.config.max_sampling_rate
                    ));
                    continue;
                }
                (None, r) => r.unwrap_or(1).max(1),
            };
            self.stats.sampling_rate = rate;
            self.spread.add(
                &Record {
                    info,
                    // A record of no packets stands for none (PSAMP packet records count 1).
                    packets: f.packets.saturating_mul(u64::from(rate)),
                    start_ms: f.start_ms.map(shift),
                    end_ms: f.end_ms.map(shift),
                },
                now_ms,
            );
        }
    }

    fn copy_session_stats(&mut self) {
        let s = self.session.stats();
        self.stats.templates = self.session.templates();
        self.stats.templates_evicted = s.templates_evicted;
        self.stats.templates_expired = s.templates_expired;
        self.stats.templates_refused = s.templates_refused;
        self.stats.sets_held = s.sets_unknown_template;
        self.stats.sets_decoded_late = s.sets_decoded_late;
        self.stats.sets_dropped = s.sets_dropped;
    }
}

/// What the aggregator needs from one flow record: from its packet section when it has one
/// (PSAMP), else from its fields; the mean packet length as the wire length.
fn packet_of(f: &Flow) -> Option<PacketInfo> {
    if let Some(section) = &f.section {
        let parsed = match section {
            Section::Link(frame) => packet::parse(frame),
            Section::Ip(ip) => packet::parse(&with_ethernet(ip)),
        };
        if parsed.is_some() {
            return parsed;
        }
    }
    if f.src.is_unspecified() && f.dst.is_unspecified() {
        return None;
    }
    let ports = f.proto == packet::PROTO_TCP || f.proto == packet::PROTO_UDP;
    let packets = f.packets.max(1);
    Some(PacketInfo {
        src: f.src,
        dst: f.dst,
        proto: f.proto,
        sport: (ports && !f.fragment).then_some(f.src_port),
        dport: (ports && !f.fragment).then_some(f.dst_port),
        tcp_flags: (f.proto == packet::PROTO_TCP).then_some(f.tcp_flags),
        fragment: f.fragment,
        wire_len: u32::try_from(f.bytes / packets).unwrap_or(u32::MAX),
    })
}

/// The exporters' state, fed datagrams and asked for each interval's reports at the times its
/// caller gives: the collector's task on the wall clock, `deflect replay` on a capture's.
pub struct Exporters {
    exporters: FastMap<IpAddr, Exporter>,
    untrusted: u64,
    last_untrusted: Option<IpAddr>,
    /// Every address is an exporter (named by its address) unless configured: for replays.
    adopt: bool,
    trusted: Vec<IpNet>,
    interval: Duration,
    max_delay: Duration,
}

impl std::fmt::Debug for Exporters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporters")
            .field("exporters", &self.exporters.len())
            .field("untrusted", &self.untrusted)
            .field("adopt", &self.adopt)
            .finish()
    }
}

impl Exporters {
    /// The exporters to trust, the trusted sources their records leave out, and the timing.
    pub fn new(
        exporters: &[TrustedAgent],
        trusted: &[IpNet],
        interval: Duration,
        max_delay: Duration,
    ) -> Exporters {
        Exporters {
            exporters: exporters
                .iter()
                .map(|a| (a.address, Exporter::new(a, interval, max_delay)))
                .collect(),
            untrusted: 0,
            last_untrusted: None,
            adopt: false,
            trusted: trusted.to_vec(),
            interval,
            max_delay,
        }
    }

    /// The same, and any other address as an exporter of its own (for replays).
    pub fn adopting(
        exporters: &[TrustedAgent],
        trusted: &[IpNet],
        interval: Duration,
        max_delay: Duration,
    ) -> Exporters {
        Exporters {
            adopt: true,
            ..Exporters::new(exporters, trusted, interval, max_delay)
        }
    }

    fn set_trusted(&mut self, trusted: Vec<IpNet>) {
        self.trusted = trusted;
    }

    /// New exporters to trust; the others' state (templates, buckets) is kept.
    fn reconfigure(&mut self, next: &[TrustedAgent]) {
        let mut old = std::mem::take(&mut self.exporters);
        for a in next {
            let mut e = old
                .remove(&a.address)
                .unwrap_or_else(|| Exporter::new(a, self.interval, self.max_delay));
            e.spread.set_fixed(a.export_delay);
            e.config = a.clone();
            e.stats.name = a.name.clone();
            self.exporters.insert(a.address, e);
        }
    }

    /// One datagram from `from`, received at `now_ms`.
    pub fn datagram(&mut self, data: Bytes, from: IpAddr, now_ms: u64) {
        let from = unmapped(from);
        if self.adopt && !self.exporters.contains_key(&from) {
            let a = TrustedAgent::adopted(from);
            self.exporters
                .insert(from, Exporter::new(&a, self.interval, self.max_delay));
        }
        let Some(e) = self.exporters.get_mut(&from) else {
            self.untrusted += 1;
            if self.last_untrusted != Some(from) {
                warn!(%from, "NetFlow/IPFIX datagram from an address that is not a trusted exporter: dropped");
            }
            self.last_untrusted = Some(from);
            return;
        };
        e.take(data, now_ms);
    }

    /// Each exporter's buckets due at `now_ms`, as a report with the node it comes from.
    pub fn flush(&mut self, now_ms: u64) -> Vec<(String, Report)> {
        let mut reports = Vec::new();
        for e in self.exporters.values_mut() {
            let due = e.spread.flush(now_ms, &self.trusted);
            let s = e.spread.stats();
            (
                e.stats.delay_ms,
                e.stats.late_packets,
                e.stats.dropped_packets,
            ) = (s.delay_ms, s.late_packets, s.dropped_packets);
            let Some(due) = due else { continue };
            // Silent beyond its delay: says nothing (the engine marks the node stale).
            let silent = (SILENT.as_millis() as u64).saturating_add(s.delay_ms);
            if e.stats.last_seen_ms.saturating_add(silent) < now_ms {
                continue;
            }
            let sampled = due.agg.samples();
            let finished = due.agg.finish_all(due.elapsed);
            let Some(Finished { targets, rollups }) = refuse_interval(
                finished,
                e.config.max_pps,
                &e.config.name,
                &mut e.stats.intervals_refused,
                &mut e.stats.last_error,
            ) else {
                continue;
            };
            e.seq += 1;
            reports.push((
                node(&e.config),
                Report {
                    node: format!("netflow-{}", sanitize(&e.config.name)),
                    seq: e.seq,
                    time_ms: now_ms,
                    interval_ms: (due.elapsed.as_millis() as u32).clamp(50, 60_000),
                    one_in: e.stats.sampling_rate.max(1),
                    sampled,
                    interfaces: Vec::new(),
                    targets,
                    rollups,
                    packets: Vec::new(),
                    applied: Vec::new(),
                    drop_error: None,
                },
            ));
        }
        reports.sort_by(|a, b| a.0.cmp(&b.0));
        reports
    }

    /// Whether records wait to be handed over.
    pub fn pending(&self) -> bool {
        self.exporters.values().any(|e| e.spread.pending())
    }

    /// Each exporter's figures, by name.
    pub fn exporter_stats(&self) -> Vec<ExporterStats> {
        let mut all: Vec<ExporterStats> =
            self.exporters.values().map(|e| e.stats.clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    fn publish(&self, stats: &mut CollectorStats) {
        stats.exporters = self.exporter_stats();
        stats.untrusted = self.untrusted;
        stats.last_untrusted = self.last_untrusted;
    }
}

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    pub local_addrs: Vec<SocketAddr>,
    pub stats: SharedStats,
    exporters: watch::Sender<Vec<TrustedAgent>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Batches in flight from the readers to the owner.
const QUEUE: usize = 64;

/// The sockets' receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
const RECV_BUFFER: usize = 8 * 1024 * 1024;

impl Collector {
    /// Binds every listen address and starts the collector.
    pub async fn start(cfg: &Settings, engine: EngineHandle) -> std::io::Result<Collector> {
        let mut sockets = Vec::new();
        for l in &cfg.listen {
            sockets.push(DatagramSocket::bind(*l, RECV_BUFFER)?);
        }
        let local_addrs: Vec<SocketAddr> = sockets.iter().map(|s| s.local_addr()).collect();
        let stats: SharedStats = Arc::new(Mutex::new(CollectorStats {
            listen: local_addrs.clone(),
            ..CollectorStats::default()
        }));
        let (tx, rx) = mpsc::channel(QUEUE);
        let counters = Arc::new(SocketCounters::default());
        let mut tasks = Vec::new();
        for (i, socket) in sockets.into_iter().enumerate() {
            let span = info_span!("netflow-socket", local_addr = %local_addrs[i]);
            tasks.push(tokio::spawn(
                read(socket, tx.clone(), counters.clone(), i).instrument(span),
            ));
        }
        let (exporters_tx, exporters_rx) = watch::channel(cfg.exporters.clone());
        let run = Run {
            rx,
            exporters: Exporters::new(&cfg.exporters, &cfg.trusted, cfg.interval, cfg.max_delay),
            exporters_rx,
            interval: cfg.interval,
            engine,
            stats: stats.clone(),
            counters,
        };
        info!(listen = ?local_addrs, exporters = cfg.exporters.len(), "NetFlow/IPFIX collector listening");
        tasks.push(tokio::spawn(run.run().instrument(info_span!("netflow"))));
        Ok(Collector {
            local_addrs,
            stats,
            exporters: exporters_tx,
            tasks,
        })
    }

    /// New trusted exporters (a configuration reload); the others' state is kept.
    pub fn set_exporters(&self, exporters: Vec<TrustedAgent>) {
        let _ = self.exporters.send(exporters);
    }

    pub fn stop(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Each socket's counters, by reader, summed by the owner when it publishes.
#[derive(Debug, Default)]
struct SocketCounters {
    sockets: Mutex<HashMap<usize, SocketStats>>,
}

/// How often a reader updates its socket's counters.
const COUNT_EVERY: Duration = Duration::from_secs(1);

/// A socket's reader: receives batches and forwards them; no state but its socket's counters.
async fn read(
    socket: DatagramSocket,
    tx: mpsc::Sender<Vec<(Bytes, IpAddr)>>,
    counters: Arc<SocketCounters>,
    index: usize,
) {
    // IPFIX over UDP may fill a datagram: slots of the largest.
    let mut batch = Batch::new(DEFAULT_SLOTS, MAX_UDP_SLOT);
    let mut errors = 0u64;
    // The drop count is a system call: read once a second, not per batch.
    let mut counted: Option<std::time::Instant> = None;
    loop {
        match socket.recv_batch(&mut batch).await {
            Ok(_) => {
                let datagrams: Vec<(Bytes, IpAddr)> =
                    batch.drain().map(|(d, from)| (d, from.ip())).collect();
                if counted.is_none_or(|t| t.elapsed() >= COUNT_EVERY) {
                    counted = Some(std::time::Instant::now());
                    if let Ok(mut c) = counters.sockets.lock() {
                        c.insert(index, socket.stats(&batch));
                    }
                }
                if tx.send(datagrams).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                // Said once, then at powers of two: a socket that keeps failing must not flood the log.
                errors += 1;
                if errors.is_power_of_two() {
                    warn!(errors, "NetFlow/IPFIX socket: {e}");
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

struct Run {
    rx: mpsc::Receiver<Vec<(Bytes, IpAddr)>>,
    exporters: Exporters,
    exporters_rx: watch::Receiver<Vec<TrustedAgent>>,
    interval: Duration,
    engine: EngineHandle,
    stats: SharedStats,
    counters: Arc<SocketCounters>,
}

impl Run {
    async fn run(mut self) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                batch = self.rx.recv() => {
                    let Some(batch) = batch else { return };
                    let now = now_ms();
                    for (data, from) in batch {
                        self.exporters.datagram(data, from, now);
                    }
                }
                _ = tick.tick() => self.flush().await,
                Ok(()) = self.exporters_rx.changed() => {
                    let next = self.exporters_rx.borrow_and_update().clone();
                    self.exporters.reconfigure(&next);
                    info!(exporters = next.len(), "NetFlow/IPFIX exporters reconfigured");
                }
            }
        }
    }

    /// Hands each exporter's due buckets to detection.
    async fn flush(&mut self) {
        for (node, r) in self.exporters.flush(now_ms()) {
            let Some(ack) = self.engine.report(&node, r).await else {
                return;
            };
            self.exporters.set_trusted(ack.trusted);
        }
        if let Ok(mut s) = self.stats.lock() {
            self.exporters.publish(&mut s);
            if let Ok(c) = self.counters.sockets.lock() {
                s.socket = SocketStats {
                    drops: c.values().map(|x| x.drops).sum(),
                    truncated: c.values().map(|x| x.truncated).sum(),
                };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use deflect_netflow::encode::{IpfixMessage, V5Message, flow_template, values_for};

    use super::*;
    use crate::collector::{DEFAULT_MAX_PPS, DEFAULT_MAX_SAMPLING_RATE};

    const EXPORTER: &str = "192.0.2.1";
    const VICTIM: &str = "203.0.113.9";
    const T0: u64 = 1_800_000_000_000;

    fn exporter(sampling_rate: Option<u32>) -> TrustedAgent {
        TrustedAgent {
            address: EXPORTER.parse().unwrap(),
            name: "edge1".into(),
            sampling_rate,
            pre_filter: false,
            max_sampling_rate: DEFAULT_MAX_SAMPLING_RATE,
            max_pps: DEFAULT_MAX_PPS,
            export_delay: None,
        }
    }

    fn exporters(e: TrustedAgent) -> Exporters {
        Exporters::new(&[e], &[], Duration::from_secs(1), DEFAULT_MAX_DELAY)
    }

    /// NTP answers from `src` to the victim: `packets` of 468 bytes over [start, end].
    fn ntp(src: &str, packets: u64, start: u64, end: u64) -> Flow {
        Flow {
            src: src.parse().unwrap(),
            dst: VICTIM.parse().unwrap(),
            proto: 17,
            src_port: 123,
            dst_port: 4444,
            tcp_flags: 0,
            icmp_type_code: None,
            fragment: false,
            packets,
            bytes: packets * 468,
            start_ms: Some(start),
            end_ms: Some(end),
            sampling: None,
            direction: None,
            input: 1,
            output: 2,
            section: None,
        }
    }

    /// An IPFIX message exported at `export_ms` (whole seconds) with the template and `flows`.
    fn ipfix(seq: u32, export_ms: u64, flows: &[Flow]) -> Bytes {
        let t = flow_template(256, false, true);
        let records: Vec<_> = flows
            .iter()
            .map(|f| values_for(&t, f, export_ms, None))
            .collect();
        IpfixMessage::new(7)
            .export_secs((export_ms / 1000) as u32)
            .sequence(seq)
            .template(&t)
            .data(&t, &records)
            .encode()
            .freeze()
    }

    /// The rates of every report handed over in the five seconds from `at`, summed: with one
    /// interval a second, the packets the exporter's records stood for.
    fn handed_over(e: &mut Exporters, at: u64) -> u64 {
        (0..5)
            .flat_map(|k| e.flush(at + k * 1000))
            .flat_map(|(_, r)| r.targets)
            .map(|t| t.pps)
            .sum()
    }

    /// The victim's rate in each report of `flush` from `from` to `to` seconds after T0.
    fn rates(e: &mut Exporters, from: u64, to: u64) -> Vec<u64> {
        let mut out = Vec::new();
        for s in from..to {
            for (node, r) in e.flush(T0 + s * 1000) {
                assert_eq!(node, "netflow:edge1");
                let victim: IpAddr = VICTIM.parse().unwrap();
                out.push(
                    r.targets
                        .iter()
                        .filter(|t| t.dst == victim)
                        .map(|t| t.pps)
                        .sum(),
                );
            }
        }
        out
    }

    #[test]
    fn records_exported_every_second_give_the_flood_rate_a_second_later() {
        // 20 reflectors, 1,000 pps each, exported every second (a 1 s active timeout), received
        // 50 ms after export by a collector whose clock is 3 s ahead of the router's.
        let mut e = exporters(exporter(None));
        let skew = 3000;
        let mut got = Vec::new();
        for s in 1..30u64 {
            let export = T0 + s * 1000;
            let flows: Vec<Flow> = (0..20)
                .map(|i| ntp(&format!("198.51.100.{i}"), 1000, export - 1000, export))
                .collect();
            e.datagram(
                ipfix(s as u32, export, &flows),
                EXPORTER.parse().unwrap(),
                export + skew + 50,
            );
            got.extend(rates(&mut e, s + 3, s + 4));
        }
        let tail = &got[got.len() - 15..];
        assert!(tail.iter().all(|&r| r == 20_000), "{got:?}");
        let stats = {
            let mut st = CollectorStats::default();
            e.publish(&mut st);
            st.exporters[0].clone()
        };
        assert_eq!((stats.ipfix, stats.records, stats.lost), (29, 580, 0));
        assert!(stats.delay_ms <= 2000, "{}", stats.delay_ms);
        assert_eq!(stats.late_packets, 0);
    }

    #[test]
    fn sampling_multiplies_and_an_absurd_rate_is_refused() {
        // v5 at 1:100, announced in the header.
        let mut e = exporters(exporter(None));
        let at = T0 + 10_000;
        let mut m = V5Message::new(at, 1_000_000).sampling_interval(100);
        for i in 0..10 {
            m = m.flow(&ntp(&format!("198.51.100.{i}"), 10, at - 1000, at));
        }
        e.datagram(m.encode().freeze(), EXPORTER.parse().unwrap(), at);
        let total = handed_over(&mut e, at);
        assert_eq!(total, 10 * 10 * 100);
        // A record claiming 1 in 2^32-1: dropped and counted, not a 4 Gpps flood.
        let mut e = exporters(exporter(None));
        let mut f = ntp("198.51.100.1", 10, at - 1000, at);
        f.sampling = Some(u32::MAX);
        let t = flow_template(256, false, true);
        let mut t34 = t.clone();
        t34.fields.push(deflect_netflow::FieldSpec::new(
            deflect_netflow::ie::SAMPLING_INTERVAL,
            4,
        ));
        let d = IpfixMessage::new(1)
            .export_secs((at / 1000) as u32)
            .template(&t34)
            .data(&t34, &[values_for(&t34, &f, at, None)])
            .encode()
            .freeze();
        e.datagram(d, EXPORTER.parse().unwrap(), at);
        let mut st = CollectorStats::default();
        e.publish(&mut st);
        assert_eq!(st.exporters[0].records_refused, 1, "{:?}", st.exporters[0]);
        // The operator's override is believed instead.
        let mut e = exporters(exporter(Some(1000)));
        e.datagram(
            ipfix(0, at, &[ntp("198.51.100.1", 10, at - 1000, at)]),
            EXPORTER.parse().unwrap(),
            at,
        );
        let total = handed_over(&mut e, at);
        assert_eq!(total, 10_000);
    }

    #[test]
    fn untrusted_exporters_are_dropped_and_an_interval_beyond_the_links_is_refused() {
        let mut e = exporters(TrustedAgent {
            max_pps: 50_000,
            ..exporter(None)
        });
        let at = T0 + 5000;
        e.datagram(
            ipfix(0, at, &[ntp("198.51.100.1", 1000, at - 1000, at)]),
            "192.0.2.99".parse().unwrap(),
            at,
        );
        e.datagram(
            ipfix(0, at, &[ntp("198.51.100.1", 100_000, at - 1000, at)]),
            EXPORTER.parse().unwrap(),
            at,
        );
        let reports: Vec<_> = (0..5).flat_map(|k| e.flush(at + k * 1000)).collect();
        assert!(
            reports
                .iter()
                .all(|(_, r)| r.targets.iter().all(|t| t.pps < 50_000)),
            "{reports:?}"
        );
        let mut st = CollectorStats::default();
        e.publish(&mut st);
        assert_eq!(st.untrusted, 1);
        assert_eq!(st.last_untrusted, Some("192.0.2.99".parse().unwrap()));
        assert_eq!(st.exporters[0].intervals_refused, 1);
    }

    #[test]
    fn data_before_its_template_is_counted_when_the_template_comes() {
        let mut e = exporters(exporter(None));
        let at = T0 + 5000;
        let t = flow_template(300, false, true);
        let f = ntp("198.51.100.1", 500, at - 1000, at);
        let data_only = IpfixMessage::new(7)
            .export_secs((at / 1000) as u32)
            .data(&t, &[values_for(&t, &f, at, None)])
            .encode()
            .freeze();
        let template_only = IpfixMessage::new(7)
            .export_secs((at / 1000) as u32)
            .sequence(1)
            .template(&t)
            .encode()
            .freeze();
        e.datagram(data_only, EXPORTER.parse().unwrap(), at);
        e.datagram(template_only, EXPORTER.parse().unwrap(), at + 100);
        let total = handed_over(&mut e, at);
        assert_eq!(total, 500);
        let mut st = CollectorStats::default();
        e.publish(&mut st);
        assert_eq!(
            (st.exporters[0].sets_held, st.exporters[0].sets_decoded_late),
            (1, 1)
        );
    }

    #[test]
    fn a_broken_set_is_counted_and_the_rest_of_the_datagram_counts() {
        let mut e = exporters(exporter(None));
        let at = T0 + 5000;
        let t = flow_template(256, false, true);
        let f = ntp("198.51.100.1", 700, at - 1000, at);
        // A set of a template with a packet section whose length runs past the set, then a good
        // one.
        let sections = deflect_netflow::Template::new(
            257,
            vec![deflect_netflow::FieldSpec::new(
                deflect_netflow::ie::DATA_LINK_FRAME_SECTION,
                deflect_netflow::ie::VARIABLE_LENGTH,
            )],
        );
        let d = IpfixMessage::new(7)
            .export_secs((at / 1000) as u32)
            .template(&t)
            .template(&sections)
            .raw_set(257, &[200, 1, 2, 3])
            .data(&t, &[values_for(&t, &f, at, None)])
            .encode()
            .freeze();
        e.datagram(d, EXPORTER.parse().unwrap(), at);
        let total = handed_over(&mut e, at);
        assert_eq!(total, 700);
        let mut st = CollectorStats::default();
        e.publish(&mut st);
        assert_eq!(st.exporters[0].decode_errors, 1, "{:?}", st.exporters[0]);
        assert!(st.exporters[0].last_error.is_some());
    }

    #[test]
    fn a_silent_exporter_stops_reporting() {
        let mut e = exporters(exporter(None));
        let at = T0 + 5000;
        e.datagram(
            ipfix(0, at, &[ntp("198.51.100.1", 1000, at - 1000, at)]),
            EXPORTER.parse().unwrap(),
            at,
        );
        assert!(!e.flush(at + 5000).is_empty());
        assert!(e.flush(at + 120_000).is_empty());
    }

    #[test]
    fn garbage_never_panics() {
        let mut e = Exporters::adopting(&[], &[], Duration::from_secs(1), DEFAULT_MAX_DELAY);
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..5000u64 {
            let mut b = vec![0u8; (i % 300) as usize];
            for v in &mut b {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *v = x as u8;
            }
            // Valid-looking versions, so the decoder goes past the header.
            if b.len() >= 2 {
                b[0] = 0;
                b[1] = [5, 9, 10][(i % 3) as usize];
            }
            e.datagram(
                Bytes::from(b),
                IpAddr::from([192, 0, 2, (i % 4) as u8]),
                T0 + i,
            );
            if i % 100 == 0 {
                e.flush(T0 + i);
            }
        }
    }
}
