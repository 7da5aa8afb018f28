//! Configuration files: what is accepted, and every broken file with its exact `file:line:col` message.

use deflect::config::{Config, EMBEDDED};
use deflect::diag::parse_duration;

fn errors(yaml: &str) -> Vec<String> {
    match Config::parse("deflect.yaml", yaml).and_then(|c| c.check()) {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn the_embedded_defaults_and_the_annotated_example_are_valid() {
    Config::parse("<embedded>", EMBEDDED)
        .unwrap()
        .check()
        .unwrap();
    let example = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/deflect.yaml"
    ))
    .unwrap();
    let s = Config::parse("examples/deflect.yaml", &example)
        .unwrap()
        .check()
        .unwrap();
    assert_eq!(s.neighbors.len(), 3);
    assert_eq!(
        s.neighbors[2].receives,
        [deflect::route::Kind::Divert].into_iter().collect()
    );
    assert_eq!(s.neighbors[0].rtbh.communities.len(), 2);
}

#[test]
fn broken_files_say_where_and_what() {
    let cases: &[(&str, &str)] = &[
        // Syntax.
        ("local_as: [65000\n", "deflect.yaml:1:11:"),
        // Unknown field, with the fix.
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nneighbours: []\n",
            "deflect.yaml:3:1: unknown field `neighbours`",
        ),
        // Wrong type.
        (
            "local_as: many\nrouter_id: 192.0.2.10\n",
            "deflect.yaml:1:11:",
        ),
        // Missing field.
        (
            "router_id: 192.0.2.10\n",
            "deflect.yaml:1:1: missing field `local_as`; add it",
        ),
        // `serves` bounds a node; on an operator's token it means nothing.
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\napi:\n  tokens:\n    - { name: noc, token: 0123456789abcdef, scope: write, serves: [192.0.2.0/24] }\n",
            "deflect.yaml:5:67: serves bounds what a node reports; only a node token has it",
        ),
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\napi:\n  tokens:\n    - { name: web1, token: 0123456789abcdef, scope: node, serves: [192.0.2.7/24] }\n",
            "deflect.yaml:5:68: 192.0.2.7/24 has host bits set; did you mean 192.0.2.0/24?",
        ),
        // A neighbor that receives rtbh without a next hop (a dangling requirement).
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nneighbors:\n  - address: 192.0.2.1\n    remote_as: 65001\n    receives: [rtbh]\n",
            "deflect.yaml:4:14: neighbor 192.0.2.1 receives rtbh but has no rtbh section with a next hop",
        ),
        // S/RTBH routes take the discard next hop of the rtbh section too.
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nneighbors:\n  - address: 192.0.2.1\n    remote_as: 65001\n    receives: [source-rtbh]\n",
            "deflect.yaml:4:14: neighbor 192.0.2.1 receives source-rtbh but has no rtbh section with a next hop",
        ),
        // A diversion is a unicast route: a neighbor that takes it needs a unicast family.
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nneighbors:\n  - address: 192.0.2.1\n    remote_as: 65001\n    receives: [divert]\n    families: [ipv4-flowspec]\n",
            "deflect.yaml:6:15: this neighbor receives divert but has no unicast family",
        ),
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nneighbors:\n  - address: 192.0.2.1\n    remote_as: 65001\n    receives: [scrub]\n",
            "deflect.yaml:6:16: unknown variant `scrub`, expected one of flowspec, rtbh, source-rtbh, divert",
        ),
        // Unknown family.
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nneighbors:\n  - address: 192.0.2.1\n    remote_as: 65001\n    families: [ipv4-flowspec, ipv9-unicast]\n",
            "deflect.yaml:6:31: unknown family \"ipv9-unicast\"",
        ),
        // Overlapping protected groups.
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nprotected:\n  a: [203.0.113.0/24]\n  b: [203.0.113.128/25]\n",
            "deflect.yaml:5:7: 203.0.113.128/25 overlaps 203.0.113.0/24 of group \"a\"",
        ),
        // Host bits.
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nnever_block: [203.0.113.1/24]\n",
            "deflect.yaml:3:15: 203.0.113.1/24 has host bits set; did you mean 203.0.113.0/24?",
        ),
        // Limits.
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nlimits:\n  default_ttl: 2d\n  max_ttl: 1d\n",
            "deflect.yaml:4:16: default_ttl is longer than max_ttl",
        ),
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nlimits:\n  max_ttl: soon\n",
            "deflect.yaml:4:12: max_ttl \"soon\" is not a duration",
        ),
        // Hold time, duplicate neighbor, passive without listen.
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nneighbors:\n  - address: 192.0.2.1\n    remote_as: 65001\n    hold_time: 2\n",
            "deflect.yaml:6:16: hold_time is 0 or at least 3 seconds",
        ),
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nneighbors:\n  - address: 192.0.2.1\n    remote_as: 65001\n  - address: 192.0.2.1\n    remote_as: 65002\n",
            "deflect.yaml:6:14: neighbor 192.0.2.1 port 179 is configured twice",
        ),
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\nneighbors:\n  - address: 192.0.2.1\n    remote_as: 65001\n    passive: true\n",
            "deflect.yaml:4:14: passive neighbor but deflect listens nowhere",
        ),
        // A short token.
        (
            "local_as: 65000\nrouter_id: 192.0.2.10\napi:\n  tokens:\n    - { name: a, token: short, scope: write }\n",
            "deflect.yaml:5:25: token is shorter than 16 characters",
        ),
    ];
    for (yaml, want) in cases {
        let got = errors(yaml);
        assert!(
            got.iter().any(|e| e.starts_with(want)),
            "for\n{yaml}\nwanted {want:?}\ngot {got:#?}"
        );
    }
}

#[test]
fn every_problem_is_reported_at_once() {
    let got = errors("local_as: 0\nrouter_id: 0.0.0.0\nlimits:\n  rtbh_min_prefix_v4: 40\n");
    assert_eq!(got.len(), 3, "{got:#?}");
    assert!(got[0].starts_with("deflect.yaml:1:11: local_as 0 is reserved"));
    assert!(got[1].starts_with("deflect.yaml:2:12: router_id 0.0.0.0 is invalid"));
    assert!(got[2].starts_with("deflect.yaml:4:23: rtbh_min_prefix_v4 40 is beyond /32"));
}

#[test]
fn durations_read_like_an_operator_writes_them() {
    assert_eq!(parse_duration("90s").unwrap().as_secs(), 90);
    assert_eq!(parse_duration("10m").unwrap().as_secs(), 600);
    assert_eq!(parse_duration("24h").unwrap().as_secs(), 86_400);
    assert_eq!(parse_duration("7d").unwrap().as_secs(), 604_800);
    assert_eq!(parse_duration("45").unwrap().as_secs(), 45);
    assert!(parse_duration("10 minutes").is_none());
    assert!(parse_duration("").is_none());
}

#[test]
fn prefix_detection_and_trusted_sources_are_checked_where_they_are_written() {
    let head = "local_as: 65000\nrouter_id: 192.0.2.10\nprotected:\n  web: [198.51.100.0/22]\ndetection:\n";
    let cases: &[(&str, &str)] = &[
        (
            "  thresholds:\n    prefix: { v4: 25 }\n",
            "deflect.yaml:7:19: IPv4 prefix length 25 is outside 16..=24: sums are built from the /24 rollups",
        ),
        (
            "  groups:\n    web:\n      prefix: { v6: 72 }\n",
            "deflect.yaml:8:21: IPv6 prefix length 72 is outside 32..=64",
        ),
        (
            "  thresholds:\n    prefix:\n      floor_pps: { udp: -5 }\n",
            "deflect.yaml:8:25: floor_pps.udp must be 0 or more",
        ),
        (
            "  thresholds:\n    prefix: { length: 24 }\n",
            "deflect.yaml:7:15: unknown field `length`",
        ),
        (
            "  trusted_sources: [192.0.2.7/24]\n",
            "deflect.yaml:6:21: trusted source 192.0.2.7/24 has host bits set; did you mean 192.0.2.0/24?",
        ),
        (
            "  trusted_sources: [0.0.0.0/0]\n",
            "deflect.yaml:6:21: trusted source 0.0.0.0/0 trusts every address",
        ),
        ("  trusted_sources: [speedtest]\n", "deflect.yaml:6:21:"),
        (
            "  thresholds:\n    prefix: { v4: 21 }\n",
            "deflect.yaml:7:19: prefix length 21 for group \"web\": its network 198.51.100.0/22 is narrower",
        ),
    ];
    for (yaml, want) in cases {
        let text = format!("{head}{yaml}");
        let got = errors(&text);
        assert!(
            got.iter().any(|e| e.starts_with(want)),
            "for\n{text}\nwanted {want:?}\ngot {got:#?}"
        );
    }
    // What is written is what detection gets: per group over the defaults.
    let text = format!(
        "{head}  trusted_sources: [192.0.2.128/25, 2001:db8:ffff::/48]\n  max_prefixes: 500\n  thresholds:\n    prefix: {{ floor_pps: {{ udp-amp: 30000 }} }}\n  groups:\n    web:\n      prefix: {{ v4: 22, floor_bps: 1e10 }}\n"
    );
    let s = Config::parse("deflect.yaml", &text)
        .unwrap()
        .check()
        .unwrap();
    let d = &s.detection;
    assert_eq!(d.trusted_sources.len(), 2);
    assert_eq!(d.max_prefixes, 500);
    let p = &d.groups[0].2.prefix;
    assert!(p.enabled);
    assert_eq!((p.v4, p.v6, p.floor_bps), (22, 64, 1e10));
    assert_eq!(
        p.floor_pps[deflect::detect::Class::UdpAmp.index()],
        30_000.0
    );
    assert_eq!(
        p.floor_pps[deflect::detect::Class::TcpSyn.index()],
        4.0 * deflect::detect::default_floor(deflect::detect::Class::TcpSyn)
    );
}
