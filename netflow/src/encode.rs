//! The encoder: NetFlow v5, v9 and IPFIX messages with templates, options templates and data, the
//! mirror of [`crate::Session::decode`], for tests, benches and synthetic exporters.
//!
//! Driving it:
//!
//! ```
//! use deflect_netflow::encode::{IpfixMessage, flow_template, values_for};
//! use deflect_netflow::{Limits, Session};
//! # use deflect_netflow::Flow;
//! # let flow = Flow {
//! #     src: "192.0.2.1".parse().unwrap(), dst: "198.51.100.7".parse().unwrap(), proto: 17,
//! #     src_port: 123, dst_port: 4444, tcp_flags: 0, icmp_type_code: None, fragment: false,
//! #     packets: 10, bytes: 4680, start_ms: Some(1_700_000_000_000), end_ms: Some(1_700_000_001_000),
//! #     sampling: None, direction: None, input: 3, output: 7, section: None };
//! let t = flow_template(300, false, true);
//! let bytes = IpfixMessage::new(42)
//!     .export_secs(1_700_000_002)
//!     .template(&t)
//!     .data(&t, &[values_for(&t, &flow, 1_700_000_002_000, None)])
//!     .encode();
//! let p = Session::new(Limits::default()).decode(bytes.freeze(), 0).unwrap();
//! assert_eq!(p.flows, vec![flow]);
//! ```
//!
//! The encoder writes what it is given, valid or not (any set id, template id, field count or
//! length), so tests can build malformed input with it ([`IpfixMessage::raw_set`],
//! [`V9Message::raw_set`]).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};

use crate::flow::{Flow, Section};
use crate::ie;
use crate::template::{FieldSpec, Template};

/// A field value to write.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// An unsigned integer, written in the field's length (big-endian, high octets dropped: the
    /// reduced-size encoding).
    U(u64),
    Addr(IpAddr),
    /// Octets: a variable-length field gets its length prefix; a fixed one is cut or zero-padded.
    Bytes(Bytes),
    /// A float64 (or float32 in a 4-octet field).
    F64(f64),
}

/// Writes one field of `spec` (IPFIX: a length of 65535 is variable-length).
pub fn put_field(out: &mut BytesMut, spec: &FieldSpec, v: &Value, ipfix: bool) {
    let var = ipfix && spec.len == ie::VARIABLE_LENGTH;
    let len = usize::from(spec.len);
    match v {
        Value::Bytes(b) if var => {
            if b.len() < 255 {
                out.put_u8(b.len() as u8);
            } else {
                out.put_u8(255);
                out.put_u16(b.len().min(65535) as u16);
            }
            out.put_slice(&b[..b.len().min(65535)]);
        }
        _ if var => out.put_u8(0),
        Value::U(x) => {
            let be = x.to_be_bytes();
            if len <= 8 {
                out.put_slice(&be[8 - len..]);
            } else {
                out.put_bytes(0, len - 8);
                out.put_slice(&be);
            }
        }
        Value::F64(x) => {
            if len == 4 {
                out.put_f32(*x as f32);
            } else {
                put_field(out, spec, &Value::U(x.to_bits()), ipfix);
            }
        }
        Value::Addr(a) => {
            let o = match a {
                IpAddr::V4(a) => a.octets().to_vec(),
                IpAddr::V6(a) => a.octets().to_vec(),
            };
            put_fixed(out, &o, len);
        }
        Value::Bytes(b) => put_fixed(out, b, len),
    }
}

fn put_fixed(out: &mut BytesMut, b: &[u8], len: usize) {
    let n = b.len().min(len);
    out.put_slice(&b[..n]);
    out.put_bytes(0, len - n);
}

/// Writes one data record: a value per field (missing values are written as 0 or empty).
pub fn put_record(out: &mut BytesMut, t: &Template, values: &[Value], ipfix: bool) {
    for (i, f) in t.fields.iter().enumerate() {
        put_field(out, f, values.get(i).unwrap_or(&Value::U(0)), ipfix);
    }
}

/// A template for the flows of a DDoS-era exporter: addresses (v4 or v6), protocol, ports, TCP
/// flags, packet and octet deltas, start and end (IPFIX: 152/153 ms; v9: 22/21 sysUptime),
/// ingress and egress interfaces.
pub fn flow_template(id: u16, ipv6: bool, ipfix: bool) -> Template {
    let (src, dst, alen) = if ipv6 {
        (ie::SOURCE_IPV6_ADDRESS, ie::DESTINATION_IPV6_ADDRESS, 16)
    } else {
        (ie::SOURCE_IPV4_ADDRESS, ie::DESTINATION_IPV4_ADDRESS, 4)
    };
    let (start, end, tlen, clen) = if ipfix {
        (ie::FLOW_START_MILLISECONDS, ie::FLOW_END_MILLISECONDS, 8, 8)
    } else {
        (ie::FLOW_START_SYS_UP_TIME, ie::FLOW_END_SYS_UP_TIME, 4, 4)
    };
    Template::new(
        id,
        vec![
            FieldSpec::new(src, alen),
            FieldSpec::new(dst, alen),
            FieldSpec::new(ie::PROTOCOL_IDENTIFIER, 1),
            FieldSpec::new(ie::SOURCE_TRANSPORT_PORT, 2),
            FieldSpec::new(ie::DESTINATION_TRANSPORT_PORT, 2),
            FieldSpec::new(ie::TCP_CONTROL_BITS, 1),
            FieldSpec::new(ie::PACKET_DELTA_COUNT, clen),
            FieldSpec::new(ie::OCTET_DELTA_COUNT, clen),
            FieldSpec::new(start, tlen),
            FieldSpec::new(end, tlen),
            FieldSpec::new(ie::INGRESS_INTERFACE, 4),
            FieldSpec::new(ie::EGRESS_INTERFACE, 4),
        ],
    )
}

/// A time as the element `id` carries it, given the message's export time and (v9) uptime.
fn time_value(id: u16, ms: u64, export_ms: u64, uptime_ms: Option<u32>) -> u64 {
    match id {
        ie::FLOW_START_SECONDS | ie::FLOW_END_SECONDS => ms / 1000,
        ie::FLOW_START_MICROSECONDS
        | ie::FLOW_END_MICROSECONDS
        | ie::FLOW_START_NANOSECONDS
        | ie::FLOW_END_NANOSECONDS => {
            let secs = ms / 1000 + ie::NTP_UNIX_OFFSET_SECS;
            // The smallest fraction that reads back as the same millisecond.
            let frac = ((ms % 1000) << 32).div_ceil(1000);
            (secs << 32) | frac
        }
        ie::FLOW_START_DELTA_MICROSECONDS | ie::FLOW_END_DELTA_MICROSECONDS => {
            export_ms.saturating_sub(ms) * 1000
        }
        ie::FLOW_START_SYS_UP_TIME | ie::FLOW_END_SYS_UP_TIME => {
            let before = export_ms.wrapping_sub(ms) as u32;
            u64::from(uptime_ms.unwrap_or(0).wrapping_sub(before))
        }
        _ => ms,
    }
}

/// The values of `flow` for each field of `t`, so that decoding gives `flow` back: addresses,
/// protocol, ports, flags, ICMP, fragment, counts (any of the delta, post or total elements),
/// interfaces, direction, samplingInterval (34) from `flow.sampling`, the sections, and times in
/// any representation (sysUptime ones against `uptime_ms` at `export_ms`, v9). Other fields get 0.
pub fn values_for(t: &Template, flow: &Flow, export_ms: u64, uptime_ms: Option<u32>) -> Vec<Value> {
    let section = |link: bool| match &flow.section {
        Some(Section::Link(b)) if link => Value::Bytes(b.clone()),
        Some(Section::Ip(b)) if !link => Value::Bytes(b.clone()),
        _ => Value::Bytes(Bytes::new()),
    };
    let v4 = |a: IpAddr| match a {
        IpAddr::V4(a) => Value::Addr(a.into()),
        IpAddr::V6(_) => Value::Addr(Ipv4Addr::UNSPECIFIED.into()),
    };
    let v6 = |a: IpAddr| match a {
        IpAddr::V6(a) => Value::Addr(a.into()),
        IpAddr::V4(_) => Value::Addr(Ipv6Addr::UNSPECIFIED.into()),
    };
    t.fields
        .iter()
        .map(|f| {
            if f.enterprise.is_some() {
                return Value::U(0);
            }
            match f.id {
                ie::SOURCE_IPV4_ADDRESS => v4(flow.src),
                ie::DESTINATION_IPV4_ADDRESS => v4(flow.dst),
                ie::SOURCE_IPV6_ADDRESS => v6(flow.src),
                ie::DESTINATION_IPV6_ADDRESS => v6(flow.dst),
                ie::PROTOCOL_IDENTIFIER => Value::U(flow.proto.into()),
                ie::SOURCE_TRANSPORT_PORT => Value::U(flow.src_port.into()),
                ie::DESTINATION_TRANSPORT_PORT => Value::U(flow.dst_port.into()),
                ie::TCP_CONTROL_BITS => Value::U(flow.tcp_flags.into()),
                ie::ICMP_TYPE_CODE_IPV4 | ie::ICMP_TYPE_CODE_IPV6 => {
                    Value::U(flow.icmp_type_code.unwrap_or(0).into())
                }
                ie::FRAGMENT_OFFSET => Value::U(u64::from(flow.fragment)),
                ie::PACKET_DELTA_COUNT | ie::POST_PACKET_DELTA_COUNT | ie::PACKET_TOTAL_COUNT => {
                    Value::U(flow.packets)
                }
                ie::OCTET_DELTA_COUNT | ie::POST_OCTET_DELTA_COUNT | ie::OCTET_TOTAL_COUNT => {
                    Value::U(flow.bytes)
                }
                ie::INGRESS_INTERFACE => Value::U(flow.input.into()),
                ie::EGRESS_INTERFACE => Value::U(flow.output.into()),
                ie::FLOW_DIRECTION => Value::U(flow.direction.unwrap_or(0).into()),
                ie::SAMPLING_INTERVAL => Value::U(flow.sampling.unwrap_or(0).into()),
                ie::DATA_LINK_FRAME_SECTION => section(true),
                ie::IP_HEADER_PACKET_SECTION => section(false),
                ie::FLOW_START_SECONDS
                | ie::FLOW_START_MILLISECONDS
                | ie::FLOW_START_MICROSECONDS
                | ie::FLOW_START_NANOSECONDS
                | ie::FLOW_START_DELTA_MICROSECONDS
                | ie::FLOW_START_SYS_UP_TIME => Value::U(time_value(
                    f.id,
                    flow.start_ms.unwrap_or(0),
                    export_ms,
                    uptime_ms,
                )),
                ie::FLOW_END_SECONDS
                | ie::FLOW_END_MILLISECONDS
                | ie::FLOW_END_MICROSECONDS
                | ie::FLOW_END_NANOSECONDS
                | ie::FLOW_END_DELTA_MICROSECONDS
                | ie::FLOW_END_SYS_UP_TIME => Value::U(time_value(
                    f.id,
                    flow.end_ms.unwrap_or(0),
                    export_ms,
                    uptime_ms,
                )),
                _ => Value::U(0),
            }
        })
        .collect()
}

fn put_set(out: &mut BytesMut, id: u16, body: &[u8]) {
    out.put_u16(id);
    out.put_u16((body.len() + 4).min(65535) as u16);
    out.put_slice(body);
}

fn template_body(out: &mut BytesMut, t: &Template, ipfix: bool) {
    out.put_u16(t.id);
    if !ipfix && t.options {
        out.put_u16((t.scope_fields * 4) as u16);
        out.put_u16(((t.fields.len().saturating_sub(t.scope_fields)) * 4) as u16);
    } else {
        out.put_u16(t.fields.len() as u16);
        if t.options {
            out.put_u16(t.scope_fields as u16);
        }
    }
    for f in &t.fields {
        match f.enterprise {
            Some(pen) if ipfix => {
                out.put_u16(f.id | ie::ENTERPRISE_BIT);
                out.put_u16(f.len);
                out.put_u32(pen);
            }
            _ => {
                out.put_u16(f.id);
                out.put_u16(f.len);
            }
        }
    }
}

/// Pads a set body to a multiple of 4 octets, as exporters do (RFC 3954 §5.3).
fn pad4(b: &mut BytesMut) {
    while b.len() % 4 != 0 {
        b.put_u8(0);
    }
}

/// A NetFlow v9 export packet (RFC 3954 §5).
#[derive(Debug, Clone, Default)]
pub struct V9Message {
    pub source_id: u32,
    pub uptime_ms: u32,
    pub unix_secs: u32,
    pub sequence: u32,
    /// The header's count; by default the records written.
    pub count: Option<u16>,
    records: u16,
    sets: BytesMut,
}

impl V9Message {
    pub fn new(source_id: u32) -> V9Message {
        V9Message {
            source_id,
            ..V9Message::default()
        }
    }

    pub fn uptime_ms(mut self, t: u32) -> Self {
        self.uptime_ms = t;
        self
    }

    pub fn unix_secs(mut self, t: u32) -> Self {
        self.unix_secs = t;
        self
    }

    pub fn sequence(mut self, s: u32) -> Self {
        self.sequence = s;
        self
    }

    /// A template FlowSet (id 0), or an options template FlowSet (id 1) for an options template.
    pub fn template(mut self, t: &Template) -> Self {
        let mut b = BytesMut::new();
        template_body(&mut b, t, false);
        pad4(&mut b);
        put_set(&mut self.sets, u16::from(t.options), &b);
        self.records += 1;
        self
    }

    /// A data FlowSet of records of `t`, padded to 4 octets.
    pub fn data(mut self, t: &Template, records: &[Vec<Value>]) -> Self {
        let mut b = BytesMut::new();
        for r in records {
            put_record(&mut b, t, r, false);
        }
        pad4(&mut b);
        put_set(&mut self.sets, t.id, &b);
        self.records = self.records.saturating_add(records.len() as u16);
        self
    }

    /// Any set, as given.
    pub fn raw_set(mut self, id: u16, body: &[u8]) -> Self {
        put_set(&mut self.sets, id, body);
        self
    }

    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(20 + self.sets.len());
        out.put_u16(ie::version::V9);
        out.put_u16(self.count.unwrap_or(self.records));
        out.put_u32(self.uptime_ms);
        out.put_u32(self.unix_secs);
        out.put_u32(self.sequence);
        out.put_u32(self.source_id);
        out.put_slice(&self.sets);
        out
    }
}

/// An IPFIX message (RFC 7011 §3).
#[derive(Debug, Clone, Default)]
pub struct IpfixMessage {
    pub domain: u32,
    pub export_secs: u32,
    pub sequence: u32,
    /// The header's length; by default the message's.
    pub length: Option<u16>,
    sets: BytesMut,
}

impl IpfixMessage {
    pub fn new(domain: u32) -> IpfixMessage {
        IpfixMessage {
            domain,
            ..IpfixMessage::default()
        }
    }

    pub fn export_secs(mut self, t: u32) -> Self {
        self.export_secs = t;
        self
    }

    pub fn sequence(mut self, s: u32) -> Self {
        self.sequence = s;
        self
    }

    /// A template set (id 2), or an options template set (id 3) for an options template.
    pub fn template(mut self, t: &Template) -> Self {
        let mut b = BytesMut::new();
        template_body(&mut b, t, true);
        put_set(&mut self.sets, 2 + u16::from(t.options), &b);
        self
    }

    /// A withdrawal of template `id` (RFC 7011 §8.1); `id` 2 or 3 withdraws all of that kind.
    pub fn withdraw(mut self, id: u16, options: bool) -> Self {
        let mut b = BytesMut::new();
        b.put_u16(id);
        b.put_u16(0);
        put_set(&mut self.sets, 2 + u16::from(options), &b);
        self
    }

    /// A data set of records of `t` (no padding).
    pub fn data(mut self, t: &Template, records: &[Vec<Value>]) -> Self {
        let mut b = BytesMut::new();
        for r in records {
            put_record(&mut b, t, r, true);
        }
        put_set(&mut self.sets, t.id, &b);
        self
    }

    /// Any set, as given.
    pub fn raw_set(mut self, id: u16, body: &[u8]) -> Self {
        put_set(&mut self.sets, id, body);
        self
    }

    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(16 + self.sets.len());
        out.put_u16(ie::version::IPFIX);
        let len = (16 + self.sets.len()).min(65535) as u16;
        out.put_u16(self.length.unwrap_or(len));
        out.put_u32(self.export_secs);
        out.put_u32(self.sequence);
        out.put_u32(self.domain);
        out.put_slice(&self.sets);
        out
    }
}

/// A NetFlow v5 datagram.
#[derive(Debug, Clone, Default)]
pub struct V5Message {
    pub uptime_ms: u32,
    pub export_ms: u64,
    pub sequence: u32,
    pub engine_type: u8,
    pub engine_id: u8,
    /// Mode in the top 2 bits, interval in the low 14.
    pub sampling_interval: u16,
    /// The header's count; by default the records written.
    pub count: Option<u16>,
    records: BytesMut,
    n: u16,
}

impl V5Message {
    pub fn new(export_ms: u64, uptime_ms: u32) -> V5Message {
        V5Message {
            export_ms,
            uptime_ms,
            ..V5Message::default()
        }
    }

    pub fn sequence(mut self, s: u32) -> Self {
        self.sequence = s;
        self
    }

    pub fn engine(mut self, engine_type: u8, engine_id: u8) -> Self {
        self.engine_type = engine_type;
        self.engine_id = engine_id;
        self
    }

    pub fn sampling_interval(mut self, s: u16) -> Self {
        self.sampling_interval = s;
        self
    }

    /// A 48-octet record for `flow` (IPv4 only: other addresses are written as 0.0.0.0).
    pub fn flow(mut self, f: &Flow) -> Self {
        let b = &mut self.records;
        for a in [f.src, f.dst] {
            match a {
                IpAddr::V4(a) => b.put_slice(&a.octets()),
                IpAddr::V6(_) => b.put_u32(0),
            }
        }
        b.put_u32(0); // next hop
        b.put_u16(f.input as u16);
        b.put_u16(f.output as u16);
        b.put_u32(f.packets as u32);
        b.put_u32(f.bytes as u32);
        let up = |ms: Option<u64>| {
            time_value(
                ie::FLOW_START_SYS_UP_TIME,
                ms.unwrap_or(0),
                self.export_ms,
                Some(self.uptime_ms),
            ) as u32
        };
        b.put_u32(up(f.start_ms));
        b.put_u32(up(f.end_ms));
        b.put_u16(f.src_port);
        b.put_u16(f.dst_port);
        b.put_u8(0);
        b.put_u8(f.tcp_flags);
        b.put_u8(f.proto);
        b.put_u8(0); // tos
        b.put_u32(0); // AS numbers
        b.put_u32(0); // masks, pad
        self.n = self.n.saturating_add(1);
        self
    }

    pub fn encode(&self) -> BytesMut {
        let mut out = BytesMut::with_capacity(24 + self.records.len());
        out.put_u16(ie::version::V5);
        out.put_u16(self.count.unwrap_or(self.n));
        out.put_u32(self.uptime_ms);
        out.put_u32((self.export_ms / 1000) as u32);
        out.put_u32(((self.export_ms % 1000) * 1_000_000) as u32);
        out.put_u32(self.sequence);
        out.put_u8(self.engine_type);
        out.put_u8(self.engine_id);
        out.put_u16(self.sampling_interval);
        out.put_slice(&self.records);
        out
    }
}
