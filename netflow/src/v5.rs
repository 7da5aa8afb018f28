//! NetFlow version 5: a fixed 24-octet header and up to 30 fixed 48-octet records (Cisco, "NetFlow
//! Export Datagram Format"; no RFC). No templates: the format is the same from every exporter.
//!
//! ```text
//! header: version(2) count(2) sys_uptime(4) unix_secs(4) unix_nsecs(4) flow_sequence(4)
//!         engine_type(1) engine_id(1) sampling_interval(2: mode in the top 2 bits, interval below)
//! record: srcaddr(4) dstaddr(4) nexthop(4) input(2) output(2) dPkts(4) dOctets(4) First(4) Last(4)
//!         srcport(2) dstport(2) pad1(1) tcp_flags(1) prot(1) tos(1) src_as(2) dst_as(2)
//!         src_mask(1) dst_mask(1) pad2(2)
//! ```

use std::net::{IpAddr, Ipv4Addr};

use crate::error::ErrorKind;
use crate::flow::Flow;
use crate::record::Clock;

pub const HEADER_LEN: usize = 24;
pub const RECORD_LEN: usize = 48;

/// The v5 header's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub count: u16,
    pub uptime_ms: u32,
    pub export_ms: u64,
    pub sequence: u32,
    pub engine_type: u8,
    pub engine_id: u8,
    pub sampling_interval: u16,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

pub(crate) fn header(data: &[u8]) -> Result<Header, ErrorKind> {
    if data.len() < HEADER_LEN {
        return Err(ErrorKind::Truncated {
            need: HEADER_LEN,
            have: data.len(),
        });
    }
    let secs = u64::from(u32_at(data, 8));
    let nsecs = u64::from(u32_at(data, 12));
    Ok(Header {
        count: u16_at(data, 2),
        uptime_ms: u32_at(data, 4),
        export_ms: secs * 1000 + (nsecs / 1_000_000).min(999),
        sequence: u32_at(data, 16),
        engine_type: data[20],
        engine_id: data[21],
        sampling_interval: u16_at(data, 22),
    })
}

/// The records `count` announces; all of them must be in the datagram.
pub(crate) fn records(data: &[u8], h: &Header) -> Result<Vec<Flow>, ErrorKind> {
    let need = HEADER_LEN + usize::from(h.count) * RECORD_LEN;
    if data.len() < need {
        return Err(ErrorKind::Truncated {
            need,
            have: data.len(),
        });
    }
    let clock = Clock {
        export_ms: h.export_ms,
        uptime_ms: Some(h.uptime_ms),
        init_ms: None,
    };
    // The low 14 bits are the interval; the top 2 the mode, which does not change the ratio.
    let sampling = Some(u32::from(h.sampling_interval & 0x3fff)).filter(|&n| n > 0);
    let body = &data[HEADER_LEN..need];
    Ok(body
        .chunks_exact(RECORD_LEN)
        .map(|r| Flow {
            src: IpAddr::V4(Ipv4Addr::new(r[0], r[1], r[2], r[3])),
            dst: IpAddr::V4(Ipv4Addr::new(r[4], r[5], r[6], r[7])),
            input: u32::from(u16_at(r, 12)),
            output: u32::from(u16_at(r, 14)),
            packets: u64::from(u32_at(r, 16)),
            bytes: u64::from(u32_at(r, 20)),
            start_ms: clock.uptime_to_unix(u32_at(r, 24), None),
            end_ms: clock.uptime_to_unix(u32_at(r, 28), None),
            src_port: u16_at(r, 32),
            dst_port: u16_at(r, 34),
            tcp_flags: r[37],
            proto: r[38],
            // Exporters put ICMP type × 256 + code in the destination port.
            icmp_type_code: (r[38] == 1).then_some(u16_at(r, 34)),
            fragment: false,
            sampling,
            direction: None,
            section: None,
        })
        .collect())
}
