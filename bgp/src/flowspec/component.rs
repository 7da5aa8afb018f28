//! The parts of a FlowSpec rule: match components and their operators (RFC 8955 §4.2, RFC 8956
//! §3), with the type codes and flag bits. The bottom of the module: plain values, no validation.

use ipnet::IpNet;

use crate::iana::Afi;

/// Component type codes (RFC 8955 §4.2.2, RFC 8956 §3).
pub mod component_type {
    pub const DESTINATION_PREFIX: u8 = 1;
    pub const SOURCE_PREFIX: u8 = 2;
    /// IP protocol (IPv4), next header (IPv6).
    pub const PROTOCOL: u8 = 3;
    pub const PORT: u8 = 4;
    pub const DESTINATION_PORT: u8 = 5;
    pub const SOURCE_PORT: u8 = 6;
    pub const ICMP_TYPE: u8 = 7;
    pub const ICMP_CODE: u8 = 8;
    pub const TCP_FLAGS: u8 = 9;
    pub const PACKET_LENGTH: u8 = 10;
    pub const DSCP: u8 = 11;
    pub const FRAGMENT: u8 = 12;
    /// IPv6 only (RFC 8956 §3.7).
    pub const FLOW_LABEL: u8 = 13;
}

/// Fragment bits (RFC 8955 §4.2.2.12).
pub mod fragment {
    /// Don't Fragment (IPv4 only; RFC 8956 §3.6 has no DF).
    pub const DF: u64 = 0x01;
    /// Is a fragment other than the first.
    pub const IS_FRAGMENT: u64 = 0x02;
    /// First fragment.
    pub const FIRST_FRAGMENT: u64 = 0x04;
    /// Last fragment.
    pub const LAST_FRAGMENT: u64 = 0x08;
}

/// One numeric comparison (RFC 8955 §4.2.1.1). `and` binds it to the operator before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NumericOp {
    pub and: bool,
    pub lt: bool,
    pub gt: bool,
    pub eq: bool,
    pub value: u64,
}

impl NumericOp {
    pub const fn eq(value: u64) -> NumericOp {
        NumericOp {
            and: false,
            lt: false,
            gt: false,
            eq: true,
            value,
        }
    }

    /// Whether `x` satisfies this comparison alone.
    pub fn matches(&self, x: u64) -> bool {
        (self.lt && x < self.value) || (self.gt && x > self.value) || (self.eq && x == self.value)
    }
}

/// One bitmask test (RFC 8955 §4.2.1.2).
///
/// - `matched` set: `(data & value) == value` (all of `value`); clear: `(data & value) != 0` (any).
/// - `not` negates the result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BitmaskOp {
    pub and: bool,
    pub not: bool,
    pub matched: bool,
    pub value: u64,
}

impl BitmaskOp {
    pub fn matches(&self, data: u64) -> bool {
        let r = if self.matched {
            data & self.value == self.value
        } else {
            data & self.value != 0
        };
        r != self.not
    }
}

/// A prefix component. `offset` is RFC 8956's bit offset (IPv6 only; 0 for IPv4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Prefix {
    pub net: IpNet,
    pub offset: u8,
}

impl From<IpNet> for Prefix {
    fn from(net: IpNet) -> Prefix {
        Prefix { net, offset: 0 }
    }
}

/// One match component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Component {
    DestinationPrefix(Prefix),
    SourcePrefix(Prefix),
    Protocol(Vec<NumericOp>),
    Port(Vec<NumericOp>),
    DestinationPort(Vec<NumericOp>),
    SourcePort(Vec<NumericOp>),
    IcmpType(Vec<NumericOp>),
    IcmpCode(Vec<NumericOp>),
    TcpFlags(Vec<BitmaskOp>),
    PacketLength(Vec<NumericOp>),
    Dscp(Vec<NumericOp>),
    Fragment(Vec<BitmaskOp>),
    FlowLabel(Vec<NumericOp>),
}

impl Component {
    pub fn type_code(&self) -> u8 {
        use component_type::*;
        match self {
            Component::DestinationPrefix(_) => DESTINATION_PREFIX,
            Component::SourcePrefix(_) => SOURCE_PREFIX,
            Component::Protocol(_) => PROTOCOL,
            Component::Port(_) => PORT,
            Component::DestinationPort(_) => DESTINATION_PORT,
            Component::SourcePort(_) => SOURCE_PORT,
            Component::IcmpType(_) => ICMP_TYPE,
            Component::IcmpCode(_) => ICMP_CODE,
            Component::TcpFlags(_) => TCP_FLAGS,
            Component::PacketLength(_) => PACKET_LENGTH,
            Component::Dscp(_) => DSCP,
            Component::Fragment(_) => FRAGMENT,
            Component::FlowLabel(_) => FLOW_LABEL,
        }
    }

    /// The keyword of this component, as the text syntax and `RuleError` messages spell it.
    pub fn keyword(&self, afi: Afi) -> &'static str {
        match self {
            Component::DestinationPrefix(_) => "dst",
            Component::SourcePrefix(_) => "src",
            Component::Protocol(_) if afi == Afi::Ipv6 => "next-header",
            Component::Protocol(_) => "proto",
            Component::Port(_) => "port",
            Component::DestinationPort(_) => "dport",
            Component::SourcePort(_) => "sport",
            Component::IcmpType(_) => "icmp-type",
            Component::IcmpCode(_) => "icmp-code",
            Component::TcpFlags(_) => "tcp-flags",
            Component::PacketLength(_) => "pkt-len",
            Component::Dscp(_) => "dscp",
            Component::Fragment(_) => "fragment",
            Component::FlowLabel(_) => "flow-label",
        }
    }

    /// Largest value the field holds, for numeric and bitmask components.
    pub fn field_max(&self) -> u64 {
        match self {
            Component::Protocol(_) | Component::IcmpType(_) | Component::IcmpCode(_) => 0xff,
            Component::Port(_)
            | Component::DestinationPort(_)
            | Component::SourcePort(_)
            | Component::PacketLength(_)
            | Component::TcpFlags(_) => 0xffff,
            Component::Dscp(_) => 0x3f,
            Component::Fragment(_) => 0x0f,
            Component::FlowLabel(_) => 0xf_ffff,
            Component::DestinationPrefix(_) | Component::SourcePrefix(_) => 0,
        }
    }

    /// The operators of a numeric component.
    pub fn numeric(&self) -> Option<&[NumericOp]> {
        match self {
            Component::Protocol(v)
            | Component::Port(v)
            | Component::DestinationPort(v)
            | Component::SourcePort(v)
            | Component::IcmpType(v)
            | Component::IcmpCode(v)
            | Component::PacketLength(v)
            | Component::Dscp(v)
            | Component::FlowLabel(v) => Some(v),
            _ => None,
        }
    }

    pub(super) fn numeric_mut(&mut self) -> Option<&mut Vec<NumericOp>> {
        match self {
            Component::Protocol(v)
            | Component::Port(v)
            | Component::DestinationPort(v)
            | Component::SourcePort(v)
            | Component::IcmpType(v)
            | Component::IcmpCode(v)
            | Component::PacketLength(v)
            | Component::Dscp(v)
            | Component::FlowLabel(v) => Some(v),
            _ => None,
        }
    }

    pub(super) fn bitmask(&self) -> Option<&[BitmaskOp]> {
        match self {
            Component::TcpFlags(v) | Component::Fragment(v) => Some(v),
            _ => None,
        }
    }

    pub(super) fn prefix(&self) -> Option<&Prefix> {
        match self {
            Component::DestinationPrefix(p) | Component::SourcePrefix(p) => Some(p),
            _ => None,
        }
    }

    /// Builds a component of `type_code` from an operator list (used by the decoder and the parser).
    pub(super) fn from_numeric(type_code: u8, ops: Vec<NumericOp>) -> Option<Component> {
        use component_type::*;
        Some(match type_code {
            PROTOCOL => Component::Protocol(ops),
            PORT => Component::Port(ops),
            DESTINATION_PORT => Component::DestinationPort(ops),
            SOURCE_PORT => Component::SourcePort(ops),
            ICMP_TYPE => Component::IcmpType(ops),
            ICMP_CODE => Component::IcmpCode(ops),
            PACKET_LENGTH => Component::PacketLength(ops),
            DSCP => Component::Dscp(ops),
            FLOW_LABEL => Component::FlowLabel(ops),
            _ => return None,
        })
    }
}
