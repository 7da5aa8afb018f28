//! The mitigation set over a real store: what it restores, and what the guardrails in force let
//! it keep.

use tokio_util::sync::CancellationToken;

use crate::mitigation::guardrails::Guardrails;
use crate::mitigation::store::Store;
use crate::mitigation::{ListFilter, MitigationHandle, Order, start};
use crate::route::{Kind, Target};

fn dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("deflect-set-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn guardrails(protected: &[&str], never_block: &[&str]) -> Guardrails {
    Guardrails::for_tests(protected, never_block)
}

async fn open(
    d: &std::path::Path,
    g: Guardrails,
) -> (
    MitigationHandle,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let stop = CancellationToken::new();
    let (h, task) = start(Store::open(d).unwrap(), g, Vec::new(), 65000, stop.clone())
        .await
        .unwrap();
    (h, stop, task)
}

fn order(kind: Kind, text: &str) -> Order {
    Order {
        target: Target::parse(kind, text).unwrap(),
        ttl: None,
        peers: Vec::new(),
        reason: "test".into(),
        actor: "noc".into(),
    }
}

async fn active(h: &MitigationHandle) -> Vec<u64> {
    h.list(ListFilter::default())
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect()
}

#[tokio::test]
async fn what_the_guardrails_in_force_forbid_is_withdrawn_on_record_at_restore() {
    let d = dir("restore");
    let (h, stop, task) = open(&d, guardrails(&["203.0.113.0/24", "198.51.100.0/24"], &[])).await;
    h.create(order(
        Kind::Flowspec,
        "dst 203.0.113.7/32 proto udp sport 123 then discard",
    ))
    .await
    .unwrap();
    h.create(order(Kind::Rtbh, "198.51.100.9/32"))
        .await
        .unwrap();
    assert_eq!(active(&h).await.len(), 2);
    stop.cancel();
    task.await.unwrap();
    drop(h);
    // Restarted with 198.51.100.0/24 no longer protected and 203.0.113.0/28 never to be blocked.
    let (h, stop, task) = open(&d, guardrails(&["203.0.113.0/24"], &["203.0.113.0/28"])).await;
    assert!(active(&h).await.is_empty());
    let all = h
        .list(ListFilter {
            all: Some(true),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    let reasons: Vec<&str> = all
        .iter()
        .filter_map(|m| m.withdraw_reason.as_deref())
        .collect();
    assert_eq!(reasons.len(), 2, "{all:?}");
    assert!(
        reasons.iter().all(|r| r.starts_with("refused on restore:")),
        "{reasons:?}"
    );
    assert!(
        reasons.iter().any(|r| r.contains("never-block")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("not inside a protected network")),
        "{reasons:?}"
    );
    let audit = h.audit(0, 1000).await.unwrap();
    let restore = audit.iter().rev().find(|e| e.action == "restore").unwrap();
    assert_eq!(restore.detail["refused"], 2, "{restore:?}");
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_reload_withdraws_what_its_guardrails_now_forbid_and_keeps_the_rest() {
    let d = dir("reload");
    let (h, stop, task) = open(&d, guardrails(&["203.0.113.0/24"], &[])).await;
    let keep = h
        .create(order(Kind::Rtbh, "203.0.113.200/32"))
        .await
        .unwrap();
    let drop_it = h
        .create(order(
            Kind::Flowspec,
            "dst 203.0.113.7/32 proto udp sport 123 then discard",
        ))
        .await
        .unwrap();
    let id = |c: crate::mitigation::Created| match c {
        crate::mitigation::Created::New(m) | crate::mitigation::Created::Extended(m) => m.id,
    };
    let (keep, drop_it) = (id(keep), id(drop_it));
    h.reload(
        guardrails(&["203.0.113.0/24"], &["203.0.113.0/29"]),
        Vec::new(),
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(active(&h).await, vec![keep]);
    let m = h.get(drop_it).await.unwrap();
    assert!(
        m.withdraw_reason
            .as_deref()
            .is_some_and(|r| r.starts_with("refused on reload:") && r.contains("never-block")),
        "{m:?}"
    );
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn the_rate_guardrail_counts_what_was_made_before_a_restart() {
    let d = dir("rate");
    let mut g = guardrails(&["203.0.113.0/24"], &[]);
    g.max_new_per_minute = 2;
    let (h, stop, task) = open(&d, g.clone()).await;
    for p in ["203.0.113.1/32", "203.0.113.2/32"] {
        h.create(order(Kind::Rtbh, p)).await.unwrap();
    }
    stop.cancel();
    task.await.unwrap();
    drop(h);
    let (h, stop, task) = open(&d, g).await;
    let e = h
        .create(order(Kind::Rtbh, "203.0.113.3/32"))
        .await
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("2 mitigations were created in the last minute"),
        "{e}"
    );
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn refusals_are_audited_within_a_bound_and_their_long_texts_cut() {
    let d = dir("refusals");
    let (h, stop, task) = open(&d, guardrails(&["203.0.113.0/24"], &[])).await;
    let mut outside = order(Kind::Rtbh, "198.51.100.9/32");
    outside.reason = "x".repeat(5000);
    for _ in 0..100 {
        h.create(outside.clone()).await.unwrap_err();
    }
    // Another actor has a budget of its own.
    let mut other = outside.clone();
    other.actor = "policy:p attack:1".into();
    h.create(other).await.unwrap_err();
    let audit = h.audit(0, 10_000).await.unwrap();
    let count = |actor: &str, action: &str| {
        audit
            .iter()
            .filter(|e| e.actor == actor && e.action == action)
            .count()
    };
    assert_eq!(count("noc", "mitigation.refused"), 60);
    assert_eq!(count("noc", "mitigation.refused.suppressed"), 1);
    assert_eq!(count("policy:p attack:1", "mitigation.refused"), 1);
    let m = &h.metrics;
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(
        (m.refused.load(Relaxed), m.refused_unaudited.load(Relaxed)),
        (101, 40)
    );
    let first = audit
        .iter()
        .find(|e| e.action == "mitigation.refused")
        .unwrap();
    let reason = first.detail["request"]["reason"].as_str().unwrap();
    assert!(
        reason.len() < 300 && reason.ends_with("(+4744 bytes)"),
        "{reason}"
    );
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_verifies_beside_the_writer() {
    let d = dir("verify");
    let (h, stop, task) = open(&d, guardrails(&["203.0.113.0/24"], &[])).await;
    // Verifications and changes at once: each answers, none waits for the other to finish.
    let mut checks = Vec::new();
    for i in 0..20u8 {
        let h2 = h.clone();
        checks.push(tokio::spawn(async move { h2.audit_verify().await }));
        h.create(order(Kind::Rtbh, &format!("203.0.113.{}/32", i + 1)))
            .await
            .unwrap();
    }
    for c in checks {
        assert!(c.await.unwrap().is_ok());
    }
    let n = h.audit_verify().await.unwrap();
    assert_eq!(n, h.audit(0, 10_000).await.unwrap().len() as u64);
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn a_prefix_rule_is_allowed_only_inside_a_protected_group_and_clear_of_never_block() {
    let g = guardrails(
        &["203.0.113.0/24", "198.51.100.0/22"],
        &["198.51.101.53/32"],
    );
    let rule = |dst: &str| {
        Target::parse(
            Kind::Flowspec,
            &format!("dst {dst} proto udp sport 123 then discard"),
        )
        .unwrap()
    };
    // A carpet's rule on a protected /24: allowed.
    assert_eq!(g.check_target(&rule("203.0.113.0/24")), Ok(()));
    // Wider than the group: refused.
    let e = g.check_target(&rule("203.0.112.0/23")).unwrap_err();
    assert!(
        e.to_string()
            .contains("203.0.112.0/23 is not inside a protected network"),
        "{e}"
    );
    // A never-block address inside the prefix: the whole rule is refused, with the reason (a
    // FlowSpec rule cannot leave one address out).
    assert_eq!(g.check_target(&rule("198.51.100.0/24")), Ok(()));
    let e = g.check_target(&rule("198.51.101.0/24")).unwrap_err();
    assert!(
        e.to_string()
            .contains("198.51.101.0/24 overlaps never-block prefix 198.51.101.53/32"),
        "{e}"
    );
    // A blackhole of the prefix: refused under rtbh_min_prefix_v4 (32 here, as by default).
    let e = g
        .check_target(&Target::Rtbh("203.0.113.0/24".parse().unwrap()))
        .unwrap_err();
    assert!(e.to_string().contains("/24"), "{e}");
}
