//! FlowSpec rules: the RFC's published encodings, every component and operator both ways, the
//! refusals, the text syntax, and property tests.

use std::net::Ipv4Addr;

use deflect_bgp::community::ExtCommunity;
use deflect_bgp::flowspec::text::{parse_actions, parse_rule};
use deflect_bgp::flowspec::{
    Action, BitmaskOp, Component, FlowRoute, FlowSpecError, NumericOp, Prefix, Rule, RuleError,
    RuleOptions, decode_nlri_list, split_rule,
};
use deflect_bgp::iana::Afi;
use proptest::prelude::*;

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// Both ways: the text encodes to exactly `bytes`, and the bytes decode to the same rule.
fn check(afi: Afi, text: &str, bytes: &str, opts: &RuleOptions) {
    let rule = parse_rule(text, opts).unwrap_or_else(|e| panic!("{text}: {e}"));
    let want = unhex(bytes);
    assert_eq!(hex(rule.wire()), hex(&want), "encoding of {text:?}");
    let (back, n) =
        Rule::decode(afi, &want).unwrap_or_else(|e| panic!("decode of {}: {e}", hex(&want)));
    assert_eq!(n, want.len());
    assert_eq!(back, rule);
    assert_eq!(back.components(), rule.components());
    assert_eq!(back.to_string(), rule.to_string());
}

#[test]
fn rfc8955_example_1_tcp_port_25_to_a_slash_24() {
    // RFC 8955 §4.2.3: "all packets to 192.0.2.0/24 and TCP port 25".
    check(
        Afi::Ipv4,
        "dst 192.0.2.0/24 proto tcp port 25",
        "0b 01 18 c0 00 02 03 81 06 04 81 19",
        &RuleOptions::default(),
    );
}

#[test]
fn rfc8955_example_2_port_range_or_8080_between_two_prefixes() {
    // RFC 8955 §4.2.3: "all packets to 192.0.2.0/24 from 203.0.113.0/24 and port {range [137, 139] or 8080}".
    check(
        Afi::Ipv4,
        "dst 192.0.2.0/24 src 203.0.113.0/24 port 137..139,8080",
        "12 01 18 c0 00 02 02 18 cb 00 71 04 03 89 45 8b 91 1f 90",
        &RuleOptions::default(),
    );
}

#[test]
fn rfc8956_example_ipv6_prefix_with_offset() {
    // RFC 8956 §3.8: to ::1234:5678:9a00:0/64-104 from 2001:db8::/32, port {[137, 139] or 8080}.
    check(
        Afi::Ipv6,
        "dst ::1234:5678:9a00:0/104 offset 64 src 2001:db8::/32 port 137..139,8080",
        "17 01 68 40 12 34 56 78 9a 02 20 00 20 01 0d b8 04 03 89 45 8b 91 1f 90",
        &RuleOptions::LONG_FORM,
    );
}

#[test]
fn every_component_type_encodes_as_expected() {
    let o = RuleOptions::default();
    check(Afi::Ipv4, "dst 198.51.100.7/32", "06 01 20 c6 33 64 07", &o);
    check(Afi::Ipv4, "src 10.0.0.0/8", "03 02 08 0a", &o);
    check(Afi::Ipv4, "src 0.0.0.0/0", "02 02 00", &o);
    check(Afi::Ipv4, "proto gre", "03 03 81 2f", &o);
    check(Afi::Ipv4, "dport 53", "03 05 81 35", &o);
    check(Afi::Ipv4, "sport 11211", "04 06 91 2b cb", &o);
    check(
        Afi::Ipv4,
        "proto icmp icmp-type 8 icmp-code 0",
        "09 03 81 01 07 81 08 08 81 00",
        &o,
    );
    check(Afi::Ipv4, "tcp-flags syn", "03 09 81 02", &o);
    check(Afi::Ipv4, "pkt-len >=1000", "04 0a 93 03 e8", &o);
    check(Afi::Ipv4, "dscp 46", "03 0b 81 2e", &o);
    check(Afi::Ipv4, "fragment ~is-frag+first-frag", "03 0c 80 06", &o);
    check(
        Afi::Ipv6,
        "dst 2001:db8::1/128",
        "13 01 80 00 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01",
        &o,
    );
    check(
        Afi::Ipv6,
        "src 2001:db8::/32 next-header 58 icmp-type 128",
        "0d 02 20 00 20 01 0d b8 03 81 3a 07 81 80",
        &o,
    );
    check(Afi::Ipv6, "flow-label 12345", "04 0d 91 30 39", &o);
    check(Afi::Ipv6, "flow-label 1048575", "06 0d a1 00 0f ff ff", &o);
}

#[test]
fn every_numeric_operator_has_its_bits() {
    let o = RuleOptions::default();
    // e a len 0 lt gt eq
    check(Afi::Ipv4, "pkt-len 100", "03 0a 81 64", &o);
    check(Afi::Ipv4, "pkt-len >100", "03 0a 82 64", &o);
    check(Afi::Ipv4, "pkt-len >=100", "03 0a 83 64", &o);
    check(Afi::Ipv4, "pkt-len <100", "03 0a 84 64", &o);
    check(Afi::Ipv4, "pkt-len <=100", "03 0a 85 64", &o);
    check(Afi::Ipv4, "pkt-len !=100", "03 0a 86 64", &o);
    // OR of two, AND inside a term, and minimal widths 1, 2 and 4 octets side by side.
    check(
        Afi::Ipv4,
        "pkt-len 1,>=300&<=65535",
        "09 0a 01 01 13 01 2c d5 ff ff",
        &o,
    );
    check(
        Afi::Ipv6,
        "flow-label 1,65536",
        "08 0d 01 01 a1 00 01 00 00",
        &o,
    );
}

#[test]
fn every_bitmask_operator_has_its_bits() {
    let o = RuleOptions::default();
    // e a len 0 0 not m
    check(Afi::Ipv4, "tcp-flags syn+ack", "03 09 81 12", &o);
    check(Afi::Ipv4, "tcp-flags !=syn+ack", "03 09 83 12", &o);
    check(Afi::Ipv4, "tcp-flags ~fin+rst", "03 09 80 05", &o);
    check(Afi::Ipv4, "tcp-flags !~ack", "03 09 82 10", &o);
    check(Afi::Ipv4, "tcp-flags syn&!~ack", "05 09 01 02 c2 10", &o);
    check(Afi::Ipv4, "tcp-flags rst,fin", "05 09 01 04 81 01", &o);
    check(Afi::Ipv4, "tcp-flags 0x100", "04 09 91 01 00", &o);
    check(Afi::Ipv4, "fragment df", "03 0c 81 01", &o);
}

#[test]
fn long_rules_use_the_two_octet_length_form() {
    let ports: Vec<String> = (0..120).map(|i| (1000 + i * 7).to_string()).collect();
    let text = format!("dst 192.0.2.1/32 proto udp dport {}", ports.join(","));
    assert!(
        matches!(parse_rule(&text, &RuleOptions::default()), Err(e) if e.to_string().contains("at most 239"))
    );
    let rule = parse_rule(&text, &RuleOptions::LONG_FORM).unwrap();
    let w = rule.wire();
    assert!(w.len() >= 240);
    assert_eq!(w[0] & 0xf0, 0xf0, "2-octet form");
    assert_eq!(
        usize::from(u16::from_be_bytes([w[0], w[1]]) & 0x0fff),
        w.len() - 2
    );
    let (back, n) = Rule::decode(Afi::Ipv4, w).unwrap();
    assert_eq!(n, w.len());
    assert_eq!(back, rule);
}

#[test]
fn a_rule_with_239_octets_is_kept_and_240_is_refused_by_default() {
    // dst /32 (6) + proto (3) + dport type (1) + n ports of 3 octets.
    let mut n = 1;
    loop {
        let ports: Vec<String> = (0..n).map(|i| (1000 + i).to_string()).collect();
        let text = format!("dst 192.0.2.1/32 proto udp dport {}", ports.join(","));
        match parse_rule(&text, &RuleOptions::default()) {
            Ok(r) => assert!(r.wire().len() <= 239),
            Err(e) => {
                assert!(e.to_string().contains("at most 239"), "{e}");
                let r = parse_rule(&text, &RuleOptions::LONG_FORM).unwrap();
                assert!(r.wire().len() >= 240);
                break;
            }
        }
        n += 1;
    }
}

#[test]
fn split_rule_keeps_every_port_in_rules_of_at_most_239_octets() {
    let comps = vec![
        Component::DestinationPrefix(Prefix::from(
            "192.0.2.1/32".parse::<ipnet::IpNet>().unwrap(),
        )),
        Component::Protocol(vec![NumericOp::eq(17)]),
        Component::DestinationPort(
            (0..200)
                .map(|i| NumericOp {
                    and: false,
                    ..NumericOp::eq(2000 + i)
                })
                .collect(),
        ),
    ];
    let rules = split_rule(Afi::Ipv4, comps, &RuleOptions::default()).unwrap();
    assert!(rules.len() > 1);
    let mut ports = Vec::new();
    for r in &rules {
        assert!(r.wire().len() <= 239, "{} octets", r.wire().len());
        match &r.components()[2] {
            Component::DestinationPort(ops) => ports.extend(ops.iter().map(|o| o.value)),
            c => panic!("{c:?}"),
        }
    }
    assert_eq!(ports, (2000..2200).collect::<Vec<u64>>());
}

#[test]
fn components_given_in_any_order_are_sorted() {
    let a = parse_rule(
        "dport 80 proto tcp dst 192.0.2.1/32",
        &RuleOptions::default(),
    )
    .unwrap();
    let b = parse_rule(
        "dst 192.0.2.1/32 proto tcp dport 80",
        &RuleOptions::default(),
    )
    .unwrap();
    assert_eq!(a, b);
    assert_eq!(a.to_string(), "dst 192.0.2.1/32 proto tcp dport 80");
}

#[test]
fn decoding_refuses_components_out_of_order() {
    // proto (3) before dst (1): BIRD answers this with NOTIFICATION 3/1.
    let bad = unhex("09 03 81 06 01 20 c0 00 02 01");
    assert_eq!(
        Rule::decode(Afi::Ipv4, &bad),
        Err(FlowSpecError::BadOrder {
            type_code: 1,
            previous: 3
        })
    );
    let dup = unhex("06 03 81 06 03 81 11");
    assert!(matches!(
        Rule::decode(Afi::Ipv4, &dup),
        Err(FlowSpecError::BadOrder { .. })
    ));
}

#[test]
fn invalid_rules_are_refused_with_their_reason() {
    let o = RuleOptions::default();
    type Expect = fn(&RuleError) -> bool;
    let cases: &[(&str, Expect)] = &[
        ("dport 70000", |e| {
            matches!(
                e,
                RuleError::ValueTooLarge {
                    value: 70000,
                    max: 65535,
                    ..
                }
            )
        }),
        ("dscp 64", |e| {
            matches!(e, RuleError::ValueTooLarge { max: 63, .. })
        }),
        ("proto 256", |e| {
            matches!(e, RuleError::ValueTooLarge { max: 255, .. })
        }),
        ("dport >100&<50", |e| {
            matches!(e, RuleError::NeverMatches { .. })
        }),
        ("dport 5&6", |e| matches!(e, RuleError::NeverMatches { .. })),
        ("dport <0", |e| matches!(e, RuleError::NeverMatches { .. })),
        ("tcp-flags syn&!~syn", |e| {
            matches!(e, RuleError::NeverMatches { .. })
        }),
        ("tcp-flags ~0x0", |e| {
            matches!(e, RuleError::NeverMatches { .. })
        }),
        ("proto udp tcp-flags syn", |e| {
            matches!(e, RuleError::ProtocolConflict { .. })
        }),
        ("proto tcp icmp-type 8", |e| {
            matches!(e, RuleError::ProtocolConflict { .. })
        }),
        ("proto icmp dport 80", |e| {
            matches!(e, RuleError::ProtocolConflict { .. })
        }),
        ("dst 192.0.2.1/24", |e| {
            matches!(e, RuleError::HostBits { .. })
        }),
        ("dst 192.0.2.0/24 src 2001:db8::/32", |e| {
            matches!(e, RuleError::PrefixFamily { .. })
        }),
        ("dst 2001:db8::/64 offset 8", |e| {
            matches!(e, RuleError::OffsetNotAllowed(_))
        }),
        ("dst 2001:db8::/64 fragment df", |e| {
            matches!(e, RuleError::DontFragmentIpv6)
        }),
        ("dst 192.0.2.1/32 flow-label 5", |e| {
            matches!(e, RuleError::FlowLabelIpv4)
        }),
        ("fragment 0x10", |e| {
            matches!(e, RuleError::ValueTooLarge { max: 15, .. })
        }),
    ];
    for (text, want) in cases {
        match parse_rule(text, &o) {
            Err(deflect_bgp::flowspec::text::ParseError::Rule(e)) => {
                assert!(want(&e), "{text}: got {e:?}")
            }
            other => panic!("{text}: expected a rule error, got {other:?}"),
        }
    }
    assert_eq!(Rule::new(Afi::Ipv4, vec![]), Err(RuleError::Empty));
    assert!(matches!(
        Rule::new(
            Afi::Ipv4,
            vec![
                Component::Dscp(vec![]),
                Component::Dscp(vec![NumericOp::eq(1)])
            ]
        ),
        Err(RuleError::Duplicate("dscp"))
    ));
    assert!(matches!(
        Rule::new(
            Afi::Ipv4,
            vec![Component::Dscp(vec![NumericOp {
                lt: false,
                gt: false,
                eq: false,
                and: false,
                value: 1
            }])]
        ),
        Err(RuleError::FalseOperator(_))
    ));
}

#[test]
fn parse_errors_name_the_word_and_the_fix() {
    let e = parse_rule("dst 192.0.2.1/32 dport 70000", &RuleOptions::default()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "dport: value 70000 is beyond 65535 (the field's width)"
    );
    let e = parse_rule("dst 192.0.2.1/32 colour red", &RuleOptions::default()).unwrap_err();
    assert!(
        e.to_string().starts_with("\"colour\": unknown match"),
        "{e}"
    );
    let e = "dst 192.0.2.1/32 then explode"
        .parse::<FlowRoute>()
        .unwrap_err();
    assert!(e.to_string().contains("unknown action"), "{e}");
}

#[test]
fn conflicting_actions_are_told_and_ipv6_words_refused_in_ipv4_rules() {
    use deflect_bgp::flowspec::action::check_actions;
    for (text, word, why) in [
        (
            "discard rate-bytes 100",
            "rate-bytes 100",
            "conflicts with discard",
        ),
        ("discard discard", "discard", "twice"),
        (
            "rate-bytes 100 rate-packets 5",
            "rate-packets 5",
            "one traffic rate",
        ),
        ("mark 10 mark 12", "mark 12", "one mark"),
        (
            "redirect 65000:1 redirect 65000:1",
            "redirect 65000:1",
            "twice",
        ),
    ] {
        let actions = parse_actions(text).unwrap();
        let (a, e) = check_actions(&actions).unwrap_err();
        assert_eq!(a.to_string(), word, "{text}");
        assert!(e.contains(why), "{text}: {e}");
    }
    // One of each kind is fine, and redirects of different kinds may go together.
    let ok = parse_actions("rate-bytes 100 traffic-action sample+terminal mark 10 redirect 65000:1 redirect 192.0.2.9:1")
        .unwrap();
    assert_eq!(check_actions(&ok), Ok(()));
    let e = "dst 192.0.2.1/32 next-header 6 then discard"
        .parse::<FlowRoute>()
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("\"next-header\": ") && e.contains("proto"),
        "{e}"
    );
    assert!(
        "dst 2001:db8::1/128 next-header 6 then discard"
            .parse::<FlowRoute>()
            .is_ok()
    );
}

#[test]
fn every_truncation_of_a_valid_nlri_is_an_error() {
    let r = parse_rule(
        "dst 2001:db8::1/128 src 2001:db8:1::/48 next-header tcp dport 80,443 tcp-flags syn&!~ack pkt-len 40..1500 flow-label 7",
        &RuleOptions::default(),
    )
    .unwrap();
    let w = r.wire();
    for n in 0..w.len() {
        assert!(
            Rule::decode(Afi::Ipv6, &w[..n]).is_err(),
            "prefix of {n} octets decoded"
        );
    }
    // A shorter length prefix over the same bytes cuts a component: also an error.
    for l in 1..w.len() - 1 {
        let mut v = w.to_vec();
        v[0] = l as u8;
        let _ = Rule::decode(Afi::Ipv6, &v); // must not panic
    }
}

#[test]
fn actions_have_their_extended_community_bytes() {
    let cases = [
        (Action::DISCARD, "80 06 00 00 00 00 00 00"),
        (
            Action::TrafficRateBytes {
                asn: 65000,
                rate: 125000.0,
            },
            "80 06 fd e8 47 f4 24 00",
        ),
        (
            Action::TrafficRatePackets {
                asn: 0,
                rate: 1000.0,
            },
            "80 0c 00 00 44 7a 00 00",
        ),
        // RFC 8955 §7.3: T set = apply later rules too (not terminal); S = sample.
        (
            Action::TrafficAction {
                sample: false,
                terminal: true,
            },
            "80 07 00 00 00 00 00 00",
        ),
        (
            Action::TrafficAction {
                sample: false,
                terminal: false,
            },
            "80 07 00 00 00 00 00 01",
        ),
        (
            Action::TrafficAction {
                sample: true,
                terminal: true,
            },
            "80 07 00 00 00 00 00 02",
        ),
        (
            Action::TrafficAction {
                sample: true,
                terminal: false,
            },
            "80 07 00 00 00 00 00 03",
        ),
        (
            Action::RedirectAs2 {
                asn: 65000,
                value: 100,
            },
            "80 08 fd e8 00 00 00 64",
        ),
        (
            Action::RedirectIpv4 {
                ip: Ipv4Addr::new(192, 0, 2, 1),
                value: 7,
            },
            "81 08 c0 00 02 01 00 07",
        ),
        (
            Action::RedirectAs4 {
                asn: 4_200_000_000,
                value: 9,
            },
            "82 08 fa 56 ea 00 00 09",
        ),
        (
            Action::TrafficMarking { dscp: 46 },
            "80 09 00 00 00 00 00 2e",
        ),
    ];
    for (a, bytes) in cases {
        let ec = a.to_ext_community();
        assert_eq!(hex(&ec.0), bytes, "{a:?}");
        assert_eq!(Action::from_ext_community(ec), Some(a));
        assert_eq!(a.to_string().parse::<Action>().unwrap(), a, "text of {a:?}");
    }
    // Not actions, or actions deflect would never send.
    let nan = ExtCommunity([0x80, 0x06, 0, 0, 0x7f, 0xc0, 0, 0]);
    assert_eq!(Action::from_ext_community(nan), None);
    assert_eq!(
        Action::from_ext_community(ExtCommunity([0, 2, 0, 1, 0, 0, 0, 1])),
        None
    );
    assert!("rate-bytes -5".parse::<Action>().is_err());
    assert!("rate-bytes NaN".parse::<Action>().is_err());
    assert!("mark 64".parse::<Action>().is_err());
}

#[test]
fn flow_routes_round_trip_through_text() {
    for t in [
        "dst 192.0.2.1/32 proto udp sport 53,123 pkt-len >=512 then discard",
        "dst 2001:db8::1/128 next-header tcp dport 80,443 tcp-flags syn&!~ack then rate-bytes 125000",
        "dst 192.0.2.0/24 then traffic-action sample+continue redirect 65000:100 mark 0",
        "dst 192.0.2.0/24 then rate-packets 65000:10.5 redirect-as4 65000:1 redirect 192.0.2.1:5",
    ] {
        let r: FlowRoute = t.parse().unwrap();
        assert_eq!(r.to_string(), t);
    }
}

#[test]
fn precedence_puts_more_specific_destinations_first() {
    let a: Rule = "dst 192.0.2.0/24".parse().unwrap();
    let b: Rule = "dst 192.0.2.0/25".parse().unwrap();
    let c: Rule = "dst 198.51.100.0/24".parse().unwrap();
    let d: Rule = "src 192.0.2.0/24".parse().unwrap();
    assert_eq!(b.precedence_cmp(&a), std::cmp::Ordering::Less);
    assert_eq!(a.precedence_cmp(&c), std::cmp::Ordering::Less);
    assert_eq!(
        a.precedence_cmp(&d),
        std::cmp::Ordering::Less,
        "a rule with a destination comes first"
    );
}

// ----------------------------------------------------------------------------------------------
// Properties

fn numeric_list(max: u64) -> impl Strategy<Value = Vec<NumericOp>> {
    // 1..4 OR-terms of one equality or one range: always satisfiable.
    prop::collection::vec((0..=max, 0..=max, any::<bool>()), 1..4).prop_map(|terms| {
        let mut ops = Vec::new();
        for (a, b, range) in terms {
            let (lo, hi) = (a.min(b), a.max(b));
            if range {
                ops.push(NumericOp {
                    and: false,
                    lt: false,
                    gt: true,
                    eq: true,
                    value: lo,
                });
                ops.push(NumericOp {
                    and: true,
                    lt: true,
                    gt: false,
                    eq: true,
                    value: hi,
                });
            } else {
                ops.push(NumericOp::eq(lo));
            }
        }
        ops
    })
}

fn bitmask_list(max: u64) -> impl Strategy<Value = Vec<BitmaskOp>> {
    prop::collection::vec((1..=max, 0..2u8), 1..3).prop_map(|v| {
        v.into_iter()
            .map(|(value, kind)| BitmaskOp {
                and: false,
                not: false,
                matched: kind == 1,
                value,
            })
            .collect()
    })
}

/// Valid components of a rule, in type order, with their family.
fn arb_components() -> impl Strategy<Value = (Afi, Vec<Component>)> {
    (
        any::<bool>(),
        any::<[u8; 16]>(),
        0u8..=32,
        0u8..=128,
        prop::option::of(numeric_list(65535)),
        prop::option::of(numeric_list(65535)),
        prop::option::of(bitmask_list(0xff)),
        prop::option::of(numeric_list(63)),
        prop::option::of(bitmask_list(0x0e)),
        prop::option::of(numeric_list(0xfffff)),
    )
        .prop_filter_map(
            "valid",
            |(v6, addr, l4, l6, dport, plen, flags, dscp, frag, label)| {
                let mut c = Vec::new();
                let afi = if v6 { Afi::Ipv6 } else { Afi::Ipv4 };
                let net: ipnet::IpNet = if v6 {
                    ipnet::Ipv6Net::new(addr.into(), l6).ok()?.trunc().into()
                } else {
                    ipnet::Ipv4Net::new(Ipv4Addr::new(addr[0], addr[1], addr[2], addr[3]), l4)
                        .ok()?
                        .trunc()
                        .into()
                };
                c.push(Component::DestinationPrefix(Prefix::from(net)));
                if let Some(d) = dport {
                    c.push(Component::DestinationPort(d));
                }
                if let Some(p) = plen {
                    c.push(Component::PacketLength(p));
                }
                if let Some(f) = flags {
                    c.push(Component::TcpFlags(f));
                }
                if let Some(d) = dscp {
                    c.push(Component::Dscp(d));
                }
                if let Some(f) = frag {
                    c.push(Component::Fragment(f));
                }
                if let (Some(l), true) = (label, v6) {
                    c.push(Component::FlowLabel(l));
                }
                c.sort_by_key(Component::type_code);
                Rule::with_options(afi, c.clone(), &RuleOptions::LONG_FORM).ok()?;
                Some((afi, c))
            },
        )
}

fn arb_rule() -> impl Strategy<Value = Rule> {
    arb_components()
        .prop_map(|(afi, c)| Rule::with_options(afi, c, &RuleOptions::LONG_FORM).unwrap())
}

proptest! {
    #[test]
    fn any_valid_rule_survives_the_wire((afi, components) in arb_components()) {
        // A rule keeps its wire form only: the components it gives back are decoded from it.
        let rule = Rule::with_options(afi, components.clone(), &RuleOptions::LONG_FORM).unwrap();
        prop_assert_eq!(&rule.components(), &components);
        let (back, n) = Rule::decode(rule.afi(), rule.wire()).unwrap();
        prop_assert_eq!(n, rule.wire().len());
        prop_assert_eq!(back.components(), components);
        prop_assert_eq!(back, rule);
    }

    #[test]
    fn any_valid_rule_survives_its_text(rule in arb_rule()) {
        let text = rule.to_string();
        let back = parse_rule(&text, &RuleOptions::LONG_FORM).unwrap();
        prop_assert_eq!(back, rule, "{}", text);
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder(bytes in prop::collection::vec(any::<u8>(), 0..300), v6: bool) {
        let afi = if v6 { Afi::Ipv6 } else { Afi::Ipv4 };
        let _ = Rule::decode(afi, &bytes);
        let _ = decode_nlri_list(afi, &bytes);
    }

    #[test]
    fn arbitrary_text_never_panics_the_parser(s in "[a-z0-9 ./:,&!=<>~+-]{0,80}") {
        let _ = s.parse::<FlowRoute>();
    }

    #[test]
    fn arbitrary_ext_communities_round_trip_when_they_are_actions(b: [u8; 8]) {
        if let Some(a) = Action::from_ext_community(ExtCommunity(b)) {
            let back = Action::from_ext_community(a.to_ext_community());
            prop_assert_eq!(back, Some(a));
        }
    }
}
