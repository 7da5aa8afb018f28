//! One sampled frame → the few fields the aggregator keys on.
//!
//! Frames come from the packet socket cut to the probe's snap length (`probe::sampler::SNAP_LEN`) or an sFlow header record's, so lengths are read
//! from the IP header, never from the capture. Parsing is lax (`etherparse::LaxSlicedPacket`): a
//! truncated datagram still gives its addresses, protocol and, when they were captured, its ports.
//! Anything that is not IPv4 or IPv6 (ARP, LLDP, garbage) gives `None`. Never panics, whatever the
//! bytes (a property test feeds it arbitrary input).
//!
//! What a flood is made of (Ethernet, at most one VLAN tag, IPv4 or IPv6 without extension headers,
//! carrying TCP, UDP, ICMP or GRE, lengths that agree) is read first by [`common`], a dozen fixed
//! offsets: etherparse's general walk was a seventh of a collector's work per sFlow datagram
//! (`benches/ingest.rs`). Everything else, and every frame whose header fields disagree with its
//! length, goes to etherparse. A property test checks that both give the same answer wherever the
//! short path answers.

use std::net::IpAddr;

use etherparse::{Ipv6ExtensionSlice, LaxNetSlice, LaxSlicedPacket};

/// IP protocol numbers the parser reads ports or flags for.
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// What the aggregator needs from one sampled packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketInfo {
    pub src: IpAddr,
    pub dst: IpAddr,
    /// The upper-layer protocol (after IPv6 extension headers).
    pub proto: u8,
    /// TCP or UDP ports, when the transport header was captured (never for non-first fragments).
    pub sport: Option<u16>,
    pub dport: Option<u16>,
    /// The TCP flags byte, for TCP only.
    pub tcp_flags: Option<u8>,
    /// A non-first fragment: no transport header.
    pub fragment: bool,
    /// Bytes on the wire as the interface counters see them: link header plus the IP datagram, as
    /// the IP header gives its length (the capture itself is cut short).
    pub wire_len: u32,
}

/// Parses an Ethernet frame (optionally VLAN-tagged). `None` when it carries no IP packet.
pub fn parse(frame: &[u8]) -> Option<PacketInfo> {
    common(frame).or_else(|| lax(frame))
}

/// Protocols [`common`] reads: no extension header can follow them.
fn common_proto(proto: u8) -> bool {
    matches!(proto, 1 | PROTO_TCP | PROTO_UDP | 47 | 58)
}

/// The common frames at fixed offsets; `None` for anything else (which [`lax`] then reads).
fn common(frame: &[u8]) -> Option<PacketInfo> {
    let be16 = |at: usize| -> Option<u16> {
        Some(u16::from_be_bytes([*frame.get(at)?, *frame.get(at + 1)?]))
    };
    let (ip_start, ethertype) = match be16(12)? {
        0x8100 => (18, be16(16)?),
        t => (14, t),
    };
    let ip = frame.get(ip_start..)?;
    let (src, dst, proto, fragment, header, len) = match (ethertype, ip.first()? >> 4) {
        (0x0800, 4) => {
            let h = ip.get(..20)?;
            let header = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if header < 20 || total < header || ip.len() < header {
                return None;
            }
            let fragment = u16::from_be_bytes([h[6], h[7]]) & 0x1fff != 0;
            let src: [u8; 4] = h[12..16].try_into().ok()?;
            let dst: [u8; 4] = h[16..20].try_into().ok()?;
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                h[9],
                fragment,
                header,
                total,
            )
        }
        (0x86dd, 6) => {
            let h = ip.get(..40)?;
            let payload = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if payload == 0 {
                return None;
            }
            let src: [u8; 16] = h[8..24].try_into().ok()?;
            let dst: [u8; 16] = h[24..40].try_into().ok()?;
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                h[6],
                false,
                40,
                40 + payload,
            )
        }
        _ => return None,
    };
    if !common_proto(proto) {
        return None;
    }
    // What the IP header says the datagram holds, cut to what was captured.
    let transport = ip.get(header..len.min(ip.len())).unwrap_or_default();
    Some(packet_info(
        (src, dst, proto, fragment),
        ip_start + len,
        transport,
    ))
}

/// Any frame, by etherparse's lax walk (VLAN stacks, extension headers, lying lengths).
fn lax(frame: &[u8]) -> Option<PacketInfo> {
    let packet = LaxSlicedPacket::from_ethernet(frame).ok()?;
    let (src, dst, ip_start, ip_len, payload) = match packet.net.as_ref()? {
        LaxNetSlice::Ipv4(ip) => {
            let h = ip.header();
            let fragment = h.fragments_offset().value() != 0;
            let start = offset_in(frame, h.slice())?;
            // A total length shorter than the header is a lie: count what was captured.
            let len = match usize::from(h.total_len()) {
                n if n >= h.slice().len() => n,
                _ => frame.len() - start,
            };
            let payload = ip.payload();
            (
                IpAddr::V4(h.source_addr()),
                IpAddr::V4(h.destination_addr()),
                start,
                len,
                (payload.ip_number.0, fragment, payload.payload),
            )
        }
        LaxNetSlice::Ipv6(ip) => {
            let h = ip.header();
            let fragment = ip.extensions().clone().into_iter().any(
                |e| matches!(e, Ipv6ExtensionSlice::Fragment(f) if f.fragment_offset().value() != 0),
            );
            let start = offset_in(frame, h.slice())?;
            // Payload length 0 is a jumbogram (RFC 2675) or a lie: count what was captured.
            let len = match usize::from(h.payload_length()) {
                0 => frame.len() - start,
                n => n + h.slice().len(),
            };
            let payload = ip.payload();
            (
                IpAddr::V6(h.source_addr()),
                IpAddr::V6(h.destination_addr()),
                start,
                len,
                (payload.ip_number.0, fragment, payload.payload),
            )
        }
        LaxNetSlice::Arp(_) => return None,
    };
    let (proto, fragment, transport) = payload;
    Some(packet_info(
        (src, dst, proto, fragment),
        ip_start + ip_len,
        transport,
    ))
}

/// What both paths read: the addresses, protocol and fragment flag, the length on the wire, and
/// from the transport header (when captured, and not a later fragment's) TCP's or UDP's ports and
/// TCP's flags.
fn packet_info(
    (src, dst, proto, fragment): (IpAddr, IpAddr, u8, bool),
    wire_len: usize,
    transport: &[u8],
) -> PacketInfo {
    let mut info = PacketInfo {
        src,
        dst,
        proto,
        sport: None,
        dport: None,
        tcp_flags: None,
        fragment,
        wire_len: u32::try_from(wire_len).unwrap_or(u32::MAX),
    };
    if !fragment {
        read_ports(&mut info, transport);
    }
    info
}

/// TCP's or UDP's ports, and TCP's flags, from the start of the transport header.
fn read_ports(info: &mut PacketInfo, header: &[u8]) {
    if !matches!(info.proto, PROTO_TCP | PROTO_UDP) {
        return;
    }
    // Both headers start with the two ports; TCP's flags are octet 13 (RFC 9293 §3.1).
    if let Some(ports) = header.get(..4) {
        info.sport = Some(u16::from_be_bytes([ports[0], ports[1]]));
        info.dport = Some(u16::from_be_bytes([ports[2], ports[3]]));
    }
    if info.proto == PROTO_TCP {
        info.tcp_flags = header.get(13).copied();
    }
}

/// Where `part` (a sub-slice of `whole`) starts in `whole`.
fn offset_in(whole: &[u8], part: &[u8]) -> Option<usize> {
    let start = (part.as_ptr() as usize).checked_sub(whole.as_ptr() as usize)?;
    (start + part.len() <= whole.len()).then_some(start)
}

#[cfg(test)]
mod tests {
    use etherparse::{IpNumber, PacketBuilder, TcpHeader, VlanId};
    use proptest::prelude::*;

    use super::*;

    const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];
    const SRC4: [u8; 4] = [198, 51, 100, 7];
    const DST4: [u8; 4] = [192, 0, 2, 2];

    fn udp4(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(SRC4, DST4, 64)
            .udp(sport, dport);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    }

    #[test]
    fn udp_over_ipv4_gives_ports_and_the_ip_length_when_the_capture_is_cut() {
        let frame = udp4(123, 4444, &[0; 468]);
        assert_eq!(frame.len(), 14 + 20 + 8 + 468);
        let info = parse(&frame[..128]).unwrap();
        assert_eq!(
            info,
            PacketInfo {
                src: "198.51.100.7".parse().unwrap(),
                dst: "192.0.2.2".parse().unwrap(),
                proto: 17,
                sport: Some(123),
                dport: Some(4444),
                tcp_flags: None,
                fragment: false,
                wire_len: 510,
            }
        );
    }

    #[test]
    fn tcp_syn_over_vlan_gives_the_flags() {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(VlanId::try_new(42).unwrap())
            .ipv4(SRC4, DST4, 64)
            .tcp(40000, 80, 1, 65535)
            .syn();
        let mut frame = Vec::new();
        b.write(&mut frame, &[]).unwrap();
        let info = parse(&frame).unwrap();
        assert_eq!(info.proto, 6);
        assert_eq!((info.sport, info.dport), (Some(40000), Some(80)));
        assert_eq!(info.tcp_flags, Some(0x02));
        assert_eq!(info.wire_len as usize, 18 + 20 + TcpHeader::MIN_LEN);
    }

    #[test]
    fn udp_over_qinq_gives_the_ports() {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .double_vlan(VlanId::try_new(100).unwrap(), VlanId::try_new(42).unwrap())
            .ipv4(SRC4, DST4, 64)
            .udp(123, 4444);
        let mut frame = Vec::new();
        b.write(&mut frame, &[0; 100]).unwrap();
        let info = parse(&frame).unwrap();
        assert_eq!(
            (info.proto, info.sport, info.dport),
            (17, Some(123), Some(4444))
        );
        // Two tags of 4 bytes each in front of the IPv4 packet.
        assert_eq!(info.wire_len as usize, 14 + 8 + 20 + 8 + 100);
    }

    #[test]
    fn ipv6_udp_and_icmpv6() {
        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut dst = src;
        dst[15] = 2;
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(src, dst, 64)
            .udp(53, 5000);
        let mut frame = Vec::new();
        b.write(&mut frame, &[0; 1000]).unwrap();
        let info = parse(&frame[..128]).unwrap();
        assert_eq!(info.dst, "2001:db8::2".parse::<IpAddr>().unwrap());
        assert_eq!(
            (info.proto, info.sport, info.dport),
            (17, Some(53), Some(5000))
        );
        assert_eq!(info.wire_len, 14 + 40 + 8 + 1000);

        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(src, dst, 64)
            .icmpv6_echo_request(1, 1);
        let mut frame = Vec::new();
        b.write(&mut frame, &[0; 8]).unwrap();
        let info = parse(&frame).unwrap();
        assert_eq!((info.proto, info.sport, info.tcp_flags), (58, None, None));
    }

    #[test]
    fn icmp_and_gre_have_no_ports() {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv4(SRC4, DST4, 64)
            .icmpv4_echo_request(1, 1);
        let mut frame = Vec::new();
        b.write(&mut frame, &[0; 56]).unwrap();
        let info = parse(&frame).unwrap();
        assert_eq!((info.proto, info.sport, info.dport), (1, None, None));

        let b = PacketBuilder::ethernet2(MAC_A, MAC_B).ipv4(SRC4, DST4, 64);
        let mut frame = Vec::new();
        b.write(&mut frame, IpNumber::GRE, &[0, 0, 0x08, 0x00, 1, 2, 3, 4])
            .unwrap();
        let info = parse(&frame).unwrap();
        assert_eq!((info.proto, info.sport, info.fragment), (47, None, false));
        assert_eq!(info.wire_len, 14 + 20 + 8);
    }

    #[test]
    fn non_first_ipv4_fragment_has_no_ports_but_a_first_fragment_does() {
        let mut frame = udp4(123, 4444, &[0; 100]);
        // Flags and fragment offset are octets 6-7 of the IPv4 header: offset 185 (×8 octets).
        frame[14 + 6..14 + 8].copy_from_slice(&185u16.to_be_bytes());
        let info = parse(&frame).unwrap();
        assert!(info.fragment);
        assert_eq!((info.proto, info.sport, info.dport), (17, None, None));

        let mut frame = udp4(123, 4444, &[0; 100]);
        frame[14 + 6] = 0x20; // more fragments, offset 0
        let info = parse(&frame).unwrap();
        assert!(!info.fragment);
        assert_eq!((info.sport, info.dport), (Some(123), Some(4444)));
    }

    #[test]
    fn ipv6_fragments_first_with_ports_then_without() {
        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let frag = |offset_flags: [u8; 2]| {
            // Fragment header (RFC 8200 §4.5): next header UDP, offset and M flag, identification;
            // then what follows it: a UDP header 53 → 4444 in the first fragment.
            let mut ext = vec![17, 0, offset_flags[0], offset_flags[1], 0, 0, 0, 1];
            ext.extend_from_slice(&[0, 53, 0x11, 0x5c, 0, 16, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
            let mut frame = Vec::new();
            PacketBuilder::ethernet2(MAC_A, MAC_B)
                .ipv6(src, src, 64)
                .write(&mut frame, IpNumber::IPV6_FRAGMENTATION_HEADER, &ext)
                .unwrap();
            parse(&frame).unwrap()
        };
        // Offset 0, more fragments: the transport header is there.
        let first = frag([0x00, 0x01]);
        assert!(!first.fragment);
        assert_eq!(
            (first.proto, first.sport, first.dport),
            (17, Some(53), Some(4444))
        );
        // Offset 160 (×8 octets): no transport header, whatever the bytes look like.
        let later = frag([0x05, 0x01]);
        assert!(later.fragment);
        assert_eq!((later.proto, later.sport, later.dport), (17, None, None));
        assert_eq!(later.wire_len, 14 + 40 + 8 + 16);
    }

    #[test]
    fn arp_runts_and_lying_lengths() {
        let mut arp = vec![0xff; 12];
        arp.extend_from_slice(&[0x08, 0x06]);
        arp.extend_from_slice(&[0; 28]);
        assert_eq!(parse(&arp), None);
        assert_eq!(parse(&[]), None);
        assert_eq!(parse(&[0; 13]), None);
        let mut frame = udp4(1, 2, &[]);
        frame[14 + 2..14 + 4].copy_from_slice(&0u16.to_be_bytes()); // total length 0
        if let Some(info) = parse(&frame) {
            assert_eq!(info.wire_len as usize, frame.len());
        }
    }

    /// Frames near the common shapes: any ethertype or VLAN tag, IP versions right or wrong, any
    /// header length, total length, fragment field and protocol, cut anywhere.
    fn near_common() -> impl Strategy<Value = Vec<u8>> {
        (
            prop_oneof![
                Just(None),
                Just(Some(0x8100u16)),
                Just(Some(0x88a8)),
                any::<u16>().prop_map(Some)
            ],
            prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), any::<u16>()],
            prop_oneof![Just(4u8), Just(6), any::<u8>()],
            prop_oneof![Just(5u8), 0u8..16],
            prop_oneof![4 => prop::sample::select(vec![1u8, 6, 17, 47, 58]), 1 => 0u8..64, 1 => Just(51u8), 1 => any::<u8>()],
            prop_oneof![
                prop::sample::select(vec![0u16, 0x4000, 0x2000, 0x1000, 0x0001, 0x6000, 0x9fff]),
                any::<u16>()
            ],
            prop_oneof![Just(0u16), 0u16..80, 0u16..300],
            proptest::collection::vec(any::<u8>(), 0..200),
            any::<prop::sample::Index>(),
        )
            .prop_map(
                |(tag, ethertype, version, ihl, proto, frag, len, body, cut)| {
                    let mut f = vec![2u8; 12];
                    if let Some(t) = tag {
                        f.extend_from_slice(&t.to_be_bytes());
                        f.extend_from_slice(&[0, 42]);
                    }
                    f.extend_from_slice(&ethertype.to_be_bytes());
                    let mut ip = body;
                    ip.resize(ip.len().max(48), 7);
                    if version == 6 {
                        ip[0] = 0x60;
                        ip[4..6].copy_from_slice(&len.to_be_bytes());
                        ip[6] = proto;
                    } else {
                        ip[0] = (version << 4) | ihl;
                        ip[2..4].copy_from_slice(&len.to_be_bytes());
                        ip[6..8].copy_from_slice(&frag.to_be_bytes());
                        ip[9] = proto;
                    }
                    f.extend_from_slice(&ip);
                    let keep = cut.index(f.len() + 1);
                    f.truncate(keep.max(f.len() / 4));
                    f
                },
            )
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]
        #[test]
        fn the_short_path_answers_as_etherparse_does(frame in near_common()) {
            if let Some(short) = common(&frame) {
                prop_assert_eq!(Some(short), lax(&frame));
            }
        }
    }

    #[test]
    fn the_short_path_takes_the_flood_shapes() {
        let b = PacketBuilder::ethernet2(MAC_A, MAC_B)
            .single_vlan(VlanId::try_new(42).unwrap())
            .ipv4(SRC4, DST4, 64)
            .tcp(40000, 80, 1, 65535)
            .syn();
        let mut tcp = Vec::new();
        b.write(&mut tcp, &[]).unwrap();
        let src6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let mut udp6 = Vec::new();
        PacketBuilder::ethernet2(MAC_A, MAC_B)
            .ipv6(src6, src6, 64)
            .udp(53, 5000)
            .write(&mut udp6, &[0; 1000])
            .unwrap();
        for frame in [
            udp4(123, 4444, &[0; 468])[..128].to_vec(),
            tcp,
            udp6[..128].to_vec(),
        ] {
            assert_short_path(common(&frame), lax(&frame));
        }
    }

    fn assert_short_path(short: Option<PacketInfo>, lax: Option<PacketInfo>) {
        assert!(short.is_some(), "the short path takes it");
        assert_eq!(short, lax);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn arbitrary_ip_after_an_ethernet_header_never_panics(
            ethertype in prop_oneof![Just(0x0800u16), Just(0x86dd), Just(0x8100), Just(0x88a8)],
            mut rest in proptest::collection::vec(any::<u8>(), 1..160),
        ) {
            // Give the IP header a plausible version so parsing goes deep.
            match ethertype {
                0x0800 => rest[0] = 0x40 | (rest[0] & 0x0f),
                0x86dd => rest[0] = 0x60 | (rest[0] & 0x0f),
                _ => {}
            }
            let mut frame = vec![0u8; 12];
            frame.extend_from_slice(&ethertype.to_be_bytes());
            frame.extend_from_slice(&rest);
            if let Some(info) = parse(&frame) {
                prop_assert!(info.sport.is_none() || !info.fragment);
            }
        }
    }
}
