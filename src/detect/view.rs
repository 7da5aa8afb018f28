//! What a Prometheus scrape shows of the traffic: the busiest targets and the targets under
//! attack, each once. The work is bounded by what is shown, not by the table: one pass over the
//! targets keeping a heap of the `top` busiest (no sort of 100,000 addresses), the attacked ones
//! found from the attacks under way.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::IpAddr;

use super::{Detector, TargetView};

/// The targets a scrape shows.
#[derive(Debug, Clone, Default)]
pub struct Traffic {
    /// The busiest targets (up to `top`, by packets per second, the busiest first), then the
    /// loudest of those under an active attack that are not among them (up to `attacked`); each
    /// with whether it is under an active attack.
    pub targets: Vec<(TargetView, bool)>,
    /// Addresses tracked and under an active attack: all of them, past the cap too.
    pub under_attack: usize,
}

impl Detector {
    /// The addresses of the `limit` busiest targets, the busiest first (ties: the lower address).
    pub(super) fn busiest(&self, limit: usize) -> Vec<IpAddr> {
        top_by(self.targets.iter().map(|(a, t)| (t.pps, *a)), limit)
    }

    /// The busiest `top` targets and up to `attacked` more under an active attack, the loudest
    /// first: at most `top + attacked` targets, whatever the table holds.
    pub fn traffic(&self, top: usize, attacked: usize) -> Traffic {
        // Under attack: an address attack under way (a prefix attack's addresses are its
        // prefix's, not theirs). From the attacks, a handful, not from the whole table.
        let mut hit: Vec<IpAddr> = self
            .attacks
            .values()
            .filter(|a| a.is_active() && a.prefix.is_none())
            .map(|a| a.target)
            .filter(|a| self.targets.contains_key(a))
            .collect();
        hit.sort_unstable();
        hit.dedup();
        let mut shown = self.busiest(top);
        let loudest = top_by(
            hit.iter()
                .filter(|a| !shown.contains(a))
                .filter_map(|a| self.targets.get(a).map(|t| (t.pps, *a))),
            attacked,
        );
        shown.extend(loudest);
        Traffic {
            targets: shown
                .into_iter()
                .filter_map(|a| Some((self.target(a)?, hit.binary_search(&a).is_ok())))
                .collect(),
            under_attack: hit.len(),
        }
    }
}

/// The addresses of the `n` highest rates, highest first (ties: the lower address first). A heap
/// of the best `n` so far: most items cost one comparison with its least.
fn top_by(items: impl Iterator<Item = (u32, IpAddr)>, n: usize) -> Vec<IpAddr> {
    if n == 0 {
        return Vec::new();
    }
    // Greater is busier: more packets, or as many and a lower address.
    let mut heap: BinaryHeap<Reverse<(u32, Reverse<IpAddr>)>> = BinaryHeap::with_capacity(n);
    for (pps, addr) in items {
        let k = (pps, Reverse(addr));
        if heap.len() < n {
            heap.push(Reverse(k));
        } else if let Some(mut least) = heap.peek_mut() {
            if k > least.0 {
                *least = Reverse(k);
            }
        }
    }
    // Ascending in `Reverse`: the busiest first.
    heap.into_sorted_vec()
        .into_iter()
        .map(|Reverse((_, Reverse(a)))| a)
        .collect()
}

/// A detector for tests of the view: one group `group` over 10.0.0.0/8 of `max` addresses, NTP
/// answers above 5,000 pps an attack, a long warm-up, no prefix detection (many addresses attacked
/// at once in one /24 would be one carpet).
#[cfg(test)]
pub(crate) fn test_detector(group: &str, max: usize) -> Detector {
    use std::time::Duration;

    use crate::detect::{Class, Settings, Thresholds};
    let mut th = Thresholds {
        warmup: Duration::from_secs(3600),
        ..Thresholds::default()
    };
    th.floor_pps[Class::UdpAmp.index()] = 5000.0;
    th.prefix.enabled = false;
    Detector::new(
        Settings {
            groups: vec![(group.into(), vec!["10.0.0.0/8".parse().unwrap()], th)],
            max_targets: max,
            max_targets_per_node: max,
            ..Settings::default()
        },
        1,
    )
}

/// One second's report from `web1` on `targets`.
#[cfg(test)]
pub(crate) fn test_report(targets: Vec<crate::telemetry::Target>) -> crate::telemetry::Report {
    crate::telemetry::Report {
        node: "web1".into(),
        interval_ms: 1000,
        one_in: 1,
        targets,
        ..crate::telemetry::Report::default()
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;
    use crate::detect::Class;
    use crate::telemetry::{Flow, Report, Target};

    /// The `n`-th address of 10.0.0.0/8.
    fn addr(n: u32) -> IpAddr {
        IpAddr::from(std::net::Ipv4Addr::from((10u32 << 24) + n))
    }

    fn detector(max: usize) -> Detector {
        super::test_detector("web", max)
    }

    /// One report: address `i` gets `pps(i)` of HTTPS ACKs, and NTP answers from the
    /// `flood` addresses (50,000 pps: above the 5,000 floor).
    fn report(n: u32, pps: impl Fn(u32) -> u64, flood: impl Fn(u32) -> bool) -> Report {
        let targets = (0..n)
            .map(|i| {
                let mut flows = vec![Flow {
                    proto: 6,
                    dport: Some(443),
                    tcp_flags: Some(0x10),
                    pps: pps(i),
                    bps: pps(i) * 8000,
                    ..Flow::default()
                }];
                if flood(i) {
                    flows.push(Flow {
                        proto: 17,
                        sport: Some(123),
                        pps: 50_000,
                        bps: 50_000 * 4000,
                        ..Flow::default()
                    });
                }
                Target::of_flows(addr(i), flows)
            })
            .collect();
        super::test_report(targets)
    }

    #[test]
    fn the_busiest_are_chosen_as_a_full_sort_would() {
        let rates = [5u32, 9, 9, 0, 7, 9, 1, 5];
        let items = || rates.iter().enumerate().map(|(i, p)| (*p, addr(i as u32)));
        let mut sorted: Vec<(u32, IpAddr)> = items().collect();
        sorted.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        for n in 0..=rates.len() + 2 {
            let want: Vec<IpAddr> = sorted.iter().take(n).map(|x| x.1).collect();
            assert_eq!(top_by(items(), n), want, "top {n}");
        }
    }

    #[test]
    fn the_busiest_and_the_attacked_are_shown_each_once_with_their_rates() {
        let mut d = detector(1000);
        // 100 addresses at 1000 + i pps; 3 of the quiet ones flooded, and one of the busiest.
        let flooded = |i: u32| [2, 5, 40, 99].contains(&i);
        d.ingest("web1", &report(100, |i| 1000 + i as u64, flooded), 1000);
        let t = d.traffic(5, 10);
        assert_eq!(t.under_attack, 4);
        let shown: Vec<(IpAddr, bool)> = t.targets.iter().map(|(v, a)| (v.addr, *a)).collect();
        // The top 5 by pps (the flooded 99 first), then the attacked not among them, loudest
        // first (the flood is the same; ACKs decide).
        assert_eq!(
            shown,
            [
                (addr(99), true),
                (addr(40), true),
                (addr(5), true),
                (addr(2), true),
                (addr(98), false),
            ]
        );
        let (v, _) = &t.targets[0];
        assert_eq!((v.pps, v.group.as_str()), (51_099, "web"));
        let class = |c: Class| v.classes.iter().find(|x| x.class == c).unwrap();
        assert_eq!(class(Class::UdpAmp).pps, 50_000);
        assert_eq!(class(Class::UdpAmp).threshold_pps, 5000.0);
        assert_eq!(class(Class::TcpAck).pps, 1099);
        assert_eq!(class(Class::Udp).pps, 0);
        // The top 2 and the attacked beyond it: .99 and .40, then .5 and .2 (attacked), not .98.
        let t = d.traffic(2, 10);
        let shown: Vec<IpAddr> = t.targets.iter().map(|(v, _)| v.addr).collect();
        assert_eq!(shown, [addr(99), addr(40), addr(5), addr(2)]);
        // A cap on the attacked: the loudest one only.
        let t = d.traffic(1, 1);
        let shown: Vec<IpAddr> = t.targets.iter().map(|(v, _)| v.addr).collect();
        assert_eq!(shown, [addr(99), addr(40)]);
        assert_eq!(t.under_attack, 4, "counted past the cap");
        // Quiet again (the cooldown passed): nobody is under attack, only the busiest are shown.
        for s in 1..=40 {
            d.ingest(
                "web1",
                &report(100, |i| 1000 + i as u64, |_| false),
                1000 + s * 1000,
            );
        }
        let t = d.traffic(3, 10);
        assert_eq!(t.under_attack, 0);
        let shown: Vec<(IpAddr, bool)> = t.targets.iter().map(|(v, a)| (v.addr, *a)).collect();
        assert_eq!(
            shown,
            [(addr(99), false), (addr(98), false), (addr(97), false)]
        );
    }

    #[test]
    fn what_is_shown_is_bounded_however_many_targets_and_attacks() {
        let mut d = detector(10_000);
        // 10,000 addresses, 1,000 of them flooded (every tenth).
        d.ingest(
            "web1",
            &report(10_000, |i| 100 + i as u64, |i| i % 10 == 3),
            1000,
        );
        assert_eq!(d.target_count(), 10_000);
        let t = d.traffic(20, 500);
        assert_eq!(t.under_attack, 1000);
        assert_eq!(t.targets.len(), 520);
        // The top 20 are the busiest of all (the flooded ones lead), the 500 the loudest of the
        // attacked beyond them.
        assert!(t.targets.iter().all(|(_, attacked)| *attacked));
        let pps: Vec<u64> = t.targets.iter().map(|(v, _)| v.pps).collect();
        assert!(pps.windows(2).all(|w| w[0] >= w[1]), "{pps:?}");
        assert_eq!(t.targets[519].0.addr, addr(9993 - 519 * 10));
        // Fewer attacks than the cap: every one, and the top.
        let t = d.traffic(20, 5000);
        assert_eq!(t.targets.len(), 1000);
    }
}
