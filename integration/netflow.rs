//! NetFlow and IPFIX from a real exporter, end to end: pmacct's `pmacctd` (`nfprobe`) watches the
//! victim's link in a network namespace and exports what really crosses it; the real `deflect run`
//! collects, detects the NTP-shaped flood, announces the FlowSpec rule to a live GoBGP and
//! withdraws it when the flood is over. IPFIX, NetFlow v9 sampled 1 in 10 (the sampling announced
//! by the exporter, not configured) and NetFlow v5. The datagrams are captured with dumpcap:
//! tshark's reading of them (its own cflow dissector) counts the same records deflect counted, and
//! `deflect replay` of the capture gives the same attack and rule. (`integration/netflow_rig`.)

#[path = "netflow_rig/mod.rs"]
mod rig;

use std::process::Command;
use std::time::{Duration, Instant};

use rig::{Export, Rig, VICTIM};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(30);

/// The one exporter's counters.
fn edge(r: &Rig) -> Value {
    r.api("/api/v1/netflow")["exporters"][0].clone()
}

/// Floods at `pps` for `seconds` through an export of `e`; returns the attack (checked: the only
/// one, amplification from port 123, node `netflow:edge`; a flood again within the probation is
/// the same attack), the highest rate it was estimated at during this flood, and the time from the
/// flood's start to the rule in GoBGP.
fn flood_until_rule(r: &mut Rig, e: Export, pps: u32, seconds: f64) -> (Value, u64, Duration) {
    r.export(e).unwrap();
    let started = Instant::now();
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (sent, delay) = std::thread::scope(|s| {
        let h = s.spawn(|| r.flood(pps, seconds));
        let delay = r.until_rule(started, WAIT);
        (h.join().unwrap(), delay)
    });
    let sent = sent.unwrap();
    let delay = delay.unwrap_or_else(|| {
        panic!(
            "no rule within {WAIT:?} ({sent} sent): {:?}\n{}\n{}",
            r.rules(),
            r.api("/api/v1/netflow"),
            r.log()
        )
    });
    let attacks = r.api("/api/v1/attacks?all=true");
    let list = attacks.as_array().unwrap();
    assert_eq!(list.len(), 1, "one attack: {attacks}");
    let a = list[0].clone();
    assert_eq!(a["vector"], "amplification", "{a}");
    assert_eq!(a["signature"]["sports"], serde_json::json!([123]), "{a}");
    assert_eq!(a["node"], "netflow:edge", "{a}");
    assert_eq!(a["target"], VICTIM, "{a}");
    r.until_withdrawn(WAIT)
        .unwrap_or_else(|e| panic!("{e}\n{}", r.log()));
    r.stop_export();
    let a = r.api(&format!("/api/v1/attacks/{}", a["id"]));
    let peak = a["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p[0].as_u64().unwrap_or(0) >= started_ms)
        .filter_map(|p| p[1].as_u64())
        .max()
        .unwrap_or(0);
    (a, peak, delay)
}

#[test]
fn a_real_exporter_s_flood_becomes_a_rule_and_leaves() {
    if let Some(why) = rig::unavailable() {
        panic!("the NetFlow rig cannot run: {why}");
    }
    let mut r = Rig::start("e2e").unwrap();
    let capture = r.dir.join("ipfix.pcapng");
    r.capture(&capture).unwrap();

    // IPFIX, unsampled: 8,000 pps for 8 s.
    let (a, peak, delay) = flood_until_rule(
        &mut r,
        Export {
            version: 10,
            sampling: None,
        },
        8000,
        8.0,
    );
    assert!(
        (5000..=12_000).contains(&peak),
        "estimated {peak} pps for 8k: {a}"
    );
    eprintln!("IPFIX at 1 s timeouts: rule {delay:?} after the flood's start, peak {peak} pps");
    r.stop_capture();

    // tshark's own reading of the datagrams: the same records, and the packets they count.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&capture)
        .args(["-d", &format!("udp.port=={},cflow", r.collector_port)])
        .args(["-T", "fields", "-e", "cflow.packets", "-e", "cflow.srcport"])
        .output()
        .expect("tshark runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let mut tshark_records = 0u64;
    let mut from_123 = 0u64;
    for line in text.lines() {
        let mut f = line.split('\t');
        let packets: Vec<u64> = f
            .next()
            .unwrap_or("")
            .split(',')
            .filter_map(|p| p.parse().ok())
            .collect();
        let sports: Vec<&str> = f.next().unwrap_or("").split(',').collect();
        tshark_records += packets.len() as u64;
        from_123 += packets
            .iter()
            .zip(&sports)
            .filter(|(_, s)| **s == "123")
            .map(|(p, _)| p)
            .sum::<u64>();
    }
    // The collector publishes its figures once an interval: the last datagrams (the exporter's
    // flush as it stopped) are counted within one, so wait for the count to settle, then compare.
    let mut e = edge(&r);
    let settled = Instant::now() + Duration::from_secs(5);
    while e["records"].as_u64() != Some(tshark_records) && Instant::now() < settled {
        std::thread::sleep(Duration::from_millis(100));
        e = edge(&r);
    }
    assert_eq!(
        e["records"].as_u64(),
        Some(tshark_records),
        "tshark and deflect count the same records: {e}"
    );
    assert_eq!(e["decode_errors"], 0, "{e}");
    assert!(e["ipfix"].as_u64().unwrap() > 5, "{e}");
    assert!(e["templates"].as_u64().unwrap() >= 1, "{e}");
    let delay_ms = e["delay_ms"].as_u64().unwrap();
    assert!(
        delay_ms <= 3000,
        "learned delay {delay_ms} ms at 1 s timeouts: {e}"
    );
    assert!(
        from_123 >= 60_000,
        "tshark: {from_123} packets from port 123"
    );

    // The capture, replayed with the same configuration: the same attack and rule.
    let out = Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args([
            "replay",
            "--json",
            "--netflow-port",
            &r.collector_port.to_string(),
            "--config",
        ])
        .arg(r.dir.join("deflect.yaml"))
        .arg(&capture)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ra = replayed["attacks"].as_array().unwrap();
    assert_eq!(ra.len(), 1, "{}", replayed["attacks"]);
    assert_eq!(ra[0]["vector"], "amplification");
    assert_eq!(
        ra[0]["node"], "netflow:edge",
        "the configured exporter's name"
    );
    let rm = replayed["mitigations"].as_array().unwrap();
    assert_eq!(rm.len(), 1, "{}", replayed["mitigations"]);
    assert_eq!(
        rm[0]["rule"],
        format!("dst {VICTIM}/32 proto udp sport 123 then discard")
    );

    // NetFlow v9, sampled 1 in 10 by the exporter, which says so in its options: the estimate is
    // of the real rate, not a tenth of it.
    let (a, peak, delay) = flood_until_rule(
        &mut r,
        Export {
            version: 9,
            sampling: Some(10),
        },
        8000,
        8.0,
    );
    assert!(
        (4000..=14_000).contains(&peak),
        "v9 1:10: estimated {peak} pps for 8k: {a}"
    );
    let e = edge(&r);
    assert_eq!(e["sampling_rate"], 10, "{e}");
    eprintln!("NetFlow v9 1:10: rule {delay:?} after the flood's start, peak {peak} pps");

    // NetFlow v5.
    let (a, peak, delay) = flood_until_rule(
        &mut r,
        Export {
            version: 5,
            sampling: None,
        },
        8000,
        8.0,
    );
    assert!(
        (5000..=12_000).contains(&peak),
        "v5: estimated {peak} pps for 8k: {a}"
    );
    let e = edge(&r);
    assert!(
        e["v5"].as_u64().unwrap() > 5 && e["v9"].as_u64().unwrap() > 5,
        "{e}"
    );
    assert_eq!(e["decode_errors"], 0, "{e}");
    eprintln!("NetFlow v5: rule {delay:?} after the flood's start, peak {peak} pps");
}
