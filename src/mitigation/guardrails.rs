//! The guardrails: what any mitigation, from any source, must respect. Pure checks over a
//! [`Target`] and a lifetime; the set applies them to every order.
//!
//! By kind: a FlowSpec rule, an RTBH route and a diversion cover a destination inside a protected
//! group (a diversion's covering prefix whole: only your own space is diverted), overlapping no
//! never-block prefix; a rule's source, if it names one, overlaps no never-block prefix either. An
//! S/RTBH route is the other way round: a /32 or /128 *source*, never inside or around a protected
//! prefix (that would cut your own space off everywhere) nor a never-block one, and at most
//! `max_source_rtbh` of them active (the set counts them).

use std::collections::BTreeMap;
use std::time::Duration;

use ipnet::IpNet;

use crate::mitigation::record::Refusal;
use crate::mitigation::store::Retention;
use crate::route::Target;

/// The limits of the `limits`, `protected`, `never_block` and `retention` sections, resolved: on
/// what the set announces, and on what its store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrails {
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub max_active: usize,
    pub max_new_per_minute: u32,
    pub rtbh_min_prefix_v4: u8,
    pub rtbh_min_prefix_v6: u8,
    /// Most S/RTBH routes active at once, all attacks together: each one cuts a source off from
    /// everything behind the routers, not from one victim.
    pub max_source_rtbh: usize,
    pub protected: BTreeMap<String, Vec<IpNet>>,
    pub never_block: Vec<IpNet>,
    /// Nothing is announced to any peer.
    pub dry_run: bool,
    /// What the store keeps of what is over.
    pub retention: Retention,
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(b) || b.contains(a)
}

impl Guardrails {
    /// Guardrails for tests: one group `customers` of `protected` prefixes, `never_block`, ten
    /// minutes by default and an hour at most, 100 active and 100 a minute.
    #[cfg(test)]
    pub(crate) fn for_tests(protected: &[&str], never_block: &[&str]) -> Guardrails {
        let nets = |v: &[&str]| v.iter().map(|p| p.parse().unwrap()).collect::<Vec<IpNet>>();
        Guardrails {
            default_ttl: Duration::from_secs(600),
            max_ttl: Duration::from_secs(3600),
            max_active: 100,
            max_new_per_minute: 100,
            rtbh_min_prefix_v4: 32,
            rtbh_min_prefix_v6: 128,
            max_source_rtbh: 16,
            protected: BTreeMap::from([("customers".to_string(), nets(protected))]),
            never_block: nets(never_block),
            dry_run: false,
            retention: Retention::default(),
        }
    }

    /// Guardrails that depend on what is matched.
    pub fn check_target(&self, target: &Target) -> Result<(), Refusal> {
        if let Target::SourceRtbh(src) = target {
            if src.prefix_len() != src.max_prefix_len() {
                return Err(Refusal::Guardrail(format!(
                    "an S/RTBH route is one source, a /{}; {src} is wider",
                    src.max_prefix_len()
                )));
            }
            if let Some((g, p)) = self
                .protected
                .iter()
                .find_map(|(g, nets)| nets.iter().find(|p| overlaps(p, src)).map(|p| (g, p)))
            {
                return Err(Refusal::Guardrail(format!(
                    "source {src} is inside protected group {g} ({p}): S/RTBH would cut your own address off"
                )));
            }
        }
        if let Some(src) = target.source() {
            if let Some(nb) = self.never_block.iter().find(|n| overlaps(n, &src)) {
                return Err(Refusal::Guardrail(format!(
                    "source {src} overlaps never-block prefix {nb}"
                )));
            }
        }
        if matches!(target, Target::SourceRtbh(_)) {
            return Ok(());
        }
        let Some(dst) = target.destination() else {
            return Err(Refusal::Guardrail(
                "the rule has no destination; add `dst PREFIX` inside a protected network".into(),
            ));
        };
        if !self.protected.values().flatten().any(|p| p.contains(&dst)) {
            return Err(Refusal::Guardrail(match target {
                Target::Divert(_) => format!(
                    "{dst} is not inside a protected network: only your own space may be diverted"
                ),
                _ => format!("{dst} is not inside a protected network"),
            }));
        }
        if let Some(nb) = self.never_block.iter().find(|n| overlaps(n, &dst)) {
            return Err(Refusal::Guardrail(format!(
                "{dst} overlaps never-block prefix {nb}"
            )));
        }
        if let Target::Rtbh(p) = target {
            let (min, max) = if p.addr().is_ipv4() {
                (self.rtbh_min_prefix_v4, 32)
            } else {
                (self.rtbh_min_prefix_v6, 128)
            };
            if p.prefix_len() < min || p.prefix_len() > max {
                return Err(Refusal::Guardrail(format!(
                    "RTBH prefix {p} is outside /{min}../{max}"
                )));
            }
        }
        Ok(())
    }

    /// Guardrails that depend on who gets it: a diversion goes only to peers named explicitly
    /// (the scrubbing service's sessions, or the edges that must hand it the traffic).
    pub fn check_peers(&self, target: &Target, peers: &[String]) -> Result<(), Refusal> {
        if matches!(target, Target::Divert(_)) && peers.is_empty() {
            return Err(Refusal::Guardrail(
                "a diversion goes to peers named explicitly; give peers (the neighbors that receive divert)".into(),
            ));
        }
        Ok(())
    }

    /// The global cap on S/RTBH routes, with `active` of them active now.
    pub fn check_source_rtbh_cap(&self, active: usize) -> Result<(), Refusal> {
        if active >= self.max_source_rtbh {
            return Err(Refusal::Guardrail(format!(
                "{active} S/RTBH routes are active, the maximum configured (limits.max_source_rtbh)"
            )));
        }
        Ok(())
    }

    /// A lifetime asked for (the default when `None`), within the maximum.
    pub fn ttl(&self, ttl: Option<Duration>) -> Result<Duration, Refusal> {
        let d = ttl.unwrap_or(self.default_ttl);
        if d.is_zero() {
            return Err(Refusal::Invalid(
                "ttl 0s: every mitigation needs a lifetime; write e.g. 90s, 10m or 24h".into(),
            ));
        }
        if d > self.max_ttl {
            return Err(Refusal::Guardrail(format!(
                "ttl {}s is beyond the maximum of {}s",
                d.as_secs(),
                self.max_ttl.as_secs()
            )));
        }
        Ok(d)
    }
}

/// Why no configured neighbor can take `target` (of `family`), for the refusal of a mitigation
/// that would reach no router.
pub fn no_receiver(target: &Target, peers: &[String]) -> Refusal {
    let among = if peers.is_empty() {
        String::new()
    } else {
        format!(" among {}", peers.join(", "))
    };
    let (v, nh) = match target.prefix() {
        Some(p) if p.addr().is_ipv4() => ("IPv4", "ipv4"),
        Some(_) => ("IPv6", "ipv6"),
        None => match target.rule().map(|r| r.afi()) {
            Some(deflect_bgp::iana::Afi::Ipv4) => ("IPv4", "ipv4"),
            _ => ("IPv6", "ipv6"),
        },
    };
    Refusal::Guardrail(match target {
        Target::Rtbh(p) | Target::SourceRtbh(p) => format!(
            "no neighbor{among} takes an {} route for {p}: one must receive {}, the {v} unicast family, and have rtbh.next_hop_{nh}",
            if matches!(target, Target::Rtbh(_)) {
                "RTBH"
            } else {
                "S/RTBH"
            },
            target.kind(),
        ),
        Target::Divert(d) => format!(
            "no neighbor{among} takes a diversion of {}: one must receive divert and the {v} unicast family",
            d.prefix
        ),
        Target::Flowspec(_) => format!("no neighbor{among} receives {v} FlowSpec"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::Kind;

    fn check(g: &Guardrails, kind: Kind, text: &str) -> Result<(), String> {
        g.check_target(&Target::parse(kind, text).unwrap())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn each_kind_meets_the_guardrails_that_apply_to_it() {
        let g = Guardrails::for_tests(
            &["203.0.113.0/24", "2001:db8:100::/48"],
            &["198.51.100.53/32"],
        );
        // S/RTBH: a source outside your space, one address, not never-block.
        assert_eq!(check(&g, Kind::SourceRtbh, "198.51.100.9/32"), Ok(()));
        assert_eq!(check(&g, Kind::SourceRtbh, "2001:db8:5::1/128"), Ok(()));
        for (text, want) in [
            ("203.0.113.9/32", "inside protected group customers"),
            ("2001:db8:100::9/128", "inside protected group customers"),
            ("203.0.0.0/8", "is wider"),
            ("2001:db8:5::/64", "is wider"),
            ("198.51.100.53/32", "overlaps never-block"),
        ] {
            let e = check(&g, Kind::SourceRtbh, text).unwrap_err();
            assert!(e.contains(want), "{text}: {e}");
        }
        // A source-based FlowSpec rule: its destination as any rule's, its source not never-block.
        assert_eq!(
            check(
                &g,
                Kind::Flowspec,
                "dst 203.0.113.7/32 src 198.51.100.9/32 then discard"
            ),
            Ok(())
        );
        let e = check(
            &g,
            Kind::Flowspec,
            "dst 203.0.113.7/32 src 198.51.100.0/24 then discard",
        )
        .unwrap_err();
        assert!(
            e.contains("source 198.51.100.0/24 overlaps never-block"),
            "{e}"
        );
        // A diversion: a covering prefix wholly inside your space, overlapping no never-block.
        assert_eq!(
            check(&g, Kind::Divert, "203.0.113.0/24 next-hop 192.0.2.10"),
            Ok(())
        );
        assert_eq!(
            check(
                &g,
                Kind::Divert,
                "2001:db8:100::/48 next-hop 2001:db8:ff::10"
            ),
            Ok(())
        );
        let e = check(&g, Kind::Divert, "203.0.112.0/23 next-hop 192.0.2.10").unwrap_err();
        assert!(e.contains("only your own space may be diverted"), "{e}");
        let mut nb = g.clone();
        nb.never_block.push("203.0.113.53/32".parse().unwrap());
        let e = check(&nb, Kind::Divert, "203.0.113.0/24 next-hop 192.0.2.10").unwrap_err();
        assert!(
            e.contains("overlaps never-block prefix 203.0.113.53/32"),
            "{e}"
        );
        // Peers named, and the cap.
        let t = Target::parse(Kind::Divert, "203.0.113.0/24 next-hop 192.0.2.10").unwrap();
        assert!(g.check_peers(&t, &[]).is_err());
        assert!(g.check_peers(&t, &["scrubber".into()]).is_ok());
        let s = Target::parse(Kind::SourceRtbh, "198.51.100.9/32").unwrap();
        assert!(g.check_peers(&s, &[]).is_ok());
        assert!(g.check_source_rtbh_cap(15).is_ok());
        assert!(g.check_source_rtbh_cap(16).is_err());
    }
}
