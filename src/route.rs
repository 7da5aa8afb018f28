//! Route targets: what a mitigation announces, as `deflect_bgp` types.
//!
//! The vocabulary every layer shares for "a FlowSpec rule, an RTBH prefix, a source to blackhole
//! (S/RTBH, RFC 5635) or a covering prefix diverted to a scrubbing service": the [`Kind`], the typed
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

/// The kinds of mitigation: a FlowSpec rule, an RTBH route for a destination, an RTBH route for a
/// source (S/RTBH), or a diversion of a covering prefix to a scrubbing service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Flowspec,
    Rtbh,
    /// Source-based RTBH (RFC 5635): the source's /32 or /128 to the discard next hop; routers
    /// with unicast RPF in loose mode then drop everything *from* it.
    SourceRtbh,
    /// A covering unicast prefix with its own next hop and communities: the traffic to it goes to
    /// a scrubbing service.
    Divert,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Flowspec, Kind::Rtbh, Kind::SourceRtbh, Kind::Divert];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Flowspec => "flowspec",
            Kind::Rtbh => "rtbh",
            Kind::SourceRtbh => "source-rtbh",
            Kind::Divert => "divert",
        }
    }

    /// Whether its routes are unicast (IPv4/IPv6 unicast families) rather than FlowSpec.
    pub fn unicast(self) -> bool {
        self != Kind::Flowspec
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`: tables align the kind with a width.
        f.pad(self.name())
    }
}

/// A diversion: a covering prefix announced with the scrubbing service's next hop and the
/// communities that steer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Divert {
    /// Without host bits.
    pub prefix: IpNet,
    /// Of the prefix's family.
    pub next_hop: IpAddr,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
}

impl Divert {
    /// The attributes every peer gets: the diversion's own, not the peer's.
    pub fn attrs(&self) -> RouteAttrs {
        RouteAttrs {
            next_hop: Some(self.next_hop),
            communities: self.communities.clone(),
            large_communities: self.large_communities.clone(),
            ..RouteAttrs::default()
        }
    }

    /// Checks what a diversion must be however it was built: no host bits, a next hop of the
    /// prefix's family that can be a next hop.
    pub fn check(&self) -> Result<(), String> {
        no_host_bits(&self.prefix).map_err(|e| format!("prefix {e}"))?;
        let nh = self.next_hop;
        if nh.is_ipv4() != self.prefix.addr().is_ipv4() {
            return Err(format!("next-hop {nh} is not of {}'s family", self.prefix));
        }
        if nh.is_unspecified() || nh.is_multicast() || nh.is_loopback() {
            return Err(format!("next-hop {nh} cannot be a next hop"));
        }
        Ok(())
    }
}

impl fmt::Display for Divert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} next-hop {}", self.prefix, self.next_hop)?;
        for c in &self.communities {
            write!(f, " community {c}")?;
        }
        for c in &self.large_communities {
            write!(f, " large-community {c}")?;
        }
        Ok(())
    }
}

/// What one mitigation announces.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// A FlowSpec rule with at least one action.
    Flowspec(FlowRoute),
    /// An RTBH prefix without host bits.
    Rtbh(IpNet),
    /// A source to blackhole (S/RTBH): a /32 or /128.
    SourceRtbh(IpNet),
    /// A covering prefix diverted to a scrubbing service.
    Divert(Divert),
}

impl Target {
    /// Parses operator text: a FlowSpec rule (`MATCHES then ACTIONS`), an RTBH prefix, a source
    /// prefix (S/RTBH), or a diversion (`PREFIX next-hop ADDR [community C]...
    /// [large-community G:L1:L2]...`, as [`Divert`] prints it).
    pub fn parse(kind: Kind, text: &str) -> Result<Target, String> {
        match kind {
            Kind::Flowspec => Target::flowspec(
                text.parse::<FlowRoute>()
                    .map_err(|e| format!("rule: {e}"))?,
            ),
            Kind::Rtbh => Ok(Target::Rtbh(exact_prefix(text)?)),
            Kind::SourceRtbh => Ok(Target::SourceRtbh(exact_prefix(text)?)),
            Kind::Divert => {
                let (key, attrs) = parse_unicast(text)?;
                let RouteKey::Unicast(prefix) = key else {
                    return Err("a diversion is a unicast prefix".into());
                };
                let d = Divert {
                    prefix,
                    next_hop: attrs
                        .next_hop
                        .ok_or("a diversion needs `next-hop ADDR` (the scrubbing service's)")?,
                    communities: attrs.communities,
                    large_communities: attrs.large_communities,
                };
                d.check()?;
                Ok(Target::Divert(d))
            }
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
            Target::Rtbh(p) | Target::SourceRtbh(p) => {
                no_host_bits(p).map_err(|e| format!("prefix {e}"))
            }
            Target::Divert(d) => d.check(),
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
            Target::SourceRtbh(_) => Kind::SourceRtbh,
            Target::Divert(_) => Kind::Divert,
        }
    }

    /// The unicast prefix it announces, if it is not a FlowSpec rule.
    pub fn prefix(&self) -> Option<IpNet> {
        match self {
            Target::Flowspec(_) => None,
            Target::Rtbh(p) | Target::SourceRtbh(p) => Some(*p),
            Target::Divert(d) => Some(d.prefix),
        }
    }

    /// The identity on the wire: a rule's NLRI (its match, not its actions) or the prefix.
    pub fn key(&self) -> RouteKey {
        match self {
            Target::Flowspec(r) => RouteKey::FlowSpec(r.rule.clone()),
            Target::Rtbh(p) | Target::SourceRtbh(p) => RouteKey::Unicast(*p),
            Target::Divert(d) => RouteKey::Unicast(d.prefix),
        }
    }

    pub fn family(&self) -> Family {
        match self {
            Target::Flowspec(r) => match r.rule.afi() {
                Afi::Ipv4 => Family::Ipv4FlowSpec,
                Afi::Ipv6 => Family::Ipv6FlowSpec,
            },
            other => match other.prefix() {
                Some(p) if p.addr().is_ipv4() => Family::Ipv4Unicast,
                _ => Family::Ipv6Unicast,
            },
        }
    }

    /// The destination it covers (an S/RTBH route covers a source, not a destination).
    pub fn destination(&self) -> Option<IpNet> {
        match self {
            Target::Flowspec(r) => r.rule.destination(),
            Target::Rtbh(p) => Some(*p),
            Target::SourceRtbh(_) => None,
            Target::Divert(d) => Some(d.prefix),
        }
    }

    /// The source it matches: a FlowSpec rule's source prefix, or the S/RTBH prefix.
    pub fn source(&self) -> Option<IpNet> {
        match self {
            Target::Flowspec(r) => r.rule.source(),
            Target::SourceRtbh(p) => Some(*p),
            Target::Rtbh(_) | Target::Divert(_) => None,
        }
    }

    /// The FlowSpec rule's match, if it is one.
    pub fn rule(&self) -> Option<&Rule> {
        match self {
            Target::Flowspec(r) => Some(&r.rule),
            _ => None,
        }
    }

    /// The FlowSpec actions, if it is a rule.
    pub fn actions(&self) -> &[Action] {
        match self {
            Target::Flowspec(r) => &r.actions,
            _ => &[],
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::Flowspec(r) => r.fmt(f),
            Target::Rtbh(p) | Target::SourceRtbh(p) => p.fmt(f),
            Target::Divert(d) => d.fmt(f),
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
    let (key, mut attrs) = parse_unicast(s)?;
    if attrs.communities.is_empty() {
        attrs.communities.push(Community::BLACKHOLE);
    }
    AdjRibOut::check(&key, &attrs).map_err(|e| e.to_string())?;
    Ok((key, attrs))
}

/// Parses `PREFIX [next-hop ADDR] [community C]... [large-community G:L1:L2]...` as it is.
fn parse_unicast(s: &str) -> Result<(RouteKey, RouteAttrs), String> {
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
    Ok((RouteKey::Unicast(prefix), attrs))
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

    #[test]
    fn sources_and_diversions_parse_print_and_read_back_the_same() {
        let s = Target::parse(Kind::SourceRtbh, "198.51.100.9/32").unwrap();
        assert_eq!(
            (s.kind(), s.family()),
            (Kind::SourceRtbh, Family::Ipv4Unicast)
        );
        assert_eq!(s.destination(), None);
        assert_eq!(s.source(), Some("198.51.100.9/32".parse().unwrap()));
        assert_eq!(
            s.key(),
            RouteKey::Unicast("198.51.100.9/32".parse().unwrap())
        );
        let text = "2001:db8:100::/48 next-hop 2001:db8:ff::10 community 65000:800 community no-export large-community 65000:1:2";
        let d = Target::parse(Kind::Divert, text).unwrap();
        assert_eq!(d.to_string(), text);
        assert_eq!(Target::parse(Kind::Divert, &d.to_string()).unwrap(), d);
        assert_eq!(d.family(), Family::Ipv6Unicast);
        let Target::Divert(route) = &d else { panic!() };
        let attrs = route.attrs();
        assert_eq!(attrs.next_hop, Some("2001:db8:ff::10".parse().unwrap()));
        assert_eq!(
            attrs.communities,
            vec![Community::new(65000, 800), Community::NO_EXPORT]
        );
        // No BLACKHOLE is added to a diversion: it carries what it was given.
        let bare = Target::parse(Kind::Divert, "203.0.113.0/24 next-hop 192.0.2.10").unwrap();
        let Target::Divert(bare) = bare else { panic!() };
        assert!(bare.communities.is_empty());
        for (text, want) in [
            ("203.0.113.0/24", "needs `next-hop ADDR`"),
            ("203.0.113.1/24 next-hop 192.0.2.10", "host bits"),
            (
                "203.0.113.0/24 next-hop 2001:db8::1",
                "not of 203.0.113.0/24's family",
            ),
            ("203.0.113.0/24 next-hop 0.0.0.0", "cannot be a next hop"),
            (
                "203.0.113.0/24 next-hop 192.0.2.10 community",
                "needs a value",
            ),
            (
                "203.0.113.0/24 next-hop 192.0.2.10 colour red",
                "unknown word",
            ),
        ] {
            let e = Target::parse(Kind::Divert, text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        assert!(Target::parse(Kind::SourceRtbh, "198.51.100.9/24").is_err());
    }
}
