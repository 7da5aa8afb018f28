//! Flow records (`flow_data`, sflow_version_5.txt §5): what a flow sample says about one sampled
//! packet. A record is `data_format`, a length, then its XDR body; this module decodes the body of
//! the standard ones and keeps any other as [`FlowRecord::Unknown`].

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use crate::error::ErrorKind;
use crate::formats::flow as fmt;
use crate::xdr::Reader;

/// One flow record of a flow sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlowRecord {
    RawHeader(RawHeader),
    Ethernet(SampledEthernet),
    Ipv4(SampledIpv4),
    Ipv6(SampledIpv6),
    ExtendedSwitch(ExtendedSwitch),
    ExtendedRouter(ExtendedRouter),
    ExtendedGateway(ExtendedGateway),
    /// A record this crate does not decode, skipped by its length. `format` is the whole wire word
    /// (`enterprise << 12 | format`); `data` its body, padding excluded.
    Unknown {
        format: u32,
        data: Bytes,
    },
}

impl FlowRecord {
    /// The data format word this record has on the wire.
    pub fn format(&self) -> u32 {
        match self {
            FlowRecord::RawHeader(_) => fmt::RAW_HEADER,
            FlowRecord::Ethernet(_) => fmt::ETHERNET,
            FlowRecord::Ipv4(_) => fmt::IPV4,
            FlowRecord::Ipv6(_) => fmt::IPV6,
            FlowRecord::ExtendedSwitch(_) => fmt::EXTENDED_SWITCH,
            FlowRecord::ExtendedRouter(_) => fmt::EXTENDED_ROUTER,
            FlowRecord::ExtendedGateway(_) => fmt::EXTENDED_GATEWAY,
            FlowRecord::Unknown { format, .. } => *format,
        }
    }
}

/// `sampled_header` (format 1): the first octets of the sampled packet.
///
/// ```text
/// header_protocol protocol;  /* 1 = Ethernet, 11 = IPv4, 12 = IPv6, ... */
/// unsigned int frame_length; /* original length of the packet, before sampling */
/// unsigned int stripped;     /* octets removed before the header was taken (e.g. FCS) */
/// opaque header<>;           /* the header octets, padded to 4 */
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawHeader {
    /// 1 = Ethernet, 11 = IPv4, 12 = IPv6 ([`crate::formats::header_protocol`]).
    pub protocol: u32,
    /// The sampled packet's length on the wire, so a collector can scale bytes, not just packets.
    pub frame_length: u32,
    pub stripped: u32,
    /// The header octets, a slice of the datagram.
    pub header: Bytes,
}

/// `sampled_ethernet` (format 2).
///
/// ```text
/// unsigned int length;  /* MAC packet length, including FCS */
/// mac src_mac;          /* opaque[6], padded to 8 */
/// mac dst_mac;
/// unsigned int type;    /* Ethernet packet type */
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SampledEthernet {
    pub length: u32,
    pub src_mac: [u8; 6],
    pub dst_mac: [u8; 6],
    pub eth_type: u32,
}

/// `sampled_ipv4` (format 3).
///
/// ```text
/// unsigned int length;    /* IP packet length, excluding lower layers */
/// unsigned int protocol;  /* IP protocol */
/// ip_v4 src_ip; ip_v4 dst_ip;
/// unsigned int src_port; unsigned int dst_port;
/// unsigned int tcp_flags;
/// unsigned int tos;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledIpv4 {
    pub length: u32,
    pub protocol: u32,
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u32,
    pub dst_port: u32,
    pub tcp_flags: u32,
    pub tos: u32,
}

/// `sampled_ipv6` (format 4): as IPv4, with `priority` in place of `tos`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SampledIpv6 {
    pub length: u32,
    pub protocol: u32,
    pub src: Ipv6Addr,
    pub dst: Ipv6Addr,
    pub src_port: u32,
    pub dst_port: u32,
    pub tcp_flags: u32,
    pub priority: u32,
}

/// `extended_switch` (format 1001): 802.1Q VLAN and priority in and out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtendedSwitch {
    pub src_vlan: u32,
    pub src_priority: u32,
    pub dst_vlan: u32,
    pub dst_priority: u32,
}

/// `extended_router` (format 1002).
///
/// ```text
/// next_hop nexthop;          /* address: type, then 4 or 16 octets */
/// unsigned int src_mask_len;
/// unsigned int dst_mask_len;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedRouter {
    pub next_hop: IpAddr,
    pub src_mask_len: u32,
    pub dst_mask_len: u32,
}

/// `extended_gateway` (format 1003): BGP information about the destination.
///
/// ```text
/// next_hop nexthop;
/// unsigned int as;           /* router's own AS */
/// unsigned int src_as;
/// unsigned int src_peer_as;
/// as_path_type dst_as_path<>;  /* segments: type (1 set, 2 sequence), as_number<> */
/// unsigned int communities<>;
/// unsigned int localpref;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedGateway {
    pub next_hop: IpAddr,
    pub as_: u32,
    pub src_as: u32,
    pub src_peer_as: u32,
    /// The destination AS path, segment by segment (segment types are not kept).
    pub as_path: Vec<Vec<u32>>,
    pub communities: Vec<u32>,
    pub local_pref: u32,
}

/// Decodes the body of one flow record; `r` is bounded to the record.
pub(crate) fn decode(format: u32, mut r: Reader<'_>) -> Result<FlowRecord, ErrorKind> {
    let r = &mut r;
    Ok(match format {
        fmt::RAW_HEADER => FlowRecord::RawHeader(RawHeader {
            protocol: r.u32()?,
            frame_length: r.u32()?,
            stripped: r.u32()?,
            header: r.opaque("sampled header")?,
        }),
        fmt::ETHERNET => FlowRecord::Ethernet(SampledEthernet {
            length: r.u32()?,
            src_mac: r.mac()?,
            dst_mac: r.mac()?,
            eth_type: r.u32()?,
        }),
        fmt::IPV4 => FlowRecord::Ipv4(SampledIpv4 {
            length: r.u32()?,
            protocol: r.u32()?,
            src: r.ipv4()?,
            dst: r.ipv4()?,
            src_port: r.u32()?,
            dst_port: r.u32()?,
            tcp_flags: r.u32()?,
            tos: r.u32()?,
        }),
        fmt::IPV6 => FlowRecord::Ipv6(SampledIpv6 {
            length: r.u32()?,
            protocol: r.u32()?,
            src: r.ipv6()?,
            dst: r.ipv6()?,
            src_port: r.u32()?,
            dst_port: r.u32()?,
            tcp_flags: r.u32()?,
            priority: r.u32()?,
        }),
        fmt::EXTENDED_SWITCH => FlowRecord::ExtendedSwitch(ExtendedSwitch {
            src_vlan: r.u32()?,
            src_priority: r.u32()?,
            dst_vlan: r.u32()?,
            dst_priority: r.u32()?,
        }),
        fmt::EXTENDED_ROUTER => FlowRecord::ExtendedRouter(ExtendedRouter {
            next_hop: r.address(ErrorKind::AddressType)?,
            src_mask_len: r.u32()?,
            dst_mask_len: r.u32()?,
        }),
        fmt::EXTENDED_GATEWAY => FlowRecord::ExtendedGateway(gateway(r)?),
        _ => FlowRecord::Unknown {
            format,
            data: r.rest(),
        },
    })
}

fn gateway(r: &mut Reader<'_>) -> Result<ExtendedGateway, ErrorKind> {
    let next_hop = r.address(ErrorKind::AddressType)?;
    let as_ = r.u32()?;
    let src_as = r.u32()?;
    let src_peer_as = r.u32()?;
    // A segment is at least its type and its count.
    let segments = r.count(8, "AS path segments")?;
    let mut as_path = Vec::with_capacity(small(segments));
    for _ in 0..segments {
        let _segment_type = r.u32()?;
        let n = r.count(4, "AS numbers in a segment")?;
        let mut path = Vec::with_capacity(small(n));
        for _ in 0..n {
            path.push(r.u32()?);
        }
        as_path.push(path);
    }
    let n = r.count(4, "communities")?;
    let mut communities = Vec::with_capacity(small(n));
    for _ in 0..n {
        communities.push(r.u32()?);
    }
    Ok(ExtendedGateway {
        next_hop,
        as_,
        src_as,
        src_peer_as,
        as_path,
        communities,
        local_pref: r.u32()?,
    })
}

/// A capacity for a count already checked against the bytes left, capped so that a datagram
/// full of tiny claimed elements reserves little up front.
pub(crate) fn small(n: u32) -> usize {
    usize::try_from(n).unwrap_or(0).min(64)
}
