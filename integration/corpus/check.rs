//! The scenario corpus through `deflect replay`: each recording's verdict against what it must be.
//! Shared by the test (`integration/replay.rs`, fails on any miss) and the bench
//! (`benches/corpus.rs`, prints the table).
//!
//! A verdict is right when the attacks found are exactly the ones expected (vector, target, and
//! every part of the signature the scenario names: protocol, ports, TCP flags, fragments, service,
//! sources), each detected within two intervals of its start, and the mitigations made are exactly
//! the expected ones (kind, and the rule where named). A legitimate shape must give no attack and
//! no mitigation. A pulse wave must stay one attack whose rule outlives its last pulse.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

/// The interval the recordings are cut in, and the detection delay allowed (two of them).
pub const INTERVAL_MS: u64 = 1000;
pub const MAX_DELAY_MS: u64 = 2 * INTERVAL_MS;

/// One scenario's outcome.
#[derive(Debug)]
pub struct Row {
    pub name: String,
    pub kind: String,
    pub format: String,
    /// What was found: attacks as `vector target [signature]`.
    pub found: Vec<String>,
    /// Rules made.
    pub rules: Vec<String>,
    /// Detection delay per expected attack, ms from its start.
    pub delays: Vec<u64>,
    /// What is wrong; empty when right.
    pub problems: Vec<String>,
    pub replay_ms: u128,
}

/// Generates the corpus into `dir` (all scenarios, or those named).
pub fn generate(dir: &Path, only: &[&str]) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("integration/corpus/corpus.py");
    let st = Command::new("python3")
        .arg(&script)
        .arg(dir)
        .args(only)
        .status()
        .expect("python3 runs the corpus generator");
    assert!(st.success(), "corpus.py failed");
    let m = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest");
    serde_json::from_str::<Vec<Value>>(&m).expect("manifest is JSON")
}

pub fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("deflect-corpus-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Replays one scenario and judges it.
pub fn judge(dir: &Path, sc: &Value, extra: &[&str]) -> Row {
    let name = sc["name"].as_str().unwrap_or("?").to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_deflect"));
    cmd.arg("replay").arg("--json").env("RUST_LOG", "error");
    for a in sc["args"].as_array().into_iter().flatten() {
        cmd.arg(a.as_str().unwrap_or_default());
    }
    cmd.args(extra)
        .arg(dir.join(sc["file"].as_str().unwrap_or_default()));
    let t = Instant::now();
    let out = cmd.output().expect("deflect replay runs");
    let replay_ms = t.elapsed().as_millis();
    let mut row = Row {
        name,
        kind: sc["kind"].as_str().unwrap_or_default().to_string(),
        format: sc["format"].as_str().unwrap_or_default().to_string(),
        found: Vec::new(),
        rules: Vec::new(),
        delays: Vec::new(),
        problems: Vec::new(),
        replay_ms,
    };
    if !out.status.success() {
        row.problems.push(format!(
            "replay failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return row;
    }
    let v: Value = match serde_json::from_slice(&out.stdout) {
        Ok(v) => v,
        Err(e) => {
            row.problems.push(format!("replay output is not JSON: {e}"));
            return row;
        }
    };
    let attacks = v["attacks"].as_array().cloned().unwrap_or_default();
    let mitigations = v["mitigations"].as_array().cloned().unwrap_or_default();
    for a in &attacks {
        row.found.push(format!(
            "{} {} {}",
            a["vector"].as_str().unwrap_or("?"),
            a["prefix"].as_str().or(a["target"].as_str()).unwrap_or("?"),
            a["signature"]
        ));
    }
    for m in &mitigations {
        row.rules.push(
            m["rule"]
                .as_str()
                .or(m["prefix"].as_str())
                .map(|r| format!("{} {r}", m["kind"].as_str().unwrap_or("?")))
                .unwrap_or_else(|| m.to_string()),
        );
    }
    let expect = &sc["expect"];
    let t0 = sc["t0_ms"].as_u64().unwrap_or(0);
    let want_attacks = expect["attacks"].as_array().cloned().unwrap_or_default();
    let want_mitigations = expect["mitigations"]
        .as_array()
        .cloned()
        .unwrap_or_default();

    // Attacks: each expected one found once, nothing else.
    let mut used = vec![false; attacks.len()];
    for w in &want_attacks {
        let hit = attacks
            .iter()
            .enumerate()
            .find(|(i, a)| !used[*i] && a["vector"] == w["vector"] && a["target"] == w["target"]);
        let Some((i, a)) = hit else {
            row.problems
                .push(format!("missed: {} on {}", w["vector"], w["target"]));
            continue;
        };
        used[i] = true;
        let sig = &a["signature"];
        if !w["prefix"].is_null() && a["prefix"] != w["prefix"] {
            row.problems.push(format!(
                "{}: prefix {} (want {})",
                w["vector"], a["prefix"], w["prefix"]
            ));
        }
        for key in ["proto", "service"] {
            if !w[key].is_null() && sig[key] != w[key] {
                row.problems.push(format!(
                    "{}: {key} {} (want {})",
                    w["vector"], sig[key], w[key]
                ));
            }
        }
        for key in ["sports", "dports"] {
            if w[key].is_null() {
                continue;
            }
            let got = sig[key].as_array().cloned().unwrap_or_default();
            if Value::Array(got.clone()) != w[key] {
                row.problems.push(format!(
                    "{}: {key} {:?} (want {})",
                    w["vector"], got, w[key]
                ));
            }
        }
        if !w["tcp_flags"].is_null() && sig["tcp_flags"] != w["tcp_flags"] {
            row.problems.push(format!(
                "{}: tcp_flags {} (want {})",
                w["vector"], sig["tcp_flags"], w["tcp_flags"]
            ));
        }
        if w["fragment"].as_bool() == Some(true) && sig["fragment"].as_bool() != Some(true) {
            row.problems
                .push(format!("{}: not marked as fragments", w["vector"]));
        }
        if let Some(want) = w["sources"].as_array() {
            let got = sig["sources"].as_array().cloned().unwrap_or_default();
            for s in want {
                if !got.contains(s) {
                    row.problems
                        .push(format!("{}: source {s} not in the signature", w["vector"]));
                }
            }
        }
        if let Some(start) = w["start"].as_u64() {
            let began = t0 + start * 1000;
            let at = a["started_ms"].as_u64().unwrap_or(0);
            let delay = at.saturating_sub(began);
            row.delays.push(delay);
            if at + INTERVAL_MS < began || delay > MAX_DELAY_MS {
                row.problems.push(format!(
                    "{}: detected {} ms after its start (at most {MAX_DELAY_MS})",
                    w["vector"],
                    at as i64 - began as i64
                ));
            }
        }
    }
    for (i, a) in attacks.iter().enumerate() {
        if !used[i] {
            row.problems.push(format!(
                "{}: {} on {} {}",
                if row.kind == "legit" {
                    "false positive"
                } else {
                    "unexpected"
                },
                a["vector"],
                a["target"],
                a["signature"]
            ));
        }
    }

    // Mitigations: exactly the expected ones.
    let mut used = vec![false; mitigations.len()];
    for w in &want_mitigations {
        let hit = mitigations.iter().enumerate().find(|(i, m)| {
            !used[*i] && m["kind"] == w["kind"] && (w["rule"].is_null() || m["rule"] == w["rule"])
        });
        match hit {
            Some((i, _)) => used[i] = true,
            None => row.problems.push(format!(
                "no mitigation {} {}",
                w["kind"],
                w["rule"].as_str().unwrap_or("")
            )),
        }
    }
    for (i, m) in mitigations.iter().enumerate() {
        if !used[i] {
            row.problems.push(format!(
                "extra mitigation: {} {}",
                m["kind"],
                m["rule"].as_str().or(m["prefix"].as_str()).unwrap_or("")
            ));
        }
    }
    // Every mitigation is withdrawn once the traffic is over (the replay runs until nothing waits).
    for m in &mitigations {
        if m["withdrawn_ms"].is_null() {
            row.problems
                .push(format!("mitigation {} never withdrawn", m["id"]));
        }
    }
    // A pulse wave: one rule, in place from the first pulse to past the last.
    if let Some(end) = expect["last_pulse_end"].as_u64() {
        let end_ms = t0 + end * 1000;
        for m in &mitigations {
            if m["withdrawn_ms"].as_u64().is_some_and(|w| w < end_ms) {
                row.problems
                    .push(format!("mitigation {} withdrawn between pulses", m["id"]));
            }
        }
    }
    row
}

/// The table, one line per scenario.
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<24} {:<7} {:<7} {:>6} {:<6}  {}\n",
        "scenario", "kind", "format", "delay", "ok", "verdict (attacks; rules)"
    );
    for r in rows {
        let delay = r
            .delays
            .iter()
            .max()
            .map_or("-".to_string(), |d| format!("{:.1}s", *d as f64 / 1000.0));
        let verdict = if r.found.is_empty() && r.rules.is_empty() {
            "no attack, no mitigation".to_string()
        } else {
            format!(
                "{}; {}",
                r.found
                    .iter()
                    .map(|f| f.split(" {").next().unwrap_or(f).to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                r.rules.join(", ")
            )
        };
        s += &format!(
            "{:<24} {:<7} {:<7} {:>6} {:<6}  {}\n",
            r.name,
            r.kind,
            r.format,
            delay,
            if r.problems.is_empty() { "yes" } else { "NO" },
            verdict
        );
        for p in &r.problems {
            s += &format!("{:<24}   ! {p}\n", "");
        }
    }
    s
}
