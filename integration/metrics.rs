//! `/metrics` from an in-process daemon: the traffic of the busiest and the attacked targets, and
//! the Grafana dashboard in `examples/grafana/deflect.json` built on names it really emits.

use std::collections::BTreeSet;
use std::net::IpAddr;

use deflect::config::Config;
use deflect::run::Daemon;
use deflect::telemetry::{Flow, Report, Target};

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("deflect-metrics-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("policies")).unwrap();
    d
}

/// Both collectors on (their families are in `/metrics` only then), a group whose name needs
/// escaping, the 3 busiest targets shown, no policies (nothing to mitigate here).
fn config(dir: &std::path::Path) -> String {
    format!(
        "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {state}\npolicies: {policies}\n\
         api:\n  listen: 127.0.0.1:0\n  metrics:\n    top_targets: 3\n\
         protected:\n  'edge \"a\"': [203.0.113.0/24]\n\
         detection:\n  thresholds:\n    prefix: {{ enabled: false }}\n\
         sflow:\n  listen: 127.0.0.1:0\n  agents:\n    - {{ address: 127.0.0.1, name: sw1 }}\n\
         netflow:\n  listen: [127.0.0.1:0]\n  exporters:\n    - {{ address: 127.0.0.1, name: edge1 }}\n",
        state = dir.join("state").display(),
        policies = dir.join("policies").display(),
    )
}

/// .2 to .10 get 100,000 + i pps of HTTPS ACKs (below their floor); .1 gets 50,000 pps of NTP
/// answers only (above the UDP amplification floor: an attack, and the least busy).
fn report(seq: u64) -> Report {
    let target = |i: u8, flow: Flow| Target {
        dst: IpAddr::from([203, 0, 113, i]),
        pps: flow.pps,
        bps: flow.bps,
        flows: vec![flow],
        sources: Vec::new(),
        trusted_pps: 0,
        trusted_bps: 0,
    };
    let mut targets: Vec<Target> = (2..=10u8)
        .map(|i| {
            let pps = 100_000 + i as u64;
            target(
                i,
                Flow {
                    proto: 6,
                    dport: Some(443),
                    tcp_flags: Some(0x10),
                    pps,
                    bps: pps * 8000,
                    ..Flow::default()
                },
            )
        })
        .collect();
    targets.push(target(
        1,
        Flow {
            proto: 17,
            sport: Some(123),
            pps: 50_000,
            bps: 50_000 * 4000,
            ..Flow::default()
        },
    ));
    Report {
        node: "web1".into(),
        seq,
        interval_ms: 1000,
        one_in: 1,
        targets,
        ..Report::default()
    }
}

/// The metric names an expression uses: every `deflect_…` word.
fn names_in(expr: &str, out: &mut BTreeSet<String>) {
    let word = |c: char| c.is_ascii_alphanumeric() || c == '_';
    let mut rest = expr;
    while let Some(at) = rest.find("deflect_") {
        let before = rest[..at].chars().next_back();
        let name: String = rest[at..].chars().take_while(|c| word(*c)).collect();
        if !before.is_some_and(word) {
            out.insert(name.clone());
        }
        rest = &rest[at + name.len()..];
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_show_the_busiest_and_attacked_targets_and_the_dashboard_uses_only_real_names() {
    let dir = temp_dir("traffic");
    let settings = Config::parse("test.yaml", &config(&dir))
        .unwrap()
        .check()
        .unwrap();
    let daemon = Daemon::start(settings, None).await.unwrap();
    for seq in 0..2 {
        daemon.engine.report("web1", report(seq)).await.unwrap();
    }
    let url = format!("http://{}/metrics", daemon.api_addr);
    let text = tokio::task::spawn_blocking(move || {
        ureq::get(&url)
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap()
    })
    .await
    .unwrap();

    // The 3 busiest and the attacked one, with their values; no other.
    let g = r#"group="edge \"a\"""#;
    for line in [
        format!("deflect_target_pps{{target=\"203.0.113.10\",{g}}} 100010"),
        format!("deflect_target_pps{{target=\"203.0.113.8\",{g}}} 100008"),
        format!("deflect_target_under_attack{{target=\"203.0.113.9\",{g}}} 0"),
        format!("deflect_target_pps{{target=\"203.0.113.1\",{g}}} 50000"),
        format!("deflect_target_bps{{target=\"203.0.113.1\",{g}}} 200000000"),
        format!("deflect_target_under_attack{{target=\"203.0.113.1\",{g}}} 1"),
        format!("deflect_target_class_pps{{target=\"203.0.113.1\",{g},class=\"udp-amp\"}} 50000"),
        format!(
            "deflect_target_class_threshold_pps{{target=\"203.0.113.1\",{g},class=\"udp-amp\"}} 20000"
        ),
        format!(
            "deflect_target_class_baseline_pps{{target=\"203.0.113.10\",{g},class=\"tcp-ack\"}} 100010"
        ),
        "deflect_targets_under_attack 1".to_string(),
        "deflect_mitigations_active_by_kind{kind=\"flowspec\"} 0".to_string(),
    ] {
        assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
    }
    for absent in 2..=7 {
        assert!(
            !text.contains(&format!("target=\"203.0.113.{absent}\"")),
            ".{absent} is neither among the 3 busiest nor attacked\n{text}"
        );
    }

    // Every name the dashboard's queries and variables use is one /metrics emits.
    let emitted: BTreeSet<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split(' ').next())
        .map(str::to_string)
        .collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/grafana/deflect.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(dash["__inputs"][0]["pluginId"], "prometheus", "importable");
    let mut used = BTreeSet::new();
    let panels = dash["panels"].as_array().unwrap();
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has no query", p["title"]);
        for t in targets {
            let mut here = BTreeSet::new();
            names_in(t["expr"].as_str().unwrap(), &mut here);
            assert!(!here.is_empty(), "{}: {}", p["title"], t["expr"]);
            used.extend(here);
        }
    }
    for v in dash["templating"]["list"].as_array().unwrap() {
        names_in(v["definition"].as_str().unwrap(), &mut used);
        names_in(v["query"]["query"].as_str().unwrap(), &mut used);
    }
    let missing: Vec<&String> = used.difference(&emitted).collect();
    assert!(missing.is_empty(), "not in /metrics: {missing:?}");
    // The traffic's own families are among them.
    for name in [
        "deflect_target_pps",
        "deflect_target_class_pps",
        "deflect_target_class_threshold_pps",
        "deflect_mitigations_active_by_kind",
        "deflect_peer_up",
        "deflect_sflow_datagrams_total",
    ] {
        assert!(used.contains(name), "the dashboard shows {name}");
    }
    daemon.stop("test").await;
    let _ = std::fs::remove_dir_all(&dir);
}
