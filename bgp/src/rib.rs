//! The Adj-RIB-Out of one peer (RFC 4271 §3.2) and the UPDATE packer.
//!
//! deflect only originates routes, so a peer's Adj-RIB-Out is simply "the routes this peer should
//! hold" ([`AdjRibOut::set`], [`AdjRibOut::remove`]) next to "the routes we told it about". The
//! difference between the two is *pending*; [`AdjRibOut::drain`] turns pending changes into complete
//! BGP UPDATE messages, packing NLRI that share attributes into as few messages as the negotiated
//! maximum length allows (4096 octets, 65535 with RFC 8654 extended messages).
//!
//! Life cycle, driven by the peer task:
//! - [`AdjRibOut::session_up`] on Established: everything desired becomes pending, followed by one
//!   End-of-RIB per family (RFC 4724 §2) once the initial table is written.
//! - Changes while up are coalesced: announcing then withdrawing a route before it was sent sends
//!   nothing; changing a route's attributes twice sends the last version only.
//! - [`AdjRibOut::route_refresh`] (RFC 2918) re-sends a family.
//! - [`AdjRibOut::session_down`]: the peer forgets everything; the desired set stays.
//!
//! What this module must not do: talk to sockets, read clocks, or decide *which* routes exist (that is
//! the mitigation set's job). It is pure and deterministic: the same calls give the same bytes.
//!
//! Wire choices (all tested in `tests/rib.rs`):
//! - MP_REACH_NLRI / MP_UNREACH_NLRI is the first attribute of its UPDATE (RFC 7606 §5.1), always
//!   with the extended-length flag so a packed message can grow to 65535 octets.
//! - FlowSpec routes carry no NEXT_HOP and an MP_REACH next-hop of length 0 (RFC 8955 §4).
//! - IPv4 unicast (RTBH) uses the classic NLRI and withdrawn-routes fields with a NEXT_HOP attribute.
//! - eBGP: AS_PATH is our AS alone and LOCAL_PREF is not sent; iBGP: empty AS_PATH, LOCAL_PREF 100 by
//!   default.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::Arc;

use bytes::{BufMut, BytesMut};
use ipnet::IpNet;

use crate::attr::{AsPath, Attributes, Origin};
use crate::codec::CodecCtx;
use crate::community::{Community, ExtCommunity, LargeCommunity};
use crate::flowspec::Rule;
use crate::header;
use crate::iana::{Afi, Family, attr_flag, attr_type, message_type};

/// What identifies a route: its NLRI. For FlowSpec that is the rule's encoded bytes, so an announce
/// and its withdraw always carry the identical NLRI.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RouteKey {
    FlowSpec(Rule),
    /// A unicast prefix: RTBH.
    Unicast(IpNet),
}

impl RouteKey {
    pub fn family(&self) -> Family {
        match self {
            RouteKey::FlowSpec(r) => match r.afi() {
                Afi::Ipv4 => Family::Ipv4FlowSpec,
                Afi::Ipv6 => Family::Ipv6FlowSpec,
            },
            RouteKey::Unicast(IpNet::V4(_)) => Family::Ipv4Unicast,
            RouteKey::Unicast(IpNet::V6(_)) => Family::Ipv6Unicast,
        }
    }

    /// Octets this NLRI takes in an UPDATE.
    fn wire_len(&self) -> usize {
        match self {
            RouteKey::FlowSpec(r) => r.wire().len(),
            RouteKey::Unicast(p) => 1 + usize::from(p.prefix_len()).div_ceil(8),
        }
    }

    fn write(&self, out: &mut BytesMut) {
        match self {
            RouteKey::FlowSpec(r) => out.extend_from_slice(r.wire()),
            RouteKey::Unicast(p) => {
                let len = p.prefix_len();
                out.put_u8(len);
                let octets = usize::from(len).div_ceil(8);
                match p {
                    IpNet::V4(n) => out.extend_from_slice(&n.network().octets()[..octets]),
                    IpNet::V6(n) => out.extend_from_slice(&n.network().octets()[..octets]),
                }
            }
        }
    }
}

/// The attributes deflect puts on an originated route. ORIGIN (IGP) and AS_PATH come from the session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct RouteAttrs {
    /// Unicast (RTBH) routes only: the discard next hop the routers resolve to a null route.
    pub next_hop: Option<IpAddr>,
    pub med: Option<u32>,
    /// Sent on iBGP sessions only (RFC 4271 §5.1.5); 100 when unset.
    pub local_pref: Option<u32>,
    pub communities: Vec<Community>,
    /// FlowSpec actions ([`crate::flowspec::Action::to_ext_community`]) and any others.
    pub ext_communities: Vec<ExtCommunity>,
    pub large_communities: Vec<LargeCommunity>,
}

/// Why a route cannot be put in an Adj-RIB-Out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RibError {
    #[error("a unicast (RTBH) route needs a next hop")]
    MissingNextHop,
    #[error("next hop {next_hop} is not of the prefix's address family")]
    NextHopFamily { next_hop: IpAddr },
    #[error("FlowSpec routes carry no next hop (RFC 8955 §4); remove it")]
    FlowSpecNextHop,
}

/// What the session negotiated and the peer's configuration allows, for encoding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionCtx {
    /// Our AS, put in AS_PATH on eBGP sessions.
    pub local_as: u32,
    /// eBGP (different AS) or iBGP.
    pub ebgp: bool,
    /// Codec context (4-octet AS, extended message).
    pub codec: CodecCtx,
    /// Families this peer receives: negotiated and allowed by its configuration.
    pub families: BTreeSet<Family>,
    /// Longest FlowSpec NLRI this peer is sent. 239 by default (GoBGP 3.10 disables the family on
    /// an NLRI of 240 octets or more); up to 4095 for peers known to cope with the 2-octet form.
    pub max_flowspec_nlri_len: usize,
}

impl SessionCtx {
    pub fn max_message_len(&self) -> usize {
        if self.codec.extended_message {
            header::MAX_EXTENDED_LEN
        } else {
            header::MAX_LEN
        }
    }
}

/// Counters for the API and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RibStats {
    /// NLRI announced (each announcement of each route counts).
    pub announced: u64,
    /// NLRI withdrawn.
    pub withdrawn: u64,
    /// UPDATE messages written, End-of-RIB included.
    pub updates: u64,
    /// Routes held back because the peer cannot take them (family not negotiated, rule too long).
    pub held_back: u64,
}

/// One route's two states in an Adj-RIB-Out.
#[derive(Debug, Default)]
struct Slot {
    /// What the peer should hold. Survives session resets; the mitigation set is its source.
    desired: Option<Arc<RouteAttrs>>,
    /// What we told the peer in the current session.
    advertised: Option<Arc<RouteAttrs>>,
}

/// One peer's Adj-RIB-Out. See the module documentation.
#[derive(Debug, Default)]
pub struct AdjRibOut {
    /// Every route desired or advertised, with both states. One map rather than one per state:
    /// in a session that is up the two hold the same keys, hundreds of thousands of them, and
    /// a map entry costs more than the attributes' shared pointer.
    routes: BTreeMap<RouteKey, Slot>,
    /// Routes with a desired state.
    desired_len: usize,
    /// Routes with an advertised state.
    advertised_len: usize,
    /// Keys whose desired and advertised states may differ. Coalesces changes until drained.
    pending: BTreeSet<RouteKey>,
    /// Set while Established.
    session: Option<SessionCtx>,
    /// Families still owed an End-of-RIB after the initial table.
    eor_pending: BTreeSet<Family>,
    /// End-of-RIB held back: the owner has not yet said that the table is complete
    /// ([`AdjRibOut::hold_end_of_rib`]).
    eor_held: bool,
    /// Routes the peer cannot take in this session (kept out of `advertised`).
    held_back: BTreeSet<RouteKey>,
    /// Pending keys to announce again even if unchanged (ROUTE-REFRESH).
    resend: BTreeSet<RouteKey>,
    stats: RibStats,
}

impl AdjRibOut {
    pub fn new() -> AdjRibOut {
        AdjRibOut::default()
    }

    /// Checks that `attrs` fit `key` (next hop rules).
    pub fn check(key: &RouteKey, attrs: &RouteAttrs) -> Result<(), RibError> {
        match (key, attrs.next_hop) {
            (RouteKey::FlowSpec(_), Some(_)) => Err(RibError::FlowSpecNextHop),
            (RouteKey::FlowSpec(_), None) => Ok(()),
            (RouteKey::Unicast(_), None) => Err(RibError::MissingNextHop),
            (RouteKey::Unicast(p), Some(nh)) => match (p, nh) {
                (IpNet::V4(_), IpAddr::V4(_)) | (IpNet::V6(_), IpAddr::V6(_)) => Ok(()),
                _ => Err(RibError::NextHopFamily { next_hop: nh }),
            },
        }
    }

    /// Makes `key` desired with `attrs`. Returns whether anything changed.
    pub fn set(&mut self, key: RouteKey, attrs: Arc<RouteAttrs>) -> Result<bool, RibError> {
        Self::check(&key, &attrs)?;
        let slot = self.routes.entry(key.clone()).or_default();
        if slot.desired.as_ref() == Some(&attrs) {
            return Ok(false);
        }
        if slot.desired.replace(attrs).is_none() {
            self.desired_len += 1;
        }
        if self.session.is_some() {
            self.pending.insert(key);
        }
        Ok(true)
    }

    /// Makes `key` undesired. Returns whether it was desired.
    pub fn remove(&mut self, key: &RouteKey) -> bool {
        let Some(slot) = self.routes.get_mut(key) else {
            return false;
        };
        if slot.desired.take().is_none() {
            return false;
        }
        self.desired_len -= 1;
        if slot.advertised.is_none() {
            self.routes.remove(key);
        }
        self.held_back.remove(key);
        if self.session.is_some() {
            self.pending.insert(key.clone());
        }
        true
    }

    /// How many routes the peer should hold.
    pub fn desired_len(&self) -> usize {
        self.desired_len
    }

    /// How many routes the peer holds from us in this session, as far as we sent them.
    pub fn advertised_len(&self) -> usize {
        self.advertised_len
    }

    /// The attributes the peer holds `key` with, as far as we sent them.
    pub fn advertised(&self, key: &RouteKey) -> Option<&Arc<RouteAttrs>> {
        self.routes.get(key)?.advertised.as_ref()
    }

    /// The peer holds nothing from us any more: routes no longer desired go.
    fn forget_advertised(&mut self) {
        self.routes.retain(|_, s| {
            s.advertised = None;
            s.desired.is_some()
        });
        self.advertised_len = 0;
    }

    /// We withdrew `key`.
    fn unadvertise(&mut self, key: &RouteKey) {
        if let Some(slot) = self.routes.get_mut(key) {
            if slot.advertised.take().is_some() {
                self.advertised_len -= 1;
            }
            if slot.desired.is_none() {
                self.routes.remove(key);
            }
        }
    }

    /// Routes the peer cannot take in this session, with the reason visible through [`Self::held_back_reason`].
    pub fn held_back(&self) -> &BTreeSet<RouteKey> {
        &self.held_back
    }

    pub fn held_back_reason(&self, key: &RouteKey) -> Option<String> {
        let s = self.session.as_ref()?;
        let family = key.family();
        if !s.families.contains(&family) {
            return Some(format!("{family} is not negotiated with this peer"));
        }
        match key {
            RouteKey::FlowSpec(r) if r.wire().len() > s.max_flowspec_nlri_len => Some(format!(
                "FlowSpec NLRI is {} octets; this peer takes at most {}",
                r.wire().len(),
                s.max_flowspec_nlri_len
            )),
            _ => None,
        }
    }

    pub fn stats(&self) -> RibStats {
        self.stats
    }

    pub fn is_established(&self) -> bool {
        self.session.is_some()
    }

    /// True when nothing is left to write, End-of-RIB included.
    pub fn is_synced(&self) -> bool {
        self.pending.is_empty() && self.eor_pending.is_empty()
    }

    /// True when [`AdjRibOut::drain`] has something to write now (an End-of-RIB held back is not).
    pub fn has_work(&self) -> bool {
        !self.pending.is_empty() || (!self.eor_pending.is_empty() && !self.eor_held)
    }

    /// Holds End-of-RIB back (`true`) until the table is complete (`false`). A speaker whose
    /// routes come from elsewhere (a store read at start) holds it until they are all in: an
    /// End-of-RIB sent over a table still empty tells a graceful-restart helper to drop every
    /// route it kept from the session before (RFC 4724 §4.2), and the routes come back moments
    /// later: a flap of every rule at each restart.
    pub fn hold_end_of_rib(&mut self, hold: bool) {
        self.eor_held = hold;
    }

    /// The session reached Established: send everything, then End-of-RIB per family.
    pub fn session_up(&mut self, ctx: SessionCtx) {
        self.forget_advertised();
        self.resend.clear();
        self.held_back.clear();
        self.pending = self.routes.keys().cloned().collect();
        self.eor_pending = ctx.families.clone();
        self.session = Some(ctx);
    }

    /// The session went down: the peer holds nothing from us any more (or will flush it after the
    /// graceful-restart timer); the desired set stays for the next session.
    pub fn session_down(&mut self) {
        self.session = None;
        self.forget_advertised();
        self.pending.clear();
        self.resend.clear();
        self.eor_pending.clear();
        self.held_back.clear();
    }

    /// ROUTE-REFRESH (RFC 2918 §4) for `family`: re-send all of it. What the peer holds is unchanged
    /// meanwhile, so a withdrawal that comes before the re-send is still sent.
    pub fn route_refresh(&mut self, family: Family) {
        if self.session.is_none() {
            return;
        }
        let keys: Vec<RouteKey> = self
            .routes
            .iter()
            .filter(|(_, s)| s.advertised.is_some())
            .map(|(k, _)| k)
            .chain(self.held_back.iter())
            .filter(|k| k.family() == family)
            .cloned()
            .collect();
        self.resend.extend(keys.iter().cloned());
        self.pending.extend(keys);
    }

    /// Writes up to `max_messages` complete UPDATE messages (headers included) for pending changes
    /// into `out`, and returns how many it wrote. What does not fit stays pending for the next call.
    pub fn drain(&mut self, out: &mut BytesMut, max_messages: usize) -> usize {
        let Some(ctx) = self.session.clone() else {
            return 0;
        };
        if max_messages == 0 {
            return 0;
        }
        let max_len = ctx.max_message_len();

        // Sort pending changes into withdrawals per family and announcements per (family, attributes).
        // Groups are found by the attributes' pointer first (the mitigation set shares one Arc per
        // action), then by value.
        let mut withdraws: BTreeMap<Family, Vec<RouteKey>> = BTreeMap::new();
        let mut announces: Vec<(Family, Arc<RouteAttrs>, Vec<RouteKey>)> = Vec::new();
        let mut group_of: HashMap<(Family, *const RouteAttrs), usize> = HashMap::new();
        let pending = std::mem::take(&mut self.pending);
        for key in pending {
            let family = key.family();
            let deliverable = ctx.families.contains(&family)
                && !matches!(&key, RouteKey::FlowSpec(r) if r.wire().len() > ctx.max_flowspec_nlri_len);
            let (desired, advertised) = match self.routes.get(&key) {
                Some(s) => (s.desired.clone(), s.advertised.clone()),
                None => (None, None),
            };
            match &desired {
                Some(attrs) if deliverable => {
                    let resend = !self.resend.is_empty() && self.resend.remove(&key);
                    if !resend && advertised.as_ref() == Some(attrs) {
                        continue;
                    }
                    if !self.held_back.is_empty() {
                        self.held_back.remove(&key);
                    }
                    let idx = match group_of.get(&(family, Arc::as_ptr(attrs))) {
                        Some(i) => *i,
                        None => {
                            let i = announces
                                .iter()
                                .position(|(f, a, _)| *f == family && a == attrs)
                                .unwrap_or_else(|| {
                                    announces.push((family, attrs.clone(), Vec::new()));
                                    announces.len() - 1
                                });
                            group_of.insert((family, Arc::as_ptr(attrs)), i);
                            i
                        }
                    };
                    announces[idx].2.push(key);
                }
                Some(_) => {
                    self.resend.remove(&key);
                    // The peer cannot take it: make sure it holds no older version, and hold it back.
                    if self.held_back.insert(key.clone()) {
                        self.stats.held_back += 1;
                    }
                    if advertised.is_some() && ctx.families.contains(&family) {
                        withdraws.entry(family).or_default().push(key);
                    }
                }
                None => {
                    self.resend.remove(&key);
                    if advertised.is_some() {
                        withdraws.entry(family).or_default().push(key);
                    }
                }
            }
        }

        let mut written = 0;
        // Withdrawals first: a rule replaced by another must not linger next to it.
        for (family, keys) in withdraws {
            let mut rest = keys.as_slice();
            while !rest.is_empty() {
                if written == max_messages {
                    self.pending.extend(rest.iter().cloned());
                    break;
                }
                let mark = out.len();
                let n = write_withdraw(out, family, rest, max_len);
                if n == 0 {
                    // Unreachable in practice: an NLRI too long to withdraw was too long to announce
                    // and so was never advertised. Never loop on it.
                    out.truncate(mark);
                    self.unadvertise(&rest[0]);
                    rest = &rest[1..];
                    continue;
                }
                for k in &rest[..n] {
                    self.unadvertise(k);
                }
                self.stats.withdrawn += n as u64;
                self.stats.updates += 1;
                written += 1;
                rest = &rest[n..];
            }
        }
        for (family, attrs, keys) in announces {
            let common = encode_common_attrs(&ctx, family, &attrs);
            let mut rest = keys.as_slice();
            while !rest.is_empty() {
                if written == max_messages {
                    self.pending.extend(rest.iter().cloned());
                    break;
                }
                let mark = out.len();
                let n = write_announce(out, family, &attrs, &common, rest, max_len);
                if n == 0 {
                    // This NLRI with these attributes does not fit in one message for this peer.
                    out.truncate(mark);
                    if self.held_back.insert(rest[0].clone()) {
                        self.stats.held_back += 1;
                    }
                    rest = &rest[1..];
                    continue;
                }
                for k in &rest[..n] {
                    // Announced because desired in this drain: its slot is there.
                    if let Some(slot) = self.routes.get_mut(k) {
                        if slot.advertised.replace(attrs.clone()).is_none() {
                            self.advertised_len += 1;
                        }
                    }
                }
                self.stats.announced += n as u64;
                self.stats.updates += 1;
                written += 1;
                rest = &rest[n..];
            }
        }
        if self.pending.is_empty() && !self.eor_held {
            while written < max_messages {
                let Some(family) = self.eor_pending.pop_first() else {
                    break;
                };
                write_end_of_rib(out, family);
                self.stats.updates += 1;
                written += 1;
            }
        }
        written
    }
}

/// Encodes announcements of `keys`, which share `attrs`, as complete UPDATE messages appended to
/// `out`, packed as tightly as the session's maximum length allows. Returns the number of messages.
/// An NLRI that cannot fit in a message even alone is passed to `unfit` and left out.
///
/// This is the codec half of [`AdjRibOut::drain`], without its bookkeeping.
pub fn pack_announcements<'k>(
    ctx: &SessionCtx,
    family: Family,
    attrs: &RouteAttrs,
    keys: &'k [RouteKey],
    out: &mut BytesMut,
    mut unfit: impl FnMut(&'k RouteKey),
) -> usize {
    let common = encode_common_attrs(ctx, family, attrs);
    let max_len = ctx.max_message_len();
    let mut rest = keys;
    let mut messages = 0;
    while let Some(first) = rest.first() {
        let mark = out.len();
        let n = write_announce(out, family, attrs, &common, rest, max_len);
        if n == 0 {
            out.truncate(mark);
            unfit(first);
            rest = &rest[1..];
            continue;
        }
        messages += 1;
        rest = &rest[n..];
    }
    messages
}

/// Writes as many of `keys` as fit in `budget` octets; returns how many and the octets used.
fn write_fitting(out: &mut BytesMut, keys: &[RouteKey], budget: usize) -> (usize, usize) {
    let mut used = 0;
    let mut n = 0;
    for k in keys {
        let l = k.wire_len();
        if used + l > budget {
            break;
        }
        k.write(out);
        used += l;
        n += 1;
    }
    (n, used)
}

/// Flags, type and a 2-octet length placeholder for MP_REACH_NLRI / MP_UNREACH_NLRI: optional,
/// non-transitive, extended length (RFC 4760 §3, §4).
fn write_mp_attr_header(out: &mut BytesMut, type_code: u8) {
    out.put_u8(attr_flag::OPTIONAL | attr_flag::EXTENDED_LENGTH);
    out.put_u8(type_code);
    out.put_u16(0);
}

/// Fixed octets of an MP_REACH_NLRI attribute before its NLRI: flags, type, 2-octet length, AFI,
/// SAFI, next-hop length, next hop, reserved.
fn mp_reach_overhead(next_hop_len: usize) -> usize {
    4 + 3 + 1 + next_hop_len + 1
}

/// Writes one withdrawal UPDATE with as many of `keys` as fit; returns how many.
fn write_withdraw(out: &mut BytesMut, family: Family, keys: &[RouteKey], max_len: usize) -> usize {
    let start = header::begin(out, message_type::UPDATE);
    let n = if family == Family::Ipv4Unicast {
        // Withdrawn Routes Length, Withdrawn Routes, Total Path Attribute Length = 0.
        let len_at = out.len();
        out.put_u16(0);
        let (n, used) = write_fitting(out, keys, max_len - header::HEADER_LEN - 4);
        out[len_at..len_at + 2].copy_from_slice(&(used as u16).to_be_bytes());
        out.put_u16(0);
        n
    } else {
        out.put_u16(0); // no classic withdrawn routes
        let attrs_len_at = out.len();
        out.put_u16(0);
        let attr_start = out.len();
        write_mp_attr_header(out, attr_type::MP_UNREACH_NLRI);
        let value_start = out.len();
        out.put_u16(family.afi().code());
        out.put_u8(family.safi().code());
        let (n, _) = write_fitting(out, keys, max_len - header::HEADER_LEN - 4 - 4 - 3);
        patch_len(out, value_start - 2, out.len() - value_start);
        patch_len(out, attrs_len_at, out.len() - attr_start);
        n
    };
    header::finish(out, start);
    n
}

/// Writes a 2-octet length at `at`.
fn patch_len(out: &mut BytesMut, at: usize, len: usize) {
    out[at..at + 2].copy_from_slice(&(len as u16).to_be_bytes());
}

/// Encodes the attributes shared by every UPDATE of one (family, attributes) group, MP_REACH aside.
fn encode_common_attrs(ctx: &SessionCtx, family: Family, attrs: &RouteAttrs) -> BytesMut {
    let as_path = if ctx.ebgp {
        AsPath::sequence(vec![ctx.local_as])
    } else {
        AsPath::empty()
    };
    let a = Attributes {
        origin: Some(Origin::Igp),
        as_path: Some(as_path),
        next_hop: match (family, attrs.next_hop) {
            (Family::Ipv4Unicast, Some(IpAddr::V4(nh))) => Some(nh),
            _ => None,
        },
        med: attrs.med,
        local_pref: if ctx.ebgp {
            None
        } else {
            Some(attrs.local_pref.unwrap_or(100))
        },
        communities: attrs.communities.clone(),
        ext_communities: attrs.ext_communities.clone(),
        large_communities: attrs.large_communities.clone(),
        ..Attributes::default()
    };
    let mut out = BytesMut::new();
    a.encode_without_mp(&ctx.codec, &mut out);
    out
}

/// Writes one announcement UPDATE with as many of `keys` as fit; returns how many.
fn write_announce(
    out: &mut BytesMut,
    family: Family,
    attrs: &RouteAttrs,
    common: &[u8],
    keys: &[RouteKey],
    max_len: usize,
) -> usize {
    let start = header::begin(out, message_type::UPDATE);
    out.put_u16(0); // no classic withdrawn routes
    let attrs_len_at = out.len();
    out.put_u16(0);
    let n = if family == Family::Ipv4Unicast {
        out.extend_from_slice(common);
        patch_len(out, attrs_len_at, common.len());
        write_fitting(out, keys, max_len - header::HEADER_LEN - 4 - common.len()).0
    } else {
        let next_hop: &[u8] = &match (family, attrs.next_hop) {
            (Family::Ipv6Unicast, Some(IpAddr::V6(nh))) => nh.octets().to_vec(),
            _ => Vec::new(),
        };
        let attr_start = out.len();
        write_mp_attr_header(out, attr_type::MP_REACH_NLRI);
        let value_start = out.len();
        out.put_u16(family.afi().code());
        out.put_u8(family.safi().code());
        out.put_u8(next_hop.len() as u8);
        out.extend_from_slice(next_hop);
        out.put_u8(0); // reserved
        let budget =
            max_len - header::HEADER_LEN - 4 - mp_reach_overhead(next_hop.len()) - common.len();
        let (n, _) = write_fitting(out, keys, budget);
        patch_len(out, value_start - 2, out.len() - value_start);
        out.extend_from_slice(common);
        patch_len(out, attrs_len_at, out.len() - attr_start);
        n
    };
    header::finish(out, start);
    n
}

/// End-of-RIB (RFC 4724 §2): an empty UPDATE for IPv4 unicast, an MP_UNREACH_NLRI with no NLRI for
/// the others.
fn write_end_of_rib(out: &mut BytesMut, family: Family) {
    write_withdraw(out, family, &[], header::MAX_LEN);
}
