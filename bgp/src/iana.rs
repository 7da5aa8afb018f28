//! IANA code points used by deflect, each with the RFC that assigns it.
//!
//! Only constants and the small enums that name them live here; no encoding logic.

use std::fmt;

/// Address Family Identifier (RFC 4760 §3, IANA "Address Family Numbers").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Afi {
    Ipv4,
    Ipv6,
}

impl Afi {
    pub const fn code(self) -> u16 {
        match self {
            Afi::Ipv4 => 1,
            Afi::Ipv6 => 2,
        }
    }

    pub const fn from_code(code: u16) -> Option<Afi> {
        match code {
            1 => Some(Afi::Ipv4),
            2 => Some(Afi::Ipv6),
            _ => None,
        }
    }
}

/// Subsequent Address Family Identifier (RFC 4760 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Safi {
    /// 1 (RFC 4760).
    Unicast,
    /// 133: dissemination of flow specification rules (RFC 8955 §4, RFC 8956 §3).
    FlowSpec,
}

impl Safi {
    pub const fn code(self) -> u8 {
        match self {
            Safi::Unicast => 1,
            Safi::FlowSpec => 133,
        }
    }

    pub const fn from_code(code: u8) -> Option<Safi> {
        match code {
            1 => Some(Safi::Unicast),
            133 => Some(Safi::FlowSpec),
            _ => None,
        }
    }
}

/// The four (AFI, SAFI) pairs deflect speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    Ipv4Unicast,
    Ipv6Unicast,
    Ipv4FlowSpec,
    Ipv6FlowSpec,
}

impl Family {
    pub const ALL: [Family; 4] = [
        Family::Ipv4Unicast,
        Family::Ipv6Unicast,
        Family::Ipv4FlowSpec,
        Family::Ipv6FlowSpec,
    ];

    pub const fn new(afi: Afi, safi: Safi) -> Family {
        match (afi, safi) {
            (Afi::Ipv4, Safi::Unicast) => Family::Ipv4Unicast,
            (Afi::Ipv6, Safi::Unicast) => Family::Ipv6Unicast,
            (Afi::Ipv4, Safi::FlowSpec) => Family::Ipv4FlowSpec,
            (Afi::Ipv6, Safi::FlowSpec) => Family::Ipv6FlowSpec,
        }
    }

    /// From wire codes; `None` for a pair deflect does not speak.
    pub const fn from_codes(afi: u16, safi: u8) -> Option<Family> {
        match (Afi::from_code(afi), Safi::from_code(safi)) {
            (Some(a), Some(s)) => Some(Family::new(a, s)),
            _ => None,
        }
    }

    pub const fn afi(self) -> Afi {
        match self {
            Family::Ipv4Unicast | Family::Ipv4FlowSpec => Afi::Ipv4,
            Family::Ipv6Unicast | Family::Ipv6FlowSpec => Afi::Ipv6,
        }
    }

    pub const fn safi(self) -> Safi {
        match self {
            Family::Ipv4Unicast | Family::Ipv6Unicast => Safi::Unicast,
            Family::Ipv4FlowSpec | Family::Ipv6FlowSpec => Safi::FlowSpec,
        }
    }

    /// The name used in configs, logs and the API (GoBGP's spelling).
    pub const fn name(self) -> &'static str {
        match self {
            Family::Ipv4Unicast => "ipv4-unicast",
            Family::Ipv6Unicast => "ipv6-unicast",
            Family::Ipv4FlowSpec => "ipv4-flowspec",
            Family::Ipv6FlowSpec => "ipv6-flowspec",
        }
    }

    pub fn from_name(name: &str) -> Option<Family> {
        Family::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// BGP message types (RFC 4271 §4.1, RFC 2918 §3).
pub mod message_type {
    pub const OPEN: u8 = 1;
    pub const UPDATE: u8 = 2;
    pub const NOTIFICATION: u8 = 3;
    pub const KEEPALIVE: u8 = 4;
    pub const ROUTE_REFRESH: u8 = 5;
}

/// Capability codes (RFC 5492, IANA "Capability Codes").
pub mod capability {
    /// RFC 4760 §8.
    pub const MULTIPROTOCOL: u8 = 1;
    /// RFC 2918 §2.
    pub const ROUTE_REFRESH: u8 = 2;
    /// RFC 8654 §3.
    pub const EXTENDED_MESSAGE: u8 = 6;
    /// RFC 4724 §3.
    pub const GRACEFUL_RESTART: u8 = 64;
    /// RFC 6793 §3.
    pub const FOUR_OCTET_AS: u8 = 65;
    /// RFC 7911 (recognised only to be ignored).
    pub const ADD_PATH: u8 = 69;
    /// RFC 7313 (recognised only to be ignored).
    pub const ENHANCED_ROUTE_REFRESH: u8 = 70;
    /// Pre-standard Cisco route refresh, still sent by many routers.
    pub const ROUTE_REFRESH_CISCO: u8 = 128;
}

/// Path attribute type codes (RFC 4271 §5, IANA "BGP Path Attributes").
pub mod attr_type {
    pub const ORIGIN: u8 = 1;
    pub const AS_PATH: u8 = 2;
    pub const NEXT_HOP: u8 = 3;
    pub const MULTI_EXIT_DISC: u8 = 4;
    pub const LOCAL_PREF: u8 = 5;
    pub const ATOMIC_AGGREGATE: u8 = 6;
    pub const AGGREGATOR: u8 = 7;
    /// RFC 1997.
    pub const COMMUNITIES: u8 = 8;
    /// RFC 4456.
    pub const ORIGINATOR_ID: u8 = 9;
    /// RFC 4456.
    pub const CLUSTER_LIST: u8 = 10;
    /// RFC 4760 §3.
    pub const MP_REACH_NLRI: u8 = 14;
    /// RFC 4760 §4.
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// RFC 4360.
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// RFC 6793 §3.
    pub const AS4_PATH: u8 = 17;
    /// RFC 6793 §3.
    pub const AS4_AGGREGATOR: u8 = 18;
    /// RFC 8092.
    pub const LARGE_COMMUNITIES: u8 = 32;
}

/// Path attribute flag bits (RFC 4271 §4.3).
pub mod attr_flag {
    pub const OPTIONAL: u8 = 0x80;
    pub const TRANSITIVE: u8 = 0x40;
    pub const PARTIAL: u8 = 0x20;
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// AS_TRANS (RFC 6793 §9): stands in a 2-octet field for an AS number above 65535.
pub const AS_TRANS: u16 = 23456;

/// The BGP version this crate speaks (RFC 4271 §4.2).
pub const BGP_VERSION: u8 = 4;
