//! A bounds-checked XDR (RFC 4506) reader over a window of the datagram's [`Bytes`].
//!
//! Every read checks the window first and fails with [`ErrorKind::Truncated`]; no index can go out of
//! bounds and no length arithmetic can overflow. Byte fields come out as zero-copy slices of the
//! datagram.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use crate::error::ErrorKind;
use crate::formats;

/// The padding that follows `len` octets of XDR opaque data: up to the next multiple of 4.
pub(crate) const fn pad(len: usize) -> usize {
    (4 - (len % 4)) % 4
}

/// A cursor over `buf[pos..end]`. Invariant: `pos <= end <= buf.len()`.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a Bytes) -> Self {
        Reader {
            buf,
            pos: 0,
            end: buf.len(),
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.end.saturating_sub(self.pos)
    }

    /// The next `n` octets, checked against the window.
    fn next(&mut self, n: usize) -> Result<&'a [u8], ErrorKind> {
        let have = self.remaining();
        let truncated = ErrorKind::Truncated { need: n, have };
        if n > have {
            return Err(truncated);
        }
        let start = self.pos;
        let stop = start.checked_add(n).ok_or(truncated)?;
        let bytes: &'a Bytes = self.buf;
        let s = bytes.get(start..stop).ok_or(truncated)?;
        self.pos = stop;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ErrorKind> {
        let s = self.next(N)?;
        <[u8; N]>::try_from(s).map_err(|_| ErrorKind::Truncated {
            need: N,
            have: s.len(),
        })
    }

    pub(crate) fn u32(&mut self) -> Result<u32, ErrorKind> {
        self.array::<4>().map(u32::from_be_bytes)
    }

    pub(crate) fn u64(&mut self) -> Result<u64, ErrorKind> {
        self.array::<8>().map(u64::from_be_bytes)
    }

    pub(crate) fn ipv4(&mut self) -> Result<Ipv4Addr, ErrorKind> {
        self.array::<4>().map(Ipv4Addr::from)
    }

    pub(crate) fn ipv6(&mut self) -> Result<Ipv6Addr, ErrorKind> {
        self.array::<16>().map(Ipv6Addr::from)
    }

    /// A MAC address: XDR `opaque mac[6]`, padded to 8 octets.
    pub(crate) fn mac(&mut self) -> Result<[u8; 6], ErrorKind> {
        let b = self.array::<8>()?;
        let [a, b, c, d, e, f, _, _] = b;
        Ok([a, b, c, d, e, f])
    }

    /// An `address` union: type, then 4 or 16 octets. Type 0 (unknown) has no octets and decodes as
    /// `0.0.0.0`; `bad_type` builds the error for any other type.
    pub(crate) fn address(&mut self, bad_type: fn(u32) -> ErrorKind) -> Result<IpAddr, ErrorKind> {
        match self.u32()? {
            formats::address::UNKNOWN => Ok(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            formats::address::IPV4 => self.ipv4().map(IpAddr::V4),
            formats::address::IPV6 => self.ipv6().map(IpAddr::V6),
            t => Err(bad_type(t)),
        }
    }

    /// Takes `len` octets and their XDR padding as a reader of its own (over the `len` octets).
    /// `what` names the length field for the error when they run past the window.
    pub(crate) fn sub(&mut self, len: u32, what: &'static str) -> Result<Reader<'a>, ErrorKind> {
        let too_long = ErrorKind::Length { what, len };
        let n = usize::try_from(len).map_err(|_| too_long)?;
        let padded = n.checked_add(pad(n)).ok_or(too_long)?;
        if padded > self.remaining() {
            return Err(too_long);
        }
        let start = self.pos;
        let end = start.checked_add(n).ok_or(too_long)?;
        self.pos = start.checked_add(padded).ok_or(too_long)?;
        Ok(Reader {
            buf: self.buf,
            pos: start,
            end,
        })
    }

    /// XDR `opaque<>`: a length, the octets and their padding; the octets as a slice of the
    /// datagram.
    pub(crate) fn opaque(&mut self, what: &'static str) -> Result<Bytes, ErrorKind> {
        let len = self.u32()?;
        let sub = self.sub(len, what)?;
        Ok(sub.rest())
    }

    /// What is left of the window, as a slice of the datagram (zero-copy).
    pub(crate) fn rest(&self) -> Bytes {
        if self.pos >= self.end || self.end > self.buf.len() {
            return Bytes::new();
        }
        self.buf.slice(self.pos..self.end)
    }

    /// Checks that a count of elements of at least `min_size` octets each can fit in what is left.
    pub(crate) fn count(&mut self, min_size: usize, what: &'static str) -> Result<u32, ErrorKind> {
        let n = self.u32()?;
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min_size))
            .is_some_and(|total| total <= self.remaining());
        if fits {
            Ok(n)
        } else {
            Err(ErrorKind::TooMany { what, n })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_words() {
        let b = Bytes::from_static(&[0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 1, 0]);
        let mut r = Reader::new(&b);
        assert_eq!(r.u32(), Ok(5));
        assert_eq!(r.u64(), Ok(256));
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.u32(), Err(ErrorKind::Truncated { need: 4, have: 0 }));
    }

    #[test]
    fn opaque_skips_padding_and_is_zero_copy() {
        let b = Bytes::from_static(&[0, 0, 0, 3, 0xaa, 0xbb, 0xcc, 0, 0, 0, 0, 9]);
        let mut r = Reader::new(&b);
        let o = r.opaque("x").unwrap();
        assert_eq!(&o[..], &[0xaa, 0xbb, 0xcc]);
        assert_eq!(o.as_ptr(), b[4..].as_ptr());
        assert_eq!(r.u32(), Ok(9));
    }

    #[test]
    fn opaque_past_the_end_is_a_length_error() {
        let b = Bytes::from_static(&[0, 0, 0, 3, 0xaa, 0xbb, 0xcc]);
        let mut r = Reader::new(&b);
        assert_eq!(r.opaque("x"), Err(ErrorKind::Length { what: "x", len: 3 }));
        let b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
        let mut r = Reader::new(&b);
        assert_eq!(
            r.opaque("x"),
            Err(ErrorKind::Length {
                what: "x",
                len: u32::MAX
            })
        );
    }

    #[test]
    fn sub_reader_is_bounded() {
        let b = Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
        let mut r = Reader::new(&b);
        let mut s = r.sub(4, "x").unwrap();
        assert_eq!(s.u32(), Ok(1));
        assert_eq!(s.u32(), Err(ErrorKind::Truncated { need: 4, have: 0 }));
        assert_eq!(r.u32(), Ok(2));
    }

    #[test]
    fn counts_are_bounded_by_what_is_left() {
        let b = Bytes::from_static(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Reader::new(&b).count(4, "x"), Ok(2));
        assert_eq!(
            Reader::new(&b).count(8, "x"),
            Err(ErrorKind::TooMany { what: "x", n: 2 })
        );
        let b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
        assert_eq!(
            Reader::new(&b).count(usize::MAX, "x"),
            Err(ErrorKind::TooMany {
                what: "x",
                n: u32::MAX
            })
        );
    }

    #[test]
    fn mac_drops_its_padding() {
        let b = Bytes::from_static(&[1, 2, 3, 4, 5, 6, 0, 0]);
        assert_eq!(Reader::new(&b).mac(), Ok([1, 2, 3, 4, 5, 6]));
    }
}
