//! Indicator lists: addresses and prefixes known to be bad (a botnet's members, a DROP list),
//! matched against the sources that probes and sFlow sample.
//!
//! Each list is a file: one address or prefix per line, `#` or `;` starting a comment, so both plain
//! lists and the common DROP-list format (`192.0.2.0/24 ; SBL123`) read as they are. A list is held
//! as sorted, merged, non-overlapping ranges per family, and a lookup is one binary search per list:
//! a million prefixes take about 8 bytes each after merging, and millions of lookups a second.
//! The engine reloads a list when its file changes; a list that does not read keeps its last good
//! contents.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use ipnet::IpNet;
use serde::Serialize;
use tracing::{info, warn};

/// One list, compiled.
#[derive(Debug, Clone, Default)]
pub struct List {
    pub name: String,
    pub file: PathBuf,
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// Entries read (before merging).
    pub entries: usize,
    /// Lines that were not an address or prefix.
    pub bad_lines: usize,
    stamp: Option<(SystemTime, u64)>,
}

/// What the API shows of a list.
#[derive(Debug, Clone, Serialize)]
pub struct ListInfo {
    pub name: String,
    pub file: String,
    pub entries: usize,
    pub ranges: usize,
    pub bad_lines: usize,
}

fn merge<T: Ord + Copy>(mut v: Vec<(T, T)>, next: impl Fn(T) -> Option<T>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        match out.last_mut() {
            // Overlapping or adjacent: one range.
            Some(last) if next(last.1).is_none_or(|n| s <= n) => {
                if e > last.1 {
                    last.1 = e;
                }
            }
            _ => out.push((s, e)),
        }
    }
    out.shrink_to_fit();
    out
}

fn contains<T: Ord + Copy>(ranges: &[(T, T)], x: T) -> bool {
    // The last range starting at or before x.
    let i = ranges.partition_point(|r| r.0 <= x);
    i > 0 && ranges[i - 1].1 >= x
}

impl List {
    /// Parses a list's text.
    pub fn parse(name: &str, text: &str) -> List {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let (mut entries, mut bad_lines) = (0, 0);
        for line in text.lines() {
            let item = line.split(['#', ';']).next().unwrap_or("").trim();
            if item.is_empty() {
                continue;
            }
            let net = match item.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(a) => IpNet::from(a),
                    Err(_) => {
                        bad_lines += 1;
                        continue;
                    }
                },
            };
            entries += 1;
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
        }
        List {
            name: name.to_string(),
            file: PathBuf::new(),
            v4: merge(v4, |x: u32| x.checked_add(1)),
            v6: merge(v6, |x: u128| x.checked_add(1)),
            entries,
            bad_lines,
            stamp: None,
        }
    }

    pub fn contains(&self, a: IpAddr) -> bool {
        match a {
            IpAddr::V4(a) => contains(&self.v4, u32::from(a)),
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => contains(&self.v4, u32::from(v4)),
                None => contains(&self.v6, u128::from(a)),
            },
        }
    }

    /// Bytes the ranges take.
    pub fn memory(&self) -> usize {
        self.v4.capacity() * 8 + self.v6.capacity() * 32
    }

    pub fn info(&self) -> ListInfo {
        ListInfo {
            name: self.name.clone(),
            file: self.file.display().to_string(),
            entries: self.entries,
            ranges: self.v4.len() + self.v6.len(),
            bad_lines: self.bad_lines,
        }
    }
}

fn stamp(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}

/// Every list.
#[derive(Debug, Clone, Default)]
pub struct Lists {
    pub lists: Vec<List>,
}

impl Lists {
    /// Reads the configured lists `(name, file)`; a file that cannot be read is an empty list,
    /// retried on the next reload.
    pub fn load(config: &[(String, PathBuf)]) -> Lists {
        let mut out = Lists::default();
        for (name, file) in config {
            let mut l = List {
                name: name.clone(),
                file: file.clone(),
                ..List::default()
            };
            l.reload();
            out.lists.push(l);
        }
        out
    }

    /// Re-reads the lists whose files changed.
    pub fn refresh(&mut self) {
        for l in &mut self.lists {
            if stamp(&l.file) != l.stamp {
                l.reload();
            }
        }
    }

    /// The names of the lists that hold `a`.
    pub fn lookup(&self, a: IpAddr) -> impl Iterator<Item = &str> {
        self.lists
            .iter()
            .filter(move |l| l.contains(a))
            .map(|l| l.name.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.lists.is_empty()
    }
}

impl List {
    fn reload(&mut self) {
        let st = stamp(&self.file);
        match std::fs::read_to_string(&self.file) {
            Ok(text) => {
                let mut fresh = List::parse(&self.name, &text);
                fresh.file = self.file.clone();
                fresh.stamp = st;
                info!(
                    list = %self.name,
                    entries = fresh.entries,
                    ranges = fresh.v4.len() + fresh.v6.len(),
                    bad_lines = fresh.bad_lines,
                    "indicator list loaded"
                );
                *self = fresh;
            }
            Err(e) => {
                warn!(list = %self.name, file = %self.file.display(), "indicator list not read, the last contents stay: {e}");
                self.stamp = st;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_drop_formats() {
        let l = List::parse(
            "drop",
            "# Spamhaus DROP-like\n1.10.16.0/20 ; SBL256894\n192.0.2.7\n\n198.51.100.0/25 ; x\n198.51.100.128/25\n2001:db8:bad::/48 # v6\nnot-an-address\n",
        );
        assert_eq!((l.entries, l.bad_lines), (5, 1));
        // The two /25 halves merged into one range.
        assert_eq!(l.v4.len(), 3);
        for hit in [
            "1.10.16.1",
            "1.10.31.255",
            "192.0.2.7",
            "198.51.100.200",
            "2001:db8:bad::1",
            "::ffff:192.0.2.7",
        ] {
            assert!(l.contains(hit.parse().unwrap()), "{hit}");
        }
        for miss in [
            "1.10.32.0",
            "192.0.2.8",
            "198.51.101.0",
            "2001:db8:bae::1",
            "0.0.0.0",
        ] {
            assert!(!l.contains(miss.parse().unwrap()), "{miss}");
        }
    }

    #[test]
    fn a_changed_file_is_read_again_and_a_broken_one_keeps_the_last_contents() {
        let dir = std::env::temp_dir().join(format!("deflect-ioc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("list.txt");
        std::fs::write(&f, "192.0.2.1\n").unwrap();
        let mut lists = Lists::load(&[("l".into(), f.clone())]);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "198.51.100.1".parse().unwrap();
        assert_eq!(lists.lookup(a).collect::<Vec<_>>(), ["l"]);
        assert_eq!(lists.lookup(b).count(), 0);
        // A new size is a change, whatever the clock's resolution.
        std::fs::write(&f, "198.51.100.0/24\n# grown\n").unwrap();
        lists.refresh();
        assert_eq!(lists.lookup(a).count(), 0);
        assert_eq!(lists.lookup(b).collect::<Vec<_>>(), ["l"]);
        // Gone: the last contents stay.
        std::fs::remove_file(&f).unwrap();
        lists.refresh();
        assert_eq!(lists.lookup(b).collect::<Vec<_>>(), ["l"]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn ranges_at_the_edges_of_the_space() {
        let l = List::parse("e", "0.0.0.0/1\n128.0.0.0/1\n::/0\n");
        assert_eq!(l.v4, vec![(0, u32::MAX)]);
        assert!(l.contains("255.255.255.255".parse().unwrap()));
        assert!(l.contains("ffff::1".parse().unwrap()));
    }

    #[test]
    fn lookups_agree_with_a_naive_scan() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let nets: Vec<ipnet::Ipv4Net> = (0..2000)
            .map(|_| {
                ipnet::Ipv4Net::new(rng.random::<u32>().into(), rng.random_range(8..=32))
                    .unwrap()
                    .trunc()
            })
            .collect();
        let text: String = nets.iter().map(|n| format!("{n}\n")).collect();
        let l = List::parse("r", &text);
        for _ in 0..20_000 {
            let a: std::net::Ipv4Addr = rng.random::<u32>().into();
            let naive = nets.iter().any(|n| n.contains(&a));
            assert_eq!(l.contains(IpAddr::V4(a)), naive, "{a}");
        }
    }
}
