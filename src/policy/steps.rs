//! The second pass over what an announcing step says beyond its kind: which heavy sources it
//! takes (`sources:`), what a diversion announces (`divert:`), and the peers it names, each
//! error at its `file:line:col`.

use std::collections::BTreeSet;
use std::net::IpAddr;

use serde_saphyr::{Location, Spanned};

use super::{DivertFile, DivertStep, Known, MAX_SOURCES_PER_STEP, Part, SourceSelect, SourcesFile};
use crate::route::Kind;

/// Shortest covering prefixes a diversion may announce: a diversion moves a block of your own
/// space, not a whole allocation.
const MIN_DIVERT_V4: u8 = 16;
const MIN_DIVERT_V6: u8 = 32;

type Err<'a> = &'a mut dyn FnMut(&Location, String);

/// Which heavy sources the step takes: a flowspec step that matches `src`, and a source-rtbh
/// step, take [`SourceSelect`] (its defaults unless `sources:` says); no other step may say.
pub(super) fn sources(
    kind: Option<Kind>,
    parts: &BTreeSet<Part>,
    file: Option<&Spanned<SourcesFile>>,
    at: &Location,
    err: Err<'_>,
) -> Option<SourceSelect> {
    let per_source = kind == Some(Kind::Flowspec) && parts.contains(&Part::Src);
    if per_source && parts.contains(&Part::Sources) {
        err(
            at,
            "match names src (a rule per heavy source) and sources (the heaviest in the one rule); keep one".into(),
        );
    }
    let wants = per_source || kind == Some(Kind::SourceRtbh);
    let Some(f) = file else {
        return wants.then(SourceSelect::default);
    };
    if !wants {
        err(
            &f.referenced,
            "sources: belongs to a flowspec step that matches src, or a source-rtbh step".into(),
        );
        return None;
    }
    let mut sel = SourceSelect::default();
    if let Some(m) = &f.value.max {
        if (1..=MAX_SOURCES_PER_STEP).contains(&m.value) {
            sel.max = m.value;
        } else {
            err(
                &m.referenced,
                format!(
                    "sources.max is 1 to {MAX_SOURCES_PER_STEP} (the sources a signature keeps)"
                ),
            );
        }
    }
    if let Some(s) = &f.value.min_share {
        match share_bp(&s.value) {
            Some(bp) => sel.min_share_bp = bp,
            None => err(
                &s.referenced,
                format!(
                    "sources.min_share {:?} is not a share; write a percentage above 0 and at most 100, e.g. 5% or 0.5%",
                    s.value
                ),
            ),
        }
    }
    Some(sel)
}

/// `5%`, `0.5 %` in basis points (at least 1); `None` outside (0, 100].
pub(super) fn share_bp(text: &str) -> Option<u16> {
    let n: f64 = text.trim().strip_suffix('%')?.trim().parse().ok()?;
    if !(n > 0.0 && n <= 100.0) {
        return None;
    }
    Some(((n * 100.0).round() as u16).max(1))
}

/// What a divert step announces; required on it, refused on any other.
pub(super) fn divert(
    kind: Option<Kind>,
    file: Option<&Spanned<DivertFile>>,
    at: &Location,
    err: Err<'_>,
) -> Option<DivertStep> {
    let f = match (kind, file) {
        (Some(Kind::Divert), None) => {
            err(
                at,
                "a divert step needs divert: { next_hop_ipv4: ADDR } (the scrubbing service's next hop; also prefix_length_v4, next_hop_ipv6, prefix_length_v6, communities)".into(),
            );
            return None;
        }
        (Some(Kind::Divert), Some(f)) => f,
        (_, Some(f)) => {
            err(
                &f.referenced,
                "divert: belongs to an `announce: divert` step".into(),
            );
            return None;
        }
        (_, None) => return None,
    };
    let d = &f.value;
    let mut step = DivertStep {
        prefix_length_v4: 24,
        prefix_length_v6: 48,
        next_hop_ipv4: None,
        next_hop_ipv6: None,
        communities: Vec::new(),
        large_communities: Vec::new(),
    };
    for (len, min, max, out, what) in [
        (
            &d.prefix_length_v4,
            MIN_DIVERT_V4,
            32,
            &mut step.prefix_length_v4,
            "prefix_length_v4",
        ),
        (
            &d.prefix_length_v6,
            MIN_DIVERT_V6,
            128,
            &mut step.prefix_length_v6,
            "prefix_length_v6",
        ),
    ] {
        if let Some(l) = len {
            if (min..=max).contains(&l.value) {
                *out = l.value;
            } else {
                err(&l.referenced, format!("divert.{what} is {min} to {max}"));
            }
        }
    }
    for (nh, v4, out) in [
        (&d.next_hop_ipv4, true, &mut step.next_hop_ipv4),
        (&d.next_hop_ipv6, false, &mut step.next_hop_ipv6),
    ] {
        let Some(nh) = nh else { continue };
        let a: IpAddr = nh.value;
        if a.is_ipv4() != v4 {
            err(
                &nh.referenced,
                format!("{a} is not an IPv{} address", if v4 { 4 } else { 6 }),
            );
        } else if a.is_unspecified() || a.is_multicast() || a.is_loopback() {
            err(&nh.referenced, format!("{a} cannot be a next hop"));
        } else {
            *out = Some(a);
        }
    }
    if d.next_hop_ipv4.is_none() && d.next_hop_ipv6.is_none() {
        err(
            &f.referenced,
            "divert needs next_hop_ipv4 or next_hop_ipv6: where the scrubbing service takes the traffic".into(),
        );
    }
    for c in &d.communities {
        match c.value.parse() {
            Ok(x) => step.communities.push(x),
            Err(e) => err(
                &c.referenced,
                format!("{e}; write ASN:VALUE, no-export or no-advertise"),
            ),
        }
    }
    for c in &d.large_communities {
        match c.value.parse() {
            Ok(x) => step.large_communities.push(x),
            Err(e) => err(&c.referenced, format!("{e}; write GLOBAL:LOCAL1:LOCAL2")),
        }
    }
    Some(step)
}

/// The peers an announcing step names: each a neighbor that receives the step's kind. A divert
/// step names its peers; a step of a kind no neighbor opted in to is an error where neighbors are
/// configured (without neighbors, announcements are shown, not sent).
pub(super) fn peers(
    kind: Option<Kind>,
    peers: &[Spanned<String>],
    known: &Known,
    at: &Location,
    err: Err<'_>,
) {
    for p in peers {
        match (known.peers.get(&p.value), kind) {
            (None, _) => err(&p.referenced, format!("no neighbor named {:?}", p.value)),
            (Some(receives), Some(k)) if !receives.contains(&k) => err(
                &p.referenced,
                format!(
                    "neighbor {:?} does not receive {k}; add {k} to its receives, or name another",
                    p.value
                ),
            ),
            _ => {}
        }
    }
    let Some(k) = kind else { return };
    if k == Kind::Divert && peers.is_empty() {
        err(
            at,
            "a divert step names its peers (the sessions to the scrubbing service or the edges that hand it the traffic): peers: [NAME]".into(),
        );
    }
    if matches!(k, Kind::SourceRtbh | Kind::Divert)
        && peers.is_empty()
        && !known.peers.is_empty()
        && !known.peers.values().any(|r| r.contains(&k))
    {
        err(
            at,
            format!(
                "no neighbor receives {k}; add {k} to the receives of the neighbors that take it"
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use deflect_bgp::community::Community;

    use super::*;
    use crate::policy::{Policies, Policy};

    fn known() -> Known {
        let peer = |n: &str, kinds: &[Kind]| (n.to_string(), kinds.iter().copied().collect());
        Known {
            groups: ["customers".to_string()].into_iter().collect(),
            peers: [
                peer("edge1", &[Kind::Flowspec, Kind::Rtbh]),
                peer("edge2", &[Kind::Flowspec, Kind::SourceRtbh]),
                peer("scrubber", &[Kind::Divert]),
            ]
            .into_iter()
            .collect(),
            ioc: Default::default(),
        }
    }

    fn one(text: &str) -> Policy {
        Policies::parse(&[("p.yaml".into(), text.into())], &known())
            .unwrap_or_else(|e| panic!("{e}"))
            .list
            .remove(0)
    }

    #[test]
    fn the_three_source_and_diversion_steps_parse_with_their_defaults_and_settings() {
        let p = one("match:\n  vectors: [any]\nsteps:\n\
             \x20 - announce: flowspec\n    match: [src, proto, sport]\n    action: discard\n\
             \x20 - announce: flowspec\n    match: [src]\n    action: discard\n    sources: { max: 3, min_share: 0.5% }\n\
             \x20 - announce: source-rtbh\n    peers: [edge2]\n\
             \x20 - announce: divert\n    peers: [scrubber]\n    divert:\n      next_hop_ipv4: 198.51.100.10\n      prefix_length_v6: 56\n      communities: [65000:800, no-export]\n      large_communities: [65000:1:2]\n");
        let s = &p.steps;
        assert!(s[0].parts.contains(&Part::Src));
        assert_eq!(s[0].sources, Some(SourceSelect::default()));
        assert_eq!(
            s[0].sources,
            Some(SourceSelect {
                max: 8,
                min_share_bp: 500
            })
        );
        assert_eq!(
            s[1].sources,
            Some(SourceSelect {
                max: 3,
                min_share_bp: 50
            })
        );
        assert_eq!(s[2].announce, Some(Kind::SourceRtbh));
        assert_eq!(s[2].sources, Some(SourceSelect::default()));
        let d = s[3].divert.as_ref().unwrap();
        assert_eq!((d.prefix_length_v4, d.prefix_length_v6), (24, 56));
        assert_eq!(d.next_hop_ipv4, Some("198.51.100.10".parse().unwrap()));
        assert_eq!(d.next_hop_ipv6, None);
        assert_eq!(
            d.communities,
            vec![Community::new(65000, 800), Community::NO_EXPORT]
        );
        assert_eq!(d.large_communities.len(), 1);
        // A step that is none of these carries neither.
        let plain = one("match:\n  vectors: [any]\nsteps:\n  - announce: rtbh\n");
        assert_eq!(
            (plain.steps[0].sources, &plain.steps[0].divert),
            (None, &None)
        );
    }

    #[test]
    fn source_and_diversion_step_errors_point_at_the_word() {
        let head = "match:\n  vectors: [any]\nsteps:\n";
        let bad = [
            (
                "  - announce: source-rtbh\n    peers: [edge1]\n",
                "p.yaml:5:13: neighbor \"edge1\" does not receive source-rtbh",
            ),
            (
                "  - announce: divert\n    divert: { next_hop_ipv4: 198.51.100.10 }\n",
                "p.yaml:4:15: a divert step names its peers",
            ),
            (
                "  - announce: divert\n    peers: [scrubber]\n",
                "p.yaml:4:15: a divert step needs divert:",
            ),
            (
                "  - announce: divert\n    peers: [edge1]\n    divert: { next_hop_ipv4: 198.51.100.10 }\n",
                "p.yaml:5:13: neighbor \"edge1\" does not receive divert",
            ),
            (
                "  - announce: divert\n    peers: [scrubber]\n    divert: { next_hop_ipv4: '2001:db8::1' }\n",
                "p.yaml:6:30: 2001:db8::1 is not an IPv4 address",
            ),
            (
                "  - announce: divert\n    peers: [scrubber]\n    divert: { next_hop_ipv4: 198.51.100.10, prefix_length_v4: 8 }\n",
                "p.yaml:6:63: divert.prefix_length_v4 is 16 to 32",
            ),
            (
                "  - announce: divert\n    peers: [scrubber]\n    divert: { prefix_length_v4: 24 }\n",
                "p.yaml:6:13: divert needs next_hop_ipv4 or next_hop_ipv6",
            ),
            (
                "  - announce: divert\n    peers: [scrubber]\n    divert: { next_hop_ipv4: 198.51.100.10, communities: [nonsense] }\n",
                "p.yaml:6:59: ",
            ),
            (
                "  - announce: rtbh\n    divert: { next_hop_ipv4: 198.51.100.10 }\n",
                "p.yaml:5:13: divert: belongs to an `announce: divert` step",
            ),
            (
                "  - announce: flowspec\n    action: discard\n    match: [proto]\n    sources: { max: 2 }\n",
                "p.yaml:7:14: sources: belongs to a flowspec step that matches src",
            ),
            (
                "  - announce: flowspec\n    action: discard\n    match: [src]\n    sources: { max: 17 }\n",
                "p.yaml:7:21: sources.max is 1 to 16",
            ),
            (
                "  - announce: source-rtbh\n    sources: { min_share: 0% }\n",
                "p.yaml:5:27: sources.min_share \"0%\" is not a share",
            ),
            (
                "  - announce: source-rtbh\n    sources: { min_share: lots }\n",
                "p.yaml:5:27: sources.min_share \"lots\" is not a share",
            ),
            (
                "  - announce: flowspec\n    action: discard\n    match: [src, sources]\n",
                "p.yaml:4:15: match names src (a rule per heavy source) and sources",
            ),
            (
                "  - announce: source-rtbh\n    action: discard\n",
                "p.yaml:5:13: source-rtbh step takes no action",
            ),
            (
                "  - local: { match: [src], action: drop }\n",
                "p.yaml:4:22: a local drop takes one source",
            ),
            (
                "  - announce: blackhole-everything\n",
                "p.yaml:4:15: unknown variant",
            ),
        ];
        for (steps, want) in bad {
            let text = format!("{head}{steps}");
            let e = Policies::parse(&[("p.yaml".into(), text.clone())], &known()).unwrap_err();
            let got = e.to_string();
            assert!(got.starts_with(want), "{text}\n got: {got}\nwant: {want}");
        }
        // No neighbor opted in to S/RTBH: a step that would reach none is an error.
        let mut k = known();
        k.peers.remove("edge2");
        let e = Policies::parse(
            &[(
                "p.yaml".into(),
                format!("{head}  - announce: source-rtbh\n"),
            )],
            &k,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("p.yaml:4:15: no neighbor receives source-rtbh"),
            "{e}"
        );
        // Without neighbors at all, announcements are shown, not sent: no error.
        k.peers.clear();
        assert!(
            Policies::parse(
                &[(
                    "p.yaml".into(),
                    format!("{head}  - announce: source-rtbh\n")
                )],
                &k
            )
            .is_ok()
        );
    }
}
