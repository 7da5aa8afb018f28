//! FlowSpec rules: the validated types, their validation and their NLRI encoding and decoding
//! (RFC 8955 §4, RFC 8956 §3). See the [`flowspec`](super) module documentation.
//!
//! It builds on the components (`component`) and the words its errors print (`words`), and knows
//! nothing of actions or of the text syntax.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Arc;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::component::{BitmaskOp, Component, NumericOp, Prefix, component_type, fragment};
use super::words::{format_bitmask_term, format_numeric_term};
use crate::iana::Afi;

/// Longest NLRI the 2-octet length form can carry (RFC 8955 §4.1).
pub const MAX_NLRI_LEN: usize = 4095;
/// Longest NLRI sent by default: GoBGP 3.10 refuses 240 octets and more.
pub const DEFAULT_MAX_NLRI_LEN: usize = 239;

/// Why a set of components is not a valid rule. Each variant is one specific reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("a rule needs at least one match component")]
    Empty,
    #[error("{0} appears twice; give it once with several values instead")]
    Duplicate(&'static str),
    #[error("{0} has no values")]
    EmptyList(&'static str),
    #[error("{keyword}: value {value} is beyond {max} (the field's width)")]
    ValueTooLarge {
        keyword: &'static str,
        value: u64,
        max: u64,
    },
    #[error("{0}: an operator with none of <, >, = can never match")]
    FalseOperator(&'static str),
    #[error("{0}: an operator with all of <, >, = always matches; leave the condition out")]
    TrueOperator(&'static str),
    #[error("{0}: the first operator of a list cannot be AND-ed to a previous one")]
    LeadingAnd(&'static str),
    #[error("{keyword}: the terms AND-ed in {term} can never all hold")]
    NeverMatches { keyword: &'static str, term: String },
    #[error("{keyword}: prefix {prefix} is not an {family} prefix")]
    PrefixFamily {
        keyword: &'static str,
        prefix: IpNet,
        family: &'static str,
    },
    #[error("{keyword}: prefix {prefix} has host bits set; did you mean {}?", .prefix.trunc())]
    HostBits {
        keyword: &'static str,
        prefix: IpNet,
    },
    #[error("{keyword}: offset {offset} is beyond the prefix length {len}")]
    OffsetBeyondLength {
        keyword: &'static str,
        offset: u8,
        len: u8,
    },
    #[error(
        "{0}: a non-zero IPv6 prefix offset is refused by default (GoBGP and BIRD 2.0.12 read it differently)"
    )]
    OffsetNotAllowed(&'static str),
    #[error("{0}: IPv4 prefixes have no offset")]
    OffsetIpv4(&'static str),
    #[error("flow-label exists only in IPv6 rules (RFC 8956 §3.7)")]
    FlowLabelIpv4,
    #[error("fragment: the don't-fragment bit does not exist in IPv6 (RFC 8956 §3.6)")]
    DontFragmentIpv6,
    #[error("{keyword} can never match: the protocol list excludes {needs}")]
    ProtocolConflict {
        keyword: &'static str,
        needs: &'static str,
    },
    #[error(
        "the rule's NLRI is {len} octets; at most {max} are allowed (split the value lists, or allow the long form)"
    )]
    TooLong { len: usize, max: usize },
}

/// Wire decode errors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlowSpecError {
    #[error("NLRI is truncated: {0}")]
    Truncated(&'static str),
    #[error("NLRI length {0} is beyond 4095")]
    BadLength(usize),
    #[error("unknown component type {0}")]
    UnknownType(u8),
    #[error(
        "component type {type_code} follows type {previous}: components must be in ascending order"
    )]
    BadOrder { type_code: u8, previous: u8 },
    #[error("prefix length {len} (offset {offset}) is invalid for the family")]
    BadPrefix { len: u8, offset: u8 },
    #[error("operator byte {0:#04x} has reserved bits set")]
    BadOperator(u8),
    #[error(transparent)]
    Invalid(#[from] RuleError),
}

/// Limits applied when building a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleOptions {
    /// Longest NLRI (length prefix included).
    pub max_nlri_len: usize,
    /// Accept non-zero IPv6 prefix offsets.
    pub allow_ipv6_offset: bool,
}

impl RuleOptions {
    /// Up to 4095 octets and IPv6 offsets: for peers known to cope, and for decoding.
    pub const LONG_FORM: RuleOptions = RuleOptions {
        max_nlri_len: MAX_NLRI_LEN + 2,
        allow_ipv6_offset: true,
    };
}

impl Default for RuleOptions {
    fn default() -> Self {
        RuleOptions {
            max_nlri_len: DEFAULT_MAX_NLRI_LEN,
            allow_ipv6_offset: false,
        }
    }
}

/// A validated FlowSpec rule. See the module documentation.
///
/// Immutable and shared: a clone is a reference count, since one rule sits in the mitigation set
/// and in the Adj-RIB-Out of every peer.
#[derive(Clone)]
pub struct Rule {
    /// The first octets of the NLRI, kept inline so that ordering and equality rarely reach the
    /// shared body: a peer's Adj-RIB-Out holds hundreds of thousands of rules in ordered maps.
    head: [u8; 16],
    inner: Arc<RuleInner>,
}

/// The shared body of a [`Rule`]; reached through its accessors.
///
/// The wire form is the only form kept: the parsed components are decoded from it when asked
/// for ([`Rule::components`]), which is rare (text, precedence, a prefix check), while a rule is
/// held for as long as its mitigation is active. Keeping both cost about 250 bytes per rule.
#[doc(hidden)]
#[derive(Debug)]
pub struct RuleInner {
    afi: Afi,
    /// The whole NLRI, length prefix included: the rule's identity.
    wire: Box<[u8]>,
}

impl std::ops::Deref for Rule {
    type Target = RuleInner;

    fn deref(&self) -> &RuleInner {
        &self.inner
    }
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Rule({self})")
    }
}

impl PartialEq for Rule {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
            || (self.head == other.head && self.afi == other.afi && self.wire == other.wire)
    }
}

impl Eq for Rule {}

impl Hash for Rule {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.afi.hash(state);
        self.wire.hash(state);
    }
}

impl PartialOrd for Rule {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// By NLRI bytes (then AFI): a stable map key, not RFC 8955 precedence ([`Rule::precedence_cmp`]).
impl Ord for Rule {
    fn cmp(&self, other: &Self) -> Ordering {
        if Arc::ptr_eq(&self.inner, &other.inner) {
            return Ordering::Equal;
        }
        // The head is a prefix of the wire: comparing it first orders exactly as the wire does.
        (self.head.cmp(&other.head))
            .then_with(|| self.afi.cmp(&other.afi))
            .then_with(|| self.wire.cmp(&other.wire))
    }
}

impl Rule {
    fn from_parts(afi: Afi, wire: Box<[u8]>) -> Rule {
        let mut head = [0u8; 16];
        let n = wire.len().min(16);
        head[..n].copy_from_slice(&wire[..n]);
        Rule {
            head,
            inner: Arc::new(RuleInner { afi, wire }),
        }
    }

    /// Validates `components` (in any order) with the default options.
    pub fn new(afi: Afi, components: Vec<Component>) -> Result<Rule, RuleError> {
        Rule::with_options(afi, components, &RuleOptions::default())
    }

    pub fn with_options(
        afi: Afi,
        mut components: Vec<Component>,
        opts: &RuleOptions,
    ) -> Result<Rule, RuleError> {
        components.sort_by_key(Component::type_code);
        validate(afi, &components, opts)?;
        let wire = encode(afi, &components);
        if wire.len() > opts.max_nlri_len.min(MAX_NLRI_LEN + 2) {
            return Err(RuleError::TooLong {
                len: wire.len(),
                max: opts.max_nlri_len.min(MAX_NLRI_LEN + 2),
            });
        }
        Ok(Rule::from_parts(afi, wire.into_boxed_slice()))
    }

    pub fn afi(&self) -> Afi {
        self.afi
    }

    /// The match components, in type order, decoded from the wire form.
    pub fn components(&self) -> Vec<Component> {
        // The length prefix is one octet below 240, two from 240 (RFC 8955 §4.1).
        let header = if self.wire.first().is_some_and(|&b| b >= 0xf0) {
            2
        } else {
            1
        };
        // A rule's wire form was encoded from valid components or decoded and validated: it
        // decodes. An empty list would only hide a bug, never a peer's input.
        decode_components(self.afi, self.wire.get(header..).unwrap_or_default())
            .expect("a rule's own NLRI decodes")
    }

    /// The whole NLRI, length prefix included.
    pub fn wire(&self) -> &[u8] {
        &self.wire
    }

    pub fn destination(&self) -> Option<IpNet> {
        self.components().into_iter().find_map(|c| match c {
            Component::DestinationPrefix(p) => Some(p.net),
            _ => None,
        })
    }

    pub fn source(&self) -> Option<IpNet> {
        self.components().into_iter().find_map(|c| match c {
            Component::SourcePrefix(p) => Some(p.net),
            _ => None,
        })
    }

    /// Decodes one NLRI at the start of `buf`; returns the rule and the octets it took. The rule
    /// keeps the bytes it was read from as its identity. Structure and meaning are checked as for
    /// [`Rule::new`], except the length cap and the IPv6 offset policy (encoder policies).
    pub fn decode(afi: Afi, buf: &[u8]) -> Result<(Rule, usize), FlowSpecError> {
        let (&b0, rest) = buf
            .split_first()
            .ok_or(FlowSpecError::Truncated("length"))?;
        let (len, hdr) = if b0 >= 0xf0 {
            let &b1 = rest
                .first()
                .ok_or(FlowSpecError::Truncated("2-octet length"))?;
            (usize::from(b0 & 0x0f) << 8 | usize::from(b1), 2)
        } else {
            (usize::from(b0), 1)
        };
        let body = buf
            .get(hdr..hdr + len)
            .ok_or(FlowSpecError::Truncated("components"))?;
        let components = decode_components(afi, body)?;
        if components.is_empty() {
            return Err(RuleError::Empty.into());
        }
        validate(afi, &components, &RuleOptions::LONG_FORM)?;
        let wire = buf[..hdr + len].to_vec().into_boxed_slice();
        Ok((Rule::from_parts(afi, wire), hdr + len))
    }

    /// RFC 8955 §5.1 order of precedence: `Less` means `self` is applied first.
    pub fn precedence_cmp(&self, other: &Rule) -> Ordering {
        let (mine, theirs) = (self.components(), other.components());
        for (a, b) in mine.iter().zip(theirs.iter()) {
            let (ta, tb) = (a.type_code(), b.type_code());
            if ta != tb {
                // The rule that has the lower component type is more specific there.
                return ta.cmp(&tb);
            }
            let ord = match (a.prefix(), b.prefix()) {
                (Some(pa), Some(pb)) => prefix_precedence(pa, pb),
                _ => {
                    let (ea, eb) = (
                        encode_component(self.afi, a),
                        encode_component(other.afi, b),
                    );
                    let common = ea.len().min(eb.len());
                    match ea[..common].cmp(&eb[..common]) {
                        Ordering::Equal => eb.len().cmp(&ea.len()), // longer first
                        o => o,
                    }
                }
            };
            if ord != Ordering::Equal {
                return ord;
            }
        }
        theirs.len().cmp(&mine.len())
    }
}

/// RFC 8955 §5.1 (and RFC 8956 §4 for offsets): lower offset first; overlapping prefixes: the
/// longer first; otherwise the lower address first.
fn prefix_precedence(a: &Prefix, b: &Prefix) -> Ordering {
    a.offset.cmp(&b.offset).then_with(|| {
        let common = a.net.prefix_len().min(b.net.prefix_len());
        let ta = IpNet::new(a.net.addr(), common).map(|n| n.trunc());
        let tb = IpNet::new(b.net.addr(), common).map(|n| n.trunc());
        if ta.is_ok() && ta == tb {
            b.net.prefix_len().cmp(&a.net.prefix_len())
        } else {
            a.net.addr().cmp(&b.net.addr())
        }
    })
}

/// Decodes a whole NLRI field (MP_REACH or MP_UNREACH) of FlowSpec rules.
pub fn decode_nlri_list(afi: Afi, mut buf: &[u8]) -> Result<Vec<Rule>, FlowSpecError> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let (r, n) = Rule::decode(afi, buf)?;
        out.push(r);
        buf = &buf[n..];
    }
    Ok(out)
}

/// Builds rules from `components`, splitting the longest OR-list into several rules when one rule
/// would exceed `opts.max_nlri_len`. The union of the rules matches what the single rule would.
pub fn split_rule(
    afi: Afi,
    components: Vec<Component>,
    opts: &RuleOptions,
) -> Result<Vec<Rule>, RuleError> {
    match Rule::with_options(afi, components.clone(), opts) {
        Ok(r) => return Ok(vec![r]),
        Err(RuleError::TooLong { .. }) => {}
        Err(e) => return Err(e),
    }
    // The numeric component with the most OR-terms is split.
    let (idx, terms) = components
        .iter()
        .enumerate()
        .filter_map(|(i, c)| c.numeric().map(|ops| (i, terms_of(ops))))
        .max_by_key(|(_, t)| t.len())
        .ok_or(RuleError::TooLong {
            len: encode(afi, &components).len(),
            max: opts.max_nlri_len,
        })?;
    let mut out = Vec::new();
    let mut chunk: Vec<NumericOp> = Vec::new();
    for term in terms {
        let mut candidate = chunk.clone();
        candidate.extend_from_slice(&term);
        let mut comps = components.clone();
        if let Some(ops) = comps[idx].numeric_mut() {
            *ops = candidate.clone();
        }
        if encode(afi, &comps).len() <= opts.max_nlri_len || chunk.is_empty() {
            chunk = candidate;
            continue;
        }
        let mut done = components.clone();
        if let Some(ops) = done[idx].numeric_mut() {
            *ops = std::mem::replace(&mut chunk, term);
        }
        out.push(Rule::with_options(afi, done, opts)?);
    }
    let mut last = components;
    if let Some(ops) = last[idx].numeric_mut() {
        *ops = chunk;
    }
    out.push(Rule::with_options(afi, last, opts)?);
    Ok(out)
}

/// Splits an operator list into its OR-terms.
pub(super) fn terms_of<T: Copy + HasAnd>(ops: &[T]) -> Vec<Vec<T>> {
    let mut terms: Vec<Vec<T>> = Vec::new();
    for op in ops {
        match terms.last_mut() {
            Some(t) if op.and_bit() => t.push(*op),
            _ => terms.push(vec![*op]),
        }
    }
    terms
}

pub(super) trait HasAnd {
    fn and_bit(&self) -> bool;
}

impl HasAnd for NumericOp {
    fn and_bit(&self) -> bool {
        self.and
    }
}

impl HasAnd for BitmaskOp {
    fn and_bit(&self) -> bool {
        self.and
    }
}

// ---------------------------------------------------------------------------------------------
// Validation

fn validate(afi: Afi, components: &[Component], opts: &RuleOptions) -> Result<(), RuleError> {
    if components.is_empty() {
        return Err(RuleError::Empty);
    }
    for w in components.windows(2) {
        if w[0].type_code() == w[1].type_code() {
            return Err(RuleError::Duplicate(w[0].keyword(afi)));
        }
    }
    for c in components {
        let kw = c.keyword(afi);
        if let Some(p) = c.prefix() {
            check_prefix(afi, kw, p, opts)?;
        }
        if afi == Afi::Ipv4 && matches!(c, Component::FlowLabel(_)) {
            return Err(RuleError::FlowLabelIpv4);
        }
        let max = c.field_max();
        if let Some(ops) = c.numeric() {
            check_list(kw, ops, |o| o.and)?;
            for o in ops {
                if o.value > max {
                    return Err(RuleError::ValueTooLarge {
                        keyword: kw,
                        value: o.value,
                        max,
                    });
                }
                if !(o.lt || o.gt || o.eq) {
                    return Err(RuleError::FalseOperator(kw));
                }
                if o.lt && o.gt && o.eq {
                    return Err(RuleError::TrueOperator(kw));
                }
            }
            for t in terms_of(ops) {
                if numeric_term_is_empty(&t, max) {
                    return Err(RuleError::NeverMatches {
                        keyword: kw,
                        term: format_numeric_term(c, afi, &t),
                    });
                }
            }
        }
        if let Some(ops) = c.bitmask() {
            check_list(kw, ops, |o| o.and)?;
            for o in ops {
                if o.value > max {
                    return Err(RuleError::ValueTooLarge {
                        keyword: kw,
                        value: o.value,
                        max,
                    });
                }
            }
            if afi == Afi::Ipv6
                && matches!(c, Component::Fragment(_))
                && ops.iter().any(|o| o.value & fragment::DF != 0)
            {
                return Err(RuleError::DontFragmentIpv6);
            }
            for t in terms_of(ops) {
                if bitmask_term_is_empty(&t) {
                    return Err(RuleError::NeverMatches {
                        keyword: kw,
                        term: format_bitmask_term(c, &t),
                    });
                }
            }
        }
    }
    check_protocol_conflicts(afi, components)
}

fn check_list<T>(kw: &'static str, ops: &[T], and: impl Fn(&T) -> bool) -> Result<(), RuleError> {
    match ops.first() {
        None => Err(RuleError::EmptyList(kw)),
        Some(o) if and(o) => Err(RuleError::LeadingAnd(kw)),
        Some(_) => Ok(()),
    }
}

fn check_prefix(
    afi: Afi,
    kw: &'static str,
    p: &Prefix,
    opts: &RuleOptions,
) -> Result<(), RuleError> {
    match (afi, p.net) {
        (Afi::Ipv4, IpNet::V4(_)) => {
            if p.offset != 0 {
                return Err(RuleError::OffsetIpv4(kw));
            }
        }
        (Afi::Ipv6, IpNet::V6(n)) => {
            if p.offset > n.prefix_len() {
                return Err(RuleError::OffsetBeyondLength {
                    keyword: kw,
                    offset: p.offset,
                    len: n.prefix_len(),
                });
            }
            if p.offset != 0 && !opts.allow_ipv6_offset {
                return Err(RuleError::OffsetNotAllowed(kw));
            }
        }
        (_, net) => {
            let family = if afi == Afi::Ipv4 { "IPv4" } else { "IPv6" };
            return Err(RuleError::PrefixFamily {
                keyword: kw,
                prefix: net,
                family,
            });
        }
    }
    if p.net.trunc() != p.net {
        return Err(RuleError::HostBits {
            keyword: kw,
            prefix: p.net,
        });
    }
    Ok(())
}

/// An AND-term of numeric comparisons that no value in 0..=max satisfies.
fn numeric_term_is_empty(term: &[NumericOp], max: u64) -> bool {
    // Each op admits a union of at most two intervals; intersect the term's ops.
    let mut set: Vec<(u64, u64)> = vec![(0, max)];
    for op in term {
        let mut admits: Vec<(u64, u64)> = Vec::new();
        let v = op.value;
        if op.lt && v > 0 {
            admits.push((0, v - 1));
        }
        if op.eq {
            admits.push((v, v));
        }
        if op.gt && v < u64::MAX {
            admits.push((v + 1, u64::MAX));
        }
        let mut next = Vec::new();
        for &(a, b) in &set {
            for &(c, d) in &admits {
                let (lo, hi) = (a.max(c), b.min(d));
                if lo <= hi {
                    next.push((lo, hi));
                }
            }
        }
        set = next;
        if set.is_empty() {
            return true;
        }
    }
    false
}

/// An AND-term of bitmask tests that no value can satisfy (the cases that can be told exactly).
fn bitmask_term_is_empty(term: &[BitmaskOp]) -> bool {
    let mut required = 0u64; // bits that must be set
    let mut forbidden = 0u64; // bits that must be clear
    for op in term {
        match (op.matched, op.not) {
            (true, false) => required |= op.value,
            (false, true) => forbidden |= op.value,
            // "any of 0" and "not all of 0" are false for every packet.
            (false, false) | (true, true) if op.value == 0 => return true,
            _ => {}
        }
    }
    if required & forbidden != 0 {
        return true;
    }
    term.iter().any(|op| match (op.matched, op.not) {
        (false, false) => op.value & !forbidden == 0, // any of bits that are all forbidden
        (true, true) => op.value & !required == 0,    // not all of bits that are all required
        _ => false,
    })
}

/// Ports, TCP flags and ICMP fields need a protocol list that can be their protocol.
fn check_protocol_conflicts(afi: Afi, components: &[Component]) -> Result<(), RuleError> {
    let Some(Component::Protocol(ops)) = components
        .iter()
        .find(|c| matches!(c, Component::Protocol(_)))
    else {
        return Ok(());
    };
    let can_be = |proto: u64| {
        terms_of(ops)
            .iter()
            .any(|t| t.iter().all(|o| o.matches(proto)))
    };
    let icmp = if afi == Afi::Ipv4 { 1 } else { 58 };
    for c in components {
        let (needs, ok) = match c {
            Component::Port(_) | Component::DestinationPort(_) | Component::SourcePort(_) => {
                ("TCP, UDP and SCTP", can_be(6) || can_be(17) || can_be(132))
            }
            Component::TcpFlags(_) => ("TCP", can_be(6)),
            Component::IcmpType(_) | Component::IcmpCode(_) => (
                if afi == Afi::Ipv4 {
                    "ICMP (1)"
                } else {
                    "ICMPv6 (58)"
                },
                can_be(icmp),
            ),
            _ => continue,
        };
        if !ok {
            return Err(RuleError::ProtocolConflict {
                keyword: c.keyword(afi),
                needs,
            });
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Encoding

/// Octets for a value in its minimal width (RFC 8955 §4.2.1.1: 1, 2, 4 or 8), and the len bits.
fn value_width(v: u64) -> (usize, u8) {
    if v <= 0xff {
        (1, 0x00)
    } else if v <= 0xffff {
        (2, 0x10)
    } else if v <= 0xffff_ffff {
        (4, 0x20)
    } else {
        (8, 0x30)
    }
}

fn encode(afi: Afi, components: &[Component]) -> Vec<u8> {
    let mut body = Vec::with_capacity(32);
    for c in components {
        encode_component_into(afi, c, &mut body);
    }
    let mut wire = Vec::with_capacity(body.len() + 2);
    if body.len() < 240 {
        wire.push(body.len() as u8);
    } else {
        wire.extend_from_slice(&(0xf000 | body.len().min(MAX_NLRI_LEN) as u16).to_be_bytes());
    }
    wire.extend_from_slice(&body);
    wire
}

fn encode_component(afi: Afi, c: &Component) -> Vec<u8> {
    let mut v = Vec::new();
    encode_component_into(afi, c, &mut v);
    v
}

fn encode_component_into(afi: Afi, c: &Component, out: &mut Vec<u8>) {
    out.push(c.type_code());
    if let Some(p) = c.prefix() {
        encode_prefix(afi, p, out);
    } else if let Some(ops) = c.numeric() {
        let last = ops.len().saturating_sub(1);
        for (i, o) in ops.iter().enumerate() {
            let bits = u8::from(o.lt) << 2 | u8::from(o.gt) << 1 | u8::from(o.eq);
            write_op(out, i == last, o.and, bits, o.value);
        }
    } else if let Some(ops) = c.bitmask() {
        let last = ops.len().saturating_sub(1);
        for (i, o) in ops.iter().enumerate() {
            write_op(
                out,
                i == last,
                o.and,
                u8::from(o.not) << 1 | u8::from(o.matched),
                o.value,
            );
        }
    }
}

/// One operator octet (end-of-list, AND, value length, and the operator's own bits) and its value
/// in the minimal width.
fn write_op(out: &mut Vec<u8>, last: bool, and: bool, bits: u8, value: u64) {
    let (n, len_bits) = value_width(value);
    out.push(u8::from(last) << 7 | u8::from(and) << 6 | len_bits | bits);
    out.extend_from_slice(&value.to_be_bytes()[8 - n..]);
}

fn encode_prefix(afi: Afi, p: &Prefix, out: &mut Vec<u8>) {
    let len = p.net.prefix_len();
    match (afi, p.net.addr()) {
        (Afi::Ipv4, IpAddr::V4(a)) => {
            out.push(len);
            out.extend_from_slice(&a.octets()[..usize::from(len).div_ceil(8)]);
        }
        (_, IpAddr::V6(a)) => {
            // RFC 8956 §3.1: length, offset, then bits offset..length left-aligned.
            out.push(len);
            out.push(p.offset);
            let bits = u128::from(a) << p.offset;
            let n = usize::from(len - p.offset).div_ceil(8);
            out.extend_from_slice(&bits.to_be_bytes()[..n]);
        }
        _ => {} // excluded by validation
    }
}

// ---------------------------------------------------------------------------------------------
// Decoding

fn decode_components(afi: Afi, mut body: &[u8]) -> Result<Vec<Component>, FlowSpecError> {
    let mut out = Vec::new();
    let mut previous = 0u8;
    while let Some((&t, rest)) = body.split_first() {
        if t <= previous {
            return Err(FlowSpecError::BadOrder {
                type_code: t,
                previous,
            });
        }
        let max_type = if afi == Afi::Ipv4 {
            component_type::FRAGMENT
        } else {
            component_type::FLOW_LABEL
        };
        if t == 0 || t > max_type {
            return Err(FlowSpecError::UnknownType(t));
        }
        previous = t;
        body = rest;
        let c = match t {
            component_type::DESTINATION_PREFIX | component_type::SOURCE_PREFIX => {
                let (p, n) = decode_prefix(afi, body)?;
                body = &body[n..];
                if t == component_type::DESTINATION_PREFIX {
                    Component::DestinationPrefix(p)
                } else {
                    Component::SourcePrefix(p)
                }
            }
            component_type::TCP_FLAGS | component_type::FRAGMENT => {
                let ops = read_ops(&mut body, 0x0c, "bitmask operator")?
                    .into_iter()
                    .map(|(b, value)| BitmaskOp {
                        and: b & 0x40 != 0,
                        not: b & 0x02 != 0,
                        matched: b & 0x01 != 0,
                        value,
                    })
                    .collect();
                if t == component_type::TCP_FLAGS {
                    Component::TcpFlags(ops)
                } else {
                    Component::Fragment(ops)
                }
            }
            _ => {
                let ops = read_ops(&mut body, 0x08, "numeric operator")?
                    .into_iter()
                    .map(|(b, value)| NumericOp {
                        and: b & 0x40 != 0,
                        lt: b & 0x04 != 0,
                        gt: b & 0x02 != 0,
                        eq: b & 0x01 != 0,
                        value,
                    })
                    .collect();
                Component::from_numeric(t, ops).ok_or(FlowSpecError::UnknownType(t))?
            }
        };
        out.push(c);
    }
    Ok(out)
}

/// Reads an operator list up to its end-of-list bit: (operator octet, value) pairs. `reserved`
/// are the bits that must be zero (RFC 8955 §4.2.1.1, §4.2.1.2).
fn read_ops(
    body: &mut &[u8],
    reserved: u8,
    what: &'static str,
) -> Result<Vec<(u8, u64)>, FlowSpecError> {
    let mut ops = Vec::new();
    loop {
        let (&b, rest) = body.split_first().ok_or(FlowSpecError::Truncated(what))?;
        if b & reserved != 0 {
            return Err(FlowSpecError::BadOperator(b));
        }
        let (value, n) = read_value(b, rest)?;
        *body = &rest[n..];
        ops.push((b, value));
        if b & 0x80 != 0 {
            return Ok(ops);
        }
    }
}

fn read_value(op: u8, buf: &[u8]) -> Result<(u64, usize), FlowSpecError> {
    let n = 1usize << ((op >> 4) & 0x3);
    let bytes = buf
        .get(..n)
        .ok_or(FlowSpecError::Truncated("operator value"))?;
    let mut v = [0u8; 8];
    v[8 - n..].copy_from_slice(bytes);
    Ok((u64::from_be_bytes(v), n))
}

fn decode_prefix(afi: Afi, buf: &[u8]) -> Result<(Prefix, usize), FlowSpecError> {
    match afi {
        Afi::Ipv4 => {
            let (&len, rest) = buf
                .split_first()
                .ok_or(FlowSpecError::Truncated("prefix length"))?;
            if len > 32 {
                return Err(FlowSpecError::BadPrefix { len, offset: 0 });
            }
            let n = usize::from(len).div_ceil(8);
            let bytes = rest.get(..n).ok_or(FlowSpecError::Truncated("prefix"))?;
            let mut a = [0u8; 4];
            a[..n].copy_from_slice(bytes);
            let net = Ipv4Net::new(Ipv4Addr::from(a), len)
                .map_err(|_| FlowSpecError::BadPrefix { len, offset: 0 })?;
            Ok((
                Prefix {
                    net: IpNet::V4(net),
                    offset: 0,
                },
                1 + n,
            ))
        }
        Afi::Ipv6 => {
            let (&len, &offset) = match buf {
                [l, o, ..] => (l, o),
                _ => return Err(FlowSpecError::Truncated("prefix length and offset")),
            };
            if len > 128 || offset > len {
                return Err(FlowSpecError::BadPrefix { len, offset });
            }
            let n = usize::from(len - offset).div_ceil(8);
            let bytes = buf
                .get(2..2 + n)
                .ok_or(FlowSpecError::Truncated("prefix pattern"))?;
            let mut a = [0u8; 16];
            a[..n].copy_from_slice(bytes);
            let pattern = u128::from_be_bytes(a);
            let addr = if offset == 0 {
                pattern
            } else {
                pattern >> offset
            };
            let net = Ipv6Net::new(Ipv6Addr::from(addr), len)
                .map_err(|_| FlowSpecError::BadPrefix { len, offset })?;
            Ok((
                Prefix {
                    net: IpNet::V6(net),
                    offset,
                },
                2 + n,
            ))
        }
    }
}
