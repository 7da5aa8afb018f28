//! Traffic classes and attack vectors: what a flow is, and what a flood of it is called.
//!
//! Every flow of a report falls in exactly one [`Class`]; baselines are learned per class, so a
//! download (TCP ACKs and payload) does not hide a SYN flood, and a speedtest does not look like
//! one. An anomalous class becomes a [`Vector`] with a [`Signature`] naming what was seen.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::telemetry::{Flow, Source};
use crate::traffic::FastMap;

pub use crate::traffic::class::{AMPLIFIERS, Class, amplifier, tcp};

/// What an attack is called, for operators and policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Vector {
    SynFlood,
    AckFlood,
    RstFlood,
    /// Other TCP flag combinations (SYN-ACK reflection, FIN, XMAS, null).
    TcpFlagFlood,
    /// Full connections to one service port (SYN and ACK together, one destination port).
    TcpConnectionFlood,
    UdpFlood,
    /// UDP reflection and amplification from a well-known source port.
    Amplification,
    IcmpFlood,
    FragmentFlood,
    GreFlood,
    /// Too much traffic, no single class to blame.
    Volumetric,
}

impl Vector {
    pub const ALL: [Vector; 11] = [
        Vector::SynFlood,
        Vector::AckFlood,
        Vector::RstFlood,
        Vector::TcpFlagFlood,
        Vector::TcpConnectionFlood,
        Vector::UdpFlood,
        Vector::Amplification,
        Vector::IcmpFlood,
        Vector::FragmentFlood,
        Vector::GreFlood,
        Vector::Volumetric,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Vector::SynFlood => "syn-flood",
            Vector::AckFlood => "ack-flood",
            Vector::RstFlood => "rst-flood",
            Vector::TcpFlagFlood => "tcp-flag-flood",
            Vector::TcpConnectionFlood => "tcp-connection-flood",
            Vector::UdpFlood => "udp-flood",
            Vector::Amplification => "amplification",
            Vector::IcmpFlood => "icmp-flood",
            Vector::FragmentFlood => "fragment-flood",
            Vector::GreFlood => "gre-flood",
            Vector::Volumetric => "volumetric",
        }
    }

    pub fn from_name(s: &str) -> Option<Vector> {
        Vector::ALL.into_iter().find(|v| v.name() == s)
    }

    /// The vector an anomalous class is, before looking closer (connection floods).
    pub fn of(class: Class) -> Vector {
        match class {
            Class::TcpSyn => Vector::SynFlood,
            Class::TcpRst => Vector::RstFlood,
            Class::TcpAck => Vector::AckFlood,
            Class::TcpOther => Vector::TcpFlagFlood,
            Class::UdpAmp => Vector::Amplification,
            Class::Udp => Vector::UdpFlood,
            Class::Icmp => Vector::IcmpFlood,
            Class::Fragment => Vector::FragmentFlood,
            Class::Gre => Vector::GreFlood,
            Class::Other => Vector::Volumetric,
        }
    }
}

impl fmt::Display for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What an attack looks like: enough to build a FlowSpec rule that matches it and little else.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signature {
    /// IP protocol, when one carries the attack.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proto: Option<u8>,
    /// Source ports that carry at least 80% of it (empty: too many to name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sports: Vec<u16>,
    /// Destination ports that carry at least 80% of it (empty: too many to name).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dports: Vec<u16>,
    /// TCP flags of the class: (bits that must be set, bits that must be clear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_flags: Option<(u8, u8)>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fragment: bool,
    /// The amplification service, by its source port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Top sources seen towards the target while the attack ran, at most [`MAX_SOURCES`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<IpAddr>,
    /// Beside `sources`, one for one: the largest share of the attack's packets each carried in
    /// an interval, in basis points (1/100 of a percent; 10,000 is all). What a source-based step
    /// goes by ([`Signature::share_bp`]); missing (older records): unknown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shares: Vec<u16>,
}

/// Most sources a signature keeps.
pub const MAX_SOURCES: usize = 16;

impl Signature {
    /// Adds one interval's top sources with their share of all the traffic to the target then,
    /// `total_pps` (a source seen again keeps its largest share), up to [`MAX_SOURCES`]. A report
    /// gives a source's rate over every class, not the attack's: measured against the attack's
    /// own rate, a busy client's web traffic would make it a "heavy source" of a SYN flood; against
    /// the target's total it is a share no larger than the truth for a source that sends only the
    /// flood. A source estimated below `min_pps` (a few samples' worth: one sample at 1:65536 is a
    /// 65k pps "source") is named with no share: too few samples to judge.
    pub fn add_sources(&mut self, sources: &[Source], total_pps: u64, min_pps: u64) {
        for s in sources {
            let bp = if total_pps == 0 || s.pps < min_pps {
                0
            } else {
                (u128::from(s.pps) * 10_000 / u128::from(total_pps)).min(10_000) as u16
            };
            self.add_source(s.addr, bp);
        }
    }

    /// Adds another signature's sources and shares (an attack that came back).
    pub fn merge_sources(&mut self, other: &Signature) {
        for (i, s) in other.sources.iter().enumerate() {
            self.add_source(*s, other.share_bp(i));
        }
    }

    fn add_source(&mut self, addr: IpAddr, bp: u16) {
        self.shares.resize(self.sources.len(), 0);
        match self.sources.iter().position(|a| *a == addr) {
            Some(i) => self.shares[i] = self.shares[i].max(bp),
            None if self.sources.len() < MAX_SOURCES => {
                self.sources.push(addr);
                self.shares.push(bp);
            }
            None => {}
        }
    }

    /// The share of source `i`, in basis points (0 when unknown).
    pub fn share_bp(&self, i: usize) -> u16 {
        self.shares.get(i).copied().unwrap_or(0)
    }
}

/// Ports that together carry at least `share` of `total`, at most `max` of them; empty if they cannot.
fn dominant_ports(
    ports: &FastMap<Option<u16>, u64>,
    total: u64,
    share: f64,
    max: usize,
) -> Vec<u16> {
    let mut v: Vec<(Option<u16>, u64)> = ports.iter().map(|(p, n)| (*p, *n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    let mut out = Vec::new();
    let mut sum = 0u64;
    for (p, n) in v {
        // Unknown ports (folded flows) cannot be named: then the ports are not a signature.
        let Some(p) = p else { return Vec::new() };
        if out.len() == max {
            return Vec::new();
        }
        out.push(p);
        sum = sum.saturating_add(n);
        if sum as f64 >= share * total as f64 {
            out.sort_unstable();
            return out;
        }
    }
    Vec::new()
}

/// The share of a target's traffic its five top sources must carry for completed handshakes to be
/// a connection flood (a few hosts opening connections without end) rather than a flash crowd.
pub const CONNECTION_FLOOD_SHARE: f64 = 0.2;

/// Whether SYNs whose handshakes complete (a connection flood by [`signature`]) are a flash crowd:
/// many clients each opening a few connections, no source standing out in the `total_pps` to the
/// target. That is a service being popular, not an attack: no flow-level rule tells the crowd
/// from itself. (A botnet that completes handshakes from thousands of addresses looks the same
/// at this layer; it is for the service's own defences, at layer 7.)
///
/// Without sources in the report nothing can be judged: not a crowd.
pub fn flash_crowd(sources: &[Source], total_pps: u64) -> bool {
    if sources.is_empty() {
        return false;
    }
    let top: u64 = sources
        .iter()
        .take(5)
        .map(|s| s.pps)
        .fold(0, u64::saturating_add);
    total_pps > 0 && (top as f64) < CONNECTION_FLOOD_SHARE * total_pps as f64
}

/// Whether the SYNs in these flows to one target (an address, or a prefix's merged flows) are a
/// flash crowd: their handshakes complete (a connection flood by [`signature`]) and no source
/// stands out in the target's `total_pps` ([`flash_crowd`]).
pub fn syn_flash_crowd(flows: &[Flow], sources: &[Source], total_pps: u64) -> bool {
    let (v, _) = signature(Class::TcpSyn, flows, sources);
    v == Vector::TcpConnectionFlood && flash_crowd(sources, total_pps)
}

/// The signature of `class` in these flows (all to one target), and the vector, refined: SYN and ACK
/// floods to one service port from the same sources are a connection flood.
pub fn signature(class: Class, flows: &[Flow], sources: &[Source]) -> (Vector, Signature) {
    let mine: Vec<&Flow> = flows.iter().filter(|f| Class::of(f) == class).collect();
    // Reports are untrusted: rates near u64::MAX must not overflow (saturating throughout).
    let total: u64 = mine.iter().map(|f| f.pps).fold(0, u64::saturating_add);
    let mut sports: FastMap<Option<u16>, u64> = FastMap::default();
    let mut dports: FastMap<Option<u16>, u64> = FastMap::default();
    let mut protos: FastMap<u8, u64> = FastMap::default();
    for f in &mine {
        for n in [
            sports.entry(f.sport).or_default(),
            dports.entry(f.dport).or_default(),
        ] {
            *n = n.saturating_add(f.pps);
        }
        let n = protos.entry(f.proto).or_default();
        *n = n.saturating_add(f.pps);
    }
    let proto = protos
        .iter()
        .max_by_key(|(p, n)| (**n, **p))
        .map(|(p, _)| *p);
    let mut sig = Signature {
        proto: if class == Class::Other && protos.len() > 1 {
            None
        } else {
            proto
        },
        ..Signature::default()
    };
    // Named here; their shares are given by the detector, which knows the target's total and
    // the sampling behind the estimates.
    sig.add_sources(sources, 0, 0);
    let mut vector = Vector::of(class);
    match class {
        Class::TcpSyn => {
            sig.tcp_flags = Some((tcp::SYN, tcp::ACK));
            sig.dports = dominant_ports(&dports, total, 0.8, 4);
            // Real handshakes: as many ACKs as SYNs to the same single port.
            if let [port] = sig.dports[..] {
                let acks: u64 = flows
                    .iter()
                    .filter(|f| Class::of(f) == Class::TcpAck && f.dport == Some(port))
                    .map(|f| f.pps)
                    .fold(0, u64::saturating_add);
                if acks.saturating_mul(2) >= total {
                    vector = Vector::TcpConnectionFlood;
                    sig.tcp_flags = None;
                }
            }
        }
        Class::TcpRst => {
            sig.tcp_flags = Some((tcp::RST, 0));
            sig.dports = dominant_ports(&dports, total, 0.8, 4);
        }
        Class::TcpAck => {
            sig.tcp_flags = Some((tcp::ACK, tcp::SYN | tcp::RST | tcp::FIN));
            sig.dports = dominant_ports(&dports, total, 0.8, 4);
        }
        Class::TcpOther => {
            // The most common flag byte names it.
            let mut by_flags: FastMap<u8, u64> = FastMap::default();
            for f in &mine {
                let n = by_flags.entry(f.tcp_flags.unwrap_or(0)).or_default();
                *n = n.saturating_add(f.pps);
            }
            if let Some((fl, n)) = by_flags.iter().max_by_key(|(fl, n)| (**n, **fl)) {
                if *n as f64 >= 0.8 * total as f64 && *fl != 0 {
                    sig.tcp_flags = Some((*fl, !*fl));
                }
            }
            sig.dports = dominant_ports(&dports, total, 0.8, 4);
        }
        Class::UdpAmp => {
            sig.sports = dominant_ports(&sports, total, 0.8, 4);
            sig.service = sig
                .sports
                .iter()
                .filter_map(|p| amplifier(*p))
                .collect::<Vec<_>>()
                .first()
                .map(|s| s.to_string());
        }
        Class::Udp => {
            sig.dports = dominant_ports(&dports, total, 0.8, 4);
        }
        Class::Fragment => {
            sig.fragment = true;
            // Fragments have no ports, and their protocol is that of the datagram.
        }
        Class::Icmp | Class::Gre | Class::Other => {}
    }
    (vector, sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(
        proto: u8,
        sport: Option<u16>,
        dport: Option<u16>,
        flags: Option<u8>,
        pps: u64,
    ) -> Flow {
        Flow {
            proto,
            sport,
            dport,
            tcp_flags: flags,
            fragment: false,
            pps,
            bps: pps * 800,
        }
    }

    #[test]
    fn classes() {
        assert_eq!(
            Class::of(&flow(6, None, Some(80), Some(tcp::SYN), 1)),
            Class::TcpSyn
        );
        assert_eq!(
            Class::of(&flow(6, None, Some(80), Some(tcp::SYN | tcp::ACK), 1)),
            Class::TcpOther
        );
        assert_eq!(
            Class::of(&flow(6, None, Some(80), Some(tcp::ACK | tcp::PSH), 1)),
            Class::TcpAck
        );
        assert_eq!(
            Class::of(&flow(6, None, Some(80), Some(tcp::RST | tcp::ACK), 1)),
            Class::TcpRst
        );
        assert_eq!(
            Class::of(&flow(6, None, Some(80), Some(tcp::FIN | tcp::ACK), 1)),
            Class::TcpOther
        );
        assert_eq!(Class::of(&flow(6, None, None, None, 1)), Class::TcpAck);
        assert_eq!(
            Class::of(&flow(17, Some(123), Some(4444), None, 1)),
            Class::UdpAmp
        );
        assert_eq!(
            Class::of(&flow(17, Some(40000), Some(53), None, 1)),
            Class::Udp
        );
        assert_eq!(Class::of(&flow(1, None, None, None, 1)), Class::Icmp);
        assert_eq!(Class::of(&flow(58, None, None, None, 1)), Class::Icmp);
        assert_eq!(Class::of(&flow(47, None, None, None, 1)), Class::Gre);
        assert_eq!(Class::of(&flow(50, None, None, None, 1)), Class::Other);
        let mut frag = flow(17, None, None, None, 1);
        frag.fragment = true;
        assert_eq!(Class::of(&frag), Class::Fragment);
        for (i, c) in Class::ALL.iter().enumerate() {
            assert_eq!(c.index(), i);
        }
        for v in Vector::ALL {
            assert_eq!(Vector::from_name(v.name()), Some(v));
        }
    }

    #[test]
    fn amplification_signature_names_the_service() {
        let flows = [
            flow(17, Some(123), Some(4444), None, 9000),
            flow(17, Some(123), Some(5555), None, 900),
            flow(17, Some(50000), Some(53), None, 100),
        ];
        let (v, s) = signature(Class::UdpAmp, &flows, &[]);
        assert_eq!(v, Vector::Amplification);
        assert_eq!(s.proto, Some(17));
        assert_eq!(s.sports, vec![123]);
        assert_eq!(s.service.as_deref(), Some("ntp"));
        assert!(s.dports.is_empty());
    }

    #[test]
    fn syn_flood_and_connection_flood() {
        let spread: Vec<Flow> = (0..10)
            .map(|i| flow(6, None, Some(1000 + i), Some(tcp::SYN), 1000))
            .collect();
        let (v, s) = signature(Class::TcpSyn, &spread, &[]);
        assert_eq!(v, Vector::SynFlood);
        assert!(
            s.dports.is_empty(),
            "ten ports carry it evenly: no port in the signature"
        );
        assert_eq!(s.tcp_flags, Some((tcp::SYN, tcp::ACK)));

        let web = [flow(6, None, Some(443), Some(tcp::SYN), 10_000)];
        let (v, s) = signature(Class::TcpSyn, &web, &[]);
        assert_eq!((v, s.dports.clone()), (Vector::SynFlood, vec![443]));

        let conn = [
            flow(6, None, Some(443), Some(tcp::SYN), 10_000),
            flow(6, None, Some(443), Some(tcp::ACK), 12_000),
        ];
        let (v, s) = signature(Class::TcpSyn, &conn, &[]);
        assert_eq!(v, Vector::TcpConnectionFlood);
        assert_eq!(s.dports, vec![443]);
        assert_eq!(s.tcp_flags, None);
    }

    #[test]
    fn completed_handshakes_from_a_crowd_are_a_flash_crowd_from_a_few_hosts_a_flood() {
        let src = |i: u8, pps| Source {
            addr: std::net::IpAddr::from([198, 18, 0, i]),
            pps,
        };
        // 22,000 pps to the target: five hosts with 1,000 each (sampled crowd members) are 23%.
        let few: Vec<Source> = (1..=5).map(|i| src(i, 1000)).collect();
        assert!(!flash_crowd(&few, 22_000));
        // The same five at 4,000 pps each among 110,000 pps: 18%, a crowd.
        let crowd: Vec<Source> = (1..=8).map(|i| src(i, 4000)).collect();
        assert!(flash_crowd(&crowd, 110_000));
        assert!(
            !flash_crowd(&[], 110_000),
            "no source named: nothing to judge by"
        );
        assert!(!flash_crowd(&few, 0));
    }

    #[test]
    fn folded_ports_are_not_named() {
        let flows = [
            flow(17, None, Some(80), None, 500),
            flow(17, None, None, None, 600),
        ];
        let (_, s) = signature(Class::Udp, &flows, &[]);
        assert!(s.dports.is_empty());
    }

    #[test]
    fn sources_keep_their_largest_share_of_the_attack_up_to_the_bound() {
        let src = |a: &str, pps| Source {
            addr: a.parse().unwrap(),
            pps,
        };
        let mut sig = Signature::default();
        sig.add_sources(
            &[src("198.51.100.1", 600), src("198.51.100.2", 50)],
            1000,
            1,
        );
        assert_eq!(sig.shares, [6000, 500]);
        // Seen again with a smaller share: the largest stays; a new one joins.
        sig.add_sources(
            &[src("198.51.100.1", 100), src("198.51.100.3", 2000)],
            1000,
            1,
        );
        assert_eq!(sig.share_bp(0), 6000);
        assert_eq!(sig.share_bp(2), 10_000, "at most all of it");
        // Nothing to divide by: known, but no share.
        sig.add_sources(&[src("198.51.100.4", 5)], 0, 1);
        assert_eq!(sig.share_bp(3), 0);
        // Too few samples behind it: named, no share.
        sig.add_sources(&[src("198.51.100.6", 900)], 1000, 1000);
        assert_eq!(sig.share_bp(4), 0);
        assert_eq!(sig.sources.len(), 5);
        sig.sources.pop();
        sig.shares.pop();
        // Hostile rates do not overflow.
        sig.add_sources(&[src("198.51.100.5", u64::MAX)], u64::MAX, 1);
        assert_eq!(sig.share_bp(4), 10_000);
        // Bounded, and a record without shares (older) reads its sources as share 0.
        let many: Vec<Source> = (0..40u8)
            .map(|i| src(&format!("192.0.2.{i}"), 10))
            .collect();
        sig.add_sources(&many, 100, 1);
        assert_eq!(sig.sources.len(), MAX_SOURCES);
        assert_eq!(sig.shares.len(), MAX_SOURCES);
        let old: Signature = serde_json::from_str(r#"{"sources": ["198.51.100.9"]}"#).unwrap();
        assert_eq!(old.share_bp(0), 0);
        let mut merged = old.clone();
        merged.merge_sources(&sig);
        assert_eq!(merged.sources.len(), MAX_SOURCES);
        assert_eq!(merged.share_bp(1), 6000);
    }
}
