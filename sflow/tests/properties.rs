//! Property tests: arbitrary bytes (raw, behind a valid header, or a valid datagram with bytes
//! changed) never make the decoder panic, and arbitrary datagrams round-trip through encode and
//! decode.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use deflect_sflow::encode::encode;
use deflect_sflow::{
    CounterRecord, CounterSample, Datagram, EthernetCounters, ExtendedGateway, ExtendedRouter,
    ExtendedSwitch, FlowRecord, FlowSample, GenericInterface, RawHeader, Sample, SampledEthernet,
    SampledIpv4, SampledIpv6, decode,
};
use proptest::collection::vec;
use proptest::prelude::*;

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        any::<[u8; 4]>().prop_map(|o| IpAddr::V4(Ipv4Addr::from(o))),
        any::<[u8; 16]>().prop_map(|o| IpAddr::V6(Ipv6Addr::from(o))),
    ]
}

fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
    vec(any::<u8>(), 0..max).prop_map(Bytes::from)
}

/// A format word this crate does not decode in that position.
fn unknown_format(known: &'static [u32]) -> impl Strategy<Value = u32> {
    any::<u32>().prop_filter("a known format", move |f| !known.contains(f))
}

fn flow_record() -> impl Strategy<Value = FlowRecord> {
    prop_oneof![
        (any::<u32>(), any::<u32>(), any::<u32>(), bytes(160)).prop_map(
            |(protocol, frame_length, stripped, header)| {
                FlowRecord::RawHeader(RawHeader {
                    protocol,
                    frame_length,
                    stripped,
                    header,
                })
            }
        ),
        (
            any::<u32>(),
            any::<[u8; 6]>(),
            any::<[u8; 6]>(),
            any::<u32>()
        )
            .prop_map(|(length, src_mac, dst_mac, eth_type)| {
                FlowRecord::Ethernet(SampledEthernet {
                    length,
                    src_mac,
                    dst_mac,
                    eth_type,
                })
            }),
        (any::<[u32; 6]>(), any::<[u8; 4]>(), any::<[u8; 4]>()).prop_map(|(w, s, d)| {
            FlowRecord::Ipv4(SampledIpv4 {
                length: w[0],
                protocol: w[1],
                src: s.into(),
                dst: d.into(),
                src_port: w[2],
                dst_port: w[3],
                tcp_flags: w[4],
                tos: w[5],
            })
        }),
        (any::<[u32; 6]>(), any::<[u8; 16]>(), any::<[u8; 16]>()).prop_map(|(w, s, d)| {
            FlowRecord::Ipv6(SampledIpv6 {
                length: w[0],
                protocol: w[1],
                src: s.into(),
                dst: d.into(),
                src_port: w[2],
                dst_port: w[3],
                tcp_flags: w[4],
                priority: w[5],
            })
        }),
        any::<[u32; 4]>().prop_map(|w| FlowRecord::ExtendedSwitch(ExtendedSwitch {
            src_vlan: w[0],
            src_priority: w[1],
            dst_vlan: w[2],
            dst_priority: w[3],
        })),
        (ip(), any::<u32>(), any::<u32>()).prop_map(|(next_hop, src_mask_len, dst_mask_len)| {
            FlowRecord::ExtendedRouter(ExtendedRouter {
                next_hop,
                src_mask_len,
                dst_mask_len,
            })
        }),
        (
            ip(),
            any::<[u32; 4]>(),
            vec(vec(any::<u32>(), 0..6), 0..4),
            vec(any::<u32>(), 0..6)
        )
            .prop_map(|(next_hop, w, as_path, communities)| {
                FlowRecord::ExtendedGateway(ExtendedGateway {
                    next_hop,
                    as_: w[0],
                    src_as: w[1],
                    src_peer_as: w[2],
                    as_path,
                    communities,
                    local_pref: w[3],
                })
            }),
        (unknown_format(&[1, 2, 3, 4, 1001, 1002, 1003]), bytes(40))
            .prop_map(|(format, data)| FlowRecord::Unknown { format, data }),
    ]
}

fn counter_record() -> impl Strategy<Value = CounterRecord> {
    prop_oneof![
        (any::<[u32; 16]>(), any::<[u64; 3]>()).prop_map(|(w, l)| {
            CounterRecord::Generic(GenericInterface {
                if_index: w[0],
                if_type: w[1],
                if_speed: l[0],
                if_direction: w[2],
                if_status: w[3],
                if_in_octets: l[1],
                if_in_ucast_pkts: w[4],
                if_in_multicast_pkts: w[5],
                if_in_broadcast_pkts: w[6],
                if_in_discards: w[7],
                if_in_errors: w[8],
                if_in_unknown_protos: w[9],
                if_out_octets: l[2],
                if_out_ucast_pkts: w[10],
                if_out_multicast_pkts: w[11],
                if_out_broadcast_pkts: w[12],
                if_out_discards: w[13],
                if_out_errors: w[14],
                if_promiscuous_mode: w[15],
            })
        }),
        any::<[u32; 13]>().prop_map(|w| CounterRecord::Ethernet(EthernetCounters {
            dot3_stats_alignment_errors: w[0],
            dot3_stats_fcs_errors: w[1],
            dot3_stats_single_collision_frames: w[2],
            dot3_stats_multiple_collision_frames: w[3],
            dot3_stats_sqe_test_errors: w[4],
            dot3_stats_deferred_transmissions: w[5],
            dot3_stats_late_collisions: w[6],
            dot3_stats_excessive_collisions: w[7],
            dot3_stats_internal_mac_transmit_errors: w[8],
            dot3_stats_carrier_sense_errors: w[9],
            dot3_stats_frame_too_longs: w[10],
            dot3_stats_internal_mac_receive_errors: w[11],
            dot3_stats_symbol_errors: w[12],
        })),
        (unknown_format(&[1, 2]), bytes(40))
            .prop_map(|(format, data)| CounterRecord::Unknown { format, data }),
    ]
}

/// Source ids that fit the sample's form: 8 + 24 bits compact, 32 + 32 expanded.
fn source_id() -> impl Strategy<Value = (bool, u32, u32)> {
    prop_oneof![
        (0u32..=0xff, 0u32..=0xff_ffff).prop_map(|(t, i)| (false, t, i)),
        (any::<u32>(), any::<u32>()).prop_map(|(t, i)| (true, t, i)),
    ]
}

fn sample() -> impl Strategy<Value = Sample> {
    prop_oneof![
        (source_id(), any::<[u32; 6]>(), vec(flow_record(), 0..6)).prop_map(
            |((expanded, t, i), w, records)| {
                Sample::Flow(FlowSample {
                    expanded,
                    sequence: w[0],
                    source_id_type: t,
                    source_id_index: i,
                    sampling_rate: w[1],
                    sample_pool: w[2],
                    drops: w[3],
                    input: w[4],
                    output: w[5],
                    records,
                })
            }
        ),
        (source_id(), any::<u32>(), vec(counter_record(), 0..4)).prop_map(
            |((expanded, t, i), sequence, records)| {
                Sample::Counters(CounterSample {
                    expanded,
                    sequence,
                    source_id_type: t,
                    source_id_index: i,
                    records,
                })
            }
        ),
        (unknown_format(&[1, 2, 3, 4]), bytes(60))
            .prop_map(|(format, data)| Sample::Unknown { format, data }),
    ]
}

fn datagram() -> impl Strategy<Value = Datagram> {
    (ip(), any::<[u32; 3]>(), vec(sample(), 0..8)).prop_map(|(agent, w, samples)| Datagram {
        version: 5,
        agent,
        sub_agent: w[0],
        sequence: w[1],
        uptime_ms: w[2],
        samples,
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn arbitrary_datagrams_round_trip(d in datagram()) {
        let bytes = encode(&d).freeze();
        prop_assert_eq!(bytes.len() % 4, 0);
        let back = decode(bytes.clone());
        prop_assert_eq!(back.as_ref(), Ok(&d));
        // The wire form is stable too.
        prop_assert_eq!(encode(&back.unwrap()).freeze(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in vec(any::<u8>(), 0..2048)) {
        let _ = decode(Bytes::from(b));
    }

    #[test]
    fn arbitrary_words_behind_a_valid_header_never_panic(
        agent_v6 in any::<bool>(),
        words in vec(prop_oneof![0u32..8, 1000u32..1004, any::<u32>()], 0..256),
    ) {
        // Small words make likely formats, counts and lengths: the decoder goes deep.
        let mut b: Vec<u8> = vec![0, 0, 0, 5];
        if agent_v6 {
            b.extend_from_slice(&[0, 0, 0, 2]);
            b.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        } else {
            b.extend_from_slice(&[0, 0, 0, 1, 192, 0, 2, 1]);
        }
        for w in words {
            b.extend_from_slice(&w.to_be_bytes());
        }
        if let Ok(d) = decode(Bytes::from(b)) {
            // Whatever decodes, re-encodes to something that decodes to the same.
            prop_assert_eq!(decode(encode(&d).freeze()), Ok(d));
        }
    }

    #[test]
    fn a_valid_datagram_with_bytes_changed_never_panics(
        d in datagram(),
        changes in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut b = encode(&d).to_vec();
        if b.is_empty() {
            return Ok(());
        }
        for (at, v) in changes {
            let i = at.index(b.len());
            b[i] = v;
        }
        let keep = cut.index(b.len() + 1);
        b.truncate(keep.max(b.len() * 3 / 4));
        if let Ok(d) = decode(Bytes::from(b)) {
            prop_assert_eq!(decode(encode(&d).freeze()), Ok(d));
        }
    }
}
