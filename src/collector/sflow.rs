//! The sFlow collector: datagrams from trusted switches and routers become the same per-interval
//! [`Report`]s a probe sends, so detection and policies do not care where the data came from.
//!
//! ```text
//!  UDP :6343 ──► trusted? ──► deflect_sflow::decode ──► per agent: sequence tracking
//!                  │ no: dropped, counted                   │ flow samples: raw header → PacketInfo
//!                  ▼                                         ▼ (the probe's parser), weighted by
//!               counters                             Aggregator (the probe's)   the sample pool
//!                                                           │ every interval
//!                                                           ▼
//!                                       Report { node: "sflow:NAME" } ──► engine (detection)
//!                                       frames to captured targets ──► pcap recorder
//! ```
//!
//! Each flow sample stands for the packets its source saw since that source's previous sample:
//! the difference of their `sample_pool` fields, which counts samples the agent dropped too. When
//! the pool gives nothing sensible (first sample, a restart, a wrap), the sampling rate does. A
//! per-agent `sampling_rate` in the configuration overrides both, for agents known to lie.
//!
//! Trust by source address is weak (a spoofed datagram passes), so what one agent can claim is
//! bounded: a sample announcing a sparser rate than the agent's `max_sampling_rate` is dropped
//! and counted (one sample at 1:4294967295 would be a 4 Gpps flood), and an interval whose
//! estimate is beyond the agent's `max_pps` (a 100 GbE link at line rate by default) is refused
//! whole and counted: no switch port carries it.
//!
//! Per agent, the datagram sequence numbers tell lost datagrams (a gap) from agent restarts (the
//! sequence or the uptime going back); both are counted and shown by the API. Datagrams lost
//! before that, on the collector's own socket (its queue full, or longer than a slot), are
//! counted by [`recv`](super::recv) and shown too.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use deflect_sflow::{FlowRecord, Sample};
use ipnet::IpNet;
use serde::Serialize;
use tokio::sync::watch;
use tracing::{Instrument, debug, info, info_span, warn};

use super::recv::{Batch, DEFAULT_SLOTS, DatagramSocket, JUMBO_SLOT, SocketStats};
use super::{TrustedAgent, refuse_interval, sanitize, unmapped};
use crate::clock::now_ms;
use crate::engine::EngineHandle;
use crate::pcap::{Frame, Recorder, with_ethernet};
use crate::telemetry::Report;
use crate::traffic::FastMap;
use crate::traffic::aggregate::{Aggregator, Finished};
use crate::traffic::packet::{self, PacketInfo};

/// The collector's settings (the `sflow` section).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub listen: SocketAddr,
    /// How often estimates are handed to detection.
    pub interval: Duration,
    pub agents: Vec<TrustedAgent>,
    /// Sources never counted as attack traffic (`detection.trusted_sources`) at start; after
    /// that, the list detection sends back with each answer (so a reload reaches it).
    pub trusted: Vec<IpNet>,
}

/// What the API shows of one agent.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStats {
    pub name: String,
    pub address: IpAddr,
    /// The agent address inside its datagrams (may differ from the source address).
    pub agent: Option<IpAddr>,
    pub datagrams: u64,
    pub flow_samples: u64,
    pub counter_samples: u64,
    /// Datagrams missing from the sequence.
    pub lost: u64,
    pub restarts: u64,
    pub decode_errors: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    pub last_seen_ms: u64,
    /// The sampling rate of the last flow sample (or the configured override).
    pub sampling_rate: u32,
    /// Flow samples dropped: their sampling rate was above `max_sampling_rate`.
    pub samples_refused: u64,
    /// Intervals refused: their estimate was above `max_pps`.
    pub intervals_refused: u64,
}

/// What the API shows of the collector.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CollectorStats {
    pub listen: Option<SocketAddr>,
    pub agents: Vec<AgentStats>,
    /// Datagrams from addresses that are not trusted agents.
    pub untrusted: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_untrusted: Option<IpAddr>,
    /// Datagrams lost on the collector's socket (its queue full, or longer than a slot).
    pub socket: SocketStats,
}

/// Shared, read by the API.
pub type SharedStats = Arc<Mutex<CollectorStats>>;

/// One agent's state.
struct Agent {
    config: TrustedAgent,
    stats: AgentStats,
    last_seq: Option<u32>,
    last_uptime: u32,
    /// Last sample pool per (source id type, index).
    pools: FastMap<(u32, u32), u32>,
    agg: Aggregator,
    seq: u64,
}

/// The socket's receive buffer asked for (the kernel caps it at `net.core.rmem_max`).
const RECV_BUFFER: usize = 8 * 1024 * 1024;

/// An agent that sent nothing for this long is silent.
const AGENT_SILENT: Duration = Duration::from_secs(30);

/// Most sources whose pools are tracked per agent.
const MAX_SOURCES: usize = 4096;

/// A running collector.
#[derive(Debug)]
pub struct Collector {
    pub local_addr: SocketAddr,
    pub stats: SharedStats,
    agents: watch::Sender<Vec<TrustedAgent>>,
    task: tokio::task::JoinHandle<()>,
}

impl Collector {
    /// Binds and starts the collector.
    pub async fn start(
        cfg: &Settings,
        engine: EngineHandle,
        recorder: Option<Recorder>,
    ) -> std::io::Result<Collector> {
        // A burst of datagrams must not be dropped by a small socket buffer.
        let socket = DatagramSocket::bind(cfg.listen, RECV_BUFFER)?;
        let local_addr = socket.local_addr();
        let stats: SharedStats = Arc::new(Mutex::new(CollectorStats {
            listen: Some(local_addr),
            ..CollectorStats::default()
        }));
        let agents = Agents::new(&cfg.agents, &cfg.trusted);
        let (agents_tx, agents_rx) = watch::channel(cfg.agents.clone());
        let run = Run {
            socket,
            agents,
            agents_rx,
            interval: cfg.interval,
            engine,
            recorder,
            stats: stats.clone(),
        };
        info!(%local_addr, agents = cfg.agents.len(), "sFlow collector listening");
        let task = tokio::spawn(run.run().instrument(info_span!("sflow", %local_addr)));
        Ok(Collector {
            local_addr,
            stats,
            agents: agents_tx,
            task,
        })
    }

    /// New trusted agents (a configuration reload); the others' state is kept.
    pub fn set_agents(&self, agents: Vec<TrustedAgent>) {
        let _ = self.agents.send(agents);
    }

    pub fn stop(&self) {
        self.task.abort();
    }
}

fn new_agent(a: &TrustedAgent, trusted: &[IpNet]) -> Agent {
    Agent {
        config: a.clone(),
        stats: AgentStats {
            name: a.name.clone(),
            address: a.address,
            agent: None,
            datagrams: 0,
            flow_samples: 0,
            counter_samples: 0,
            lost: 0,
            restarts: 0,
            decode_errors: 0,
            last_error: None,
            last_seen_ms: 0,
            sampling_rate: a.sampling_rate.unwrap_or(0),
            samples_refused: 0,
            intervals_refused: 0,
        },
        last_seq: None,
        last_uptime: 0,
        pools: FastMap::default(),
        agg: Aggregator::new().with_trusted(trusted.to_vec()),
        seq: 0,
    }
}

impl Agent {
    /// The interval's estimates, or `None` if they are beyond what the agent's links carry.
    fn interval(&mut self, agg: Aggregator, elapsed: Duration) -> Option<Finished> {
        refuse_interval(
            agg.finish_all(elapsed),
            self.config.max_pps,
            &self.config.name,
            &mut self.stats.intervals_refused,
            &mut self.stats.last_error,
        )
    }

    /// One datagram from this agent: sequence tracking, and its flow samples into the interval.
    fn take(&mut self, data: Bytes, now_ms: u64, recorder: Option<&Recorder>) {
        self.stats.datagrams += 1;
        self.stats.last_seen_ms = now_ms;
        let d = match deflect_sflow::decode(data) {
            Ok(d) => d,
            Err(e) => {
                self.stats.decode_errors += 1;
                debug!(agent = %self.config.name, "undecodable datagram: {e}");
                self.stats.last_error = Some(e.to_string());
                return;
            }
        };
        self.stats.agent = Some(d.agent);
        // Sequence: a gap is loss; going back (or the uptime going back) is a restart.
        match self.last_seq {
            Some(last) if d.sequence == last.wrapping_add(1) => {}
            Some(last) if d.sequence > last && d.uptime_ms >= self.last_uptime => {
                self.stats.lost += u64::from(d.sequence - last - 1);
            }
            Some(_) => {
                self.stats.restarts += 1;
                self.pools.clear();
                info!(agent = %self.config.name, sequence = d.sequence, "sFlow agent restarted");
            }
            None => {}
        }
        self.last_seq = Some(d.sequence);
        self.last_uptime = d.uptime_ms;
        let time = SystemTime::UNIX_EPOCH + Duration::from_millis(now_ms);
        for s in &d.samples {
            match s {
                Sample::Flow(f) => {
                    self.stats.flow_samples += 1;
                    if self.config.sampling_rate.is_none()
                        && f.sampling_rate > self.config.max_sampling_rate
                    {
                        self.stats.samples_refused += 1;
                        if self.stats.samples_refused.is_power_of_two() {
                            warn!(
                                agent = %self.config.name,
                                rate = f.sampling_rate,
                                max = self.config.max_sampling_rate,
                                refused = self.stats.samples_refused,
                                "sFlow samples announcing a rate above max_sampling_rate: dropped"
                            );
                        }
                        self.stats.last_error = Some(format!(
                            "sampling rate 1:{} above max_sampling_rate 1:{}: sample dropped",
                            f.sampling_rate, self.config.max_sampling_rate
                        ));
                        continue;
                    }
                    let announced = self.config.sampling_rate.unwrap_or(f.sampling_rate).max(1);
                    self.stats.sampling_rate = announced;
                    // What this sample stands for: the pool since the source's last sample.
                    let key = (f.source_id_type, f.source_id_index);
                    let weight = match (self.config.sampling_rate, self.pools.get(&key)) {
                        (Some(r), _) => r,
                        (None, Some(&last)) => {
                            let d = f.sample_pool.wrapping_sub(last);
                            if d > 0 && d <= announced.saturating_mul(64) {
                                d
                            } else {
                                announced
                            }
                        }
                        (None, None) => announced,
                    };
                    if self.pools.len() < MAX_SOURCES || self.pools.contains_key(&key) {
                        self.pools.insert(key, f.sample_pool);
                    }
                    if let Some((info, frame)) = sampled_packet(&f.records) {
                        self.agg.add(&info, weight);
                        if let (Some(r), Some(frame)) = (recorder, frame) {
                            if r.wants(info.dst) {
                                r.offer(Frame {
                                    dst: info.dst,
                                    time,
                                    orig_len: info.wire_len,
                                    data: frame,
                                });
                            }
                        }
                    }
                }
                Sample::Counters(_) => self.stats.counter_samples += 1,
                Sample::Unknown { .. } => {}
            }
        }
    }
}

/// The agents' state, fed datagrams and asked for each interval's reports at the times its
/// caller gives: the collector's task on the wall clock, `deflect replay` on a capture's.
#[derive(Default)]
pub struct Agents {
    agents: FastMap<IpAddr, Agent>,
    /// Datagrams from addresses that are not agents, and the last of them.
    untrusted: u64,
    last_untrusted: Option<IpAddr>,
    /// Every address is an agent (with the default bounds, named by its address) unless
    /// configured: a capture replayed offline, whose switches the configuration may not list.
    adopt: bool,
    /// Trusted sources, taken out of every agent's next interval.
    trusted: Vec<IpNet>,
}

impl std::fmt::Debug for Agents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agents")
            .field("agents", &self.agents.len())
            .field("untrusted", &self.untrusted)
            .field("adopt", &self.adopt)
            .finish()
    }
}

impl Agents {
    /// The agents to trust, and the trusted sources their samples leave out.
    pub fn new(agents: &[TrustedAgent], trusted: &[IpNet]) -> Agents {
        Agents {
            agents: agents
                .iter()
                .map(|a| (a.address, new_agent(a, trusted)))
                .collect(),
            trusted: trusted.to_vec(),
            ..Agents::default()
        }
    }

    /// The agents to trust, and any other address as an agent of its own (for replays).
    pub fn adopting(agents: &[TrustedAgent], trusted: &[IpNet]) -> Agents {
        Agents {
            adopt: true,
            ..Agents::new(agents, trusted)
        }
    }

    /// Detection's trusted sources (a reload changes them): from the next interval on.
    fn set_trusted(&mut self, trusted: Vec<IpNet>) {
        if trusted != self.trusted {
            self.trusted = trusted;
            for a in self.agents.values_mut() {
                a.agg = Aggregator::new().with_trusted(self.trusted.clone());
            }
        }
    }

    /// New agents to trust; the others' state is kept.
    fn reconfigure(&mut self, next: &[TrustedAgent]) {
        let mut old = std::mem::take(&mut self.agents);
        for a in next {
            let mut agent = old
                .remove(&a.address)
                .unwrap_or_else(|| new_agent(a, &self.trusted));
            agent.config = a.clone();
            agent.stats.name = a.name.clone();
            self.agents.insert(a.address, agent);
        }
    }

    /// One datagram from `from`, received at `now_ms`.
    pub fn datagram(
        &mut self,
        data: Bytes,
        from: IpAddr,
        now_ms: u64,
        recorder: Option<&Recorder>,
    ) {
        let from = unmapped(from);
        if self.adopt && !self.agents.contains_key(&from) {
            let a = TrustedAgent::adopted(from);
            self.agents.insert(from, new_agent(&a, &self.trusted));
        }
        let Some(agent) = self.agents.get_mut(&from) else {
            self.untrusted += 1;
            if self.last_untrusted != Some(from) {
                warn!(%from, "sFlow datagram from an address that is not a trusted agent: dropped");
            }
            self.last_untrusted = Some(from);
            return;
        };
        agent.take(data, now_ms, recorder);
    }

    /// Each agent's interval that ends at `now_ms`, `elapsed` long, as a report with the node
    /// it comes from.
    pub fn flush(&mut self, elapsed: Duration, now_ms: u64) -> Vec<(String, Report)> {
        let interval_ms = (elapsed.as_millis() as u32).clamp(50, 60_000);
        let mut reports = Vec::new();
        for agent in self.agents.values_mut() {
            let agg = std::mem::replace(
                &mut agent.agg,
                Aggregator::new().with_trusted(self.trusted.clone()),
            );
            let sampled = agg.samples();
            // An agent that has sent nothing for a while says nothing: its targets are not
            // judged on missing data (the engine marks the node stale). A quiet link sends few
            // flow samples, and counter samples only every 20 to 30 s: that is not silence.
            if agent.stats.last_seen_ms + (AGENT_SILENT.as_millis() as u64) < now_ms {
                continue;
            }
            let Some(Finished { targets, rollups }) = agent.interval(agg, elapsed) else {
                continue;
            };
            agent.seq += 1;
            reports.push((
                agent.config.node(),
                Report {
                    node: format!("sflow-{}", sanitize(&agent.config.name)),
                    seq: agent.seq,
                    time_ms: now_ms,
                    interval_ms,
                    one_in: agent.stats.sampling_rate.max(1),
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

    /// What the API shows.
    fn publish(&self, stats: &mut CollectorStats) {
        stats.agents = self.agents.values().map(|a| a.stats.clone()).collect();
        stats.agents.sort_by(|a, b| a.name.cmp(&b.name));
        stats.untrusted = self.untrusted;
        stats.last_untrusted = self.last_untrusted;
    }
}

struct Run {
    socket: DatagramSocket,
    agents: Agents,
    agents_rx: watch::Receiver<Vec<TrustedAgent>>,
    interval: Duration,
    engine: EngineHandle,
    recorder: Option<Recorder>,
    stats: SharedStats,
}

impl Run {
    async fn run(mut self) {
        // sFlow datagrams fit a jumbo frame; a longer one is counted as truncated.
        let mut batch = Batch::new(DEFAULT_SLOTS, JUMBO_SLOT);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut started = Instant::now();
        loop {
            tokio::select! {
                r = self.socket.recv_batch(&mut batch) => match r {
                    Ok(_) => {
                        let now = now_ms();
                        for (data, from) in batch.drain() {
                            self.agents.datagram(data, from.ip(), now, self.recorder.as_ref());
                        }
                    }
                    Err(e) => warn!("sFlow socket: {e}"),
                },
                _ = tick.tick() => {
                    let elapsed = started.elapsed();
                    started = Instant::now();
                    let socket = self.socket.stats(&batch);
                    self.flush(elapsed, socket).await;
                }
                Ok(()) = self.agents_rx.changed() => {
                    let next = self.agents_rx.borrow_and_update().clone();
                    self.agents.reconfigure(&next);
                    info!(agents = next.len(), "sFlow agents reconfigured");
                }
            }
        }
    }

    /// Hands each agent's interval to detection.
    async fn flush(&mut self, elapsed: Duration, socket: SocketStats) {
        for (node, r) in self.agents.flush(elapsed, now_ms()) {
            let Some(ack) = self.engine.report(&node, r).await else {
                return;
            };
            // Detection's list in force (a reload changes it): from the next interval on.
            self.agents.set_trusted(ack.trusted);
        }
        if let Ok(mut s) = self.stats.lock() {
            self.agents.publish(&mut s);
            s.socket = socket;
        }
    }
}

/// The packet a flow sample describes: from its raw header (parsed like the probe's samples, and
/// kept as a frame for captures), or else from its sampled IPv4/IPv6 record.
fn sampled_packet(records: &[FlowRecord]) -> Option<(PacketInfo, Option<Bytes>)> {
    let mut fallback = None;
    for r in records {
        match r {
            FlowRecord::RawHeader(h) => {
                let frame: Bytes = match h.protocol {
                    1 => h.header.clone(),
                    11 | 12 => Bytes::from(with_ethernet(&h.header)),
                    _ => continue,
                };
                if let Some(mut info) = packet::parse(&frame) {
                    // The frame's length as the agent saw it, not the captured part.
                    if h.frame_length > 0 {
                        info.wire_len = h.frame_length.saturating_sub(h.stripped.min(4));
                    }
                    return Some((info, Some(frame)));
                }
            }
            FlowRecord::Ipv4(s) => {
                fallback = Some(sampled_ip(
                    IpAddr::V4(s.src),
                    IpAddr::V4(s.dst),
                    s.protocol,
                    (s.src_port, s.dst_port),
                    s.tcp_flags,
                    s.length,
                ));
            }
            FlowRecord::Ipv6(s) => {
                fallback = Some(sampled_ip(
                    IpAddr::V6(s.src),
                    IpAddr::V6(s.dst),
                    s.protocol,
                    (s.src_port, s.dst_port),
                    s.tcp_flags,
                    s.length,
                ));
            }
            _ => {}
        }
    }
    fallback.map(|i| (i, None))
}

/// The packet a sampled IPv4 or IPv6 record describes.
fn sampled_ip(
    src: IpAddr,
    dst: IpAddr,
    proto: u32,
    (sport, dport): (u32, u32),
    tcp_flags: u32,
    length: u32,
) -> PacketInfo {
    let ports = proto == 6 || proto == 17;
    PacketInfo {
        src,
        dst,
        proto: proto as u8,
        sport: ports.then_some(sport as u16),
        dport: ports.then_some(dport as u16),
        tcp_flags: (proto == 6).then_some(tcp_flags as u8),
        fragment: false,
        wire_len: length,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use deflect_sflow::encode::{DatagramBuilder, raw_header};
    use deflect_sflow::{FlowSample, ethernet_udp_frame};

    use super::*;
    use crate::collector::{DEFAULT_MAX_PPS, DEFAULT_MAX_SAMPLING_RATE};

    fn agent(rate: Option<u32>) -> Agent {
        new_agent(
            &TrustedAgent {
                address: "192.0.2.250".parse().unwrap(),
                name: "sw1".into(),
                sampling_rate: rate,
                pre_filter: false,
                max_sampling_rate: DEFAULT_MAX_SAMPLING_RATE,
                max_pps: DEFAULT_MAX_PPS,
                export_delay: None,
            },
            &[],
        )
    }

    /// A datagram of `n` NTP samples to 203.0.113.9, the pool advancing by `step` per sample.
    fn datagram(seq: u32, uptime: u32, pool: &mut u32, n: usize, rate: u32, step: u32) -> Bytes {
        ntp_to(seq, uptime, pool, n, rate, step, |_| 4444)
    }

    /// The same, the destination port of the i-th sample `dport(i)`.
    fn ntp_to(
        seq: u32,
        uptime: u32,
        pool: &mut u32,
        n: usize,
        rate: u32,
        step: u32,
        dport: impl Fn(usize) -> u16,
    ) -> Bytes {
        let mut b = DatagramBuilder::new("192.0.2.250".parse().unwrap())
            .sequence(seq)
            .uptime_ms(uptime);
        for i in 0..n {
            *pool = pool.wrapping_add(step);
            let frame = ethernet_udp_frame(
                "198.51.100.1".parse().unwrap(),
                "203.0.113.9".parse().unwrap(),
                123,
                dport(i),
                468,
            );
            b = b.flow(FlowSample {
                expanded: false,
                sequence: 0,
                source_id_type: 0,
                source_id_index: 1,
                sampling_rate: rate,
                sample_pool: *pool,
                drops: 0,
                input: 1,
                output: 2,
                records: vec![FlowRecord::RawHeader(raw_header(&frame))],
            });
        }
        b.encode().freeze()
    }

    #[test]
    fn gaps_are_lost_datagrams_and_going_back_is_a_restart() {
        let mut a = agent(None);
        let mut pool = 0;
        for seq in [1, 2, 3, 7, 8] {
            a.take(datagram(seq, seq * 1000, &mut pool, 1, 100, 100), 0, None);
        }
        assert_eq!((a.stats.lost, a.stats.restarts), (3, 0));
        a.take(datagram(1, 500, &mut pool, 1, 100, 100), 0, None);
        assert_eq!((a.stats.lost, a.stats.restarts), (3, 1));
        assert_eq!(a.stats.datagrams, 6);
        assert_eq!(a.stats.flow_samples, 6);
        a.take(Bytes::from_static(b"\x00\x00\x00\x05garbage"), 0, None);
        assert_eq!(a.stats.decode_errors, 1);
        assert!(a.stats.last_error.is_some());
    }

    #[test]
    fn samples_stand_for_the_pool_since_the_last_one() {
        // 1 in 100 announced, but every other datagram lost on the way: the pool says each sample
        // that arrived stands for 200 packets.
        let mut a = agent(None);
        let mut pool = 0;
        for seq in 0..100u32 {
            let d = datagram(seq, seq * 10 + 1, &mut pool, 1, 100, 100);
            if seq % 2 == 0 {
                a.take(d, 0, None);
            }
        }
        let t = std::mem::take(&mut a.agg).finish(Duration::from_secs(1));
        assert_eq!(t.len(), 1);
        // 50 samples; the first stands for 100 (no pool before it), the others for 200.
        assert_eq!(t[0].pps, 100 + 49 * 200);
        assert_eq!(t[0].flows[0].sport, Some(123));
    }

    #[test]
    fn a_sample_announcing_an_absurd_rate_is_dropped_not_believed() {
        let mut a = agent(None);
        let mut pool = 0;
        a.take(datagram(0, 1, &mut pool, 3, u32::MAX, 1), 0, None);
        a.take(datagram(1, 2, &mut pool, 2, 1000, 1000), 0, None);
        assert_eq!((a.stats.flow_samples, a.stats.samples_refused), (5, 3));
        let t = {
            let agg = std::mem::take(&mut a.agg);
            a.interval(agg, Duration::from_secs(1))
        }
        .unwrap()
        .targets;
        assert_eq!(t[0].pps, 2000, "only the believable samples");
        // An operator who knows better says so: the override is believed.
        let mut b = agent(Some(100_000));
        b.take(datagram(0, 1, &mut pool, 1, u32::MAX, 1), 0, None);
        assert_eq!(b.stats.samples_refused, 0);
    }

    #[test]
    fn an_interval_beyond_what_the_links_carry_is_refused() {
        let mut a = agent(None);
        a.config.max_pps = 50_000;
        let mut pool = 0;
        a.take(datagram(0, 1, &mut pool, 40, 1000, 1000), 0, None);
        assert!(
            {
                let agg = std::mem::take(&mut a.agg);
                a.interval(agg, Duration::from_secs(1))
            }
            .is_some()
        );
        a.take(datagram(1, 2, &mut pool, 60, 1000, 1000), 0, None);
        assert!(
            {
                let agg = std::mem::take(&mut a.agg);
                a.interval(agg, Duration::from_secs(1))
            }
            .is_none()
        );
        assert_eq!(a.stats.intervals_refused, 1);
        assert!(
            a.stats
                .last_error
                .as_deref()
                .unwrap()
                .contains("above max_pps")
        );
    }

    #[test]
    fn a_configured_sampling_rate_overrides_the_agent() {
        let mut a = agent(Some(1000));
        let mut pool = 0;
        a.take(datagram(0, 1, &mut pool, 10, 10, 10), 0, None);
        let t = std::mem::take(&mut a.agg).finish(Duration::from_secs(1));
        assert_eq!(t[0].pps, 10_000);
        assert_eq!(a.stats.sampling_rate, 1000);
    }

    #[test]
    fn a_reflection_to_spread_ports_reaches_detection_as_one_class() {
        // What a switch samples of NTP answers to the ports spoofed requests came from.
        let mut a = agent(None);
        let mut pool = 0;
        for seq in 0..100u32 {
            let d = ntp_to(seq, seq * 10 + 1, &mut pool, 8, 1000, 1000, |i| {
                1024 + (seq as u16) * 8 + i as u16
            });
            a.take(d, 0, None);
        }
        let t = std::mem::take(&mut a.agg).finish(Duration::from_secs(1));
        let flows = &t[0].flows;
        assert!(flows.len() <= crate::telemetry::MAX_FLOWS);
        assert!(
            flows.iter().all(
                |f| crate::traffic::class::Class::of(f) == crate::traffic::class::Class::UdpAmp
            ),
            "{flows:?}"
        );
        assert_eq!(flows.iter().map(|f| f.pps).sum::<u64>(), t[0].pps);
    }

    #[test]
    fn trusted_sources_count_apart_and_the_rest_rolls_up_per_prefix() {
        let mut pool = 0;
        // Without trust: the NTP samples to 203.0.113.9 are its /24's rollup too.
        let mut a = agent(None);
        a.take(datagram(0, 1, &mut pool, 10, 1000, 1000), 0, None);
        let f = {
            let agg = std::mem::take(&mut a.agg);
            a.interval(agg, Duration::from_secs(1))
        }
        .unwrap();
        assert_eq!(f.targets[0].pps, 10_000);
        assert_eq!(f.rollups.len(), 1);
        assert_eq!(f.rollups[0].prefix.to_string(), "203.0.113.0/24");
        assert_eq!(f.rollups[0].pps, 10_000);
        // Their source trusted: counted apart, in no flow and no rollup.
        let mut b = new_agent(&a.config, &["198.51.100.0/24".parse().unwrap()]);
        b.take(datagram(1, 2, &mut pool, 10, 1000, 1000), 0, None);
        let f = {
            let agg = std::mem::take(&mut b.agg);
            b.interval(agg, Duration::from_secs(1))
        }
        .unwrap();
        let t = &f.targets[0];
        assert_eq!((t.pps, t.trusted_pps, t.flows.len()), (0, 10_000, 0));
        assert!(f.rollups.is_empty());
    }
}
