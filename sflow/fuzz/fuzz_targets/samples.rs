//! Arbitrary words behind a valid sFlow v5 header (the fuzzer's bytes start at the sample count), so
//! that mutations spend their time in samples and records rather than in the version and agent
//! fields: never a panic; whatever decodes round-trips.
#![no_main]

use bytes::Bytes;
use deflect_sflow::{decode, encode::encode};
use libfuzzer_sys::fuzz_target;

/// Version 5, IPv4 agent 192.0.2.1, sub-agent 0, sequence 1, uptime 2.
const HEADER: [u8; 24] = [
    0, 0, 0, 5, 0, 0, 0, 1, 192, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2,
];

fuzz_target!(|data: &[u8]| {
    let mut b = Vec::with_capacity(HEADER.len() + data.len());
    b.extend_from_slice(&HEADER);
    b.extend_from_slice(data);
    if let Ok(d) = decode(Bytes::from(b)) {
        let again = decode(encode(&d).freeze()).expect("an encoded datagram decodes");
        assert_eq!(again, d);
    }
});
