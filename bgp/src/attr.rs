//! Path attributes (RFC 4271 §4.3, §5) and their encoding.
//!
//! ```text
//! +---------------+---------------+-------------------------------+
//! | Attr. Flags   |Attr. Type Code| Length (1 octet, or 2 with the |
//! | O T P E 0000  |               | Extended Length flag)          |
//! +---------------+---------------+-------------------------------+
//! ```
//!
//! [`Attributes`] is the typed set deflect reads and writes; the communities it carries are
//! [`crate::community`] values. Decoding, with RFC 7606 error handling, lives one layer up with the
//! UPDATE (module `update`), since a verdict depends on the whole message.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use crate::codec::CodecCtx;
use crate::community::{Community, ExtCommunity, LargeCommunity};
use crate::flowspec::Rule;
use crate::iana::{AS_TRANS, Family, attr_flag, attr_type};

/// ORIGIN (RFC 4271 §5.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    Igp = 0,
    Egp = 1,
    Incomplete = 2,
}

/// AS_PATH segment types (RFC 4271 §4.3, RFC 5065 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentType {
    Set = 1,
    Sequence = 2,
    ConfedSequence = 3,
    ConfedSet = 4,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsSegment {
    pub kind: SegmentType,
    pub asns: Vec<u32>,
}

/// AS_PATH (RFC 4271 §5.1.2), AS numbers always held as 4 octets.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct AsPath {
    pub segments: Vec<AsSegment>,
}

impl AsPath {
    pub fn empty() -> AsPath {
        AsPath::default()
    }

    pub fn sequence(asns: Vec<u32>) -> AsPath {
        if asns.is_empty() {
            return AsPath::empty();
        }
        AsPath {
            segments: vec![AsSegment {
                kind: SegmentType::Sequence,
                asns,
            }],
        }
    }

    fn needs_as4(&self) -> bool {
        self.segments
            .iter()
            .flat_map(|s| s.asns.iter())
            .any(|&a| a > 0xffff)
    }

    /// The attribute value, with 2- or 4-octet AS numbers (2-octet: large ones become AS_TRANS).
    pub fn encode_value(&self, four_octet: bool, out: &mut BytesMut) {
        for seg in &self.segments {
            for chunk in seg.asns.chunks(255) {
                out.put_u8(seg.kind as u8);
                out.put_u8(chunk.len() as u8);
                for &a in chunk {
                    if four_octet {
                        out.put_u32(a);
                    } else {
                        out.put_u16(u16::try_from(a).unwrap_or(AS_TRANS));
                    }
                }
            }
        }
    }

    /// Decodes a value; `None` when malformed (RFC 7606 §7.2).
    pub fn decode_value(mut v: &[u8], four_octet: bool) -> Option<AsPath> {
        let w = if four_octet { 4 } else { 2 };
        let mut segments = Vec::new();
        while !v.is_empty() {
            let (&t, rest) = v.split_first()?;
            let (&n, rest) = rest.split_first()?;
            let kind = match t {
                1 => SegmentType::Set,
                2 => SegmentType::Sequence,
                3 => SegmentType::ConfedSequence,
                4 => SegmentType::ConfedSet,
                _ => return None,
            };
            if n == 0 {
                return None;
            }
            let body = rest.get(..usize::from(n) * w)?;
            let asns = body
                .chunks_exact(w)
                .map(|c| {
                    if w == 4 {
                        u32::from_be_bytes([c[0], c[1], c[2], c[3]])
                    } else {
                        u32::from(u16::from_be_bytes([c[0], c[1]]))
                    }
                })
                .collect();
            segments.push(AsSegment { kind, asns });
            v = &rest[usize::from(n) * w..];
        }
        Some(AsPath { segments })
    }
}

/// AGGREGATOR (RFC 4271 §5.1.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    pub asn: u32,
    pub address: Ipv4Addr,
}

/// An attribute deflect does not interpret, kept with its flags.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    pub flags: u8,
    pub type_code: u8,
    pub value: Bytes,
}

/// MP_REACH_NLRI next hop (RFC 4760 §3; FlowSpec: none, RFC 8955 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHop {
    None,
    V4(Ipv4Addr),
    V6(Ipv6Addr),
    /// Global and link-local (RFC 2545 §3).
    V6LinkLocal(Ipv6Addr, Ipv6Addr),
}

impl NextHop {
    fn encode(&self, out: &mut BytesMut) {
        match self {
            NextHop::None => out.put_u8(0),
            NextHop::V4(a) => {
                out.put_u8(4);
                out.extend_from_slice(&a.octets());
            }
            NextHop::V6(a) => {
                out.put_u8(16);
                out.extend_from_slice(&a.octets());
            }
            NextHop::V6LinkLocal(g, l) => {
                out.put_u8(32);
                out.extend_from_slice(&g.octets());
                out.extend_from_slice(&l.octets());
            }
        }
    }

    pub fn decode(v: &[u8]) -> Option<NextHop> {
        Some(match v.len() {
            0 => NextHop::None,
            4 => NextHop::V4(Ipv4Addr::new(v[0], v[1], v[2], v[3])),
            16 => NextHop::V6(Ipv6Addr::from(<[u8; 16]>::try_from(v).ok()?)),
            32 => NextHop::V6LinkLocal(
                Ipv6Addr::from(<[u8; 16]>::try_from(&v[..16]).ok()?),
                Ipv6Addr::from(<[u8; 16]>::try_from(&v[16..]).ok()?),
            ),
            _ => return None,
        })
    }
}

/// One NLRI of the families deflect speaks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Nlri {
    Ipv4(Ipv4Net),
    Ipv6(Ipv6Net),
    FlowSpec(Rule),
}

impl Nlri {
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Nlri::Ipv4(n) => write_prefix(out, &IpNet::V4(*n)),
            Nlri::Ipv6(n) => write_prefix(out, &IpNet::V6(*n)),
            Nlri::FlowSpec(r) => out.extend_from_slice(r.wire()),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    pub family: Family,
    pub next_hop: NextHop,
    pub nlri: Vec<Nlri>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    pub family: Family,
    pub withdrawn: Vec<Nlri>,
}

/// The typed attributes of an UPDATE.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Attributes {
    pub origin: Option<Origin>,
    pub as_path: Option<AsPath>,
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub atomic_aggregate: bool,
    pub aggregator: Option<Aggregator>,
    pub communities: Vec<Community>,
    pub originator_id: Option<Ipv4Addr>,
    pub cluster_list: Vec<Ipv4Addr>,
    pub ext_communities: Vec<ExtCommunity>,
    /// RFC 6793: received from 2-octet speakers; written by us only with a 2-octet AS_PATH.
    pub as4_path: Option<AsPath>,
    pub large_communities: Vec<LargeCommunity>,
    pub mp_reach: Option<MpReach>,
    pub mp_unreach: Option<MpUnreach>,
    /// Unrecognized attributes: optional transitive ones are passed on with the Partial bit.
    pub unknown: Vec<RawAttribute>,
}

/// Writes flags, type and length, choosing the extended-length form when the value needs it.
pub fn write_attr_header(out: &mut BytesMut, flags: u8, type_code: u8, len: usize) {
    if len > 255 {
        out.put_u8(flags | attr_flag::EXTENDED_LENGTH);
        out.put_u8(type_code);
        out.put_u16(len as u16);
    } else {
        out.put_u8(flags & !attr_flag::EXTENDED_LENGTH);
        out.put_u8(type_code);
        out.put_u8(len as u8);
    }
}

fn put_attr(out: &mut BytesMut, flags: u8, type_code: u8, value: &[u8]) {
    write_attr_header(out, flags, type_code, value.len());
    out.extend_from_slice(value);
}

/// Octets a prefix takes as NLRI: length, then the minimal address octets.
pub fn prefix_len_on_wire(p: &IpNet) -> usize {
    1 + usize::from(p.prefix_len()).div_ceil(8)
}

/// Writes a prefix as NLRI (RFC 4271 §4.3).
pub fn write_prefix(out: &mut BytesMut, p: &IpNet) {
    let len = p.prefix_len();
    let n = usize::from(len).div_ceil(8);
    out.put_u8(len);
    match p.trunc() {
        IpNet::V4(v) => out.extend_from_slice(&v.network().octets()[..n]),
        IpNet::V6(v) => out.extend_from_slice(&v.network().octets()[..n]),
    }
}

const WELL_KNOWN: u8 = attr_flag::TRANSITIVE;
const OPTIONAL_TRANSITIVE: u8 = attr_flag::OPTIONAL | attr_flag::TRANSITIVE;
const OPTIONAL: u8 = attr_flag::OPTIONAL;

impl Attributes {
    /// Every attribute, MP_REACH_NLRI / MP_UNREACH_NLRI first (RFC 7606 §5.1), then by type code.
    pub fn encode(&self, ctx: &CodecCtx, out: &mut BytesMut) {
        let mut v = BytesMut::new();
        if let Some(mp) = &self.mp_reach {
            v.put_u16(mp.family.afi().code());
            v.put_u8(mp.family.safi().code());
            mp.next_hop.encode(&mut v);
            v.put_u8(0);
            for n in &mp.nlri {
                n.encode(&mut v);
            }
            put_attr(out, OPTIONAL, attr_type::MP_REACH_NLRI, &v);
            v.clear();
        }
        if let Some(mp) = &self.mp_unreach {
            v.put_u16(mp.family.afi().code());
            v.put_u8(mp.family.safi().code());
            for n in &mp.withdrawn {
                n.encode(&mut v);
            }
            put_attr(out, OPTIONAL, attr_type::MP_UNREACH_NLRI, &v);
        }
        self.encode_without_mp(ctx, out);
    }

    /// Every attribute except MP_REACH_NLRI and MP_UNREACH_NLRI, by type code.
    pub fn encode_without_mp(&self, ctx: &CodecCtx, out: &mut BytesMut) {
        let mut v = BytesMut::new();
        if let Some(o) = self.origin {
            put_attr(out, WELL_KNOWN, attr_type::ORIGIN, &[o as u8]);
        }
        if let Some(p) = &self.as_path {
            p.encode_value(ctx.four_octet_as, &mut v);
            put_attr(out, WELL_KNOWN, attr_type::AS_PATH, &v);
            v.clear();
        }
        if let Some(nh) = self.next_hop {
            put_attr(out, WELL_KNOWN, attr_type::NEXT_HOP, &nh.octets());
        }
        if let Some(m) = self.med {
            put_attr(out, OPTIONAL, attr_type::MULTI_EXIT_DISC, &m.to_be_bytes());
        }
        if let Some(lp) = self.local_pref {
            put_attr(out, WELL_KNOWN, attr_type::LOCAL_PREF, &lp.to_be_bytes());
        }
        if self.atomic_aggregate {
            put_attr(out, WELL_KNOWN, attr_type::ATOMIC_AGGREGATE, &[]);
        }
        if let Some(a) = self.aggregator {
            if ctx.four_octet_as {
                v.put_u32(a.asn);
            } else {
                v.put_u16(u16::try_from(a.asn).unwrap_or(AS_TRANS));
            }
            v.extend_from_slice(&a.address.octets());
            put_attr(out, OPTIONAL_TRANSITIVE, attr_type::AGGREGATOR, &v);
            v.clear();
        }
        if !self.communities.is_empty() {
            for c in &self.communities {
                v.put_u32(c.0);
            }
            put_attr(out, OPTIONAL_TRANSITIVE, attr_type::COMMUNITIES, &v);
            v.clear();
        }
        if let Some(id) = self.originator_id {
            put_attr(out, OPTIONAL, attr_type::ORIGINATOR_ID, &id.octets());
        }
        if !self.cluster_list.is_empty() {
            for id in &self.cluster_list {
                v.extend_from_slice(&id.octets());
            }
            put_attr(out, OPTIONAL, attr_type::CLUSTER_LIST, &v);
            v.clear();
        }
        if !self.ext_communities.is_empty() {
            for c in &self.ext_communities {
                v.extend_from_slice(&c.0);
            }
            put_attr(
                out,
                OPTIONAL_TRANSITIVE,
                attr_type::EXTENDED_COMMUNITIES,
                &v,
            );
            v.clear();
        }
        // RFC 6793 §4.2.2: a 2-octet session carries the real path in AS4_PATH.
        let as4 = match (&self.as_path, &self.as4_path) {
            (_, Some(p)) => Some(p.clone()),
            (Some(p), None) if !ctx.four_octet_as && p.needs_as4() => Some(p.clone()),
            _ => None,
        };
        if let (Some(p), false) = (as4, ctx.four_octet_as) {
            p.encode_value(true, &mut v);
            put_attr(out, OPTIONAL_TRANSITIVE, attr_type::AS4_PATH, &v);
            v.clear();
        }
        if !self.large_communities.is_empty() {
            for c in &self.large_communities {
                v.put_u32(c.global);
                v.put_u32(c.local1);
                v.put_u32(c.local2);
            }
            put_attr(out, OPTIONAL_TRANSITIVE, attr_type::LARGE_COMMUNITIES, &v);
            v.clear();
        }
        for u in &self.unknown {
            // RFC 4271 §5: an unrecognized optional transitive attribute is passed on with Partial set.
            let flags = if u.flags & attr_flag::TRANSITIVE != 0 {
                u.flags | attr_flag::PARTIAL
            } else {
                u.flags
            };
            put_attr(out, flags, u.type_code, &u.value);
        }
    }
}
