//! A sequence of datagrams into one session (with small limits, so that eviction, expiry and held
//! sets are reached): the input is split at each `0xff 0xfe` pair; each piece is a datagram, its
//! first octet (when there is one) also moving the caller's clock forward. Never a panic, and the
//! bounds hold after every datagram.
#![no_main]

use bytes::Bytes;
use deflect_netflow::{Limits, Session};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_templates: 8,
        max_template_fields: 32,
        template_lifetime_ms: 60_000,
        max_pending_sets: 4,
        max_pending_bytes: 4096,
        pending_ms: 5_000,
        max_samplers: 4,
    };
    let mut s = Session::new(limits.clone());
    let mut now = 0u64;
    let mut rest = data;
    while !rest.is_empty() {
        let end = rest.windows(2).position(|w| w == [0xff, 0xfe]).unwrap_or(rest.len());
        let piece = &rest[..end];
        rest = rest.get(end + 2..).unwrap_or(&[]);
        now += u64::from(piece.first().copied().unwrap_or(0)) * 1000;
        let _ = s.decode(Bytes::copy_from_slice(piece), now);
        assert!(s.templates() <= limits.max_templates);
        assert!(s.held_sets() <= limits.max_pending_sets);
    }
});
