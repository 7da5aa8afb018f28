//! Arbitrary bytes as an sFlow datagram: never a panic; whatever decodes re-encodes to bytes that
//! decode to the same datagram.
#![no_main]

use bytes::Bytes;
use deflect_sflow::{decode, encode::encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = decode(Bytes::copy_from_slice(data)) {
        let again = decode(encode(&d).freeze()).expect("an encoded datagram decodes");
        assert_eq!(again, d);
    }
});
