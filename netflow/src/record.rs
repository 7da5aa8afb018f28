//! Data records: a template compiled into decoding steps, one record read into [`Values`], and
//! the values turned into a [`Flow`] (data) or into what an exporter tells about itself (options
//! data: samplers, timeouts, its boot time).
//!
//! Field encodings (RFC 7011 §6, RFC 3954 §8):
//! - unsigned integers in any length from 1 to 8 octets: the reduced-size encoding of RFC 7011
//!   §6.2 (a packetDeltaCount in 4 or 2 octets), read big-endian. Longer ones are skipped.
//! - addresses only in their full size (4 or 16 octets); anything else is skipped, never guessed.
//! - samplingProbability (311) as float64, or float32 (reduced size).
//! - times: dateTimeSeconds (150/151, 4 octets), dateTimeMilliseconds (152/153, 8), the NTP
//!   timestamps of dateTimeMicroseconds and dateTimeNanoseconds (154–157, 8 octets: seconds since
//!   1900, then a binary fraction), delta microseconds before the export time (158/159), sysUpTime
//!   milliseconds (21/22: v9 against the header's uptime, IPFIX against systemInitTimeMilliseconds
//!   160 from the record or the options data), durations (161 ms, 162 µs) completing one end.
//! - variable-length fields (IPFIX, template length 65535): a 1-octet length, or 255 and a
//!   2-octet length (RFC 7011 §7); only the packet sections (313, 315) are kept.
//! - enterprise-specific elements, and the scope fields of v9 options templates (whose numbers are
//!   scope types, RFC 3954 §6.1, not field types), are skipped.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use crate::error::ErrorKind;
use crate::flow::{Flow, Section};
use crate::ie;
use crate::template::Template;

/// What a field is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Skip,
    Src4,
    Dst4,
    Src6,
    Dst6,
    Proto,
    SrcPort,
    DstPort,
    TcpFlags,
    Icmp,
    FragOffset,
    /// Packets or octets, and the rank of the element (0 delta, 1 post-delta, 2 total).
    Packets(u8),
    Bytes(u8),
    Input,
    Output,
    Direction,
    SamplingInterval,
    RandomInterval,
    PacketInterval,
    PacketSpace,
    SamplingSize,
    Population,
    Probability,
    Observed,
    Selected,
    SamplerId,
    ActiveTimeout,
    IdleTimeout,
    InitTime,
    StartSecs,
    EndSecs,
    StartMs,
    EndMs,
    StartNtp,
    EndNtp,
    StartDeltaUs,
    EndDeltaUs,
    StartUptime,
    EndUptime,
    DurationMs,
    DurationUs,
    SectionLink,
    SectionIp,
}

#[derive(Debug, Clone, Copy)]
struct Op {
    kind: Kind,
    id: u16,
    /// Octets, or [`ie::VARIABLE_LENGTH`] (IPFIX) for a length in the record.
    len: u16,
}

/// A template ready to decode records: one step per field.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub template: Template,
    ops: Vec<Op>,
    pub min_len: usize,
    ipfix: bool,
}

fn kind(id: u16, len: u16) -> Kind {
    use Kind::*;
    let uint = (1..=8).contains(&len);
    let k = match id {
        ie::SOURCE_IPV4_ADDRESS if len == 4 => Src4,
        ie::DESTINATION_IPV4_ADDRESS if len == 4 => Dst4,
        ie::SOURCE_IPV6_ADDRESS if len == 16 => Src6,
        ie::DESTINATION_IPV6_ADDRESS if len == 16 => Dst6,
        ie::PROTOCOL_IDENTIFIER => Proto,
        ie::SOURCE_TRANSPORT_PORT => SrcPort,
        ie::DESTINATION_TRANSPORT_PORT => DstPort,
        ie::TCP_CONTROL_BITS => TcpFlags,
        ie::ICMP_TYPE_CODE_IPV4 | ie::ICMP_TYPE_CODE_IPV6 => Icmp,
        ie::FRAGMENT_OFFSET => FragOffset,
        ie::PACKET_DELTA_COUNT => Packets(0),
        ie::POST_PACKET_DELTA_COUNT => Packets(1),
        ie::PACKET_TOTAL_COUNT => Packets(2),
        ie::OCTET_DELTA_COUNT => Bytes(0),
        ie::POST_OCTET_DELTA_COUNT => Bytes(1),
        ie::OCTET_TOTAL_COUNT => Bytes(2),
        ie::INGRESS_INTERFACE => Input,
        ie::EGRESS_INTERFACE => Output,
        ie::FLOW_DIRECTION => Direction,
        ie::SAMPLING_INTERVAL => SamplingInterval,
        ie::SAMPLER_RANDOM_INTERVAL => RandomInterval,
        ie::SAMPLING_PACKET_INTERVAL => PacketInterval,
        ie::SAMPLING_PACKET_SPACE => PacketSpace,
        ie::SAMPLING_SIZE => SamplingSize,
        ie::SAMPLING_POPULATION => Population,
        ie::SAMPLING_PROBABILITY if len == 8 || len == 4 => return Probability,
        ie::SELECTOR_ID_TOTAL_PKTS_OBSERVED => Observed,
        ie::SELECTOR_ID_TOTAL_PKTS_SELECTED => Selected,
        ie::SAMPLER_ID | ie::SELECTOR_ID => SamplerId,
        ie::FLOW_ACTIVE_TIMEOUT => ActiveTimeout,
        ie::FLOW_IDLE_TIMEOUT => IdleTimeout,
        ie::SYSTEM_INIT_TIME_MILLISECONDS => InitTime,
        ie::FLOW_START_SECONDS => StartSecs,
        ie::FLOW_END_SECONDS => EndSecs,
        ie::FLOW_START_MILLISECONDS => StartMs,
        ie::FLOW_END_MILLISECONDS => EndMs,
        ie::FLOW_START_MICROSECONDS | ie::FLOW_START_NANOSECONDS if len == 8 => return StartNtp,
        ie::FLOW_END_MICROSECONDS | ie::FLOW_END_NANOSECONDS if len == 8 => return EndNtp,
        ie::FLOW_START_DELTA_MICROSECONDS => StartDeltaUs,
        ie::FLOW_END_DELTA_MICROSECONDS => EndDeltaUs,
        ie::FLOW_START_SYS_UP_TIME => StartUptime,
        ie::FLOW_END_SYS_UP_TIME => EndUptime,
        ie::FLOW_DURATION_MILLISECONDS => DurationMs,
        ie::FLOW_DURATION_MICROSECONDS => DurationUs,
        ie::DATA_LINK_FRAME_SECTION => return SectionLink,
        ie::IP_HEADER_PACKET_SECTION => return SectionIp,
        _ => Skip,
    };
    match k {
        Src4 | Dst4 | Src6 | Dst6 => k,
        _ if uint => k,
        _ => Skip,
    }
}

impl Compiled {
    pub(crate) fn new(template: Template, ipfix: bool) -> Compiled {
        let ops = template
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let v9_scope = !ipfix && i < template.scope_fields;
                let kind = if f.enterprise.is_some() || v9_scope {
                    Kind::Skip
                } else {
                    kind(f.id, f.len)
                };
                // v9 has no variable-length encoding: 65535 there is a fixed length.
                let len = if !ipfix && f.len == ie::VARIABLE_LENGTH {
                    ie::VARIABLE_LENGTH - 1
                } else {
                    f.len
                };
                Op {
                    kind,
                    id: f.id,
                    len,
                }
            })
            .collect();
        let min_len = template.min_record_len(ipfix);
        Compiled {
            template,
            ops,
            min_len,
            ipfix,
        }
    }
}

/// Everything one record said that the decoder uses.
#[derive(Debug, Default, Clone)]
pub(crate) struct Values {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: u8,
    src_port: u16,
    dst_port: u16,
    tcp_flags: u8,
    icmp: Option<u16>,
    fragment: bool,
    packets: Option<(u8, u64)>,
    bytes: Option<(u8, u64)>,
    input: u32,
    output: u32,
    direction: Option<u8>,
    sampling_interval: Option<u64>,
    random_interval: Option<u64>,
    packet_interval: Option<u64>,
    packet_space: Option<u64>,
    sampling_size: Option<u64>,
    population: Option<u64>,
    probability: Option<f64>,
    observed: Option<u64>,
    selected: Option<u64>,
    pub sampler_id: Option<u64>,
    pub active_timeout_s: Option<u64>,
    pub idle_timeout_s: Option<u64>,
    pub init_ms: Option<u64>,
    start_abs: Option<u64>,
    end_abs: Option<u64>,
    start_delta_us: Option<u64>,
    end_delta_us: Option<u64>,
    start_uptime: Option<u32>,
    end_uptime: Option<u32>,
    duration_ms: Option<u64>,
    section: Option<Section>,
}

fn uint(b: &[u8]) -> u64 {
    b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// An NTP timestamp (seconds since 1900, 32-bit binary fraction) as unix ms; `None` before 1970.
fn ntp_ms(v: u64) -> Option<u64> {
    let secs = (v >> 32).checked_sub(ie::NTP_UNIX_OFFSET_SECS)?;
    Some(secs * 1000 + (((v & 0xffff_ffff) * 1000) >> 32))
}

fn keep_best(slot: &mut Option<(u8, u64)>, rank: u8, v: u64) {
    if slot.is_none_or(|(r, _)| rank < r) {
        *slot = Some((rank, v));
    }
}

/// Reads one record at `*pos` of `set` (the set's body), moving `*pos` past it. On error, the
/// field id it happened in.
pub(crate) fn read(c: &Compiled, set: &Bytes, pos: &mut usize) -> Result<Values, (u16, ErrorKind)> {
    let data: &[u8] = set;
    let mut v = Values::default();
    for op in &c.ops {
        let mut len = usize::from(op.len);
        if c.ipfix && op.len == ie::VARIABLE_LENGTH {
            let short = *data
                .get(*pos)
                .ok_or((op.id, ErrorKind::FieldOverrun { len: 1, have: 0 }))?;
            *pos += 1;
            len = usize::from(short);
            if short == 255 {
                match data.get(*pos..*pos + 2) {
                    Some(&[a, b]) => len = usize::from(u16::from_be_bytes([a, b])),
                    _ => {
                        let have = data.len().saturating_sub(*pos);
                        return Err((op.id, ErrorKind::FieldOverrun { len: 2, have }));
                    }
                }
                *pos += 2;
            }
        }
        let end = *pos + len;
        let Some(b) = data.get(*pos..end) else {
            let have = data.len().saturating_sub(*pos);
            return Err((op.id, ErrorKind::FieldOverrun { len, have }));
        };
        let start = *pos;
        *pos = end;
        match op.kind {
            Kind::Skip => {}
            Kind::Src4 | Kind::Dst4 => {
                let a = IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
                if op.kind == Kind::Src4 {
                    v.src = Some(a)
                } else {
                    v.dst = Some(a)
                }
            }
            Kind::Src6 | Kind::Dst6 => {
                let mut o = [0u8; 16];
                o.copy_from_slice(b);
                let a = IpAddr::V6(Ipv6Addr::from(o));
                if op.kind == Kind::Src6 {
                    v.src = Some(a)
                } else {
                    v.dst = Some(a)
                }
            }
            Kind::SectionLink => v.section = Some(Section::Link(set.slice(start..end))),
            Kind::SectionIp => v.section = Some(Section::Ip(set.slice(start..end))),
            Kind::Probability => {
                v.probability = Some(if len == 8 {
                    f64::from_bits(uint(b))
                } else {
                    f64::from(f32::from_bits(uint(b) as u32))
                });
            }
            Kind::StartNtp => v.start_abs = ntp_ms(uint(b)),
            Kind::EndNtp => v.end_abs = ntp_ms(uint(b)),
            k => {
                let x = uint(b);
                match k {
                    Kind::Proto => v.proto = x as u8,
                    Kind::SrcPort => v.src_port = x as u16,
                    Kind::DstPort => v.dst_port = x as u16,
                    Kind::TcpFlags => v.tcp_flags = x as u8,
                    Kind::Icmp => v.icmp = Some(x as u16),
                    Kind::FragOffset => v.fragment = x & 0x1fff != 0,
                    Kind::Packets(r) => keep_best(&mut v.packets, r, x),
                    Kind::Bytes(r) => keep_best(&mut v.bytes, r, x),
                    Kind::Input => v.input = x as u32,
                    Kind::Output => v.output = x as u32,
                    Kind::Direction => v.direction = Some(x as u8),
                    Kind::SamplingInterval => v.sampling_interval = Some(x),
                    Kind::RandomInterval => v.random_interval = Some(x),
                    Kind::PacketInterval => v.packet_interval = Some(x),
                    Kind::PacketSpace => v.packet_space = Some(x),
                    Kind::SamplingSize => v.sampling_size = Some(x),
                    Kind::Population => v.population = Some(x),
                    Kind::Observed => v.observed = Some(x),
                    Kind::Selected => v.selected = Some(x),
                    Kind::SamplerId => v.sampler_id = Some(x),
                    Kind::ActiveTimeout => v.active_timeout_s = Some(x),
                    Kind::IdleTimeout => v.idle_timeout_s = Some(x),
                    Kind::InitTime => v.init_ms = Some(x),
                    Kind::StartSecs => v.start_abs = Some(x.saturating_mul(1000)),
                    Kind::EndSecs => v.end_abs = Some(x.saturating_mul(1000)),
                    Kind::StartMs => v.start_abs = Some(x),
                    Kind::EndMs => v.end_abs = Some(x),
                    Kind::StartDeltaUs => v.start_delta_us = Some(x),
                    Kind::EndDeltaUs => v.end_delta_us = Some(x),
                    Kind::StartUptime => v.start_uptime = Some(x as u32),
                    Kind::EndUptime => v.end_uptime = Some(x as u32),
                    Kind::DurationMs => v.duration_ms = Some(x),
                    Kind::DurationUs => v.duration_ms = Some(x / 1000),
                    _ => {}
                }
            }
        }
    }
    Ok(v)
}

/// What a record's times are measured against.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Clock {
    pub export_ms: u64,
    /// v5/v9: the header's sysUptime (ms) at `export_ms`. IPFIX: none.
    pub uptime_ms: Option<u32>,
    /// IPFIX: systemInitTimeMilliseconds learned from options data.
    pub init_ms: Option<u64>,
}

impl Clock {
    /// A sysUpTime value (ms since the exporter booted) as unix ms.
    pub(crate) fn uptime_to_unix(&self, t: u32, init_ms: Option<u64>) -> Option<u64> {
        match self.uptime_ms {
            // How long before the export the value was: a 32-bit difference, so that uptime
            // wrapping (every 49.7 days) between the two does not matter.
            Some(now) => {
                let before = i64::from(now.wrapping_sub(t) as i32);
                u64::try_from(i64::try_from(self.export_ms).ok()?.checked_sub(before)?).ok()
            }
            None => init_ms
                .or(self.init_ms)
                .map(|i| i.saturating_add(u64::from(t))),
        }
    }
}

/// 1 in N from a set of sampling elements (in a data record, or options data describing a
/// sampler); `None` when they say nothing usable.
fn sampling_of(v: &Values) -> Option<u32> {
    let n = if let Some(n) = v.sampling_interval.filter(|&n| n > 0) {
        n
    } else if let Some(n) = v.random_interval.filter(|&n| n > 0) {
        n
    } else if let Some(i) = v.packet_interval.filter(|&i| i > 0) {
        // RFC 5476 §6.5.2.1 systematic count-based: select `interval`, skip `space`.
        (i.saturating_add(v.packet_space.unwrap_or(0))) / i
    } else if let (Some(s), Some(p)) = (v.sampling_size.filter(|&s| s > 0), v.population) {
        p / s
    } else if let Some(p) = v.probability.filter(|p| *p > 0.0 && *p <= 1.0) {
        (1.0 / p).round() as u64
    } else if let (Some(o), Some(s)) = (v.observed, v.selected.filter(|&s| s > 0)) {
        o / s
    } else {
        return None;
    };
    (n > 0).then(|| u32::try_from(n).unwrap_or(u32::MAX))
}

impl Values {
    /// The sampling these values describe, for options data.
    pub(crate) fn sampling(&self) -> Option<u32> {
        sampling_of(self)
    }

    /// The flow, if the record has an address. `sampler` resolves the record's sampler id (or the
    /// domain's value when it has none).
    pub(crate) fn into_flow(
        self,
        clock: &Clock,
        sampler: impl FnOnce(Option<u64>) -> Option<u32>,
    ) -> Option<Flow> {
        let (src, dst) = match (self.src, self.dst) {
            (Some(s), Some(d)) => (s, d),
            (Some(a), None) | (None, Some(a)) => {
                let unspecified = match a {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                };
                if self.src.is_some() {
                    (a, unspecified)
                } else {
                    (unspecified, a)
                }
            }
            (None, None) => return None,
        };
        let time = |abs: Option<u64>, delta: Option<u64>, up: Option<u32>| {
            abs.or_else(|| delta.map(|us| clock.export_ms.saturating_sub(us / 1000)))
                .or_else(|| up.and_then(|t| clock.uptime_to_unix(t, self.init_ms)))
        };
        let mut start_ms = time(self.start_abs, self.start_delta_us, self.start_uptime);
        let mut end_ms = time(self.end_abs, self.end_delta_us, self.end_uptime);
        if let Some(d) = self.duration_ms {
            match (start_ms, end_ms) {
                (Some(s), None) => end_ms = Some(s.saturating_add(d)),
                (None, Some(e)) => start_ms = Some(e.saturating_sub(d)),
                _ => {}
            }
        }
        let section_len = self.section.as_ref().map(|s| s.bytes().len() as u64);
        let packets = match (self.packets, section_len) {
            (Some((_, p)), _) => p,
            (None, Some(_)) => 1,
            (None, None) => 0,
        };
        let bytes = self.bytes.map(|(_, b)| b).or(section_len).unwrap_or(0);
        let sampling = sampling_of(&self).or_else(|| sampler(self.sampler_id));
        Some(Flow {
            src,
            dst,
            proto: self.proto,
            src_port: self.src_port,
            dst_port: self.dst_port,
            tcp_flags: self.tcp_flags,
            icmp_type_code: self.icmp,
            fragment: self.fragment,
            packets,
            bytes,
            start_ms,
            end_ms,
            sampling,
            direction: self.direction,
            input: self.input,
            output: self.output,
            section: self.section,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ntp_timestamps_convert_to_unix_ms() {
        // 2024-01-01T00:00:00.5Z: unix 1704067200, plus half a second as a binary fraction.
        let v = ((1_704_067_200u64 + ie::NTP_UNIX_OFFSET_SECS) << 32) | 0x8000_0000;
        assert_eq!(ntp_ms(v), Some(1_704_067_200_500));
        assert_eq!(ntp_ms(5 << 32), None);
    }

    #[test]
    fn uptime_wrapping_between_first_and_export_is_a_small_difference() {
        let c = Clock {
            export_ms: 1_000_000,
            uptime_ms: Some(100),
            init_ms: None,
        };
        // First seen 200 ms before export, across the 2^32 wrap.
        assert_eq!(c.uptime_to_unix(u32::MAX - 99, None), Some(999_800));
    }
}
