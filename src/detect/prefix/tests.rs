//! Carpet bombing through the aggregator and the detector: the sums over a prefix, whole
//! whatever the report cuts, and the trusted sources that never count.

use std::net::IpAddr;
use std::time::Duration;

use crate::detect::classify::tcp;
use crate::detect::*;
use crate::telemetry::{MAX_TARGETS, Report};
use crate::traffic::aggregate::Aggregator;
use crate::traffic::packet::PacketInfo;

fn settings() -> Settings {
    Settings {
        groups: vec![(
            "customers".into(),
            vec![
                "203.0.113.0/24".parse().unwrap(),
                "2001:db8:100::/48".parse().unwrap(),
            ],
            Thresholds {
                warmup: Duration::from_secs(60),
                half_life: Duration::from_secs(120),
                cooldown: Duration::from_secs(10),
                ..Thresholds::default()
            },
        )],
        stale_after: Duration::from_secs(3),
        ..Settings::default()
    }
}

fn pkt(src: &str, dst: IpAddr, proto: u8, sport: u16, dport: u16) -> PacketInfo {
    PacketInfo {
        src: src.parse().unwrap(),
        dst,
        proto,
        sport: Some(sport),
        dport: Some(dport),
        tcp_flags: None,
        fragment: false,
        wire_len: 500,
    }
}

fn v4(i: u32) -> IpAddr {
    IpAddr::V4((0xcb00_7100 + (i & 0xff)).into())
}

/// One interval's report from samples, as the probe builds it: `(packet, one_in)`, with
/// everything the aggregator does (the cut to the top destinations, the rollups, trusted
/// sources taken out).
fn report(seq: u64, samples: &[(PacketInfo, u32)], trusted: &[&str]) -> Report {
    let mut agg =
        Aggregator::new().with_trusted(trusted.iter().map(|t| t.parse().unwrap()).collect());
    for (p, one_in) in samples {
        agg.add(p, *one_in);
    }
    let f = agg.finish_all(Duration::from_secs(1));
    Report {
        node: "edge".into(),
        seq,
        time_ms: 0,
        interval_ms: 1000,
        one_in: 1,
        sampled: samples.len() as u64,
        interfaces: Vec::new(),
        targets: f.targets,
        rollups: f.rollups,
        packets: Vec::new(),
        applied: Vec::new(),
        drop_error: None,
    }
}

/// Ten web servers of the /24, each busy with its own clients: the prefix's normal life.
fn web(samples: &mut Vec<(PacketInfo, u32)>) {
    for i in 1..=10 {
        let mut ack = pkt("192.0.2.50", v4(i), 6, 50_000, 443);
        ack.tcp_flags = Some(tcp::ACK);
        samples.push((ack, 2_000));
        let mut syn = pkt("192.0.2.51", v4(i), 6, 50_001, 443);
        syn.tcp_flags = Some(tcp::SYN);
        samples.push((syn, 50));
    }
}

/// NTP answers at `pps` to every address of 203.0.113.0/24.
fn ntp_carpet(samples: &mut Vec<(PacketInfo, u32)>, pps: u32) {
    for i in 0..256 {
        samples.push((pkt("198.51.100.9", v4(i), 17, 123, 40_000 + i as u16), pps));
    }
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

/// A detector warmed for `secs` on the web servers alone.
fn warmed(secs: u64) -> (Detector, u64) {
    let mut d = Detector::new(settings(), 1);
    let mut now = 1_000_000;
    for seq in 0..secs {
        now += 1000;
        let mut s = Vec::new();
        web(&mut s);
        assert!(started(&d.ingest("edge", &report(seq, &s, &[]), now)).is_empty());
    }
    (d, now)
}

#[test]
fn a_carpet_over_a_24_is_one_prefix_attack_in_its_first_interval_and_ends_with_it() {
    let (mut d, mut now) = warmed(90);
    // 256 addresses at 1,000 pps of NTP each (the address floor is 20,000): 256k pps on the /24,
    // above its floor of 80,000. The report keeps 64 addresses: 64k pps, not enough alone.
    let mut s = Vec::new();
    web(&mut s);
    ntp_carpet(&mut s, 1_000);
    let r = report(100, &s, &[]);
    assert_eq!(r.targets.len(), MAX_TARGETS);
    let kept: u64 = r
        .targets
        .iter()
        .flat_map(|t| &t.flows)
        .filter(|f| f.sport == Some(123))
        .map(|f| f.pps)
        .sum();
    assert!(kept < 80_000, "the cut report alone would miss it: {kept}");
    now += 1000;
    let ev = d.ingest("edge", &r, now);
    let ids = started(&ev);
    assert_eq!(
        ids.len(),
        1,
        "one attack, in the carpet's first interval: {ev:?}"
    );
    let a = d.attack(ids[0]).unwrap().clone();
    assert_eq!(a.prefix, Some("203.0.113.0/24".parse().unwrap()));
    assert_eq!(a.target, "203.0.113.0".parse::<IpAddr>().unwrap());
    assert_eq!(a.vector, Vector::Amplification);
    assert_eq!(a.signature.sports, vec![123]);
    assert_eq!(a.signature.proto, Some(17));
    assert_eq!(a.addresses, 256);
    assert_eq!(a.pps, 256_000);
    assert_eq!(a.dst().to_string(), "203.0.113.0/24");
    assert!(d.is_seen(&a));
    assert_eq!(d.seen_by(&a), Some("edge"));
    // It goes on as one attack; no address starts its own in the same class.
    for seq in 101..110 {
        now += 1000;
        let ev = d.ingest("edge", &report(seq, &s, &[]), now);
        assert!(started(&ev).is_empty(), "{ev:?}");
        assert!(ev.contains(&Event::Updated(a.id)));
    }
    assert_eq!(d.attacks().count(), 1);
    // It stops: over once quiet for the cooldown (10 s).
    let mut ended = None;
    for seq in 110..130 {
        now += 1000;
        let mut quiet = Vec::new();
        web(&mut quiet);
        if d.ingest("edge", &report(seq, &quiet, &[]), now)
            .contains(&Event::Ended(a.id))
        {
            ended = Some(seq);
            break;
        }
    }
    assert_eq!(ended, Some(120), "ended after 10 s of quiet");
}

#[test]
fn a_carpet_whose_addresses_each_cross_their_own_floor_is_still_one_attack_on_the_prefix() {
    let (mut d, mut now) = warmed(90);
    // 64 addresses at 30,000 pps each: every one above its 20,000 floor.
    let mut s = Vec::new();
    web(&mut s);
    for i in 100..164 {
        s.push((
            pkt("198.51.100.9", v4(i), 17, 389, 3_000 + i as u16),
            30_000,
        ));
    }
    now += 1000;
    let ev = d.ingest("edge", &report(1, &s, &[]), now);
    let ids = started(&ev);
    assert_eq!(ids.len(), 1, "{ev:?}");
    let a = d.attack(ids[0]).unwrap();
    assert_eq!(a.prefix, Some("203.0.113.0/24".parse().unwrap()));
    assert_eq!(a.signature.service.as_deref(), Some("cldap"));
    assert_eq!(a.pps, 64 * 30_000);
    assert!(a.timeline.iter().any(|m| m.what.contains("64 addresses")));
    assert_eq!(d.attacks().count(), 1, "no /32 attacks beside it");
    assert_eq!(d.counters.covered_by_prefix, 64);
    now += 1000;
    assert!(started(&d.ingest("edge", &report(2, &s, &[]), now)).is_empty());
    assert_eq!(d.attacks().count(), 1);
}

#[test]
fn an_ipv6_carpet_at_random_addresses_beyond_the_target_limits_is_detected() {
    let mut s = settings();
    s.max_targets = 40;
    s.max_targets_per_node = 20;
    let mut d = Detector::new(s, 1);
    // 5,000 random addresses of 2001:db8:100:7::/64, two SYN samples each at 1 in 8: 16 pps per
    // address, 80k pps on the /64 (its SYN floor: 40,000).
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut samples = Vec::new();
    for _ in 0..5_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let dst = IpAddr::V6(((0x2001_0db8_0100_0007u128 << 64) | u128::from(x)).into());
        for _ in 0..2 {
            let mut syn = pkt("2001:db8:ffff::1", dst, 6, 40_000, 443);
            syn.tcp_flags = Some(tcp::SYN);
            samples.push((syn, 8));
        }
    }
    let r = report(1, &samples, &[]);
    assert_eq!(r.rollups.len(), 1);
    assert_eq!(r.rollups[0].pps, 80_000);
    let ev = d.ingest("edge", &r, 1_000_000);
    let ids = started(&ev);
    assert_eq!(ids.len(), 1, "{ev:?}");
    assert!(d.target_count() <= 20);
    let a = d.attack(ids[0]).unwrap();
    assert_eq!(a.prefix, Some("2001:db8:100:7::/64".parse().unwrap()));
    assert_eq!(a.vector, Vector::SynFlood);
    assert_eq!(a.signature.dports, vec![443]);
    assert_eq!(a.signature.tcp_flags, Some((tcp::SYN, tcp::ACK)));
    assert!(a.addresses >= 20, "{}", a.addresses);
}

#[test]
fn a_single_hot_address_stays_an_address_attack() {
    let (mut d, now) = warmed(90);
    // 500k pps of memcached to one address: far above the prefix's floor too.
    let mut s = Vec::new();
    web(&mut s);
    s.push((pkt("198.51.100.9", v4(7), 17, 11211, 80), 500_000));
    let ev = d.ingest("edge", &report(1, &s, &[]), now + 1000);
    let ids = started(&ev);
    assert_eq!(ids.len(), 1, "{ev:?}");
    let a = d.attack(ids[0]).unwrap();
    assert_eq!(a.prefix, None);
    assert_eq!(a.target, v4(7));
    assert_eq!(a.dst().to_string(), "203.0.113.7/32");
    // Next interval: still the one attack.
    let ev = d.ingest("edge", &report(2, &s, &[]), now + 2000);
    assert!(started(&ev).is_empty(), "{ev:?}");
}

#[test]
fn legitimate_spread_load_is_learned_and_only_a_real_carpet_is_flagged() {
    // 100 game servers, each with its clients' UDP (client ports: no amplifier), 3,000 pps
    // each: 300k on the /24, under its UDP floor (400k) while the baseline is cold.
    let game = |pps: u32| {
        (0..100)
            .map(|i| (pkt("192.0.2.77", v4(i), 17, 50_000, 27_015), pps))
            .collect::<Vec<_>>()
    };
    let mut d = Detector::new(settings(), 1);
    let mut now = 1_000_000;
    for seq in 0..120 {
        now += 1000;
        let pps = if seq % 2 == 0 { 2_900 } else { 3_100 };
        assert!(started(&d.ingest("edge", &report(seq, &game(pps), &[]), now)).is_empty());
    }
    // An evening peak, twice the usual: above the floor, under three times the baseline.
    for seq in 120..130 {
        now += 1000;
        let ev = d.ingest("edge", &report(seq, &game(6_000), &[]), now);
        assert!(
            started(&ev).is_empty(),
            "a busy evening is no attack: {ev:?}"
        );
    }
    // Four times the usual on every server: over three times the baseline, a carpet.
    now += 1000;
    let ev = d.ingest("edge", &report(130, &game(12_000), &[]), now);
    let ids = started(&ev);
    assert_eq!(ids.len(), 1, "{ev:?}");
    let a = d.attack(ids[0]).unwrap();
    assert_eq!(
        (a.prefix.map(|p| p.to_string()), a.vector),
        (Some("203.0.113.0/24".into()), Vector::UdpFlood)
    );
    assert_eq!(a.signature.dports, vec![27_015]);
    assert!(a.baseline_pps > 250_000, "{}", a.baseline_pps);
}

#[test]
fn trusted_sources_never_start_an_attack_and_are_counted_apart() {
    let mut d = Detector::new(settings(), 1);
    // A speed-test server and a backup network: 2 Mpps of UDP and 1 Mpps of ACKs to one
    // address, and the same backup spread over the /24.
    let trusted = ["192.0.2.10/32", "198.51.100.0/24"];
    let mut s = vec![(pkt("192.0.2.10", v4(7), 17, 5201, 5201), 2_000_000)];
    let mut ack = pkt("198.51.100.20", v4(7), 6, 873, 50_000);
    ack.tcp_flags = Some(tcp::ACK);
    s.push((ack, 1_000_000));
    for i in 0..256 {
        ack.dst = v4(i);
        s.push((ack, 100_000));
    }
    let r = report(1, &s, &trusted);
    assert!(
        r.rollups.is_empty(),
        "nothing untrusted anywhere: {:?}",
        r.rollups
    );
    let t = r.targets.iter().find(|t| t.dst == v4(7)).unwrap();
    assert_eq!((t.pps, t.flows.len()), (0, 0));
    assert_eq!(t.trusted_pps, 3_100_000);
    let ev = d.ingest("edge", &r, 1_000_000);
    assert!(ev.is_empty(), "{ev:?}");
    assert_eq!(d.target(v4(7)).unwrap().trusted_pps, 3_100_000);
    assert!(d.nodes()[0].trusted_pps >= 3_100_000);
    // The same with a flood from elsewhere: the attack is the flood alone.
    s.push((pkt("203.0.113.200", v4(7), 17, 123, 4444), 50_000));
    let ev = d.ingest("edge", &report(2, &s, &trusted), 1_001_000);
    let ids = started(&ev);
    assert_eq!(ids.len(), 1, "{ev:?}");
    let a = d.attack(ids[0]).unwrap();
    assert_eq!(
        (a.vector, a.pps, a.prefix),
        (Vector::Amplification, 50_000, None)
    );
    assert!(
        !a.signature
            .sources
            .iter()
            .any(|s| s.to_string().starts_with("198.51.100."))
    );
}

#[test]
fn an_older_probe_without_rollups_is_rolled_up_from_its_targets() {
    let mut d = Detector::new(settings(), 1);
    let mut s = Vec::new();
    for i in 0..40 {
        s.push((pkt("198.51.100.9", v4(i), 17, 19, 4444), 5_000));
    }
    let mut r = report(1, &s, &[]);
    r.rollups.clear();
    let ids = started(&d.ingest("edge", &r, 1_000_000));
    assert_eq!(ids.len(), 1);
    let a = d.attack(ids[0]).unwrap();
    assert_eq!(a.prefix, Some("203.0.113.0/24".parse().unwrap()));
    assert_eq!(a.signature.service.as_deref(), Some("chargen"));
}

#[test]
fn prefix_detection_off_or_a_group_narrower_than_the_prefix_judges_addresses_only() {
    let mut s = Vec::new();
    ntp_carpet(&mut s, 1_000);
    let mut off = settings();
    off.groups[0].2.prefix.enabled = false;
    let mut d = Detector::new(off, 1);
    assert!(d.ingest("edge", &report(1, &s, &[]), 1_000_000).is_empty());
    assert_eq!(d.prefix_count(), 0);
    let mut narrow = settings();
    narrow.groups[0].1 = vec!["203.0.113.0/25".parse().unwrap()];
    let mut d = Detector::new(narrow, 1);
    assert!(d.ingest("edge", &report(1, &s, &[]), 1_000_000).is_empty());
    assert_eq!(d.prefix_count(), 0);
}

#[test]
fn a_prefix_whose_carpet_comes_back_is_reopened_and_watched_on_the_prefix() {
    let (mut d, mut now) = warmed(90);
    let mut s = Vec::new();
    web(&mut s);
    ntp_carpet(&mut s, 1_000);
    now += 1000;
    let first = started(&d.ingest("edge", &report(1, &s, &[]), now))[0];
    let p = d.attack(first).unwrap().prefix;
    let mut quiet = Vec::new();
    web(&mut quiet);
    let mut seq = 2;
    while d.attack(first).unwrap().is_active() {
        now += 1000;
        seq += 1;
        d.ingest("edge", &report(seq, &quiet, &[]), now);
    }
    d.watch(
        "203.0.113.0".parse().unwrap(),
        p,
        Class::UdpAmp,
        Vector::Amplification,
        true,
    );
    now += 1000;
    let again = started(&d.ingest("edge", &report(seq + 1, &s, &[]), now))[0];
    assert!(d.reopen(again, first, now));
    let a = d.attack(first).unwrap();
    assert!(a.is_active() && a.prefix == p);
    assert!(d.attack(again).is_none());
    // The reopened attack is the one its prefix's class carries on.
    now += 1000;
    let ev = d.ingest("edge", &report(seq + 2, &s, &[]), now);
    assert!(ev.contains(&Event::Updated(first)), "{ev:?}");
}

#[test]
fn a_carpet_seen_by_one_probe_per_server_adds_up_across_nodes_within_two_intervals() {
    let mut d = Detector::new(settings(), 1);
    // 100 servers of the /24, each with a probe reporting its own address once a second, at
    // staggered times: 1,000 pps of NTP each, 100k on the /24 (its floor: 80,000).
    let ntp = |i: u32| vec![(pkt("198.51.100.9", v4(i), 17, 123, 4444), 1_000)];
    let mut now = 1_000_000;
    let mut first = None;
    for round in 0..3 {
        for i in 0..100 {
            now += 10;
            let ev = d.ingest(&format!("web{i}"), &report(round, &ntp(i), &[]), now);
            for id in started(&ev) {
                assert!(first.is_none(), "one attack: {ev:?}");
                first = Some((round, id));
            }
        }
    }
    let (round, id) = first.expect("the carpet detected");
    assert!(round <= 1, "within two intervals: round {round}");
    let a = d.attack(id).unwrap().clone();
    assert_eq!(a.prefix, Some("203.0.113.0/24".parse().unwrap()));
    assert_eq!(a.addresses, 100);
    assert_eq!(d.attacks().count(), 1);
    assert!(d.is_seen(&a));
    // Every node goes silent: stale, the attack held (its contributions as they were).
    now += 5_000;
    assert_eq!(d.check_stale(now).len(), 100);
    assert!(!d.is_seen(&a));
    assert!(d.attack(id).unwrap().is_active());
    // They come back with nothing for it: their shares go, and it ends after the cooldown.
    let mut ended = false;
    for round in 3..20 {
        for i in 0..100 {
            now += 10;
            if d.ingest(&format!("web{i}"), &report(round, &[], &[]), now)
                .contains(&Event::Ended(id))
            {
                ended = true;
            }
        }
        if ended {
            break;
        }
    }
    assert!(ended);
}

/// A flash crowd over the whole /24 (every server popular at once: SYNs whose handshakes
/// complete, from many clients, none standing out) is no attack on the prefix; the same SYNs and
/// ACKs from two hosts are a connection flood on it.
#[test]
fn a_flash_crowd_over_a_prefix_is_no_attack_and_two_hosts_completing_handshakes_are() {
    let (mut d, mut now) = warmed(90);
    // 256 servers, each 200 SYNs and 400 ACKs a second to 443 from four clients of its own:
    // every address far under its SYN floor (10k), the prefix's 51k SYNs above its own (40k).
    let crowd = |from: &dyn Fn(u32) -> String| {
        let mut s = Vec::new();
        web(&mut s);
        for i in 0..256u32 {
            for k in 0..4u32 {
                let src = from(i * 4 + k);
                let mut syn = pkt(&src, v4(i), 6, 40_000 + k as u16, 443);
                syn.tcp_flags = Some(tcp::SYN);
                s.push((syn, 50));
                let mut ack = pkt(&src, v4(i), 6, 40_000 + k as u16, 443);
                ack.tcp_flags = Some(tcp::ACK);
                s.push((ack, 100));
            }
        }
        s
    };
    let many = |n: u32| format!("100.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255);
    for seq in 0..5 {
        now += 1000;
        let ev = d.ingest("edge", &report(100 + seq, &crowd(&many), &[]), now);
        assert!(started(&ev).is_empty(), "interval {seq}: {ev:?}");
    }
    assert!(d.counters.flash_crowds >= 5, "{:?}", d.counters);
    let two = |n: u32| format!("198.18.0.{}", 1 + n % 2);
    now += 1000;
    let ev = d.ingest("edge", &report(200, &crowd(&two), &[]), now);
    let ids = started(&ev);
    assert_eq!(ids.len(), 1, "{ev:?}");
    let a = d.attack(ids[0]).unwrap();
    assert_eq!(a.vector, Vector::TcpConnectionFlood);
    assert_eq!(a.prefix, Some("203.0.113.0/24".parse().unwrap()));
}
