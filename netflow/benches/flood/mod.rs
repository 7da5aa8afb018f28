//! The datagrams the NetFlow benches send: a border router exporting a reflection flood. Shared by
//! `netflow/benches/decode.rs` (in memory) and `benches/ingest.rs` (end to end against nfacctd).
//!
//! For each version, 10,000 distinct datagrams of about 1.4 kB: v5 with 30 records (1,464 octets);
//! v9 with 28 records of an 18-field template (addresses, ports, protocol, TCP flags, ToS, 32-bit
//! packet and octet deltas, FIRST/LAST_SWITCHED, interfaces, AS numbers, masks, FLOW_SAMPLER_ID;
//! 1,428 octets); IPFIX with 21 records of the same fields with 64-bit counters and
//! flowStart/EndMilliseconds (1,406 octets). The templates and the sampler's options data (1 in
//! 1000) come first, in a priming datagram, as an exporter sends them every few seconds. Sources,
//! victims, ports and lengths vary from record to record (a fixed xorshift seed: every run sends
//! the same bytes).

#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr};

use bytes::Bytes;
use deflect_netflow::encode::{IpfixMessage, V5Message, V9Message, Value};
use deflect_netflow::{FieldSpec, Flow, Template, ie};

pub const DATAGRAMS: usize = 10_000;
pub const EXPORT_SECS: u32 = 1_700_743_680;

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

/// One record's values: (src, dst, sport, dport, proto, flags, packets, bytes, age ms, input).
struct Rec {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
    proto: u8,
    flags: u8,
    packets: u64,
    bytes: u64,
    age_ms: u64,
    input: u32,
}

fn rec(rng: &mut Rng) -> Rec {
    let ports = [123u16, 53, 11211, 1900, 19, 389, 443];
    let lengths = [468u64, 1200, 1400, 482, 90, 1472, 60];
    let r = rng.next();
    let k = rng.below(ports.len() as u64) as usize;
    let packets = 1 + rng.below(64);
    Rec {
        src: Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0x00ff_ffff)),
        dst: Ipv4Addr::new(203, 0, 113, 1 + (r >> 32) as u8 % 8),
        sport: ports[k],
        dport: 1024 + rng.below(64_000) as u16,
        proto: if ports[k] == 443 { 6 } else { 17 },
        flags: if ports[k] == 443 { 0x02 } else { 0 },
        packets,
        bytes: packets * lengths[k],
        age_ms: rng.below(60_000),
        input: 1 + rng.below(48) as u32,
    }
}

fn fields(ipfix: bool) -> Vec<FieldSpec> {
    let (c, t, start, end) = if ipfix {
        (8, 8, ie::FLOW_START_MILLISECONDS, ie::FLOW_END_MILLISECONDS)
    } else {
        (4, 4, ie::FLOW_START_SYS_UP_TIME, ie::FLOW_END_SYS_UP_TIME)
    };
    [
        (8, 4),
        (12, 4),
        (7, 2),
        (11, 2),
        (4, 1),
        (6, 1),
        (5, 1),
        (2, c),
        (1, c),
        (start, t),
        (end, t),
        (10, 4),
        (14, 4),
        (16, 4),
        (17, 4),
        (9, 1),
        (13, 1),
        (48, 1),
    ]
    .map(|(id, len)| FieldSpec::new(id, len))
    .to_vec()
}

fn values(r: &Rec, ipfix: bool, export_ms: u64, uptime: u32) -> Vec<Value> {
    let (start, end) = if ipfix {
        (export_ms - r.age_ms - 1000, export_ms - r.age_ms)
    } else {
        let u = u64::from(uptime);
        (u - r.age_ms - 1000, u - r.age_ms)
    };
    vec![
        Value::Addr(r.src.into()),
        Value::Addr(r.dst.into()),
        Value::U(r.sport.into()),
        Value::U(r.dport.into()),
        Value::U(r.proto.into()),
        Value::U(r.flags.into()),
        Value::U(0),
        Value::U(r.packets),
        Value::U(r.bytes),
        Value::U(start),
        Value::U(end),
        Value::U(r.input.into()),
        Value::U(49),
        Value::U(64_500),
        Value::U(64_501),
        Value::U(24),
        Value::U(24),
        Value::U(1),
    ]
}

/// (priming datagram, timed datagrams, records per datagram) for `version`.
pub fn datagrams(version: u16) -> (Option<Bytes>, Vec<Bytes>, usize) {
    let mut rng = Rng(0x5eed_f10d_cafe_0001 ^ u64::from(version));
    let ipfix = version == 10;
    let t = Template::new(256, fields(ipfix));
    let sampler = Template::options(
        257,
        1,
        [
            (ie::SAMPLER_ID, 1),
            (ie::SAMPLER_MODE, 1),
            (ie::SAMPLER_RANDOM_INTERVAL, 4),
        ]
        .map(|(id, len)| FieldSpec::new(id, len))
        .to_vec(),
    );
    let sampler_data = vec![vec![Value::U(1), Value::U(2), Value::U(1000)]];
    let per = match version {
        5 => 30,
        9 => 28,
        _ => 21,
    };
    let uptime0 = 3_600_000u32;
    let priming = match version {
        9 => Some(
            V9Message::new(1)
                .unix_secs(EXPORT_SECS)
                .uptime_ms(uptime0)
                .template(&t)
                .template(&sampler)
                .data(&sampler, &sampler_data)
                .encode()
                .freeze(),
        ),
        10 => Some(
            IpfixMessage::new(1)
                .export_secs(EXPORT_SECS)
                .template(&t)
                .template(&sampler)
                .data(&sampler, &sampler_data)
                .encode()
                .freeze(),
        ),
        _ => None,
    };
    let list = (0..DATAGRAMS)
        .map(|i| {
            let i = i as u32;
            let secs = EXPORT_SECS + i / 100;
            let uptime = uptime0 + i * 10;
            let export_ms = u64::from(secs) * 1000;
            let recs: Vec<Rec> = (0..per).map(|_| rec(&mut rng)).collect();
            match version {
                5 => {
                    let mut m = V5Message::new(export_ms, uptime)
                        .sequence(i * per as u32)
                        .sampling_interval(0x4000 | 1000);
                    for r in &recs {
                        let start = export_ms - r.age_ms - 1000;
                        m = m.flow(&Flow {
                            src: IpAddr::V4(r.src),
                            dst: IpAddr::V4(r.dst),
                            proto: r.proto,
                            src_port: r.sport,
                            dst_port: r.dport,
                            tcp_flags: r.flags,
                            icmp_type_code: None,
                            fragment: false,
                            packets: r.packets,
                            bytes: r.bytes,
                            start_ms: Some(start),
                            end_ms: Some(start + 1000),
                            sampling: None,
                            direction: None,
                            input: r.input,
                            output: 49,
                            section: None,
                        });
                    }
                    m.encode().freeze()
                }
                9 => {
                    let rs: Vec<Vec<Value>> = recs
                        .iter()
                        .map(|r| values(r, false, export_ms, uptime))
                        .collect();
                    V9Message::new(1)
                        .unix_secs(secs)
                        .uptime_ms(uptime)
                        .sequence(i + 1)
                        .data(&t, &rs)
                        .encode()
                        .freeze()
                }
                _ => {
                    let rs: Vec<Vec<Value>> = recs
                        .iter()
                        .map(|r| values(r, true, export_ms, uptime))
                        .collect();
                    IpfixMessage::new(1)
                        .export_secs(secs)
                        .sequence(1 + i * per as u32)
                        .data(&t, &rs)
                        .encode()
                        .freeze()
                }
            }
        })
        .collect();
    (priming, list, per)
}
