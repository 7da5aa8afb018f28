//! The Adj-RIB-Out: what a peer is sent, in which messages, and when.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::BytesMut;
use deflect_bgp::attr::Nlri;
use deflect_bgp::codec::CodecCtx;
use deflect_bgp::community::Community;
use deflect_bgp::flowspec::{Action, Component, NumericOp, Rule, RuleOptions};
use deflect_bgp::iana::{Afi, Family};
use deflect_bgp::message::Message;
use deflect_bgp::rib::{AdjRibOut, RibError, RouteAttrs, RouteKey, SessionCtx};
use deflect_bgp::update::Update;

fn ctx(ebgp: bool, extended: bool) -> SessionCtx {
    SessionCtx {
        local_as: 65000,
        ebgp,
        codec: CodecCtx {
            four_octet_as: true,
            extended_message: extended,
        },
        families: Family::ALL.into_iter().collect(),
        max_flowspec_nlri_len: 239,
    }
}

fn discard() -> Arc<RouteAttrs> {
    Arc::new(RouteAttrs {
        ext_communities: vec![Action::DISCARD.to_ext_community()],
        ..RouteAttrs::default()
    })
}

fn flow(i: u32) -> RouteKey {
    let text = format!(
        "dst 10.{}.{}.{}/32 proto udp sport 53",
        (i >> 16) & 0xff,
        (i >> 8) & 0xff,
        i & 0xff
    );
    RouteKey::FlowSpec(text.parse::<Rule>().unwrap())
}

fn rtbh(p: &str) -> (RouteKey, Arc<RouteAttrs>) {
    (
        RouteKey::Unicast(p.parse().unwrap()),
        Arc::new(RouteAttrs {
            next_hop: Some(if p.contains(':') {
                "2001:db8::66".parse().unwrap()
            } else {
                "192.0.2.66".parse().unwrap()
            }),
            communities: vec![Community::BLACKHOLE],
            ..RouteAttrs::default()
        }),
    )
}

/// Drains everything and decodes it back: (updates, NLRI announced, NLRI withdrawn, End-of-RIBs).
fn drain_all(
    rib: &mut AdjRibOut,
    codec: &CodecCtx,
) -> (Vec<Update>, Vec<Nlri>, Vec<Nlri>, Vec<Family>) {
    let mut out = BytesMut::new();
    while rib.drain(&mut out, 1000) > 0 {}
    let mut updates = Vec::new();
    let (mut ann, mut wd, mut eor) = (Vec::new(), Vec::new(), Vec::new());
    let mut buf = &out[..];
    while !buf.is_empty() {
        let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
        assert!(len <= codec.max_len(), "message of {len} octets");
        let Message::Update(u) = Message::decode(codec, &buf[..len]).unwrap() else {
            panic!("not an UPDATE")
        };
        assert!(u.problems.is_empty(), "{:?}", u.problems);
        if let Some(f) = u.end_of_rib_family() {
            eor.push(f);
        }
        ann.extend(u.nlri.iter().map(|p| Nlri::Ipv4(*p)));
        wd.extend(u.withdrawn.iter().map(|p| Nlri::Ipv4(*p)));
        if let Some(m) = &u.attributes.mp_reach {
            ann.extend(m.nlri.iter().cloned());
        }
        if let Some(m) = &u.attributes.mp_unreach {
            wd.extend(m.withdrawn.iter().cloned());
        }
        updates.push(u);
        buf = &buf[len..];
    }
    (updates, ann, wd, eor)
}

#[test]
fn on_session_up_every_route_is_sent_then_one_end_of_rib_per_family() {
    let mut rib = AdjRibOut::new();
    rib.set(flow(1), discard()).unwrap();
    let (k, a) = rtbh("198.51.100.9/32");
    rib.set(k, a).unwrap();
    let (k, a) = rtbh("2001:db8::9/128");
    rib.set(k, a).unwrap();
    let c = ctx(true, false);
    rib.session_up(c.clone());
    let (updates, ann, wd, eor) = drain_all(&mut rib, &c.codec);
    assert_eq!(ann.len(), 3);
    assert!(wd.is_empty());
    assert_eq!(
        eor.iter().copied().collect::<BTreeSet<_>>(),
        Family::ALL.into_iter().collect()
    );
    // End-of-RIB comes after the routes.
    assert_eq!(
        updates.iter().position(|u| u.end_of_rib_family().is_some()),
        Some(3)
    );
    assert!(rib.is_synced());
    assert_eq!(rib.advertised_len(), 3);
}

#[test]
fn end_of_rib_waits_while_held_and_follows_the_table_once_it_is_complete() {
    let mut rib = AdjRibOut::new();
    rib.hold_end_of_rib(true);
    rib.set(flow(1), discard()).unwrap();
    let c = ctx(true, false);
    rib.session_up(c.clone());
    // What there is goes out; End-of-RIB does not, and nothing more is to be written.
    let (_, ann, _, eor) = drain_all(&mut rib, &c.codec);
    assert_eq!((ann.len(), eor.len()), (1, 0));
    assert!(!rib.has_work());
    assert!(!rib.is_synced());
    // The rest of the table, then complete: the routes, then End-of-RIB per family.
    rib.set(flow(2), discard()).unwrap();
    assert!(rib.has_work());
    rib.hold_end_of_rib(false);
    let (updates, ann, _, eor) = drain_all(&mut rib, &c.codec);
    assert_eq!(ann.len(), 1);
    assert_eq!(
        eor.iter().copied().collect::<BTreeSet<_>>(),
        Family::ALL.into_iter().collect()
    );
    assert!(updates[0].end_of_rib_family().is_none());
    assert!(rib.is_synced() && !rib.has_work());
    // A session that comes up again later: the table, then End-of-RIB at once.
    rib.session_down();
    rib.session_up(c.clone());
    let (_, ann, _, eor) = drain_all(&mut rib, &c.codec);
    assert_eq!((ann.len(), eor.len()), (2, Family::ALL.len()));
}

#[test]
fn routes_sharing_attributes_are_packed_into_few_messages_within_4096_octets() {
    let mut rib = AdjRibOut::new();
    for i in 0..1000 {
        rib.set(flow(i), discard()).unwrap();
    }
    let c = ctx(true, false);
    rib.session_up(c.clone());
    let (updates, ann, _, _) = drain_all(&mut rib, &c.codec);
    assert_eq!(ann.len(), 1000);
    // Each NLRI is 15 octets: about 268 fit in 4096.
    let route_updates = updates.len() - 4;
    assert_eq!(
        route_updates, 4,
        "1000 rules of 15 octets need 4 messages of 4096"
    );

    let mut rib = AdjRibOut::new();
    for i in 0..1000 {
        rib.set(flow(i), discard()).unwrap();
    }
    let c = ctx(true, true);
    rib.session_up(c.clone());
    let (updates, ann, _, _) = drain_all(&mut rib, &c.codec);
    assert_eq!(ann.len(), 1000);
    assert_eq!(
        updates.len() - 4,
        1,
        "with extended messages one UPDATE carries them all"
    );
}

#[test]
fn flowspec_routes_carry_no_next_hop_and_ebgp_routes_carry_our_as() {
    let mut rib = AdjRibOut::new();
    rib.set(flow(1), discard()).unwrap();
    let c = ctx(true, false);
    rib.session_up(c.clone());
    let (updates, ..) = drain_all(&mut rib, &c.codec);
    let a = &updates[0].attributes;
    let mp = a.mp_reach.as_ref().unwrap();
    assert_eq!(mp.next_hop, deflect_bgp::attr::NextHop::None);
    assert_eq!(a.next_hop, None);
    assert_eq!(
        a.as_path,
        Some(deflect_bgp::attr::AsPath::sequence(vec![65000]))
    );
    assert_eq!(a.local_pref, None);
    assert_eq!(a.ext_communities, vec![Action::DISCARD.to_ext_community()]);
}

#[test]
fn ibgp_routes_have_an_empty_as_path_and_local_pref_100() {
    let mut rib = AdjRibOut::new();
    let (k, a) = rtbh("198.51.100.9/32");
    rib.set(k, a).unwrap();
    let c = ctx(false, false);
    rib.session_up(c.clone());
    let (updates, ..) = drain_all(&mut rib, &c.codec);
    let a = &updates[0].attributes;
    assert_eq!(a.as_path, Some(deflect_bgp::attr::AsPath::empty()));
    assert_eq!(a.local_pref, Some(100));
    assert_eq!(a.next_hop, Some("192.0.2.66".parse().unwrap()));
    assert_eq!(a.communities, vec![Community::BLACKHOLE]);
}

#[test]
fn a_withdrawal_carries_the_identical_nlri_bytes() {
    let mut rib = AdjRibOut::new();
    let c = ctx(true, false);
    rib.session_up(c.clone());
    rib.set(flow(7), discard()).unwrap();
    let (_, ann, ..) = drain_all(&mut rib, &c.codec);
    rib.remove(&flow(7));
    let (_, _, wd, _) = drain_all(&mut rib, &c.codec);
    assert_eq!(ann, wd);
    let (Nlri::FlowSpec(a), Nlri::FlowSpec(w)) = (&ann[0], &wd[0]) else {
        panic!()
    };
    assert_eq!(a.wire(), w.wire());
}

#[test]
fn changes_before_a_drain_are_coalesced() {
    let mut rib = AdjRibOut::new();
    let c = ctx(true, false);
    rib.session_up(c.clone());
    drain_all(&mut rib, &c.codec);
    // Announced and withdrawn before anything was sent: nothing goes out.
    rib.set(flow(1), discard()).unwrap();
    rib.remove(&flow(1));
    let (updates, ..) = drain_all(&mut rib, &c.codec);
    assert!(updates.is_empty());
    // Changed twice: only the last version is sent.
    let rate = Arc::new(RouteAttrs {
        ext_communities: vec![
            Action::TrafficRateBytes {
                asn: 0,
                rate: 1000.0,
            }
            .to_ext_community(),
        ],
        ..RouteAttrs::default()
    });
    rib.set(flow(2), discard()).unwrap();
    rib.set(flow(2), rate.clone()).unwrap();
    let (updates, ann, ..) = drain_all(&mut rib, &c.codec);
    assert_eq!(ann.len(), 1);
    assert_eq!(updates[0].attributes.ext_communities, rate.ext_communities);
    // Setting the same thing again sends nothing.
    assert!(!rib.set(flow(2), rate).unwrap());
    assert!(drain_all(&mut rib, &c.codec).0.is_empty());
}

#[test]
fn a_rule_longer_than_the_peer_takes_is_held_back_and_sent_where_allowed() {
    let ports: Vec<NumericOp> = (0..100).map(|i| NumericOp::eq(1000 + i * 3)).collect();
    let comps = vec![
        Component::Protocol(vec![NumericOp::eq(17)]),
        Component::DestinationPort(ports),
    ];
    let long = Rule::with_options(Afi::Ipv4, comps, &RuleOptions::LONG_FORM).unwrap();
    assert!(long.wire().len() >= 240);
    let key = RouteKey::FlowSpec(long);

    let mut rib = AdjRibOut::new();
    rib.set(key.clone(), discard()).unwrap();
    let c = ctx(true, false);
    rib.session_up(c.clone());
    let (_, ann, ..) = drain_all(&mut rib, &c.codec);
    assert!(ann.is_empty());
    assert!(rib.held_back().contains(&key));
    assert!(rib.held_back_reason(&key).unwrap().contains("at most 239"));
    assert_eq!(rib.stats().held_back, 1);

    let mut rib = AdjRibOut::new();
    rib.set(key.clone(), discard()).unwrap();
    rib.session_up(SessionCtx {
        max_flowspec_nlri_len: 4095,
        ..c.clone()
    });
    let (_, ann, ..) = drain_all(&mut rib, &c.codec);
    assert_eq!(ann.len(), 1);
}

#[test]
fn a_family_the_peer_did_not_negotiate_is_not_sent() {
    let mut rib = AdjRibOut::new();
    rib.set(flow(1), discard()).unwrap();
    let (k, a) = rtbh("198.51.100.9/32");
    rib.set(k, a).unwrap();
    let c = SessionCtx {
        families: [Family::Ipv4Unicast].into_iter().collect(),
        ..ctx(true, false)
    };
    rib.session_up(c.clone());
    let (_, ann, _, eor) = drain_all(&mut rib, &c.codec);
    assert_eq!(ann, vec![Nlri::Ipv4("198.51.100.9/32".parse().unwrap())]);
    assert_eq!(eor, vec![Family::Ipv4Unicast]);
    assert_eq!(rib.held_back().len(), 1);
}

#[test]
fn route_refresh_resends_the_family_and_a_new_session_resends_everything() {
    let mut rib = AdjRibOut::new();
    rib.set(flow(1), discard()).unwrap();
    let (k, a) = rtbh("198.51.100.9/32");
    rib.set(k, a).unwrap();
    let c = ctx(true, false);
    rib.session_up(c.clone());
    drain_all(&mut rib, &c.codec);
    rib.route_refresh(Family::Ipv4FlowSpec);
    let (_, ann, ..) = drain_all(&mut rib, &c.codec);
    assert_eq!(ann.len(), 1);
    assert!(matches!(ann[0], Nlri::FlowSpec(_)));

    rib.session_down();
    assert_eq!(
        rib.drain(&mut BytesMut::new(), 10),
        0,
        "nothing is written while down"
    );
    rib.remove(&flow(1));
    rib.session_up(c.clone());
    let (_, ann, wd, eor) = drain_all(&mut rib, &c.codec);
    assert_eq!(ann.len(), 1, "only what is still desired");
    assert!(wd.is_empty());
    assert_eq!(eor.len(), 4);
}

#[test]
fn a_withdrawal_after_a_route_refresh_is_still_sent() {
    let mut rib = AdjRibOut::new();
    rib.set(flow(1), discard()).unwrap();
    let c = ctx(true, false);
    rib.session_up(c.clone());
    drain_all(&mut rib, &c.codec);
    rib.route_refresh(Family::Ipv4FlowSpec);
    rib.remove(&flow(1));
    let (_, ann, wd, _) = drain_all(&mut rib, &c.codec);
    assert!(ann.is_empty());
    assert_eq!(wd.len(), 1);
    assert_eq!(rib.advertised_len(), 0);
}

#[test]
fn drain_respects_its_message_budget_and_keeps_the_rest_pending() {
    let mut rib = AdjRibOut::new();
    for i in 0..1000 {
        rib.set(flow(i), discard()).unwrap();
    }
    let c = ctx(true, false);
    rib.session_up(c.clone());
    let mut out = BytesMut::new();
    assert_eq!(rib.drain(&mut out, 2), 2);
    assert!(!rib.is_synced());
    let (_, ann, _, eor) = drain_all(&mut rib, &c.codec);
    assert!(
        ann.len() < 1000,
        "the first two messages were already written"
    );
    assert_eq!(rib.advertised_len(), 1000);
    assert_eq!(eor.len(), 4);
}

#[test]
fn routes_with_bad_next_hops_are_refused() {
    let mut rib = AdjRibOut::new();
    let nh = |s: &str| {
        Arc::new(RouteAttrs {
            next_hop: Some(s.parse().unwrap()),
            ..RouteAttrs::default()
        })
    };
    assert_eq!(
        rib.set(
            RouteKey::Unicast("198.51.100.9/32".parse().unwrap()),
            Arc::default()
        ),
        Err(RibError::MissingNextHop)
    );
    assert!(matches!(
        rib.set(
            RouteKey::Unicast("198.51.100.9/32".parse().unwrap()),
            nh("2001:db8::1")
        ),
        Err(RibError::NextHopFamily { .. })
    ));
    assert_eq!(
        rib.set(flow(1), nh("192.0.2.1")),
        Err(RibError::FlowSpecNextHop)
    );
}

#[test]
fn new_actions_for_an_advertised_rule_go_in_one_update_without_a_withdrawal() {
    let mut rib = AdjRibOut::new();
    let c = ctx(true, false);
    rib.session_up(c.clone());
    let rate = Arc::new(RouteAttrs {
        ext_communities: vec![
            Action::TrafficRateBytes {
                asn: 0,
                rate: 12_500.0,
            }
            .to_ext_community(),
        ],
        ..RouteAttrs::default()
    });
    rib.set(flow(7), rate).unwrap();
    drain_all(&mut rib, &c.codec);
    // The escalation: the same match, now discarded.
    assert!(rib.set(flow(7), discard()).unwrap());
    let (updates, ann, wd, _) = drain_all(&mut rib, &c.codec);
    assert_eq!(updates.len(), 1, "one UPDATE: {updates:?}");
    assert!(wd.is_empty(), "nothing withdrawn in between");
    assert_eq!(ann.len(), 1);
    assert_eq!(
        updates[0].attributes.ext_communities,
        vec![Action::DISCARD.to_ext_community()]
    );
    assert_eq!(rib.advertised(&flow(7)), Some(&discard()));
}

#[test]
fn desired_and_advertised_are_counted_apart_through_a_session_and_its_end() {
    let mut rib = AdjRibOut::new();
    rib.set(flow(1), discard()).unwrap();
    rib.set(flow(2), discard()).unwrap();
    assert_eq!((rib.desired_len(), rib.advertised_len()), (2, 0));
    let c = ctx(true, false);
    rib.session_up(c.clone());
    drain_all(&mut rib, &c.codec);
    assert_eq!((rib.desired_len(), rib.advertised_len()), (2, 2));
    // Undesired but still advertised until the withdrawal is written.
    assert!(rib.remove(&flow(1)));
    assert!(!rib.remove(&flow(1)), "removed twice");
    assert_eq!((rib.desired_len(), rib.advertised_len()), (1, 2));
    assert_eq!(rib.advertised(&flow(1)), Some(&discard()));
    let (_, _, wd, _) = drain_all(&mut rib, &c.codec);
    assert_eq!(wd.len(), 1);
    assert_eq!((rib.desired_len(), rib.advertised_len()), (1, 1));
    assert_eq!(rib.advertised(&flow(1)), None);
    // Down: the peer holds nothing, the desired route stays for the next session.
    rib.session_down();
    assert_eq!((rib.desired_len(), rib.advertised_len()), (1, 0));
    rib.session_up(c.clone());
    let (_, ann, _, _) = drain_all(&mut rib, &c.codec);
    assert_eq!(ann.len(), 1);
    assert_eq!((rib.desired_len(), rib.advertised_len()), (1, 1));
}
