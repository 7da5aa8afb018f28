//! The detector on synthetic reports: every vector, the boundaries, flapping, stale nodes.

use std::net::IpAddr;
use std::time::Duration;

use super::classify::tcp;
use super::*;
use crate::telemetry::{Flow, Report, Source, Target};

const VICTIM: &str = "203.0.113.7";

fn settings() -> Settings {
    let mut th = Thresholds {
        warmup: Duration::from_secs(60),
        half_life: Duration::from_secs(120),
        cooldown: Duration::from_secs(10),
        ..Thresholds::default()
    };
    th.floor_pps = [1000.0; Class::ALL.len()];
    th.floor_bps = 1e9;
    Settings {
        groups: vec![(
            "customers".into(),
            vec![
                "203.0.113.0/24".parse().unwrap(),
                "2001:db8:100::/48".parse().unwrap(),
            ],
            th,
        )],
        stale_after: Duration::from_secs(3),
        max_targets: 1000,
        max_targets_per_node: 1000,
        target_idle: Duration::from_secs(600),
        upstream: vec!["sflow:edge".into()],
        ..Settings::default()
    }
}

fn flow(proto: u8, sport: Option<u16>, dport: Option<u16>, flags: Option<u8>, pps: u64) -> Flow {
    Flow {
        proto,
        sport,
        dport,
        tcp_flags: flags,
        fragment: false,
        pps,
        bps: pps * 8 * 500,
    }
}

fn report(seq: u64, dst: &str, flows: Vec<Flow>) -> Report {
    let pps = flows.iter().map(|f| f.pps).sum();
    let bps = flows.iter().map(|f| f.bps).sum();
    Report {
        node: "web1".into(),
        seq,
        time_ms: 0,
        interval_ms: 1000,
        one_in: 1,
        sampled: 0,
        interfaces: Vec::new(),
        targets: vec![Target {
            dst: dst.parse().unwrap(),
            pps,
            bps,
            flows,
            // One host sends half of it: connection floods here come from few sources (see
            // `a_flash_crowd_is_no_attack` for the many).
            sources: vec![Source {
                addr: "198.51.100.9".parse().unwrap(),
                pps: pps / 2,
            }],
            trusted_pps: 0,
            trusted_bps: 0,
        }],
        rollups: Vec::new(),
        packets: Vec::new(),
        applied: Vec::new(),
        drop_error: None,
    }
}

/// Normal traffic: web serving, some DNS lookups' answers, a little ICMP.
fn normal() -> Vec<Flow> {
    vec![
        flow(6, None, Some(443), Some(tcp::ACK), 300),
        flow(6, None, Some(443), Some(tcp::SYN), 20),
        flow(17, Some(53), Some(40000), None, 10),
        flow(1, None, None, None, 2),
    ]
}

/// A detector that has learned a minute and a half of normal traffic; returns it and the clock.
fn warmed() -> (Detector, u64) {
    warmed_with(settings())
}

/// A detector with these settings, its baselines learned on 90 s of normal traffic.
fn warmed_with(s: Settings) -> (Detector, u64) {
    let mut d = Detector::new(s, 1);
    let mut now = 1_000_000;
    for seq in 0..90 {
        now += 1000;
        assert!(
            d.ingest("web1", &report(seq, VICTIM, normal()), now)
                .is_empty()
        );
    }
    (d, now)
}

fn with(extra: Flow) -> Vec<Flow> {
    let mut v = normal();
    v.push(extra);
    v
}

fn started(events: &[Event]) -> Vec<u64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Started(id) => Some(*id),
            _ => None,
        })
        .collect()
}

#[test]
fn every_vector_is_recognised_in_the_interval_it_starts() {
    let cases: Vec<(Vec<Flow>, Vector, &str)> = vec![
        (
            with(flow(6, None, Some(80), Some(tcp::SYN), 50_000)),
            Vector::SynFlood,
            "syn",
        ),
        (
            with(flow(6, None, Some(443), Some(tcp::ACK), 900_000)),
            Vector::AckFlood,
            "ack",
        ),
        (
            with(flow(6, None, Some(443), Some(tcp::RST), 30_000)),
            Vector::RstFlood,
            "rst",
        ),
        (
            with(flow(6, None, Some(443), Some(tcp::SYN | tcp::ACK), 30_000)),
            Vector::TcpFlagFlood,
            "syn-ack",
        ),
        (
            with(flow(17, None, Some(27015), None, 200_000)),
            Vector::UdpFlood,
            "udp",
        ),
        (
            with(flow(17, Some(123), Some(4444), None, 80_000)),
            Vector::Amplification,
            "ntp",
        ),
        (
            with(flow(17, Some(11211), None, None, 80_000)),
            Vector::Amplification,
            "memcached",
        ),
        (
            with(flow(1, None, None, None, 20_000)),
            Vector::IcmpFlood,
            "icmp",
        ),
        (
            with(flow(47, None, None, None, 30_000)),
            Vector::GreFlood,
            "gre",
        ),
        (
            with(Flow {
                fragment: true,
                ..flow(17, None, None, None, 30_000)
            }),
            Vector::FragmentFlood,
            "fragments",
        ),
        (
            vec![
                flow(6, None, Some(443), Some(tcp::SYN), 30_000),
                flow(6, None, Some(443), Some(tcp::ACK), 30_000),
            ],
            Vector::TcpConnectionFlood,
            "connections",
        ),
    ];
    for (flows, vector, what) in cases {
        let (mut d, now) = warmed();
        let ev = d.ingest("web1", &report(100, VICTIM, flows), now + 1000);
        let ids = started(&ev);
        assert_eq!(ids.len(), 1, "{what}: {ev:?}");
        let a = d.attack(ids[0]).unwrap();
        assert_eq!(a.vector, vector, "{what}");
        assert_eq!(a.target.to_string(), VICTIM);
        assert_eq!(a.group, "customers");
        assert!(a.timeline[0].what.starts_with("started"), "{what}");
        match vector {
            Vector::Amplification => {
                assert!(a.signature.service.is_some() && !a.signature.sports.is_empty())
            }
            Vector::SynFlood => {
                assert_eq!(a.signature.dports, vec![80]);
                assert_eq!(a.signature.tcp_flags, Some((tcp::SYN, tcp::ACK)));
            }
            Vector::FragmentFlood => assert!(a.signature.fragment),
            _ => {}
        }
        assert_eq!(
            a.signature.sources,
            vec!["198.51.100.9".parse::<IpAddr>().unwrap()]
        );
    }
}

#[test]
fn a_flood_no_class_explains_is_volumetric() {
    let (mut d, now) = warmed();
    // Many protocols, each under its floor, together 2 Gb/s.
    let flows: Vec<Flow> = (100..110u8)
        .map(|p| Flow {
            bps: 200_000_000,
            ..flow(p, None, None, None, 900)
        })
        .collect();
    let ev = d.ingest("web1", &report(100, VICTIM, flows), now + 1000);
    let ids = started(&ev);
    assert_eq!(ids.len(), 1, "{ev:?}");
    assert_eq!(d.attack(ids[0]).unwrap().vector, Vector::Volumetric);
}

#[test]
fn just_below_the_threshold_is_not_an_attack_and_just_above_is() {
    let (mut d, now) = warmed();
    let view = d.target(VICTIM.parse().unwrap()).unwrap();
    let syn = view
        .classes
        .iter()
        .find(|c| c.class == Class::TcpSyn)
        .unwrap()
        .threshold_pps;
    assert_eq!(syn, 1000.0, "the floor rules over a small baseline");
    let below = flow(6, None, Some(80), Some(tcp::SYN), 999 - 20);
    let mut flows = normal();
    flows[1] = flow(6, None, Some(443), Some(tcp::SYN), 20);
    flows.push(below);
    assert!(started(&d.ingest("web1", &report(100, VICTIM, flows.clone()), now + 1000)).is_empty());
    let last = flows.len() - 1;
    flows[last].pps = 1000 - 20;
    assert_eq!(
        started(&d.ingest("web1", &report(101, VICTIM, flows), now + 2000)).len(),
        1
    );
}

#[test]
fn the_baseline_scales_the_threshold_a_busy_server_is_not_flagged() {
    // A server that normally takes 5k SYN/s (a busy web front) is learned; 12k is above the
    // static floor (10k) but under three times the baseline, so not an attack; 20k is.
    let busy = |syn: u64| {
        vec![
            flow(6, None, Some(443), Some(tcp::ACK), 50_000),
            flow(6, None, Some(443), Some(tcp::SYN), syn),
        ]
    };
    let mut d = Detector::new(
        Settings {
            groups: vec![(
                "customers".into(),
                vec!["203.0.113.0/24".parse().unwrap()],
                Thresholds {
                    warmup: Duration::from_secs(60),
                    ..Thresholds::default()
                },
            )],
            ..settings()
        },
        1,
    );
    let mut now = 0;
    for seq in 0..120 {
        now += 1000;
        let syn = if seq % 2 == 0 { 4_800 } else { 5_200 };
        assert!(
            d.ingest("web1", &report(seq, VICTIM, busy(syn)), now)
                .is_empty()
        );
    }
    assert!(started(&d.ingest("web1", &report(200, VICTIM, busy(12_000)), now + 1000)).is_empty());
    assert_eq!(
        started(&d.ingest("web1", &report(201, VICTIM, busy(20_000)), now + 2000)).len(),
        1
    );
}

#[test]
fn confirm_waits_for_n_intervals() {
    let mut s = settings();
    s.groups[0].2.confirm = 3;
    let (mut d, mut now) = warmed_with(s);
    let flood = with(flow(17, Some(123), None, None, 50_000));
    for i in 0..2 {
        now += 1000;
        assert!(
            started(&d.ingest("web1", &report(100 + i, VICTIM, flood.clone()), now)).is_empty()
        );
    }
    now += 1000;
    assert_eq!(
        started(&d.ingest("web1", &report(102, VICTIM, flood), now)).len(),
        1
    );
}

#[test]
fn flapping_traffic_is_one_attack_and_it_ends_after_the_cooldown() {
    let (mut d, mut now) = warmed();
    let flood = with(flow(17, Some(53), None, None, 50_000));
    let mut all = Vec::new();
    // On and off every other second for a minute: one attack.
    for i in 0..60 {
        now += 1000;
        let flows = if i % 2 == 0 { flood.clone() } else { normal() };
        all.extend(d.ingest("web1", &report(100 + i, VICTIM, flows), now));
    }
    assert_eq!(started(&all).len(), 1, "{all:?}");
    assert!(!all.iter().any(|e| matches!(e, Event::Ended(_))));
    let id = started(&all)[0];
    // Then quiet: it ends once quiet for the cooldown (10 s), not before.
    let mut ended_at = None;
    for i in 0..20 {
        now += 1000;
        let ev = d.ingest("web1", &report(200 + i, VICTIM, normal()), now);
        if ev.contains(&Event::Ended(id)) {
            ended_at = Some(i);
            break;
        }
    }
    // Quiet since the last flapping second (normal traffic): ended 10 s after it.
    assert_eq!(ended_at, Some(9));
    let a = d.attack(id).unwrap();
    assert_eq!(
        a.peak_pps, 50_010,
        "the flood and the ordinary DNS answers, one class"
    );
    assert!(a.ended_ms.is_some());
}

#[test]
fn a_stale_node_freezes_its_targets() {
    let (mut d, mut now) = warmed();
    now += 1000;
    let ev = d.ingest(
        "web1",
        &report(100, VICTIM, with(flow(1, None, None, None, 9_000))),
        now,
    );
    let id = started(&ev)[0];
    assert!(d.is_seen(d.attack(id).unwrap()));
    // The node goes silent for a minute: the attack holds, it is not ended on missing data, but
    // nothing sees it any more.
    now += 60_000;
    assert_eq!(d.check_stale(now), vec!["web1".to_string()]);
    assert!(d.nodes()[0].stale);
    assert!(d.attack(id).unwrap().is_active());
    assert!(!d.is_seen(d.attack(id).unwrap()));
    assert!(
        d.attack(id)
            .unwrap()
            .timeline
            .iter()
            .any(|m| m.what.contains("stale"))
    );
    // It comes back quiet: the cooldown counts from now.
    for i in 0..10 {
        now += 1000;
        let ev = d.ingest("web1", &report(200 + i, VICTIM, normal()), now);
        assert!(!ev.contains(&Event::Ended(id)), "ended after {i} s back");
    }
    now += 1000;
    assert!(
        d.ingest("web1", &report(300, VICTIM, normal()), now)
            .contains(&Event::Ended(id))
    );
    assert!(!d.nodes()[0].stale);
}

#[test]
fn a_target_missing_from_a_report_had_no_traffic() {
    let (mut d, mut now) = warmed();
    now += 1000;
    let id = started(&d.ingest(
        "web1",
        &report(100, VICTIM, with(flow(1, None, None, None, 9_000))),
        now,
    ))[0];
    // The node keeps reporting, about another address only: the victim's flood is over.
    let mut ended = false;
    for i in 0..15 {
        now += 1000;
        if d.ingest("web1", &report(200 + i, "203.0.113.8", normal()), now)
            .contains(&Event::Ended(id))
        {
            ended = true;
        }
    }
    assert!(ended);
}

#[test]
fn unprotected_addresses_and_the_target_limit_are_counted_not_tracked() {
    let mut s = settings();
    s.max_targets = 2;
    let mut d = Detector::new(s, 1);
    d.ingest("web1", &report(0, "192.0.2.1", normal()), 1000);
    assert_eq!(d.counters.targets_unprotected, 1);
    for (i, a) in ["203.0.113.1", "203.0.113.2", "203.0.113.3"]
        .iter()
        .enumerate()
    {
        d.ingest("web1", &report(i as u64, a, normal()), 2000 + i as u64);
    }
    assert_eq!(d.target_count(), 2);
    assert!(d.counters.targets_over_limit >= 1);
}

#[test]
fn one_node_cannot_fill_the_table_for_everyone_and_idle_addresses_are_forgotten() {
    let mut s = settings();
    s.max_targets_per_node = 3;
    s.target_idle = Duration::from_secs(60);
    let mut d = Detector::new(s, 1);
    let mut now = 1_000_000;
    // A node that reports invented addresses: three tracked, the rest refused and counted.
    for i in 0..10u64 {
        now += 1000;
        d.ingest(
            "liar",
            &report(i, &format!("203.0.113.{}", 100 + i), normal()),
            now,
        );
    }
    assert_eq!(d.target_count(), 3);
    assert_eq!(d.counters.targets_over_node_limit, 7);
    // Another node still gets its own addresses in, and a flood on them is seen.
    now += 1000;
    d.ingest("web1", &report(0, VICTIM, normal()), now);
    assert_eq!(d.target_count(), 4);
    // The liar goes silent: a minute later its addresses are forgotten; the one seen stays.
    for i in 1..=70u64 {
        now += 1000;
        d.ingest("web1", &report(i, VICTIM, normal()), now);
        d.check_stale(now);
    }
    assert_eq!(d.target_count(), 1);
    assert_eq!(d.counters.targets_evicted, 3);
    assert!(d.target(VICTIM.parse().unwrap()).is_some());
    // Room again for the node's real addresses.
    now += 1000;
    d.ingest("liar", &report(99, "203.0.113.9", normal()), now);
    assert_eq!(d.target_count(), 2);
}

#[test]
fn an_address_under_attack_is_never_forgotten() {
    let mut s = settings();
    s.target_idle = Duration::from_secs(60);
    let mut d = Detector::new(s, 1);
    let mut now = 1_000_000;
    for seq in 0..90 {
        now += 1000;
        d.ingest("web1", &report(seq, VICTIM, normal()), now);
    }
    now += 1000;
    let ev = d.ingest(
        "web1",
        &report(100, VICTIM, with(flow(1, None, None, None, 9_000))),
        now,
    );
    assert_eq!(started(&ev).len(), 1);
    // The node dies mid-attack: ten minutes on, the address and its attack are still there.
    for _ in 0..600 {
        now += 1000;
        d.check_stale(now);
    }
    assert_eq!(d.target_count(), 1);
    assert_eq!(d.counters.targets_evicted, 0);
}

#[test]
fn ipv6_targets_are_judged_the_same_way() {
    let v6 = "2001:db8:100::7";
    let mut d = Detector::new(settings(), 1);
    let mut now = 0;
    for seq in 0..90 {
        now += 1000;
        d.ingest("web1", &report(seq, v6, normal()), now);
    }
    let mut icmp6 = normal();
    icmp6.push(flow(58, None, None, None, 40_000));
    let ev = d.ingest("web1", &report(100, v6, icmp6), now + 1000);
    let ids = started(&ev);
    assert_eq!(ids.len(), 1);
    let a = d.attack(ids[0]).unwrap();
    assert_eq!((a.vector, a.signature.proto), (Vector::IcmpFlood, Some(58)));
}

#[test]
fn memory_per_target_is_bounded() {
    // The state behind each address, as laid out; the goal is at most 1 KB with the maps' share.
    let per = std::mem::size_of::<TargetState>() + std::mem::size_of::<IpAddr>() * 2 + 16;
    assert!(per <= 1024, "{per} bytes per target");
}

/// One interval of sampled packets as the probe and the sFlow collector aggregate them, with the
/// normal traffic beside, as a report.
fn sampled(seq: u64, packets: &[crate::traffic::packet::PacketInfo]) -> Report {
    let mut agg = crate::traffic::aggregate::Aggregator::new();
    for p in packets {
        agg.add(p, 1);
    }
    let mut r = report(seq, VICTIM, normal());
    let t = agg.finish(Duration::from_secs(1));
    let mut target = t.into_iter().next().unwrap();
    target.flows.extend(normal());
    target.pps += normal().iter().map(|f| f.pps).sum::<u64>();
    r.targets = vec![target];
    r
}

fn packet(
    src: u32,
    proto: u8,
    sport: u16,
    dport: u16,
    flags: Option<u8>,
) -> crate::traffic::packet::PacketInfo {
    crate::traffic::packet::PacketInfo {
        src: IpAddr::V4(src.into()),
        dst: VICTIM.parse().unwrap(),
        proto,
        sport: Some(sport),
        dport: Some(dport),
        tcp_flags: flags,
        fragment: false,
        wire_len: 468,
    }
}

#[test]
fn spread_ports_and_many_sources_are_one_attack_with_the_precise_signature() {
    // (what, packets, vector, source ports, destination ports)
    let reflection: Vec<_> = (0..20_000u32)
        .map(|i| {
            packet(
                0xc633_6400 + i % 500,
                17,
                123,
                1024 + (i % 4000) as u16,
                None,
            )
        })
        .collect();
    let syn: Vec<_> = (0..20_000u32)
        .map(|i| packet(0xc633_6400 + i, 6, (i % 1024) as u16, 80, Some(tcp::SYN)))
        .collect();
    let random_syn: Vec<_> = (0..20_000u32)
        .map(|i| {
            packet(
                0xc633_6400 + i,
                6,
                40_000,
                (i % 60_000) as u16,
                Some(tcp::SYN),
            )
        })
        .collect();
    let cases = [
        (
            "reflection to spread ports",
            reflection,
            Vector::Amplification,
            vec![123],
            vec![],
        ),
        (
            "SYN from spread ports",
            syn,
            Vector::SynFlood,
            vec![],
            vec![80],
        ),
        (
            "SYN to random ports",
            random_syn,
            Vector::SynFlood,
            vec![],
            vec![],
        ),
    ];
    for (what, packets, vector, sports, dports) in cases {
        let (mut d, now) = warmed();
        let ev = d.ingest("web1", &sampled(100, &packets), now + 1000);
        let ids = started(&ev);
        assert_eq!(
            ids.len(),
            1,
            "{what}: one attack, not one per folded class: {ev:?}"
        );
        let a = d.attack(ids[0]).unwrap();
        assert_eq!(a.vector, vector, "{what}");
        let normal: u64 = normal()
            .iter()
            .filter(|f| Class::of(f) == a.class)
            .map(|f| f.pps)
            .sum();
        assert_eq!(
            a.pps,
            packets.len() as u64 + normal,
            "{what}: the whole flood, nothing folded away"
        );
        assert_eq!(
            (a.signature.sports.clone(), a.signature.dports.clone()),
            (sports, dports),
            "{what}"
        );
    }
}

#[test]
fn an_attack_is_seen_while_any_node_that_reports_its_address_is_fresh() {
    let (mut d, mut now) = warmed();
    now += 1000;
    let flood = with(flow(1, None, None, None, 9_000));
    let id = started(&d.ingest("web1", &report(100, VICTIM, flood.clone()), now))[0];
    // Another node now reports the address (it moved, or both see it); the first goes silent.
    for i in 0..10 {
        now += 1000;
        d.ingest("web2", &report(i, VICTIM, flood.clone()), now);
    }
    assert_eq!(d.check_stale(now), vec!["web1".to_string()]);
    let a = d.attack(id).unwrap();
    assert_eq!((d.is_seen(a), d.seen_by(a)), (true, Some("web2")));
    now += 60_000;
    assert_eq!(d.check_stale(now), vec!["web2".to_string()]);
    assert!(!d.is_seen(d.attack(id).unwrap()));
}

/// An NTP reflection flood on top of normal traffic.
fn ntp_flood(pps: u64) -> Vec<Flow> {
    let mut f = normal();
    f.push(flow(17, Some(123), Some(4444), None, pps));
    f
}

#[test]
fn an_attack_ends_when_its_quiet_began_and_reopens_as_itself() {
    let (mut d, mut now) = warmed();
    now += 1000;
    let id = started(&d.ingest("web1", &report(100, VICTIM, ntp_flood(50_000)), now))[0];
    now += 1000;
    let quiet_from = now;
    let mut ended = false;
    for i in 0..12 {
        let ev = d.ingest("web1", &report(101 + i, VICTIM, normal()), now);
        ended |= ev.contains(&Event::Ended(id));
        now += 1000;
    }
    assert!(ended);
    assert_eq!(
        d.attack(id).unwrap().ended_ms,
        Some(quiet_from),
        "the end is when the quiet began, not the cooldown later"
    );
    // It comes back: a new start, which the engine folds into the first.
    let ev = d.ingest("web1", &report(200, VICTIM, ntp_flood(60_000)), now);
    let new = started(&ev)[0];
    assert_ne!(new, id);
    assert!(d.reopen(new, id, now));
    assert!(d.attack(new).is_none());
    let a = d.attack(id).unwrap();
    assert!(a.is_active());
    assert_eq!(
        (a.pps, a.peak_pps),
        (60_010, 60_010),
        "with the DNS answers of normal()"
    );
    assert!(
        a.timeline
            .last()
            .unwrap()
            .what
            .starts_with("returned 12 s after")
    );
    assert_eq!(
        (d.counters.attacks_started, d.counters.attacks_reopened),
        (1, 1)
    );
    // The class now carries the first attack: its updates and its end are the first's.
    now += 1000;
    let ev = d.ingest("web1", &report(201, VICTIM, ntp_flood(60_000)), now);
    assert_eq!(ev, [Event::Updated(id)]);
    // Not twice, not an active one, not another target's.
    assert!(!d.reopen(new, id, now));
    assert!(!d.reopen(id, id, now));
}

#[test]
fn a_watched_class_starts_on_its_first_interval_above_whatever_confirm_says() {
    let mut s = settings();
    s.groups[0].2.confirm = 3;
    let (mut d, mut now) = warmed_with(s);
    now += 1000;
    assert!(
        d.ingest("web1", &report(100, VICTIM, ntp_flood(50_000)), now)
            .is_empty(),
        "confirm 3"
    );
    now += 1000;
    d.ingest("web1", &report(101, VICTIM, normal()), now);
    d.watch(
        VICTIM.parse().unwrap(),
        None,
        Class::UdpAmp,
        Vector::Amplification,
        true,
    );
    now += 1000;
    let ev = d.ingest("web1", &report(102, VICTIM, ntp_flood(50_000)), now);
    assert_eq!(started(&ev).len(), 1, "watched: one interval");
}

#[test]
fn traffic_pressing_at_a_rate_limit_is_not_the_end_of_the_attack() {
    let (mut d, mut now) = warmed();
    now += 1000;
    let id = started(&d.ingest("web1", &report(100, VICTIM, ntp_flood(50_000)), now))[0];
    // A rate-limit of 2 Mb/s: 400 pps of 500 bytes (1.6 Mb/s) press at it.
    d.attack_mut(id).unwrap().cap = Some(Cap {
        pps: None,
        bps: Some(2_000_000),
    });
    for i in 0..30 {
        now += 1000;
        let ev = d.ingest("web1", &report(101 + i, VICTIM, ntp_flood(400)), now);
        assert_eq!(ev, [Event::Updated(id)], "second {i}");
    }
    // Well under half the cap: quiet, and over after the cooldown.
    let mut ended = false;
    for i in 0..12 {
        now += 1000;
        ended |= d
            .ingest("web1", &report(200 + i, VICTIM, ntp_flood(100)), now)
            .contains(&Event::Ended(id));
    }
    assert!(ended);
}

#[test]
fn behind_an_enforcing_edge_only_a_node_upstream_of_the_filters_can_see_the_end() {
    let (mut d, mut now) = warmed();
    now += 1000;
    let id = started(&d.ingest("web1", &report(100, VICTIM, ntp_flood(50_000)), now))[0];
    // The rule is enforced: the probe behind the edge sees quiet, the switch before the edge
    // still sees the flood; interleaved for 30 s, the attack goes on.
    for i in 0..30 {
        now += 500;
        let mut r = report(200 + i, VICTIM, ntp_flood(50_000));
        r.node = "sflow:edge".into();
        let ev = d.ingest("sflow:edge", &r, now);
        assert!(!ev.contains(&Event::Ended(id)), "second {i}: {ev:?}");
        now += 500;
        let ev = d.ingest("web1", &report(101 + i, VICTIM, normal()), now);
        assert!(!ev.contains(&Event::Ended(id)), "second {i}: {ev:?}");
    }
    assert!(
        d.nodes()
            .iter()
            .any(|n| n.name == "sflow:edge" && n.upstream)
    );
    // The flood ends: quiet both sides, and the end is known to be real.
    let mut ended = false;
    for i in 0..12 {
        now += 500;
        let mut r = report(300 + i, VICTIM, normal());
        r.node = "sflow:edge".into();
        ended |= d.ingest("sflow:edge", &r, now).contains(&Event::Ended(id));
        now += 500;
        ended |= d
            .ingest("web1", &report(400 + i, VICTIM, normal()), now)
            .contains(&Event::Ended(id));
    }
    assert!(ended);
    assert!(d.attack(id).unwrap().quiet_upstream);
}

#[test]
fn a_quiet_seen_only_behind_the_filters_is_not_known_to_be_real() {
    let (mut d, mut now) = warmed();
    now += 1000;
    let id = started(&d.ingest("web1", &report(100, VICTIM, ntp_flood(50_000)), now))[0];
    let mut ended = false;
    for i in 0..12 {
        now += 1000;
        ended |= d
            .ingest("web1", &report(101 + i, VICTIM, normal()), now)
            .contains(&Event::Ended(id));
    }
    assert!(ended);
    assert!(!d.attack(id).unwrap().quiet_upstream);
}

mod hostile {
    use proptest::prelude::*;

    use super::*;

    fn addr() -> impl Strategy<Value = IpAddr> {
        prop_oneof![
            (0u8..4).prop_map(|i| format!("203.0.113.{i}").parse().unwrap()),
            any::<u32>().prop_map(|v| IpAddr::from(std::net::Ipv4Addr::from(v))),
            any::<u128>().prop_map(|v| IpAddr::from(std::net::Ipv6Addr::from(v))),
            Just("2001:db8:100::7".parse().unwrap()),
        ]
    }

    fn rate() -> impl Strategy<Value = u64> {
        prop_oneof![0u64..100_000, Just(u64::MAX), any::<u64>()]
    }

    fn flow() -> impl Strategy<Value = Flow> {
        crate::telemetry::strategies::flow(rate)
    }

    fn target() -> impl Strategy<Value = Target> {
        (
            addr(),
            rate(),
            rate(),
            proptest::collection::vec(flow(), 0..6),
            proptest::collection::vec((addr(), rate()), 0..4),
        )
            .prop_map(|(dst, pps, bps, flows, sources)| Target {
                dst,
                pps,
                bps,
                flows,
                sources: sources
                    .into_iter()
                    .map(|(addr, pps)| Source { addr, pps })
                    .collect(),
                trusted_pps: 0,
                trusted_bps: 0,
            })
    }

    /// A rollup as the API lets it through: a /24 or /64 (protected or not), any rates.
    fn rollup() -> impl Strategy<Value = crate::telemetry::Rollup> {
        (
            addr(),
            any::<u32>(),
            rate(),
            rate(),
            proptest::collection::vec(flow(), 0..6),
            proptest::collection::vec((addr(), rate()), 0..4),
        )
            .prop_map(|(a, addresses, pps, bps, flows, sources)| {
                crate::telemetry::Rollup {
                    prefix: crate::telemetry::rollup_of(a),
                    addresses,
                    pps,
                    bps,
                    flows,
                    sources: sources
                        .into_iter()
                        .map(|(addr, pps)| Source { addr, pps })
                        .collect(),
                }
            })
    }

    fn hostile_report() -> impl Strategy<Value = (String, Report, u64)> {
        (
            prop_oneof![
                Just("web1".to_string()),
                Just("sflow:edge".to_string()),
                "[a-z]{1,3}"
            ],
            50u32..=60_000,
            1u32..=u32::MAX,
            proptest::collection::vec(target(), 0..5),
            proptest::collection::vec(rollup(), 0..4),
            0u64..5_000,
        )
            .prop_map(|(node, interval_ms, one_in, targets, rollups, step)| {
                let r = Report {
                    // The name in the body (the API checks it); the token's name is `node`.
                    node: "probe".into(),
                    seq: 0,
                    time_ms: 0,
                    interval_ms,
                    one_in,
                    sampled: 0,
                    interfaces: Vec::new(),
                    targets,
                    rollups,
                    packets: Vec::new(),
                    applied: Vec::new(),
                    drop_error: None,
                };
                (node, r, step)
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Whatever a node reports within the bounds the API checks (rates up to u64::MAX,
        /// unprotected and duplicate addresses, any protocol, ports and flags), the detector
        /// never panics, never tracks more than its limits, and every attack it reports is on
        /// a protected address and has a sane timeline.
        #[test]
        fn hostile_reports_never_panic_and_stay_within_the_limits(
            reports in proptest::collection::vec(hostile_report(), 1..40),
        ) {
            let mut s = settings();
            s.max_targets = 8;
            s.max_targets_per_node = 4;
            s.max_prefixes = 3;
            let mut d = Detector::new(s, 1);
            let mut now = 1_000_000u64;
            for (node, r, step) in &reports {
                prop_assert!(r.validate().is_ok());
                now += step;
                d.ingest(node, r, now);
                let _ = d.check_stale(now);
                prop_assert!(d.target_count() <= 8);
                prop_assert!(d.prefix_count() <= 3);
            }
            for a in d.attacks() {
                // A prefix attack is on a protected prefix, its target its first address.
                if let Some(p) = a.prefix {
                    prop_assert_eq!(a.target, p.network());
                    prop_assert!(p.prefix_len() == 24 || p.prefix_len() == 64, "{a:?}");
                }
                prop_assert!(
                    a.target.to_string().starts_with("203.0.113.")
                        || a.target.to_string().starts_with("2001:db8:100:"),
                    "{a:?}"
                );
                prop_assert!(a.peak_pps >= a.pps || a.ended_ms.is_some());
                prop_assert!(a.ended_ms.is_none_or(|e| e >= a.started_ms));
            }
            let _ = d.top_targets(10);
        }
    }
}

#[test]
fn a_flash_crowd_is_no_attack_and_a_few_hosts_completing_handshakes_are() {
    let flows = || {
        vec![
            flow(6, None, Some(443), Some(tcp::SYN), 30_000),
            flow(6, None, Some(443), Some(tcp::ACK), 60_000),
        ]
    };
    // Many clients: the sampled top sources carry 1,000 pps each of 90,000.
    let crowd = |seq| {
        let mut r = report(seq, VICTIM, flows());
        r.targets[0].sources = (1..=20u8)
            .map(|i| Source {
                addr: std::net::IpAddr::from([198, 18, 1, i]),
                pps: 1000,
            })
            .collect();
        r
    };
    let (mut d, now) = warmed();
    for i in 0..5 {
        let ev = d.ingest("web1", &crowd(100 + i), now + 1000 * (i + 1));
        assert!(started(&ev).is_empty(), "interval {i}: {ev:?}");
    }
    assert_eq!(d.counters.flash_crowds, 5);
    // The same rates from one host sending half of them: a connection flood.
    let ev = d.ingest("web1", &report(200, VICTIM, flows()), now + 7000);
    let ids = started(&ev);
    assert_eq!(ids.len(), 1, "{ev:?}");
    assert_eq!(d.attack(ids[0]).unwrap().vector, Vector::TcpConnectionFlood);
}

/// A busy web server: 600 ACKs a second, under the floor of 1,000 while it learns; warm, its
/// threshold is three times that.
fn busy(ack: u64) -> Vec<Flow> {
    vec![flow(6, None, Some(443), Some(tcp::ACK), ack)]
}

#[test]
fn a_restart_takes_its_baselines_back_warm_and_a_busy_address_is_not_mistaken_for_a_flood() {
    let victim: IpAddr = VICTIM.parse().unwrap();
    let mut d = Detector::new(settings(), 1);
    let mut now = 1_000_000;
    for seq in 0..90 {
        now += 1000;
        assert!(
            d.ingest("web1", &report(seq, VICTIM, busy(600)), now)
                .is_empty()
        );
    }
    let ack = Class::TcpAck.index();
    let before = d.target(victim).unwrap().classes[ack].clone();
    assert!(before.warm && before.threshold_pps > 1700.0, "{before:?}");
    let (bytes, entries) = d.snapshot(now);
    // The address, and its /24 (prefix detection sums it too).
    assert_eq!(entries, 2);
    let snap = snapshot::decode(&bytes).unwrap();

    // Without its baselines, a restarted detector judges it on the floor: 1,400 ACKs a second
    // (a busy minute, under its learned threshold) is taken for a flood.
    let mut cold = Detector::new(settings(), 1);
    let events = cold.ingest("web1", &report(0, VICTIM, busy(1400)), now + 2000);
    assert_eq!(started(&events).len(), 1, "cold: {events:?}");

    // With them, two seconds later: the same threshold at the first report, no attack.
    let mut warm = Detector::new(settings(), 1);
    let r = warm.restore(snap.clone(), now + 2000);
    assert_eq!((r.targets, r.prefixes, r.idle, r.refused), (1, 1, 0, 0));
    assert_eq!(warm.dormant_count(), 2);
    // Not yet reported: what a snapshot taken now holds is what was restored.
    let (again, n) = warm.snapshot(now + 2000);
    assert_eq!(n, 2);
    let reread = snapshot::decode(&again).unwrap();
    assert_eq!(reread.targets, snap.targets);
    assert_eq!(reread.prefixes, snap.prefixes);
    for seq in 0..5 {
        let e = warm.ingest(
            "web1",
            &report(seq, VICTIM, busy(1400)),
            now + 3000 + seq * 1000,
        );
        assert!(started(&e).is_empty(), "restored: {e:?}");
    }
    assert_eq!(warm.dormant_count(), 0);
    let after = warm.target(victim).unwrap().classes[ack].clone();
    assert!(after.warm);
    assert!(
        (after.baseline_pps - before.baseline_pps).abs() < 60.0,
        "{after:?}"
    );
    // A flood is still a flood.
    let e = warm.ingest("web1", &report(9, VICTIM, busy(20_000)), now + 9000);
    assert_eq!(started(&e).len(), 1);
}

#[test]
fn time_away_counts_against_the_warm_up_and_old_or_unprotected_baselines_are_left_out() {
    let victim: IpAddr = VICTIM.parse().unwrap();
    let (d, now) = warmed();
    let (bytes, _) = d.snapshot(now);
    let snap = snapshot::decode(&bytes).unwrap();
    let ack = Class::TcpAck.index();

    // 90 s learned, 50 s away, a warm-up of 60 s: 40 s count, 20 s to go.
    let mut late = Detector::new(settings(), 1);
    late.restore(snap.clone(), now + 50_000);
    late.ingest("web1", &report(0, VICTIM, normal()), now + 50_000);
    assert!(!late.target(victim).unwrap().classes[ack].warm);
    let mut t = now + 50_000;
    for seq in 1..=21 {
        t += 1000;
        late.ingest("web1", &report(seq, VICTIM, normal()), t);
    }
    assert!(late.target(victim).unwrap().classes[ack].warm);

    // Idle longer than `target_idle` (600 s): it would have been forgotten.
    let mut old = Detector::new(settings(), 1);
    let r = old.restore(snap.clone(), now + 600_000);
    assert_eq!((r.targets, r.prefixes, r.idle), (0, 0, 2));
    // No longer protected: left out.
    let mut s = settings();
    s.groups[0].1 = vec!["198.51.100.0/24".parse().unwrap()];
    let mut moved = Detector::new(s, 1);
    let r = moved.restore(snap.clone(), now + 1000);
    assert_eq!((r.targets, r.prefixes, r.refused), (0, 0, 2));
    // Past `max_targets`: left out.
    let mut s = settings();
    s.max_targets = 0;
    s.max_prefixes = 0;
    let mut full = Detector::new(s, 1);
    assert_eq!(full.restore(snap.clone(), now + 1000).refused, 2);

    // Restored and never reported again: forgotten once idle, as a target would be.
    let mut quiet = Detector::new(settings(), 1);
    quiet.restore(snap, now + 1000);
    quiet.check_stale(now + 300_000);
    assert_eq!(quiet.dormant_count(), 2);
    quiet.check_stale(now + 600_000);
    assert_eq!(quiet.dormant_count(), 0);
    assert_eq!(quiet.snapshot(now + 600_000).1, 0);
}
