//! Telemetry: what a node probe (or the sFlow collector, for what its agents sample) tells the
//! controller each interval.
//!
//! A [`Report`] covers one interval on one node: the NIC counters of its interfaces (deltas over the
//! interval) and, from packet sampling, the inbound traffic broken down per destination address into
//! flows (protocol, ports, TCP flags, fragments) and top sources, already scaled by the sampling
//! rate to estimated packets and bytes per second. It is small: a probe sends at most
//! [`MAX_TARGETS`] targets of at most [`MAX_FLOWS`] flows and [`MAX_SOURCES`] sources each,
//! lumping the rest together, so a flood from random ports and sources does not grow the report.
//!
//! JSON on the wire (`POST /api/v1/telemetry`), unknown fields refused.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Most destination addresses in one report.
pub const MAX_TARGETS: usize = 64;
/// Most flows per target.
pub const MAX_FLOWS: usize = 32;
/// Most sources per target.
pub const MAX_SOURCES: usize = 10;
/// Most interfaces in one report.
pub const MAX_INTERFACES: usize = 64;
/// Most raw sampled packets in one report (sent only for addresses the controller captures).
pub const MAX_PACKETS: usize = 64;
/// Most bytes of one raw sampled packet.
pub const MAX_PACKET_BYTES: usize = 256;

/// One interval on one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The node's name (its hostname unless configured).
    pub node: String,
    /// Increases by one per interval; a restart of the probe starts again at 0.
    pub seq: u64,
    /// When the interval ended, in milliseconds since the Unix epoch, by the node's clock.
    pub time_ms: u64,
    /// Length of the interval in milliseconds.
    pub interval_ms: u32,
    /// The sampling rate in force: one packet in `one_in` was looked at (1 = every packet).
    #[serde(default = "one")]
    pub one_in: u32,
    /// Packets the sampler saw (before scaling), for confidence in the estimates.
    #[serde(default)]
    pub sampled: u64,
    #[serde(default)]
    pub interfaces: Vec<Interface>,
    #[serde(default)]
    pub targets: Vec<Target>,
    /// Sampled packets to the addresses the controller asked to capture (its answer's `capture`),
    /// for forensic pcap files.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub packets: Vec<Packet>,
    /// The node-local drops in force on this node (ids the controller sent), as applied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applied: Vec<u64>,
    /// Why the last change of node-local drops failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drop_error: Option<String>,
}

/// A node-local drop: the controller asks the probe of an attacked node to drop matching traffic
/// itself (nftables). Structured, not a command: the probe builds the rule, so the controller's
/// answer can never run anything else on the node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalDrop {
    pub id: u64,
    pub dst: IpAddr,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src: Option<IpAddr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<u8>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dports: Vec<u16>,
    /// (bits set, bits clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<(u8, u8)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fragment: bool,
    /// Rate-limit to this many bytes a second instead of dropping everything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_bytes: Option<u64>,
}

impl LocalDrop {
    /// The nftables rule (for `add rule inet deflect input ...`).
    pub fn nft(&self) -> String {
        let v6 = self.dst.is_ipv6();
        let ip = if v6 { "ip6" } else { "ip" };
        let mut r = format!("{ip} daddr {}", self.dst);
        if let Some(s) = self.src.filter(|s| s.is_ipv6() == v6) {
            r += &format!(" {ip} saddr {s}");
        }
        if self.fragment {
            r += if v6 {
                " exthdr frag frag-off != 0"
            } else {
                " ip frag-off & 0x1fff != 0"
            };
        }
        if let Some(p) = self.proto {
            r += &format!(" meta l4proto {p}");
            let transport = matches!(p, 6 | 17) && !self.fragment;
            let set = |ports: &[u16]| {
                ports
                    .iter()
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            if transport && !self.sports.is_empty() {
                r += &format!(" th sport {{ {} }}", set(&self.sports));
            }
            if transport && !self.dports.is_empty() {
                r += &format!(" th dport {{ {} }}", set(&self.dports));
            }
            if let (6, Some((on, off)), false) = (p, self.tcp_flags, self.fragment) {
                r += &format!(" tcp flags & 0x{:02x} == 0x{on:02x}", on | off);
            }
        }
        match self.rate_bytes {
            Some(b) => r += &format!(" limit rate over {b} bytes/second counter drop"),
            None => r += " counter drop",
        }
        r + &format!(" comment \"deflect {}\"", self.id)
    }
}

/// One sampled packet, as captured: the first bytes of its Ethernet frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Packet {
    pub time_ms: u64,
    /// Its length on the wire.
    pub orig_len: u32,
    /// The captured bytes, in hex.
    pub data: String,
}

fn one() -> u32 {
    1
}

/// NIC counters over the interval (deltas, not totals), both directions.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Interface {
    pub name: String,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
}

/// Inbound traffic to one destination address, estimated from samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub dst: IpAddr,
    /// All inbound packets and bits per second to `dst`.
    pub pps: u64,
    pub bps: u64,
    /// The breakdown, largest first; what did not fit is in a flow with no ports and no flags.
    #[serde(default)]
    pub flows: Vec<Flow>,
    /// Top sources by packets per second.
    #[serde(default)]
    pub sources: Vec<Source>,
}

/// A class of packets to one destination.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flow {
    /// IP protocol (6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, 47 GRE...).
    pub proto: u8,
    /// Source port, when one dominates (amplification comes from a well-known source port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    /// Destination port, when one dominates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    /// TCP flags byte (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20, ECE 0x40, CWR 0x80).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<u8>,
    /// Non-first IP fragments (no transport header to read).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fragment: bool,
    pub pps: u64,
    pub bps: u64,
}

/// One source address and its share.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    pub addr: IpAddr,
    pub pps: u64,
}

/// Why a report was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error("node name must be 1 to 64 characters of letters, digits, '.', '-' or '_'")]
    Node,
    #[error("interval_ms {0} is outside 50..=60000")]
    Interval(u32),
    #[error("one_in must be at least 1")]
    OneIn,
    #[error("{what}: {n} entries, at most {max}")]
    TooMany {
        what: &'static str,
        n: usize,
        max: usize,
    },
}

impl Report {
    /// Checks the bounds a probe promises; the API refuses a report that breaks them.
    pub fn validate(&self) -> Result<(), ReportError> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if self.node.is_empty() || self.node.len() > 64 || !self.node.chars().all(ok_char) {
            return Err(ReportError::Node);
        }
        if !(50..=60_000).contains(&self.interval_ms) {
            return Err(ReportError::Interval(self.interval_ms));
        }
        if self.one_in == 0 {
            return Err(ReportError::OneIn);
        }
        let bound = |what, n, max| {
            if n > max {
                Err(ReportError::TooMany { what, n, max })
            } else {
                Ok(())
            }
        };
        bound("interfaces", self.interfaces.len(), MAX_INTERFACES)?;
        bound("targets", self.targets.len(), MAX_TARGETS)?;
        bound("packets", self.packets.len(), MAX_PACKETS)?;
        for p in &self.packets {
            bound("packet bytes", p.data.len() / 2, MAX_PACKET_BYTES)?;
        }
        for t in &self.targets {
            bound("flows", t.flows.len(), MAX_FLOWS)?;
            bound("sources", t.sources.len(), MAX_SOURCES)?;
        }
        Ok(())
    }
}
