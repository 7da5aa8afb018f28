//! Arbitrary bytes as a probe's report, read as JSON and as MessagePack (the API's two encodings):
//! neither decoder panics, and whatever passes the API's checks goes through detection (twice, a
//! second apart, from two nodes) without a panic, and the tables (addresses, prefixes and their
//! rollups) stay within their limits.
#![no_main]

use std::time::Duration;

use deflect::detect::{Detector, Settings, Thresholds};
use deflect::telemetry::{Encoding, Report};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for e in [Encoding::Json, Encoding::MessagePack] {
        if let Ok(report) = e.decode(data) {
            judge(&report);
        }
    }
});

fn judge(report: &Report) {
    if report.validate().is_err() {
        return;
    }
    let th = Thresholds {
        warmup: Duration::ZERO,
        ..Thresholds::default()
    };
    let mut d = Detector::new(
        Settings {
            groups: vec![(
                "all".into(),
                vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()],
                th,
            )],
            max_targets: 64,
            max_targets_per_node: 32,
            max_prefixes: 16,
            upstream: vec!["sflow:edge".into()],
            ..Settings::default()
        },
        1,
    );
    let mut now = 1_000_000;
    for node in ["web1", "sflow:edge", "web1"] {
        d.ingest(node, report, now);
        now += 1000;
        let _ = d.check_stale(now);
        assert!(d.target_count() <= 64);
        assert!(d.prefix_count() <= 16);
    }
    let _ = d.top_targets(10);
}
