//! Arbitrary bytes as one datagram into a fresh session: never a panic, and the session's bounds
//! hold.
#![no_main]

use bytes::Bytes;
use deflect_netflow::{Limits, Session};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    let mut s = Session::new(limits.clone());
    if let Ok(p) = s.decode(Bytes::copy_from_slice(data), 0) {
        assert!(p.flows.len() <= data.len());
    }
    assert!(s.templates() <= limits.max_templates);
    assert!(s.held_sets() <= limits.max_pending_sets);
});
