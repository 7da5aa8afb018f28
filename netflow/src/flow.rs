//! [`Flow`]: one data record, in the same shape whatever version and template it came in.
//!
//! What a record does not carry stays at its documented default (0, `false`, `None`), so that a
//! collector tells "absent" from "zero" only where the difference matters (times, sampling, ICMP,
//! direction).

use std::net::IpAddr;

use bytes::Bytes;

/// One flow (or, for PSAMP, one sampled packet) from a data record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    /// IPv4 (element 8/12) or IPv6 (27/28); a record with neither is not a `Flow`.
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    /// 0 when absent.
    pub src_port: u16,
    pub dst_port: u16,
    /// 0 when absent; the low byte of the 16-bit form (RFC 7125).
    pub tcp_flags: u8,
    /// icmpTypeCodeIPv4 (32) or icmpTypeCodeIPv6 (139): type × 256 + code.
    pub icmp_type_code: Option<u16>,
    /// A non-first fragment (fragmentOffset 88 non-zero), when the record tells.
    pub fragment: bool,
    /// Delta counts (1/2), else post-delta (23/24), else totals (85/86); a PSAMP packet record
    /// (a section and no count) is 1 packet of the section's length.
    pub packets: u64,
    pub bytes: u64,
    /// Unix ms, from whichever time representation the record has (see `crate::record`).
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    /// 1 in N, from the record, its sampler, or the domain; `None` when unknown.
    pub sampling: Option<u32>,
    /// flowDirection (61): 0 ingress, 1 egress.
    pub direction: Option<u8>,
    /// ingressInterface (10) and egressInterface (14); 0 when absent.
    pub input: u32,
    pub output: u32,
    /// A PSAMP packet section (RFC 5477 §8.2.4), zero-copy from the datagram (or from the held
    /// copy of a set decoded late).
    pub section: Option<Section>,
}

/// The bytes of a sampled packet carried in the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Section {
    /// dataLinkFrameSection (315): from the link-layer header on.
    Link(Bytes),
    /// ipHeaderPacketSection (313): from the IP header on.
    Ip(Bytes),
}

impl Section {
    pub fn bytes(&self) -> &Bytes {
        match self {
            Section::Link(b) | Section::Ip(b) => b,
        }
    }
}
