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

/// Decodes the body of one flow record into `out`; `r` is bounded to the record. Errors are left
/// in `r` (and nothing, or a placeholder, is pushed). Each arm pushes its own variant, so that the
/// record is written straight into the vector rather than built on the stack and copied there.
#[inline]
pub(crate) fn decode_into(format: u32, r: &mut Reader<'_>, out: &mut Vec<FlowRecord>) {
    match format {
        fmt::RAW_HEADER => {
            if let Some(mut f) = r.block::<16>() {
                // The header (after the three words, its length the last) first, so that the
                // words go from registers straight into the record.
                let header = r.sub(f.last_u32(), "sampled header").rest();
                out.push(FlowRecord::RawHeader(RawHeader {
                    protocol: f.u32(),
                    frame_length: f.u32(),
                    stripped: f.u32(),
                    header,
                }));
            }
        }
        fmt::ETHERNET => {
            if let Some(mut f) = r.block::<24>() {
                out.push(FlowRecord::Ethernet(SampledEthernet {
                    length: f.u32(),
                    src_mac: f.mac(),
                    dst_mac: f.mac(),
                    eth_type: f.u32(),
                }));
            }
        }
        fmt::IPV4 => {
            if let Some(mut f) = r.block::<32>() {
                out.push(FlowRecord::Ipv4(SampledIpv4 {
                    length: f.u32(),
                    protocol: f.u32(),
                    src: f.ipv4(),
                    dst: f.ipv4(),
                    src_port: f.u32(),
                    dst_port: f.u32(),
                    tcp_flags: f.u32(),
                    tos: f.u32(),
                }));
            }
        }
        fmt::IPV6 => {
            if let Some(mut f) = r.block::<56>() {
                out.push(FlowRecord::Ipv6(SampledIpv6 {
                    length: f.u32(),
                    protocol: f.u32(),
                    src: f.ipv6(),
                    dst: f.ipv6(),
                    src_port: f.u32(),
                    dst_port: f.u32(),
                    tcp_flags: f.u32(),
                    priority: f.u32(),
                }));
            }
        }
        fmt::EXTENDED_SWITCH => {
            if let Some(mut f) = r.block::<16>() {
                out.push(FlowRecord::ExtendedSwitch(ExtendedSwitch {
                    src_vlan: f.u32(),
                    src_priority: f.u32(),
                    dst_vlan: f.u32(),
                    dst_priority: f.u32(),
                }));
            }
        }
        fmt::EXTENDED_ROUTER => {
            let next_hop = r.address(ErrorKind::AddressType);
            if let Some(mut f) = r.block::<8>() {
                out.push(FlowRecord::ExtendedRouter(ExtendedRouter {
                    next_hop,
                    src_mask_len: f.u32(),
                    dst_mask_len: f.u32(),
                }));
            }
        }
        fmt::EXTENDED_GATEWAY => out.push(FlowRecord::ExtendedGateway(gateway(r))),
        _ => out.push(FlowRecord::Unknown {
            format,
            data: r.rest(),
        }),
    }
}

fn gateway(r: &mut Reader<'_>) -> ExtendedGateway {
    let next_hop = r.address(ErrorKind::AddressType);
    let (as_, src_as, src_peer_as, segments) = match r.block::<16>() {
        Some(mut f) => (f.u32(), f.u32(), f.u32(), f.u32()),
        None => (0, 0, 0, 0),
    };
    // A segment is at least its type and its count. A failed count is 0: the loops below do not
    // run once the reader has failed.
    let segments = r.fits(segments, 8, "AS path segments");
    let mut as_path = Vec::with_capacity(small(segments));
    for _ in 0..segments {
        let _segment_type = r.u32();
        let n = r.count(4, "AS numbers in a segment");
        let mut path = Vec::with_capacity(small(n));
        for _ in 0..n {
            path.push(r.u32());
        }
        as_path.push(path);
        if r.error().is_some() {
            break;
        }
    }
    let n = r.count(4, "communities");
    let mut communities = Vec::with_capacity(small(n));
    for _ in 0..n {
        communities.push(r.u32());
    }
    ExtendedGateway {
        next_hop,
        as_,
        src_as,
        src_peer_as,
        as_path,
        communities,
        local_pref: r.u32(),
    }
}

/// A capacity for a count already checked against the bytes left, capped so that a datagram
/// full of tiny claimed elements reserves little up front.
pub(crate) fn small(n: u32) -> usize {
    usize::try_from(n).unwrap_or(0).min(64)
}
