//! Learned baselines kept across restarts: what the [`Detector`](super::Detector) has learned,
//! written as one compact file, and read back at start so that detection does not go through its
//! warm-up again.
//!
//! Why a file of its own (beside the store, not in it): baselines are soft state. Losing them
//! costs a warm-up, never a mitigation, so they need neither the store's transactions nor its
//! audit log, and a snapshot of 100,000 targets (a few megabytes) written every minute would hold
//! the mitigation set's task for the length of its commit. The engine writes it atomically (a
//! temporary file, fsync, rename) off its own task.
//!
//! Why by hand: eleven baselines of twelve bytes per address, most of them zero, is what a
//! general serializer would spend three times the space and ten times the time on; the format is
//! small, versioned and checksummed, and its reader is the one piece of untrusted input here
//! (the file may be damaged or edited): it never panics, checks every length before it reads,
//! and allocates no more than the file's own size accounts for.
//!
//! ```text
//! "DFLB" | version: u8 = 1 | taken_ms: u64 | entries: u32
//! entry: tag: u8 (4 / 6: an IPv4 / IPv6 address; 0x14 / 0x16: a prefix) | address: 4 or 16
//!        | prefix length: u8 (prefixes only) | last_ms: u64 | present: u16 | zero: u16
//!        | per slot in `present` (classes in order, then the total):
//!            in `zero`: learned_ms: u32 (a mean and variance of 0)
//!            otherwise: mean: f32 | var: f32 | learned_ms: u32
//! SHA-256 of all the above
//! ```
//! All numbers little-endian.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use sha2::{Digest, Sha256};

use super::{Baseline, Class};

/// Baselines per target: one per class, then the total (bits per second).
pub const SLOTS: usize = Class::ALL.len() + 1;

const MAGIC: &[u8; 4] = b"DFLB";
const VERSION: u8 = 1;
const HEADER: usize = 4 + 1 + 8 + 4;
const CHECKSUM: usize = 32;
/// The smallest entry: a tag, an IPv4 address, `last_ms` and the two masks.
const MIN_ENTRY: usize = 1 + 4 + 8 + 2 + 2;

/// An IPv4 address with two busy classes and the rest quiet: room reserved per entry.
const TYPICAL_ENTRY: usize = MIN_ENTRY + 2 * 12 + (SLOTS - 2) * 4;

const TAG_V4: u8 = 4;
const TAG_V6: u8 = 6;
const TAG_PREFIX: u8 = 0x10;

/// One address's (or prefix's) baselines, and when it was last reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Learned {
    pub last_ms: u64,
    pub baselines: [Baseline; SLOTS],
}

/// What a snapshot file holds.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub taken_ms: u64,
    pub targets: Vec<(IpAddr, Learned)>,
    pub prefixes: Vec<(IpNet, Learned)>,
    /// Entries left out for values no baseline can hold (not finite, negative).
    pub skipped: usize,
}

/// Why a snapshot file was not read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    /// Not a snapshot, or of a version this build does not read.
    Format(String),
    /// Its checksum does not match: damaged or cut short.
    Checksum,
    /// It ends inside an entry, or an entry is malformed.
    Entry { index: usize, what: &'static str },
}

impl fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotError::Format(what) => write!(f, "not a baseline snapshot: {what}"),
            SnapshotError::Checksum => {
                write!(f, "its checksum does not match (damaged or cut short)")
            }
            SnapshotError::Entry { index, what } => write!(f, "entry {index}: {what}"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// Writes a snapshot, one entry at a time.
#[derive(Debug)]
pub struct Writer {
    out: Vec<u8>,
    entries: u32,
}

impl Writer {
    /// A snapshot taken at `taken_ms`, with room for about `entries` entries.
    pub fn new(taken_ms: u64, entries: usize) -> Writer {
        let mut out = Vec::with_capacity(HEADER + CHECKSUM + entries * TYPICAL_ENTRY);
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&taken_ms.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        Writer { out, entries: 0 }
    }

    /// An address's baselines; nothing when none has learned anything.
    pub fn target(&mut self, addr: IpAddr, last_ms: u64, baselines: &[Baseline; SLOTS]) {
        self.entry(IpNet::from(addr), false, last_ms, baselines);
    }

    /// A prefix's baselines; nothing when none has learned anything.
    pub fn prefix(&mut self, net: IpNet, last_ms: u64, baselines: &[Baseline; SLOTS]) {
        self.entry(net, true, last_ms, baselines);
    }

    fn entry(&mut self, net: IpNet, prefix: bool, last_ms: u64, baselines: &[Baseline; SLOTS]) {
        let (mut present, mut zero) = (0u16, 0u16);
        for (i, b) in baselines.iter().enumerate() {
            if b.learned_ms > 0 {
                present |= 1 << i;
                if b.mean == 0.0 && b.var == 0.0 {
                    zero |= 1 << i;
                }
            }
        }
        if present == 0 || self.entries == u32::MAX {
            return;
        }
        self.entries += 1;
        let tag = if prefix { TAG_PREFIX } else { 0 };
        match net.addr() {
            IpAddr::V4(a) => {
                self.out.push(tag | TAG_V4);
                self.out.extend_from_slice(&a.octets());
            }
            IpAddr::V6(a) => {
                self.out.push(tag | TAG_V6);
                self.out.extend_from_slice(&a.octets());
            }
        }
        if prefix {
            self.out.push(net.prefix_len());
        }
        self.out.extend_from_slice(&last_ms.to_le_bytes());
        self.out.extend_from_slice(&present.to_le_bytes());
        self.out.extend_from_slice(&zero.to_le_bytes());
        for (i, b) in baselines.iter().enumerate() {
            if present & (1 << i) == 0 {
                continue;
            }
            if zero & (1 << i) == 0 {
                self.out.extend_from_slice(&b.mean.to_le_bytes());
                self.out.extend_from_slice(&b.var.to_le_bytes());
            }
            self.out.extend_from_slice(&b.learned_ms.to_le_bytes());
        }
    }

    /// Entries written so far.
    pub fn len(&self) -> usize {
        self.entries as usize
    }

    pub fn is_empty(&self) -> bool {
        self.entries == 0
    }

    /// The file's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.out[13..17].copy_from_slice(&self.entries.to_le_bytes());
        let sum = Sha256::digest(&self.out);
        self.out.extend_from_slice(&sum);
        self.out
    }
}

/// Reads a snapshot file's bytes.
pub fn decode(bytes: &[u8]) -> Result<Snapshot, SnapshotError> {
    if bytes.len() < HEADER + CHECKSUM || &bytes[..4] != MAGIC {
        return Err(SnapshotError::Format("no DFLB header".into()));
    }
    if bytes[4] != VERSION {
        return Err(SnapshotError::Format(format!(
            "version {} (this build reads {VERSION})",
            bytes[4]
        )));
    }
    let (body, sum) = bytes.split_at(bytes.len() - CHECKSUM);
    if Sha256::digest(body).as_slice() != sum {
        return Err(SnapshotError::Checksum);
    }
    let mut r = Reader { b: body, at: 5 };
    let taken_ms = r.u64().unwrap_or_default();
    let count = r.u32().unwrap_or_default() as usize;
    if count > (body.len() - HEADER) / MIN_ENTRY {
        return Err(SnapshotError::Format(format!(
            "{count} entries cannot fit in {} bytes",
            body.len()
        )));
    }
    let mut s = Snapshot {
        taken_ms,
        ..Snapshot::default()
    };
    for index in 0..count {
        let bad = |what| SnapshotError::Entry { index, what };
        let tag = r.u8().ok_or(bad("cut short"))?;
        let addr = match tag & !TAG_PREFIX {
            TAG_V4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>().ok_or(bad("cut short"))?)),
            TAG_V6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>().ok_or(bad("cut short"))?)),
            _ => return Err(bad("unknown tag")),
        };
        let prefix = if tag & TAG_PREFIX != 0 {
            let len = r.u8().ok_or(bad("cut short"))?;
            Some(IpNet::new(addr, len).map_err(|_| bad("prefix length too long"))?)
        } else {
            None
        };
        let last_ms = r.u64().ok_or(bad("cut short"))?;
        let present = r.u16().ok_or(bad("cut short"))?;
        let zero = r.u16().ok_or(bad("cut short"))?;
        if present >> SLOTS != 0 || zero & !present != 0 {
            return Err(bad("slot masks out of range"));
        }
        let mut baselines = [Baseline::default(); SLOTS];
        let mut sound = true;
        for (i, b) in baselines.iter_mut().enumerate() {
            if present & (1 << i) == 0 {
                continue;
            }
            if zero & (1 << i) == 0 {
                b.mean = r.f32().ok_or(bad("cut short"))?;
                b.var = r.f32().ok_or(bad("cut short"))?;
            }
            b.learned_ms = r.u32().ok_or(bad("cut short"))?;
            sound &= b.mean.is_finite() && b.var.is_finite() && b.mean >= 0.0 && b.var >= 0.0;
        }
        if !sound {
            s.skipped += 1;
            continue;
        }
        let learned = Learned { last_ms, baselines };
        match prefix {
            Some(p) => s.prefixes.push((p.trunc(), learned)),
            None => s.targets.push((addr, learned)),
        }
    }
    if r.at != body.len() {
        return Err(SnapshotError::Format(format!(
            "{} bytes after the last entry",
            body.len() - r.at
        )));
    }
    Ok(s)
}

struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        let end = self.at.checked_add(N)?;
        let a = self.b.get(self.at..end)?.try_into().ok()?;
        self.at = end;
        Some(a)
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|a| a[0])
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_le_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    fn f32(&mut self) -> Option<f32> {
        self.array().map(f32::from_le_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn learned(seed: u32) -> [Baseline; SLOTS] {
        let mut b = [Baseline::default(); SLOTS];
        for (i, x) in b.iter_mut().enumerate() {
            match (seed as usize + i) % 3 {
                0 => {}
                1 => x.learned_ms = 60_000 + seed,
                _ => {
                    *x = Baseline {
                        mean: 100.0 * i as f32 + seed as f32,
                        var: 25.5,
                        learned_ms: 300_000,
                    }
                }
            }
        }
        b
    }

    #[test]
    fn addresses_and_prefixes_of_both_families_read_back_as_written() {
        let mut w = Writer::new(1_000_000, 4);
        let a4: IpAddr = "203.0.113.7".parse().unwrap();
        let a6: IpAddr = "2001:db8::7".parse().unwrap();
        let p4: IpNet = "203.0.113.0/24".parse().unwrap();
        let p6: IpNet = "2001:db8::/64".parse().unwrap();
        w.target(a4, 900_000, &learned(1));
        w.target(a6, 950_000, &learned(2));
        w.prefix(p4, 990_000, &learned(3));
        w.prefix(p6, 999_000, &learned(4));
        // Nothing learned: not written.
        w.target(
            "203.0.113.8".parse().unwrap(),
            1,
            &[Baseline::default(); SLOTS],
        );
        assert_eq!(w.len(), 4);
        let bytes = w.finish();
        let s = decode(&bytes).unwrap();
        assert_eq!(s.taken_ms, 1_000_000);
        assert_eq!(
            s.targets,
            vec![
                (
                    a4,
                    Learned {
                        last_ms: 900_000,
                        baselines: learned(1)
                    }
                ),
                (
                    a6,
                    Learned {
                        last_ms: 950_000,
                        baselines: learned(2)
                    }
                ),
            ]
        );
        assert_eq!(s.prefixes.len(), 2);
        assert_eq!(s.prefixes[0].0, p4);
        assert_eq!(s.prefixes[1].1.baselines, learned(4));
        assert_eq!(s.skipped, 0);
    }

    #[test]
    fn zero_baselines_take_four_bytes_and_an_empty_snapshot_reads() {
        let mut w = Writer::new(5, 4);
        let mut b = [Baseline::default(); SLOTS];
        for x in &mut b {
            x.learned_ms = 1000;
        }
        w.target("192.0.2.1".parse().unwrap(), 5, &b);
        let one = w.finish();
        assert_eq!(one.len(), HEADER + MIN_ENTRY + 4 * SLOTS + CHECKSUM);
        assert_eq!(decode(&one).unwrap().targets[0].1.baselines, b);
        let empty = Writer::new(7, 4).finish();
        assert_eq!(
            decode(&empty).unwrap(),
            Snapshot {
                taken_ms: 7,
                ..Snapshot::default()
            }
        );
    }

    #[test]
    fn damage_is_refused_saying_what_and_values_no_baseline_holds_are_skipped() {
        let mut w = Writer::new(1, 4);
        w.target("192.0.2.1".parse().unwrap(), 1, &learned(5));
        let good = w.finish();
        assert!(matches!(decode(&good[..10]), Err(SnapshotError::Format(_))));
        let mut v = good.clone();
        v[4] = 9;
        assert_eq!(
            decode(&v).unwrap_err().to_string(),
            "not a baseline snapshot: version 9 (this build reads 1)"
        );
        let mut flipped = good.clone();
        flipped[HEADER + 3] ^= 1;
        assert_eq!(decode(&flipped), Err(SnapshotError::Checksum));
        let cut = &good[..good.len() - 1];
        assert!(decode(cut).is_err());
        // A valid checksum over a lying count or a bad tag: refused, not read past.
        let reseal = |mut body: Vec<u8>| {
            body.truncate(body.len() - CHECKSUM);
            let sum = Sha256::digest(&body);
            body.extend_from_slice(&sum);
            body
        };
        let mut lying = good.clone();
        lying[13..17].copy_from_slice(&2u32.to_le_bytes());
        assert!(matches!(
            decode(&reseal(lying)),
            Err(SnapshotError::Entry { index: 1, .. })
        ));
        let mut huge = good.clone();
        huge[13..17].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            decode(&reseal(huge)),
            Err(SnapshotError::Format(_))
        ));
        let mut tag = good.clone();
        tag[HEADER] = 5;
        assert_eq!(
            decode(&reseal(tag)).unwrap_err().to_string(),
            "entry 0: unknown tag"
        );
        // A NaN mean: the entry is left out, the rest read.
        let mut nan = learned(5);
        nan[2] = Baseline {
            mean: f32::NAN,
            var: 1.0,
            learned_ms: 1,
        };
        let mut w = Writer::new(1, 4);
        w.target("192.0.2.1".parse().unwrap(), 1, &nan);
        w.target("192.0.2.2".parse().unwrap(), 1, &learned(6));
        let s = decode(&w.finish()).unwrap();
        assert_eq!((s.targets.len(), s.skipped), (1, 1));
    }

    /// Slots with nothing learned read back as nothing at all.
    fn cleaned<K>(v: Vec<(K, Learned)>) -> Vec<(K, Learned)> {
        v.into_iter()
            .map(|(k, mut l)| {
                for b in &mut l.baselines {
                    if b.learned_ms == 0 {
                        *b = Baseline::default();
                    }
                }
                (k, l)
            })
            .collect()
    }

    proptest! {
        #[test]
        fn any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = decode(&bytes);
            // The same bytes under a valid header and checksum reach the entry reader.
            let mut body = Writer::new(0, 4).finish();
            body.truncate(HEADER);
            let n = (bytes.len() / MIN_ENTRY) as u32;
            body[13..17].copy_from_slice(&n.to_le_bytes());
            body.extend_from_slice(&bytes);
            let sum = Sha256::digest(&body);
            body.extend_from_slice(&sum);
            let _ = decode(&body);
        }

        #[test]
        fn what_is_written_reads_back(
            entries in proptest::collection::vec(
                (any::<[u8; 16]>(), any::<bool>(), 0u8..=128, any::<u64>(),
                 proptest::collection::vec((0f32..1e9, 0f32..1e12, any::<u32>()), SLOTS)),
                0..40,
            ),
        ) {
            let mut w = Writer::new(42, 4);
            let mut want_t = Vec::new();
            let mut want_p = Vec::new();
            for (octets, prefix, len, last, slots) in entries {
                let mut b = [Baseline::default(); SLOTS];
                for (x, (m, v, l)) in b.iter_mut().zip(slots) {
                    *x = Baseline { mean: m, var: v, learned_ms: l };
                }
                if b.iter().all(|x| x.learned_ms == 0) {
                    continue;
                }
                let addr = IpAddr::V6(Ipv6Addr::from(octets));
                if prefix {
                    let net = IpNet::new(addr, len).unwrap().trunc();
                    w.prefix(net, last, &b);
                    want_p.push((net, Learned { last_ms: last, baselines: b }));
                } else {
                    w.target(addr, last, &b);
                    want_t.push((addr, Learned { last_ms: last, baselines: b }));
                }
            }
            let s = decode(&w.finish()).unwrap();
            prop_assert_eq!(s.targets, cleaned(want_t));
            prop_assert_eq!(s.prefixes, cleaned(want_p));
        }
    }
}
