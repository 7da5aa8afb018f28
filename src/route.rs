//! Route targets: what a mitigation announces, as `deflect_bgp` types.
//!
//! The vocabulary every layer shares for "a FlowSpec rule or an RTBH prefix": the [`Kind`], the typed
//! [`Target`], the one parser from operator text ([`Target::parse`], used by the API's edge and the
//! tools), the one host-bits check ([`exact_prefix`]), and [`show_update`], the UPDATE a peer would
//! get for a route (what deflect prints when it has no peers).

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use bytes::BytesMut;
use deflect_bgp::codec::CodecCtx;
use deflect_bgp::community::{Community, LargeCommunity};
use deflect_bgp::flowspec::action::check_actions;
use deflect_bgp::flowspec::{Action, FlowRoute, Rule};
use deflect_bgp::iana::{Afi, Family};
use deflect_bgp::rib::{AdjRibOut, RouteAttrs, RouteKey, SessionCtx};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The kinds of mitigation: a FlowSpec rule, or an RTBH route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Flowspec,
    Rtbh,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kind::Flowspec => "flowspec",
            Kind::Rtbh => "rtbh",
        })
    }
}

/// What one mitigation announces.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A FlowSpec rule with at least one action.
    Flowspec(FlowRoute),
    /// An RTBH prefix without host bits.
    Rtbh(IpNet),
}

impl Target {
    /// Parses operator text: a FlowSpec rule (`MATCHES then ACTIONS`) or an RTBH prefix.
    pub fn parse(kind: Kind, text: &str) -> Result<Target, String> {
        match kind {
            Kind::Flowspec => Target::flowspec(
                text.parse::<FlowRoute>()
                    .map_err(|e| format!("rule: {e}"))?,
            ),
            Kind::Rtbh => Ok(Target::Rtbh(exact_prefix(text)?)),
        }
    }

    /// A FlowSpec target, refused without an action.
    pub fn flowspec(route: FlowRoute) -> Result<Target, String> {
        let t = Target::Flowspec(route);
        t.check()?;
        Ok(t)
    }

    /// What every target must be, however it was built: a rule with an action, a prefix without
    /// host bits. The mitigation set checks it on every order.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Target::Flowspec(r) if r.actions.is_empty() => {
                Err("rule: give an action after `then` (discard, rate-bytes N, ...)".into())
            }
            Target::Flowspec(r) => {
                check_actions(&r.actions).map_err(|(a, why)| format!("rule: {a} {why}"))
            }
            Target::Rtbh(p) => no_host_bits(p).map_err(|e| format!("prefix {e}")),
        }
    }

    /// The RTBH route for one address: its /32 or /128.
    pub fn host(addr: IpAddr) -> Target {
        Target::Rtbh(IpNet::from(addr))
    }

    pub fn kind(&self) -> Kind {
        match self {
            Target::Flowspec(_) => Kind::Flowspec,
            Target::Rtbh(_) => Kind::Rtbh,
        }
    }

    /// The identity on the wire: a rule's NLRI (its match, not its actions) or the prefix.
    pub fn key(&self) -> RouteKey {
        match self {
            Target::Flowspec(r) => RouteKey::FlowSpec(r.rule.clone()),
            Target::Rtbh(p) => RouteKey::Unicast(*p),
        }
    }

    pub fn family(&self) -> Family {
        match self {
            Target::Flowspec(r) => match r.rule.afi() {
                Afi::Ipv4 => Family::Ipv4FlowSpec,
                Afi::Ipv6 => Family::Ipv6FlowSpec,
            },
            Target::Rtbh(p) if p.addr().is_ipv4() => Family::Ipv4Unicast,
            Target::Rtbh(_) => Family::Ipv6Unicast,
        }
    }

    /// The destination it covers.
    pub fn destination(&self) -> Option<IpNet> {
        match self {
            Target::Flowspec(r) => r.rule.destination(),
            Target::Rtbh(p) => Some(*p),
        }
    }

    /// The FlowSpec rule's match, if it is one.
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            Target::Flowspec(r) => Some(&r.rule),
            Target::Rtbh(_) => None,
        }
    }

    /// The FlowSpec actions, if it is a rule.
    pub fn actions(&self) -> &[Action] {
        match self {
            Target::Flowspec(r) => &r.actions,
            Target::Rtbh(_) => &[],
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Flowspec(r) => r.fmt(f),
            Target::Rtbh(p) => p.fmt(f),
        }
    }
}

/// The one host-bits check: a prefix with bits set past its length is refused, with the prefix
/// that was probably meant.
pub fn no_host_bits(net: &IpNet) -> Result<(), String> {
    if net.trunc() == *net {
        return Ok(());
    }
    Err(format!(
        "{net} has host bits set; did you mean {}?",
        net.trunc()
    ))
}

/// Parses `ADDRESS/LENGTH`, refusing host bits.
pub fn exact_prefix(text: &str) -> Result<IpNet, String> {
    let net: IpNet = text
        .trim()
        .parse()
        .map_err(|_| format!("prefix {text:?} is not ADDRESS/LENGTH"))?;
    no_host_bits(&net).map_err(|e| format!("prefix {e}"))?;
    Ok(net)
}

/// Parses a FlowSpec route in deflect's syntax into what the speaker announces.
pub fn parse_flow(s: &str) -> Result<(RouteKey, RouteAttrs), String> {
    let route: FlowRoute = s
        .parse()
        .map_err(|e: deflect_bgp::flowspec::text::ParseError| e.to_string())?;
    let attrs = RouteAttrs {
        ext_communities: route.ext_communities(),
        ..RouteAttrs::default()
    };
    Ok((RouteKey::FlowSpec(route.rule), attrs))
}

/// Parses `PREFIX next-hop ADDR [community C]... [large-community G:L1:L2]...`; BLACKHOLE when no
/// community is given.
pub fn parse_rtbh(s: &str) -> Result<(RouteKey, RouteAttrs), String> {
    let mut words = s.split_whitespace();
    let prefix = exact_prefix(words.next().ok_or("expected a prefix")?)?;
    let mut attrs = RouteAttrs::default();
    while let Some(w) = words.next() {
        let v = words.next().ok_or_else(|| format!("{w} needs a value"))?;
        match w {
            "next-hop" => {
                attrs.next_hop = Some(v.parse().map_err(|e| format!("next-hop {v}: {e}"))?)
            }
            "community" => attrs
                .communities
                .push(v.parse::<Community>().map_err(|e| e.to_string())?),
            "large-community" => attrs
                .large_communities
                .push(v.parse::<LargeCommunity>().map_err(|e| e.to_string())?),
            _ => {
                return Err(format!(
                    "unknown word {w:?}: expected next-hop, community or large-community"
                ));
            }
        }
    }
    if attrs.communities.is_empty() {
        attrs.communities.push(Community::BLACKHOLE);
    }
    let key = RouteKey::Unicast(prefix);
    AdjRibOut::check(&key, &attrs).map_err(|e| e.to_string())?;
    Ok((key, attrs))
}

/// The UPDATE messages an eBGP peer with every family would get for one route, in hex: what
/// deflect shows when it has no peers to send to.
pub fn show_update(local_as: u32, key: &RouteKey, attrs: &RouteAttrs) -> Vec<String> {
    let mut rib = AdjRibOut::new();
    if rib.set(key.clone(), Arc::new(attrs.clone())).is_err() {
        return Vec::new();
    }
    rib.session_up(SessionCtx {
        local_as,
        ebgp: true,
        codec: CodecCtx {
            four_octet_as: true,
            extended_message: false,
        },
        families: [key.family()].into_iter().collect::<BTreeSet<Family>>(),
        max_flowspec_nlri_len: 239,
    });
    let mut out = BytesMut::new();
    rib.drain(&mut out, 1);
    vec![hex::encode(&out)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtbh_routes_default_to_blackhole_and_check_their_next_hop() {
        let (k, a) = parse_rtbh("192.0.2.9/32 next-hop 192.0.2.66").unwrap();
        assert_eq!(k, RouteKey::Unicast("192.0.2.9/32".parse().unwrap()));
        assert_eq!(a.communities, vec![Community::BLACKHOLE]);
        let (_, a) = parse_rtbh(
            "2001:db8::9/128 next-hop 2001:db8::66 community 65000:666 large-community 65000:1:2",
        )
        .unwrap();
        assert_eq!(a.communities, vec![Community::new(65000, 666)]);
        assert_eq!(a.large_communities.len(), 1);
        assert!(parse_rtbh("192.0.2.9/32").unwrap_err().contains("next hop"));
        assert!(
            parse_rtbh("192.0.2.9/24 next-hop 192.0.2.66")
                .unwrap_err()
                .contains("host bits")
        );
        assert!(parse_rtbh("192.0.2.9/32 next-hop 2001:db8::1").is_err());
    }

    #[test]
    fn the_update_shown_without_peers_is_the_one_a_peer_would_get() {
        let (k, a) = parse_flow("dst 192.0.2.7/32 proto udp sport 123 then discard").unwrap();
        let hex = show_update(65000, &k, &a);
        assert_eq!(hex.len(), 1);
        assert!(hex[0].starts_with("ffffffffffffffffffffffffffffffff"));
        assert!(hex[0].contains("0120c0000207"), "{}", hex[0]); // dst 192.0.2.7/32
    }

    #[test]
    fn targets_parse_with_one_host_bits_check_and_keep_their_identity() {
        let t = Target::parse(Kind::Rtbh, "203.0.113.7/32").unwrap();
        assert_eq!(t, Target::host("203.0.113.7".parse().unwrap()));
        assert_eq!(t.family(), Family::Ipv4Unicast);
        assert!(
            Target::parse(Kind::Rtbh, "203.0.113.7/24")
                .unwrap_err()
                .contains("did you mean 203.0.113.0/24")
        );
        assert!(Target::parse(Kind::Rtbh, "nonsense").is_err());
        let f = Target::parse(
            Kind::Flowspec,
            "dst 2001:db8::7/128 next-header 17 then discard",
        )
        .unwrap();
        assert_eq!(f.family(), Family::Ipv6FlowSpec);
        assert_eq!(f.destination(), Some("2001:db8::7/128".parse().unwrap()));
        let other_action = Target::parse(
            Kind::Flowspec,
            "dst 2001:db8::7/128 next-header 17 then rate-bytes 1",
        )
        .unwrap();
        assert_eq!(f.key(), other_action.key(), "identity is the match");
        assert!(
            Target::parse(Kind::Flowspec, "dst 192.0.2.1/32")
                .unwrap_err()
                .contains("give an action")
        );
        // Two traffic rates on one route conflict (RFC 8955 §7): not announced.
        let e = Target::parse(
            Kind::Flowspec,
            "dst 192.0.2.1/32 then discard rate-bytes 100",
        )
        .unwrap_err();
        assert!(e.contains("conflicts with discard"), "{e}");
        // Built by hand, not parsed: the same checks.
        let net: IpNet = "203.0.113.7/24".parse().unwrap();
        assert!(Target::Rtbh(net).check().unwrap_err().contains("host bits"));
        assert!(Target::Rtbh(net.trunc()).check().is_ok());
    }
}
