//! Malformed input, each with the reason expected: truncations of every vector, bad headers, bad
//! templates (too many fields, none, ids below 256, records too long, bad scopes) and data records
//! that overrun their set. The other sets of a datagram are still decoded.

mod common;

use bytes::{BufMut, Bytes, BytesMut};
use common::{EXPORT_MS, EXPORT_SECS, decode_ok, flow, session, vector};
use deflect_netflow::encode::{
    IpfixMessage, V5Message, V9Message, Value, flow_template, values_for,
};
use deflect_netflow::{ErrorKind, FieldSpec, Limits, Session, Template, ie};

fn ipfix() -> IpfixMessage {
    IpfixMessage::new(1).export_secs(EXPORT_SECS)
}

/// The one error a datagram yields, per set.
fn set_errors(b: BytesMut) -> (Session, Vec<ErrorKind>) {
    let mut s = session();
    let p = s.decode(b.freeze(), 0).expect("the header is fine");
    let kinds = p.errors.iter().map(|e| e.kind).collect();
    (s, kinds)
}

#[test]
fn every_truncation_of_every_vector_is_a_clean_error_or_fewer_records() {
    for name in [
        "v5_two_records.hex",
        "v9_options_sampler.hex",
        "ipfix_varlen_enterprise.hex",
        "ipfix_withdrawal.hex",
    ] {
        let full = vector(name);
        let whole = session()
            .decode(full.clone(), 0)
            .expect("whole")
            .flows
            .len();
        for n in 0..full.len() {
            let mut s = session();
            match s.decode(full.slice(..n), 0) {
                Ok(p) => assert!(p.flows.len() <= whole, "{name} cut at {n}"),
                Err(e) => assert!(!e.to_string().is_empty()),
            }
        }
    }
}

#[test]
fn headers_that_cannot_be_read_are_refused_whole() {
    let mut s = session();
    let e = s.decode(Bytes::from_static(&[0, 9, 0]), 0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Truncated { need: 20, have: 3 });
    assert_eq!(e.to_string(), "header: truncated: need 20 octets, 3 left");
    let e = s.decode(Bytes::from_static(&[0, 7, 0, 0]), 0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Version(7));
    let e = s.decode(Bytes::new(), 0).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Truncated { need: 2, have: 0 });
    // IPFIX length beyond the datagram, or below the header.
    let mut m = ipfix().encode();
    m[3] = 17;
    assert_eq!(
        s.decode(m.clone().freeze(), 0).unwrap_err().kind,
        ErrorKind::MessageLength { len: 17, have: 16 }
    );
    m[3] = 15;
    assert!(matches!(
        s.decode(m.freeze(), 0).unwrap_err().kind,
        ErrorKind::MessageLength { .. }
    ));
    // v5 count beyond the datagram.
    let mut m = V5Message::new(EXPORT_MS, 1).flow(&flow()).encode();
    m[3] = 2;
    assert_eq!(
        s.decode(m.freeze(), 0).unwrap_err().kind,
        ErrorKind::Truncated {
            need: 24 + 96,
            have: 24 + 48
        }
    );
    assert_eq!(s.stats().datagrams_refused, 6);
}

#[test]
fn a_set_length_that_does_not_fit_ends_the_walk_but_keeps_earlier_sets() {
    let t = flow_template(300, false, true);
    let good = ipfix()
        .template(&t)
        .data(&t, &[values_for(&t, &flow(), EXPORT_MS, None)]);
    let mut m = good.clone().encode();
    m.put_slice(&[0x01, 0x2c, 0x00, 0x03]); // set length 3: below its own header
    let len = m.len() as u16;
    m[2..4].copy_from_slice(&len.to_be_bytes());
    let mut s = session();
    let p = s.decode(m.freeze(), 0).expect("header fine");
    assert_eq!(p.flows.len(), 1);
    assert_eq!(p.errors.len(), 1);
    assert_eq!(p.errors[0].kind, ErrorKind::SetLength { len: 3, have: 4 });
    assert_eq!(p.errors[0].context, "set 3 (data, template 300)");
    assert_eq!(s.stats().sets_malformed, 1);
    // A set longer than the message.
    let m = good.raw_set(300, &[]).encode();
    let mut b = m.clone();
    let at = b.len() - 2;
    b[at..].copy_from_slice(&100u16.to_be_bytes());
    let (_, kinds) = set_errors(b);
    assert!(matches!(kinds[..], [ErrorKind::SetLength { len: 100, .. }]));
}

#[test]
fn templates_are_refused_with_their_reason_and_counted() {
    let limits = Limits::default();
    let mut many = BytesMut::new();
    many.put_u16(300);
    many.put_u16(300);
    for _ in 0..300 {
        many.put_u32(0x0008_0004);
    }
    let cases: Vec<(IpfixMessage, ErrorKind)> = vec![
        (
            ipfix().raw_set(2, &many),
            ErrorKind::TooManyFields {
                n: 300,
                max: limits.max_template_fields,
            },
        ),
        (
            ipfix().template(&Template::new(255, vec![FieldSpec::new(8, 4)])),
            ErrorKind::TemplateId(255),
        ),
        (
            ipfix().template(&Template::new(
                300,
                vec![FieldSpec::new(8, 0), FieldSpec::new(12, 0)],
            )),
            ErrorKind::NoFields,
        ),
        (
            ipfix().template(&Template::new(300, vec![FieldSpec::new(315, 40_000); 2])),
            ErrorKind::RecordTooLong(80_000),
        ),
        (
            ipfix().template(&Template::options(300, 0, vec![FieldSpec::new(8, 4)])),
            ErrorKind::Scope("scope field count is 0 or above the field count"),
        ),
        (
            ipfix().template(&Template::options(300, 2, vec![FieldSpec::new(8, 4)])),
            ErrorKind::Scope("scope field count is 0 or above the field count"),
        ),
    ];
    for (m, want) in cases {
        let (s, kinds) = set_errors(m.encode());
        assert_eq!(kinds, vec![want]);
        assert_eq!(s.stats().templates_refused, 1, "{want}");
        assert_eq!(s.templates(), 0);
    }
    // v9: a template with no field; an options template with a scope length not a multiple of 4.
    let (s, kinds) = set_errors(
        V9Message::new(1)
            .raw_set(0, &[0x01, 0x00, 0x00, 0x00])
            .encode(),
    );
    assert_eq!(
        (kinds, s.stats().templates_refused),
        (vec![ErrorKind::NoFields], 1)
    );
    let (_, kinds) = set_errors(
        V9Message::new(1)
            .raw_set(
                1,
                &[0x01, 0x01, 0x00, 0x02, 0x00, 0x04, 0, 1, 0, 0, 0, 8, 0, 4],
            )
            .encode(),
    );
    assert_eq!(kinds, vec![ErrorKind::Scope("length not a multiple of 4")]);
}

#[test]
fn a_template_claiming_65535_fields_is_a_clean_error() {
    let (s, kinds) = set_errors(
        ipfix()
            .raw_set(2, &[0x01, 0x2c, 0xff, 0xff, 0x00, 0x08, 0x00, 0x04])
            .encode(),
    );
    assert_eq!(
        kinds,
        vec![ErrorKind::Truncated {
            need: 65535 * 4,
            have: 4
        }]
    );
    assert_eq!(s.stats().sets_malformed, 1);
    assert_eq!(s.templates(), 0);
}

#[test]
fn a_refused_template_does_not_hide_the_next_one_in_its_set() {
    let mut body = BytesMut::new();
    for (id, n) in [(100u16, 1u16), (300, 1)] {
        body.put_u16(id);
        body.put_u16(n);
        body.put_u32(0x0008_0004);
    }
    let (s, kinds) = set_errors(ipfix().raw_set(2, &body).encode());
    assert_eq!(kinds, vec![ErrorKind::TemplateId(100)]);
    assert_eq!(s.templates(), 1);
}

#[test]
fn a_variable_length_field_past_its_set_loses_that_set_only() {
    let t = Template::new(
        300,
        vec![
            FieldSpec::new(8, 4),
            FieldSpec::new(12, 4),
            FieldSpec::new(315, ie::VARIABLE_LENGTH),
        ],
    );
    let ok = flow_template(301, false, true);
    let bad = [192, 0, 2, 1, 198, 51, 100, 7, 200, 1, 2, 3]; // says 200 octets, 3 follow
    let m = ipfix()
        .template(&t)
        .template(&ok)
        .raw_set(300, &bad)
        .data(&ok, &[values_for(&ok, &flow(), EXPORT_MS, None)]);
    let mut s = session();
    let p = s.decode(m.encode().freeze(), 0).expect("header fine");
    assert_eq!(p.flows, vec![flow()]);
    assert_eq!(p.errors.len(), 1);
    assert_eq!(
        p.errors[0].to_string(),
        "set 3 (data, template 300), record 1, field 315 (dataLinkFrameSection): \
         field of 200 octets runs past the set, 3 left"
    );
    assert_eq!(s.stats().records_malformed, 1);
}

#[test]
fn data_shorter_than_a_record_is_padding_and_a_longer_rest_is_a_record() {
    let t = flow_template(300, false, true);
    let rec = values_for(&t, &flow(), EXPORT_MS, None);
    let mut body = BytesMut::new();
    deflect_netflow::encode::put_record(&mut body, &t, &rec, true);
    let min = t.min_record_len(true);
    body.put_bytes(0, min - 1);
    let mut s = session();
    let p = decode_ok(&mut s, ipfix().template(&t).raw_set(300, &body).encode(), 0);
    assert_eq!(p.flows.len(), 1);
    body.put_u8(0);
    let p = decode_ok(&mut s, ipfix().template(&t).raw_set(300, &body).encode(), 0);
    assert_eq!(p.flows.len(), 2, "a full record of zeros is a record");
}

#[test]
fn reserved_set_ids_are_skipped() {
    let t = flow_template(300, false, true);
    let m = ipfix()
        .raw_set(7, &[1, 2, 3, 4])
        .template(&t)
        .data(&t, &[values_for(&t, &flow(), EXPORT_MS, None)]);
    let mut s = session();
    assert_eq!(decode_ok(&mut s, m.encode(), 0).flows.len(), 1);
    assert_eq!(s.stats().sets_reserved, 1);
}

#[test]
fn v9_padding_after_the_last_set_is_ignored_and_the_header_count_not_trusted() {
    let t = flow_template(256, false, false);
    let mut m = V9Message::new(1)
        .template(&t)
        .data(&t, &[values_for(&t, &flow(), EXPORT_MS, Some(0))]);
    m.count = Some(60_000);
    let mut b = m.encode();
    b.put_bytes(0, 3);
    let mut s = session();
    assert_eq!(decode_ok(&mut s, b, 0).flows.len(), 1);
}

#[test]
fn addresses_in_a_reduced_size_are_not_read() {
    let t = Template::new(300, vec![FieldSpec::new(8, 3), FieldSpec::new(12, 4)]);
    let m = ipfix().template(&t).data(
        &t,
        &[vec![
            Value::U(1),
            Value::Addr("198.51.100.7".parse().unwrap()),
        ]],
    );
    let mut s = session();
    let p = decode_ok(&mut s, m.encode(), 0);
    assert_eq!(
        p.flows[0].src,
        "0.0.0.0".parse::<std::net::IpAddr>().unwrap()
    );
}
