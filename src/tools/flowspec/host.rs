//! What the host-local firewalls, nftables and iptables, share: alternatives of conjunctions (one
//! rule each), the IP protocols a rule must restrict to, what the actions ask of a host filter, and
//! IPv6 fragment-header tests.

use deflect_bgp::flowspec::{Action, Component, FlowRoute};
use deflect_bgp::iana::Afi;

use super::Gaps;
use super::terms::{Ranges, has, intersect, ranges_of};

/// A conjunction of match expressions; several of them are alternatives (separate rules).
pub(super) type Conj = Vec<String>;

pub(super) fn product(a: &[Conj], b: &[Conj]) -> Vec<Conj> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let mut c = x.clone();
            for e in y {
                if !c.contains(e) {
                    c.push(e.clone());
                }
            }
            out.push(c);
        }
    }
    out
}

/// Most rules one deflect rule may become.
pub(super) const MAX_RULES: usize = 32;

/// What the actions ask of a host-local filter.
#[derive(Debug, Default)]
pub(super) struct HostActions {
    pub(super) discard: bool,
    pub(super) rate_bytes: Option<f32>,
    pub(super) rate_packets: Option<f32>,
    pub(super) mark: Option<u8>,
    pub(super) sample: bool,
    pub(super) notes: Vec<String>,
}

pub(super) fn host_actions(route: &FlowRoute, gaps: &mut Gaps) -> HostActions {
    let mut h = HostActions::default();
    for a in &route.actions {
        match *a {
            Action::TrafficRateBytes { rate: 0.0, .. } => h.discard = true,
            Action::TrafficRateBytes { rate, .. } => h.rate_bytes = Some(rate),
            Action::TrafficRatePackets { rate: 0.0, .. } => h.discard = true,
            Action::TrafficRatePackets { rate, .. } => h.rate_packets = Some(rate),
            Action::TrafficAction { sample, .. } => {
                h.sample |= sample;
                h.notes.push(format!(
                    "# {a}: the terminal bit orders FlowSpec rules on a router; a host filter evaluates its own rule order"
                ));
            }
            Action::RedirectAs2 { .. }
            | Action::RedirectIpv4 { .. }
            | Action::RedirectAs4 { .. } => {
                gaps.add(format!(
                    "{a} (a redirect to a VRF is a router's forwarding decision)"
                ));
            }
            Action::TrafficMarking { dscp } => h.mark = Some(dscp),
        }
    }
    if h.discard {
        h.rate_bytes = None;
        h.rate_packets = None;
    }
    if h.rate_bytes.is_some() && h.rate_packets.is_some() {
        gaps.add("rate-bytes and rate-packets together (one rule drops over one rate)");
    }
    h
}

/// The IP protocols a host-local rule must restrict to: the protocol component, narrowed by what
/// ports (TCP, UDP, SCTP), TCP flags (TCP) and ICMP fields (ICMP or ICMPv6) need. `None` when
/// nothing restricts the protocol.
pub(super) fn protocol_ranges(route: &FlowRoute) -> Result<Option<Ranges>, String> {
    let comps = &route.rule.components();
    let afi = route.rule.afi();
    let mut set: Option<Ranges> = comps.iter().find_map(|c| match c {
        Component::Protocol(ops) => Some(ranges_of(ops, 0xff)),
        _ => None,
    });
    let mut narrow = |allowed: Ranges| {
        set = Some(intersect(set.as_deref().unwrap_or(&[(0, 0xff)]), &allowed));
    };
    if has(comps, |c| {
        matches!(
            c,
            Component::Port(_) | Component::DestinationPort(_) | Component::SourcePort(_)
        )
    }) {
        narrow(vec![(6, 6), (17, 17), (132, 132)]);
    }
    if has(comps, |c| matches!(c, Component::TcpFlags(_))) {
        narrow(vec![(6, 6)]);
    }
    if has(comps, |c| {
        matches!(c, Component::IcmpType(_) | Component::IcmpCode(_))
    }) {
        let icmp = if afi == Afi::Ipv4 { 1 } else { 58 };
        narrow(vec![(icmp, icmp)]);
    }
    match set {
        Some(s) if s.is_empty() => Err(
            "the rule never matches: its ports, TCP flags and ICMP fields need different protocols"
                .into(),
        ),
        s => Ok(s),
    }
}

/// Alternatives for the fragment-header states `(mf, offset_zero)` present: a test of MF and of
/// the offset each, merged where both values of one of them are present.
pub(super) fn frag6_header_alts(
    headers: &[(bool, bool)],
    mf_test: impl Fn(bool) -> String,
    offset_test: impl Fn(bool) -> String,
    exists: &str,
) -> Vec<Conj> {
    if headers.len() == 4 {
        return vec![vec![exists.to_string()]];
    }
    let mut alts = Vec::new();
    let mut done: Vec<(bool, bool)> = Vec::new();
    for &(mf, zero) in headers {
        if done.contains(&(mf, zero)) {
            continue;
        }
        if headers.contains(&(!mf, zero)) {
            alts.push(vec![offset_test(zero)]);
            done.extend([(mf, zero), (!mf, zero)]);
        } else if headers.contains(&(mf, !zero)) {
            alts.push(vec![mf_test(mf)]);
            done.extend([(mf, zero), (mf, !zero)]);
        } else {
            alts.push(vec![offset_test(zero), mf_test(mf)]);
            done.push((mf, zero));
        }
    }
    alts
}
