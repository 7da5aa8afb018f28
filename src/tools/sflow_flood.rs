//! `deflect sflow-flood`: a synthetic sFlow exporter. It describes a bounded flood as a switch
//! would: flow samples with raw packet headers, one in `--sampling-rate` packets, sample pools and
//! sequence numbers that add up, a counter sample per datagram batch, sent as sFlow v5 datagrams
//! over UDP. For tests, the lab, and trying a collector without a switch.

use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use deflect_sflow::encode::{DatagramBuilder, raw_header};
use deflect_sflow::{
    CounterRecord, CounterSample, FlowRecord, FlowSample, GenericInterface, ethernet_icmp_frame,
    ethernet_tcp_frame, ethernet_udp_frame,
};
use tracing::{error, info};

/// What the flood is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FloodKind {
    /// UDP from `--sport` (123: NTP amplification) to `--dport`.
    Udp,
    /// TCP SYNs to `--dport`.
    Syn,
    /// ICMP (or ICMPv6) echo requests.
    Icmp,
}

/// `deflect sflow-flood`.
#[derive(Debug, Clone, Args)]
pub struct FloodArgs {
    /// Where the collector listens.
    #[arg(long, default_value = "127.0.0.1:6343")]
    pub to: SocketAddr,
    /// The source address to send from (the collector trusts agents by it).
    #[arg(long)]
    pub bind: Option<IpAddr>,
    /// The agent address written in the datagrams.
    #[arg(long, default_value = "192.0.2.250")]
    pub agent: IpAddr,
    /// The flood's destination.
    #[arg(long)]
    pub target: IpAddr,
    /// The flood's sources: this many addresses counting up from --source.
    #[arg(long, default_value = "198.51.100.1")]
    pub source: IpAddr,
    #[arg(long, default_value_t = 50)]
    pub sources: u32,
    #[arg(long, value_enum, default_value = "udp")]
    pub kind: FloodKind,
    #[arg(long, default_value_t = 123)]
    pub sport: u16,
    #[arg(long, default_value_t = 4444)]
    pub dport: u16,
    /// Spread the destination port over this many ports from `--dport` (a reflection answers the
    /// ports its spoofed requests came from; 1: one port).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..))]
    pub dport_spread: u16,
    /// Bytes of UDP payload per packet.
    #[arg(long, default_value_t = 468)]
    pub payload: usize,
    /// The flood's rate, packets per second (what the samples stand for).
    #[arg(long, default_value_t = 100_000)]
    pub pps: u64,
    /// One packet in this many is sampled.
    #[arg(long, default_value_t = 1024)]
    pub sampling_rate: u32,
    /// How long, in seconds (at most 600).
    #[arg(long, default_value_t = 5.0)]
    pub seconds: f64,
    /// Flow samples per datagram.
    #[arg(long, default_value_t = 8)]
    pub samples_per_datagram: usize,
}

/// What a flood sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sent {
    pub datagrams: u64,
    pub samples: u64,
}

fn nth_source(base: IpAddr, n: u32) -> IpAddr {
    match base {
        IpAddr::V4(a) => IpAddr::V4(u32::from(a).wrapping_add(n).into()),
        IpAddr::V6(a) => IpAddr::V6(u128::from(a).wrapping_add(u128::from(n)).into()),
    }
}

/// Sends the flood; returns what was sent. Bounded by `seconds` (at most 600) and by the number of
/// samples the rate gives for that time.
pub fn flood(a: &FloodArgs) -> std::io::Result<Sent> {
    let bind = match a.bind {
        Some(ip) => SocketAddr::new(ip, 0),
        None if a.to.is_ipv4() => SocketAddr::from(([0, 0, 0, 0], 0)),
        None => SocketAddr::from(([0u16; 8], 0)),
    };
    let socket = UdpSocket::bind(bind)?;
    let seconds = a.seconds.clamp(0.0, 600.0);
    let rate = a.sampling_rate.max(1);
    let per_sec = (a.pps as f64 / f64::from(rate)).max(0.0);
    let total = (per_sec * seconds).round() as u64;
    let per_dgram = a.samples_per_datagram.clamp(1, 64);
    let start = Instant::now();
    let limit = Duration::from_secs_f64(seconds + 1.0);
    let (mut sent, mut seq, mut pool) = (
        Sent {
            datagrams: 0,
            samples: 0,
        },
        0u32,
        0u32,
    );
    while sent.samples < total && start.elapsed() < limit {
        // Keep to the schedule: the samples due by now, in datagrams of `per_dgram`.
        let due = ((start.elapsed().as_secs_f64() * per_sec) as u64 + 1).min(total);
        while sent.samples < due {
            let mut b = DatagramBuilder::new(a.agent)
                .sequence(seq)
                .uptime_ms(start.elapsed().as_millis() as u32 + 1000);
            let n = ((due - sent.samples) as usize).min(per_dgram);
            for _ in 0..n {
                let src = nth_source(
                    a.source,
                    (sent.samples % u64::from(a.sources.max(1))) as u32,
                );
                let dport = a
                    .dport
                    .wrapping_add((sent.samples % u64::from(a.dport_spread)) as u16);
                let frame = match a.kind {
                    FloodKind::Udp => ethernet_udp_frame(src, a.target, a.sport, dport, a.payload),
                    FloodKind::Syn => ethernet_tcp_frame(src, a.target, 40000, dport, 0x02),
                    FloodKind::Icmp => ethernet_icmp_frame(src, a.target),
                };
                pool = pool.wrapping_add(rate);
                b = b.flow(FlowSample {
                    expanded: false,
                    sequence: sent.samples as u32,
                    source_id_type: 0,
                    source_id_index: 1,
                    sampling_rate: rate,
                    sample_pool: pool,
                    drops: 0,
                    input: 1,
                    output: 2,
                    records: vec![FlowRecord::RawHeader(raw_header(&frame))],
                });
                sent.samples += 1;
            }
            if seq % 16 == 0 {
                b = b.counters(CounterSample {
                    expanded: false,
                    sequence: seq / 16,
                    source_id_type: 0,
                    source_id_index: 1,
                    records: vec![CounterRecord::Generic(GenericInterface {
                        if_index: 1,
                        if_type: 6,
                        if_speed: 10_000_000_000,
                        if_direction: 1,
                        if_status: 3,
                        if_in_ucast_pkts: u32::try_from(u64::from(pool)).unwrap_or(u32::MAX),
                        ..GenericInterface::default()
                    })],
                });
            }
            socket.send_to(&b.encode(), a.to)?;
            sent.datagrams += 1;
            seq = seq.wrapping_add(1);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(sent)
}

pub fn main(a: FloodArgs) -> ExitCode {
    match flood(&a) {
        Ok(s) => {
            info!(
                datagrams = s.datagrams,
                samples = s.samples,
                to = %a.to,
                "sFlow flood sent"
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            error!("sending to {}: {e}", a.to);
            ExitCode::FAILURE
        }
    }
}
