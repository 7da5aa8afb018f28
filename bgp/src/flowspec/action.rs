//! FlowSpec actions, carried as extended communities ([`ExtCommunity`]; RFC 8955 §7, RFC 8956 §6).
//!
//! ```text
//! 0x8006 traffic-rate-bytes    | 2-octet AS | IEEE 754 float, bytes/s (0 = discard) |
//! 0x800c traffic-rate-packets  | 2-octet AS | IEEE 754 float, packets/s             |
//! 0x8007 traffic-action        | 5 × 0 | flags: ... S (bit 46, 0x02) T (bit 47, 0x01) |
//! 0x8008 redirect AS-2octet    | 2-octet AS | 4-octet value |
//! 0x8108 redirect IPv4         | IPv4 address | 2-octet value |
//! 0x8208 redirect AS-4octet    | 4-octet AS | 2-octet value |
//! 0x8009 traffic-marking       | 5 × 0 | DSCP (6 bits) |
//! ```
//!
//! The traffic-action T bit is easy to invert. RFC 8955 §7.3: "Terminal Action (bit 47): When this
//! bit is set, the traffic-filtering engine will apply any subsequent filtering rules ... If not set,
//! the evaluation of the traffic filter stops when this rule is applied." So `terminal: true` (stop
//! after this rule) is the T bit *clear*, and `terminal: false` (continue) sets it.

use std::net::Ipv4Addr;

use super::rule::Rule;
use crate::community::ExtCommunity;

/// One FlowSpec action.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Action {
    /// 0x8006; a rate of 0 discards (RFC 8955 §7.1).
    TrafficRateBytes { asn: u16, rate: f32 },
    /// 0x800c (RFC 8955 §7.2).
    TrafficRatePackets { asn: u16, rate: f32 },
    /// 0x8007 (RFC 8955 §7.3). `terminal`: evaluation stops after this rule (T bit clear).
    TrafficAction { sample: bool, terminal: bool },
    /// 0x8008 (RFC 8955 §7.4).
    RedirectAs2 { asn: u16, value: u32 },
    /// 0x8108 (RFC 8955 §7.4).
    RedirectIpv4 { ip: Ipv4Addr, value: u16 },
    /// 0x8208 (RFC 8955 §7.4).
    RedirectAs4 { asn: u32, value: u16 },
    /// 0x8009 (RFC 8955 §7.5): DSCP, 6 bits.
    TrafficMarking { dscp: u8 },
}

impl Action {
    /// The RFC 8955 §7 actions a route carries one of: a traffic rate (bytes or packets: two rates
    /// on one route conflict), a traffic-action, a marking. Redirects of different kinds may go
    /// together.
    fn slot(&self) -> Option<&'static str> {
        match self {
            Action::TrafficRateBytes { .. } | Action::TrafficRatePackets { .. } => {
                Some("traffic rate")
            }
            Action::TrafficAction { .. } => Some("traffic-action"),
            Action::TrafficMarking { .. } => Some("mark"),
            Action::RedirectAs2 { .. }
            | Action::RedirectIpv4 { .. }
            | Action::RedirectAs4 { .. } => None,
        }
    }
}

/// Checks that actions can go on one route together: at most one traffic rate (`discard` is one,
/// so is `rate-packets`), one traffic-action and one mark, and no action twice. Returns the action
/// that conflicts with an earlier one, and why.
pub fn check_actions(actions: &[Action]) -> Result<(), (Action, String)> {
    for (i, a) in actions.iter().enumerate() {
        for b in &actions[..i] {
            if a == b {
                return Err((*a, "is given twice".into()));
            }
            if let Some(slot) = a.slot().filter(|s| b.slot() == Some(s)) {
                return Err((
                    *a,
                    format!("conflicts with {b}: a route carries one {slot} (RFC 8955 §7)"),
                ));
            }
        }
    }
    Ok(())
}

/// Extended-community kinds (type high << 8 | sub-type).
pub mod kind {
    pub const TRAFFIC_RATE_BYTES: u16 = 0x8006;
    pub const TRAFFIC_ACTION: u16 = 0x8007;
    pub const REDIRECT_AS2: u16 = 0x8008;
    pub const TRAFFIC_MARKING: u16 = 0x8009;
    pub const TRAFFIC_RATE_PACKETS: u16 = 0x800c;
    pub const REDIRECT_IPV4: u16 = 0x8108;
    pub const REDIRECT_AS4: u16 = 0x8208;
}

const SAMPLE_BIT: u8 = 0x02;
const T_BIT: u8 = 0x01;

impl Action {
    /// Discard: traffic-rate-bytes 0.
    pub const DISCARD: Action = Action::TrafficRateBytes { asn: 0, rate: 0.0 };

    /// True for a rate that is finite and not negative (NaN, infinities and negatives are refused).
    pub fn valid_rate(rate: f32) -> bool {
        rate.is_finite() && rate.is_sign_positive()
    }

    pub fn to_ext_community(&self) -> ExtCommunity {
        let mut b = [0u8; 8];
        let k = |kind: u16| kind.to_be_bytes();
        match *self {
            Action::TrafficRateBytes { asn, rate } | Action::TrafficRatePackets { asn, rate } => {
                let kind = if matches!(self, Action::TrafficRateBytes { .. }) {
                    kind::TRAFFIC_RATE_BYTES
                } else {
                    kind::TRAFFIC_RATE_PACKETS
                };
                b[..2].copy_from_slice(&k(kind));
                b[2..4].copy_from_slice(&asn.to_be_bytes());
                b[4..].copy_from_slice(&rate.to_be_bytes());
            }
            Action::TrafficAction { sample, terminal } => {
                b[..2].copy_from_slice(&k(kind::TRAFFIC_ACTION));
                b[7] = if sample { SAMPLE_BIT } else { 0 } | if terminal { 0 } else { T_BIT };
            }
            Action::RedirectAs2 { asn, value } => {
                b[..2].copy_from_slice(&k(kind::REDIRECT_AS2));
                b[2..4].copy_from_slice(&asn.to_be_bytes());
                b[4..].copy_from_slice(&value.to_be_bytes());
            }
            Action::RedirectIpv4 { ip, value } => {
                b[..2].copy_from_slice(&k(kind::REDIRECT_IPV4));
                b[2..6].copy_from_slice(&ip.octets());
                b[6..].copy_from_slice(&value.to_be_bytes());
            }
            Action::RedirectAs4 { asn, value } => {
                b[..2].copy_from_slice(&k(kind::REDIRECT_AS4));
                b[2..6].copy_from_slice(&asn.to_be_bytes());
                b[6..].copy_from_slice(&value.to_be_bytes());
            }
            Action::TrafficMarking { dscp } => {
                b[..2].copy_from_slice(&k(kind::TRAFFIC_MARKING));
                b[7] = dscp & 0x3f;
            }
        }
        ExtCommunity(b)
    }

    /// The action an extended community carries; `None` for other communities and for values
    /// deflect would refuse to send (a NaN or negative rate, a DSCP above 63).
    pub fn from_ext_community(c: ExtCommunity) -> Option<Action> {
        let b = c.0;
        let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
        let u32_at = |i: usize| u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Some(match c.kind() {
            kind::TRAFFIC_RATE_BYTES | kind::TRAFFIC_RATE_PACKETS => {
                let rate = f32::from_bits(u32_at(4));
                if !Action::valid_rate(rate) {
                    return None;
                }
                if c.kind() == kind::TRAFFIC_RATE_BYTES {
                    Action::TrafficRateBytes {
                        asn: u16_at(2),
                        rate,
                    }
                } else {
                    Action::TrafficRatePackets {
                        asn: u16_at(2),
                        rate,
                    }
                }
            }
            kind::TRAFFIC_ACTION => Action::TrafficAction {
                sample: b[7] & SAMPLE_BIT != 0,
                terminal: b[7] & T_BIT == 0,
            },
            kind::REDIRECT_AS2 => Action::RedirectAs2 {
                asn: u16_at(2),
                value: u32_at(4),
            },
            kind::REDIRECT_IPV4 => Action::RedirectIpv4 {
                ip: Ipv4Addr::new(b[2], b[3], b[4], b[5]),
                value: u16_at(6),
            },
            kind::REDIRECT_AS4 => Action::RedirectAs4 {
                asn: u32_at(2),
                value: u16_at(6),
            },
            kind::TRAFFIC_MARKING if b[7] <= 0x3f => Action::TrafficMarking { dscp: b[7] },
            _ => return None,
        })
    }
}

/// A rule with its actions: what deflect announces.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowRoute {
    pub rule: Rule,
    pub actions: Vec<Action>,
}

impl FlowRoute {
    pub fn ext_communities(&self) -> Vec<ExtCommunity> {
        self.actions.iter().map(Action::to_ext_community).collect()
    }
}
