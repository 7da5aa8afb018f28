//! Byte vectors, both ways: real datagrams (goflow2's test captures) and a datagram with every record
//! type written field by field from the specification, decoded field by field and re-encoded byte for
//! byte.

mod common;

use bytes::Bytes;
use common::{assert_bytes_eq, every_kind, ip, v4, v6, vector};
use deflect_sflow::encode::{DatagramBuilder, encode};
use deflect_sflow::{
    CounterRecord, CounterSample, Datagram, EthernetCounters, ExtendedGateway, ExtendedRouter,
    ExtendedSwitch, FlowRecord, FlowSample, GenericInterface, RawHeader, Sample, SampledEthernet,
    SampledIpv4, SampledIpv6, decode,
};

#[test]
fn goflow2_flow_sample_decodes_field_by_field() {
    let bytes = vector("goflow2_flow_sample.hex");
    let d = decode(bytes.clone()).expect("decodes");
    assert_eq!(d.version, 5);
    assert_eq!(d.agent, ip("172.16.0.17"));
    assert_eq!(d.sub_agent, 1);
    assert_eq!(d.sequence, 426);
    assert_eq!(d.uptime_ms, 0x67ee_aa01);
    assert_eq!(d.samples.len(), 1);
    let Sample::Flow(s) = &d.samples[0] else {
        panic!("not a flow sample: {:?}", d.samples[0]);
    };
    assert!(!s.expanded);
    assert_eq!(s.sequence, 6);
    assert_eq!((s.source_id_type, s.source_id_index), (0, 1043));
    assert_eq!(s.sampling_rate, 2048);
    assert_eq!(s.sample_pool, 0x3000);
    assert_eq!(s.drops, 0);
    assert_eq!((s.input, s.output), (1194, 1043));
    assert_eq!(s.records.len(), 1);
    let FlowRecord::RawHeader(h) = &s.records[0] else {
        panic!("not a raw header: {:?}", s.records[0]);
    };
    assert_eq!((h.protocol, h.frame_length, h.stripped), (1, 82, 4));
    assert_eq!(h.header.len(), 78);
    // 802.1Q tag, VLAN 32, then IPv4 ICMP 172.16.32.254 -> 172.16.32.241.
    assert_eq!(&h.header[12..18], &[0x81, 0x00, 0x00, 0x20, 0x08, 0x00]);
    assert_eq!(&h.header[30..38], &[172, 16, 32, 254, 172, 16, 32, 241]);
    assert_eq!(&h.header[62..], b"qrstuvwabcdefghi");
    // Zero-copy: the header is the datagram's own memory.
    assert_eq!(h.header.as_ptr(), bytes[92..].as_ptr());

    assert_bytes_eq(&encode(&d), &bytes);
}

#[test]
fn goflow2_expanded_flow_samples_decode_field_by_field() {
    let bytes = vector("goflow2_expanded_flow_samples.hex");
    assert_eq!(bytes.len(), 1500);
    let d = decode(bytes.clone()).expect("decodes");
    assert_eq!(d.agent, ip("1.2.3.4"));
    assert_eq!(d.sub_agent, 0);
    assert_eq!(d.sequence, 0x0fa7_72c2);
    assert_eq!(d.uptime_ms, 0x0f76_7348);
    assert_eq!(d.samples.len(), 5);

    let Sample::Flow(first) = &d.samples[0] else {
        panic!("not a flow sample");
    };
    assert_eq!(
        first,
        &FlowSample {
            expanded: true,
            sequence: 0x2090_9326,
            source_id_type: 0,
            source_id_index: 1_000_100,
            sampling_rate: 16383,
            sample_pool: 0x0438_ecda,
            drops: 0,
            input: 1_000_100,
            output: 1_000_018,
            records: vec![
                FlowRecord::ExtendedSwitch(ExtendedSwitch {
                    src_vlan: 30,
                    src_priority: 0,
                    dst_vlan: 30,
                    dst_priority: 0,
                }),
                FlowRecord::RawHeader(RawHeader {
                    protocol: 1,
                    frame_length: 1514,
                    stripped: 4,
                    header: bytes.slice(128..256),
                }),
            ],
        }
    );
    let vlans: Vec<u32> = d
        .samples
        .iter()
        .map(|s| match s {
            Sample::Flow(FlowSample { records, .. }) => match &records[0] {
                FlowRecord::ExtendedSwitch(sw) => sw.src_vlan,
                r => panic!("unexpected {r:?}"),
            },
            s => panic!("unexpected {s:?}"),
        })
        .collect();
    assert_eq!(vlans, [30, 23, 1337, 23, 957]);
    for s in &d.samples {
        let Sample::Flow(f) = s else { unreachable!() };
        let FlowRecord::RawHeader(h) = &f.records[1] else {
            panic!("not a raw header");
        };
        assert_eq!(h.header.len(), 128);
        // Every header is an 802.1Q-tagged IPv4 TCP segment.
        assert_eq!(&h.header[12..14], &[0x81, 0x00]);
        assert_eq!(&h.header[16..18], &[0x08, 0x00]);
        assert_eq!(h.header[27], 6);
    }

    // The 332 octets after the last announced sample are ignored; the datagram itself re-encodes
    // byte for byte.
    assert_bytes_eq(&encode(&d), &bytes[..1168]);
}

fn every_record_expected(bytes: &Bytes) -> Datagram {
    let flow = FlowSample {
        expanded: false,
        sequence: 7,
        source_id_type: 0,
        source_id_index: 17,
        sampling_rate: 1000,
        sample_pool: 123_456,
        drops: 2,
        input: 17,
        output: (2 << 30) | 3,
        records: vec![
            FlowRecord::RawHeader(RawHeader {
                protocol: 1,
                frame_length: 64,
                stripped: 4,
                header: bytes.slice(104..146),
            }),
            FlowRecord::Ethernet(SampledEthernet {
                length: 1518,
                src_mac: [0x00, 0x11, 0x22, 0x33, 0x44, 0x55],
                dst_mac: [0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb],
                eth_type: 0x0800,
            }),
            FlowRecord::Ipv4(SampledIpv4 {
                length: 1500,
                protocol: 17,
                src: v4("198.51.100.9"),
                dst: v4("203.0.113.7"),
                src_port: 123,
                dst_port: 40000,
                tcp_flags: 0,
                tos: 0xb8,
            }),
            FlowRecord::Ipv6(SampledIpv6 {
                length: 1280,
                protocol: 6,
                src: v6("2001:db8::9"),
                dst: v6("2001:db8::7"),
                src_port: 44321,
                dst_port: 443,
                tcp_flags: 0x12,
                priority: 5,
            }),
            FlowRecord::ExtendedSwitch(ExtendedSwitch {
                src_vlan: 100,
                src_priority: 3,
                dst_vlan: 200,
                dst_priority: 4,
            }),
            FlowRecord::ExtendedRouter(ExtendedRouter {
                next_hop: ip("192.0.2.1"),
                src_mask_len: 24,
                dst_mask_len: 32,
            }),
            FlowRecord::ExtendedGateway(ExtendedGateway {
                next_hop: ip("2001:db8::1"),
                as_: 64500,
                src_as: 64501,
                src_peer_as: 64502,
                as_path: vec![vec![64502, 64510, 4_200_000_000], vec![65001]],
                communities: vec![(64500 << 16) | 666, 0xffff_ff01],
                local_pref: 100,
            }),
            FlowRecord::Unknown {
                format: (4300 << 12) | 7,
                data: Bytes::from_static(b"hello"),
            },
        ],
    };
    let counters = CounterSample {
        expanded: true,
        sequence: 9,
        source_id_type: 0,
        source_id_index: 0x0100_0011,
        records: vec![
            CounterRecord::Generic(GenericInterface {
                if_index: 17,
                if_type: 6,
                if_speed: 10_000_000_000,
                if_direction: 1,
                if_status: 3,
                if_in_octets: 0x1_2345_6789,
                if_in_ucast_pkts: 1001,
                if_in_multicast_pkts: 1002,
                if_in_broadcast_pkts: 1003,
                if_in_discards: 1004,
                if_in_errors: 1005,
                if_in_unknown_protos: 1006,
                if_out_octets: 0x9_8765_4321,
                if_out_ucast_pkts: 2001,
                if_out_multicast_pkts: 2002,
                if_out_broadcast_pkts: 2003,
                if_out_discards: 2004,
                if_out_errors: 2005,
                if_promiscuous_mode: 0,
            }),
            CounterRecord::Ethernet(EthernetCounters {
                dot3_stats_alignment_errors: 1,
                dot3_stats_fcs_errors: 2,
                dot3_stats_single_collision_frames: 3,
                dot3_stats_multiple_collision_frames: 4,
                dot3_stats_sqe_test_errors: 5,
                dot3_stats_deferred_transmissions: 6,
                dot3_stats_late_collisions: 7,
                dot3_stats_excessive_collisions: 8,
                dot3_stats_internal_mac_transmit_errors: 9,
                dot3_stats_carrier_sense_errors: 10,
                dot3_stats_frame_too_longs: 11,
                dot3_stats_internal_mac_receive_errors: 12,
                dot3_stats_symbol_errors: 13,
            }),
            CounterRecord::Unknown {
                format: 1001,
                data: Bytes::from_static(&[0, 0, 0, 5, 0, 0, 0, 10, 0, 0, 0, 15]),
            },
        ],
    };
    Datagram {
        version: 5,
        agent: ip("2001:db8::64"),
        sub_agent: 3,
        sequence: 42,
        uptime_ms: 1_000_000,
        samples: vec![
            Sample::Flow(flow),
            Sample::Counters(counters),
            Sample::Unknown {
                format: (4300 << 12) | 5,
                data: Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xf0, 0x0d]),
            },
        ],
    }
}

#[test]
fn every_record_type_decodes_field_by_field() {
    let bytes = vector("every_record.hex");
    let want = every_record_expected(&bytes);
    let got = decode(bytes.clone()).expect("decodes");
    // Sample by sample, record by record, for a readable failure.
    assert_eq!(got.samples.len(), want.samples.len());
    for (i, (g, w)) in got.samples.iter().zip(&want.samples).enumerate() {
        match (g, w) {
            (Sample::Flow(g), Sample::Flow(w)) => {
                for (j, (gr, wr)) in g.records.iter().zip(&w.records).enumerate() {
                    assert_eq!(gr, wr, "sample {i}, record {j}");
                }
            }
            (Sample::Counters(g), Sample::Counters(w)) => {
                for (j, (gr, wr)) in g.records.iter().zip(&w.records).enumerate() {
                    assert_eq!(gr, wr, "sample {i}, record {j}");
                }
            }
            _ => {}
        }
        assert_eq!(g, w, "sample {i}");
    }
    assert_eq!(got, want);
}

#[test]
fn every_record_type_encodes_byte_for_byte() {
    let bytes = vector("every_record.hex");
    assert_bytes_eq(&encode(&every_record_expected(&bytes)), &bytes);
}

#[test]
fn unknown_record_is_skipped_with_its_padding() {
    // In the vector, the unknown flow record ("hello", length 5, 3 octets of padding) is followed by
    // a counter sample: that it decodes shows the padding was skipped.
    let d = decode(vector("every_record.hex")).unwrap();
    let Sample::Flow(f) = &d.samples[0] else {
        panic!()
    };
    assert_eq!(
        f.records.last(),
        Some(&FlowRecord::Unknown {
            format: (4300 << 12) | 7,
            data: Bytes::from_static(b"hello"),
        })
    );
    assert!(matches!(d.samples[1], Sample::Counters(_)));
    assert!(matches!(d.samples[2], Sample::Unknown { format, .. } if format == (4300 << 12) | 5));
}

#[test]
fn ipv4_agent_header_byte_for_byte() {
    let want = hex::decode(concat!(
        "00000005", // version
        "00000001", // IPv4
        "c000020a", // 192.0.2.10
        "00000007", // sub agent
        "ffffffff", // sequence
        "00000000", // uptime
        "00000000", // no samples
    ))
    .unwrap();
    let d = DatagramBuilder::new(ip("192.0.2.10"))
        .sub_agent(7)
        .sequence(u32::MAX)
        .build();
    assert_bytes_eq(&encode(&d), &want);
    assert_eq!(decode(Bytes::from(want)).unwrap(), d);
}

#[test]
fn unknown_agent_address_type_decodes_as_unspecified() {
    let bytes =
        hex::decode("00000005 00000000 00000000 00000001 00000002 00000000".replace(' ', ""))
            .unwrap();
    let d = decode(Bytes::from(bytes)).unwrap();
    assert_eq!(d.agent, ip("0.0.0.0"));
    assert_eq!((d.sub_agent, d.sequence, d.uptime_ms), (0, 1, 2));
}

#[test]
fn every_kind_round_trips() {
    let d = every_kind();
    let bytes = encode(&d).freeze();
    assert_eq!(decode(bytes.clone()).unwrap(), d);
    // And the bytes themselves are stable through a second pass.
    assert_bytes_eq(&encode(&decode(bytes.clone()).unwrap()), &bytes);
}

#[test]
fn expanded_interfaces_fold_into_the_compact_form() {
    // Expanded input: format 1 (discarded), value 258; output: format 0, value 2^31 (saturated).
    let d = DatagramBuilder::new(ip("192.0.2.1")).build();
    let mut bytes = encode(&d).to_vec();
    bytes[24..28].copy_from_slice(&1u32.to_be_bytes());
    let body: Vec<u32> = vec![1, 0, 9, 1, 1, 0, 1, 258, 0, 0x8000_0000, 0];
    bytes.extend_from_slice(&3u32.to_be_bytes());
    bytes.extend_from_slice(&((body.len() * 4) as u32).to_be_bytes());
    for w in body {
        bytes.extend_from_slice(&w.to_be_bytes());
    }
    let d = decode(Bytes::from(bytes)).unwrap();
    let Sample::Flow(f) = &d.samples[0] else {
        panic!()
    };
    assert!(f.expanded);
    assert_eq!(f.input, (1 << 30) | 258);
    assert_eq!(f.output, 0x3fff_ffff);
}

#[test]
fn sample_and_record_format_words_are_kept_whole() {
    let d = every_kind();
    let formats: Vec<u32> = d.samples.iter().map(Sample::format).collect();
    assert_eq!(formats, [1, 3, 2, 4, (4413 << 12) | 9]);
    let Sample::Flow(f) = &d.samples[0] else {
        panic!()
    };
    let formats: Vec<u32> = f.records.iter().map(FlowRecord::format).collect();
    assert_eq!(formats, [1, 2, 3, 1001, 1005]);
}
