//! The API's bodies at the edge, and its secret comparison.
use super::auth::{Token, TokenTable};
use super::*;
use crate::mitigation::{Order, Refusal};
use crate::route::{Kind, Target};

fn order(v: serde_json::Value) -> Result<Order, Refusal> {
    serde_json::from_value::<CreateRequest>(v)
        .unwrap()
        .order("noc")
}

#[test]
fn a_body_becomes_a_typed_order_at_the_edge() {
    let o = order(json!({
        "kind": "flowspec",
        "rule": "dst 203.0.113.9/32 proto 17 sport 123 then discard",
        "ttl": "90s",
        "peers": ["edge1"],
        "reason": "ntp",
    }))
    .unwrap();
    assert_eq!(
        o.target.to_string(),
        "dst 203.0.113.9/32 proto udp sport 123 then discard"
    );
    assert_eq!(o.ttl, Some(std::time::Duration::from_secs(90)));
    assert_eq!(
        (o.peers, o.reason.as_str()),
        (vec!["edge1".to_string()], "ntp")
    );
    assert_eq!(o.actor, "noc");
    let o = order(json!({"kind": "rtbh", "prefix": "2001:db8::9/128"})).unwrap();
    assert_eq!(o.target, Target::host("2001:db8::9".parse().unwrap()));
    assert_eq!(o.ttl, None, "the configured default");
}

#[test]
fn a_body_that_cannot_be_an_order_says_why() {
    for (body, why) in [
        (json!({"prefix": "203.0.113.9/32"}), "kind is missing"),
        (json!({"kind": "flowspec"}), "needs a rule"),
        (json!({"kind": "rtbh"}), "needs a prefix"),
        (
            json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32 then discard", "prefix": "203.0.113.9/32"}),
            "not a prefix",
        ),
        (
            json!({"kind": "rtbh", "rule": "dst 203.0.113.9/32 then discard", "prefix": "203.0.113.9/32"}),
            "not a rule",
        ),
        (
            json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32"}),
            "give an action",
        ),
        (
            json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32 dport 70000 then discard"}),
            "beyond 65535",
        ),
        (
            json!({"kind": "rtbh", "prefix": "203.0.113.9/24"}),
            "host bits",
        ),
        (
            json!({"kind": "rtbh", "prefix": "203.0.113.9/32", "ttl": "soon"}),
            "not a duration",
        ),
        (
            json!({"kind": "rtbh", "prefix": "203.0.113.9/32", "ttl": "0s"}),
            "not a duration",
        ),
        (
            json!({"kind": "rtbh", "prefix": "203.0.113.9/32", "reason": "r".repeat(1025)}),
            "at most 1024",
        ),
    ] {
        match order(body.clone()) {
            Err(Refusal::Invalid(e)) => assert!(e.contains(why), "{body}: {e}"),
            other => panic!("{body}: {other:?}"),
        }
    }
}

#[test]
fn a_token_is_found_by_its_whole_secret_only() {
    let token = |name: &str, secret: &str| Token {
        name: name.into(),
        secret: secret.into(),
        scope: super::Scope::Read,
        serves: None,
        rate: 1,
    };
    let t = TokenTable::new(&[
        token("a", "0123456789abcdef"),
        token("b", "0123456789abcdeg"),
    ]);
    assert_eq!(t.find(b"0123456789abcdef").unwrap().name, "a");
    assert_eq!(t.find(b"0123456789abcdeg").unwrap().name, "b");
    for wrong in [
        &b"0123456789abcdef0"[..],
        b"0123456789abcde",
        b"",
        b"0123456789ABCDEF",
    ] {
        assert!(t.find(wrong).is_none());
    }
}

#[test]
fn a_body_must_be_a_json_object() {
    let array = Ok(Bytes::from_static(br#"["rtbh", null, "203.0.113.9/32"]"#));
    let e = body::<CreateRequest>(array).unwrap_err();
    assert_eq!(e.0, StatusCode::BAD_REQUEST);
    assert!(e.1.contains("expected a JSON object"), "{}", e.1);
    let object = Ok(Bytes::from_static(br#" {"kind": "rtbh"}"#));
    assert!(body::<CreateRequest>(object).is_ok());
}

#[test]
fn an_amend_body_gives_new_actions_or_says_why_not() {
    let a = AmendRequest {
        actions: "rate-bytes 125000 traffic-action sample+terminal".into(),
        ttl: Some("10m".into()),
        reason: None,
    }
    .amend("noc")
    .unwrap();
    assert_eq!(a.actions.len(), 2);
    assert_eq!(a.ttl, Some(std::time::Duration::from_secs(600)));
    assert_eq!(
        (a.actor.as_str(), a.reason.as_str()),
        ("noc", "changed by hand")
    );
    for (actions, ttl, why) in [
        ("", None, "actions:"),
        ("explode", None, "actions:"),
        ("rate-bytes", None, "actions:"),
        ("discard", Some("soon"), "not a duration"),
    ] {
        let r = AmendRequest {
            actions: actions.into(),
            ttl: ttl.map(Into::into),
            reason: None,
        }
        .amend("noc");
        match r {
            Err(Refusal::Invalid(e)) => assert!(e.contains(why), "{actions}: {e}"),
            other => panic!("{actions}: {other:?}"),
        }
    }
}

proptest::proptest! {
    /// Whatever the strings, a body gives an order of the kind it asked for, or a 400; never a
    /// panic.
    #[test]
    fn any_body_gives_an_order_of_its_kind_or_a_refusal(
        kind in proptest::option::of(0..4usize),
        rule in proptest::option::of("(dst|src|proto|sport|dport|then|discard|rate-bytes|[0-9./:, ]){0,12}"),
        prefix in proptest::option::of("[0-9a-f.:/]{0,20}"),
        next_hop in proptest::option::of("[0-9a-f.: ]{0,16}"),
        communities in proptest::option::of(proptest::collection::vec("(no-export|blackhole|[0-9:x ]{0,12})", 0..40)),
        ttl in proptest::option::of("[0-9]{0,5}(ms|s|m|h|d|x)?"),
    ) {
        let req = CreateRequest {
            kind: kind.map(|k| Kind::ALL[k]),
            rule,
            prefix,
            next_hop,
            large_communities: communities.clone(),
            communities,
            ttl,
            peers: None,
            reason: None,
        };
        match req.order("noc") {
            Ok(o) => {
                proptest::prop_assert_eq!(Some(o.target.kind()), req.kind);
                proptest::prop_assert!(o.ttl.is_none_or(|d| !d.is_zero()));
                // Its text parses back to it (the fuzz target's check, every kind).
                let again = Target::parse(o.target.kind(), &o.target.to_string());
                proptest::prop_assert_eq!(again, Ok(o.target.clone()));
            }
            Err(e) => proptest::prop_assert!(matches!(e, Refusal::Invalid(_))),
        }
    }

    /// A diversion body of any prefix, next hop and communities gives a divert order whose text
    /// parses back to it, or a 400 (host bits, a next hop of the other family or none a router
    /// takes); never a panic.
    #[test]
    fn any_divert_body_gives_a_diversion_that_reads_back_or_a_refusal(
        v6 in proptest::bool::ANY,
        addr in proptest::array::uniform16(0u8..),
        len in 0u8..=128,
        nh in proptest::array::uniform16(0u8..),
        nh_v6 in proptest::bool::ANY,
        communities in proptest::collection::vec((0u16.., 0u16..), 0..4),
        large in proptest::collection::vec((0u32.., 0u32.., 0u32..), 0..3),
    ) {
        let ip = |b: [u8; 16], v6: bool| -> std::net::IpAddr {
            if v6 { b.into() } else { [b[0], b[1], b[2], b[3]].into() }
        };
        let req = CreateRequest {
            kind: Some(Kind::Divert),
            // Without host bits mostly (a real prefix); a few with them, refused.
            prefix: Some(if len % 8 == 7 {
                format!("{}/{}", ip(addr, v6), len % 33)
            } else {
                ipnet::IpNet::new(ip(addr, v6), if v6 { len } else { len % 33 })
                    .map(|n| n.trunc().to_string())
                    .unwrap_or_default()
            }),
            next_hop: Some(ip(nh, nh_v6).to_string()),
            communities: Some(communities.iter().map(|(a, v)| format!("{a}:{v}")).collect()),
            large_communities: Some(large.iter().map(|(g, a, b)| format!("{g}:{a}:{b}")).collect()),
            peers: Some(vec!["scrubber".into()]),
            ..CreateRequest::default()
        };
        match req.order("noc") {
            Ok(o) => {
                proptest::prop_assert_eq!(o.target.kind(), Kind::Divert);
                let again = Target::parse(Kind::Divert, &o.target.to_string());
                proptest::prop_assert_eq!(again, Ok(o.target.clone()));
                let m = crate::mitigation::Mitigation::fields(&o.target);
                proptest::prop_assert_eq!(m.communities.len(), communities.len());
            }
            Err(e) => proptest::prop_assert!(matches!(e, Refusal::Invalid(_))),
        }
    }

    /// A batch of any create bodies gives one item per body, each what that body alone gives
    /// (an order, or its refusal with the body for the audit log), or is refused whole when it
    /// is empty or too long; never a panic.
    #[test]
    fn any_batch_gives_each_body_s_own_answer_or_a_refusal(
        bodies in proptest::collection::vec(
            (
                proptest::option::of(0..4usize),
                proptest::option::of("(dst|src|proto|dport|then|discard|[0-9./: ]){0,10}"),
                proptest::option::of("[0-9a-f.:/]{0,20}"),
                proptest::option::of("[0-9]{0,3}(s|m|h|x)?"),
            ),
            0..40,
        ),
        atomic in proptest::bool::ANY,
    ) {
        let req = BatchRequest {
            mitigations: bodies
                .into_iter()
                .map(|(kind, rule, prefix, ttl)| CreateRequest {
                    kind: kind.map(|k| Kind::ALL[k]),
                    rule,
                    prefix,
                    ttl,
                    ..CreateRequest::default()
                })
                .collect(),
            atomic,
        };
        match req.items("feed") {
            Ok(items) => {
                proptest::prop_assert_eq!(items.len(), req.mitigations.len());
                for (item, body) in items.iter().zip(&req.mitigations) {
                    match (item, body.order("feed")) {
                        (Ok(a), Ok(b)) => proptest::prop_assert_eq!(&a.target, &b.target),
                        (Err((what, a)), Err(b)) => {
                            proptest::prop_assert_eq!(a, &b);
                            proptest::prop_assert!(what.is_object());
                        }
                        (a, b) => proptest::prop_assert!(false, "{a:?} alone gives {b:?}"),
                    }
                }
            }
            Err(e) => {
                proptest::prop_assert!(req.mitigations.is_empty());
                proptest::prop_assert!(matches!(e, Refusal::Invalid(_)));
            }
        }
    }

    /// Any JSON of a withdrawal's shape reads or is a 400; a filter's prefix is a prefix.
    #[test]
    fn any_withdraw_body_reads_or_is_refused(
        actor in proptest::option::of("[a-z:]{0,8}"),
        kind in proptest::option::of("(flowspec|rtbh|source-rtbh|divert|other)"),
        prefix in proptest::option::of("[0-9a-f.:/]{0,20}"),
        extra in proptest::bool::ANY,
    ) {
        let mut filter = serde_json::Map::new();
        if let Some(a) = &actor { filter.insert("actor".into(), a.clone().into()); }
        if let Some(k) = &kind { filter.insert("kind".into(), k.clone().into()); }
        if let Some(p) = &prefix { filter.insert("prefix".into(), p.clone().into()); }
        if extra { filter.insert("everything".into(), true.into()); }
        let body = serde_json::json!({"filter": filter});
        match serde_json::from_value::<WithdrawRequest>(body) {
            Ok(req) => {
                proptest::prop_assert!(!extra, "unknown fields are refused");
                proptest::prop_assert_eq!(req.filter.actor, actor);
                proptest::prop_assert_eq!(
                    req.filter.prefix.map(|p| p.to_string()),
                    prefix.map(|p| p.parse::<ipnet::IpNet>().unwrap().to_string())
                );
            }
            Err(_) => proptest::prop_assert!(
                extra
                    || kind.as_deref() == Some("other")
                    || prefix.is_some_and(|p| p.parse::<ipnet::IpNet>().is_err())
            ),
        }
    }

    /// Whatever the words, an amend body gives at least one action, or a 400.
    #[test]
    fn any_amend_body_gives_actions_or_a_refusal(
        actions in "(discard|rate-bytes|rate-packets|traffic-action|redirect|mark|terminal|sample|[0-9.:+ -]){0,8}",
    ) {
        let req = AmendRequest { actions, ttl: None, reason: None };
        match req.amend("noc") {
            Ok(a) => proptest::prop_assert!(!a.actions.is_empty()),
            Err(e) => proptest::prop_assert!(matches!(e, Refusal::Invalid(_))),
        }
    }
}

/// `/metrics`' traffic from a detector's own choice: targets of 10.0.0.0/8 in group `we"b\`
/// (a name to escape).
mod traffic {
    use std::net::{IpAddr, Ipv4Addr};

    use super::super::metrics::{label, traffic};
    use super::super::{MAX_ATTACKED_TARGETS, SERIES_PER_TARGET};
    use crate::detect::{Class, Detector};
    use crate::telemetry::{Flow, Report, Target};

    const GROUP: &str = "we\"b\\";

    fn addr(n: u32) -> IpAddr {
        Ipv4Addr::from((10u32 << 24) + n).into()
    }

    fn detector(max: usize) -> Detector {
        crate::detect::view::test_detector(GROUP, max)
    }

    /// A flow of each class at `pps` (NTP answers at `ntp`).
    fn flows(pps: u64, ntp: u64) -> Vec<Flow> {
        let f = |proto, sport, flags, fragment, pps| Flow {
            proto,
            sport,
            tcp_flags: flags,
            fragment,
            pps,
            bps: pps * 8000,
            ..Flow::default()
        };
        vec![
            f(6, None, Some(0x02), false, pps),
            f(6, None, Some(0x04), false, pps),
            f(6, None, Some(0x10), false, pps),
            f(6, None, Some(0x01), false, pps),
            f(17, Some(123), None, false, ntp),
            f(17, Some(40000), None, false, pps),
            f(1, None, None, false, pps),
            f(17, None, None, true, pps),
            f(47, None, None, false, pps),
            f(50, None, None, false, pps),
        ]
    }

    /// Addresses 0..n: `all` gives each class 100 + i % 1000 pps, under every floor (else HTTPS ACKs only), .9 100,000
    /// ACKs; `flood(i)` adds 50,000 pps of NTP answers (an attack).
    fn report(n: u32, all: bool, flood: impl Fn(u32) -> bool) -> Report {
        let targets = (0..n)
            .map(|i| {
                let pps = 100 + (i % 1000) as u64;
                let ntp = if flood(i) {
                    50_000
                } else if all {
                    pps
                } else {
                    0
                };
                let mut flows = flows(pps, ntp);
                if i == 9 {
                    // The busiest, in ACKs (below their floor): no attack.
                    flows[Class::TcpAck.index()].pps = 100_000;
                }
                if !all {
                    flows.retain(|f| f.tcp_flags == Some(0x10) || f.sport == Some(123));
                    flows.retain(|f| f.pps > 0);
                }
                Target::of_flows(addr(i), flows)
            })
            .collect();
        crate::detect::view::test_report(targets)
    }

    fn render(d: &Detector, top: usize) -> String {
        let mut out = String::new();
        traffic(&mut out, &d.traffic(top, MAX_ATTACKED_TARGETS));
        out
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("edge1"), "edge1");
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }

    #[test]
    fn the_busiest_and_the_attacked_have_series_the_rest_none() {
        let mut d = detector(100);
        // .0 to .9; .9 is the busiest, .2 is flooded (an attack, less busy), .5 neither.
        d.ingest("web1", &report(10, false, |i| i == 2), 1000);
        let text = render(&d, 1);
        let g = r#"group="we\"b\\""#;
        for line in [
            format!("deflect_target_pps{{target=\"10.0.0.9\",{g}}} 100000"),
            format!("deflect_target_under_attack{{target=\"10.0.0.9\",{g}}} 0"),
            format!("deflect_target_pps{{target=\"10.0.0.2\",{g}}} 50102"),
            format!("deflect_target_bps{{target=\"10.0.0.2\",{g}}} 400816000"),
            format!("deflect_target_under_attack{{target=\"10.0.0.2\",{g}}} 1"),
            format!("deflect_target_class_pps{{target=\"10.0.0.2\",{g},class=\"udp-amp\"}} 50000"),
            format!(
                "deflect_target_class_threshold_pps{{target=\"10.0.0.2\",{g},class=\"udp-amp\"}} 5000"
            ),
            format!(
                "deflect_target_class_baseline_pps{{target=\"10.0.0.2\",{g},class=\"tcp-ack\"}} 102"
            ),
            format!(
                "deflect_target_class_threshold_pps{{target=\"10.0.0.2\",{g},class=\"tcp-ack\"}} 500000"
            ),
            "deflect_targets_under_attack 1".to_string(),
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        // Nor the one neither busiest nor attacked, nor an idle class.
        assert!(!text.contains("10.0.0.5"), "{text}");
        assert!(!text.contains("class=\"udp\""), "{text}");
        // One HELP and one TYPE per family, before its samples.
        for family in [
            "deflect_targets_under_attack",
            "deflect_target_pps",
            "deflect_target_bps",
            "deflect_target_under_attack",
            "deflect_target_class_pps",
            "deflect_target_class_baseline_pps",
            "deflect_target_class_threshold_pps",
        ] {
            let type_line = format!("# TYPE {family} gauge");
            assert_eq!(text.lines().filter(|l| **l == type_line).count(), 1);
            let at = text.find(&type_line).unwrap();
            let first = text.find(&format!("\n{family}")).unwrap();
            assert!(at < first, "{family}");
        }
    }

    #[test]
    fn the_series_are_bounded_with_many_targets_and_attacks() {
        let mut d = detector(10_000);
        // 10,000 addresses with traffic in every class, 1,000 flooded.
        d.ingest("web1", &report(10_000, true, |i| i % 10 == 3), 1000);
        let text = render(&d, 20);
        let samples: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        let per_target = samples
            .iter()
            .filter(|l| l.starts_with("deflect_target_"))
            .count();
        // The bound, reached: every class of each of the 20 + 500 has its three series.
        assert_eq!(per_target, (20 + MAX_ATTACKED_TARGETS) * SERIES_PER_TARGET);
        assert_eq!(per_target, 17_160);
        assert!(samples.contains(&"deflect_targets_under_attack 1000"));
        // No target past the 20 busiest that is not attacked.
        assert!(!text.contains("target=\"10.0.0.4\""));
        assert!(text.contains("target=\"10.0.0.9\""));
    }
}
