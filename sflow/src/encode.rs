//! The encoder: wire bytes for a [`Datagram`], the mirror of [`crate::decode`], for tests and for
//! synthetic exporters; a [`DatagramBuilder`]; and Ethernet frame headers to put in raw-header
//! records ([`ethernet_udp_frame`], [`ethernet_tcp_frame`], [`ethernet_icmp_frame`], [`raw_header`]).
//!
//! `decode(encode(d)) == d` for every datagram whose values fit their wire form: version 5, compact
//! samples with `source_id_type <= 255` and `source_id_index <= 0xff_ffff` (the compact
//! `sflow_data_source` has no room for more; larger values are masked), and `Unknown` samples and
//! records whose format is not one this crate decodes. Expanded samples carry every `u32`.
//!
//! The encoder writes what it is given, valid or not (a version other than 5, any format word), so
//! tests can build malformed datagrams with it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};
use etherparse::{
    EtherType, Ethernet2Header, IcmpEchoHeader, Icmpv4Header, Icmpv4Type, Icmpv6Header, Icmpv6Type,
    IpNumber, Ipv4Header, Ipv6Header, TcpHeader, UdpHeader,
};

use crate::counters::CounterRecord;
use crate::datagram::Datagram;
use crate::flow::{FlowRecord, RawHeader};
use crate::formats::{self, address, as_path_segment, header_protocol};
use crate::sample::{CounterSample, FlowSample, Sample, unfold_interface};
use crate::xdr::pad;

/// Encodes a datagram.
pub fn encode(d: &Datagram) -> BytesMut {
    let mut out = BytesMut::with_capacity(encoded_len_hint(d));
    encode_into(d, &mut out);
    out
}

/// Encodes a datagram at the end of `out`.
pub fn encode_into(d: &Datagram, out: &mut BytesMut) {
    out.put_u32(d.version);
    put_address(out, d.agent);
    out.put_u32(d.sub_agent);
    out.put_u32(d.sequence);
    out.put_u32(d.uptime_ms);
    put_count(out, d.samples.len());
    for s in &d.samples {
        put_sample(out, s);
    }
}

/// A capacity that holds most datagrams without growing.
fn encoded_len_hint(d: &Datagram) -> usize {
    let per_sample: usize = d
        .samples
        .iter()
        .map(|s| match s {
            Sample::Flow(f) => f.records.len().saturating_mul(160).saturating_add(64),
            Sample::Counters(c) => c.records.len().saturating_mul(100).saturating_add(32),
            Sample::Unknown { data, .. } => data.len().saturating_add(12),
        })
        .fold(0, usize::saturating_add);
    per_sample.saturating_add(40).min(1 << 16)
}

/// Writes one sample: its format word, its length and its body.
pub fn put_sample(out: &mut BytesMut, s: &Sample) {
    out.put_u32(s.format());
    with_length(out, |out| match s {
        Sample::Flow(f) => put_flow_sample_body(out, f),
        Sample::Counters(c) => put_counter_sample_body(out, c),
        Sample::Unknown { data, .. } => out.put_slice(data),
    });
}

fn put_source_id(out: &mut BytesMut, expanded: bool, source_type: u32, index: u32) {
    if expanded {
        out.put_u32(source_type);
        out.put_u32(index);
    } else {
        out.put_u32(((source_type & 0xff) << 24) | (index & 0x00ff_ffff));
    }
}

fn put_flow_sample_body(out: &mut BytesMut, f: &FlowSample) {
    out.put_u32(f.sequence);
    put_source_id(out, f.expanded, f.source_id_type, f.source_id_index);
    out.put_u32(f.sampling_rate);
    out.put_u32(f.sample_pool);
    out.put_u32(f.drops);
    for interface in [f.input, f.output] {
        if f.expanded {
            let (format, value) = unfold_interface(interface);
            out.put_u32(format);
            out.put_u32(value);
        } else {
            out.put_u32(interface);
        }
    }
    put_count(out, f.records.len());
    for r in &f.records {
        put_flow_record(out, r);
    }
}

fn put_counter_sample_body(out: &mut BytesMut, c: &CounterSample) {
    out.put_u32(c.sequence);
    put_source_id(out, c.expanded, c.source_id_type, c.source_id_index);
    put_count(out, c.records.len());
    for r in &c.records {
        put_counter_record(out, r);
    }
}

/// Writes one flow record: its format word, its length and its body.
pub fn put_flow_record(out: &mut BytesMut, r: &FlowRecord) {
    out.put_u32(r.format());
    with_length(out, |out| match r {
        FlowRecord::RawHeader(h) => {
            out.put_u32(h.protocol);
            out.put_u32(h.frame_length);
            out.put_u32(h.stripped);
            put_opaque(out, &h.header);
        }
        FlowRecord::Ethernet(e) => {
            out.put_u32(e.length);
            put_mac(out, e.src_mac);
            put_mac(out, e.dst_mac);
            out.put_u32(e.eth_type);
        }
        FlowRecord::Ipv4(ip) => {
            out.put_u32(ip.length);
            out.put_u32(ip.protocol);
            out.put_slice(&ip.src.octets());
            out.put_slice(&ip.dst.octets());
            out.put_u32(ip.src_port);
            out.put_u32(ip.dst_port);
            out.put_u32(ip.tcp_flags);
            out.put_u32(ip.tos);
        }
        FlowRecord::Ipv6(ip) => {
            out.put_u32(ip.length);
            out.put_u32(ip.protocol);
            out.put_slice(&ip.src.octets());
            out.put_slice(&ip.dst.octets());
            out.put_u32(ip.src_port);
            out.put_u32(ip.dst_port);
            out.put_u32(ip.tcp_flags);
            out.put_u32(ip.priority);
        }
        FlowRecord::ExtendedSwitch(s) => {
            out.put_u32(s.src_vlan);
            out.put_u32(s.src_priority);
            out.put_u32(s.dst_vlan);
            out.put_u32(s.dst_priority);
        }
        FlowRecord::ExtendedRouter(rt) => {
            put_address(out, rt.next_hop);
            out.put_u32(rt.src_mask_len);
            out.put_u32(rt.dst_mask_len);
        }
        FlowRecord::ExtendedGateway(g) => {
            put_address(out, g.next_hop);
            out.put_u32(g.as_);
            out.put_u32(g.src_as);
            out.put_u32(g.src_peer_as);
            put_count(out, g.as_path.len());
            for segment in &g.as_path {
                out.put_u32(as_path_segment::SEQUENCE);
                put_count(out, segment.len());
                for asn in segment {
                    out.put_u32(*asn);
                }
            }
            put_count(out, g.communities.len());
            for c in &g.communities {
                out.put_u32(*c);
            }
            out.put_u32(g.local_pref);
        }
        FlowRecord::Unknown { data, .. } => out.put_slice(data),
    });
}

/// Writes one counter record: its format word, its length and its body.
pub fn put_counter_record(out: &mut BytesMut, r: &CounterRecord) {
    out.put_u32(r.format());
    with_length(out, |out| match r {
        CounterRecord::Generic(g) => {
            out.put_u32(g.if_index);
            out.put_u32(g.if_type);
            out.put_u64(g.if_speed);
            out.put_u32(g.if_direction);
            out.put_u32(g.if_status);
            out.put_u64(g.if_in_octets);
            out.put_u32(g.if_in_ucast_pkts);
            out.put_u32(g.if_in_multicast_pkts);
            out.put_u32(g.if_in_broadcast_pkts);
            out.put_u32(g.if_in_discards);
            out.put_u32(g.if_in_errors);
            out.put_u32(g.if_in_unknown_protos);
            out.put_u64(g.if_out_octets);
            out.put_u32(g.if_out_ucast_pkts);
            out.put_u32(g.if_out_multicast_pkts);
            out.put_u32(g.if_out_broadcast_pkts);
            out.put_u32(g.if_out_discards);
            out.put_u32(g.if_out_errors);
            out.put_u32(g.if_promiscuous_mode);
        }
        CounterRecord::Ethernet(e) => {
            for v in [
                e.dot3_stats_alignment_errors,
                e.dot3_stats_fcs_errors,
                e.dot3_stats_single_collision_frames,
                e.dot3_stats_multiple_collision_frames,
                e.dot3_stats_sqe_test_errors,
                e.dot3_stats_deferred_transmissions,
                e.dot3_stats_late_collisions,
                e.dot3_stats_excessive_collisions,
                e.dot3_stats_internal_mac_transmit_errors,
                e.dot3_stats_carrier_sense_errors,
                e.dot3_stats_frame_too_longs,
                e.dot3_stats_internal_mac_receive_errors,
                e.dot3_stats_symbol_errors,
            ] {
                out.put_u32(v);
            }
        }
        CounterRecord::Unknown { data, .. } => out.put_slice(data),
    });
}

/// A length or count word: lengths past `u32::MAX` cannot be on the wire, and are written as
/// `u32::MAX` (a datagram that large does not decode anyway).
fn put_count(out: &mut BytesMut, n: usize) {
    out.put_u32(u32::try_from(n).unwrap_or(u32::MAX));
}

/// Writes a length word, the body `f` writes, and the body's XDR padding; the length excludes the
/// padding.
fn with_length(out: &mut BytesMut, f: impl FnOnce(&mut BytesMut)) {
    let at = out.len();
    out.put_u32(0);
    f(out);
    let len = out.len().saturating_sub(at + 4);
    out.put_bytes(0, pad(len));
    let word = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&word);
    }
}

fn put_opaque(out: &mut BytesMut, data: &[u8]) {
    put_count(out, data.len());
    out.put_slice(data);
    out.put_bytes(0, pad(data.len()));
}

fn put_mac(out: &mut BytesMut, mac: [u8; 6]) {
    out.put_slice(&mac);
    out.put_bytes(0, 2);
}

fn put_address(out: &mut BytesMut, a: IpAddr) {
    match a {
        IpAddr::V4(a) => {
            out.put_u32(address::IPV4);
            out.put_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            out.put_u32(address::IPV6);
            out.put_slice(&a.octets());
        }
    }
}

/// Builds a [`Datagram`] sample by sample, for tests and synthetic exporters.
///
/// ```
/// use deflect_sflow::encode::{DatagramBuilder, ethernet_udp_frame, raw_header};
/// use deflect_sflow::{FlowRecord, FlowSample};
///
/// let frame = ethernet_udp_frame("192.0.2.1".parse().unwrap(), "203.0.113.7".parse().unwrap(), 123, 40000, 468);
/// let sample = FlowSample {
///     sequence: 1,
///     sampling_rate: 1000,
///     records: vec![FlowRecord::RawHeader(raw_header(&frame))],
///     ..FlowSample::default()
/// };
/// let bytes = DatagramBuilder::new("198.51.100.1".parse().unwrap()).sequence(7).flow(sample).encode();
/// let d = deflect_sflow::decode(bytes.freeze()).unwrap();
/// assert_eq!(d.sequence, 7);
/// ```
#[derive(Debug, Clone)]
pub struct DatagramBuilder {
    datagram: Datagram,
}

impl DatagramBuilder {
    /// A version 5 datagram from `agent`, sub-agent 0, sequence 0, uptime 0, no samples.
    pub fn new(agent: IpAddr) -> Self {
        DatagramBuilder {
            datagram: Datagram {
                version: formats::VERSION_5,
                agent,
                sub_agent: 0,
                sequence: 0,
                uptime_ms: 0,
                samples: Vec::new(),
            },
        }
    }

    pub fn sub_agent(mut self, sub_agent: u32) -> Self {
        self.datagram.sub_agent = sub_agent;
        self
    }

    pub fn sequence(mut self, sequence: u32) -> Self {
        self.datagram.sequence = sequence;
        self
    }

    pub fn uptime_ms(mut self, uptime_ms: u32) -> Self {
        self.datagram.uptime_ms = uptime_ms;
        self
    }

    /// Any version word: only for building datagrams the decoder must refuse.
    pub fn version(mut self, version: u32) -> Self {
        self.datagram.version = version;
        self
    }

    pub fn sample(mut self, sample: Sample) -> Self {
        self.datagram.samples.push(sample);
        self
    }

    pub fn flow(self, sample: FlowSample) -> Self {
        self.sample(Sample::Flow(sample))
    }

    pub fn counters(self, sample: CounterSample) -> Self {
        self.sample(Sample::Counters(sample))
    }

    /// A sample of any format word with an opaque body.
    pub fn unknown(self, format: u32, data: impl Into<Bytes>) -> Self {
        self.sample(Sample::Unknown {
            format,
            data: data.into(),
        })
    }

    pub fn build(self) -> Datagram {
        self.datagram
    }

    pub fn encode(&self) -> BytesMut {
        encode(&self.datagram)
    }
}

/// The number of frame octets a switch typically copies into a raw-header record.
pub const MAX_HEADER_LEN: usize = 128;

/// The source MAC address of generated frames (locally administered).
pub const SRC_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x01];
/// The destination MAC address of generated frames (locally administered).
pub const DST_MAC: [u8; 6] = [0x02, 0x00, 0x00, 0x00, 0x00, 0x02];

const ETHERNET_LEN: usize = 14;
const FCS_LEN: usize = 4;
/// The smallest Ethernet frame on the wire, FCS included.
const MIN_FRAME_LEN: usize = 64;

/// The first [`MAX_HEADER_LEN`] octets of an Ethernet + IPv4/IPv6 + UDP frame carrying
/// `payload_len` octets (zeros), with every length field right for the whole frame; checksums are
/// left at zero. Addresses of mixed families are both written as IPv6 (IPv4 as `::ffff:a.b.c.d`).
/// A payload too large for one IP packet is cut to the largest that fits.
pub fn ethernet_udp_frame(
    src: IpAddr,
    dst: IpAddr,
    sport: u16,
    dport: u16,
    payload_len: usize,
) -> Vec<u8> {
    let ip = IpPair::new(src, dst);
    let payload_len = payload_len.min(ip.max_payload() - UdpHeader::LEN);
    let udp = UdpHeader {
        source_port: sport,
        destination_port: dport,
        length: u16::try_from(UdpHeader::LEN + payload_len).unwrap_or(u16::MAX),
        checksum: 0,
    };
    ip.frame(IpNumber::UDP, &udp.to_bytes(), payload_len)
}

/// The first [`MAX_HEADER_LEN`] octets of an Ethernet + IPv4/IPv6 + TCP segment without payload,
/// with the TCP flags byte `flags` (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20,
/// ECE 0x40, CWR 0x80).
pub fn ethernet_tcp_frame(src: IpAddr, dst: IpAddr, sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let ip = IpPair::new(src, dst);
    let mut tcp = TcpHeader::new(sport, dport, 1, 64240);
    tcp.fin = flags & 0x01 != 0;
    tcp.syn = flags & 0x02 != 0;
    tcp.rst = flags & 0x04 != 0;
    tcp.psh = flags & 0x08 != 0;
    tcp.ack = flags & 0x10 != 0;
    tcp.urg = flags & 0x20 != 0;
    tcp.ece = flags & 0x40 != 0;
    tcp.cwr = flags & 0x80 != 0;
    if tcp.ack {
        tcp.acknowledgment_number = 1;
    }
    ip.frame(IpNumber::TCP, &tcp.to_bytes(), 0)
}

/// An Ethernet + IPv4/IPv6 + ICMP echo request with 56 octets of payload, like `ping` sends.
pub fn ethernet_icmp_frame(src: IpAddr, dst: IpAddr) -> Vec<u8> {
    const PING_PAYLOAD: usize = 56;
    let ip = IpPair::new(src, dst);
    let echo = IcmpEchoHeader { id: 1, seq: 1 };
    match ip {
        IpPair::V4(..) => {
            let icmp = Icmpv4Header::new(Icmpv4Type::EchoRequest(echo));
            ip.frame(IpNumber::ICMP, &icmp.to_bytes(), PING_PAYLOAD)
        }
        IpPair::V6(..) => {
            let icmp = Icmpv6Header::new(Icmpv6Type::EchoRequest(echo));
            ip.frame(IpNumber::IPV6_ICMP, &icmp.to_bytes(), PING_PAYLOAD)
        }
    }
}

/// A raw-header record for an Ethernet frame (whole, or its first octets as the `ethernet_*_frame`
/// functions return them): protocol Ethernet, the first [`MAX_HEADER_LEN`] octets, and the frame's
/// length on the wire (from its IPv4 or IPv6 length field when there is one, FCS included, at least
/// 64) with the 4 FCS octets counted as stripped.
pub fn raw_header(frame: &[u8]) -> RawHeader {
    let header = frame.get(..MAX_HEADER_LEN).unwrap_or(frame);
    let frame_length = wire_length(frame)
        .unwrap_or(frame.len().saturating_add(FCS_LEN))
        .max(MIN_FRAME_LEN);
    RawHeader {
        protocol: header_protocol::ETHERNET_ISO88023,
        frame_length: u32::try_from(frame_length).unwrap_or(u32::MAX),
        stripped: FCS_LEN as u32,
        header: Bytes::copy_from_slice(header),
    }
}

/// The length on the wire (FCS included) of the Ethernet frame `frame` starts, read from its IP
/// header, behind up to two VLAN tags.
fn wire_length(frame: &[u8]) -> Option<usize> {
    let word = |at: usize| -> Option<usize> {
        let b = frame.get(at..at.checked_add(2)?)?;
        Some(usize::from(u16::from_be_bytes([*b.first()?, *b.get(1)?])))
    };
    let mut l3 = ETHERNET_LEN;
    let mut ether_type = word(12)?;
    for _ in 0..2 {
        if ether_type == 0x8100 || ether_type == 0x88a8 {
            ether_type = word(l3.checked_add(2)?)?;
            l3 = l3.checked_add(4)?;
        }
    }
    let ip_len = match ether_type {
        0x0800 => word(l3.checked_add(2)?)?,
        0x86dd => word(l3.checked_add(4)?)?.checked_add(Ipv6Header::LEN)?,
        _ => return None,
    };
    l3.checked_add(ip_len)?.checked_add(FCS_LEN)
}

/// Source and destination of one family.
#[derive(Debug, Clone, Copy)]
enum IpPair {
    V4(Ipv4Addr, Ipv4Addr),
    V6(Ipv6Addr, Ipv6Addr),
}

impl IpPair {
    fn new(src: IpAddr, dst: IpAddr) -> Self {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => IpPair::V4(s, d),
            (s, d) => IpPair::V6(v6(s), v6(d)),
        }
    }

    /// The largest transport segment (header and payload) the IP length field can describe.
    fn max_payload(self) -> usize {
        match self {
            IpPair::V4(..) => usize::from(u16::MAX) - Ipv4Header::MIN_LEN,
            IpPair::V6(..) => usize::from(u16::MAX),
        }
    }

    /// Ethernet, IP, the transport header `l4` and `payload_len` zeros, cut at `MAX_HEADER_LEN`.
    fn frame(self, protocol: IpNumber, l4: &[u8], payload_len: usize) -> Vec<u8> {
        let segment = l4.len().saturating_add(payload_len).min(self.max_payload());
        let segment16 = u16::try_from(segment).unwrap_or(u16::MAX);
        let mut out = Vec::with_capacity(MAX_HEADER_LEN);
        let ether_type = match self {
            IpPair::V4(..) => EtherType::IPV4,
            IpPair::V6(..) => EtherType::IPV6,
        };
        let eth = Ethernet2Header {
            source: SRC_MAC,
            destination: DST_MAC,
            ether_type,
        };
        out.extend_from_slice(&eth.to_bytes());
        match self {
            IpPair::V4(s, d) => {
                let mut ip = Ipv4Header {
                    total_len: segment16.saturating_add(Ipv4Header::MIN_LEN_U16),
                    time_to_live: 64,
                    protocol,
                    source: s.octets(),
                    destination: d.octets(),
                    ..Ipv4Header::default()
                };
                ip.header_checksum = ip.calc_header_checksum();
                out.extend_from_slice(&ip.to_bytes());
            }
            IpPair::V6(s, d) => {
                let ip = Ipv6Header {
                    payload_length: segment16,
                    next_header: protocol,
                    hop_limit: 64,
                    source: s.octets(),
                    destination: d.octets(),
                    ..Ipv6Header::default()
                };
                out.extend_from_slice(&ip.to_bytes());
            }
        }
        out.extend_from_slice(l4);
        let room = MAX_HEADER_LEN.saturating_sub(out.len());
        out.resize(out.len() + payload_len.min(room), 0);
        out.truncate(MAX_HEADER_LEN);
        out
    }
}

fn v6(a: IpAddr) -> Ipv6Addr {
    match a {
        IpAddr::V4(a) => a.to_ipv6_mapped(),
        IpAddr::V6(a) => a,
    }
}
