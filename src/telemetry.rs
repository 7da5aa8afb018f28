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
//! On the wire (`POST /api/v1/telemetry`) a report is JSON or MessagePack, the same fields either
//! way, unknown fields refused: [`Encoding`], named by the request's `Content-Type`. The probe sends
//! MessagePack, which the controller reads in about 60% of JSON's time (`benches/fleet.rs`), and
//! falls back to JSON for a controller that refuses it (one from before MessagePack answers 400).

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

/// How a report is encoded on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/json`, and what a request without a `Content-Type` is taken to be.
    Json,
    /// `application/msgpack` (or `application/vnd.msgpack`, `application/x-msgpack`): MessagePack
    /// with every struct a map keyed by field name, as JSON's objects are, so that the optional
    /// fields (left out when empty) and a field unknown to an older reader work alike.
    MessagePack,
}

/// Deepest nesting a MessagePack report is read to: a report's own is at most 7 (the report, its
/// targets, a target, its sources, a source, its address, the address's bytes); rmp-serde's
/// default of 1,024 would only be stack to spend on hostile input.
const MAX_MSGPACK_DEPTH: usize = 16;

/// Why a body does not read as a report.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("expected a JSON object")]
    NotJsonObject,
    #[error("expected a MessagePack map")]
    NotMessagePackMap,
    #[error("MessagePack: bytes after the report's map")]
    TrailingBytes,
    #[error("{0}")]
    Json(#[from] serde_json::Error),
    #[error("MessagePack: {0}")]
    MessagePack(#[from] rmp_serde::decode::Error),
}

impl Encoding {
    /// The encoding a `Content-Type` names (its parameters ignored), or `None` for any other (the
    /// API reads those as JSON, as it read every body before MessagePack).
    pub fn of_content_type(value: &str) -> Option<Encoding> {
        let essence = value.split(';').next().unwrap_or_default().trim();
        let is = |t: &str| essence.eq_ignore_ascii_case(t);
        if is("application/json") {
            Some(Encoding::Json)
        } else if is("application/msgpack")
            || is("application/vnd.msgpack")
            || is("application/x-msgpack")
        {
            Some(Encoding::MessagePack)
        } else {
            None
        }
    }

    /// The `Content-Type` it is sent with.
    pub fn content_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/json",
            Encoding::MessagePack => "application/msgpack",
        }
    }

    /// `report` in this encoding.
    pub fn encode(self, report: &Report) -> Vec<u8> {
        match self {
            // Plain data with string keys: neither encoder can fail on it.
            Encoding::Json => serde_json::to_vec(report).unwrap_or_default(),
            Encoding::MessagePack => rmp_serde::to_vec_named(report).unwrap_or_default(),
        }
    }

    /// A report from untrusted bytes: an object (JSON) or a map (MessagePack) at the top, as a
    /// struct read by position from an array would take fields in whatever order they came.
    /// Bounded: no length read from the input is allocated before its bytes are there (strings are
    /// borrowed from `bytes`, arrays grow as their elements arrive, serde's preallocation is
    /// capped), and nesting stops at [`MAX_MSGPACK_DEPTH`]. The bounds a probe promises are
    /// [`Report::validate`]'s, after this.
    pub fn decode(self, bytes: &[u8]) -> Result<Report, DecodeError> {
        match self {
            Encoding::Json => {
                if bytes.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
                    return Err(DecodeError::NotJsonObject);
                }
                Ok(serde_json::from_slice(bytes)?)
            }
            Encoding::MessagePack => {
                // fixmap, map 16, map 32.
                if !matches!(bytes.first(), Some(0x80..=0x8f | 0xde | 0xdf)) {
                    return Err(DecodeError::NotMessagePackMap);
                }
                let mut d = rmp_serde::Deserializer::from_read_ref(bytes);
                d.set_max_depth(MAX_MSGPACK_DEPTH);
                let r = Report::deserialize(&mut d)?;
                // Nothing after it (JSON allows whitespace only): the end of input is the only
                // thing that may fail to read there.
                match serde::de::IgnoredAny::deserialize(&mut d) {
                    Err(rmp_serde::decode::Error::InvalidMarkerRead(e))
                        if e.kind() == std::io::ErrorKind::UnexpectedEof =>
                    {
                        Ok(r)
                    }
                    _ => Err(DecodeError::TrailingBytes),
                }
            }
        }
    }
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

/// Property-test strategies for the report's parts, shared by the modules that read reports.
#[cfg(test)]
pub(crate) mod strategies {
    use proptest::prelude::*;

    use super::Flow;

    /// Any flow, its rates drawn from what `rate` makes.
    pub fn flow<R: Strategy<Value = u64>>(rate: impl Fn() -> R) -> impl Strategy<Value = Flow> {
        (
            any::<u8>(),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u8>()),
            any::<bool>(),
            rate(),
            rate(),
        )
            .prop_map(
                |(proto, sport, dport, tcp_flags, fragment, pps, bps)| Flow {
                    proto,
                    sport,
                    dport,
                    tcp_flags,
                    fragment,
                    pps,
                    bps,
                },
            )
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

    mod encodings {
        use proptest::prelude::*;

        use super::super::*;

        fn addr() -> impl Strategy<Value = IpAddr> {
            prop_oneof![
                any::<[u8; 4]>().prop_map(IpAddr::from),
                any::<[u8; 16]>().prop_map(IpAddr::from),
            ]
        }

        fn flow() -> impl Strategy<Value = Flow> {
            // A target's rates are its flows' sums: room for four of them.
            super::super::strategies::flow(|| 0..u64::MAX / 4)
        }

        fn source() -> impl Strategy<Value = Source> {
            (addr(), any::<u64>()).prop_map(|(addr, pps)| Source { addr, pps })
        }

        fn target() -> impl Strategy<Value = Target> {
            (
                addr(),
                proptest::collection::vec(flow(), 0..4),
                proptest::collection::vec(source(), 0..3),
                any::<u64>(),
                any::<u64>(),
            )
                .prop_map(|(dst, flows, sources, trusted_pps, trusted_bps)| Target {
                    sources,
                    trusted_pps,
                    trusted_bps,
                    ..Target::of_flows(dst, flows)
                })
        }

        /// Every field, the optional ones present or not.
        fn report() -> impl Strategy<Value = Report> {
            (
                (
                    "[a-zA-Z0-9._-]{1,64}",
                    any::<u64>(),
                    any::<u64>(),
                    any::<u32>(),
                ),
                (any::<u32>(), any::<u64>()),
                proptest::collection::vec(target(), 0..4),
                proptest::collection::vec(
                    (addr(), any::<u32>(), flow(), source()).prop_map(|(a, n, f, s)| Rollup {
                        prefix: rollup_of(a),
                        addresses: n,
                        pps: f.pps,
                        bps: f.bps,
                        flows: vec![f],
                        sources: vec![s],
                    }),
                    0..3,
                ),
                proptest::collection::vec(("[a-z0-9]{1,15}", any::<[u64; 6]>()), 0..3),
                proptest::collection::vec(
                    (any::<u64>(), any::<u32>(), "([0-9a-f]{2}){0,40}").prop_map(
                        |(time_ms, orig_len, data)| Packet {
                            time_ms,
                            orig_len,
                            data,
                        },
                    ),
                    0..2,
                ),
                proptest::collection::vec(any::<u64>(), 0..3),
                proptest::option::of(".{0,40}"),
            )
                .prop_map(
                    |(
                        (node, seq, time_ms, interval_ms),
                        (one_in, sampled),
                        targets,
                        rollups,
                        interfaces,
                        packets,
                        applied,
                        drop_error,
                    )| Report {
                        node,
                        seq,
                        time_ms,
                        interval_ms,
                        one_in,
                        sampled,
                        interfaces: interfaces
                            .into_iter()
                            .map(|(name, c)| Interface {
                                name,
                                rx_packets: c[0],
                                rx_bytes: c[1],
                                rx_dropped: c[2],
                                tx_packets: c[3],
                                tx_bytes: c[4],
                                tx_dropped: c[5],
                            })
                            .collect(),
                        targets,
                        rollups,
                        packets,
                        applied,
                        drop_error,
                    },
                )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// A report reads back the same from either encoding.
            #[test]
            fn a_report_round_trips_in_json_and_messagepack(r in report()) {
                for e in [Encoding::Json, Encoding::MessagePack] {
                    prop_assert_eq!(&e.decode(&e.encode(&r)).unwrap(), &r, "{:?}", e);
                }
            }

            /// Whatever bytes come, either decoder answers with a report or an error.
            #[test]
            fn arbitrary_bytes_never_panic_either_decoder(
                bytes in proptest::collection::vec(any::<u8>(), 0..512),
                map in any::<bool>(),
            ) {
                // Half of them start as a map would, to get past the first check.
                let mut b = bytes;
                if map {
                    b.insert(0, 0x8f);
                }
                let _ = Encoding::MessagePack.decode(&b);
                let _ = Encoding::Json.decode(&b);
            }

            /// Cut anywhere, a valid report is an error, never a panic (or a different report).
            #[test]
            fn every_truncation_of_a_messagepack_report_is_refused(r in report(), cut in 0.0..1.0f64) {
                let b = Encoding::MessagePack.encode(&r);
                let at = (b.len() as f64 * cut) as usize;
                prop_assert!(Encoding::MessagePack.decode(&b[..at]).is_err());
            }
        }

        /// A MessagePack head claiming 2^32 - 1 elements or bytes, with nothing behind it: refused
        /// at once, nothing of that size allocated (the test would abort on a 4 GB allocation, or
        /// take seconds to fill it).
        #[test]
        fn a_length_of_4_billion_allocates_nothing() {
            let key = |b: &mut Vec<u8>, k: &str| {
                b.push(0xa0 | k.len() as u8);
                b.extend_from_slice(k.as_bytes());
            };
            let t = std::time::Instant::now();
            for (field, marker) in [
                ("targets", 0xdd), // array 32
                ("node", 0xdb),    // str 32
                ("interfaces", 0xdd),
                ("applied", 0xdd),
            ] {
                let mut b = vec![0x81];
                key(&mut b, field);
                b.push(marker);
                b.extend_from_slice(&u32::MAX.to_be_bytes());
                // A few elements, not 4 billion.
                b.extend_from_slice(&[0x90; 8]);
                assert!(Encoding::MessagePack.decode(&b).is_err(), "{field}");
            }
            // A map of 4 billion entries at the top.
            let mut b = vec![0xdf];
            b.extend_from_slice(&u32::MAX.to_be_bytes());
            assert!(Encoding::MessagePack.decode(&b).is_err());
            assert!(t.elapsed() < std::time::Duration::from_secs(1));
        }

        /// Nesting beyond a report's own, inside it (the types stop it) or after it (skipped
        /// until the depth limit): refused, the stack untouched.
        #[test]
        fn deep_nesting_is_refused_without_overflowing_the_stack() {
            let deep = |b: &mut Vec<u8>| {
                b.extend(std::iter::repeat_n(0x91, 100_000));
                b.push(0x90);
            };
            let mut inside = vec![0x81, 0xa7];
            inside.extend_from_slice(b"targets");
            deep(&mut inside);
            let e = Encoding::MessagePack.decode(&inside).unwrap_err();
            assert!(e.to_string().contains("expected `V4` or `V6`"), "{e}");
            let mut after = Encoding::MessagePack.encode(&Report::default());
            deep(&mut after);
            assert!(matches!(
                Encoding::MessagePack.decode(&after),
                Err(DecodeError::TrailingBytes)
            ));
        }

        #[test]
        fn the_top_is_an_object_or_a_map_and_the_content_type_names_the_encoding() {
            let r = Report {
                node: "web1".into(),
                interval_ms: 1000,
                one_in: 1,
                ..Report::default()
            };
            // rmp-serde would read a struct from an array, field by field in order.
            let array = rmp_serde::to_vec(&r).unwrap();
            assert!(matches!(
                Encoding::MessagePack.decode(&array),
                Err(DecodeError::NotMessagePackMap)
            ));
            assert!(matches!(
                Encoding::Json.decode(b" [1]"),
                Err(DecodeError::NotJsonObject)
            ));
            // Nothing may follow the report.
            let mut b = Encoding::MessagePack.encode(&r);
            b.push(0xc0);
            assert!(matches!(
                Encoding::MessagePack.decode(&b),
                Err(DecodeError::TrailingBytes)
            ));
            // Unknown fields are refused in MessagePack as in JSON.
            let mut v = serde_json::to_value(&r).unwrap();
            v["colour"] = 1.into();
            let b = rmp_serde::to_vec_named(&v).unwrap();
            let e = Encoding::MessagePack.decode(&b).unwrap_err();
            assert!(e.to_string().contains("colour"), "{e}");
            for (t, e) in [
                ("application/json", Some(Encoding::Json)),
                ("Application/JSON; charset=utf-8", Some(Encoding::Json)),
                ("application/msgpack", Some(Encoding::MessagePack)),
                ("application/vnd.msgpack", Some(Encoding::MessagePack)),
                ("application/x-msgpack", Some(Encoding::MessagePack)),
                ("application/cbor", None),
                ("text/plain", None),
                ("", None),
            ] {
                assert_eq!(Encoding::of_content_type(t), e, "{t}");
            }
        }
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
