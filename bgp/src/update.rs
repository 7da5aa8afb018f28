//! UPDATE (RFC 4271 §4.3), multiprotocol NLRI (RFC 4760), End-of-RIB (RFC 4724 §2) and revised
//! error handling (RFC 7606).
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! |   Withdrawn Routes (variable)                       |
//! |   Total Path Attribute Length (2 octets)            |
//! |   Path Attributes (variable)                        |
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//! ```
//!
//! Decoding reads the whole message and collects every problem with its [`Verdict`]:
//! - attribute discard: the attribute is dropped and the problem noted in [`Update::problems`];
//! - treat-as-withdraw: every NLRI of the message is turned into a withdrawal
//!   ([`Update::treat_as_withdraw`] is set);
//! - session reset: [`Update::decode`] returns the error, whose NOTIFICATION the session sends.

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};
use ipnet::{Ipv4Net, Ipv6Net};

use crate::attr::{
    Aggregator, AsPath, Attributes, MpReach, MpUnreach, NextHop, Nlri, Origin, RawAttribute,
};
use crate::codec::CodecCtx;
use crate::community::{Community, ExtCommunity, LargeCommunity};
use crate::flowspec::{FlowSpecError, Rule};
use crate::iana::{Afi, Family, Safi, attr_flag, attr_type};
use crate::verdict::Verdict;

/// An UPDATE message.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    pub withdrawn: Vec<Ipv4Net>,
    pub attributes: Attributes,
    pub nlri: Vec<Ipv4Net>,
    /// Problems that did not reset the session (attribute discard, treat-as-withdraw).
    pub problems: Vec<UpdateError>,
    /// Set when the routes of this message were turned into withdrawals (RFC 7606 §2).
    pub treat_as_withdraw: bool,
}

/// What was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateErrorKind {
    #[error("withdrawn routes length overruns the message")]
    WithdrawnLength,
    #[error("total path attribute length overruns the message")]
    AttributeListLength,
    #[error("attribute {0} overruns the attribute list")]
    AttributeOverrun(u8),
    #[error("attribute {type_code} has flags {flags:#04x} that conflict with its type")]
    AttributeFlags { type_code: u8, flags: u8 },
    #[error("attribute {type_code} has a malformed value of {len} octets")]
    AttributeLength { type_code: u8, len: usize },
    #[error("ORIGIN value {0} is undefined")]
    InvalidOrigin(u8),
    #[error("AS_PATH is malformed")]
    MalformedAsPath,
    #[error("attribute {0} appears more than once")]
    Duplicate(u8),
    #[error("well-known attribute {0} is missing")]
    MissingWellKnown(u8),
    #[error("well-known attribute {0} is not recognized")]
    UnrecognizedWellKnown(u8),
    #[error("MP_REACH_NLRI / MP_UNREACH_NLRI is malformed: {0}")]
    MalformedMp(&'static str),
    #[error("NLRI field is malformed: {0}")]
    InvalidNetworkField(&'static str),
    #[error("FlowSpec NLRI: {0}")]
    FlowSpec(FlowSpecError),
}

/// A problem in an UPDATE, with its verdict and the NOTIFICATION data of RFC 4271 §6.3.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} ({verdict:?})")]
pub struct UpdateError {
    pub kind: UpdateErrorKind,
    pub verdict: Verdict,
    /// The erroneous attribute (type, length and value), where RFC 4271 asks for it.
    pub data: Bytes,
}

impl UpdateError {
    fn new(kind: UpdateErrorKind, verdict: Verdict) -> UpdateError {
        UpdateError {
            kind,
            verdict,
            data: Bytes::new(),
        }
    }

    fn with_data(mut self, data: Bytes) -> UpdateError {
        self.data = data;
        self
    }

    pub fn verdict(&self) -> Verdict {
        self.verdict
    }
}

fn reset(kind: UpdateErrorKind) -> UpdateError {
    UpdateError::new(kind, Verdict::SessionReset)
}

impl Update {
    /// End-of-RIB for `family` (RFC 4724 §2).
    pub fn end_of_rib(family: Family) -> Update {
        let mut u = Update::default();
        if family != Family::Ipv4Unicast {
            u.attributes.mp_unreach = Some(MpUnreach {
                family,
                withdrawn: Vec::new(),
            });
        }
        u
    }

    /// The family this UPDATE is the End-of-RIB of, if it is one.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        let a = &self.attributes;
        if !self.withdrawn.is_empty() || !self.nlri.is_empty() || a.mp_reach.is_some() {
            return None;
        }
        let only_mp_unreach = Attributes {
            mp_unreach: None,
            ..a.clone()
        } == Attributes::default();
        match &a.mp_unreach {
            None if *a == Attributes::default() => Some(Family::Ipv4Unicast),
            Some(m) if m.withdrawn.is_empty() && only_mp_unreach => Some(m.family),
            _ => None,
        }
    }

    /// Writes the body (no header).
    pub fn encode(&self, ctx: &CodecCtx, out: &mut BytesMut) {
        let at = out.len();
        out.put_u16(0);
        for p in &self.withdrawn {
            crate::attr::write_prefix(out, &(*p).into());
        }
        let wlen = out.len() - at - 2;
        out[at..at + 2].copy_from_slice(&(wlen as u16).to_be_bytes());
        let at = out.len();
        out.put_u16(0);
        self.attributes.encode(ctx, out);
        let alen = out.len() - at - 2;
        out[at..at + 2].copy_from_slice(&(alen as u16).to_be_bytes());
        for p in &self.nlri {
            crate::attr::write_prefix(out, &(*p).into());
        }
    }

    /// Decodes a body (no header). `Err` only for problems whose verdict is a session reset.
    pub fn decode(ctx: &CodecCtx, body: &[u8]) -> Result<Update, UpdateError> {
        let wlen = usize::from(u16::from_be_bytes([
            *body
                .first()
                .ok_or(reset(UpdateErrorKind::WithdrawnLength))?,
            *body.get(1).ok_or(reset(UpdateErrorKind::WithdrawnLength))?,
        ]));
        let wfield = body
            .get(2..2 + wlen)
            .ok_or(reset(UpdateErrorKind::WithdrawnLength))?;
        let rest = &body[2 + wlen..];
        let alen = match rest {
            [a, b, ..] => usize::from(u16::from_be_bytes([*a, *b])),
            _ => return Err(reset(UpdateErrorKind::AttributeListLength)),
        };
        let afield = rest
            .get(2..2 + alen)
            .ok_or(reset(UpdateErrorKind::AttributeListLength))?;
        let nfield = &rest[2 + alen..];

        let withdrawn = decode_v4_prefixes(wfield).ok_or(reset(
            UpdateErrorKind::InvalidNetworkField("withdrawn routes"),
        ))?;
        let nlri = decode_v4_prefixes(nfield)
            .ok_or(reset(UpdateErrorKind::InvalidNetworkField("NLRI")))?;

        let mut u = Update {
            withdrawn,
            nlri,
            ..Update::default()
        };
        decode_attributes(ctx, afield, &mut u)?;

        // RFC 7606 §3 d: missing well-known attributes when routes are announced.
        let announces = !u.nlri.is_empty()
            || u.attributes
                .mp_reach
                .as_ref()
                .is_some_and(|m| !m.nlri.is_empty());
        if announces {
            let mut missing = Vec::new();
            if u.attributes.origin.is_none() {
                missing.push(attr_type::ORIGIN);
            }
            if u.attributes.as_path.is_none() {
                missing.push(attr_type::AS_PATH);
            }
            if !u.nlri.is_empty() && u.attributes.next_hop.is_none() {
                missing.push(attr_type::NEXT_HOP);
            }
            for t in missing {
                u.problems.push(UpdateError::new(
                    UpdateErrorKind::MissingWellKnown(t),
                    Verdict::TreatAsWithdraw,
                ));
            }
        }
        if u.problems
            .iter()
            .any(|p| p.verdict == Verdict::TreatAsWithdraw)
        {
            u.apply_treat_as_withdraw();
        }
        Ok(u)
    }

    /// The worst verdict among this message's problems.
    pub fn worst_verdict(&self) -> Option<Verdict> {
        self.problems.iter().map(|p| p.verdict).max()
    }

    fn apply_treat_as_withdraw(&mut self) {
        self.treat_as_withdraw = true;
        let nlri = std::mem::take(&mut self.nlri);
        self.withdrawn.extend(nlri);
        if let Some(mp) = self.attributes.mp_reach.take() {
            match &mut self.attributes.mp_unreach {
                Some(un) if un.family == mp.family => un.withdrawn.extend(mp.nlri),
                _ => {
                    self.attributes.mp_unreach = Some(MpUnreach {
                        family: mp.family,
                        withdrawn: mp.nlri,
                    })
                }
            }
        }
    }
}

fn decode_v4_prefixes(mut b: &[u8]) -> Option<Vec<Ipv4Net>> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        if len > 32 {
            return None;
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = rest.get(..n)?;
        let mut a = [0u8; 4];
        a[..n].copy_from_slice(bytes);
        out.push(Ipv4Net::new(Ipv4Addr::from(a), len).ok()?.trunc());
        b = &rest[n..];
    }
    Some(out)
}

fn decode_v6_prefixes(mut b: &[u8]) -> Option<Vec<Ipv6Net>> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = b.split_first() {
        if len > 128 {
            return None;
        }
        let n = usize::from(len).div_ceil(8);
        let bytes = rest.get(..n)?;
        let mut a = [0u8; 16];
        a[..n].copy_from_slice(bytes);
        out.push(Ipv6Net::new(a.into(), len).ok()?.trunc());
        b = &rest[n..];
    }
    Some(out)
}

/// Expected Optional/Transitive flags of the attributes deflect recognizes.
fn expected_flags(type_code: u8) -> Option<u8> {
    let ot = attr_flag::OPTIONAL | attr_flag::TRANSITIVE;
    Some(match type_code {
        attr_type::ORIGIN
        | attr_type::AS_PATH
        | attr_type::NEXT_HOP
        | attr_type::LOCAL_PREF
        | attr_type::ATOMIC_AGGREGATE => attr_flag::TRANSITIVE,
        attr_type::MULTI_EXIT_DISC
        | attr_type::ORIGINATOR_ID
        | attr_type::CLUSTER_LIST
        | attr_type::MP_REACH_NLRI
        | attr_type::MP_UNREACH_NLRI => attr_flag::OPTIONAL,
        attr_type::AGGREGATOR
        | attr_type::COMMUNITIES
        | attr_type::EXTENDED_COMMUNITIES
        | attr_type::AS4_PATH
        | attr_type::AS4_AGGREGATOR
        | attr_type::LARGE_COMMUNITIES => ot,
        _ => return None,
    })
}

fn decode_attributes(ctx: &CodecCtx, mut b: &[u8], u: &mut Update) -> Result<(), UpdateError> {
    let mut seen = [false; 256];
    let mut saw_mp = false;
    while !b.is_empty() {
        // Header: flags, type, 1- or 2-octet length.
        let (flags, type_code) = match b {
            [f, t, ..] => (*f, *t),
            _ => return overrun(u, saw_mp, 0),
        };
        let ext = flags & attr_flag::EXTENDED_LENGTH != 0;
        let hdr = if ext { 4 } else { 3 };
        let len = match (ext, b) {
            (true, [_, _, a, c, ..]) => usize::from(u16::from_be_bytes([*a, *c])),
            (false, [_, _, a, ..]) => usize::from(*a),
            _ => return overrun(u, saw_mp, type_code),
        };
        let Some(value) = b.get(hdr..hdr + len) else {
            return overrun(u, saw_mp, type_code);
        };
        let whole = Bytes::copy_from_slice(&b[..hdr + len]);
        b = &b[hdr + len..];

        let is_mp =
            type_code == attr_type::MP_REACH_NLRI || type_code == attr_type::MP_UNREACH_NLRI;
        if seen[usize::from(type_code)] {
            if is_mp {
                return Err(reset(UpdateErrorKind::Duplicate(type_code)).with_data(whole));
            }
            // RFC 7606 §3 g: keep the first, discard the others.
            u.problems.push(
                UpdateError::new(UpdateErrorKind::Duplicate(type_code), Verdict::Discard)
                    .with_data(whole),
            );
            continue;
        }
        seen[usize::from(type_code)] = true;

        let Some(expected) = expected_flags(type_code) else {
            if flags & attr_flag::OPTIONAL == 0 {
                return Err(
                    reset(UpdateErrorKind::UnrecognizedWellKnown(type_code)).with_data(whole)
                );
            }
            if flags & attr_flag::TRANSITIVE != 0 {
                u.attributes.unknown.push(RawAttribute {
                    flags,
                    type_code,
                    value: Bytes::copy_from_slice(value),
                });
            }
            continue;
        };
        let ot = attr_flag::OPTIONAL | attr_flag::TRANSITIVE;
        if flags & ot != expected {
            let verdict = if is_mp {
                Verdict::SessionReset
            } else {
                Verdict::TreatAsWithdraw
            };
            let e = UpdateError::new(
                UpdateErrorKind::AttributeFlags { type_code, flags },
                verdict,
            )
            .with_data(whole);
            if is_mp {
                return Err(e);
            }
            u.problems.push(e);
            continue;
        }
        if is_mp {
            saw_mp = true;
        }
        if let Some(e) = decode_one(ctx, type_code, value, &mut u.attributes) {
            let e = e.with_data(whole);
            if e.verdict == Verdict::SessionReset {
                return Err(e);
            }
            u.problems.push(e);
        }
    }
    Ok(())
}

/// An attribute overruns the list (RFC 7606 §4): treat-as-withdraw when every NLRI of the message is
/// known (MP attribute already read, or classic NLRI only); otherwise a session reset.
fn overrun(u: &mut Update, saw_mp: bool, type_code: u8) -> Result<(), UpdateError> {
    let e = UpdateError::new(
        UpdateErrorKind::AttributeOverrun(type_code),
        Verdict::TreatAsWithdraw,
    );
    if saw_mp || u.attributes.mp_reach.is_some() {
        u.problems.push(e);
        return Ok(());
    }
    Err(UpdateError {
        verdict: Verdict::SessionReset,
        ..e
    })
}

fn taw(kind: UpdateErrorKind) -> Option<UpdateError> {
    Some(UpdateError::new(kind, Verdict::TreatAsWithdraw))
}

fn discard(kind: UpdateErrorKind) -> Option<UpdateError> {
    Some(UpdateError::new(kind, Verdict::Discard))
}

fn u32_of(v: &[u8]) -> u32 {
    u32::from_be_bytes([v[0], v[1], v[2], v[3]])
}

/// Decodes one recognized attribute into `a`; returns a problem (RFC 7606 §7) if any.
fn decode_one(ctx: &CodecCtx, type_code: u8, v: &[u8], a: &mut Attributes) -> Option<UpdateError> {
    let bad_len = UpdateErrorKind::AttributeLength {
        type_code,
        len: v.len(),
    };
    match type_code {
        attr_type::ORIGIN => match v {
            [0] => a.origin = Some(Origin::Igp),
            [1] => a.origin = Some(Origin::Egp),
            [2] => a.origin = Some(Origin::Incomplete),
            [x] => return taw(UpdateErrorKind::InvalidOrigin(*x)),
            _ => return taw(bad_len),
        },
        attr_type::AS_PATH => match AsPath::decode_value(v, ctx.four_octet_as) {
            Some(p) => a.as_path = Some(p),
            None => return taw(UpdateErrorKind::MalformedAsPath),
        },
        attr_type::NEXT_HOP => match v {
            [x, y, z, w] => a.next_hop = Some(Ipv4Addr::new(*x, *y, *z, *w)),
            _ => return taw(bad_len),
        },
        attr_type::MULTI_EXIT_DISC if v.len() == 4 => a.med = Some(u32_of(v)),
        attr_type::LOCAL_PREF if v.len() == 4 => a.local_pref = Some(u32_of(v)),
        attr_type::MULTI_EXIT_DISC | attr_type::LOCAL_PREF => return taw(bad_len),
        attr_type::ATOMIC_AGGREGATE if v.is_empty() => a.atomic_aggregate = true,
        attr_type::ATOMIC_AGGREGATE => return discard(bad_len),
        attr_type::AGGREGATOR => {
            let w = if ctx.four_octet_as { 4 } else { 2 };
            if v.len() != w + 4 {
                return discard(bad_len);
            }
            let asn = if w == 4 {
                u32_of(v)
            } else {
                u32::from(u16::from_be_bytes([v[0], v[1]]))
            };
            a.aggregator = Some(Aggregator {
                asn,
                address: Ipv4Addr::new(v[w], v[w + 1], v[w + 2], v[w + 3]),
            });
        }
        attr_type::AS4_AGGREGATOR if v.len() != 8 => return discard(bad_len),
        attr_type::COMMUNITIES => {
            if v.is_empty() || v.len() % 4 != 0 {
                return taw(bad_len);
            }
            a.communities = v.chunks_exact(4).map(|c| Community(u32_of(c))).collect();
        }
        attr_type::ORIGINATOR_ID if v.len() == 4 => {
            a.originator_id = Some(Ipv4Addr::new(v[0], v[1], v[2], v[3]))
        }
        attr_type::ORIGINATOR_ID => return taw(bad_len),
        attr_type::CLUSTER_LIST => {
            if v.is_empty() || v.len() % 4 != 0 {
                return taw(bad_len);
            }
            a.cluster_list = v
                .chunks_exact(4)
                .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                .collect();
        }
        attr_type::EXTENDED_COMMUNITIES => {
            if v.is_empty() || v.len() % 8 != 0 {
                return taw(bad_len);
            }
            a.ext_communities = v
                .chunks_exact(8)
                .map(|c| ExtCommunity(<[u8; 8]>::try_from(c).unwrap_or_default()))
                .collect();
        }
        attr_type::AS4_PATH => match AsPath::decode_value(v, true) {
            Some(p) => a.as4_path = Some(p),
            None => return discard(UpdateErrorKind::MalformedAsPath), // RFC 6793 §6
        },
        attr_type::LARGE_COMMUNITIES => {
            if v.is_empty() || v.len() % 12 != 0 {
                return taw(bad_len);
            }
            a.large_communities = v
                .chunks_exact(12)
                .map(|c| LargeCommunity {
                    global: u32_of(c),
                    local1: u32_of(&c[4..]),
                    local2: u32_of(&c[8..]),
                })
                .collect();
        }
        attr_type::MP_REACH_NLRI => return decode_mp_reach(v, a).err(),
        attr_type::MP_UNREACH_NLRI => return decode_mp_unreach(v, a).err(),
        _ => {}
    }
    None
}

/// RFC 7606 §7.11: MP attributes that cannot be parsed reset the session. An NLRI of a family we do
/// not speak is ignored (it was not negotiated). A FlowSpec NLRI whose length framing holds but whose
/// content is invalid makes the message treat-as-withdraw (RFC 8955 §4.2).
fn decode_nlri(family: Family, v: &[u8]) -> Result<(Vec<Nlri>, Option<UpdateError>), UpdateError> {
    match family {
        Family::Ipv4Unicast => decode_v4_prefixes(v)
            .map(|p| (p.into_iter().map(Nlri::Ipv4).collect(), None))
            .ok_or(reset(UpdateErrorKind::MalformedMp("IPv4 prefixes"))),
        Family::Ipv6Unicast => decode_v6_prefixes(v)
            .map(|p| (p.into_iter().map(Nlri::Ipv6).collect(), None))
            .ok_or(reset(UpdateErrorKind::MalformedMp("IPv6 prefixes"))),
        Family::Ipv4FlowSpec | Family::Ipv6FlowSpec => {
            let afi = family.afi();
            let mut out = Vec::new();
            let mut problem = None;
            let mut rest = v;
            while !rest.is_empty() {
                // Frame by the length prefix first: if it holds, a bad NLRI is skipped, not fatal.
                let (len, hdr) = match rest {
                    [b0, b1, ..] if *b0 >= 0xf0 => {
                        (usize::from(b0 & 0x0f) << 8 | usize::from(*b1), 2)
                    }
                    [b0, ..] if *b0 < 0xf0 => (usize::from(*b0), 1),
                    _ => return Err(reset(UpdateErrorKind::MalformedMp("FlowSpec length"))),
                };
                let Some(one) = rest.get(..hdr + len) else {
                    return Err(reset(UpdateErrorKind::MalformedMp(
                        "FlowSpec NLRI overruns the attribute",
                    )));
                };
                match Rule::decode(afi, one) {
                    Ok((r, _)) => out.push(Nlri::FlowSpec(r)),
                    Err(e) => {
                        problem = Some(UpdateError::new(
                            UpdateErrorKind::FlowSpec(e),
                            Verdict::TreatAsWithdraw,
                        ));
                    }
                }
                rest = &rest[hdr + len..];
            }
            Ok((out, problem))
        }
    }
}

fn mp_family(v: &[u8]) -> Result<Option<Family>, UpdateError> {
    match v {
        [a, b, s, ..] => Ok(Family::from_codes(u16::from_be_bytes([*a, *b]), *s)),
        _ => Err(reset(UpdateErrorKind::MalformedMp(
            "shorter than AFI and SAFI",
        ))),
    }
}

fn decode_mp_reach(v: &[u8], a: &mut Attributes) -> Result<(), UpdateError> {
    let family = mp_family(v)?;
    let nh_len = usize::from(
        *v.get(3)
            .ok_or(reset(UpdateErrorKind::MalformedMp("no next-hop length")))?,
    );
    let nh = v
        .get(4..4 + nh_len)
        .ok_or(reset(UpdateErrorKind::MalformedMp("next hop overruns")))?;
    let nlri = v
        .get(5 + nh_len..)
        .ok_or(reset(UpdateErrorKind::MalformedMp("no reserved octet")))?;
    let Some(family) = family else { return Ok(()) };
    let next_hop =
        NextHop::decode(nh).ok_or(reset(UpdateErrorKind::MalformedMp("next-hop length")))?;
    let nh_ok = match (family.safi(), family.afi(), next_hop) {
        (Safi::FlowSpec, _, _) => true, // RFC 8955 §4: length 0; other values are ignored
        (Safi::Unicast, Afi::Ipv4, NextHop::V4(_)) => true,
        (Safi::Unicast, Afi::Ipv6, NextHop::V6(_) | NextHop::V6LinkLocal(..)) => true,
        _ => false,
    };
    if !nh_ok {
        return Err(reset(UpdateErrorKind::MalformedMp(
            "next hop does not fit the family",
        )));
    }
    let (nlri, problem) = decode_nlri(family, nlri)?;
    a.mp_reach = Some(MpReach {
        family,
        next_hop,
        nlri,
    });
    problem.map_or(Ok(()), Err)
}

fn decode_mp_unreach(v: &[u8], a: &mut Attributes) -> Result<(), UpdateError> {
    let Some(family) = mp_family(v)? else {
        return Ok(());
    };
    let (withdrawn, problem) = decode_nlri(family, &v[3..])?;
    a.mp_unreach = Some(MpUnreach { family, withdrawn });
    problem.map_or(Ok(()), Err)
}
