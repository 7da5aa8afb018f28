//! Indicator lists at scale: a million entries (single addresses and prefixes of /16 to /30, IPv4
//! and IPv6), loading time, memory, and lookups per second on one core.
//!
//! `cargo bench --bench ioc` prints the figures.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use deflect::ioc::List;
use rand::{Rng, SeedableRng};

mod support;
use support::rss_kib;

fn main() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let n = 1_000_000;
    let mut text = String::with_capacity(n * 20);
    for i in 0..n {
        if i % 10 == 9 {
            let a = Ipv6Addr::from(rng.random::<u128>());
            text.push_str(&format!("{a}/{}\n", rng.random_range(48..=128)));
        } else if i % 3 == 0 {
            let a = Ipv4Addr::from(rng.random::<u32>());
            text.push_str(&format!("{a}/{} ; SBL{i}\n", rng.random_range(16..=30)));
        } else {
            text.push_str(&format!("{}\n", Ipv4Addr::from(rng.random::<u32>())));
        }
    }
    let before = rss_kib("self");
    let t = Instant::now();
    let list = List::parse("bench", &text);
    let load = t.elapsed();
    drop(text);
    let after = rss_kib("self");
    eprintln!(
        "{} entries loaded in {:.0} ms: {} ranges after merging, {:.1} MB of ranges ({} KiB resident more than before)",
        list.entries,
        load.as_secs_f64() * 1e3,
        list.info().ranges,
        list.memory() as f64 / 1e6,
        after.saturating_sub(before)
    );
    let lookups = 20_000_000u64;
    let addrs: Vec<IpAddr> = (0..1 << 16)
        .map(|i| {
            if i % 10 == 0 {
                IpAddr::V6(Ipv6Addr::from(rng.random::<u128>()))
            } else {
                IpAddr::V4(Ipv4Addr::from(rng.random::<u32>()))
            }
        })
        .collect();
    let t = Instant::now();
    let mut hits = 0u64;
    for i in 0..lookups {
        if list.contains(black_box(addrs[(i as usize) & 0xffff])) {
            hits += 1;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    eprintln!(
        "{lookups} lookups in {secs:.2} s = {:.1} M lookups/s on one core ({hits} hits)",
        lookups as f64 / secs / 1e6
    );
}
