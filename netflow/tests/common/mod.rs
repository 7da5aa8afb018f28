//! Shared by the integration tests: the stored vectors, and a flow to vary.
#![allow(dead_code)]

use std::net::IpAddr;
use std::path::Path;

use bytes::Bytes;
use deflect_netflow::{Flow, Limits, Packet, Session};

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

pub fn ip(s: &str) -> IpAddr {
    s.parse().expect("an address")
}

/// Export time of the generated messages: 2023-11-23T12:48:00Z.
pub const EXPORT_SECS: u32 = 1_700_743_680;
pub const EXPORT_MS: u64 = EXPORT_SECS as u64 * 1000;

/// A UDP reflection flow, ended at the export time, that lasted a second.
pub fn flow() -> Flow {
    Flow {
        src: ip("192.0.2.1"),
        dst: ip("198.51.100.7"),
        proto: 17,
        src_port: 123,
        dst_port: 4444,
        tcp_flags: 0,
        icmp_type_code: None,
        fragment: false,
        packets: 10,
        bytes: 4680,
        start_ms: Some(EXPORT_MS - 1000),
        end_ms: Some(EXPORT_MS),
        sampling: None,
        direction: None,
        input: 3,
        output: 7,
        section: None,
    }
}

pub fn session() -> Session {
    Session::new(Limits::default())
}

/// Decodes, expecting no error at all.
pub fn decode_ok(s: &mut Session, b: impl Into<Bytes>, now_ms: u64) -> Packet {
    let p = s.decode(b.into(), now_ms).expect("decodes");
    assert!(p.errors.is_empty(), "errors: {:?}", p.errors);
    p
}
