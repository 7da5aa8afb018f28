//! UPDATE and whole messages: byte vectors both ways, RFC 7606 verdicts for malformed input, and
//! properties.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{Bytes, BytesMut};
use deflect_bgp::attr::{
    AsPath, Attributes, MpReach, MpUnreach, NextHop, Nlri, Origin, RawAttribute,
};
use deflect_bgp::codec::CodecCtx;
use deflect_bgp::community::{Community, LargeCommunity};
use deflect_bgp::flowspec::{Action, Rule};
use deflect_bgp::header;
use deflect_bgp::iana::Family;
use deflect_bgp::message::{Message, RouteRefresh};
use deflect_bgp::notification::Notification;
use deflect_bgp::update::{Update, UpdateErrorKind};
use deflect_bgp::verdict::Verdict;
use proptest::prelude::*;

const AS4: CodecCtx = CodecCtx {
    four_octet_as: true,
    extended_message: false,
};
const AS2: CodecCtx = CodecCtx {
    four_octet_as: false,
    extended_message: false,
};

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

fn encode(ctx: &CodecCtx, m: &Message) -> Vec<u8> {
    let mut b = BytesMut::new();
    m.encode(ctx, &mut b).unwrap();
    b.to_vec()
}

/// Both ways, with a hex diff on failure.
fn check(ctx: &CodecCtx, m: Message, bytes: &str) {
    let want = unhex(bytes);
    assert_eq!(hex(&encode(ctx, &m)), hex(&want), "encoding of {m:?}");
    assert_eq!(
        Message::decode(ctx, &want).unwrap(),
        m,
        "decoding of {}",
        hex(&want)
    );
}

fn marker_and(len: u16, ty: u8) -> String {
    format!(
        "{} {:02x} {:02x} {ty:02x}",
        ["ff"; 16].join(" "),
        len >> 8,
        len & 0xff
    )
}

#[test]
fn rtbh_ipv4_slash_32_with_blackhole_and_no_export() {
    let u = Update {
        attributes: Attributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65000])),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 66)),
            communities: vec![Community::BLACKHOLE, Community::NO_EXPORT],
            ..Attributes::default()
        },
        nlri: vec!["198.51.100.9/32".parse().unwrap()],
        ..Update::default()
    };
    let body = concat!(
        "00 00 00 1f ",                      // no withdrawn routes; 31 octets of attributes
        "40 01 01 00 ",                      // ORIGIN IGP
        "40 02 06 02 01 00 00 fd e8 ",       // AS_PATH: sequence of one 4-octet AS, 65000
        "40 03 04 c0 00 02 42 ",             // NEXT_HOP 192.0.2.66
        "c0 08 08 ff ff 02 9a ff ff ff 01 ", // COMMUNITIES 65535:666, NO_EXPORT
        "20 c6 33 64 09",                    // 198.51.100.9/32
    );
    check(
        &AS4,
        Message::Update(u),
        &format!("{} {body}", marker_and(59, 2)),
    );
}

#[test]
fn rtbh_ipv6_goes_in_mp_reach_with_a_16_octet_next_hop() {
    let u = Update {
        attributes: Attributes {
            mp_reach: Some(MpReach {
                family: Family::Ipv6Unicast,
                next_hop: NextHop::V6("2001:db8::66".parse().unwrap()),
                nlri: vec![Nlri::Ipv6("2001:db8:1::9/128".parse().unwrap())],
            }),
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65000])),
            communities: vec![Community::BLACKHOLE],
            ..Attributes::default()
        },
        ..Update::default()
    };
    let body = concat!(
        "00 00 00 3d ",
        "80 0e 26 00 02 01 10 20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 66 00 ",
        "80 20 01 0d b8 00 01 00 00 00 00 00 00 00 00 00 09 ",
        "40 01 01 00 40 02 06 02 01 00 00 fd e8 c0 08 04 ff ff 02 9a",
    );
    check(
        &AS4,
        Message::Update(u),
        &format!("{} {body}", marker_and(84, 2)),
    );
}

#[test]
fn flowspec_reach_has_no_next_hop_and_carries_its_action() {
    let rule: Rule = "dst 192.0.2.0/24 proto tcp port 25".parse().unwrap();
    let u = Update {
        attributes: Attributes {
            mp_reach: Some(MpReach {
                family: Family::Ipv4FlowSpec,
                next_hop: NextHop::None,
                nlri: vec![Nlri::FlowSpec(rule)],
            }),
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65000])),
            ext_communities: vec![Action::DISCARD.to_ext_community()],
            ..Attributes::default()
        },
        ..Update::default()
    };
    let body = concat!(
        "00 00 00 2c ",
        "80 0e 11 00 01 85 00 00 0b 01 18 c0 00 02 03 81 06 04 81 19 ", // AFI 1 SAFI 133, next-hop length 0
        "40 01 01 00 40 02 06 02 01 00 00 fd e8 ",
        "c0 10 08 80 06 00 00 00 00 00 00",
    );
    check(
        &AS4,
        Message::Update(u),
        &format!("{} {body}", marker_and(67, 2)),
    );
}

#[test]
fn flowspec_and_unicast_withdrawals() {
    let rule: Rule = "dst 192.0.2.0/24 proto tcp port 25".parse().unwrap();
    let u = Update {
        attributes: Attributes {
            mp_unreach: Some(MpUnreach {
                family: Family::Ipv4FlowSpec,
                withdrawn: vec![Nlri::FlowSpec(rule)],
            }),
            ..Attributes::default()
        },
        ..Update::default()
    };
    check(
        &AS4,
        Message::Update(u),
        &format!(
            "{} 00 00 00 12 80 0f 0f 00 01 85 0b 01 18 c0 00 02 03 81 06 04 81 19",
            marker_and(41, 2)
        ),
    );
    let u = Update {
        withdrawn: vec!["198.51.100.9/32".parse().unwrap()],
        ..Update::default()
    };
    check(
        &AS4,
        Message::Update(u),
        &format!("{} 00 05 20 c6 33 64 09 00 00", marker_and(28, 2)),
    );
}

#[test]
fn end_of_rib_for_each_family() {
    for f in Family::ALL {
        let u = Update::end_of_rib(f);
        let bytes = encode(&AS4, &Message::Update(u.clone()));
        let Message::Update(back) = Message::decode(&AS4, &bytes).unwrap() else {
            panic!()
        };
        assert_eq!(back.end_of_rib_family(), Some(f), "{}", hex(&bytes));
    }
    assert_eq!(
        hex(&encode(
            &AS4,
            &Message::Update(Update::end_of_rib(Family::Ipv4Unicast))
        )),
        hex(&unhex(&format!("{} 00 00 00 00", marker_and(23, 2))))
    );
    assert_eq!(
        hex(&encode(
            &AS4,
            &Message::Update(Update::end_of_rib(Family::Ipv6FlowSpec))
        )),
        hex(&unhex(&format!(
            "{} 00 00 00 06 80 0f 03 00 02 85",
            marker_and(29, 2)
        )))
    );
}

#[test]
fn two_octet_sessions_carry_as_trans_and_as4_path() {
    let u = Update {
        attributes: Attributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![4_200_000_000])),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 66)),
            ..Attributes::default()
        },
        nlri: vec!["198.51.100.0/24".parse().unwrap()],
        ..Update::default()
    };
    let bytes = encode(&AS2, &Message::Update(u));
    let body = concat!(
        "00 00 00 1b 40 01 01 00 ",
        "40 02 04 02 01 5b a0 ", // AS_PATH with AS_TRANS (23456)
        "40 03 04 c0 00 02 42 ",
        "c0 11 06 02 01 fa 56 ea 00 ", // AS4_PATH with the real 4-octet AS
        "18 c6 33 64",
    );
    assert_eq!(
        hex(&bytes),
        hex(&unhex(&format!("{} {body}", marker_and(54, 2))))
    );
    let Message::Update(back) = Message::decode(&AS2, &bytes).unwrap() else {
        panic!()
    };
    assert_eq!(
        back.attributes.as4_path,
        Some(AsPath::sequence(vec![4_200_000_000]))
    );
}

#[test]
fn large_communities_and_unknown_transitive_attributes_round_trip() {
    let u = Update {
        attributes: Attributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::empty()),
            next_hop: Some(Ipv4Addr::new(192, 0, 2, 66)),
            local_pref: Some(100),
            large_communities: vec![LargeCommunity {
                global: 65000,
                local1: 1,
                local2: 666,
            }],
            unknown: vec![RawAttribute {
                flags: 0xe0,
                type_code: 99,
                value: Bytes::from_static(b"hi"),
            }],
            ..Attributes::default()
        },
        nlri: vec!["198.51.100.0/24".parse().unwrap()],
        ..Update::default()
    };
    let bytes = encode(&AS4, &Message::Update(u.clone()));
    assert!(
        hex(&bytes).contains("c0 20 0c 00 00 fd e8 00 00 00 01 00 00 02 9a"),
        "{}",
        hex(&bytes)
    );
    // Passed on with the Partial bit set (RFC 4271 §5).
    assert!(hex(&bytes).contains("e0 63 02 68 69"), "{}", hex(&bytes));
    let Message::Update(back) = Message::decode(&AS4, &bytes).unwrap() else {
        panic!()
    };
    assert_eq!(back.attributes, u.attributes);
}

#[test]
fn keepalive_notification_and_route_refresh_vectors() {
    check(&AS4, Message::Keepalive, &marker_and(19, 4));
    check(
        &AS4,
        Message::Notification(Notification::cease_admin_shutdown("bye")),
        &format!("{} 06 02 03 62 79 65", marker_and(25, 3)),
    );
    check(
        &AS4,
        Message::Notification(Notification::hold_timer_expired()),
        &format!("{} 04 00", marker_and(21, 3)),
    );
    check(
        &AS4,
        Message::RouteRefresh(RouteRefresh {
            afi: 1,
            subtype: 0,
            safi: 133,
        }),
        &format!("{} 00 01 00 85", marker_and(23, 5)),
    );
    let long_keepalive = unhex(&format!("{} 00", marker_and(20, 4)));
    let e = Message::decode(&AS4, &long_keepalive).unwrap_err();
    assert_eq!((e.notification().code, e.notification().subcode), (1, 2));
}

fn with_header(body: &str) -> Vec<u8> {
    let b = unhex(body);
    let mut v = unhex(&marker_and((19 + b.len()) as u16, 2));
    v.extend_from_slice(&b);
    v
}

const ORIGIN_ASPATH_NH: &str = "40 01 01 00 40 02 00 40 03 04 c0 00 02 42";

/// Malformed UPDATEs, the verdict they get (RFC 7606), and the NOTIFICATION when the session resets.
#[test]
fn malformed_updates_get_their_rfc7606_verdicts() {
    struct Case {
        what: &'static str,
        body: String,
        verdict: Verdict,
        notification: Option<(u8, u8)>,
    }
    let nlri = "18 c6 33 64";
    let cases = vec![
        Case { what: "withdrawn length beyond the message", body: "00 09 00 00".into(), verdict: Verdict::SessionReset, notification: Some((3, 1)) },
        Case { what: "attribute length beyond the message", body: "00 00 00 40 40 01 01 00".into(), verdict: Verdict::SessionReset, notification: Some((3, 1)) },
        Case { what: "ORIGIN value 7", body: format!("00 00 00 0e 40 01 01 07 40 02 00 40 03 04 c0 00 02 42 {nlri}"), verdict: Verdict::TreatAsWithdraw, notification: None },
        Case { what: "ORIGIN of two octets", body: format!("00 00 00 0f 40 01 02 00 00 40 02 00 40 03 04 c0 00 02 42 {nlri}"), verdict: Verdict::TreatAsWithdraw, notification: None },
        Case { what: "AS_PATH segment overruns", body: format!("00 00 00 11 40 01 01 00 40 02 03 02 05 00 40 03 04 c0 00 02 42 {nlri}"), verdict: Verdict::TreatAsWithdraw, notification: None },
        Case { what: "NEXT_HOP of 3 octets", body: format!("00 00 00 0d 40 01 01 00 40 02 00 40 03 03 c0 00 02 {nlri}"), verdict: Verdict::TreatAsWithdraw, notification: None },
        Case { what: "missing NEXT_HOP", body: format!("00 00 00 07 40 01 01 00 40 02 00 {nlri}"), verdict: Verdict::TreatAsWithdraw, notification: None },
        Case { what: "COMMUNITIES of 3 octets", body: format!("00 00 00 14 {ORIGIN_ASPATH_NH} c0 08 03 00 00 01 {nlri}"), verdict: Verdict::TreatAsWithdraw, notification: None },
        Case { what: "ORIGIN flagged optional", body: format!("00 00 00 0e c0 01 01 00 40 02 00 40 03 04 c0 00 02 42 {nlri}"), verdict: Verdict::TreatAsWithdraw, notification: None },
        Case { what: "ATOMIC_AGGREGATE with a value", body: format!("00 00 00 12 {ORIGIN_ASPATH_NH} 40 06 01 00 {nlri}"), verdict: Verdict::Discard, notification: None },
        Case { what: "ORIGIN twice", body: format!("00 00 00 12 {ORIGIN_ASPATH_NH} 40 01 01 02 {nlri}"), verdict: Verdict::Discard, notification: None },
        Case { what: "unknown well-known attribute", body: format!("00 00 00 11 {ORIGIN_ASPATH_NH} 40 63 00 {nlri}"), verdict: Verdict::SessionReset, notification: Some((3, 2)) },
        Case { what: "MP_REACH twice", body: "00 00 00 10 80 0e 05 00 01 85 00 00 80 0e 05 00 01 85 00 00".into(), verdict: Verdict::SessionReset, notification: Some((3, 1)) },
        Case { what: "MP_REACH next hop overruns", body: "00 00 00 07 80 0e 04 00 01 85 09".into(), verdict: Verdict::SessionReset, notification: Some((3, 9)) },
        Case { what: "FlowSpec NLRI overruns MP_REACH", body: "00 00 00 09 80 0e 06 00 01 85 00 00 05".into(), verdict: Verdict::SessionReset, notification: Some((3, 9)) },
        Case { what: "FlowSpec NLRI out of order (framing intact)", body: "00 00 00 19 80 0e 0f 00 01 85 00 00 09 03 81 06 01 20 c0 00 02 01 40 01 01 00 40 02 00".into(), verdict: Verdict::TreatAsWithdraw, notification: None },
        Case { what: "NLRI prefix length 33", body: "00 00 00 00 21 c6 33 64 09 00".into(), verdict: Verdict::SessionReset, notification: Some((3, 10)) },
    ];
    for c in cases {
        let msg = with_header(&c.body);
        match Message::decode(&AS4, &msg) {
            Ok(Message::Update(u)) => {
                assert_eq!(u.worst_verdict(), Some(c.verdict), "{}: {u:?}", c.what);
                if c.verdict == Verdict::TreatAsWithdraw {
                    assert!(u.treat_as_withdraw && u.nlri.is_empty(), "{}", c.what);
                    assert!(u.attributes.mp_reach.is_none(), "{}", c.what);
                }
            }
            Ok(other) => panic!("{}: {other:?}", c.what),
            Err(e) => {
                assert_eq!(e.verdict(), c.verdict, "{}: {e}", c.what);
                let n = e.notification();
                assert_eq!(Some((n.code, n.subcode)), c.notification, "{}: {e}", c.what);
            }
        }
    }
}

#[test]
fn missing_well_known_attribute_notification_names_it() {
    let msg = with_header("00 00 00 07 40 01 01 00 40 02 00 18 c6 33 64");
    let Message::Update(u) = Message::decode(&AS4, &msg).unwrap() else {
        panic!()
    };
    let p = u
        .problems
        .iter()
        .find(|p| matches!(p.kind, UpdateErrorKind::MissingWellKnown(3)))
        .unwrap();
    assert_eq!(
        (
            p.notification().code,
            p.notification().subcode,
            p.notification().data.as_ref()
        ),
        (3, 3, &[3u8][..])
    );
}

#[test]
fn every_truncation_of_a_valid_update_is_refused_or_decodes_without_panic() {
    let rule: Rule = "dst 192.0.2.0/24 proto tcp dport 25,80 tcp-flags syn"
        .parse()
        .unwrap();
    let u = Update {
        attributes: Attributes {
            mp_reach: Some(MpReach {
                family: Family::Ipv4FlowSpec,
                next_hop: NextHop::None,
                nlri: vec![Nlri::FlowSpec(rule)],
            }),
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::sequence(vec![65000, 4_200_000_000])),
            ext_communities: vec![Action::DISCARD.to_ext_community()],
            ..Attributes::default()
        },
        ..Update::default()
    };
    let mut body = BytesMut::new();
    u.encode(&AS4, &mut body);
    for n in 0..body.len() {
        let _ = Update::decode(&AS4, &body[..n]);
    }
    let whole = encode(&AS4, &Message::Update(u));
    for n in 0..whole.len() {
        assert!(
            Message::decode(&AS4, &whole[..n]).is_err(),
            "a {n}-octet prefix decoded"
        );
    }
}

#[test]
fn an_update_too_long_for_the_session_is_refused_by_the_encoder() {
    let nlri = (0..1100u32)
        .map(|i| ipnet::Ipv4Net::new(Ipv4Addr::from(0x0a00_0000 + (i << 8)), 24).unwrap())
        .collect();
    let u = Update {
        attributes: Attributes {
            origin: Some(Origin::Igp),
            as_path: Some(AsPath::empty()),
            next_hop: Some(Ipv4Addr::LOCALHOST),
            ..Attributes::default()
        },
        nlri,
        ..Update::default()
    };
    let mut b = BytesMut::new();
    let e = Message::Update(u.clone()).encode(&AS4, &mut b).unwrap_err();
    assert_eq!(e.max, header::MAX_LEN);
    assert!(b.is_empty());
    let ext = CodecCtx {
        four_octet_as: true,
        extended_message: true,
    };
    Message::Update(u).encode(&ext, &mut b).unwrap();
    assert!(b.len() > 4096);
}

fn arb_attrs() -> impl Strategy<Value = Attributes> {
    (
        prop::option::of(0u8..3),
        prop::collection::vec(any::<u32>(), 0..5),
        prop::option::of(any::<u32>()),
        prop::option::of(any::<u32>()),
        prop::collection::vec(any::<u32>(), 0..4),
        prop::collection::vec(any::<[u8; 8]>(), 0..3),
        prop::collection::vec((any::<u32>(), any::<u32>(), any::<u32>()), 0..3),
        any::<[u8; 16]>(),
    )
        .prop_map(|(o, path, med, lp, comms, ecs, lcs, v6)| Attributes {
            origin: Some(
                [Origin::Igp, Origin::Egp, Origin::Incomplete][usize::from(o.unwrap_or(0))],
            ),
            as_path: Some(AsPath::sequence(path)),
            med,
            local_pref: lp,
            communities: comms.into_iter().map(Community).collect(),
            ext_communities: ecs
                .into_iter()
                .map(deflect_bgp::community::ExtCommunity)
                .collect(),
            large_communities: lcs
                .into_iter()
                .map(|(g, a, b)| LargeCommunity {
                    global: g,
                    local1: a,
                    local2: b,
                })
                .collect(),
            mp_reach: Some(MpReach {
                family: Family::Ipv6Unicast,
                next_hop: NextHop::V6(Ipv6Addr::from(v6)),
                nlri: vec![Nlri::Ipv6("2001:db8::/32".parse().unwrap())],
            }),
            ..Attributes::default()
        })
}

proptest! {
    #[test]
    fn arbitrary_attributes_survive_the_wire(a in arb_attrs()) {
        let u = Update { attributes: a, ..Update::default() };
        let bytes = encode(&AS4, &Message::Update(u.clone()));
        let back = Message::decode(&AS4, &bytes).unwrap();
        prop_assert_eq!(back, Message::Update(u));
    }

    #[test]
    fn arbitrary_bytes_never_panic_message_decoding(body in prop::collection::vec(any::<u8>(), 0..200), ty in 1u8..=5) {
        let mut msg = unhex(&marker_and((19 + body.len()) as u16, ty));
        msg.extend_from_slice(&body);
        let _ = Message::decode(&AS4, &msg);
        let _ = Message::decode(&AS2, &msg);
        let _ = header::frame(&msg, header::MAX_LEN);
    }

    #[test]
    fn arbitrary_attribute_lists_never_panic(attrs in prop::collection::vec(any::<u8>(), 0..120)) {
        let mut body = vec![0, 0];
        body.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        body.extend_from_slice(&attrs);
        let _ = Update::decode(&AS4, &body);
    }
}
