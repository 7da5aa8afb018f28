//! Arbitrary bytes as an UPDATE body under both AS widths: never a panic.
#![no_main]

use deflect_bgp::codec::CodecCtx;
use deflect_bgp::update::Update;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for four_octet_as in [false, true] {
        let _ = Update::decode(&CodecCtx { four_octet_as, extended_message: true }, data);
    }
});
