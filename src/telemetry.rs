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
//! Beside the per-address targets, a report carries per-prefix [`Rollup`]s: every /24 (IPv4)
//! and /64 (IPv6) that received traffic, summed from the whole counts *before* the top
//! [`MAX_TARGETS`] destinations are kept, so that a flood spread over a whole prefix (carpet
//! bombing: each address under its own threshold, a few samples each) adds up whatever the
//! report had to cut. Detection sums rollups into the prefix length each protected group
//! watches (/16 to /24, /32 to /64): a finer rollup cannot be built from a coarser one, so these
//! are the finest lengths a group may use.
//!
//! Trusted sources (`detection.trusted_sources`, sent to the probe in the controller's answer)
//! are taken out where samples are aggregated: their packets are in no flow, no target's and no
//! rollup's rates, only in each target's `trusted_pps` and `trusted_bps`.
//!
//! JSON on the wire (`POST /api/v1/telemetry`), unknown fields refused.

use std::net::IpAddr;

use ipnet::IpNet;
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
/// Most prefix rollups in one report.
pub const MAX_ROLLUPS: usize = 64;
/// The length of an IPv4 rollup.
pub const ROLLUP_V4: u8 = 24;
/// The length of an IPv6 rollup.
pub const ROLLUP_V6: u8 = 64;

/// The rollup prefix an address falls in (/24 or /64).
pub fn rollup_of(addr: IpAddr) -> IpNet {
    let len = if addr.is_ipv4() { ROLLUP_V4 } else { ROLLUP_V6 };
    // The lengths are valid for their family: `new` cannot fail.
    IpNet::new(addr, len).map_or_else(|_| IpNet::from(addr), |n| n.trunc())
}

/// One interval on one node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
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
    /// Per-prefix sums over every destination, before the cut to [`MAX_TARGETS`] (a report
    /// without them, from an older probe, is rolled up from its targets by detection).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollups: Vec<Rollup>,
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
    /// Traffic from trusted sources, left out of everything above.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trusted_pps: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub trusted_bps: u64,
}

impl Target {
    /// Traffic to `dst` made of `flows` (its rates their sums; no sources, nothing trusted).
    pub fn of_flows(dst: IpAddr, flows: Vec<Flow>) -> Target {
        Target {
            dst,
            pps: flows.iter().map(|f| f.pps).sum(),
            bps: flows.iter().map(|f| f.bps).sum(),
            flows,
            sources: Vec::new(),
            trusted_pps: 0,
            trusted_bps: 0,
        }
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Inbound traffic to every address of one /24 or /64, summed before any cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rollup {
    /// A /24 or a /64, its host bits zero.
    pub prefix: IpNet,
    /// Distinct destination addresses seen in it.
    pub addresses: u32,
    pub pps: u64,
    pub bps: u64,
    /// The breakdown across all its addresses, folded within each class like a target's.
    #[serde(default)]
    pub flows: Vec<Flow>,
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
    #[error("rollup {0}: a rollup is a /24 (IPv4) or a /64 (IPv6), its host bits zero")]
    Rollup(IpNet),
    #[error("{what}: {n} entries, at most {max}")]
    TooMany {
        what: &'static str,
        n: usize,
        max: usize,
    },
}

impl Report {
    /// The top sources it names for an attack on `target`, or on `prefix` (carpet bombing): those
    /// of every rollup inside the prefix, and of the targets inside it without one.
    pub fn sources_for(&self, target: IpAddr, prefix: Option<IpNet>) -> Vec<IpAddr> {
        let Some(p) = prefix else {
            return self
                .targets
                .iter()
                .find(|t| t.dst == target)
                .map(|t| t.sources.iter().map(|s| s.addr).collect())
                .unwrap_or_default();
        };
        let rolled = |a: IpAddr| self.rollups.iter().any(|r| r.prefix.contains(&a));
        self.rollups
            .iter()
            .filter(|r| p.contains(&r.prefix))
            .flat_map(|r| &r.sources)
            .chain(
                self.targets
                    .iter()
                    .filter(|t| p.contains(&t.dst) && !rolled(t.dst))
                    .flat_map(|t| &t.sources),
            )
            .map(|s| s.addr)
            .collect()
    }

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
        bound("rollups", self.rollups.len(), MAX_ROLLUPS)?;
        for r in &self.rollups {
            let len = if r.prefix.addr().is_ipv4() {
                ROLLUP_V4
            } else {
                ROLLUP_V6
            };
            if r.prefix.prefix_len() != len || r.prefix.trunc() != r.prefix {
                return Err(ReportError::Rollup(r.prefix));
            }
            bound("rollup flows", r.flows.len(), MAX_FLOWS)?;
            bound("rollup sources", r.sources.len(), MAX_SOURCES)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(rollups: Vec<Rollup>) -> Report {
        Report {
            node: "web1".into(),
            seq: 0,
            time_ms: 0,
            interval_ms: 1000,
            one_in: 1,
            sampled: 0,
            interfaces: Vec::new(),
            targets: Vec::new(),
            rollups,
            packets: Vec::new(),
            applied: Vec::new(),
            drop_error: None,
        }
    }

    fn rollup(prefix: &str, flows: usize) -> Rollup {
        Rollup {
            prefix: prefix.parse().unwrap(),
            addresses: 1,
            pps: 1,
            bps: 8,
            flows: vec![Flow::default(); flows],
            sources: Vec::new(),
        }
    }

    #[test]
    fn rollups_are_24s_and_64s_within_the_bounds() {
        assert_eq!(
            report(vec![rollup("203.0.113.0/24", 32)]).validate(),
            Ok(())
        );
        assert_eq!(report(vec![rollup("2001:db8::/64", 0)]).validate(), Ok(()));
        for bad in [
            "203.0.113.0/23",
            "203.0.113.7/24",
            "2001:db8::/48",
            "2001:db8::1/64",
        ] {
            assert_eq!(
                report(vec![rollup(bad, 1)]).validate(),
                Err(ReportError::Rollup(bad.parse().unwrap())),
                "{bad}"
            );
        }
        assert!(matches!(
            report(vec![rollup("203.0.113.0/24", MAX_FLOWS + 1)]).validate(),
            Err(ReportError::TooMany {
                what: "rollup flows",
                ..
            })
        ));
        let many = (0..=MAX_ROLLUPS)
            .map(|i| rollup(&format!("10.0.{i}.0/24"), 0))
            .collect();
        assert!(matches!(
            report(many).validate(),
            Err(ReportError::TooMany {
                what: "rollups",
                ..
            })
        ));
        assert_eq!(
            rollup_of("203.0.113.77".parse().unwrap()).to_string(),
            "203.0.113.0/24"
        );
    }

    #[test]
    fn an_attack_s_sources_are_its_address_s_or_its_prefix_s() {
        let src = |a: &str| Source {
            addr: a.parse().unwrap(),
            pps: 1,
        };
        let target = |dst: &str, s: &str| Target {
            dst: dst.parse().unwrap(),
            pps: 1,
            bps: 8,
            flows: Vec::new(),
            sources: vec![src(s)],
            trusted_pps: 0,
            trusted_bps: 0,
        };
        let mut r = report(vec![Rollup {
            sources: vec![src("198.51.100.1")],
            ..rollup("203.0.113.0/24", 0)
        }]);
        r.targets = vec![
            target("203.0.113.7", "198.51.100.2"),
            target("203.0.112.9", "198.51.100.3"),
        ];
        let ips = |v: Vec<IpAddr>| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert_eq!(
            ips(r.sources_for("203.0.113.7".parse().unwrap(), None)),
            ["198.51.100.2"]
        );
        // A /23: the /24's rollup, and the target of the other /24, which has none.
        let p = Some("203.0.112.0/23".parse().unwrap());
        assert_eq!(
            ips(r.sources_for("203.0.112.0".parse().unwrap(), p)),
            ["198.51.100.1", "198.51.100.3"]
        );
        assert!(r.sources_for("192.0.2.1".parse().unwrap(), None).is_empty());
    }

    #[test]
    fn a_report_without_the_new_fields_still_reads() {
        let r: Report = serde_json::from_str(
            r#"{"node":"web1","seq":1,"time_ms":0,"interval_ms":1000,
                "targets":[{"dst":"203.0.113.7","pps":1,"bps":8}]}"#,
        )
        .unwrap();
        assert!(r.rollups.is_empty());
        assert_eq!(r.targets[0].trusted_pps, 0);
        // And what a probe sends without them has no new keys (an older controller reads it).
        let text = serde_json::to_string(&r).unwrap();
        assert!(
            !text.contains("rollups") && !text.contains("trusted"),
            "{text}"
        );
    }
}
