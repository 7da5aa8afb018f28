//! Policy files: loading, errors with their positions, the shipped policies.

use super::*;
use crate::detect::Signature;

fn known() -> Known {
    Known {
        groups: ["customers".to_string()].into_iter().collect(),
        peers: [(
            "edge1".to_string(),
            [Kind::Flowspec, Kind::Rtbh].into_iter().collect(),
        )]
        .into_iter()
        .collect(),
        ioc: ["mirai".to_string()].into_iter().collect(),
    }
}

#[test]
fn the_shipped_policies_load_and_cover_every_vector() {
    let mut k = known();
    k.groups.clear();
    let p = Policies::load(None, &k).unwrap();
    for v in Vector::ALL {
        let a = Attack {
            id: 1,
            target: "203.0.113.7".parse().unwrap(),
            group: "customers".into(),
            node: "n".into(),
            vector: v,
            class: crate::detect::Class::Other,
            signature: Signature::default(),
            started_ms: 0,
            ended_ms: None,
            pps: 1_000_000,
            bps: 1_000_000_000,
            peak_pps: 1_000_000,
            peak_bps: 1_000_000_000,
            threshold_pps: 0,
            baseline_pps: 0,
            timeline: Vec::new(),
            mitigations: Vec::new(),
            policy: None,
            series: Vec::new(),
            ioc: Default::default(),
            cap: None,
            quiet_upstream: false,
            prefix: None,
            addresses: 0,
        };
        let found = p
            .find(&a)
            .unwrap_or_else(|| panic!("no shipped policy for {v}"));
        assert!(!found.name.starts_with("carpet"), "{v}: {}", found.name);
        // The same on a prefix: a carpet policy, one FlowSpec rule on the prefix, never a
        // blackhole of the whole prefix.
        let carpet = Attack {
            target: "203.0.113.0".parse().unwrap(),
            prefix: Some("203.0.113.0/24".parse().unwrap()),
            signature: Signature {
                proto: Some(17),
                sports: vec![123],
                ..Signature::default()
            },
            ..a
        };
        let found = p.find(&carpet).unwrap();
        assert!(found.name.starts_with("carpet"), "{v}: {}", found.name);
        assert!(
            found
                .steps
                .iter()
                .all(|s| s.announce == Some(Kind::Flowspec)),
            "{v}: {found:?}"
        );
        let r = flowspec_route_to(
            carpet.dst(),
            &carpet.signature,
            &found.steps[0].parts,
            &found.steps[0].actions,
        )
        .unwrap();
        assert!(
            r.to_string()
                .starts_with("dst 203.0.113.0/24 proto udp sport 123 then"),
            "{r}"
        );
    }
    // And the directory in the repository is the same as what is embedded.
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    let from_dir = Policies::load(Some(&dir), &k).unwrap();
    assert_eq!(from_dir.list.len(), p.list.len());
}

#[test]
fn recurrence_has_defaults_and_may_be_set() {
    let p = |t: &str| {
        Policies::parse(&[("p.yaml".into(), t.into())], &known())
            .unwrap()
            .list
            .remove(0)
    };
    let base = "match:\n  vectors: [any]\nsteps:\n  - announce: rtbh\n";
    assert_eq!(p(base).recurrence, Recurrence::default());
    let set = p(&format!(
        "{base}recurrence:\n  probation: 1m\n  growth: 2\n  max_withdraw_after: 10m\n"
    ));
    assert_eq!(
        set.recurrence,
        Recurrence {
            probation: Duration::from_secs(60),
            growth: 2,
            max_withdraw_after: Duration::from_secs(600),
        }
    );
    // A long first hold-down raises the default maximum with it.
    let long = p(&format!("{base}withdraw_after: 2h\n"));
    assert_eq!(
        long.recurrence.max_withdraw_after,
        Duration::from_secs(7200)
    );
}

#[test]
fn errors_point_at_the_word() {
    let bad = [
        (
            "match:\n  vectors: [smurf]\nsteps:\n  - announce: rtbh\n",
            "p.yaml:2:13: unknown vector \"smurf\"",
        ),
        (
            "match:\n  vectors: [any]\n  target: subnet\nsteps:\n  - announce: rtbh\n",
            "p.yaml:3:11: match.target \"subnet\": use address",
        ),
        (
            "match:\n  vectors: [any]\n  groups: [nobody]\nsteps:\n  - announce: rtbh\n",
            "p.yaml:3:12: no protected group named \"nobody\"",
        ),
        (
            "match:\n  vectors: [any]\nsteps:\n  - announce: flowspec\n    action: explode\n",
            "p.yaml:5:13: action:",
        ),
        (
            "match:\n  vectors: [any]\nsteps:\n  - announce: rtbh\n    peers: [edge9]\n",
            "p.yaml:5:13: no neighbor named \"edge9\"",
        ),
        (
            "match:\n  vectors: [any]\nttl: soon\nsteps:\n  - announce: rtbh\n",
            "p.yaml:3:6: ttl \"soon\" is not a duration",
        ),
        (
            "match:\n  vectors: [any]\nsteps:\n  - announce: rtbh\n    colour: red\n",
            "p.yaml:5:5: unknown field",
        ),
        (
            "match:\n  vectors: [any]\nsteps:\n  - announce: flowspec\n    action: discard\n    match: [ttl]\n",
            "p.yaml:6:13: unknown match \"ttl\"",
        ),
        (
            "match:\n  vectors: [any]\nrecurrence:\n  growth: 0\nsteps:\n  - announce: rtbh\n",
            "p.yaml:4:11: recurrence.growth must be 1",
        ),
        (
            "match:\n  vectors: [any]\nrecurrence:\n  max_withdraw_after: 48h\nsteps:\n  - announce: rtbh\n",
            "p.yaml:4:23: recurrence.max_withdraw_after is at most 24h",
        ),
        (
            "match:\n  vectors: [any]\nwithdraw_after: 10m\nrecurrence:\n  max_withdraw_after: 1m\nsteps:\n  - announce: rtbh\n",
            "p.yaml:5:23: recurrence.max_withdraw_after is shorter than withdraw_after",
        ),
        (
            "match:\n  vectors: [any]\nrecurrence:\n  probation: never\nsteps:\n  - announce: rtbh\n",
            "p.yaml:4:14: recurrence.probation \"never\" is not a duration",
        ),
        (
            "match:\n  vectors: [any]\nrecurrence:\n  backoff: 2\nsteps:\n  - announce: rtbh\n",
            "p.yaml:4:3: unknown field",
        ),
    ];
    for (text, want) in bad {
        let e = Policies::parse(&[("p.yaml".into(), text.into())], &known()).unwrap_err();
        let got = e.to_string();
        assert!(got.starts_with(want), "{text}\n got: {got}\nwant: {want}");
    }
}
