//! Byte vectors: hand-checked datagrams in `tests/data`, each decoded field by field, and the same
//! datagram rebuilt with the encoder byte for byte.

mod common;

use bytes::Bytes;
use common::{EXPORT_MS, decode_ok, ip, session, vector};
use deflect_netflow::encode::{IpfixMessage, V5Message, V9Message, Value};
use deflect_netflow::{FieldSpec, Flow, Section, Template, ie};

#[test]
fn v5_records_decode_field_by_field() {
    let bytes = vector("v5_two_records.hex");
    let mut s = session();
    let p = decode_ok(&mut s, bytes.clone(), 0);
    assert_eq!(p.version, 5);
    assert_eq!(p.export_ms, EXPORT_MS + 500);
    assert_eq!(p.domain, 0x0102);
    assert_eq!(p.sequence, 4096);
    assert_eq!((p.lost, p.restarted), (0, false));
    let ntp = Flow {
        start_ms: Some(EXPORT_MS + 500 - 1000),
        end_ms: Some(EXPORT_MS + 500),
        sampling: Some(100),
        ..common::flow()
    };
    let icmp = Flow {
        src: ip("203.0.113.5"),
        proto: 1,
        src_port: 0,
        dst_port: 0x0800,
        icmp_type_code: Some(0x0800),
        packets: 1,
        bytes: 84,
        start_ms: Some(EXPORT_MS + 500),
        ..ntp.clone()
    };
    assert_eq!(p.flows, vec![ntp.clone(), icmp.clone()]);

    // The encoder writes the same octets (masks and AS numbers aside, which it leaves 0).
    let mut again = V5Message::new(EXPORT_MS + 500, 1_000_000)
        .sequence(4096)
        .engine(1, 2)
        .sampling_interval(0x4064)
        .flow(&ntp)
        .flow(&icmp)
        .encode();
    again[24 + 44] = 0x18;
    again[24 + 45] = 0x18;
    assert_eq!(again.freeze(), bytes);
}

#[test]
fn v9_sampler_from_options_data_applies_to_the_records_that_name_it() {
    let bytes = vector("v9_options_sampler.hex");
    let mut s = session();
    let p = decode_ok(&mut s, bytes.clone(), 0);
    assert_eq!((p.version, p.domain, p.sequence), (9, 33, 100));
    assert_eq!(p.export_ms, EXPORT_MS);
    assert_eq!(s.templates(), 2);
    assert_eq!(s.stats().options_records, 1);
    assert_eq!(
        p.flows,
        vec![Flow {
            src: ip("192.0.2.1"),
            dst: ip("198.51.100.7"),
            proto: 6,
            src_port: 50000,
            dst_port: 80,
            tcp_flags: 0,
            icmp_type_code: None,
            fragment: false,
            packets: 2,
            bytes: 3000,
            start_ms: Some(EXPORT_MS - 1000),
            end_ms: Some(EXPORT_MS),
            sampling: Some(1000),
            direction: None,
            input: 0,
            output: 0,
            section: None,
        }]
    );

    let data = Template::new(
        256,
        [
            (8, 4),
            (12, 4),
            (4, 1),
            (7, 2),
            (11, 2),
            (1, 4),
            (2, 4),
            (22, 4),
            (21, 4),
            (48, 1),
        ]
        .map(|(id, len)| FieldSpec::new(id, len))
        .to_vec(),
    );
    let options = Template::options(
        257,
        1,
        [(1, 4), (48, 1), (49, 1), (50, 4)]
            .map(|(id, len)| FieldSpec::new(id, len))
            .to_vec(),
    );
    let record = [
        Value::Addr(ip("192.0.2.1")),
        Value::Addr(ip("198.51.100.7")),
        Value::U(6),
        Value::U(50000),
        Value::U(80),
        Value::U(3000),
        Value::U(2),
        Value::U(999_000),
        Value::U(1_000_000),
        Value::U(5),
    ];
    let again = V9Message::new(33)
        .uptime_ms(1_000_000)
        .unix_secs(common::EXPORT_SECS)
        .sequence(100)
        .template(&data)
        .template(&options)
        .data(
            &options,
            &[vec![Value::U(0), Value::U(5), Value::U(2), Value::U(1000)]],
        )
        .data(&data, &[record.to_vec()])
        .encode();
    assert_eq!(again.freeze(), bytes);
}

#[test]
fn ipfix_reduced_size_enterprise_and_variable_length_fields_decode() {
    let bytes = vector("ipfix_varlen_enterprise.hex");
    let mut s = session();
    let p = decode_ok(&mut s, bytes.clone(), 0);
    assert_eq!((p.version, p.domain, p.sequence), (10, 7, 0));
    assert_eq!(p.flows.len(), 2);
    let f = &p.flows[0];
    assert_eq!((f.src, f.dst), (ip("192.0.2.1"), ip("198.51.100.7")));
    assert_eq!((f.packets, f.bytes), (1, 64));
    assert_eq!(
        f.section,
        Some(Section::Link(Bytes::from_static(&[1, 2, 3, 4])))
    );
    // Zero-copy: the section is the datagram's own memory.
    let Some(Section::Link(b)) = &f.section else {
        unreachable!()
    };
    assert_eq!(b.as_ptr(), bytes[16 + 36 + 4 + 19..].as_ptr());
    let g = &p.flows[1];
    assert_eq!((g.src, g.packets, g.bytes), (ip("192.0.2.2"), 3, 256));
    assert_eq!(
        g.section,
        Some(Section::Link(Bytes::from_static(&[0xaa, 0xbb, 0xcc])))
    );
    assert_eq!((f.start_ms, f.end_ms, f.sampling), (None, None, None));

    let t = Template::new(
        300,
        vec![
            FieldSpec::new(8, 4),
            FieldSpec::new(12, 4),
            FieldSpec::new(2, 2),
            FieldSpec::new(1, 4),
            FieldSpec {
                id: 1,
                enterprise: Some(29305),
                len: 4,
            },
            FieldSpec::new(ie::DATA_LINK_FRAME_SECTION, ie::VARIABLE_LENGTH),
        ],
    );
    let r1 = vec![
        Value::Addr(ip("192.0.2.1")),
        Value::Addr(ip("198.51.100.7")),
        Value::U(1),
        Value::U(64),
        Value::U(0xdead_beef),
        Value::Bytes(Bytes::from_static(&[1, 2, 3, 4])),
    ];
    let again = IpfixMessage::new(7)
        .export_secs(common::EXPORT_SECS)
        .template(&t)
        .data(&t, &[r1])
        .encode();
    // The first record and the template are the same octets (the vector's second record uses
    // the long length form, which the encoder keeps for 255 octets and more).
    assert_eq!(&again[4..16], &bytes[4..16]);
    assert_eq!(&again[16..16 + 36], &bytes[16..16 + 36]);
    assert_eq!(&again[16 + 36 + 4..], &bytes[16 + 36 + 4..16 + 36 + 4 + 23]);

    // The next message withdraws the template; its sequence follows the 2 records.
    let p = decode_ok(&mut s, vector("ipfix_withdrawal.hex"), 1000);
    assert_eq!((p.lost, p.restarted), (0, false));
    assert_eq!(s.templates(), 0);
    assert_eq!(s.stats().templates_withdrawn, 1);
}
