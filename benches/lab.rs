//! The lab's figures: from the first packet of a real flood to the rule being visible in each
//! router, over 20 attacks, with probe intervals of 1 s and 100 ms.
//!
//! `cargo bench --bench lab` (as root, with bird2 and gobgpd installed). Each attack: an NTP-style
//! flood (15k packets a second from source port 123) starts in the attacker's namespace; BIRD's
//! table is polled every 5 ms with `birdc`, GoBGP is watched with `gobgp monitor global rib`
//! (its updates are timestamped as they arrive); the flood stops once both have the rule, and the
//! next attack starts once both have withdrawn it. Latency = time seen − time the first packet left.
//! Goals: p99 under 1 s at a 1 s interval, under 250 ms at 100 ms.

#[path = "../integration/lab_rig/mod.rs"]
#[allow(dead_code)]
mod lab_rig;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use lab_rig::{Flood, Kind, Lab, poll};

const ATTACKS: usize = 20;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn run(interval: &str, id: &str) -> Option<(Vec<Duration>, Vec<Duration>)> {
    let lab = match Lab::up(
        id,
        &[
            ("LAB_INTERVAL", interval),
            ("LAB_HOLD", "1s"),
            ("LAB_COOLDOWN", "1s"),
        ],
    ) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("lab: {e}");
            return None;
        }
    };
    // GoBGP's own view, as it changes.
    let mut monitor = Command::new("ip")
        .args([
            "netns",
            "exec",
            &lab.ns("gob"),
            "gobgp",
            "-p",
            "50051",
            "monitor",
            "global",
            "rib",
            "-a",
            "ipv4-flowspec",
            "-j",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let (tx, rx) = mpsc::channel::<(Instant, String)>();
    let out = monitor.stdout.take()?;
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    // Baselines learn the quiet victim first.
    std::thread::sleep(Duration::from_secs(6));
    let (mut bird, mut gobgp) = (Vec::new(), Vec::new());
    for i in 0..ATTACKS {
        while rx.try_recv().is_ok() {}
        let flood = Flood::start(&lab, Kind::Ntp, 15_000, Duration::from_secs(20));
        let (mut t_bird, mut t_gobgp) = (None, None);
        poll(Duration::from_secs(15), || {
            if t_bird.is_none() && lab.bird_has_ntp() {
                t_bird = Some(Instant::now());
            }
            while let Ok((t, line)) = rx.try_recv() {
                if t_gobgp.is_none()
                    && line.contains("192.0.2.2")
                    && !line.contains("\"withdrawal\":true")
                {
                    t_gobgp = Some(t);
                }
            }
            (t_bird.is_some() && t_gobgp.is_some()).then_some(())
        });
        let (_, first) = flood.stop();
        match (t_bird, t_gobgp) {
            (Some(b), Some(g)) => {
                bird.push(b.saturating_duration_since(first));
                gobgp.push(g.saturating_duration_since(first));
            }
            _ => eprintln!("attack {i}: a router never showed the rule"),
        }
        if poll(Duration::from_secs(30), || {
            (lab.bird_rules().is_empty() && lab.gobgp_rules().is_empty()).then_some(())
        })
        .is_none()
        {
            eprintln!("attack {i}: the rule was not withdrawn");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    Some((bird, gobgp))
}

fn main() {
    if let Some(why) = lab_rig::unavailable() {
        eprintln!("lab bench skipped: {why}");
        return;
    }
    for (interval, id, goal) in [("1s", "bl1", 1000.0), ("100ms", "bl2", 250.0)] {
        let Some((mut bird, mut gobgp)) = run(interval, id) else {
            continue;
        };
        for (router, v) in [("BIRD", &mut bird), ("GoBGP", &mut gobgp)] {
            if v.is_empty() {
                continue;
            }
            v.sort();
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            eprintln!(
                "probe interval {interval}: first packet → rule in {router}: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms over {} attacks (goal p99 < {goal:.0} ms)",
                ms(percentile(v, 0.5)),
                ms(percentile(v, 0.99)),
                ms(*v.last().unwrap()),
                v.len()
            );
        }
    }
}
