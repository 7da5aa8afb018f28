//! The datagrams the sFlow benches send: a switch sampling a reflection flood. Shared by
//! `sflow/benches/decode.rs` (in memory) and `benches/ingest.rs` (end to end against sfacctd).
//!
//! 10,000 distinct datagrams of 8 flow samples (a raw-header record with the first 128 octets of
//! an Ethernet/IPv4/UDP frame from an amplification port, and an extended switch record) and 1
//! counter sample (generic interface and Ethernet counters); about 1.9 kB each. Sources, victims,
//! ports and lengths vary from sample to sample (a fixed xorshift seed: every run sends the same
//! bytes).

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use deflect_sflow::encode::{DatagramBuilder, ethernet_udp_frame, raw_header};
use deflect_sflow::{
    CounterRecord, CounterSample, EthernetCounters, ExtendedSwitch, FlowRecord, FlowSample,
    GenericInterface,
};

pub const DATAGRAMS: usize = 10_000;
pub const FLOW_SAMPLES: usize = 8;

/// xorshift64*: a fixed, dependency-free source of variety.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The datagrams of a switch (agent 192.0.2.10) sampling a reflection flood at 1 in 4096.
pub fn flood_datagrams() -> Vec<Bytes> {
    let mut rng = Rng(0x5eed_f10d_cafe_0001);
    let agent = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let reflector_ports = [123u16, 53, 11211, 1900, 19, 389];
    let lengths = [468usize, 1200, 1400, 482, 90, 1472];
    let mut flow_seq = 0u32;
    let mut pool = 0u32;
    (0..DATAGRAMS)
        .map(|i| {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let mut b = DatagramBuilder::new(agent)
                .sequence(i + 1)
                .uptime_ms(3_600_000 + i * 5);
            for _ in 0..FLOW_SAMPLES {
                let r = rng.next();
                let src = Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0x00ff_ffff));
                let dst = Ipv4Addr::new(203, 0, 113, 1 + (r >> 32) as u8 % 8);
                let sport = reflector_ports[rng.below(reflector_ports.len() as u64) as usize];
                let dport = 1024 + rng.below(64_000) as u16;
                let len = lengths[rng.below(lengths.len() as u64) as usize];
                let frame = ethernet_udp_frame(src.into(), dst.into(), sport, dport, len);
                let input = 1 + rng.below(48) as u32;
                flow_seq += 1;
                pool = pool.wrapping_add(4096);
                b = b.flow(FlowSample {
                    expanded: false,
                    sequence: flow_seq,
                    source_id_type: 0,
                    source_id_index: input,
                    sampling_rate: 4096,
                    sample_pool: pool,
                    drops: 0,
                    input,
                    output: 49,
                    records: vec![
                        FlowRecord::RawHeader(raw_header(&frame)),
                        FlowRecord::ExtendedSwitch(ExtendedSwitch {
                            src_vlan: 100,
                            src_priority: 0,
                            dst_vlan: 100,
                            dst_priority: 0,
                        }),
                    ],
                });
            }
            let port = 1 + i % 48;
            b = b.counters(CounterSample {
                expanded: false,
                sequence: i + 1,
                source_id_type: 0,
                source_id_index: port,
                records: vec![
                    CounterRecord::Generic(GenericInterface {
                        if_index: port,
                        if_type: 6,
                        if_speed: 100_000_000_000,
                        if_direction: 1,
                        if_status: 3,
                        if_in_octets: u64::from(i) * 1_000_000,
                        if_in_ucast_pkts: i * 800,
                        ..GenericInterface::default()
                    }),
                    CounterRecord::Ethernet(EthernetCounters::default()),
                ],
            });
            b.encode().freeze()
        })
        .collect()
}
