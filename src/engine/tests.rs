//! The engine end to end: a real mitigation set and store, reports in, mitigations out.
use std::time::Duration;

use super::*;
use crate::detect::{Class, Thresholds};
use crate::mitigation::guardrails::Guardrails;
use crate::mitigation::store::Store;
use crate::mitigation::{ListFilter, Mitigation};
use crate::telemetry::{Flow, Target};

const VICTIM: &str = "203.0.113.7";

struct Rig {
    engine: EngineHandle,
    set: MitigationHandle,
    dir: std::path::PathBuf,
    seq: u64,
    stop: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Whether the directory goes with the rig (not when it is restarted).
    keep: bool,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.stop.cancel();
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn rig(tag: &str, policy: &str) -> Rig {
    rig_with(tag, policy, Lists::default()).await
}

async fn rig_with(tag: &str, policy: &str, ioc: Lists) -> Rig {
    let dir = std::env::temp_dir().join(format!("deflect-engine-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    rig_in(dir, policy, ioc).await
}

/// A rig over the store in `dir`, as it is.
async fn rig_in(dir: std::path::PathBuf, policy: &str, ioc: Lists) -> Rig {
    let stop = CancellationToken::new();
    let store = Store::open(&dir).unwrap();
    let guardrails = Guardrails::for_tests(&["203.0.113.0/24"], &[]);
    let protected = guardrails.protected.clone();
    let (set, set_task) = crate::mitigation::start(
        store,
        guardrails,
        Vec::new(),
        65000,
        crate::clock::Clock::wall(),
        stop.clone(),
    )
    .await
    .unwrap();
    let mut th = Thresholds {
        warmup: Duration::ZERO,
        cooldown: Duration::from_millis(500),
        ..Thresholds::default()
    };
    th.floor_pps[Class::UdpAmp.index()] = 5000.0;
    let settings = detect::Settings {
        groups: vec![("customers".into(), protected["customers"].clone(), th)],
        upstream: vec!["sflow:transit".into()],
        ..detect::Settings::default()
    };
    let known = policy::Known {
        groups: ["customers".to_string()].into(),
        peers: Default::default(),
        ioc: ioc.lists.iter().map(|l| l.name.clone()).collect(),
    };
    let policies = Policies::parse(&[("p.yaml".into(), policy.into())], &known).unwrap();
    let (engine, engine_task) = start(
        Setup {
            settings,
            policies,
            known,
            ioc,
        },
        Outlets {
            mitigations: set.clone(),
            recorder: None,
            alerts: None,
            tasks: TaskTracker::new(),
            baselines: Some(dir.join("baselines.bin")),
        },
        stop.clone(),
    );
    Rig {
        engine,
        set,
        dir,
        seq: 0,
        stop,
        tasks: vec![set_task, engine_task],
        keep: false,
    }
}

impl Rig {
    /// One 100 ms report with `ntp` pps of NTP answers to the victim.
    async fn report(&mut self, ntp: u64) -> Ack {
        self.report_from(ntp, "192.0.2.200").await
    }

    /// The same, the flood coming from `source`.
    async fn report_from(&mut self, ntp: u64, source: &str) -> Ack {
        self.report_as("web1", ntp, source).await
    }

    /// The same, from node `node`.
    async fn report_as(&mut self, node: &str, ntp: u64, source: &str) -> Ack {
        self.seq += 1;
        let mut flows = vec![Flow {
            proto: 6,
            dport: Some(443),
            tcp_flags: Some(0x10),
            pps: 300,
            bps: 2_400_000,
            ..Flow::default()
        }];
        if ntp > 0 {
            flows.push(Flow {
                proto: 17,
                sport: Some(123),
                dport: Some(4444),
                pps: ntp,
                bps: ntp * 3760,
                ..Flow::default()
            });
        }
        let r = Report {
            node: "web1".into(),
            seq: self.seq,
            time_ms: 0,
            interval_ms: 100,
            one_in: 1,
            sampled: 0,
            interfaces: Vec::new(),
            targets: vec![Target {
                dst: VICTIM.parse().unwrap(),
                pps: 300 + ntp,
                bps: 2_400_000 + ntp * 3760,
                flows,
                sources: vec![crate::telemetry::Source {
                    addr: source.parse().unwrap(),
                    pps: ntp,
                }],
                trusted_pps: 0,
                trusted_bps: 0,
            }],
            rollups: Vec::new(),
            packets: Vec::new(),
            applied: Vec::new(),
            drop_error: None,
        };
        self.engine.report(node, r).await.unwrap()
    }

    /// Reports `ntp` every 100 ms for `ms`.
    async fn for_ms(&mut self, ms: u64, ntp: u64) {
        for _ in 0..ms / 100 {
            self.report(ntp).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn active(&self) -> Vec<Mitigation> {
        self.set.list(ListFilter::default()).await.unwrap()
    }

    /// Stops everything and starts again over the same store.
    async fn restart(mut self, policy: &str) -> Rig {
        self.stop.cancel();
        for t in std::mem::take(&mut self.tasks) {
            t.await.unwrap();
        }
        // The store closes with the last handle to it.
        self.keep = true;
        let (dir, seq) = (self.dir.clone(), self.seq);
        drop(self);
        let mut r = rig_in(dir, policy, Lists::default()).await;
        r.seq = seq;
        r
    }

    /// The engine dies at once (a crash: nothing written at its stop), then everything starts
    /// again over the same store.
    async fn crash(mut self, policy: &str) -> Rig {
        let mut tasks = std::mem::take(&mut self.tasks);
        let engine = tasks.pop().unwrap();
        engine.abort();
        let _ = engine.await;
        self.tasks = tasks;
        self.restart(policy).await
    }

    /// An enforced flood: the flood reaches the node until a rule is in place, then nothing of
    /// it does (the edge drops it), for `ms`. Returns how many reports carried the flood.
    async fn enforced_for_ms(&mut self, ms: u64, ntp: u64) -> u32 {
        let mut through = 0;
        for _ in 0..ms / 100 {
            let enforced = !self.active().await.is_empty();
            if !enforced {
                through += 1;
            }
            self.report(if enforced { 0 } else { ntp }).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        through
    }

    async fn attacks(&self) -> Vec<Attack> {
        self.engine.attacks(false).await
    }
}

/// A turn that says what became of it.
#[derive(Debug)]
struct Recorded(std::sync::Arc<std::sync::Mutex<Vec<Option<Duration>>>>);

impl super::Turn for Recorded {
    fn judged(self: Box<Self>, work: Duration) {
        self.0.lock().unwrap().push(Some(work));
    }
}

// One thread: the engine cannot answer between the send and the caller leaving, so "left before
// the answer" is what happens on every run (with two workers the engine may answer within the
// first poll).
#[tokio::test(flavor = "current_thread")]
async fn a_turn_is_held_until_its_report_is_judged_even_when_the_caller_leaves() {
    let mut rig = rig("turn", ESCALATE).await;
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    // Judged: told how long it took, before the answer.
    rig.report(0).await;
    let mut quiet = Report {
        node: "web1".into(),
        seq: 100,
        interval_ms: 100,
        one_in: 1,
        ..Report::default()
    };
    let ack = rig
        .engine
        .report_in_turn("web1", quiet.clone(), Box::new(Recorded(seen.clone())))
        .await
        .unwrap();
    assert!(ack.accepted);
    assert_eq!(seen.lock().unwrap().len(), 1);
    assert!(seen.lock().unwrap()[0].is_some());
    // The caller sends and leaves at once (a client that hangs up): the engine still holds the
    // turn until it has judged the report, so a node cannot queue more by hanging up.
    quiet.seq += 1;
    let fut = rig
        .engine
        .report_in_turn("web1", quiet, Box::new(Recorded(seen.clone())));
    tokio::select! {
        biased;
        _ = fut => panic!("answered before it was judged"),
        _ = std::future::ready(()) => {}
    }
    for _ in 0..100 {
        if seen.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "judged after its caller left"
    );
}

const ESCALATE: &str = "\
match:
  vectors: [amplification]
ttl: 10m
withdraw_after: 1s
steps:
  - announce: flowspec
    match: [proto, sport]
    action: rate-bytes 125000
  - after: 1s
    if_above_pps: 50000
    announce: flowspec
    match: [proto, sport]
    action: discard
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_waits_changes_the_rule_in_place_only_above_its_rate() {
    let mut r = rig("escalate", ESCALATE).await;
    r.for_ms(300, 0).await;
    let ack = r.report(20_000).await;
    assert_eq!(ack.started.len(), 1);
    let first = r.active().await;
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0].rule.as_deref(),
        Some("dst 203.0.113.7/32 proto udp sport 123 then rate-bytes 125000")
    );
    // 1.5 s at 20k pps: under the second step's 50k, nothing changes.
    r.for_ms(1500, 20_000).await;
    assert_eq!(r.active().await, first);
    // It grows: the discard replaces the rate limit in place (same match: the same rule on the
    // wire, its actions changed by one UPDATE, never withdrawn in between).
    r.for_ms(300, 80_000).await;
    let now = r.active().await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].id, first[0].id);
    assert_eq!(
        now[0].rule.as_deref(),
        Some("dst 203.0.113.7/32 proto udp sport 123 then discard")
    );
    let audit = r.set.audit(0, 1000).await.unwrap();
    let mine = |e: &&crate::audit::AuditEntry| e.detail["id"] == first[0].id;
    let actions: Vec<&str> = audit
        .iter()
        .filter(mine)
        .map(|e| e.action.as_str())
        .filter(|a| a.starts_with("mitigation.") && *a != "mitigation.extend")
        .collect();
    assert_eq!(actions, ["mitigation.create", "mitigation.amend"]);
    // Over: withdrawn after the cooldown and the hold-down.
    r.for_ms(2500, 0).await;
    assert!(r.active().await.is_empty());
    let a = r.engine.attack(ack.started[0]).await.unwrap();
    assert!(a.ended_ms.is_some());
    assert!(
        a.timeline.iter().any(|m| m.what.starts_with("withdrew 1")),
        "{a:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_policy_announces_nothing_and_says_what_it_would_do() {
    let policy = format!("dry_run: true\n{ESCALATE}");
    let mut r = rig("dry", &policy).await;
    r.for_ms(300, 0).await;
    let ack = r.report(20_000).await;
    assert!(r.active().await.is_empty());
    let a = r.engine.attack(ack.started[0]).await.unwrap();
    assert!(
            a.timeline
                .iter()
                .any(|m| m.what == "step 1 (dry-run): would announce dst 203.0.113.7/32 proto udp sport 123 then rate-bytes 125000"),
            "{:#?}",
            a.timeline
        );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attack_back_during_the_hold_down_is_the_same_attack_and_keeps_its_rule() {
    let policy = ESCALATE.replace("withdraw_after: 1s", "withdraw_after: 3s");
    let mut r = rig("resume", &policy).await;
    r.for_ms(300, 0).await;
    let first = r.report(20_000).await.started[0];
    let rule = r.active().await;
    assert_eq!(rule.len(), 1);
    // Ends (0.5 s cooldown), then comes back within the 3 s hold-down.
    r.for_ms(1000, 0).await;
    assert!(r.engine.attack(first).await.unwrap().ended_ms.is_some());
    let again = r.report(20_000).await.started;
    assert_eq!(again, [first], "reopened, not a new attack");
    r.for_ms(3500, 20_000).await;
    assert_eq!(
        r.active().await,
        rule,
        "the same mitigation, never withdrawn"
    );
    let a = r.engine.attack(first).await.unwrap();
    assert!(a.is_active());
    assert_eq!(a.mitigations, vec![rule[0].id]);
    assert!(
        a.timeline
            .iter()
            .any(|m| m.what.starts_with("came back during its hold-down")),
        "{:#?}",
        a.timeline
    );
    assert_eq!(r.attacks().await.len(), 1);
}

const ENFORCED: &str = "\
match:
  vectors: [amplification]
ttl: 10m
withdraw_after: 1s
recurrence: { probation: 3s, growth: 3, max_withdraw_after: 10s }
steps:
  - announce: flowspec
    match: [proto, sport]
    action: discard
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enforced_flood_stays_one_attack_its_rule_returns_at_once_and_its_hold_down_grows() {
    let mut r = rig("enforced", ENFORCED).await;
    r.for_ms(300, 0).await;
    // 9 s of a flood the edge drops while the rule is in place: quiet 0.5 s after the rule is
    // the end, 1 s later the withdrawal, the flood is back the next report.
    let through = r.enforced_for_ms(9000, 20_000).await;
    let attacks = r.attacks().await;
    assert_eq!(attacks.len(), 1, "one flood, one attack: {attacks:#?}");
    let a = &attacks[0];
    // Withdrawals: after 1 s of quiet, then 3 s, then 9 s: two in 9 s, each let one report of
    // the flood through before the rule was back (the first report started it).
    let withdrawn: Vec<&str> = a
        .timeline
        .iter()
        .map(|m| m.what.as_str())
        .filter(|w| w.starts_with("withdrew"))
        .collect();
    assert_eq!(withdrawn.len(), 2, "{:#?}", a.timeline);
    assert_eq!(through, 3, "{:#?}", a.timeline);
    let returns: Vec<&str> = a
        .timeline
        .iter()
        .map(|m| m.what.as_str())
        .filter(|w| w.starts_with("came back after its rules were withdrawn"))
        .collect();
    assert_eq!(returns.len(), 2, "{:#?}", a.timeline);
    assert!(
        returns[0].contains("next hold-down 3 s (was 1 s)"),
        "{returns:?}"
    );
    assert!(
        returns[1].contains("next hold-down 9 s (was 3 s)"),
        "{returns:?}"
    );
    // Every rule is the same rule; each return made it again at once (no confirm interval).
    let all = r
        .set
        .list(ListFilter {
            all: Some(true),
            ..ListFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3, "{all:#?}");
    assert!(all.iter().all(|m| m.rule == all[0].rule));
    // The audit log: one start, two returns.
    let audit = r.set.audit(0, 1000).await.unwrap();
    let count = |what: &str| audit.iter().filter(|e| e.action == what).count();
    assert_eq!((count("attack.start"), count("attack.return")), (1, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attack_not_back_within_its_probation_is_over_and_the_next_one_is_new() {
    let mut r = rig("probation", ENFORCED).await;
    r.for_ms(300, 0).await;
    let first = r.report(20_000).await.started[0];
    // Quiet: withdrawn 1 s after the quiet, over 3 s after that.
    r.for_ms(5500, 0).await;
    assert!(r.active().await.is_empty());
    let a = r.engine.attack(first).await.unwrap();
    assert!(
        a.timeline
            .iter()
            .any(|m| m.what.starts_with("over: no return")),
        "{:#?}",
        a.timeline
    );
    let audit = r.set.audit(0, 1000).await.unwrap();
    assert_eq!(
        audit.iter().filter(|e| e.action == "attack.over").count(),
        1
    );
    // A flood now is another attack, with the policy's first hold-down.
    let second = r.report(20_000).await.started[0];
    assert_ne!(second, first);
    assert_eq!(r.active().await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_flood_pressing_at_the_cap_goes_on() {
    // 125 kB/s is 1 Mb/s: 200 pps of 470-byte answers (752 kb/s) press at it, under the
    // detection threshold (5k pps) but not the end of the attack.
    let mut r = rig("cap", ESCALATE).await;
    r.for_ms(300, 0).await;
    let id = r.report(20_000).await.started[0];
    let rule = r.active().await;
    assert_eq!(rule.len(), 1);
    assert!(r.engine.attack(id).await.unwrap().cap.is_some());
    r.for_ms(3000, 200).await;
    let a = r.engine.attack(id).await.unwrap();
    assert!(a.is_active(), "{:#?}", a.timeline);
    assert_eq!(r.active().await, rule);
    // Far under the cap: the attack ends and its rule goes after the hold-down.
    r.for_ms(2500, 10).await;
    assert!(!r.engine.attack(id).await.unwrap().is_active());
    assert!(r.active().await.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attack_ids_are_short_and_a_crash_never_gives_one_twice() {
    let reserved = |set: MitigationHandle| async move {
        let m = set.memories().await.unwrap();
        let v = &m.iter().find(|(k, _)| k == restart::IDS_KEY).unwrap().1;
        serde_json::from_slice::<u64>(v).unwrap()
    };
    let mut r = rig("ids", ESCALATE).await;
    r.for_ms(300, 0).await;
    assert_eq!(r.report(20_000).await.started, vec![1]);
    // Reserved before it was given: a block ahead.
    assert_eq!(reserved(r.set.clone()).await, 1 + restart::ID_BLOCK);
    // A crash: the next start goes on after the reservation, never below it.
    let mut r = r.crash(ESCALATE).await;
    r.for_ms(300, 0).await;
    assert!(r.report(0).await.started.is_empty());
    assert_eq!(reserved(r.set.clone()).await, 1 + 2 * restart::ID_BLOCK);
    // The next attack's id is the first of the new block.
    let icmp = Flow {
        proto: 1,
        pps: 90_000,
        bps: 90_000 * 480,
        ..Flow::default()
    };
    let flood = Report {
        node: "web1".into(),
        seq: 10_000,
        interval_ms: 100,
        one_in: 1,
        targets: vec![Target::of_flows("203.0.113.9".parse().unwrap(), vec![icmp])],
        ..Report::default()
    };
    let ack = r.engine.report("web1", flood).await.unwrap();
    assert_eq!(ack.started, vec![1 + restart::ID_BLOCK]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learned_baselines_come_back_after_a_restart_and_a_damaged_file_is_set_aside() {
    let mut r = rig("learned", ESCALATE).await;
    r.for_ms(500, 0).await;
    let victim: IpAddr = VICTIM.parse().unwrap();
    let before = r.engine.target(victim).await.unwrap();
    let mut r = r.restart(ESCALATE).await;
    let file = r.dir.join("baselines.bin");
    assert!(file.is_file());
    r.report(0).await;
    assert_eq!(
        r.engine.metrics.baselines_restored.load(Ordering::Relaxed),
        2,
        "the address and its /24"
    );
    let after = r.engine.target(victim).await.unwrap();
    let ack = Class::TcpAck.index();
    assert!(
        (after.classes[ack].baseline_pps - before.classes[ack].baseline_pps).abs() < 1.0,
        "{after:?}"
    );
    // Damaged: set aside, counted, detection goes on cold.
    std::fs::write(
        &file,
        b"DFLB\x01 not what it should be, and longer than a header",
    )
    .unwrap();
    let mut r = r.crash(ESCALATE).await;
    r.report(0).await;
    assert_eq!(
        r.engine
            .metrics
            .baselines_unreadable
            .load(Ordering::Relaxed),
        1
    );
    assert!(r.dir.join("baselines.bin.bad").is_file());
    let cold = r.engine.target(victim).await.unwrap();
    assert!(
        cold.classes[ack].baseline_pps > 0.0,
        "learning again: {cold:?}"
    );
    assert_eq!(
        r.engine.metrics.baselines_restored.load(Ordering::Relaxed),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_does_not_forget_an_attack_on_probation_nor_its_hold_down() {
    let policy = ENFORCED.replace("probation: 3s", "probation: 60s");
    let mut r = rig("memory", &policy).await;
    r.for_ms(300, 0).await;
    // A return: hold-down 3 s; then quiet and withdrawn, on probation.
    r.enforced_for_ms(3000, 20_000).await;
    r.for_ms(5000, 0).await;
    assert!(r.active().await.is_empty());
    let before = r.attacks().await;
    assert_eq!(before.len(), 1);
    let mut r = r.restart(&policy).await;
    r.for_ms(300, 0).await;
    // The flood comes back after the restart: the rule at once, and the hold-down it had grown
    // to grows on (3 s × 3).
    let id = r.report(20_000).await.started[0];
    assert_eq!(r.active().await.len(), 1);
    let a = r.engine.attack(id).await.unwrap();
    assert!(
        a.timeline
            .iter()
            .any(|m| m.what == format!("the return of attack {} (before a restart)", before[0].id)),
        "{:#?}",
        a.timeline
    );
    assert!(
        a.timeline
            .iter()
            .any(|m| m.what.contains("next hold-down 9 s (was 3 s), return 2")),
        "{:#?}",
        a.timeline
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_attack_keeps_its_rule_alive_past_the_ttl() {
    let policy = ESCALATE.replace("ttl: 10m", "ttl: 3s");
    let mut r = rig("ttl", &policy).await;
    r.for_ms(300, 0).await;
    r.report(20_000).await;
    let m = r.active().await;
    r.for_ms(4500, 20_000).await;
    let now = r.active().await;
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].id, m[0].id);
    assert!(now[0].expires_ms > m[0].expires_ms + 1000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_policy_can_require_sources_from_an_indicator_list() {
    let dir = std::env::temp_dir().join(format!("deflect-engine-ioc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("mirai.txt");
    std::fs::write(&file, "# a botnet\n198.51.100.0/24\n").unwrap();
    let ioc = Lists::load(&[("mirai".to_string(), file)]);
    let policy = ESCALATE.replace(
        "  vectors: [amplification]",
        "  vectors: [amplification]\n  ioc: [mirai]",
    );
    let mut r = rig_with("ioc", &policy, ioc).await;
    r.for_ms(300, 0).await;
    // From an address in no list: an attack, but the policy does not take it.
    let first = r.report_from(20_000, "192.0.2.200").await.started[0];
    assert!(r.active().await.is_empty());
    let a = r.engine.attack(first).await.unwrap();
    assert!(a.ioc.is_empty() && a.policy.is_none(), "{a:?}");
    r.for_ms(1000, 0).await;
    // From the botnet: the attack shows its hits and the policy runs.
    let second = r.report_from(20_000, "198.51.100.9").await.started[0];
    let a = r.engine.attack(second).await.unwrap();
    assert_eq!(a.ioc.get("mirai"), Some(&1), "{a:?}");
    assert_eq!(a.policy.as_deref(), Some("p"));
    assert_eq!(r.active().await.len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_playbook_step_calls_an_api_and_undoes_it_on_withdrawal() {
    let (port, rx) = crate::http::testing::receiver(&[200; 8]);
    // The "secret" comes from PATH, which every process has: setting a variable in a
    // multi-threaded test is not sound.
    let policy = format!(
        "match:\n  vectors: [amplification]\nwithdraw_after: 1s\nsteps:\n  - call:\n      name: scrubber\n      url: 'http://127.0.0.1:{port}/divert/{{{{target}}}}'\n      headers: {{ Authorization: 'Bearer {{{{env.PATH}}}}' }}\n      body: '{{\"prefix\": \"{{{{target}}}}/32\", \"attack\": {{{{attack}}}}}}'\n      undo: {{ url: 'http://127.0.0.1:{port}/divert/{{{{target}}}}' }}\n"
    );
    let mut r = rig("playbook", &policy).await;
    r.for_ms(300, 0).await;
    let id = r.report(20_000).await.started[0];
    let (method, path, auth, body) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("POST", "/divert/203.0.113.7")
    );
    assert_eq!(auth, format!("Bearer {}", std::env::var("PATH").unwrap()));
    assert_eq!(
        body,
        format!("{{\"prefix\": \"203.0.113.7/32\", \"attack\": {id}}}")
    );
    // No mitigation: this policy only calls.
    assert!(r.active().await.is_empty());
    // Over: after the cooldown and the hold-down, the undo.
    r.for_ms(2500, 0).await;
    let (method, path, _, _) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(
        (method.as_str(), path.as_str()),
        ("DELETE", "/divert/203.0.113.7")
    );
    let a = r.engine.attack(id).await.unwrap();
    assert!(
        a.timeline
            .iter()
            .any(|m| m.what.starts_with("step 1: calling scrubber")),
        "{a:?}"
    );
    assert!(
        a.timeline
            .iter()
            .any(|m| m.what == "undoing 1 playbook calls"),
        "{a:?}"
    );
    // Both requests are in the audit log, without the credentials.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let audit = r.set.audit(0, 1000).await.unwrap();
    let calls: Vec<&str> = audit
        .iter()
        .map(|e| e.action.as_str())
        .filter(|a| a.starts_with("playbook"))
        .collect();
    assert_eq!(calls, ["playbook.call", "playbook.undo"]);
    assert!(
        !serde_json::to_string(&audit)
            .unwrap()
            .contains(&std::env::var("PATH").unwrap())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_gone_silent_keeps_no_rule_beyond_its_lifetime_and_it_returns_with_the_node() {
    let policy = ESCALATE.replace("ttl: 10m", "ttl: 3s");
    let mut r = rig("stale", &policy).await;
    r.for_ms(300, 0).await;
    let id = r.report(20_000).await.started[0];
    r.for_ms(1000, 20_000).await;
    let first = r.active().await;
    assert_eq!(first.len(), 1);
    // The node dies mid-attack: stale after 5 s, and the rule goes once the 3 s it was last
    // given run out, on record, not renewed for ever.
    let start = std::time::Instant::now();
    let gone = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let m = r.set.get(first[0].id).await.unwrap();
        if m.withdrawn_ms.is_some() {
            break m;
        }
        assert!(
            start.elapsed() < Duration::from_secs(12),
            "still announced: {m:?}"
        );
    };
    assert!(
        gone.withdraw_reason
            .as_deref()
            .is_some_and(|w| w.contains("no evidence: node web1 stale")),
        "{gone:?}"
    );
    let a = r.engine.attack(id).await.unwrap();
    assert!(a.is_active(), "the attack itself is held: {a:?}");
    // The node is back and the flood goes on: the policy starts over at once.
    r.report(20_000).await;
    let now = r.active().await;
    assert_eq!(now.len(), 1, "{now:?}");
    assert_ne!(now[0].id, first[0].id);
    assert_eq!(now[0].rule, first[0].rule);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_agent_before_the_filters_keeps_the_attack_on_and_then_sees_its_real_end() {
    let mut r = rig("upstream", ENFORCED).await;
    r.for_ms(300, 0).await;
    let id = r.report(20_000).await.started[0];
    // Enforced: the probe sees nothing, the transit switch still sees the flood, for 4 s
    // (well past the cooldown and the hold-down).
    for _ in 0..20 {
        r.report_as("sflow:transit", 20_000, "192.0.2.200").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        r.report(0).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = r.engine.attack(id).await.unwrap();
    assert!(a.is_active(), "{:#?}", a.timeline);
    assert_eq!(r.active().await.len(), 1);
    // Over on both sides: quiet seen upstream, withdrawn after the first hold-down.
    for _ in 0..12 {
        r.report_as("sflow:transit", 0, "192.0.2.200").await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        r.report(0).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let a = r.engine.attack(id).await.unwrap();
    assert!(a.quiet_upstream, "{a:?}");
    assert!(r.active().await.is_empty(), "{:#?}", a.timeline);
    assert!(
        a.timeline
            .iter()
            .any(|m| m.what.contains("seen upstream of the filters")),
        "{:#?}",
        a.timeline
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_restart_a_rule_that_hides_its_flood_leaves_after_a_hold_down_not_its_lifetime() {
    // ttl 10 m: without the escalation taking its rule back, the rule would stay 10 minutes
    // after a restart, with nothing to see the flood it hides.
    let mut r = rig("adopt", ENFORCED).await;
    r.for_ms(300, 0).await;
    r.report(20_000).await;
    let rule = r.active().await;
    assert_eq!(rule.len(), 1);
    let mut r = r.restart(ENFORCED).await;
    // Enforced: nothing of the flood reaches the node. The rule leaves after the hold-down (1 s)
    // from the restart.
    r.for_ms(2500, 0).await;
    assert!(
        r.active().await.is_empty(),
        "still announced after the hold-down"
    );
    let m = r.set.get(rule[0].id).await.unwrap();
    assert!(
        m.withdraw_reason
            .as_deref()
            .is_some_and(|w| w.contains("hold-down")),
        "{m:?}"
    );
    // The flood is still there: it comes back at once, the same rule again.
    r.report(20_000).await;
    let again = r.active().await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].rule, rule[0].rule);
}

/// Two addresses flooded from the same heavy source: one S/RTBH route, shared.
const SHARED_SOURCE: &str = "\
match:
  vectors: [amplification]
ttl: 10m
withdraw_after: 1s
recurrence: { probation: 1s }
steps:
  - announce: source-rtbh
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_route_two_attacks_share_stays_until_the_last_of_them_ends() {
    let r = rig("shared", SHARED_SOURCE).await;
    let report = |seq: u64, floods: &[(&str, u64)]| Report {
        node: "web1".into(),
        seq,
        time_ms: 0,
        interval_ms: 100,
        one_in: 1,
        sampled: 0,
        interfaces: Vec::new(),
        targets: floods
            .iter()
            .map(|(dst, ntp)| Target {
                dst: dst.parse().unwrap(),
                pps: 300 + ntp,
                bps: 2_400_000,
                flows: vec![
                    Flow {
                        proto: 6,
                        dport: Some(443),
                        tcp_flags: Some(0x10),
                        pps: 300,
                        bps: 2_400_000,
                        ..Flow::default()
                    },
                    Flow {
                        proto: 17,
                        sport: Some(123),
                        dport: Some(4444),
                        pps: *ntp,
                        bps: ntp * 3760,
                        ..Flow::default()
                    },
                ],
                sources: vec![crate::telemetry::Source {
                    addr: "198.51.100.23".parse().unwrap(),
                    pps: ntp / 2,
                }],
                trusted_pps: 0,
                trusted_bps: 0,
            })
            .collect(),
        rollups: Vec::new(),
        packets: Vec::new(),
        applied: Vec::new(),
        drop_error: None,
    };
    let mut seq = 0;
    let mut send = async |floods: &[(&str, u64)], ms: u64| {
        for _ in 0..ms.div_ceil(100) {
            seq += 1;
            r.engine.report("web1", report(seq, floods)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    let (a, b) = ("203.0.113.7", "203.0.113.8");
    send(&[(a, 0), (b, 0)], 300).await;
    // Both flooded from the same source: two attacks, one S/RTBH route.
    send(&[(a, 20_000), (b, 20_000)], 300).await;
    let shared = r.active().await;
    assert_eq!(shared.len(), 1, "{shared:?}");
    assert_eq!(shared[0].prefix, Some("198.51.100.23/32".parse().unwrap()));
    // The first attack ends (0.5 s cooldown, 1 s hold-down, 1 s probation): the route stays for
    // the second.
    send(&[(a, 0), (b, 20_000)], 3500).await;
    assert_eq!(r.active().await.len(), 1, "still held by the second attack");
    let all = r.engine.attacks(false).await;
    let first = all.iter().find(|x| x.target.to_string() == a).unwrap();
    assert!(first.ended_ms.is_some(), "the first is over: {first:#?}");
    assert!(
        first
            .timeline
            .iter()
            .any(|m| m.what.starts_with("withdrew")),
        "{:#?}",
        first.timeline
    );
    // The second ends: withdrawn.
    send(&[(a, 0), (b, 0)], 2500).await;
    assert!(r.active().await.is_empty());
}
