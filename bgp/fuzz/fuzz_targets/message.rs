//! Arbitrary bytes as a byte stream: framing and message decoding never panic.
#![no_main]

use deflect_bgp::codec::CodecCtx;
use deflect_bgp::header;
use deflect_bgp::message::Message;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let ctx = CodecCtx { four_octet_as: true, extended_message: true };
    let mut buf = data;
    while let Ok(Some(f)) = header::frame(buf, header::MAX_EXTENDED_LEN) {
        let _ = Message::decode(&ctx, &buf[..f.len]);
        buf = &buf[f.len..];
    }
    let _ = deflect_bgp::open::Open::decode(data);
});
