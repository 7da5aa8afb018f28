//! Message framing (RFC 4271 §4.1, RFC 8654 §4).
//!
//! ```text
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                           Marker (16 × 0xff)                  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`frame`] tells "need more bytes" (`Ok(None)`) apart from "this is not BGP" (`Err`), so the reader
//! never confuses a slow peer with a broken one.

use bytes::{BufMut, BytesMut};

use crate::iana::message_type;

/// Marker, length and type.
pub const HEADER_LEN: usize = 19;
/// Largest message without RFC 8654 (RFC 4271 §4.1).
pub const MAX_LEN: usize = 4096;
/// Largest message with RFC 8654 extended messages.
pub const MAX_EXTENDED_LEN: usize = 65535;

/// A whole message found at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Frame {
    pub msg_type: u8,
    /// Total length, header included.
    pub len: usize,
}

/// A header that is not BGP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("marker is not all ones (connection not synchronized)")]
    NotSynchronized,
    #[error("message length {0} is out of range")]
    BadLength(u16),
    #[error("message type {0} is unknown")]
    BadType(u8),
}

/// Smallest valid length of each message type (RFC 4271 §4.2-§4.5, RFC 2918 §3).
fn min_len(msg_type: u8) -> Option<usize> {
    match msg_type {
        message_type::OPEN => Some(29),
        message_type::UPDATE => Some(23),
        message_type::NOTIFICATION => Some(21),
        message_type::KEEPALIVE => Some(19),
        message_type::ROUTE_REFRESH => Some(23),
        _ => None,
    }
}

/// Looks for one whole message at the start of `buf`, accepting lengths up to `max_len`.
pub fn frame(buf: &[u8], max_len: usize) -> Result<Option<Frame>, HeaderError> {
    if buf.len() < HEADER_LEN {
        // Check what we have of the marker early: garbage is reported without waiting for more.
        if buf.iter().take(16).any(|&b| b != 0xff) {
            return Err(HeaderError::NotSynchronized);
        }
        return Ok(None);
    }
    if buf[..16].iter().any(|&b| b != 0xff) {
        return Err(HeaderError::NotSynchronized);
    }
    let len16 = u16::from_be_bytes([buf[16], buf[17]]);
    let len = usize::from(len16);
    let msg_type = buf[18];
    let min = min_len(msg_type).ok_or(HeaderError::BadType(msg_type))?;
    // OPEN and KEEPALIVE never exceed 4096 (RFC 8654 §4); KEEPALIVE is exactly 19.
    let max = match msg_type {
        message_type::OPEN => MAX_LEN.min(max_len),
        message_type::KEEPALIVE => HEADER_LEN,
        _ => max_len,
    };
    if len < min || len > max {
        return Err(HeaderError::BadLength(len16));
    }
    if buf.len() < len {
        return Ok(None);
    }
    Ok(Some(Frame { msg_type, len }))
}

/// Writes a header with a zero length; [`finish`] fills it in. Returns the message's offset.
pub fn begin(out: &mut BytesMut, msg_type: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0xff; 16]);
    out.put_u16(0);
    out.put_u8(msg_type);
    start
}

/// Fills in the length of the message begun at `start`; returns it.
pub fn finish(out: &mut BytesMut, start: usize) -> usize {
    let len = out.len() - start;
    let l = u16::try_from(len).unwrap_or(u16::MAX);
    out[start + 16..start + 18].copy_from_slice(&l.to_be_bytes());
    len
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keepalive() -> Vec<u8> {
        let mut v = vec![0xff; 16];
        v.extend_from_slice(&[0, 19, 4]);
        v
    }

    #[test]
    fn every_prefix_of_a_keepalive_needs_more_bytes_and_the_whole_is_a_frame() {
        let k = keepalive();
        for n in 0..k.len() {
            assert_eq!(frame(&k[..n], MAX_LEN), Ok(None), "prefix of {n}");
        }
        assert_eq!(
            frame(&k, MAX_LEN),
            Ok(Some(Frame {
                msg_type: 4,
                len: 19
            }))
        );
    }

    #[test]
    fn garbage_is_malformed_not_incomplete() {
        assert_eq!(
            frame(&[0xff, 0x00], MAX_LEN),
            Err(HeaderError::NotSynchronized)
        );
        let mut k = keepalive();
        k[18] = 9;
        assert_eq!(frame(&k, MAX_LEN), Err(HeaderError::BadType(9)));
        assert_eq!(HeaderError::BadType(9).notification().data.as_ref(), &[9]);
        let mut k = keepalive();
        k[17] = 20;
        assert_eq!(frame(&k, MAX_LEN), Err(HeaderError::BadLength(20)));
        assert_eq!(
            HeaderError::BadLength(20).notification().data.as_ref(),
            &[0, 20]
        );
    }

    #[test]
    fn update_longer_than_4096_needs_extended_messages() {
        let mut u = vec![0xff; 16];
        u.extend_from_slice(&5000u16.to_be_bytes());
        u.push(2);
        assert_eq!(frame(&u, MAX_LEN), Err(HeaderError::BadLength(5000)));
        assert_eq!(frame(&u, MAX_EXTENDED_LEN), Ok(None));
    }
}
