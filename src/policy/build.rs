//! What a policy step builds from an attack, pure: the FlowSpec rule (the destination and the
//! parts of the signature the step names), one rule per heavy source for a `src` step, the heavy
//! sources an S/RTBH step blackholes, and the covering prefix a diversion announces.

use std::collections::BTreeSet;
use std::net::IpAddr;

use deflect_bgp::flowspec::{
    Action, BitmaskOp, Component, FlowRoute, NumericOp, Prefix, Rule, RuleError, fragment,
};
use deflect_bgp::iana::Afi;
use ipnet::IpNet;

use super::{DivertStep, MAX_SOURCES_PER_STEP, Part, SourceSelect};
use crate::detect::Signature;
use crate::route::Divert;

fn host(addr: IpAddr) -> Prefix {
    Prefix::from(IpNet::from(addr))
}

fn ports(list: &[u16]) -> Vec<NumericOp> {
    list.iter().map(|p| NumericOp::eq(u64::from(*p))).collect()
}

/// The FlowSpec rule a step announces for an attack on `target` with `sig`: the destination always,
/// and the parts of the signature the step names (`sources`: the heaviest source, in this one rule).
pub fn flowspec_route(
    target: IpAddr,
    sig: &Signature,
    parts: &BTreeSet<Part>,
    actions: &[Action],
) -> Result<FlowRoute, RuleError> {
    flowspec_route_to(IpNet::from(target), sig, parts, actions)
}

/// [`flowspec_route`] to any destination prefix: a prefix attack's (carpet bombing).
pub fn flowspec_route_to(
    dst: IpNet,
    sig: &Signature,
    parts: &BTreeSet<Part>,
    actions: &[Action],
) -> Result<FlowRoute, RuleError> {
    // FlowSpec takes one source prefix: the first, the heaviest (of the destination's family).
    let src = sig
        .sources
        .first()
        .copied()
        .filter(|s| parts.contains(&Part::Sources) && s.is_ipv6() == dst.addr().is_ipv6());
    route_from(dst, sig, parts, actions, src)
}

/// The rules of a `src` step: one per heavy source ([`heavy_sources`]), each with the destination,
/// `src S/32` (or `/128`) and the parts of the signature the step names. None when no source
/// carries the step's share: a spoofed flood from everywhere has no source worth a rule.
pub fn source_routes(
    dst: IpNet,
    sig: &Signature,
    parts: &BTreeSet<Part>,
    actions: &[Action],
    select: &SourceSelect,
) -> Result<Vec<FlowRoute>, RuleError> {
    heavy_sources(dst, sig, select)
        .into_iter()
        .map(|s| route_from(dst, sig, parts, actions, Some(s)))
        .collect()
}

/// The attack's heavy sources as a step selects them: of the destination's family, not inside
/// the destination (the attacked address or prefix), carrying at least `min_share_bp` of the
/// traffic to it, the heaviest first, at most `max`. A source whose share was never measured (an
/// attack recorded before shares were) is not heavy.
pub fn heavy_sources(dst: IpNet, sig: &Signature, select: &SourceSelect) -> Vec<IpAddr> {
    let v6 = dst.addr().is_ipv6();
    let mut v: Vec<(IpAddr, u16)> = sig
        .sources
        .iter()
        .enumerate()
        .map(|(i, s)| (*s, sig.share_bp(i)))
        .filter(|(s, bp)| s.is_ipv6() == v6 && !dst.contains(s) && *bp >= select.min_share_bp)
        .collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v.truncate(select.max.min(MAX_SOURCES_PER_STEP));
    v.into_iter().map(|(s, _)| s).collect()
}

/// The diversion a `divert` step announces for an attack on `dst`: the covering prefix of the
/// step's length for the family (or the attacked prefix itself when it is wider), with the
/// step's next hop and communities.
pub fn divert_target(dst: IpNet, step: &DivertStep) -> Result<Divert, String> {
    let target = dst.addr();
    let (len, next_hop) = if target.is_ipv4() {
        (step.prefix_length_v4, step.next_hop_ipv4)
    } else {
        (step.prefix_length_v6, step.next_hop_ipv6)
    };
    let v = if target.is_ipv4() { 4 } else { 6 };
    let next_hop =
        next_hop.ok_or_else(|| format!("divert: the step has no next_hop_ipv{v} for {dst}"))?;
    let prefix = IpNet::new(target, len.min(dst.prefix_len()))
        .map_err(|_| format!("divert: /{len} is no IPv{v} prefix length"))?
        .trunc();
    let d = Divert {
        prefix,
        next_hop,
        communities: step.communities.clone(),
        large_communities: step.large_communities.clone(),
    };
    d.check().map_err(|e| format!("divert: {e}"))?;
    Ok(d)
}

/// The rule to `dst` for `sig` with the step's parts, from `src` if one is given.
fn route_from(
    dst: IpNet,
    sig: &Signature,
    parts: &BTreeSet<Part>,
    actions: &[Action],
    src: Option<IpAddr>,
) -> Result<FlowRoute, RuleError> {
    let v6 = dst.addr().is_ipv6();
    let mut c = vec![Component::DestinationPrefix(Prefix::from(dst.trunc()))];
    if let Some(s) = src.filter(|s| s.is_ipv6() == v6) {
        c.push(Component::SourcePrefix(host(s)));
    }
    // Ports and flags: only on whole TCP or UDP packets (fragments carry no ports).
    let mut transport = Vec::new();
    if matches!(sig.proto, Some(6 | 17)) && !sig.fragment {
        if parts.contains(&Part::Sport) && !sig.sports.is_empty() {
            transport.push(Component::SourcePort(ports(&sig.sports)));
        }
        if parts.contains(&Part::Dport) && !sig.dports.is_empty() {
            transport.push(Component::DestinationPort(ports(&sig.dports)));
        }
        if let (true, Some((set, clear)), Some(6)) =
            (parts.contains(&Part::TcpFlags), sig.tcp_flags, sig.proto)
        {
            let mut ops = Vec::new();
            if set != 0 {
                ops.push(BitmaskOp {
                    and: false,
                    not: false,
                    matched: true,
                    value: u64::from(set),
                });
            }
            if clear != 0 {
                ops.push(BitmaskOp {
                    and: !ops.is_empty(),
                    not: true,
                    matched: false,
                    value: u64::from(clear),
                });
            }
            if !ops.is_empty() {
                transport.push(Component::TcpFlags(ops));
            }
        }
    }
    if let Some(p) = sig.proto {
        // The protocol comes with ports and flags, which mean nothing without it.
        if parts.contains(&Part::Proto) || !transport.is_empty() {
            c.push(Component::Protocol(vec![NumericOp::eq(u64::from(p))]));
        }
    }
    c.extend(transport);
    if sig.fragment && parts.contains(&Part::Fragment) {
        c.push(Component::Fragment(vec![BitmaskOp {
            and: false,
            not: false,
            matched: true,
            value: fragment::IS_FRAGMENT,
        }]));
    }
    let afi = if v6 { Afi::Ipv6 } else { Afi::Ipv4 };
    Ok(FlowRoute {
        rule: Rule::new(afi, c)?,
        actions: actions.to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use deflect_bgp::flowspec::text::parse_actions;

    use super::*;
    use crate::detect::classify::tcp;

    #[test]
    fn rules_from_signatures() {
        let all: BTreeSet<Part> = [
            Part::Proto,
            Part::Sport,
            Part::Dport,
            Part::TcpFlags,
            Part::Fragment,
        ]
        .into_iter()
        .collect();
        let discard = parse_actions("discard").unwrap();
        let amp = Signature {
            proto: Some(17),
            sports: vec![123],
            service: Some("ntp".into()),
            ..Signature::default()
        };
        let t: IpAddr = "203.0.113.7".parse().unwrap();
        let typed = |tgt, sig: &Signature, actions: &str| {
            flowspec_route(tgt, sig, &all, &parse_actions(actions).unwrap()).unwrap()
        };
        let text = |s: &str| FlowRoute::from_str(s).unwrap();
        assert_eq!(
            typed(t, &amp, "discard"),
            text("dst 203.0.113.7/32 proto 17 sport 123 then discard")
        );
        assert_eq!(
            typed(t, &amp, "discard").to_string(),
            "dst 203.0.113.7/32 proto udp sport 123 then discard"
        );
        let syn = Signature {
            proto: Some(6),
            dports: vec![80, 443],
            tcp_flags: Some((tcp::SYN, tcp::ACK)),
            ..Signature::default()
        };
        assert_eq!(
            typed(t, &syn, "rate-bytes 125000"),
            text(
                "dst 203.0.113.7/32 proto 6 dport 80,443 tcp-flags syn&!~ack then rate-bytes 125000"
            )
        );
        let frag = Signature {
            proto: Some(17),
            fragment: true,
            ..Signature::default()
        };
        assert_eq!(
            typed(t, &frag, "discard"),
            text("dst 203.0.113.7/32 proto 17 fragment is-frag then discard")
        );
        let v6: IpAddr = "2001:db8::7".parse().unwrap();
        let icmp = Signature {
            proto: Some(58),
            ..Signature::default()
        };
        assert_eq!(
            typed(v6, &icmp, "discard"),
            text("dst 2001:db8::7/128 next-header 58 then discard")
        );
        // Sources of the other family are left out; the heaviest one of the same is matched.
        let from = Signature {
            proto: Some(17),
            sources: vec!["2001:db8::1".parse().unwrap(), "192.0.2.1".parse().unwrap()],
            ..Signature::default()
        };
        let with_sources: BTreeSet<Part> = [Part::Sources].into_iter().collect();
        assert_eq!(
            flowspec_route(t, &from, &with_sources, &discard).unwrap(),
            text("dst 203.0.113.7/32 then discard")
        );
        assert_eq!(
            flowspec_route(v6, &from, &with_sources, &discard).unwrap(),
            text("dst 2001:db8::7/128 src 2001:db8::1/128 then discard")
        );
    }

    fn flag_names(bits: u8) -> String {
        const NAMES: [&str; 8] = ["fin", "syn", "rst", "psh", "ack", "urg", "ece", "cwr"];
        (0..8)
            .filter(|i| bits & (1 << i) != 0)
            .map(|i| NAMES[i])
            .collect::<Vec<_>>()
            .join("+")
    }

    fn list(ports: &[u16]) -> String {
        ports
            .iter()
            .map(|p| p.to_string())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The rule text policies used to build (and the set parsed back) before rules were built as
    /// `deflect_bgp` types: the oracle the typed builder must agree with.
    fn legacy_text(
        target: IpAddr,
        sig: &Signature,
        parts: &BTreeSet<Part>,
        action: &str,
    ) -> String {
        let mut r = match target {
            IpAddr::V4(a) => format!("dst {a}/32"),
            IpAddr::V6(a) => format!("dst {a}/128"),
        };
        let v6 = target.is_ipv6();
        let transport = matches!(sig.proto, Some(6 | 17));
        if parts.contains(&Part::Sources) && !sig.sources.is_empty() {
            // FlowSpec takes one source prefix: the first, the heaviest.
            let s = sig.sources[0];
            if s.is_ipv6() == v6 {
                r += &match s {
                    IpAddr::V4(a) => format!(" src {a}/32"),
                    IpAddr::V6(a) => format!(" src {a}/128"),
                };
            }
        }
        // Ports and flags: only on whole TCP or UDP packets (fragments carry no ports).
        let mut extra = String::new();
        if transport && !sig.fragment {
            if parts.contains(&Part::Sport) && !sig.sports.is_empty() {
                extra += &format!(" sport {}", list(&sig.sports));
            }
            if parts.contains(&Part::Dport) && !sig.dports.is_empty() {
                extra += &format!(" dport {}", list(&sig.dports));
            }
            if let (true, Some((set, clear)), Some(6)) =
                (parts.contains(&Part::TcpFlags), sig.tcp_flags, sig.proto)
            {
                let mut f = Vec::new();
                if set != 0 {
                    f.push(flag_names(set));
                }
                if clear != 0 {
                    f.push(format!("!~{}", flag_names(clear)));
                }
                if !f.is_empty() {
                    extra += &format!(" tcp-flags {}", f.join("&"));
                }
            }
        }
        if let Some(p) = sig.proto {
            // The protocol comes with ports and flags, which mean nothing without it.
            if parts.contains(&Part::Proto) || !extra.is_empty() {
                r += &format!(" {} {p}", if v6 { "next-header" } else { "proto" });
            }
        }
        r += &extra;
        if sig.fragment && parts.contains(&Part::Fragment) {
            r += " fragment is-frag";
        }
        r + " then " + action
    }

    fn signature() -> impl proptest::strategy::Strategy<Value = (bool, Signature, BTreeSet<Part>)> {
        use proptest::prelude::*;
        let part = prop_oneof![
            Just(Part::Proto),
            Just(Part::Sport),
            Just(Part::Dport),
            Just(Part::TcpFlags),
            Just(Part::Fragment),
            Just(Part::Sources),
        ];
        (
            any::<bool>(),
            proptest::option::of(prop_oneof![
                Just(6u8),
                Just(17u8),
                Just(1u8),
                Just(58u8),
                any::<u8>()
            ]),
            proptest::collection::vec(any::<u16>(), 0..4),
            proptest::collection::vec(any::<u16>(), 0..4),
            proptest::option::of((any::<u8>(), any::<u8>())),
            any::<bool>(),
            proptest::collection::vec(any::<[u8; 4]>(), 0..3),
            proptest::collection::btree_set(part, 0..6),
        )
            .prop_map(
                |(v6, proto, sports, dports, flags, fragment, sources, parts)| {
                    let sig = Signature {
                        proto,
                        sports,
                        dports,
                        // Set and clear bits never overlap in a signature.
                        tcp_flags: flags.map(|(set, clear)| (set, clear & !set)),
                        fragment,
                        sources: sources.into_iter().map(IpAddr::from).collect(),
                        ..Signature::default()
                    };
                    (v6, sig, parts)
                },
            )
    }

    proptest::proptest! {
        /// The typed rule is the one the old rule text denoted, for any signature and parts.
        #[test]
        fn typed_rules_match_what_the_rule_text_said((v6, sig, parts) in signature()) {
            let target: IpAddr = if v6 {
                "2001:db8::7".parse().unwrap()
            } else {
                "203.0.113.7".parse().unwrap()
            };
            let discard = parse_actions("discard").unwrap();
            let typed = flowspec_route(target, &sig, &parts, &discard);
            let text = FlowRoute::from_str(&legacy_text(target, &sig, &parts, "discard"));
            match (typed, text) {
                (Ok(a), Ok(b)) => proptest::prop_assert_eq!(a, b),
                (Err(_), Err(_)) => {}
                (a, b) => proptest::prop_assert!(false, "typed {a:?} but text {b:?}"),
            }
        }
    }
}
