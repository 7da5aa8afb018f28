//! The frame helpers build headers that a packet parser (etherparse) reads back with the right
//! lengths, and raw-header records that carry the frame's wire length.

mod common;

use common::ip;
use deflect_sflow::encode::{
    DST_MAC, MAX_HEADER_LEN, SRC_MAC, ethernet_icmp_frame, ethernet_tcp_frame, ethernet_udp_frame,
    raw_header,
};
use etherparse::{LaxNetSlice, LaxSlicedPacket, LinkSlice, TransportSlice};

fn parse(frame: &[u8]) -> LaxSlicedPacket<'_> {
    LaxSlicedPacket::from_ethernet(frame).expect("parses")
}

#[test]
fn udp_over_ipv4_has_every_length_right() {
    for payload in [0usize, 1, 86, 87, 468, 1472, 65507] {
        let f = ethernet_udp_frame(ip("198.51.100.1"), ip("203.0.113.7"), 123, 40000, payload);
        assert_eq!(
            f.len(),
            (14 + 20 + 8 + payload).min(MAX_HEADER_LEN),
            "payload {payload}"
        );
        let p = parse(&f);
        assert!(matches!(p.link, Some(LinkSlice::Ethernet2(_))));
        let Some(LaxNetSlice::Ipv4(ipv4)) = &p.net else {
            panic!("not IPv4")
        };
        let h = ipv4.header();
        assert_eq!(usize::from(h.total_len()), 20 + 8 + payload);
        assert_eq!(h.source(), [198, 51, 100, 1]);
        assert_eq!(h.destination(), [203, 0, 113, 7]);
        assert_eq!(h.protocol(), etherparse::IpNumber::UDP);
        let Some(TransportSlice::Udp(udp)) = &p.transport else {
            panic!("not UDP")
        };
        assert_eq!((udp.source_port(), udp.destination_port()), (123, 40000));
        assert_eq!(usize::from(udp.length()), 8 + payload);
        assert_eq!(&f[0..6], &DST_MAC);
        assert_eq!(&f[6..12], &SRC_MAC);

        let r = raw_header(&f);
        assert_eq!(r.protocol, 1);
        assert_eq!(r.stripped, 4);
        assert_eq!(r.frame_length as usize, (14 + 20 + 8 + payload + 4).max(64));
        assert_eq!(&r.header[..], &f[..]);
    }
}

#[test]
fn udp_payload_too_large_for_ip_is_cut_to_fit() {
    let f = ethernet_udp_frame(ip("192.0.2.1"), ip("192.0.2.2"), 1, 2, usize::MAX);
    assert_eq!(raw_header(&f).frame_length, 14 + 65535 + 4);
    let f = ethernet_udp_frame(ip("2001:db8::1"), ip("2001:db8::2"), 1, 2, usize::MAX);
    assert_eq!(raw_header(&f).frame_length, 14 + 40 + 65535 + 4);
}

#[test]
fn udp_over_ipv6() {
    let f = ethernet_udp_frame(ip("2001:db8::1"), ip("2001:db8::7"), 53, 33333, 1000);
    assert_eq!(f.len(), MAX_HEADER_LEN);
    let p = parse(&f);
    let Some(LaxNetSlice::Ipv6(ipv6)) = &p.net else {
        panic!("not IPv6")
    };
    assert_eq!(ipv6.header().payload_length(), 8 + 1000);
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        panic!("not UDP")
    };
    assert_eq!(udp.length(), 1008);
    assert_eq!(raw_header(&f).frame_length, 14 + 40 + 1008 + 4);
}

#[test]
fn mixed_families_become_ipv6_with_a_mapped_address() {
    let f = ethernet_udp_frame(ip("192.0.2.1"), ip("2001:db8::7"), 1, 2, 0);
    let p = parse(&f);
    let Some(LaxNetSlice::Ipv6(ipv6)) = &p.net else {
        panic!("not IPv6")
    };
    assert_eq!(
        ipv6.header().source_addr(),
        "::ffff:192.0.2.1".parse::<std::net::Ipv6Addr>().unwrap()
    );
}

#[test]
fn tcp_flags_are_set_bit_for_bit() {
    for flags in [0x02u8, 0x12, 0x10, 0x04, 0x11, 0x29, 0xff, 0] {
        for (s, d) in [("192.0.2.1", "203.0.113.7"), ("2001:db8::1", "2001:db8::7")] {
            let f = ethernet_tcp_frame(ip(s), ip(d), 40000, 443, flags);
            let p = parse(&f);
            let Some(TransportSlice::Tcp(tcp)) = &p.transport else {
                panic!("not TCP")
            };
            assert_eq!((tcp.source_port(), tcp.destination_port()), (40000, 443));
            let got = u8::from(tcp.fin())
                | u8::from(tcp.syn()) << 1
                | u8::from(tcp.rst()) << 2
                | u8::from(tcp.psh()) << 3
                | u8::from(tcp.ack()) << 4
                | u8::from(tcp.urg()) << 5
                | u8::from(tcp.ece()) << 6
                | u8::from(tcp.cwr()) << 7;
            assert_eq!(got, flags);
            // The flags byte sits at its place for any sampled-header parser.
            let l4 = if s.contains(':') { 14 + 40 } else { 14 + 20 };
            assert_eq!(f[l4 + 13], flags);
            assert_eq!(raw_header(&f).frame_length as usize, (l4 + 20 + 4).max(64));
        }
    }
}

#[test]
fn icmp_echo_requests() {
    let f = ethernet_icmp_frame(ip("192.0.2.1"), ip("203.0.113.7"));
    assert_eq!(f.len(), 14 + 20 + 8 + 56);
    let p = parse(&f);
    assert!(matches!(p.transport, Some(TransportSlice::Icmpv4(_))));
    assert_eq!(raw_header(&f).frame_length, 14 + 84 + 4);

    let f = ethernet_icmp_frame(ip("2001:db8::1"), ip("2001:db8::7"));
    let p = parse(&f);
    assert!(matches!(p.transport, Some(TransportSlice::Icmpv6(_))));
    assert_eq!(raw_header(&f).frame_length, 14 + 40 + 64 + 4);
}

#[test]
fn raw_header_of_odd_frames_never_panics() {
    for len in 0..200 {
        let f = vec![0x81; len];
        let r = raw_header(&f);
        assert!(r.header.len() <= MAX_HEADER_LEN);
        assert!(r.frame_length >= 64);
    }
    // VLAN-tagged IPv4: the length comes from behind the tag.
    let mut f = ethernet_udp_frame(ip("192.0.2.1"), ip("192.0.2.2"), 1, 2, 100);
    f.splice(12..12, [0x81, 0x00, 0x00, 0x20]);
    assert_eq!(raw_header(&f).frame_length, 18 + 20 + 8 + 100 + 4);
}
