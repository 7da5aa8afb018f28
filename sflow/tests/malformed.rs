//! Malformed input: truncation sweeps at every level (datagram, sample, record) and a table of
//! malformed datagrams with the exact error each must give, context included.

mod common;

use bytes::{Bytes, BytesMut};
use common::{every_kind, ip, vector};
use deflect_sflow::encode::{
    DatagramBuilder, encode, put_counter_record, put_flow_record, put_sample,
};
use deflect_sflow::{
    CounterRecord, CounterSample, Datagram, DecodeError, ErrorKind, FlowRecord, FlowSample, Sample,
    decode,
};

fn sample_name(format: u32) -> &'static str {
    match format {
        1 => "flow sample",
        2 => "counter sample",
        3 => "expanded flow sample",
        4 => "expanded counter sample",
        _ => "?",
    }
}

/// The datagrams the sweeps run over.
fn datagrams() -> Vec<(&'static str, Datagram)> {
    let mut all = vec![("every_kind", every_kind())];
    for name in [
        "every_record.hex",
        "goflow2_flow_sample.hex",
        "goflow2_expanded_flow_samples.hex",
    ] {
        all.push((name, decode(vector(name)).unwrap()));
    }
    all
}

/// Every prefix of a valid datagram fails, with the datagram header or the sample holding the cut
/// as its context, and never panics.
#[test]
fn truncated_datagram_fails_at_every_offset() {
    for (name, d) in datagrams() {
        let bytes = encode(&d).freeze();
        let header_len = encode(&Datagram {
            samples: vec![],
            ..d.clone()
        })
        .len();
        // Where each sample starts and ends.
        let mut bounds = vec![];
        let mut at = header_len;
        for s in &d.samples {
            let mut b = BytesMut::new();
            put_sample(&mut b, s);
            bounds.push((at, at + b.len()));
            at += b.len();
        }
        assert_eq!(at, bytes.len());
        for cut in 0..bytes.len() {
            let err =
                decode(bytes.slice(..cut)).expect_err(&format!("{name}: prefix of {cut} decoded"));
            assert!(!err.to_string().is_empty());
            if err.context == "datagram header" {
                assert!(
                    matches!(
                        err.kind,
                        ErrorKind::Truncated { .. }
                            | ErrorKind::TooMany {
                                what: "samples",
                                ..
                            }
                    ),
                    "{name} cut at {cut}: {err}"
                );
                continue;
            }
            let k = bounds
                .iter()
                .position(|&(s, e)| s <= cut && cut < e)
                .unwrap();
            let want = format!("sample {}", k + 1);
            assert!(
                err.context == want || err.context.starts_with(&format!("{want} (")),
                "{name} cut at {cut}: {err}, expected {want}"
            );
        }
    }
}

/// Every sample cut short (its length field telling the truth) fails with that sample, or one of
/// its records, as the context.
#[test]
fn truncated_sample_fails_at_every_offset() {
    for (name, d) in datagrams() {
        for (i, s) in d.samples.iter().enumerate() {
            if let Sample::Unknown { .. } = s {
                continue;
            }
            let mut b = BytesMut::new();
            put_sample(&mut b, s);
            let body = b.freeze().slice(8..);
            let prefix = format!("sample {} ({})", i + 1, sample_name(s.format()));
            for cut in 0..body.len() {
                let mut broken = d.clone();
                broken.samples[i] = Sample::Unknown {
                    format: s.format(),
                    data: body.slice(..cut),
                };
                let err = decode(encode(&broken).freeze())
                    .expect_err(&format!("{name}: sample {i} cut at {cut} decoded"));
                assert!(
                    err.context.starts_with(&prefix),
                    "{name}, sample {i} cut at {cut}: {err}"
                );
            }
        }
    }
}

/// Every known record cut short (its length field telling the truth) fails with exactly that
/// sample and record as the context.
#[test]
fn truncated_record_fails_at_every_offset_and_names_it() {
    let record_name = |counters: bool, format: u32| match (counters, format) {
        (false, 1) => "raw packet header",
        (false, 2) => "sampled Ethernet",
        (false, 3) => "sampled IPv4",
        (false, 4) => "sampled IPv6",
        (false, 1001) => "extended switch",
        (false, 1002) => "extended router",
        (false, 1003) => "extended gateway",
        (true, 1) => "generic interface counters",
        (true, 2) => "Ethernet counters",
        _ => "?",
    };
    let mut checked = 0;
    for (name, d) in datagrams() {
        for (i, s) in d.samples.iter().enumerate() {
            // (format, body) of every known record of the sample.
            let bodies: Vec<(usize, u32, Bytes)> = match s {
                Sample::Flow(f) => f
                    .records
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| !matches!(r, FlowRecord::Unknown { .. }))
                    .map(|(j, r)| {
                        let mut b = BytesMut::new();
                        put_flow_record(&mut b, r);
                        (j, r.format(), b.freeze().slice(8..))
                    })
                    .collect(),
                Sample::Counters(c) => c
                    .records
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| !matches!(r, CounterRecord::Unknown { .. }))
                    .map(|(j, r)| {
                        let mut b = BytesMut::new();
                        put_counter_record(&mut b, r);
                        (j, r.format(), b.freeze().slice(8..))
                    })
                    .collect(),
                Sample::Unknown { .. } => continue,
            };
            let counters = matches!(s, Sample::Counters(_));
            for (j, format, body) in bodies {
                let want = format!(
                    "sample {} ({}), record {} ({})",
                    i + 1,
                    sample_name(s.format()),
                    j + 1,
                    record_name(counters, format)
                );
                for cut in 0..body.len() {
                    let mut broken = d.clone();
                    let data = body.slice(..cut);
                    match &mut broken.samples[i] {
                        Sample::Flow(f) => f.records[j] = FlowRecord::Unknown { format, data },
                        Sample::Counters(c) => {
                            c.records[j] = CounterRecord::Unknown { format, data }
                        }
                        Sample::Unknown { .. } => unreachable!(),
                    }
                    let err = decode(encode(&broken).freeze())
                        .expect_err(&format!("{name}: {want} cut at {cut} decoded"));
                    assert_eq!(err.context, want, "{name}: cut at {cut}: {err}");
                    assert!(
                        matches!(
                            err.kind,
                            ErrorKind::Truncated { .. }
                                | ErrorKind::Length { .. }
                                | ErrorKind::TooMany { .. }
                        ),
                        "{err}"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1500, "only {checked} cuts");
}

fn datagram_with(sample: Sample) -> Bytes {
    DatagramBuilder::new(ip("192.0.2.1"))
        .sample(sample)
        .encode()
        .freeze()
}

fn flow_with(records: Vec<FlowRecord>) -> Sample {
    Sample::Flow(FlowSample {
        records,
        ..FlowSample::default()
    })
}

fn words(w: &[u32]) -> Bytes {
    w.iter()
        .flat_map(|w| w.to_be_bytes())
        .collect::<Vec<u8>>()
        .into()
}

fn err(bytes: Bytes) -> DecodeError {
    decode(bytes).expect_err("must not decode")
}

fn unknown_flow(format: u32, body: &[u32]) -> FlowRecord {
    FlowRecord::Unknown {
        format,
        data: words(body),
    }
}

/// A table of malformed datagrams and the exact error of each.
#[test]
fn malformed_datagrams_give_their_reason_and_place() {
    let switch = unknown_flow(1001, &[1, 2, 3, 4]);
    let cases: Vec<(&str, Bytes, &str, ErrorKind)> = vec![
        (
            "empty",
            Bytes::new(),
            "datagram header",
            ErrorKind::Truncated { need: 4, have: 0 },
        ),
        (
            "sFlow v4",
            words(&[4, 1, 0, 0, 0, 0, 0]),
            "datagram header",
            ErrorKind::Version(4),
        ),
        (
            "NetFlow v9 header",
            Bytes::from_static(&[0, 9, 0, 1, 0, 0, 0, 0]),
            "datagram header",
            ErrorKind::Version(0x0009_0001),
        ),
        (
            "agent address type 3",
            words(&[5, 3, 0, 0, 0, 0, 0]),
            "datagram header",
            ErrorKind::AgentAddressType(3),
        ),
        (
            "IPv6 agent cut short",
            words(&[5, 2, 0x2001_0db8, 0]),
            "datagram header",
            ErrorKind::Truncated { need: 16, have: 8 },
        ),
        (
            "4 billion samples",
            words(&[5, 1, 0xc000_0201, 0, 0, 0, u32::MAX]),
            "datagram header",
            ErrorKind::TooMany {
                what: "samples",
                n: u32::MAX,
            },
        ),
        (
            "2 samples, room for 1",
            words(&[5, 1, 0xc000_0201, 0, 0, 0, 2, 1, 0]),
            "datagram header",
            ErrorKind::TooMany {
                what: "samples",
                n: 2,
            },
        ),
        (
            "sample length past the end",
            words(&[5, 1, 0xc000_0201, 0, 0, 0, 1, 1, 1000, 0, 0]),
            "sample 1 (flow sample)",
            ErrorKind::Length {
                what: "sample",
                len: 1000,
            },
        ),
        (
            "sample length 2^32-1",
            words(&[5, 1, 0xc000_0201, 0, 0, 0, 1, 1, u32::MAX]),
            "sample 1 (flow sample)",
            ErrorKind::Length {
                what: "sample",
                len: u32::MAX,
            },
        ),
        (
            "unpadded unknown sample at the end",
            words(&[5, 1, 0xc000_0201, 0, 0, 0, 1, 77, 3, 0x6162_6300]).slice(..39),
            "sample 1 (format 0:77)",
            ErrorKind::Length {
                what: "sample",
                len: 3,
            },
        ),
        (
            "sample header cut",
            words(&[5, 1, 0xc000_0201, 0, 0, 0, 1, 1, 0]).slice(..34),
            "datagram header",
            ErrorKind::TooMany {
                what: "samples",
                n: 1,
            },
        ),
        (
            "flow sample cut before its record count",
            datagram_with(Sample::Unknown {
                format: 1,
                data: words(&[0; 7]),
            }),
            "sample 1 (flow sample)",
            ErrorKind::Truncated { need: 32, have: 28 },
        ),
        (
            "a million flow records",
            datagram_with(Sample::Unknown {
                format: 1,
                data: words(&[0, 0, 0, 0, 0, 0, 0, 1_000_000]),
            }),
            "sample 1 (flow sample)",
            ErrorKind::TooMany {
                what: "flow records",
                n: 1_000_000,
            },
        ),
        (
            "expanded counter sample with too many records",
            datagram_with(Sample::Unknown {
                format: 4,
                data: words(&[0, 0, 0, 2, 9, 0]),
            }),
            "sample 1 (expanded counter sample)",
            ErrorKind::TooMany {
                what: "counter records",
                n: 2,
            },
        ),
        (
            "record length past its sample",
            datagram_with(Sample::Unknown {
                format: 1,
                data: words(&[0, 0, 0, 0, 0, 0, 0, 2, 1001, 16, 1, 2, 3, 4, 3, 32, 0, 0]),
            }),
            "sample 1 (flow sample), record 2 (sampled IPv4)",
            ErrorKind::Length {
                what: "record",
                len: 32,
            },
        ),
        (
            "sampled IPv4 record too short",
            datagram_with(flow_with(vec![switch.clone(), unknown_flow(3, &[0; 7])])),
            "sample 1 (flow sample), record 2 (sampled IPv4)",
            ErrorKind::Truncated { need: 32, have: 28 },
        ),
        (
            "sampled header longer than its record",
            datagram_with(flow_with(vec![unknown_flow(1, &[1, 64, 4, 128, 0, 0])])),
            "sample 1 (flow sample), record 1 (raw packet header)",
            ErrorKind::Length {
                what: "sampled header",
                len: 128,
            },
        ),
        (
            "sampled header length 2^32-1",
            datagram_with(flow_with(vec![unknown_flow(1, &[1, 64, 4, u32::MAX])])),
            "sample 1 (flow sample), record 1 (raw packet header)",
            ErrorKind::Length {
                what: "sampled header",
                len: u32::MAX,
            },
        ),
        (
            "extended router next hop type 7",
            datagram_with(flow_with(vec![
                switch.clone(),
                switch.clone(),
                unknown_flow(1002, &[7, 0, 0, 0]),
            ])),
            "sample 1 (flow sample), record 3 (extended router)",
            ErrorKind::AddressType(7),
        ),
        (
            "extended gateway with 4 billion AS path segments",
            datagram_with(flow_with(vec![unknown_flow(
                1003,
                &[1, 0, 1, 2, 3, u32::MAX, 0, 0],
            )])),
            "sample 1 (flow sample), record 1 (extended gateway)",
            ErrorKind::TooMany {
                what: "AS path segments",
                n: u32::MAX,
            },
        ),
        (
            "extended gateway segment longer than the record",
            datagram_with(flow_with(vec![unknown_flow(
                1003,
                &[1, 0, 1, 2, 3, 1, 2, 3, 64500, 0],
            )])),
            "sample 1 (flow sample), record 1 (extended gateway)",
            ErrorKind::TooMany {
                what: "AS numbers in a segment",
                n: 3,
            },
        ),
        (
            "extended gateway with too many communities",
            datagram_with(flow_with(vec![unknown_flow(
                1003,
                &[1, 0, 1, 2, 3, 0, 1000, 1, 2],
            )])),
            "sample 1 (flow sample), record 1 (extended gateway)",
            ErrorKind::TooMany {
                what: "communities",
                n: 1000,
            },
        ),
        (
            "extended gateway without local pref",
            datagram_with(flow_with(vec![unknown_flow(1003, &[1, 0, 1, 2, 3, 0, 0])])),
            "sample 1 (flow sample), record 1 (extended gateway)",
            ErrorKind::Truncated { need: 4, have: 0 },
        ),
        (
            "generic interface counters cut",
            datagram_with(Sample::Counters(CounterSample {
                records: vec![CounterRecord::Unknown {
                    format: 1,
                    data: words(&[0; 21]),
                }],
                ..CounterSample::default()
            })),
            "sample 1 (counter sample), record 1 (generic interface counters)",
            ErrorKind::Truncated { need: 88, have: 84 },
        ),
        (
            "Ethernet counters cut in the second sample",
            DatagramBuilder::new(ip("192.0.2.1"))
                .unknown(7, &b"abcd"[..])
                .counters(CounterSample {
                    expanded: true,
                    records: vec![CounterRecord::Unknown {
                        format: 2,
                        data: words(&[0; 12]),
                    }],
                    ..CounterSample::default()
                })
                .encode()
                .freeze(),
            "sample 2 (expanded counter sample), record 1 (Ethernet counters)",
            ErrorKind::Truncated { need: 52, have: 48 },
        ),
    ];
    for (what, bytes, context, kind) in cases {
        let e = err(bytes);
        assert_eq!((e.context.as_str(), e.kind), (context, kind), "{what}: {e}");
        assert_eq!(e.to_string(), format!("{context}: {kind}"));
    }
}

#[test]
fn error_messages_read_well() {
    let e = err(datagram_with(flow_with(vec![unknown_flow(
        1,
        &[1, 64, 4, 128, 0, 0],
    )])));
    assert_eq!(
        e.to_string(),
        "sample 1 (flow sample), record 1 (raw packet header): sampled header length 128 runs past \
         the end of the data that holds it"
    );
    let e = err(words(&[5, 1, 0xc000_0201, 0, 0, 0, u32::MAX]));
    assert_eq!(
        e.to_string(),
        "datagram header: 4294967295 samples cannot fit in the octets left"
    );
    let e = err(words(&[6]));
    assert_eq!(
        e.to_string(),
        "datagram header: unsupported sFlow version 6, only 5 is decoded"
    );
}

#[test]
fn trailing_bytes_after_the_last_sample_are_ignored() {
    let d = every_kind();
    let mut bytes = encode(&d);
    bytes.extend_from_slice(&[0xff; 13]);
    assert_eq!(decode(bytes.freeze()).unwrap(), d);
}

#[test]
fn known_record_with_extra_octets_keeps_its_fields() {
    // An extended switch record with 8 octets more than the four words it defines: the fields are
    // read, the rest is skipped with the record, and the next record decodes.
    let d = datagram_with(flow_with(vec![
        unknown_flow(1001, &[1, 2, 3, 4, 0xaaaa, 0xbbbb]),
        unknown_flow(1001, &[5, 6, 7, 8]),
    ]));
    let Sample::Flow(f) = &decode(d).unwrap().samples[0] else {
        panic!()
    };
    let vlans: Vec<u32> = f
        .records
        .iter()
        .map(|r| match r {
            FlowRecord::ExtendedSwitch(s) => s.src_vlan,
            r => panic!("{r:?}"),
        })
        .collect();
    assert_eq!(vlans, [1, 5]);
}
