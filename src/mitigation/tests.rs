//! The mitigation set over a real store: what it restores, and what the guardrails in force let
//! it keep.

use tokio_util::sync::CancellationToken;

use crate::mitigation::guardrails::Guardrails;
use crate::mitigation::store::Store;
use crate::mitigation::{Created, ListFilter, MitigationHandle, Order, Refusal, start};
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
    over(Store::open(d).unwrap(), g).await
}

/// The set over `store` (one a test keeps a switch of), with no peers.
async fn over(
    store: Store,
    g: Guardrails,
) -> (
    MitigationHandle,
    CancellationToken,
    tokio::task::JoinHandle<()>,
) {
    let stop = CancellationToken::new();
    let (h, task) = start(
        store,
        g,
        Vec::new(),
        65000,
        crate::clock::Clock::wall(),
        stop.clone(),
    )
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
    assert_eq!(n.entries, h.audit(0, 10_000).await.unwrap().len() as u64);
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

fn id(c: Created) -> u64 {
    match c {
        Created::New(m) | Created::Extended(m) => m.id,
    }
}

#[tokio::test]
async fn retention_prunes_what_is_over_and_ids_are_never_given_again() {
    let d = dir("retention");
    let mut g = guardrails(&["203.0.113.0/24"], &[]);
    g.retention.max_withdrawn = 2;
    g.retention.max_audit_entries = 5;
    let (h, stop, task) = open(&d, g.clone()).await;
    for i in 1..=5u8 {
        let c = h
            .create(order(Kind::Rtbh, &format!("203.0.113.{i}/32")))
            .await
            .unwrap();
        h.withdraw(id(c), "noc", "over").await.unwrap();
    }
    h.create(order(Kind::Rtbh, "203.0.113.99/32"))
        .await
        .unwrap();
    let p = h.prune().await.unwrap();
    // Five withdrawn: the three oldest go (the highest id is the active one, 6).
    assert_eq!((p.mitigations, p.more), (3, false));
    assert!(matches!(h.get(1).await, Err(Refusal::NotFound(1))));
    assert_eq!(h.get(4).await.unwrap().id, 4);
    let all: Vec<u64> = h
        .list(ListFilter {
            all: Some(true),
            ..ListFilter::default()
        })
        .await
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(all, [4, 5, 6]);
    // The log keeps five entries and the one that records the prune, and verifies.
    let v = h.audit_verify().await.unwrap();
    assert_eq!(v.entries, 6);
    assert!(v.first_seq > 1);
    let log = h.audit(0, 100).await.unwrap();
    assert_eq!(log.last().unwrap().action, "audit.prune");
    use std::sync::atomic::Ordering::Relaxed;
    assert_eq!(h.metrics.pruned_mitigations.load(Relaxed), 3);
    assert_eq!(h.metrics.pruned_audit.load(Relaxed), p.audit);
    stop.cancel();
    task.await.unwrap();
    drop(h);

    // Everything withdrawn and pruned but the highest id: a restart goes on after it.
    let (h, stop, task) = open(&d, g.clone()).await;
    let six = h.get(6).await.unwrap();
    h.withdraw(six.id, "noc", "over").await.unwrap();
    g.retention.max_withdrawn = 0;
    stop.cancel();
    task.await.unwrap();
    drop(h);
    // Restarted with nothing withdrawn kept: the start prunes at once.
    let (h, stop, task) = open(&d, g).await;
    let all = h
        .list(ListFilter {
            all: Some(true),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), [6]);
    let c = h.create(order(Kind::Rtbh, "203.0.113.7/32")).await.unwrap();
    assert_eq!(id(c), 7);
    assert!(h.audit_verify().await.is_ok());
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

/// Active mitigations by kind, as `/metrics` reads them: FlowSpec, RTBH, S/RTBH, diversions.
fn by_kind(h: &MitigationHandle) -> [u64; 4] {
    h.metrics
        .active_by_kind
        .each_ref()
        .map(|n| n.load(std::sync::atomic::Ordering::Relaxed))
}

fn bad(text: &str) -> crate::mitigation::BatchItem {
    Err((
        serde_json::json!({"rule": text}),
        Refusal::Invalid(format!("cannot read {text:?}")),
    ))
}

#[tokio::test]
async fn a_batch_is_one_group_and_an_atomic_one_is_all_or_nothing() {
    let d = dir("batch");
    let mut g = guardrails(&["203.0.113.0/24"], &[]);
    g.max_new_per_minute = 1000;
    let (h, stop, task) = open(&d, g).await;
    let before = h
        .create(order(Kind::Rtbh, "203.0.113.200/32"))
        .await
        .unwrap();
    let before = id(before);
    let old = h.get(before).await.unwrap();
    // Each on its own: the refused ones say why, the rest are made; the same rule twice is one
    // mitigation, extended.
    let items = vec![
        Ok(order(Kind::Rtbh, "203.0.113.1/32")),
        bad("dst 203.0.113.2/32 then nonsense"),
        Ok(order(Kind::Rtbh, "198.51.100.1/32")),
        Ok(order(
            Kind::Flowspec,
            "dst 203.0.113.3/32 proto udp then discard",
        )),
        Ok(order(
            Kind::Flowspec,
            "dst 203.0.113.3/32 proto udp then discard",
        )),
    ];
    let r = h.create_batch("noc", items, false).await.unwrap();
    assert!(matches!(&r[0], Ok(Created::New(m)) if m.id == before + 1));
    assert!(matches!(&r[1], Err(Refusal::Invalid(_))));
    assert!(matches!(&r[2], Err(Refusal::Guardrail(_))), "{:?}", r[2]);
    assert!(matches!(&r[3], Ok(Created::New(m)) if m.id == before + 2));
    assert!(matches!(&r[4], Ok(Created::Extended(m)) if m.id == before + 2));
    assert_eq!(active(&h).await.len(), 3);
    assert_eq!(by_kind(&h), [1, 2, 0, 0]);
    let log = h.audit(0, 1000).await.unwrap();
    let refused = log
        .iter()
        .filter(|e| e.action == "mitigation.refused")
        .count();
    assert_eq!(refused, 2);

    // All or nothing: one refusal and nothing is made, nothing extended, no id spent.
    let items = vec![
        Ok(order(Kind::Rtbh, "203.0.113.10/32")),
        Ok(order(Kind::Rtbh, "203.0.113.200/32")),
        Ok(order(
            Kind::Flowspec,
            "dst 203.0.113.11/32 proto udp then discard",
        )),
        Ok(order(Kind::Rtbh, "198.51.100.2/32")),
    ];
    let r = h.create_batch("noc", items, true).await.unwrap();
    assert!(r.iter().all(|r| r.is_err()), "{r:?}");
    assert!(
        matches!(&r[0], Err(Refusal::NotMade { cause: 3 })),
        "{:?}",
        r[0]
    );
    assert!(matches!(&r[3], Err(Refusal::Guardrail(_))));
    assert_eq!(active(&h).await.len(), 3);
    assert_eq!(by_kind(&h), [1, 2, 0, 0], "the undone are not counted");
    assert_eq!(h.get(before).await.unwrap().expires_ms, old.expires_ms);
    let log2 = h.audit(0, 1000).await.unwrap();
    assert_eq!(
        log2.len(),
        log.len() + 1,
        "only the refusal is on record: {:?}",
        &log2[log.len()..]
    );
    // The undone ones can be made again, under the next id.
    let c = h
        .create(order(Kind::Rtbh, "203.0.113.10/32"))
        .await
        .unwrap();
    assert_eq!(id(c), before + 3);
    // An atomic batch that passes is made whole.
    let items = (20..30u8)
        .map(|i| Ok(order(Kind::Rtbh, &format!("203.0.113.{i}/32"))))
        .collect();
    let r = h.create_batch("noc", items, true).await.unwrap();
    assert!(r.iter().all(|r| matches!(r, Ok(Created::New(_)))));
    assert_eq!(active(&h).await.len(), 14);
    assert_eq!(by_kind(&h), [1, 13, 0, 0]);
    stop.cancel();
    task.await.unwrap();
    drop(h);
    // Durable: a restart finds them all.
    let (h, stop, task) = open(&d, guardrails(&["203.0.113.0/24"], &[])).await;
    assert_eq!(active(&h).await.len(), 14);
    assert_eq!(by_kind(&h), [1, 13, 0, 0]);
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

#[tokio::test]
async fn a_withdrawal_by_filter_takes_what_matches_and_needs_a_filter() {
    use crate::mitigation::WithdrawFilter;
    let d = dir("withdraw-where");
    let (h, stop, task) = open(&d, guardrails(&["203.0.113.0/24", "198.51.100.0/24"], &[])).await;
    let mut o = order(Kind::Rtbh, "203.0.113.1/32");
    o.reason = "feed: spamhaus".into();
    h.create(o).await.unwrap();
    h.create(order(Kind::Rtbh, "198.51.100.1/32"))
        .await
        .unwrap();
    let mut o = order(Kind::Flowspec, "dst 203.0.113.2/32 proto udp then discard");
    o.actor = "policy:amp attack:7".into();
    h.create(o).await.unwrap();
    let e = h
        .withdraw_where(WithdrawFilter::default(), "noc", "all")
        .await
        .unwrap_err();
    assert!(matches!(e, Refusal::Invalid(_)), "{e}");
    let ids = |f: WithdrawFilter| {
        let h = h.clone();
        async move {
            let gone = h.withdraw_where(f, "noc", "over").await.unwrap();
            gone.iter().map(|m| m.id).collect::<Vec<_>>()
        }
    };
    let rtbh_in_24 = WithdrawFilter {
        prefix: Some("203.0.113.0/24".parse().unwrap()),
        kind: Some(Kind::Rtbh),
        ..WithdrawFilter::default()
    };
    assert_eq!(ids(rtbh_in_24).await, [1]);
    let by_policy = WithdrawFilter {
        actor: Some("policy:amp attack:7".into()),
        ..WithdrawFilter::default()
    };
    assert_eq!(ids(by_policy).await, [3]);
    let by_reason = WithdrawFilter {
        reason: Some("spamhaus".into()),
        ..WithdrawFilter::default()
    };
    assert!(ids(by_reason).await.is_empty(), "already withdrawn");
    assert_eq!(active(&h).await.len(), 1);
    assert_eq!(by_kind(&h), [0, 1, 0, 0]);
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

/// Two neighbors that never connect (passive, nobody calls): `edge` takes FlowSpec, RTBH and
/// S/RTBH (an IPv4 discard next hop only), `scrub` takes diversions.
fn neighbors() -> Vec<(crate::peer::Neighbor, crate::peer::PeerHandle)> {
    use crate::peer::{Mode, Neighbor, PeerConfig, Rtbh};
    let mk = |name: &str, addr: &str, receives: &[Kind], rtbh: Rtbh| {
        let mut peer = PeerConfig::new(addr.parse().unwrap(), 65001);
        peer.name = name.to_string();
        peer.mode = Mode::Passive;
        let h = crate::peer::spawn(peer.clone());
        let n = Neighbor {
            peer,
            receives: receives.iter().copied().collect(),
            rtbh,
        };
        (n, h)
    };
    vec![
        mk(
            "edge",
            "127.0.93.1",
            &[Kind::Flowspec, Kind::Rtbh, Kind::SourceRtbh],
            Rtbh {
                next_hop_ipv4: Some("192.0.2.1".parse().unwrap()),
                communities: vec![deflect_bgp::community::Community::BLACKHOLE],
                ..Rtbh::default()
            },
        ),
        mk("scrub", "127.0.93.2", &[Kind::Divert], Rtbh::default()),
    ]
}

fn to(kind: Kind, text: &str, peers: &[&str]) -> Order {
    Order {
        peers: peers.iter().map(|p| p.to_string()).collect(),
        ..order(kind, text)
    }
}

/// The text of a refusal (422 or 409), or a panic if the order was carried out.
async fn refusal(h: &MitigationHandle, o: Order) -> String {
    match h.create(o).await {
        Ok(c) => panic!("carried out: {c:?}"),
        Err(e) => {
            assert!(
                matches!(
                    e,
                    crate::mitigation::Refusal::Guardrail(_)
                        | crate::mitigation::Refusal::Conflict(_)
                ),
                "{e:?}"
            );
            e.to_string()
        }
    }
}

#[tokio::test]
async fn sources_cut_off_and_diversions_pass_every_guardrail_or_are_refused_saying_why() {
    let d = dir("kinds");
    let mut g = guardrails(
        &["203.0.113.0/24"],
        &["203.0.113.53/32", "198.51.100.53/32"],
    );
    g.max_source_rtbh = 2;
    g.rtbh_min_prefix_v4 = 24;
    let stop = CancellationToken::new();
    let (h, task) = start(
        Store::open(&d).unwrap(),
        g.clone(),
        neighbors(),
        65000,
        crate::clock::Clock::wall(),
        stop.clone(),
    )
    .await
    .unwrap();

    // S/RTBH: one outside source, to the neighbor that takes it.
    let s1 = match h
        .create(order(Kind::SourceRtbh, "198.51.100.9/32"))
        .await
        .unwrap()
    {
        crate::mitigation::Created::New(m) => m.id,
        other => panic!("{other:?}"),
    };
    let refused = [
        (
            order(Kind::SourceRtbh, "203.0.113.9/32"),
            "source 203.0.113.9/32 is inside protected group customers (203.0.113.0/24)",
        ),
        (
            order(Kind::SourceRtbh, "203.0.0.0/16"),
            "an S/RTBH route is one source, a /32; 203.0.0.0/16 is wider",
        ),
        (
            order(Kind::SourceRtbh, "198.51.100.53/32"),
            "source 198.51.100.53/32 overlaps never-block prefix 198.51.100.53/32",
        ),
        (
            // A flood spoofed "from" a router's own session address.
            order(Kind::SourceRtbh, "127.0.93.2/32"),
            "source 127.0.93.2/32 is an address of the BGP session with neighbor scrub: S/RTBH would cut it",
        ),
        (
            order(Kind::SourceRtbh, "2001:db8:5::1/128"),
            "no neighbor takes an S/RTBH route for 2001:db8:5::1/128: one must receive source-rtbh, the IPv6 unicast family, and have rtbh.next_hop_ipv6",
        ),
        (
            to(Kind::SourceRtbh, "198.51.100.10/32", &["scrub"]),
            "no neighbor among scrub takes an S/RTBH route",
        ),
        // Diversions: only your own space, to peers named, that take them.
        (
            order(Kind::Divert, "203.0.113.128/25 next-hop 198.51.100.10"),
            "a diversion goes to peers named explicitly",
        ),
        (
            to(
                Kind::Divert,
                "192.0.2.0/24 next-hop 198.51.100.10",
                &["scrub"],
            ),
            "192.0.2.0/24 is not inside a protected network: only your own space may be diverted",
        ),
        (
            to(
                Kind::Divert,
                "203.0.0.0/16 next-hop 198.51.100.10",
                &["scrub"],
            ),
            "203.0.0.0/16 is not inside a protected network",
        ),
        (
            to(
                Kind::Divert,
                "203.0.113.0/26 next-hop 198.51.100.10",
                &["scrub"],
            ),
            "203.0.113.0/26 overlaps never-block prefix 203.0.113.53/32",
        ),
        (
            to(
                Kind::Divert,
                "203.0.113.128/25 next-hop 198.51.100.10",
                &["edge"],
            ),
            "no neighbor among edge takes a diversion of 203.0.113.128/25",
        ),
        // A source-based rule whose source must never be blocked.
        (
            order(
                Kind::Flowspec,
                "dst 203.0.113.7/32 src 198.51.100.53/32 then discard",
            ),
            "source 198.51.100.53/32 overlaps never-block prefix",
        ),
    ];
    for (o, want) in refused {
        let got = refusal(&h, o.clone()).await;
        assert!(got.starts_with(want), "{o:?}\n got: {got}\nwant: {want}");
    }
    // The global cap on S/RTBH routes: two at most here.
    h.create(order(Kind::SourceRtbh, "198.51.100.11/32"))
        .await
        .unwrap();
    let got = refusal(&h, order(Kind::SourceRtbh, "198.51.100.12/32")).await;
    assert!(
        got.starts_with("2 S/RTBH routes are active, the maximum configured"),
        "{got}"
    );
    // A diversion, then the same again (extended), then the same prefix with other communities
    // (refused: change one route, not two), then the same prefix as another kind (refused).
    let div = to(
        Kind::Divert,
        "203.0.113.128/25 next-hop 198.51.100.10 community 65000:800 large-community 65000:1:2",
        &["scrub"],
    );
    let made = match h.create(div.clone()).await.unwrap() {
        crate::mitigation::Created::New(m) => m,
        other => panic!("{other:?}"),
    };
    assert_eq!(made.next_hop, Some("198.51.100.10".parse().unwrap()));
    assert_eq!(made.communities, ["65000:800"]);
    assert_eq!(made.large_communities, ["65000:1:2"]);
    assert!(matches!(
        h.create(div.clone()).await.unwrap(),
        crate::mitigation::Created::Extended(_)
    ));
    let got = refusal(
        &h,
        to(
            Kind::Divert,
            "203.0.113.128/25 next-hop 198.51.100.10 community 65000:801",
            &["scrub"],
        ),
    )
    .await;
    assert!(got.contains("other actions or attributes"), "{got}");
    let got = refusal(&h, to(Kind::Rtbh, "203.0.113.128/25", &["edge"])).await;
    assert!(
        got.starts_with("mitigation") && got.contains("announces the same prefix as divert"),
        "{got}"
    );
    // Every refusal is audited with the request, as for the other kinds.
    let audit = h.audit(0, 1000).await.unwrap();
    let refusals = audit
        .iter()
        .filter(|e| e.action == "mitigation.refused")
        .count();
    assert_eq!(refusals, 15, "{audit:#?}");
    let announced: Vec<&str> = audit
        .iter()
        .filter(|e| e.action == "announce")
        .map(|e| e.detail["peer"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(
        announced,
        ["edge", "edge", "scrub"],
        "S/RTBH to edge, the diversion to scrub"
    );

    // A restart: the diversion comes back whole (its route is in its record), the sources too.
    stop.cancel();
    task.await.unwrap();
    drop(h);
    let stop = CancellationToken::new();
    let (h, task) = start(
        Store::open(&d).unwrap(),
        g,
        neighbors(),
        65000,
        crate::clock::Clock::wall(),
        stop.clone(),
    )
    .await
    .unwrap();
    let back = h.list(ListFilter::default()).await.unwrap();
    assert_eq!(back.len(), 3, "{back:?}");
    let div_back = back.iter().find(|m| m.kind == Kind::Divert).unwrap();
    assert_eq!(
        (div_back.id, div_back.prefix, div_back.next_hop),
        (made.id, made.prefix, made.next_hop)
    );
    assert_eq!(div_back.target().unwrap(), div.target);
    assert!(back.iter().any(|m| m.id == s1));
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

#[tokio::test]
async fn a_stored_record_whose_text_is_not_its_rules_own_is_served_and_kept_as_written() {
    // Memory holds an active mitigation in its announced form and prints its record from it; a
    // record written otherwise (by an older version) must still read back as it was written.
    let d = dir("as-written");
    let now = crate::clock::Clock::wall().now_ms();
    let written = crate::mitigation::Mitigation {
        id: 7,
        kind: Kind::Flowspec,
        rule: Some("dst 203.0.113.7/32   proto 17 then discard".into()),
        prefix: None,
        next_hop: None,
        communities: Vec::new(),
        large_communities: Vec::new(),
        peers: Vec::new(),
        reason: "older".into(),
        actor: "noc".into(),
        created_ms: now,
        expires_ms: now + 600_000,
        withdrawn_ms: None,
        withdraw_reason: None,
        dry_run: false,
    };
    let target = written.target().unwrap();
    assert_ne!(
        written.rule.as_deref(),
        Some(target.to_string().as_str()),
        "the test needs a text its rule does not print"
    );
    {
        let mut store = Store::open(&d).unwrap();
        store
            .commit(
                &[&written],
                &[],
                Vec::<crate::audit::AuditDraft>::new(),
                now,
            )
            .unwrap();
    }
    let (h, stop, task) = open(&d, guardrails(&["203.0.113.0/24"], &[])).await;
    assert_eq!(h.get(7).await.unwrap(), written);
    assert_eq!(
        h.list(ListFilter::default()).await.unwrap(),
        vec![written.clone()]
    );
    // Extended: stored again, its text as written.
    let m = h
        .extend(7, std::time::Duration::from_secs(3600), "noc")
        .await
        .unwrap();
    assert_eq!(m.rule, written.rule);
    assert!(m.expires_ms > written.expires_ms);
    stop.cancel();
    task.await.unwrap();
    drop(h);
    let (h, stop, task) = open(&d, guardrails(&["203.0.113.0/24"], &[])).await;
    assert_eq!(h.get(7).await.unwrap(), m);
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

/// Waits until neighbor `n` wants exactly `routes` announced, and it stays so for a moment.
async fn peer_wants(n: &crate::peer::PeerHandle, routes: usize) {
    let mut w = n.watch();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if w.borrow_and_update().desired == routes {
            // Nothing still on its way changes it.
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            if w.borrow().desired == routes {
                return;
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        if tokio::time::timeout(left, w.changed()).await.is_err() {
            panic!(
                "{} wants {} routes, not {routes}",
                n.config().name,
                w.borrow().desired
            );
        }
    }
}

#[tokio::test]
async fn a_commit_that_fails_takes_back_what_its_group_sent_the_peers() {
    takes_back("takeback", 3).await;
}

/// The same with a group large enough that its commit runs off the runtime while the peer task
/// takes the routes on the other worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_group_s_commit_that_fails_takes_back_what_it_sent_too() {
    takes_back("takeback-large", 300).await;
}

/// A batch of `n` rules refused by the store, then a withdrawal refused by the store: the peer
/// ends as it began each time.
async fn takes_back(tag: &str, n: u16) {
    let d = dir(tag);
    let mut g = guardrails(&["203.0.113.0/24"], &[]);
    g.max_new_per_minute = 1000;
    let store = Store::open(&d).unwrap();
    let fail = store.failing();
    let peers = neighbors();
    let edge = peers[0].1.clone();
    let stop = CancellationToken::new();
    let (h, task) = start(
        store,
        g,
        peers,
        65000,
        crate::clock::Clock::wall(),
        stop.clone(),
    )
    .await
    .unwrap();
    let a = id(h
        .create(order(
            Kind::Flowspec,
            "dst 203.0.113.1/32 proto udp dport 53 then discard",
        ))
        .await
        .unwrap());
    peer_wants(&edge, 1).await;

    // Created and sent while the store refuses the write: refused to the caller, taken back
    // from the peer, not in memory.
    fail.store(1, std::sync::atomic::Ordering::Relaxed);
    let items = (0..n)
        .map(|p| {
            Ok(order(
                Kind::Flowspec,
                &format!(
                    "dst 203.0.113.2/32 proto udp dport {} then discard",
                    1000 + p
                ),
            ))
        })
        .collect();
    let e = h.create_batch("noc", items, false).await.unwrap_err();
    assert!(matches!(e, Refusal::Store(_)), "{e:?}");
    peer_wants(&edge, 1).await;
    assert_eq!(active(&h).await, vec![a]);

    // Withdrawn and sent while the store refuses the write: announced again.
    fail.store(1, std::sync::atomic::Ordering::Relaxed);
    let e = h.withdraw(a, "noc", "test").await.unwrap_err();
    assert!(matches!(e, Refusal::Store(_)), "{e:?}");
    peer_wants(&edge, 1).await;
    assert_eq!(active(&h).await, vec![a]);

    // The store writes again: both go through.
    h.withdraw(a, "noc", "test").await.unwrap();
    peer_wants(&edge, 0).await;
    let made = h
        .create_batch("noc", vec![Ok(order(Kind::Rtbh, "203.0.113.2/32"))], false)
        .await
        .unwrap();
    assert!(made[0].is_ok(), "{made:?}");
    peer_wants(&edge, 1).await;
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}

/// A caller that must not go on unrecorded (a reload) hears that its entry could not be written,
/// and the log holds only what was.
#[tokio::test]
async fn an_entry_that_cannot_be_written_is_refused_to_the_caller_that_needs_it() {
    let d = dir("try-record");
    let store = Store::open(&d).unwrap();
    let fail = store.failing();
    let (h, stop, task) = over(store, guardrails(&["203.0.113.0/24"], &[])).await;
    fail.store(1, std::sync::atomic::Ordering::Relaxed);
    let e = h
        .try_record("config", "config.reload", serde_json::json!({"n": 1}))
        .await
        .unwrap_err();
    assert!(matches!(e, Refusal::Store(_)), "{e}");
    h.try_record("config", "config.reload", serde_json::json!({"n": 2}))
        .await
        .unwrap();
    let reloads: Vec<_> = h
        .audit(0, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "config.reload")
        .map(|e| e.detail["n"].clone())
        .collect();
    assert_eq!(reloads, vec![serde_json::json!(2)]);
    stop.cancel();
    task.await.unwrap();
    let _ = std::fs::remove_dir_all(&d);
}
