//! The session's state, as sentences: templates held, refreshed, replaced, expired, evicted and
//! withdrawn; data sets held for their template; sequence gaps and restarts; sampling and times
//! from every source the RFCs give; timeouts from options data.

mod common;

use bytes::Bytes;
use common::{EXPORT_MS, EXPORT_SECS, decode_ok, flow, ip, session};
use deflect_netflow::encode::{
    IpfixMessage, V5Message, V9Message, Value, flow_template, values_for,
};
use deflect_netflow::{FieldSpec, Flow, Limits, Section, Session, Template, ie};

fn ipfix(domain: u32) -> IpfixMessage {
    IpfixMessage::new(domain).export_secs(EXPORT_SECS)
}

fn v9(source: u32) -> V9Message {
    V9Message::new(source)
        .unix_secs(EXPORT_SECS)
        .uptime_ms(5_000_000)
}

fn fields(f: &[(u16, u16)]) -> Vec<FieldSpec> {
    f.iter().map(|&(id, len)| FieldSpec::new(id, len)).collect()
}

fn record(t: &Template, f: &Flow) -> Vec<Value> {
    values_for(t, f, EXPORT_MS, Some(5_000_000))
}

#[test]
fn a_data_set_before_its_template_is_held_and_decoded_when_the_template_comes() {
    let mut s = session();
    let t = flow_template(300, false, true);
    let p = decode_ok(
        &mut s,
        ipfix(1).data(&t, &[record(&t, &flow())]).encode(),
        0,
    );
    assert!(p.flows.is_empty());
    assert_eq!(s.stats().sets_unknown_template, 1);
    assert_eq!(s.held_sets(), 1);
    let p = decode_ok(&mut s, ipfix(1).sequence(1).template(&t).encode(), 2000);
    assert_eq!(p.flows, vec![flow()]);
    assert_eq!(s.stats().sets_decoded_late, 1);
    assert_eq!(s.held_sets(), 0);
}

#[test]
fn a_data_set_before_its_template_in_the_same_message_is_decoded_with_it() {
    let mut s = session();
    let t = flow_template(300, false, true);
    let p = decode_ok(
        &mut s,
        ipfix(1)
            .data(&t, &[record(&t, &flow())])
            .template(&t)
            .encode(),
        0,
    );
    assert_eq!(p.flows, vec![flow()]);
}

#[test]
fn a_held_set_is_dropped_after_pending_ms_and_never_guessed() {
    let mut s = session();
    let t = flow_template(300, false, true);
    decode_ok(
        &mut s,
        ipfix(1).data(&t, &[record(&t, &flow())]).encode(),
        0,
    );
    let p = decode_ok(&mut s, ipfix(1).sequence(1).template(&t).encode(), 10_001);
    assert!(p.flows.is_empty());
    assert_eq!(s.stats().sets_dropped, 1);
    assert_eq!(s.stats().sets_decoded_late, 0);
}

#[test]
fn held_sets_stay_within_their_count_and_octets() {
    let limits = Limits {
        max_pending_sets: 3,
        max_pending_bytes: 1000,
        ..Limits::default()
    };
    let mut s = Session::new(limits);
    let t = flow_template(300, false, true);
    for i in 0..10 {
        decode_ok(
            &mut s,
            ipfix(1).data(&t, &[record(&t, &flow())]).encode(),
            i,
        );
    }
    assert_eq!(s.held_sets(), 3);
    assert_eq!(s.stats().sets_dropped, 7);
    let big: Vec<Vec<Value>> = (0..15).map(|_| record(&t, &flow())).collect();
    decode_ok(&mut s, ipfix(1).data(&t, &big).encode(), 20);
    assert!(s.held_sets() <= 3);
    decode_ok(&mut s, ipfix(1).data(&t, &big).data(&t, &big).encode(), 21);
    assert!(
        s.held_sets() <= 1,
        "two sets of 810 octets cannot both fit in 1000"
    );
}

#[test]
fn a_template_flood_stays_within_max_templates() {
    let mut s = session();
    for i in 0..4 {
        let mut m = ipfix(1);
        for id in 0..250u16 {
            m = m.template(&flow_template(256 + i * 250 + id, false, true));
        }
        decode_ok(&mut s, m.encode(), 0);
    }
    assert_eq!(s.templates(), 256);
    assert_eq!(s.stats().templates_added, 1000);
    assert_eq!(s.stats().templates_evicted, 744);
    // The least recently used went first: the newest are all there.
    let t = flow_template(256 + 999, false, true);
    let p = decode_ok(
        &mut s,
        ipfix(1).data(&t, &[record(&t, &flow())]).encode(),
        0,
    );
    assert_eq!(p.flows.len(), 1);
}

#[test]
fn templates_are_refreshed_replaced_and_expire() {
    let mut s = session();
    let t = flow_template(300, false, true);
    decode_ok(&mut s, ipfix(1).template(&t).encode(), 0);
    decode_ok(&mut s, ipfix(1).template(&t).encode(), 1_000_000);
    assert_eq!(s.stats().templates_refreshed, 1);
    let t6 = flow_template(300, true, true);
    decode_ok(&mut s, ipfix(1).template(&t6).encode(), 1_000_000);
    assert_eq!(s.stats().templates_replaced, 1);
    // Records now decode with the new layout.
    let f6 = Flow {
        src: ip("2001:db8::1"),
        dst: ip("2001:db8::2"),
        ..flow()
    };
    let p = decode_ok(
        &mut s,
        ipfix(1).data(&t6, &[record(&t6, &f6)]).encode(),
        1_000_000,
    );
    assert_eq!(p.flows, vec![f6]);
    // 30 minutes without a refresh: expired, and a data set is held, not decoded.
    let later = 1_000_000 + 30 * 60 * 1000 + 1;
    let p = decode_ok(&mut s, ipfix(1).data(&t6, &[]).encode(), later);
    assert!(p.flows.is_empty());
    assert_eq!(s.templates(), 0);
    assert_eq!(s.stats().templates_expired, 1);
}

#[test]
fn templates_are_per_domain_and_per_version() {
    let mut s = session();
    let t = flow_template(300, false, true);
    decode_ok(&mut s, ipfix(1).template(&t).encode(), 0);
    let p = decode_ok(
        &mut s,
        ipfix(2).data(&t, &[record(&t, &flow())]).encode(),
        0,
    );
    assert!(p.flows.is_empty(), "domain 2 has no template 300");
    let p = decode_ok(&mut s, v9(1).data(&t, &[record(&t, &flow())]).encode(), 0);
    assert!(p.flows.is_empty(), "v9 source 1 has no template 300");
    assert_eq!(s.stats().sets_unknown_template, 2);
}

#[test]
fn withdrawing_all_templates_of_a_kind_leaves_the_other_kind() {
    let mut s = session();
    let opt = Template::options(
        301,
        1,
        fields(&[(ie::SELECTOR_ID, 8), (ie::SAMPLING_INTERVAL, 4)]),
    );
    let m = ipfix(1)
        .template(&flow_template(300, false, true))
        .template(&flow_template(302, true, true))
        .template(&opt);
    decode_ok(&mut s, m.encode(), 0);
    assert_eq!(s.templates(), 3);
    decode_ok(&mut s, ipfix(1).withdraw(2, false).encode(), 0);
    assert_eq!(s.templates(), 1);
    assert_eq!(s.stats().templates_withdrawn, 2);
    decode_ok(&mut s, ipfix(1).withdraw(3, true).encode(), 0);
    assert_eq!(s.templates(), 0);
}

#[test]
fn v9_sequence_gaps_count_packets_and_going_back_far_is_a_restart() {
    let mut s = session();
    let t = flow_template(300, false, false);
    decode_ok(&mut s, v9(7).sequence(10).template(&t).encode(), 0);
    let p = decode_ok(&mut s, v9(7).sequence(11).encode(), 0);
    assert_eq!((p.lost, p.restarted), (0, false));
    let p = decode_ok(&mut s, v9(7).sequence(15).encode(), 0);
    assert_eq!(p.lost, 3);
    // A reordered packet is not a restart.
    let p = decode_ok(&mut s, v9(7).sequence(13).encode(), 0);
    assert_eq!((p.lost, p.restarted), (0, false));
    assert_eq!(s.templates(), 1);
    let p = decode_ok(&mut s, v9(7).sequence(16).encode(), 0);
    assert_eq!(p.lost, 0);
    // Back to 0 with the uptime reset: the exporter rebooted; its templates are gone.
    let p = decode_ok(&mut s, v9(7).uptime_ms(20_000).sequence(0).encode(), 0);
    assert!(p.restarted);
    assert_eq!(s.templates(), 0);
    assert_eq!(s.stats().restarts, 1);
    assert_eq!(s.stats().lost, 3);
}

#[test]
fn v9_uptime_going_back_alone_is_a_restart() {
    let mut s = session();
    decode_ok(&mut s, v9(7).sequence(10).encode(), 0);
    let p = decode_ok(&mut s, v9(7).uptime_ms(1000).sequence(11).encode(), 0);
    assert!(p.restarted);
}

#[test]
fn ipfix_sequence_counts_data_records() {
    let mut s = session();
    let t = flow_template(300, false, true);
    let five: Vec<Vec<Value>> = (0..5).map(|_| record(&t, &flow())).collect();
    decode_ok(
        &mut s,
        ipfix(1)
            .sequence(100_000)
            .template(&t)
            .data(&t, &five)
            .encode(),
        0,
    );
    let p = decode_ok(
        &mut s,
        ipfix(1).sequence(100_005).data(&t, &five).encode(),
        0,
    );
    assert_eq!(p.lost, 0);
    let p = decode_ok(
        &mut s,
        ipfix(1).sequence(100_017).data(&t, &five).encode(),
        0,
    );
    assert_eq!(p.lost, 7);
    // Within 4096 records back: a reordered message, not a restart.
    let p = decode_ok(
        &mut s,
        ipfix(1).sequence(100_010).data(&t, &five).encode(),
        0,
    );
    assert_eq!((p.lost, p.restarted), (0, false));
    let p = decode_ok(&mut s, ipfix(1).sequence(0).encode(), 0);
    assert!(p.restarted);
}

#[test]
fn v5_sequence_counts_flows() {
    let mut s = session();
    let m = |seq| {
        V5Message::new(EXPORT_MS, 5_000_000)
            .sequence(seq)
            .flow(&flow())
            .flow(&flow())
    };
    decode_ok(&mut s, m(1000).encode(), 0);
    assert_eq!(decode_ok(&mut s, m(1002).encode(), 0).lost, 0);
    assert_eq!(decode_ok(&mut s, m(1010).encode(), 0).lost, 6);
    assert!(
        decode_ok(
            &mut s,
            V5Message::new(EXPORT_MS, 10).sequence(0).encode(),
            0
        )
        .restarted
    );
}

/// Decodes one IPFIX data record of `t` with `values`, after `options` (a template and its
/// records) if any.
fn one_ipfix(
    t: &Template,
    values: Vec<Value>,
    options: Option<(&Template, Vec<Vec<Value>>)>,
) -> Flow {
    let mut s = session();
    let mut m = ipfix(1);
    if let Some((o, records)) = options {
        m = m.template(o).data(o, &records);
    }
    let p = decode_ok(&mut s, m.template(t).data(t, &[values]).encode(), 0);
    assert_eq!(p.flows.len(), 1);
    p.flows.into_iter().next().unwrap_or_else(flow)
}

fn addr_fields(extra: &[(u16, u16)]) -> Template {
    let mut f = fields(&[(8, 4), (12, 4)]);
    f.extend(fields(extra));
    Template::new(300, f)
}

fn addrs(extra: &[Value]) -> Vec<Value> {
    let mut v = vec![
        Value::Addr(ip("192.0.2.1")),
        Value::Addr(ip("198.51.100.7")),
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn sampling_in_the_record_wins() {
    let t = addr_fields(&[(ie::SAMPLING_INTERVAL, 4)]);
    assert_eq!(
        one_ipfix(&t, addrs(&[Value::U(512)]), None).sampling,
        Some(512)
    );
}

#[test]
fn sampling_from_each_kind_of_sampler_options_data() {
    let t = addr_fields(&[(ie::SELECTOR_ID, 8)]);
    type Case = (Vec<(u16, u16)>, Vec<Value>, u32);
    let cases: Vec<Case> = vec![
        (
            vec![(ie::SAMPLER_RANDOM_INTERVAL, 4)],
            vec![Value::U(2000)],
            2000,
        ),
        (
            vec![
                (ie::SAMPLING_PACKET_INTERVAL, 4),
                (ie::SAMPLING_PACKET_SPACE, 4),
            ],
            vec![Value::U(1), Value::U(99)],
            100,
        ),
        (
            vec![(ie::SAMPLING_SIZE, 4), (ie::SAMPLING_POPULATION, 4)],
            vec![Value::U(2), Value::U(1000)],
            500,
        ),
        (
            vec![(ie::SAMPLING_PROBABILITY, 8)],
            vec![Value::F64(0.001)],
            1000,
        ),
        (
            vec![(ie::SAMPLING_PROBABILITY, 4)],
            vec![Value::F64(0.25)],
            4,
        ),
        (
            vec![
                (ie::SELECTOR_ID_TOTAL_PKTS_OBSERVED, 8),
                (ie::SELECTOR_ID_TOTAL_PKTS_SELECTED, 8),
            ],
            vec![Value::U(64_000), Value::U(64)],
            1000,
        ),
    ];
    for (sampler_fields, values, want) in cases {
        let mut f = fields(&[(ie::SELECTOR_ID, 8)]);
        f.extend(fields(&sampler_fields));
        let o = Template::options(400, 1, f);
        // Two samplers, so that the record's id, not "the only sampler", decides.
        let mut mine = vec![Value::U(9)];
        mine.extend(values.clone());
        let mut other = vec![Value::U(8)];
        other.extend(values.iter().map(|_| Value::U(3)));
        let got = one_ipfix(&t, addrs(&[Value::U(9)]), Some((&o, vec![other, mine])));
        assert_eq!(got.sampling, Some(want), "{sampler_fields:?}");
    }
}

#[test]
fn sampling_falls_back_to_the_domain_then_to_the_only_sampler() {
    let t = addr_fields(&[]);
    let domain_wide = Template::options(400, 1, fields(&[(149, 4), (ie::SAMPLING_INTERVAL, 4)]));
    let got = one_ipfix(
        &t,
        addrs(&[]),
        Some((&domain_wide, vec![vec![Value::U(1), Value::U(64)]])),
    );
    assert_eq!(got.sampling, Some(64));
    let one = Template::options(
        400,
        1,
        fields(&[(ie::SAMPLER_ID, 1), (ie::SAMPLER_RANDOM_INTERVAL, 4)]),
    );
    let got = one_ipfix(
        &t,
        addrs(&[]),
        Some((&one, vec![vec![Value::U(3), Value::U(128)]])),
    );
    assert_eq!(got.sampling, Some(128));
    let two = vec![
        vec![Value::U(3), Value::U(128)],
        vec![Value::U(4), Value::U(256)],
    ];
    assert_eq!(one_ipfix(&t, addrs(&[]), Some((&one, two))).sampling, None);
    assert_eq!(one_ipfix(&t, addrs(&[]), None).sampling, None);
}

#[test]
fn v9_domain_sampling_interval_from_options_applies_to_every_record() {
    let mut s = session();
    let o = Template::options(
        257,
        1,
        fields(&[
            (1, 4),
            (ie::SAMPLING_INTERVAL, 4),
            (ie::SAMPLING_ALGORITHM, 1),
        ]),
    );
    let t = flow_template(256, false, false);
    let m = v9(1)
        .template(&o)
        .data(&o, &[vec![Value::U(0), Value::U(100), Value::U(2)]])
        .template(&t)
        .data(&t, &[record(&t, &flow())]);
    let p = decode_ok(&mut s, m.encode(), 0);
    assert_eq!(p.flows[0].sampling, Some(100));
    assert_eq!(p.flows[0].start_ms, flow().start_ms);
}

#[test]
fn every_time_representation_gives_the_same_times() {
    let f = Flow {
        start_ms: Some(EXPORT_MS - 2500),
        end_ms: Some(EXPORT_MS - 500),
        ..flow()
    };
    for (start, end, len) in [
        (ie::FLOW_START_MILLISECONDS, ie::FLOW_END_MILLISECONDS, 8),
        (ie::FLOW_START_MICROSECONDS, ie::FLOW_END_MICROSECONDS, 8),
        (ie::FLOW_START_NANOSECONDS, ie::FLOW_END_NANOSECONDS, 8),
        (
            ie::FLOW_START_DELTA_MICROSECONDS,
            ie::FLOW_END_DELTA_MICROSECONDS,
            4,
        ),
    ] {
        let t = addr_fields(&[(start, len), (end, len)]);
        let got = one_ipfix(&t, values_for(&t, &f, EXPORT_MS, None), None);
        assert_eq!(
            (got.start_ms, got.end_ms),
            (f.start_ms, f.end_ms),
            "{start}/{end}"
        );
    }
    // Seconds lose the milliseconds.
    let t = addr_fields(&[(ie::FLOW_START_SECONDS, 4), (ie::FLOW_END_SECONDS, 4)]);
    let got = one_ipfix(&t, values_for(&t, &f, EXPORT_MS, None), None);
    assert_eq!(
        (got.start_ms, got.end_ms),
        (Some(EXPORT_MS - 3000), Some(EXPORT_MS - 1000))
    );
    // A duration completes one end.
    let t = addr_fields(&[
        (ie::FLOW_START_MILLISECONDS, 8),
        (ie::FLOW_DURATION_MILLISECONDS, 4),
    ]);
    let got = one_ipfix(
        &t,
        addrs(&[Value::U(EXPORT_MS - 2500), Value::U(2000)]),
        None,
    );
    assert_eq!(got.end_ms, f.end_ms);
    let t = addr_fields(&[
        (ie::FLOW_END_MILLISECONDS, 8),
        (ie::FLOW_DURATION_MICROSECONDS, 4),
    ]);
    let got = one_ipfix(
        &t,
        addrs(&[Value::U(EXPORT_MS - 500), Value::U(2_000_000)]),
        None,
    );
    assert_eq!(got.start_ms, f.start_ms);
}

#[test]
fn ipfix_sys_up_time_needs_the_system_init_time() {
    let init = EXPORT_MS - 3_600_000;
    let t = addr_fields(&[
        (ie::FLOW_START_SYS_UP_TIME, 4),
        (ie::FLOW_END_SYS_UP_TIME, 4),
    ]);
    let v = addrs(&[Value::U(3_597_500), Value::U(3_599_500)]);
    let got = one_ipfix(&t, v.clone(), None);
    assert_eq!((got.start_ms, got.end_ms), (None, None));
    let o = Template::options(
        400,
        1,
        fields(&[(149, 4), (ie::SYSTEM_INIT_TIME_MILLISECONDS, 8)]),
    );
    let got = one_ipfix(&t, v, Some((&o, vec![vec![Value::U(1), Value::U(init)]])));
    assert_eq!(
        (got.start_ms, got.end_ms),
        (Some(EXPORT_MS - 2500), Some(EXPORT_MS - 500))
    );
    // Or in the record itself.
    let t = addr_fields(&[
        (ie::FLOW_START_SYS_UP_TIME, 4),
        (ie::SYSTEM_INIT_TIME_MILLISECONDS, 8),
    ]);
    let got = one_ipfix(&t, addrs(&[Value::U(3_597_500), Value::U(init)]), None);
    assert_eq!(got.start_ms, Some(EXPORT_MS - 2500));
}

#[test]
fn timeouts_from_options_data_are_sticky() {
    let mut s = session();
    let o = Template::options(
        400,
        1,
        fields(&[
            (149, 4),
            (ie::FLOW_ACTIVE_TIMEOUT, 2),
            (ie::FLOW_IDLE_TIMEOUT, 2),
        ]),
    );
    let p = decode_ok(
        &mut s,
        ipfix(1)
            .template(&o)
            .data(&o, &[vec![Value::U(1), Value::U(60), Value::U(15)]])
            .encode(),
        0,
    );
    assert_eq!(
        (p.active_timeout_ms, p.idle_timeout_ms),
        (Some(60_000), Some(15_000))
    );
    let p = decode_ok(&mut s, ipfix(1).encode(), 0);
    assert_eq!(
        (p.active_timeout_ms, p.idle_timeout_ms),
        (Some(60_000), Some(15_000))
    );
    let p = decode_ok(&mut s, ipfix(2).encode(), 0);
    assert_eq!(p.active_timeout_ms, None, "another domain");
}

#[test]
fn a_psamp_packet_record_is_one_packet_of_its_section() {
    let t = addr_fields(&[
        (ie::SELECTOR_ID, 8),
        (ie::IP_HEADER_PACKET_SECTION, ie::VARIABLE_LENGTH),
    ]);
    let section = Bytes::from(vec![0x45u8; 300]);
    let got = one_ipfix(
        &t,
        addrs(&[Value::U(1), Value::Bytes(section.clone())]),
        None,
    );
    assert_eq!((got.packets, got.bytes), (1, 300));
    assert_eq!(got.section, Some(Section::Ip(section)));
}

#[test]
fn icmp_fragments_direction_and_16_bit_flags() {
    let t = addr_fields(&[
        (ie::ICMP_TYPE_CODE_IPV4, 2),
        (ie::FRAGMENT_OFFSET, 2),
        (ie::FLOW_DIRECTION, 1),
        (ie::TCP_CONTROL_BITS, 2),
        (ie::POST_PACKET_DELTA_COUNT, 4),
        (ie::PACKET_TOTAL_COUNT, 8),
    ]);
    let got = one_ipfix(
        &t,
        addrs(&[
            Value::U(0x0303),
            Value::U(185),
            Value::U(1),
            Value::U(0x0112),
            Value::U(7),
            Value::U(1_000_000),
        ]),
        None,
    );
    assert_eq!(got.icmp_type_code, Some(0x0303));
    assert!(got.fragment);
    assert_eq!(got.direction, Some(1));
    assert_eq!(got.tcp_flags, 0x12);
    assert_eq!(got.packets, 7, "post-delta before totals");
}

#[test]
fn a_record_without_an_address_is_not_a_flow() {
    let mut s = session();
    let t = Template::new(300, fields(&[(ie::PACKET_DELTA_COUNT, 8)]));
    let p = decode_ok(
        &mut s,
        ipfix(1)
            .template(&t)
            .data(&t, &[vec![Value::U(5)]])
            .encode(),
        0,
    );
    assert!(p.flows.is_empty());
    assert_eq!(s.stats().records_not_flows, 1);
}

#[test]
fn samplers_stay_within_max_samplers() {
    let mut s = session();
    let o = Template::options(
        400,
        1,
        fields(&[(ie::SELECTOR_ID, 8), (ie::SAMPLING_INTERVAL, 4)]),
    );
    let records: Vec<Vec<Value>> = (0..200).map(|i| vec![Value::U(i), Value::U(10)]).collect();
    decode_ok(&mut s, ipfix(1).template(&o).data(&o, &records).encode(), 0);
    assert_eq!(s.stats().samplers_evicted, 136);
}
