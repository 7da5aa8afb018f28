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

/// Where a value goes: an index into [`Values`]' slots.
mod slot {
    pub const PROTO: u8 = 0;
    pub const SRC_PORT: u8 = 1;
    pub const DST_PORT: u8 = 2;
    pub const TCP_FLAGS: u8 = 3;
    pub const ICMP: u8 = 4;
    pub const FRAGMENT: u8 = 5;
    pub const PACKETS: u8 = 6;
    pub const BYTES: u8 = 7;
    pub const INPUT: u8 = 8;
    pub const OUTPUT: u8 = 9;
    pub const DIRECTION: u8 = 10;
    pub const SAMPLING_INTERVAL: u8 = 11;
    pub const RANDOM_INTERVAL: u8 = 12;
    pub const PACKET_INTERVAL: u8 = 13;
    pub const PACKET_SPACE: u8 = 14;
    pub const SAMPLING_SIZE: u8 = 15;
    pub const POPULATION: u8 = 16;
    /// An f64, as its bits.
    pub const PROBABILITY: u8 = 17;
    pub const OBSERVED: u8 = 18;
    pub const SELECTED: u8 = 19;
    pub const SAMPLER_ID: u8 = 20;
    pub const ACTIVE_TIMEOUT: u8 = 21;
    pub const IDLE_TIMEOUT: u8 = 22;
    pub const INIT_MS: u8 = 23;
    pub const START_ABS: u8 = 24;
    pub const END_ABS: u8 = 25;
    pub const START_DELTA_US: u8 = 26;
    pub const END_DELTA_US: u8 = 27;
    pub const START_UPTIME: u8 = 28;
    pub const END_UPTIME: u8 = 29;
    pub const DURATION_MS: u8 = 30;
    /// Slots: one more than used, a power of two, so that an index masked to it needs no check.
    pub const N: usize = 32;
    /// Targets that are not slots (for the compile-time "last field wins" pruning).
    pub const SRC: u8 = 31;
    pub const DST: u8 = 32;
    pub const SECTION: u8 = 33;
}

/// What one step does with its field's octets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Skip,
    Src4,
    Dst4,
    Src6,
    Dst6,
    /// An unsigned integer into the slot: any length from 1 to 8 octets, or (chosen when the
    /// template is compiled) exactly 1, 2, 4 or 8.
    Uint(u8),
    U1(u8),
    U2(u8),
    U4(u8),
    U8(u8),
    /// Seconds, stored as ms.
    Secs(u8),
    /// An NTP timestamp, stored as unix ms (or cleared before 1970).
    Ntp(u8),
    /// Microseconds, stored as ms.
    Micros(u8),
    /// samplingProbability, float64 or float32.
    Prob,
    SectionLink,
    SectionIp,
}

impl Act {
    /// The act for a field of `kind`, and what it writes (`None`: nothing).
    fn of(kind: Kind) -> (Act, Option<u8>) {
        use slot::*;
        let u = |s: u8| (Act::Uint(s), Some(s));
        match kind {
            Kind::Skip => (Act::Skip, None),
            Kind::Src4 => (Act::Src4, Some(SRC)),
            Kind::Dst4 => (Act::Dst4, Some(DST)),
            Kind::Src6 => (Act::Src6, Some(SRC)),
            Kind::Dst6 => (Act::Dst6, Some(DST)),
            Kind::Proto => u(PROTO),
            Kind::SrcPort => u(SRC_PORT),
            Kind::DstPort => u(DST_PORT),
            Kind::TcpFlags => u(TCP_FLAGS),
            Kind::Icmp => u(ICMP),
            Kind::FragOffset => u(FRAGMENT),
            Kind::Packets(_) => u(PACKETS),
            Kind::Bytes(_) => u(BYTES),
            Kind::Input => u(INPUT),
            Kind::Output => u(OUTPUT),
            Kind::Direction => u(DIRECTION),
            Kind::SamplingInterval => u(SAMPLING_INTERVAL),
            Kind::RandomInterval => u(RANDOM_INTERVAL),
            Kind::PacketInterval => u(PACKET_INTERVAL),
            Kind::PacketSpace => u(PACKET_SPACE),
            Kind::SamplingSize => u(SAMPLING_SIZE),
            Kind::Population => u(POPULATION),
            Kind::Probability => (Act::Prob, Some(PROBABILITY)),
            Kind::Observed => u(OBSERVED),
            Kind::Selected => u(SELECTED),
            Kind::SamplerId => u(SAMPLER_ID),
            Kind::ActiveTimeout => u(ACTIVE_TIMEOUT),
            Kind::IdleTimeout => u(IDLE_TIMEOUT),
            Kind::InitTime => u(INIT_MS),
            Kind::StartSecs => (Act::Secs(START_ABS), Some(START_ABS)),
            Kind::EndSecs => (Act::Secs(END_ABS), Some(END_ABS)),
            Kind::StartMs => u(START_ABS),
            Kind::EndMs => u(END_ABS),
            Kind::StartNtp => (Act::Ntp(START_ABS), Some(START_ABS)),
            Kind::EndNtp => (Act::Ntp(END_ABS), Some(END_ABS)),
            Kind::StartDeltaUs => u(START_DELTA_US),
            Kind::EndDeltaUs => u(END_DELTA_US),
            Kind::StartUptime => u(START_UPTIME),
            Kind::EndUptime => u(END_UPTIME),
            Kind::DurationMs => u(DURATION_MS),
            Kind::DurationUs => (Act::Micros(DURATION_MS), Some(DURATION_MS)),
            Kind::SectionLink => (Act::SectionLink, Some(SECTION)),
            Kind::SectionIp => (Act::SectionIp, Some(SECTION)),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Op {
    act: Act,
    id: u16,
    /// Octets, or [`ie::VARIABLE_LENGTH`] (IPFIX) for a length in the record.
    len: u16,
    /// Where the field starts in its record (fixed-length templates only).
    off: u32,
}

/// A fixed-length record: its length, and its used fields at their offsets. The integers of each
/// width are apart, read with no dispatch; their order does not matter, as no two fields write the
/// same value once the template is compiled.
#[derive(Debug, Clone, Default)]
struct Plan {
    len: usize,
    /// (offset, slot) of the integers of 1, 2, 4 and 8 octets.
    u1: Vec<(u32, u8)>,
    u2: Vec<(u32, u8)>,
    u4: Vec<(u32, u8)>,
    u8: Vec<(u32, u8)>,
    /// The slots of all of them.
    mask: u32,
    /// (offset, is the source) of the IPv4 addresses.
    v4: Vec<(u32, bool)>,
    /// The other fields.
    rest: Vec<Op>,
}

/// A template ready to decode records.
///
/// Compiled once, when the template is learned: each field's element id is turned into what to do
/// with its value, and a field whose value another one overrides (the same target written later,
/// or a packet or octet count of a lower precedence) into a skip. When no field has a variable
/// length, every field is at a fixed offset of a record of fixed length, and `plan` holds only the
/// fields that are used.
#[derive(Debug, Clone)]
pub(crate) struct Compiled {
    pub template: Template,
    /// One step per field, in order.
    ops: Vec<Op>,
    /// The fixed-length record: the used fields, at their offsets; `None` with a variable field.
    plan: Option<Plan>,
    pub min_len: usize,
    /// A record may be a flow (the template has an address).
    flows: bool,
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
        let kinds: Vec<Kind> = template
            .fields
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let v9_scope = !ipfix && i < template.scope_fields;
                if f.enterprise.is_some() || v9_scope {
                    Kind::Skip
                } else {
                    kind(f.id, f.len)
                }
            })
            .collect();
        // Counts: the first field of the best rank (delta, post-delta, total) is the one kept.
        let best = |counts: fn(Kind) -> Option<u8>| {
            let mut best: Option<(u8, usize)> = None;
            for (i, k) in kinds.iter().enumerate() {
                if let Some(r) = counts(*k)
                    && best.is_none_or(|(b, _)| r < b)
                {
                    best = Some((r, i));
                }
            }
            best.map(|(_, i)| i)
        };
        let packets = best(|k| match k {
            Kind::Packets(r) => Some(r),
            _ => None,
        });
        let bytes = best(|k| match k {
            Kind::Bytes(r) => Some(r),
            _ => None,
        });
        let mut ops: Vec<Op> = template
            .fields
            .iter()
            .zip(&kinds)
            .enumerate()
            .map(|(i, (f, &k))| {
                let k = match k {
                    Kind::Packets(_) if packets != Some(i) => Kind::Skip,
                    Kind::Bytes(_) if bytes != Some(i) => Kind::Skip,
                    k => k,
                };
                // v9 has no variable-length encoding: 65535 there is a fixed length.
                let len = if !ipfix && f.len == ie::VARIABLE_LENGTH {
                    ie::VARIABLE_LENGTH - 1
                } else {
                    f.len
                };
                Op {
                    act: Act::of(k).0,
                    id: f.id,
                    len,
                    off: 0,
                }
            })
            .collect();
        // Any other target: the last field that writes it wins.
        let mut written: u64 = 0;
        for (op, &k) in ops.iter_mut().zip(&kinds).rev() {
            if op.act == Act::Skip {
                continue;
            }
            if let (_, Some(t)) = Act::of(k) {
                if written & (1 << t) != 0 {
                    op.act = Act::Skip;
                }
                written |= 1 << t;
            }
        }
        for op in &mut ops {
            if let Act::Uint(s) = op.act {
                op.act = match op.len {
                    1 => Act::U1(s),
                    2 => Act::U2(s),
                    4 => Act::U4(s),
                    8 => Act::U8(s),
                    _ => Act::Uint(s),
                };
            }
        }
        let flows = written & ((1 << slot::SRC) | (1 << slot::DST)) != 0;
        let variable = ipfix && ops.iter().any(|op| op.len == ie::VARIABLE_LENGTH);
        let plan = (!variable).then(|| {
            let mut off = 0u32;
            let mut plan = Plan::default();
            for op in &mut ops {
                op.off = off;
                off = off.saturating_add(u32::from(op.len));
                match op.act {
                    Act::Skip => {}
                    Act::U1(s) => plan.u1.push((op.off, s)),
                    Act::U2(s) => plan.u2.push((op.off, s)),
                    Act::U4(s) => plan.u4.push((op.off, s)),
                    Act::U8(s) => plan.u8.push((op.off, s)),
                    Act::Src4 => plan.v4.push((op.off, true)),
                    Act::Dst4 => plan.v4.push((op.off, false)),
                    _ => plan.rest.push(*op),
                }
            }
            plan.len = off as usize;
            plan.mask = [&plan.u1, &plan.u2, &plan.u4, &plan.u8]
                .iter()
                .flat_map(|l| l.iter())
                .fold(0, |m, &(_, s)| m | 1 << s);
            plan
        });
        let min_len = template.min_record_len(ipfix);
        Compiled {
            template,
            ops,
            plan,
            min_len,
            flows,
            ipfix,
        }
    }
}

impl Compiled {
    /// How many flows a data set of `len` octets holds at most, when that is known exactly: a
    /// fixed-length flow template (0 otherwise: records of variable length may be fewer).
    pub(crate) fn flows_in(&self, len: usize) -> usize {
        match &self.plan {
            Some(plan) if self.flows && !self.template.options => {
                len.checked_div(plan.len).unwrap_or(0)
            }
            _ => 0,
        }
    }
}

/// Everything one record said that the decoder uses: a slot per value (see [`slot`]), valid when
/// its bit is set in `present`.
#[derive(Debug, Default, Clone)]
pub(crate) struct Values {
    present: u32,
    slots: [u64; slot::N],
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    section: Option<Section>,
}

impl Values {
    #[inline]
    fn set(&mut self, s: u8, x: u64) {
        self.put(s, x);
        self.present |= 1 << s;
    }

    /// Stores a value without marking it present.
    #[inline]
    fn put(&mut self, s: u8, x: u64) {
        self.slots[usize::from(s) % slot::N] = x;
    }

    #[inline]
    fn get(&self, s: u8) -> Option<u64> {
        (self.present & (1 << s) != 0).then(|| self.slots[usize::from(s) % slot::N])
    }

    /// The value, 0 when absent.
    #[inline]
    fn or0(&self, s: u8) -> u64 {
        self.get(s).unwrap_or(0)
    }

    fn clear(&mut self) {
        self.present = 0;
        self.src = None;
        self.dst = None;
        self.section = None;
    }

    pub(crate) fn sampler_id(&self) -> Option<u64> {
        self.get(slot::SAMPLER_ID)
    }

    pub(crate) fn active_timeout_s(&self) -> Option<u64> {
        self.get(slot::ACTIVE_TIMEOUT)
    }

    pub(crate) fn idle_timeout_s(&self) -> Option<u64> {
        self.get(slot::IDLE_TIMEOUT)
    }

    pub(crate) fn init_ms(&self) -> Option<u64> {
        self.get(slot::INIT_MS)
    }
}

/// A big-endian unsigned integer of 1 to 8 octets.
#[inline]
fn uint(b: &[u8]) -> u64 {
    match *b {
        [a] => u64::from(a),
        [a, b] => u64::from(u16::from_be_bytes([a, b])),
        [a, b, c, d] => u64::from(u32::from_be_bytes([a, b, c, d])),
        [a, b, c, d, e, f, g, h] => u64::from_be_bytes([a, b, c, d, e, f, g, h]),
        _ => b.iter().fold(0u64, |acc, &x| (acc << 8) | u64::from(x)),
    }
}

/// An NTP timestamp (seconds since 1900, 32-bit binary fraction) as unix ms; `None` before 1970.
fn ntp_ms(v: u64) -> Option<u64> {
    let secs = (v >> 32).checked_sub(ie::NTP_UNIX_OFFSET_SECS)?;
    Some(secs * 1000 + (((v & 0xffff_ffff) * 1000) >> 32))
}

/// Does `act` with the field `b`, which starts at `start` of `set`.
#[inline(always)]
fn apply(act: Act, b: &[u8], set: &Bytes, start: usize, v: &mut Values) {
    match act {
        Act::Skip => {}
        Act::Uint(s) => v.set(s, uint(b)),
        Act::U1(s) => {
            if let Ok(o) = <[u8; 1]>::try_from(b) {
                v.set(s, u64::from(o[0]))
            }
        }
        Act::U2(s) => {
            if let Ok(o) = <[u8; 2]>::try_from(b) {
                v.set(s, u64::from(u16::from_be_bytes(o)))
            }
        }
        Act::U4(s) => {
            if let Ok(o) = <[u8; 4]>::try_from(b) {
                v.set(s, u64::from(u32::from_be_bytes(o)))
            }
        }
        Act::U8(s) => {
            if let Ok(o) = <[u8; 8]>::try_from(b) {
                v.set(s, u64::from_be_bytes(o))
            }
        }
        Act::Secs(s) => v.set(s, uint(b).saturating_mul(1000)),
        Act::Micros(s) => v.set(s, uint(b) / 1000),
        Act::Ntp(s) => match ntp_ms(uint(b)) {
            Some(x) => v.set(s, x),
            None => v.present &= !(1 << s),
        },
        Act::Prob => {
            let p = if b.len() == 8 {
                f64::from_bits(uint(b))
            } else {
                f64::from(f32::from_bits(uint(b) as u32))
            };
            v.set(slot::PROBABILITY, p.to_bits());
        }
        Act::Src4 | Act::Dst4 => {
            if let Ok(o) = <[u8; 4]>::try_from(b) {
                let a = Some(IpAddr::V4(Ipv4Addr::from(o)));
                if act == Act::Src4 {
                    v.src = a
                } else {
                    v.dst = a
                }
            }
        }
        Act::Src6 | Act::Dst6 => {
            if let Ok(o) = <[u8; 16]>::try_from(b) {
                let a = Some(IpAddr::V6(Ipv6Addr::from(o)));
                if act == Act::Src6 {
                    v.src = a
                } else {
                    v.dst = a
                }
            }
        }
        Act::SectionLink => v.section = Some(Section::Link(set.slice(start..start + b.len()))),
        Act::SectionIp => v.section = Some(Section::Ip(set.slice(start..start + b.len()))),
    }
}

/// Reads one record at `*pos` of `set` (the set's body) into `v`, moving `*pos` past it. On
/// error, the field id it happened in.
pub(crate) fn read(
    c: &Compiled,
    set: &Bytes,
    pos: &mut usize,
    v: &mut Values,
) -> Result<(), (u16, ErrorKind)> {
    v.clear();
    let data: &[u8] = set;
    if let Some(plan) = &c.plan
        && let Some(rec) = data.get(*pos..*pos + plan.len)
    {
        let base = *pos;
        *pos += plan.len;
        fn at<const N: usize>(rec: &[u8], off: u32) -> Option<[u8; N]> {
            let off = off as usize;
            rec.get(off..off + N)?.try_into().ok()
        }
        // Every one of these is in the record: present, whatever its value.
        v.present |= plan.mask;
        for &(off, s) in &plan.u1 {
            if let Some([a]) = at::<1>(rec, off) {
                v.put(s, u64::from(a));
            }
        }
        for &(off, s) in &plan.u2 {
            if let Some(o) = at::<2>(rec, off) {
                v.put(s, u64::from(u16::from_be_bytes(o)));
            }
        }
        for &(off, s) in &plan.u4 {
            if let Some(o) = at::<4>(rec, off) {
                v.put(s, u64::from(u32::from_be_bytes(o)));
            }
        }
        for &(off, s) in &plan.u8 {
            if let Some(o) = at::<8>(rec, off) {
                v.put(s, u64::from_be_bytes(o));
            }
        }
        for &(off, src) in &plan.v4 {
            if let Some(o) = at::<4>(rec, off) {
                let a = Some(IpAddr::V4(Ipv4Addr::from(o)));
                if src { v.src = a } else { v.dst = a }
            }
        }
        for op in &plan.rest {
            let off = op.off as usize;
            if let Some(b) = rec.get(off..off + usize::from(op.len)) {
                apply(op.act, b, set, base + off, v);
            }
        }
        return Ok(());
    }
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
        apply(op.act, b, set, start, v);
    }
    Ok(())
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
#[inline]
fn sampling_of(v: &Values) -> Option<u32> {
    use slot::*;
    const ANY: u32 = 1 << SAMPLING_INTERVAL
        | 1 << RANDOM_INTERVAL
        | 1 << PACKET_INTERVAL
        | 1 << SAMPLING_SIZE
        | 1 << PROBABILITY
        | 1 << SELECTED;
    if v.present & ANY == 0 {
        return None;
    }
    let nz = |s: u8| v.get(s).filter(|&n| n > 0);
    let n = if let Some(n) = nz(SAMPLING_INTERVAL) {
        n
    } else if let Some(n) = nz(RANDOM_INTERVAL) {
        n
    } else if let Some(i) = nz(PACKET_INTERVAL) {
        // RFC 5476 §6.5.2.1 systematic count-based: select `interval`, skip `space`.
        (i.saturating_add(v.get(PACKET_SPACE).unwrap_or(0))) / i
    } else if let (Some(s), Some(p)) = (nz(SAMPLING_SIZE), v.get(POPULATION)) {
        p / s
    } else if let Some(p) = v
        .get(PROBABILITY)
        .map(f64::from_bits)
        .filter(|p| *p > 0.0 && *p <= 1.0)
    {
        (1.0 / p).round() as u64
    } else if let (Some(o), Some(s)) = (v.get(OBSERVED), nz(SELECTED)) {
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

    /// Pushes the flow onto `out`, if the record has an address (false if not). `sampler` resolves
    /// the record's sampler id (or the domain's value when it has none). Takes the record's
    /// section.
    pub(crate) fn push_flow(
        &mut self,
        clock: &Clock,
        sampler: impl FnOnce(Option<u64>) -> Option<u32>,
        out: &mut Vec<Flow>,
    ) -> bool {
        use slot::*;
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
            (None, None) => return false,
        };
        let init_ms = self.get(INIT_MS);
        let time = |abs: Option<u64>, delta: Option<u64>, up: Option<u64>| {
            abs.or_else(|| delta.map(|us| clock.export_ms.saturating_sub(us / 1000)))
                .or_else(|| up.and_then(|t| clock.uptime_to_unix(t as u32, init_ms)))
        };
        let mut start_ms = time(
            self.get(START_ABS),
            self.get(START_DELTA_US),
            self.get(START_UPTIME),
        );
        let mut end_ms = time(
            self.get(END_ABS),
            self.get(END_DELTA_US),
            self.get(END_UPTIME),
        );
        if let Some(d) = self.get(DURATION_MS) {
            match (start_ms, end_ms) {
                (Some(s), None) => end_ms = Some(s.saturating_add(d)),
                (None, Some(e)) => start_ms = Some(e.saturating_sub(d)),
                _ => {}
            }
        }
        let section = self.section.take();
        let section_len = section.as_ref().map(|s| s.bytes().len() as u64);
        let packets = match (self.get(PACKETS), section_len) {
            (Some(p), _) => p,
            (None, Some(_)) => 1,
            (None, None) => 0,
        };
        let bytes = self.get(BYTES).or(section_len).unwrap_or(0);
        let sampling = sampling_of(self).or_else(|| sampler(self.get(SAMPLER_ID)));
        out.push(Flow {
            src,
            dst,
            proto: self.or0(PROTO) as u8,
            src_port: self.or0(SRC_PORT) as u16,
            dst_port: self.or0(DST_PORT) as u16,
            tcp_flags: self.or0(TCP_FLAGS) as u8,
            icmp_type_code: self.get(ICMP).map(|x| x as u16),
            fragment: self.or0(FRAGMENT) & 0x1fff != 0,
            packets,
            bytes,
            start_ms,
            end_ms,
            sampling,
            direction: self.get(DIRECTION).map(|x| x as u8),
            input: self.or0(INPUT) as u32,
            output: self.or0(OUTPUT) as u32,
            section,
        });
        true
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
