//! A bounds-checked XDR (RFC 4506) reader over a window of the datagram's [`Bytes`].
//!
//! Every read checks the window first; no index can go out of bounds and no length arithmetic can
//! overflow. Byte fields come out as zero-copy slices of the datagram.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::Bytes;

use crate::error::ErrorKind;
use crate::formats;

/// The padding that follows `len` octets of XDR opaque data: up to the next multiple of 4.
pub(crate) const fn pad(len: usize) -> usize {
    (4 - (len % 4)) % 4
}

/// A cursor over a window of the datagram, with a sticky error.
///
/// Reads never fail on the spot: past the end of the window they return zeros, record the first
/// error ([`ErrorKind::Truncated`] with what was needed and what was left) and empty the window so
/// that every later read fails too. Callers read a whole structure, then check [`Reader::error`]
/// once: the hot path is straight-line code, with no `Result` plumbing per field.
#[derive(Debug, Clone)]
pub(crate) struct Reader<'a> {
    buf: &'a Bytes,
    /// What is left of the window; a subslice of `buf` (its offset in `buf` is computed from the
    /// two addresses when a [`Bytes`] slice is taken, so reads only move this slice).
    rest: &'a [u8],
    err: Option<ErrorKind>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a Bytes) -> Self {
        Reader {
            buf,
            rest: buf.as_ref(),
            err: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// The first error met, if any.
    pub(crate) fn error(&self) -> Option<ErrorKind> {
        self.err
    }

    /// The error after a read reported failure (`None` from [`Reader::block`]); always recorded
    /// then, the fallback is never used.
    pub(crate) fn failure(&self) -> ErrorKind {
        self.err.unwrap_or(ErrorKind::Truncated {
            need: 0,
            have: self.rest.len(),
        })
    }

    /// Records `kind` (unless an error is already recorded) and empties the window.
    pub(crate) fn fail(&mut self, kind: ErrorKind) {
        if self.err.is_none() {
            self.err = Some(kind);
        }
        self.rest = self.rest.get(self.rest.len()..).unwrap_or(&[]);
    }

    /// The next `N` octets in one check, for a fixed-size structure whose fields are then read from
    /// the [`Fields`] without further checks; `None` (and the error recorded) when they are not all
    /// there.
    pub(crate) fn block<const N: usize>(&mut self) -> Option<Fields<'a>> {
        match self.rest.split_first_chunk::<N>() {
            Some((a, tail)) => {
                self.rest = tail;
                Some(Fields(a.as_slice()))
            }
            None => {
                let have = self.rest.len();
                self.fail(ErrorKind::Truncated { need: N, have });
                None
            }
        }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        match self.rest.split_first_chunk::<N>() {
            Some((a, tail)) => {
                self.rest = tail;
                *a
            }
            None => {
                let have = self.rest.len();
                self.fail(ErrorKind::Truncated { need: N, have });
                [0; N]
            }
        }
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array::<4>())
    }

    #[cfg(test)]
    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array::<8>())
    }

    pub(crate) fn ipv4(&mut self) -> Ipv4Addr {
        Ipv4Addr::from(self.array::<4>())
    }

    pub(crate) fn ipv6(&mut self) -> Ipv6Addr {
        Ipv6Addr::from(self.array::<16>())
    }

    /// An `address` union: type, then 4 or 16 octets. Type 0 (unknown) has no octets and decodes as
    /// `0.0.0.0`; `bad_type` builds the error for any other type.
    pub(crate) fn address(&mut self, bad_type: fn(u32) -> ErrorKind) -> IpAddr {
        match self.u32() {
            formats::address::UNKNOWN => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            formats::address::IPV4 => IpAddr::V4(self.ipv4()),
            formats::address::IPV6 => IpAddr::V6(self.ipv6()),
            t => {
                self.fail(bad_type(t));
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            }
        }
    }

    /// Takes `len` octets and their XDR padding; returns a reader of its own over the `len` octets.
    /// When they run past the window, fails with [`ErrorKind::Length`] (`what` names the length
    /// field) and returns an empty reader.
    pub(crate) fn sub(&mut self, len: u32, what: &'static str) -> Reader<'a> {
        let n = usize::try_from(len).unwrap_or(usize::MAX);
        let padded = n.saturating_add(pad(n));
        match (self.rest.get(..n), self.rest.get(padded..)) {
            (Some(body), Some(tail)) if self.err.is_none() => {
                self.rest = tail;
                Reader {
                    buf: self.buf,
                    rest: body,
                    err: None,
                }
            }
            _ => {
                self.fail(ErrorKind::Length { what, len });
                Reader {
                    buf: self.buf,
                    rest: self.rest,
                    err: self.err,
                }
            }
        }
    }

    /// XDR `opaque<>`: a length, the octets and their padding; the octets as a slice of the
    /// datagram.
    #[cfg(test)]
    pub(crate) fn opaque(&mut self, what: &'static str) -> Bytes {
        let len = self.u32();
        if self.err.is_some() {
            return Bytes::new();
        }
        self.sub(len, what).rest()
    }

    /// What is left of the window, as a slice of the datagram (zero-copy).
    pub(crate) fn rest(&self) -> Bytes {
        // `rest` lies inside `buf` by construction; checked anyway, so that no mistake can panic.
        let start = (self.rest.as_ptr() as usize).wrapping_sub(self.buf.as_ptr() as usize);
        match start.checked_add(self.rest.len()) {
            Some(end) if !self.rest.is_empty() && end <= self.buf.len() => {
                self.buf.slice(start..end)
            }
            _ => Bytes::new(),
        }
    }

    /// Reads a count of elements of at least `min_size` octets each, and checks it with
    /// [`Reader::fits`].
    pub(crate) fn count(&mut self, min_size: usize, what: &'static str) -> u32 {
        let n = self.u32();
        self.fits(n, min_size, what)
    }

    /// Checks that `n` elements of at least `min_size` octets each can fit in what is left; when
    /// they cannot, fails with [`ErrorKind::TooMany`] and returns 0.
    pub(crate) fn fits(&mut self, n: u32, min_size: usize, what: &'static str) -> u32 {
        let fits = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(min_size))
            .is_some_and(|total| total <= self.rest.len());
        if fits {
            n
        } else {
            if self.err.is_none() {
                self.fail(ErrorKind::TooMany { what, n });
            }
            0
        }
    }
}

/// The fields of a fixed-size structure, already checked to be all there (see [`Reader::block`]).
/// Its length is a constant where it is used, so the compiler drops the checks left here; past the
/// end (a mistake), reads give zeros rather than panic.
#[derive(Debug)]
pub(crate) struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    #[inline(always)]
    fn array<const N: usize>(&mut self) -> [u8; N] {
        match self.0.split_first_chunk::<N>() {
            Some((a, tail)) => {
                self.0 = tail;
                *a
            }
            None => [0; N],
        }
    }

    #[inline(always)]
    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_be_bytes(self.array::<4>())
    }

    #[inline(always)]
    pub(crate) fn u64(&mut self) -> u64 {
        u64::from_be_bytes(self.array::<8>())
    }

    /// The last word of the structure, without moving: a count or length that the caller needs
    /// before the fields that precede it.
    #[inline(always)]
    pub(crate) fn last_u32(&self) -> u32 {
        self.0
            .last_chunk::<4>()
            .map_or(0, |a| u32::from_be_bytes(*a))
    }

    #[inline(always)]
    pub(crate) fn ipv4(&mut self) -> Ipv4Addr {
        Ipv4Addr::from(self.array::<4>())
    }

    #[inline(always)]
    pub(crate) fn ipv6(&mut self) -> Ipv6Addr {
        Ipv6Addr::from(self.array::<16>())
    }

    /// A MAC address: XDR `opaque mac[6]`, padded to 8 octets.
    #[inline(always)]
    pub(crate) fn mac(&mut self) -> [u8; 6] {
        let [a, b, c, d, e, f, _, _] = self.array::<8>();
        [a, b, c, d, e, f]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_big_endian_words() {
        let b = Bytes::from_static(&[0, 0, 0, 5, 0, 0, 0, 0, 0, 0, 1, 0]);
        let mut r = Reader::new(&b);
        assert_eq!(r.u32(), 5);
        assert_eq!(r.u64(), 256);
        assert_eq!(r.remaining(), 0);
        assert_eq!(r.error(), None);
        assert_eq!(r.u32(), 0);
        assert_eq!(r.error(), Some(ErrorKind::Truncated { need: 4, have: 0 }));
    }

    #[test]
    fn opaque_skips_padding_and_is_zero_copy() {
        let b = Bytes::from_static(&[0, 0, 0, 3, 0xaa, 0xbb, 0xcc, 0, 0, 0, 0, 9]);
        let mut r = Reader::new(&b);
        let o = r.opaque("x");
        assert_eq!(&o[..], &[0xaa, 0xbb, 0xcc]);
        assert_eq!(o.as_ptr(), b[4..].as_ptr());
        assert_eq!(r.u32(), 9);
        assert_eq!(r.error(), None);
    }

    #[test]
    fn opaque_past_the_end_is_a_length_error() {
        let b = Bytes::from_static(&[0, 0, 0, 3, 0xaa, 0xbb, 0xcc]);
        let mut r = Reader::new(&b);
        assert_eq!(r.opaque("x"), Bytes::new());
        assert_eq!(r.error(), Some(ErrorKind::Length { what: "x", len: 3 }));
        let b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
        let mut r = Reader::new(&b);
        assert_eq!(r.opaque("x"), Bytes::new());
        assert_eq!(
            r.error(),
            Some(ErrorKind::Length {
                what: "x",
                len: u32::MAX
            })
        );
    }

    #[test]
    fn sub_reader_is_bounded() {
        let b = Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]);
        let mut r = Reader::new(&b);
        let mut s = r.sub(4, "x");
        assert_eq!(s.u32(), 1);
        assert_eq!(s.u32(), 0);
        assert_eq!(s.error(), Some(ErrorKind::Truncated { need: 4, have: 0 }));
        assert_eq!(r.u32(), 2);
        assert_eq!(r.error(), None);
    }

    #[test]
    fn counts_are_bounded_by_what_is_left() {
        let b = Bytes::from_static(&[0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(Reader::new(&b).count(4, "x"), 2);
        let mut r = Reader::new(&b);
        assert_eq!(r.count(8, "x"), 0);
        assert_eq!(r.error(), Some(ErrorKind::TooMany { what: "x", n: 2 }));
        let b = Bytes::from_static(&[0xff, 0xff, 0xff, 0xff]);
        let mut r = Reader::new(&b);
        assert_eq!(r.count(usize::MAX, "x"), 0);
        assert_eq!(
            r.error(),
            Some(ErrorKind::TooMany {
                what: "x",
                n: u32::MAX
            })
        );
    }

    #[test]
    fn mac_drops_its_padding() {
        let b = Bytes::from_static(&[1, 2, 3, 4, 5, 6, 0, 0]);
        let mut f = Reader::new(&b).block::<8>().unwrap();
        assert_eq!(f.mac(), [1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn a_block_is_all_or_nothing() {
        let b = Bytes::from_static(&[0, 0, 0, 1, 0, 0, 0, 2, 0, 0]);
        let mut r = Reader::new(&b);
        let mut f = r.block::<8>().unwrap();
        assert_eq!((f.u32(), f.u32()), (1, 2));
        // Past a block's end (a mistake in the caller) reads zeros.
        assert_eq!(f.u64(), 0);
        assert!(r.block::<4>().is_none());
        assert_eq!(r.error(), Some(ErrorKind::Truncated { need: 4, have: 2 }));
    }
}

#[cfg(test)]
mod sticky {
    use super::*;

    #[test]
    fn the_first_error_sticks() {
        // A u64 with 6 octets left fails; a u32 after it fails too (the window is emptied), and
        // the error stays the first one.
        let b = Bytes::from_static(&[1, 2, 3, 4, 5, 6]);
        let mut r = Reader::new(&b);
        assert_eq!(r.u64(), 0);
        assert_eq!(r.u32(), 0);
        assert_eq!(r.error(), Some(ErrorKind::Truncated { need: 8, have: 6 }));
        assert_eq!(r.rest(), Bytes::new());
    }

    #[test]
    fn unknown_address_type_fails() {
        let b = Bytes::from_static(&[0, 0, 0, 9, 1, 2, 3, 4]);
        let mut r = Reader::new(&b);
        assert_eq!(
            r.address(ErrorKind::AddressType),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(r.error(), Some(ErrorKind::AddressType(9)));
    }
}
