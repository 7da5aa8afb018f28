//! Shared by the integration tests: the stored vectors, and a datagram with every record type.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use bytes::Bytes;
use deflect_sflow::encode::{ethernet_tcp_frame, ethernet_udp_frame, raw_header};
use deflect_sflow::{
    CounterRecord, CounterSample, Datagram, EthernetCounters, ExtendedGateway, ExtendedRouter,
    ExtendedSwitch, FlowRecord, FlowSample, GenericInterface, Sample, SampledEthernet, SampledIpv4,
    SampledIpv6,
};

/// A vector from `tests/data`: hex, whitespace ignored, `#` to the end of a line is a comment.
pub fn vector(name: &str) -> Bytes {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let hex: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    Bytes::from(hex::decode(hex).expect("valid hex"))
}

/// A hex dump of the first difference, for byte-vector assertions.
pub fn assert_bytes_eq(got: &[u8], want: &[u8]) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(a, b)| a != b)
        .unwrap_or(got.len().min(want.len()));
    let from = at.saturating_sub(8) & !3;
    let show = |b: &[u8]| hex::encode(b.get(from..(at + 16).min(b.len())).unwrap_or(&[]));
    panic!(
        "bytes differ at offset {at} (lengths {} and {}):\n got  @{from}: {}\n want @{from}: {}",
        got.len(),
        want.len(),
        show(got),
        show(want)
    );
}

pub fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

pub fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A datagram with every sample and record type, compact and expanded, known and unknown.
pub fn every_kind() -> Datagram {
    let udp = ethernet_udp_frame(ip("198.51.100.1"), ip("203.0.113.7"), 123, 40000, 468);
    let tcp6 = ethernet_tcp_frame(ip("2001:db8::1"), ip("2001:db8::7"), 40000, 443, 0x02);
    let flow = FlowSample {
        expanded: false,
        sequence: 1,
        source_id_type: 0,
        source_id_index: 5,
        sampling_rate: 2048,
        sample_pool: 4096,
        drops: 0,
        input: 5,
        output: 0x3fff_ffff,
        records: vec![
            FlowRecord::RawHeader(raw_header(&udp)),
            FlowRecord::Ethernet(SampledEthernet {
                length: 1518,
                src_mac: [1, 2, 3, 4, 5, 6],
                dst_mac: [7, 8, 9, 10, 11, 12],
                eth_type: 0x86dd,
            }),
            FlowRecord::Ipv4(SampledIpv4 {
                length: 500,
                protocol: 17,
                src: v4("198.51.100.1"),
                dst: v4("203.0.113.7"),
                src_port: 123,
                dst_port: 40000,
                tcp_flags: 0,
                tos: 0,
            }),
            FlowRecord::ExtendedSwitch(ExtendedSwitch {
                src_vlan: 10,
                src_priority: 0,
                dst_vlan: 20,
                dst_priority: 1,
            }),
            FlowRecord::Unknown {
                format: 1005,
                data: Bytes::from_static(b"\x00\x00\x00\x03abc\x00"),
            },
        ],
    };
    let flow_expanded = FlowSample {
        expanded: true,
        sequence: 2,
        source_id_type: 3,
        source_id_index: 0x0100_0000,
        sampling_rate: 1,
        sample_pool: 1,
        drops: 9,
        input: 0x4000_0001,
        output: 7,
        records: vec![
            FlowRecord::RawHeader(raw_header(&tcp6)),
            FlowRecord::Ipv6(SampledIpv6 {
                length: 60,
                protocol: 6,
                src: v6("2001:db8::1"),
                dst: v6("2001:db8::7"),
                src_port: 40000,
                dst_port: 443,
                tcp_flags: 0x02,
                priority: 0,
            }),
            FlowRecord::ExtendedRouter(ExtendedRouter {
                next_hop: ip("2001:db8::fe"),
                src_mask_len: 48,
                dst_mask_len: 64,
            }),
            FlowRecord::ExtendedGateway(ExtendedGateway {
                next_hop: ip("192.0.2.254"),
                as_: 64500,
                src_as: 64501,
                src_peer_as: 64502,
                as_path: vec![vec![64502, 64510], vec![], vec![65001]],
                communities: vec![1, 2, 3],
                local_pref: 200,
            }),
        ],
    };
    let counters = CounterSample {
        expanded: false,
        sequence: 3,
        source_id_type: 0,
        source_id_index: 5,
        records: vec![
            CounterRecord::Generic(GenericInterface {
                if_index: 5,
                if_type: 6,
                if_speed: 100_000_000_000,
                if_direction: 1,
                if_status: 3,
                if_in_octets: u64::MAX,
                if_in_ucast_pkts: 1,
                if_in_multicast_pkts: 2,
                if_in_broadcast_pkts: 3,
                if_in_discards: 4,
                if_in_errors: 5,
                if_in_unknown_protos: 6,
                if_out_octets: 1 << 40,
                if_out_ucast_pkts: 7,
                if_out_multicast_pkts: 8,
                if_out_broadcast_pkts: 9,
                if_out_discards: 10,
                if_out_errors: 11,
                if_promiscuous_mode: 1,
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
                data: Bytes::from_static(&[0, 0, 0, 50, 0, 0, 0, 60]),
            },
        ],
    };
    let counters_expanded = CounterSample {
        expanded: true,
        sequence: 4,
        source_id_type: 0,
        source_id_index: 0x7fff_ffff,
        records: vec![CounterRecord::Ethernet(EthernetCounters::default())],
    };
    Datagram {
        version: 5,
        agent: ip("192.0.2.10"),
        sub_agent: 1,
        sequence: 77,
        uptime_ms: 123_456,
        samples: vec![
            Sample::Flow(flow),
            Sample::Flow(flow_expanded),
            Sample::Counters(counters),
            Sample::Counters(counters_expanded),
            Sample::Unknown {
                format: (4413 << 12) | 9,
                data: Bytes::from_static(b"odd"),
            },
        ],
    }
}
