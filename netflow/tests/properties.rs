//! Property tests: arbitrary bytes (alone, behind a valid header, or into a session primed with
//! templates) never make the decoder panic, and arbitrary flows round-trip through the encoder in
//! every version, over templates with their fields in any order and any counter size.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use common::{EXPORT_MS, EXPORT_SECS, session};
use deflect_netflow::encode::{IpfixMessage, V9Message, Value, flow_template, values_for};
use deflect_netflow::{FieldSpec, Flow, Section, Session, Template, ie};
use proptest::collection::vec;
use proptest::prelude::*;

/// A session that knows v9 and IPFIX templates 256–259 and an options template, for domain 1.
fn primed() -> Session {
    let mut s = session();
    let o = Template::options(
        300,
        1,
        vec![
            FieldSpec::new(ie::SELECTOR_ID, 8),
            FieldSpec::new(ie::SAMPLING_INTERVAL, 4),
        ],
    );
    let mut m = IpfixMessage::new(1).template(&o);
    let mut n = V9Message::new(1);
    for (id, v6) in [(256, false), (257, true)] {
        m = m.template(&flow_template(id, v6, true));
        n = n.template(&flow_template(id, v6, false));
    }
    let var = Template::new(
        258,
        vec![
            FieldSpec::new(8, 4),
            FieldSpec::new(315, ie::VARIABLE_LENGTH),
            FieldSpec::new(2, 2),
        ],
    );
    m = m.template(&var);
    let _ = s.decode(m.encode().freeze(), 0);
    let _ = s.decode(n.encode().freeze(), 0);
    s
}

fn with_header(version: u16, body: &[u8]) -> Bytes {
    let mut b = match version {
        9 => V9Message::new(1).encode(),
        _ => IpfixMessage::new(1).encode(),
    };
    b.extend_from_slice(body);
    if version == 10 {
        let len = b.len().min(65535) as u16;
        b[2..4].copy_from_slice(&len.to_be_bytes());
    }
    b.freeze()
}

fn ip(v6: bool) -> BoxedStrategy<IpAddr> {
    if v6 {
        any::<[u8; 16]>()
            .prop_map(|o| IpAddr::V6(Ipv6Addr::from(o)))
            .boxed()
    } else {
        any::<[u8; 4]>()
            .prop_map(|o| IpAddr::V4(Ipv4Addr::from(o)))
            .boxed()
    }
}

/// A flow whose values fit the fields `fields_template` uses (32-bit counts in v9).
fn arb_flow(v6: bool) -> impl Strategy<Value = Flow> {
    (
        ip(v6),
        ip(v6),
        any::<(u8, u16, u16, u8)>(),
        any::<(u32, u32)>(),
        (0u64..86_400_000, 0u64..86_400_000),
        any::<(u32, u32)>(),
        proptest::option::of(1u32..1_000_000),
    )
        .prop_map(
            move |(src, dst, (proto, sp, dp, flags), (pk, by), (a, b), (i, o), sampling)| Flow {
                src,
                dst,
                proto,
                src_port: sp,
                dst_port: dp,
                tcp_flags: flags,
                icmp_type_code: None,
                fragment: false,
                packets: pk.into(),
                bytes: by.into(),
                start_ms: Some(EXPORT_MS - a.max(b)),
                end_ms: Some(EXPORT_MS - a.min(b)),
                sampling,
                direction: None,
                input: i,
                output: o,
                section: None,
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in vec(any::<u8>(), 0..1600)) {
        let _ = session().decode(Bytes::from(data.clone()), 0);
        let _ = primed().decode(Bytes::from(data), 0);
    }

    #[test]
    fn arbitrary_sets_behind_a_valid_header_never_panic(version in prop_oneof![Just(9u16), Just(10u16)], body in vec(any::<u8>(), 0..1600)) {
        let mut s = primed();
        let _ = s.decode(with_header(version, &body), 0);
        let _ = s.decode(with_header(version, &body), 3_600_000);
    }

    #[test]
    fn a_valid_message_with_octets_changed_never_panics(changes in vec((any::<usize>(), any::<u8>()), 1..8)) {
        let t = flow_template(256, false, true);
        let f = Flow { src: "192.0.2.1".parse().unwrap(), dst: "198.51.100.7".parse().unwrap(), proto: 6, src_port: 1, dst_port: 2, tcp_flags: 2, icmp_type_code: None, fragment: false, packets: 1, bytes: 60, start_ms: None, end_ms: None, sampling: None, direction: None, input: 0, output: 0, section: None };
        let mut b = IpfixMessage::new(1).template(&t).data(&t, &[values_for(&t, &f, 0, None)]).encode();
        for (at, v) in changes {
            let at = at % b.len();
            b[at] = v;
        }
        let _ = primed().decode(b.freeze(), 0);
    }

    #[test]
    fn flows_round_trip_in_every_version(
        flows in vec(arb_flow(false), 1..25),
        flows6 in vec(arb_flow(true), 1..10),
        order in Just(()).prop_perturb(|_, mut rng| {
            let mut idx: Vec<usize> = (0..12).collect();
            for i in (1..idx.len()).rev() { idx.swap(i, (rng.next_u32() as usize) % (i + 1)); }
            idx
        }),
        extra in proptest::sample::select(vec![ie::SAMPLING_INTERVAL, ie::FLOW_DIRECTION]),
    ) {
        for ipfix in [true, false] {
            for (v6, flows) in [(false, &flows), (true, &flows6)] {
                // The standard template, fields shuffled, samplingInterval added.
                let base = flow_template(256 + u16::from(v6), v6, ipfix);
                let mut fields: Vec<FieldSpec> = order.iter().map(|&i| base.fields[i]).collect();
                fields.push(FieldSpec::new(extra, 4));
                let t = Template::new(base.id, fields);
                let uptime = 90_000_000;
                let records: Vec<Vec<Value>> = flows.iter().map(|f| values_for(&t, f, EXPORT_MS, Some(uptime))).collect();
                let bytes = if ipfix {
                    IpfixMessage::new(5).export_secs(EXPORT_SECS).template(&t).data(&t, &records).encode()
                } else {
                    V9Message::new(5).unix_secs(EXPORT_SECS).uptime_ms(uptime).template(&t).data(&t, &records).encode()
                };
                let p = session().decode(bytes.freeze(), 0).expect("decodes");
                prop_assert!(p.errors.is_empty());
                let want: Vec<Flow> = flows.iter().map(|f| {
                    let mut f = f.clone();
                    if extra == ie::SAMPLING_INTERVAL { } else { f.sampling = None; f.direction = Some(0); }
                    f
                }).collect();
                prop_assert_eq!(p.flows, want);
            }
        }
    }

    #[test]
    fn sections_of_any_length_round_trip(sections in vec(vec(any::<u8>(), 0..600), 1..4)) {
        let t = Template::new(300, vec![FieldSpec::new(8, 4), FieldSpec::new(12, 4), FieldSpec::new(315, ie::VARIABLE_LENGTH)]);
        let records: Vec<Vec<Value>> = sections.iter().map(|s| vec![
            Value::Addr("192.0.2.1".parse().unwrap()),
            Value::Addr("192.0.2.2".parse().unwrap()),
            Value::Bytes(Bytes::from(s.clone())),
        ]).collect();
        let b = IpfixMessage::new(1).template(&t).data(&t, &records).encode();
        let p = session().decode(b.freeze(), 0).expect("decodes");
        let got: Vec<Option<Section>> = p.flows.into_iter().map(|f| f.section).collect();
        let want: Vec<Option<Section>> = sections.into_iter().map(|s| Some(Section::Link(Bytes::from(s)))).collect();
        prop_assert_eq!(got, want);
    }
}
