//! The detection task: telemetry in, attacks and policy steps out, mitigations through the
//! mitigation set.
//!
//! ```text
//!  POST /api/v1/telemetry ─┐                ┌ Detector (baselines, attacks)        detect/
//!  sFlow collector ────────┴──► engine task ┼ Escalation per attack (pure)         escalation.rs
//!                                   │       └ LocalDrops per node                  local.rs
//!                                   ├──► MitigationHandle::create / withdraw / extend (orders)
//!                                   ├──► Alerter (try_send)        ├──► playbook calls (tracked tasks)
//!                                   └──► Recorder (captures)       └──► audit (AuditSink)
//! ```
//!
//! One task owns the detector and every attack's escalation. It answers a report once the
//! report is judged and any mitigation it caused is durable and handed to the peers, so a
//! report → UPDATE path has no queue in the middle. A timer runs the steps that wait (`after`,
//! `if_above_pps`), renews the lifetime of mitigations while their attack lasts, withdraws them
//! after the policy's hold-down once it goes quiet, closes the attack when it has not come back
//! within the probation, marks silent nodes stale, and reloads the policy directory when its
//! files change. The task stops when the daemon's stop token is cancelled. The same engine runs
//! without a task in `deflect replay` ([`Replay`], `replay.rs`): reports and timer ticks are
//! handed to it by a caller that moves a manual [`Clock`].
//!
//! One flood is one attack, however often deflect's own rule hides it: an attack that comes back
//! during its hold-down or probation is reopened (the detector folds the new start into it), its
//! rules return at once and its next hold-down grows (see `escalation.rs`). Alerts follow the
//! attack: one start, escalations and returns, and one end, sent when it is over (closed) if a
//! mitigation could have hidden it, else when it goes quiet. What an escalation must not forget
//! across a restart (its hold-down, its returns) is kept in the store; the learned baselines in a
//! snapshot file beside it, and the attack ids given so far as a reservation in the store
//! (`restart.rs`).

mod announce;
mod escalation;
mod local;
mod playbook;
mod replay;
mod restart;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

use self::escalation::{Escalation, Memory, Tick, memory_key};
use self::local::LocalDrops;
pub use self::replay::Replay;
use crate::alert::{Alerter, Event as Alert, EventKind};
use crate::audit::AuditSink;
use crate::clock::Clock;
use crate::detect::{self, Attack, Detector, Event, Node, TargetView};
use crate::ioc::Lists;
use crate::mitigation::{ListFilter, MitigationHandle};
use crate::pcap::Recorder;
use crate::policy::{self, Call, Policies, Policy};
use crate::telemetry::{LocalDrop, Report};

/// What detection runs on: settings, policies and what they may refer to, indicator lists.
#[derive(Debug)]
pub struct Setup {
    pub settings: detect::Settings,
    pub policies: Policies,
    pub known: policy::Known,
    pub ioc: Lists,
}

/// Where the engine's decisions go.
#[derive(Debug)]
pub struct Outlets {
    pub mitigations: MitigationHandle,
    pub recorder: Option<Recorder>,
    pub alerts: Option<Alerter>,
    /// Where playbook calls run.
    pub tasks: TaskTracker,
    /// Where the learned baselines are kept across restarts (`state_dir/baselines.bin`); none:
    /// not kept.
    pub baselines: Option<std::path::PathBuf>,
}

/// What the engine answers to a report.
#[derive(Debug, Clone, Serialize)]
pub struct Ack {
    pub accepted: bool,
    /// Attacks started by this report.
    pub started: Vec<u64>,
    /// Addresses whose sampled packets the controller captures: send them in `packets`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub capture: Vec<IpAddr>,
    /// The node-local drops wanted on this node, all of them (none: remove any).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub drops: Vec<LocalDrop>,
    /// Sources never counted as attack traffic (`detection.trusted_sources`): the probe leaves
    /// them out of its next intervals (none: trust none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub trusted: Vec<ipnet::IpNet>,
}

/// The policies in force and the last reload's problem, if any.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyState {
    pub policies: Vec<Policy>,
    pub source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

type Reply<T> = oneshot::Sender<T>;

/// Held by a report until the engine has judged it, then told how long the detector took over it:
/// the work a report's shape decides (its addresses, and its node's that it no longer names), not
/// the waits for the mitigations its attacks cause (those come from the traffic, and must never be
/// held against the node that sees an attack). How an edge bounds what one source of reports may
/// ask of the engine; dropped unjudged if the engine stops first.
pub trait Turn: Send + std::fmt::Debug {
    fn judged(self: Box<Self>, work: Duration);
}

#[derive(Debug)]
enum Request {
    Report {
        node: String,
        report: Box<Report>,
        turn: Option<Box<dyn Turn>>,
        reply: Reply<Ack>,
    },
    Attacks {
        active: bool,
        reply: Reply<Vec<Attack>>,
    },
    Attack {
        id: u64,
        reply: Reply<Option<Attack>>,
    },
    Targets {
        limit: usize,
        reply: Reply<Vec<TargetView>>,
    },
    Target {
        addr: IpAddr,
        reply: Reply<Option<TargetView>>,
    },
    /// What `/metrics` shows of the traffic: the busiest `top` and up to `attacked` attacked.
    Traffic {
        top: usize,
        attacked: usize,
        reply: Reply<detect::Traffic>,
    },
    Nodes {
        reply: Reply<Vec<Node>>,
    },
    Policies {
        reply: Reply<PolicyState>,
    },
    Ioc {
        reply: Reply<Vec<crate::ioc::ListInfo>>,
    },
    Reconfigure {
        setup: Box<Setup>,
        reply: Reply<()>,
    },
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct EngineMetrics {
    pub reports: AtomicU64,
    pub attacks_started: AtomicU64,
    pub attacks_ended: AtomicU64,
    pub attacks_active: AtomicU64,
    pub targets: AtomicU64,
    /// New addresses refused: the table full, or their node at its own limit.
    pub targets_over_limit: AtomicU64,
    pub targets_over_node_limit: AtomicU64,
    /// Addresses forgotten after their idle time.
    pub targets_evicted: AtomicU64,
    /// Prefixes tracked (carpet bombing), new ones refused past the limit, and address
    /// intervals that started no attack because their prefix's covered them.
    pub prefixes: AtomicU64,
    pub prefixes_over_limit: AtomicU64,
    pub covered_by_prefix: AtomicU64,
    pub nodes_stale: AtomicU64,
    /// Attacks that came back during their hold-down or probation (reopened, not new).
    pub attacks_returned: AtomicU64,
    /// Intervals judged a flash crowd, not an attack.
    pub flash_crowds: AtomicU64,
    /// Attacks over: closed after their probation.
    pub attacks_closed: AtomicU64,
    pub policy_steps: AtomicU64,
    pub policy_reload_errors: AtomicU64,
    /// Baselines snapshots written, failed, the last one's size; addresses and prefixes whose
    /// baselines came back at start, and snapshot files found unreadable.
    pub baselines_saved: AtomicU64,
    pub baselines_save_errors: AtomicU64,
    pub baselines_bytes: AtomicU64,
    pub baselines_restored: AtomicU64,
    pub baselines_unreadable: AtomicU64,
}

/// A handle to the engine task.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    tx: mpsc::Sender<Request>,
    pub metrics: Arc<EngineMetrics>,
}

impl EngineHandle {
    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Option<T> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(make(tx)).await.ok()?;
        rx.await.ok()
    }

    pub async fn report(&self, node: &str, report: Report) -> Option<Ack> {
        self.ask(|reply| Request::Report {
            node: node.to_string(),
            report: Box::new(report),
            turn: None,
            reply,
        })
        .await
    }

    /// A report that holds `turn` until it is judged, even if its caller stops waiting.
    pub async fn report_in_turn(
        &self,
        node: &str,
        report: Report,
        turn: Box<dyn Turn>,
    ) -> Option<Ack> {
        self.ask(|reply| Request::Report {
            node: node.to_string(),
            report: Box::new(report),
            turn: Some(turn),
            reply,
        })
        .await
    }

    pub async fn attacks(&self, active: bool) -> Vec<Attack> {
        self.ask(|reply| Request::Attacks { active, reply })
            .await
            .unwrap_or_default()
    }

    pub async fn attack(&self, id: u64) -> Option<Attack> {
        self.ask(|reply| Request::Attack { id, reply })
            .await
            .flatten()
    }

    pub async fn targets(&self, limit: usize) -> Vec<TargetView> {
        self.ask(|reply| Request::Targets { limit, reply })
            .await
            .unwrap_or_default()
    }

    /// The busiest `top` targets and up to `attacked` more under attack, in one round trip.
    pub async fn traffic(&self, top: usize, attacked: usize) -> detect::Traffic {
        self.ask(|reply| Request::Traffic {
            top,
            attacked,
            reply,
        })
        .await
        .unwrap_or_default()
    }

    pub async fn target(&self, addr: IpAddr) -> Option<TargetView> {
        self.ask(|reply| Request::Target { addr, reply })
            .await
            .flatten()
    }

    pub async fn nodes(&self) -> Vec<Node> {
        self.ask(|reply| Request::Nodes { reply })
            .await
            .unwrap_or_default()
    }

    pub async fn ioc(&self) -> Vec<crate::ioc::ListInfo> {
        self.ask(|reply| Request::Ioc { reply })
            .await
            .unwrap_or_default()
    }

    pub async fn policies(&self) -> Option<PolicyState> {
        self.ask(|reply| Request::Policies { reply }).await
    }

    /// New detection settings and policies, already checked (a configuration reload).
    pub async fn reconfigure(&self, setup: Setup) -> Result<(), String> {
        self.ask(|reply| Request::Reconfigure {
            setup: Box::new(setup),
            reply,
        })
        .await
        .ok_or_else(|| "deflect is shutting down".to_string())
    }
}

struct Engine {
    detector: Detector,
    policies: Policies,
    policy_error: Option<String>,
    known: policy::Known,
    escalations: BTreeMap<u64, Escalation>,
    mitigations: MitigationHandle,
    audit: Arc<dyn AuditSink>,
    recorder: Option<Recorder>,
    alerts: Option<Alerter>,
    playbooks: playbook::Runner,
    ioc: Lists,
    local: LocalDrops,
    metrics: Arc<EngineMetrics>,
    /// The wall clock, or a replay's.
    clock: Clock,
    /// The snapshot file of the learned baselines, if kept.
    baselines: Option<restart::Baselines>,
    /// Attack ids below this are reserved in the store.
    reserved_ids: u64,
}

/// How often the timer runs.
const TICK: Duration = Duration::from_millis(250);
/// How often the policy directory is looked at.
const POLICY_POLL: Duration = Duration::from_secs(2);

/// Starts the engine task; it ends when `stop` is cancelled.
pub fn start(
    setup: Setup,
    out: Outlets,
    stop: CancellationToken,
) -> (EngineHandle, tokio::task::JoinHandle<()>) {
    let engine = Engine::new(setup, out, Clock::wall(), stop.clone());
    let metrics = engine.metrics.clone();
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(engine.run(rx, stop).instrument(info_span!("engine")));
    (EngineHandle { tx, metrics }, task)
}

impl Engine {
    fn new(setup: Setup, out: Outlets, clock: Clock, stop: CancellationToken) -> Engine {
        let now = clock.now_ms();
        let audit = out.mitigations.audit_sink();
        Engine {
            detector: Detector::new(setup.settings, 1),
            policies: setup.policies,
            policy_error: None,
            known: setup.known,
            escalations: BTreeMap::new(),
            mitigations: out.mitigations,
            playbooks: playbook::Runner {
                tasks: out.tasks,
                stop,
                audit: audit.clone(),
                dry_run: clock.is_manual(),
            },
            audit,
            recorder: out.recorder,
            alerts: out.alerts,
            ioc: setup.ioc,
            local: LocalDrops::new(now),
            metrics: Arc::new(EngineMetrics::default()),
            clock,
            baselines: out.baselines.map(restart::Baselines::new),
            reserved_ids: 0,
        }
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Request>, stop: CancellationToken) {
        let now = self.clock.now_ms();
        self.restore_baselines(now).await;
        self.restore_memories(now).await;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_poll = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                req = rx.recv() => {
                    let Some(req) = req else { break };
                    self.handle(req).await;
                }
                _ = tick.tick() => {
                    self.tick(self.clock.now_ms()).await;
                    if last_poll.elapsed() >= POLICY_POLL {
                        last_poll = tokio::time::Instant::now();
                        if self.policies.changed() {
                            self.reload_policies().await;
                        }
                        self.ioc.refresh();
                    }
                    self.save_baselines(self.clock.now_ms(), false).await;
                    self.publish();
                }
            }
        }
        self.save_baselines(self.clock.now_ms(), true).await;
        self.release_attack_ids().await;
    }

    /// What the timer does: silent nodes marked stale, then the escalations' timers.
    async fn tick(&mut self, now: u64) {
        for node in self.detector.check_stale(now) {
            warn!(
                node,
                "node stopped reporting: stale, its targets are held as they are"
            );
            // Queued, not awaited: a hundred nodes going stale at once must not hold the
            // others' reports for a hundred commits.
            self.audit
                .record_later("system", "node.stale", serde_json::json!({"node": node}));
        }
        self.timers(now).await;
    }

    /// Escalations that waited for their attack's return when deflect stopped wait again, with
    /// the hold-down they had grown to. Memories that are over, unreadable or of a policy no
    /// longer loaded are forgotten.
    async fn restore_memories(&mut self, now: u64) {
        let mut stored = match self.mitigations.memories().await {
            Ok(m) => m,
            Err(e) => {
                warn!("attacks awaiting their return not restored: {e}");
                // The reservation unknown: ids go on from the time, as unique as that is.
                self.detector.skip_attack_ids_to(now);
                self.restore_attack_ids(None).await;
                return;
            }
        };
        let ids = stored
            .iter()
            .position(|(k, _)| k == restart::IDS_KEY)
            .map(|i| stored.swap_remove(i).1);
        self.restore_attack_ids(ids.as_deref()).await;
        if stored.is_empty() {
            return;
        }
        // Mitigations still in place, for the escalations to take back.
        let active = self
            .mitigations
            .list(ListFilter::default())
            .await
            .unwrap_or_default();
        let mut restored = 0;
        for (key, bytes) in stored {
            let m = match serde_json::from_slice::<Memory>(&bytes) {
                Ok(m) if m.key() == key => m,
                Ok(_) | Err(_) => {
                    warn!(
                        key,
                        "unreadable memory of an attack in the store: forgotten"
                    );
                    self.forget(key).await;
                    continue;
                }
            };
            let policy = self.policies.list.iter().find(|p| p.name == m.policy);
            match policy {
                Some(p) if m.until_ms > now && !self.escalations.contains_key(&m.attack) => {
                    let adopted: Vec<escalation::Made> = active
                        .iter()
                        .filter(|x| m.made.contains(&x.id))
                        .filter_map(|x| {
                            let t = x.target().ok()?;
                            Some(escalation::Made {
                                id: x.id,
                                kind: t.kind(),
                                key: t.key(),
                            })
                        })
                        .collect();
                    self.escalations.insert(
                        m.attack,
                        Escalation::remembered(p.clone(), &m, adopted, now),
                    );
                    restored += 1;
                }
                _ => self.forget(key).await,
            }
        }
        if restored > 0 {
            info!(
                attacks = restored,
                "attacks restored: their return is the same attack; rules still in place leave after a hold-down unless it is seen"
            );
        }
    }

    /// Keeps what the escalation of `id` must not forget across a restart (or forgets it, once
    /// it has nothing to wait for).
    async fn remember(&mut self, id: u64, now: u64) {
        let Some(e) = self.escalations.get(&id) else {
            return;
        };
        let (key, value) = match e.memory(id, now) {
            Some(m) => (m.key(), serde_json::to_vec(&m).ok()),
            None => (memory_key(e.target, e.prefix, e.vector), None),
        };
        if let Err(err) = self.mitigations.remember(key, value).await {
            warn!(attack = id, "memory of the attack not kept: {err}");
        }
    }

    async fn forget(&mut self, key: String) {
        if let Err(e) = self.mitigations.remember(key, None).await {
            warn!("memory of an attack not removed: {e}");
        }
    }

    fn publish(&self) {
        let m = &self.metrics;
        let c = &self.detector.counters;
        m.reports.store(c.reports, Ordering::Relaxed);
        m.attacks_started
            .store(c.attacks_started, Ordering::Relaxed);
        m.attacks_ended.store(c.attacks_ended, Ordering::Relaxed);
        m.attacks_active.store(
            self.detector.attacks().filter(|a| a.is_active()).count() as u64,
            Ordering::Relaxed,
        );
        m.targets
            .store(self.detector.target_count() as u64, Ordering::Relaxed);
        m.targets_over_limit
            .store(c.targets_over_limit, Ordering::Relaxed);
        m.targets_over_node_limit
            .store(c.targets_over_node_limit, Ordering::Relaxed);
        m.targets_evicted
            .store(c.targets_evicted, Ordering::Relaxed);
        m.flash_crowds.store(c.flash_crowds, Ordering::Relaxed);
        m.prefixes
            .store(self.detector.prefix_count() as u64, Ordering::Relaxed);
        m.prefixes_over_limit
            .store(c.prefixes_over_limit, Ordering::Relaxed);
        m.covered_by_prefix
            .store(c.covered_by_prefix, Ordering::Relaxed);
        m.nodes_stale.store(
            self.detector.nodes().iter().filter(|n| n.stale).count() as u64,
            Ordering::Relaxed,
        );
    }

    async fn reload_policies(&mut self) {
        let dir = self.policies.dir.clone();
        match Policies::load(dir.as_deref(), &self.known) {
            Ok(p) => {
                info!(policies = p.list.len(), "policies reloaded");
                self.mitigations
                    .record(
                        "config",
                        "policy.reload",
                        serde_json::json!({"policies": p.list.iter().map(|p| &p.name).collect::<Vec<_>>()}),
                    )
                    .await;
                self.policies = p;
                self.policy_error = None;
            }
            Err(e) => {
                warn!("policies not reloaded, the ones in force stay:\n{e}");
                self.metrics
                    .policy_reload_errors
                    .fetch_add(1, Ordering::Relaxed);
                self.mitigations
                    .record(
                        "config",
                        "policy.reload.refused",
                        serde_json::json!({"errors": e.to_string()}),
                    )
                    .await;
                self.policy_error = Some(e.to_string());
                // Do not try the same files again until they change.
                if let Some(d) = &dir {
                    self.policies.stamp = policy::listing(d).unwrap_or_default();
                }
            }
        }
    }

    async fn handle(&mut self, req: Request) {
        match req {
            Request::Report {
                node,
                report,
                turn,
                reply,
            } => {
                let (ack, work) = self.judge(&node, &report).await;
                if let Some(turn) = turn {
                    turn.judged(work);
                }
                let _ = reply.send(ack);
            }
            Request::Attacks { active, reply } => {
                let v = self
                    .detector
                    .attacks()
                    .filter(|a| !active || a.is_active())
                    .cloned()
                    .collect();
                let _ = reply.send(v);
            }
            Request::Attack { id, reply } => {
                let _ = reply.send(self.detector.attack(id).cloned());
            }
            Request::Targets { limit, reply } => {
                let _ = reply.send(self.detector.top_targets(limit));
            }
            Request::Target { addr, reply } => {
                let _ = reply.send(self.detector.target(addr));
            }
            Request::Traffic {
                top,
                attacked,
                reply,
            } => {
                let _ = reply.send(self.detector.traffic(top, attacked));
            }
            Request::Nodes { reply } => {
                let _ = reply.send(self.detector.nodes().to_vec());
            }
            Request::Ioc { reply } => {
                let _ = reply.send(self.ioc.lists.iter().map(|l| l.info()).collect());
            }
            Request::Policies { reply } => {
                let _ = reply.send(PolicyState {
                    policies: self.policies.list.clone(),
                    source: self
                        .policies
                        .dir
                        .as_ref()
                        .map_or_else(|| "<embedded>".to_string(), |d| d.display().to_string()),
                    last_error: self.policy_error.clone(),
                });
            }
            Request::Reconfigure { setup, reply } => {
                let Setup {
                    settings,
                    policies,
                    known,
                    ioc,
                } = *setup;
                self.detector.reconfigure(settings);
                self.policies = policies;
                self.known = known;
                self.ioc = ioc;
                self.policy_error = None;
                let _ = reply.send(());
            }
        }
    }

    /// One report judged: attacks started, advanced or ended, the policies' steps fired.
    async fn on_report(&mut self, node: &str, report: &Report) -> Ack {
        self.judge(node, report).await.0
    }

    /// [`Self::on_report`], and how long the detector took over it.
    async fn judge(&mut self, node: &str, report: &Report) -> (Ack, Duration) {
        let now = self.clock.now_ms();
        let t = std::time::Instant::now();
        let events = self.detector.ingest(node, report, now);
        self.tag_sources(&events, report);
        let work = t.elapsed();
        if !events.is_empty() {
            self.reserve_attack_ids().await;
        }
        let mut started = Vec::new();
        for e in events {
            match e {
                Event::Started(id) => {
                    started.push(self.on_start(id, now).await);
                }
                Event::Updated(id) => {
                    if self.escalations.contains_key(&id) {
                        self.advance(id, now).await;
                    }
                }
                Event::Ended(id) => self.on_end(id, now).await,
            }
        }
        self.metrics.reports.fetch_add(1, Ordering::Relaxed);
        self.confirm_drops(node, report, now);
        let ack = Ack {
            accepted: true,
            started,
            capture: Vec::new(),
            drops: self.local.wanted(node),
            trusted: self.detector.settings().trusted_sources.clone(),
        };
        (ack, work)
    }

    /// Sources in indicator lists, counted on their attacks before the policies look at them.
    fn tag_sources(&mut self, events: &[Event], report: &Report) {
        if self.ioc.is_empty() {
            return;
        }
        for e in events {
            let (Event::Started(id) | Event::Updated(id)) = e else {
                continue;
            };
            let Some(a) = self.detector.attack_mut(*id) else {
                continue;
            };
            let sources = report.sources_for(a.target, a.prefix);
            for src in sources {
                for list in self.ioc.lookup(src) {
                    *a.ioc.entry(list.to_string()).or_default() += 1;
                }
            }
        }
    }

    fn note(&mut self, id: u64, now: u64, what: impl Into<String>) {
        if let Some(a) = self.detector.attack_mut(id) {
            a.note(now, what);
        }
    }

    /// An attack started: its policy's escalation begins, or, when an escalation of the same
    /// target and vector waits for its return, it is that attack coming back. Returns the
    /// attack's id (the earlier one when it is reopened).
    async fn on_start(&mut self, id: u64, now: u64) -> u64 {
        let Some(a) = self.detector.attack(id) else {
            return id;
        };
        let (target, prefix, vector) = (a.target, a.prefix, a.vector);
        let waiting = self
            .escalations
            .iter()
            .find(|(_, e)| {
                e.awaits_return() && e.target == target && e.prefix == prefix && e.vector == vector
            })
            .map(|(pid, _)| *pid);
        if let Some(old) = waiting {
            return self.on_return(id, old, now).await;
        }
        info!(
            attack = id,
            target = %a.target,
            vector = %a.vector,
            pps = a.pps,
            "attack started"
        );
        let policy = self.policies.find(a).cloned();
        let detail = serde_json::json!({
            "attack": id, "target": a.target, "prefix": a.prefix, "vector": a.vector, "pps": a.pps,
            "signature": a.signature, "policy": policy.as_ref().map(|p| &p.name),
        });
        self.audit.record_later("detection", "attack.start", detail);
        // Captures are per address: a prefix attack has none yet.
        if let (Some(r), None) = (&self.recorder, a.prefix) {
            r.start(id, a.target).await;
        }
        if let Some(al) = &self.alerts {
            al.send(Alert::attack(EventKind::AttackStart, a, ""));
        }
        let Some(a) = self.detector.attack(id) else {
            return id;
        };
        let Some(policy) = policy else {
            self.note(id, now, "no policy matches: nothing announced");
            return id;
        };
        let esc = Escalation::new(policy.clone(), a, now);
        if let Some(a) = self.detector.attack_mut(id) {
            a.policy = Some(policy.name.clone());
            a.note(now, format!("policy {}", policy.name));
        }
        self.escalations.insert(id, esc);
        self.advance(id, now).await;
        id
    }

    /// Attack `new` is attack `old` coming back during its hold-down (its rules still in place)
    /// or its probation (withdrawn): one attack. The detector folds `new` into `old` when it
    /// still remembers `old` (not after a restart); the rules return at once and the next
    /// hold-down is longer.
    async fn on_return(&mut self, new: u64, old: u64, now: u64) -> u64 {
        let id = if self.detector.reopen(new, old, now) {
            old
        } else {
            new
        };
        let Some(mut e) = self.escalations.remove(&old) else {
            return id;
        };
        let withdrawn = e.on_probation();
        let before = e.hold;
        e.come_back(now);
        self.metrics
            .attacks_returned
            .fetch_add(1, Ordering::Relaxed);
        let what = format!(
            "came back {}: {}; next hold-down {} s (was {} s), return {}",
            if withdrawn {
                "after its rules were withdrawn"
            } else {
                "during its hold-down"
            },
            if withdrawn {
                "the steps reached before fire again at once"
            } else {
                "its rules stay"
            },
            e.hold.as_secs(),
            before.as_secs(),
            e.returns
        );
        info!(attack = id, "{what}");
        if let Some(a) = self.detector.attack_mut(id) {
            if id != old {
                a.note(
                    now,
                    format!("the return of attack {old} (before a restart)"),
                );
            }
            a.policy = Some(e.policy.name.clone());
            a.note(now, what.clone());
        }
        self.audit.record_later(
            "detection",
            "attack.return",
            serde_json::json!({
                "attack": id, "returns": e.returns, "withdrawn": withdrawn,
                "hold_down_s": e.hold.as_secs(),
            }),
        );
        if let (Some(al), Some(a)) = (&self.alerts, self.detector.attack(id)) {
            al.send(Alert::attack(EventKind::AttackEscalate, a, &what));
        }
        self.escalations.insert(id, e);
        self.remember(id, now).await;
        self.advance(id, now).await;
        id
    }

    /// The attack went quiet: its hold-down starts, counted from when the quiet began. The end
    /// is told (alert) now if nothing deflect did can have hidden the flood; else once it is
    /// over, after its probation.
    async fn on_end(&mut self, id: u64, now: u64) {
        let (pps, quiet_at, upstream) = self.detector.attack(id).map_or((0, now, false), |a| {
            (a.peak_pps, a.ended_ms.unwrap_or(now), a.quiet_upstream)
        });
        info!(attack = id, peak_pps = pps, "attack went quiet");
        self.audit.record_later(
            "detection",
            "attack.end",
            serde_json::json!({"attack": id, "peak_pps": pps}),
        );
        let mut told = true;
        if let Some(e) = self.escalations.get_mut(&id) {
            e.end(quiet_at, upstream);
            told = e.end_told;
            let (hold, probation) = (e.this_hold(), e.policy.recurrence.probation);
            self.detector
                .watch(e.target, e.prefix, e.class, e.vector, true);
            self.note(
                id,
                now,
                format!(
                    "withdrawal in {} s (hold-down from the quiet{}); a return within {} s after it is the same attack",
                    (quiet_at + hold.as_millis() as u64).saturating_sub(now) / 1000,
                    if upstream { ", seen upstream of the filters" } else { "" },
                    probation.as_secs()
                ),
            );
            self.remember(id, now).await;
        }
        if told {
            if let (Some(al), Some(a)) = (&self.alerts, self.detector.attack(id)) {
                al.send(Alert::attack(EventKind::AttackEnd, a, ""));
            }
        }
    }

    /// Fires the steps whose time and condition have come.
    async fn advance(&mut self, id: u64, now: u64) {
        loop {
            let Some(a) = self.detector.attack(id) else {
                return;
            };
            let seen = self.detector.is_seen(a);
            let Some(e) = self.escalations.get_mut(&id) else {
                return;
            };
            let Some(n) = e.next_due(a, now, seen) else {
                return;
            };
            let policy = e.policy.clone();
            self.fire(id, &policy, n, now).await;
        }
    }

    async fn fire(&mut self, id: u64, policy: &Policy, n: usize, now: u64) {
        let Some(a) = self.detector.attack(id).cloned() else {
            return;
        };
        let step = &policy.steps[n];
        if let Some(call) = &step.call {
            self.fire_call(id, &a, policy, n, call, now);
            return;
        }
        if let Some(l) = &step.local {
            self.fire_local(id, &a, policy, n, l, now);
            return;
        }
        let Some(kind) = step.announce else {
            return;
        };
        self.fire_announce(id, &a, policy, n, kind, now).await;
    }

    /// A playbook step: the request goes out on its own task (an external API may be slow; the
    /// attack does not wait), its outcome goes to the audit log; its undo is kept for withdrawal.
    fn fire_call(&mut self, id: u64, a: &Attack, policy: &Policy, n: usize, call: &Call, now: u64) {
        self.note(
            id,
            now,
            format!(
                "step {}{}: calling {} ({} {})",
                n + 1,
                if policy.dry_run { " (dry-run)" } else { "" },
                call.name,
                call.request.method,
                call.request.url
            ),
        );
        if policy.dry_run {
            return;
        }
        let event = Alert::attack(EventKind::AttackEscalate, a, "");
        if let Some(e) = self.escalations.get_mut(&id) {
            e.calls.push((call.clone(), event.clone()));
        }
        self.playbooks.spawn(
            playbook::Call {
                actor: escalation::actor(policy, id),
                action: "playbook.call",
                name: call.name.clone(),
                request: call.request.clone(),
                timeout: call.timeout,
                attempts: call.attempts,
            },
            event,
        );
    }

    /// A node-local drop: the attacked node's probe gets it in the answer to its next report.
    fn fire_local(
        &mut self,
        id: u64,
        a: &Attack,
        policy: &Policy,
        n: usize,
        step: &policy::LocalStep,
        now: u64,
    ) {
        let drop: LocalDrop = escalation::local_drop(a, step, self.local.next_id());
        let nft = drop.nft();
        let note = if let Some(p) = a.prefix {
            format!(
                "step {}: no node-local drop for an attack on prefix {p} (it spans nodes); use a flowspec step",
                n + 1
            )
        } else if policy.dry_run {
            format!(
                "step {} (dry-run): would drop on node {}: {nft}",
                n + 1,
                a.node
            )
        } else if !escalation::has_probe(&a.node) {
            format!(
                "step {}: no probe on node {} to drop locally",
                n + 1,
                a.node
            )
        } else {
            let drop_id = drop.id;
            self.local.add(&a.node, drop, id);
            if let Some(e) = self.escalations.get_mut(&id) {
                e.locals.push((a.node.clone(), drop_id));
            }
            self.audit.record_later(
                &escalation::actor(policy, id),
                "local.drop",
                serde_json::json!({"node": a.node, "drop": drop_id, "nft": nft}),
            );
            format!(
                "step {}: node {} asked to drop locally ({}): {nft}",
                n + 1,
                a.node,
                drop_id
            )
        };
        self.note(id, now, note);
    }

    /// What a node's report says is in force: confirmations go to the attacks' timelines.
    fn confirm_drops(&mut self, node: &str, report: &Report, now: u64) {
        let c = self
            .local
            .confirm(node, &report.applied, report.drop_error.as_deref());
        for (d, attack) in c.applied {
            self.note(attack, now, format!("node {node} applied local drop {d}"));
            self.audit.record_later(
                node,
                "local.applied",
                serde_json::json!({"drop": d, "attack": attack}),
            );
        }
        if let Some(e) = &report.drop_error {
            for attack in c.failed {
                if let Some(a) = self.detector.attack_mut(attack) {
                    if !a
                        .timeline
                        .last()
                        .is_some_and(|m| m.what.contains(e.as_str()))
                    {
                        a.note(now, format!("node {node} could not apply local drops: {e}"));
                    }
                }
            }
        }
    }

    /// Steps that wait, lifetimes renewed, withdrawals after hold-down.
    async fn timers(&mut self, now: u64) {
        let ids: Vec<u64> = self.escalations.keys().copied().collect();
        for id in ids {
            self.advance(id, now).await;
            let seen = self
                .detector
                .attack(id)
                .is_some_and(|a| self.detector.is_seen(a));
            let Some(e) = self.escalations.get(&id) else {
                continue;
            };
            let actor = escalation::actor(&e.policy, id);
            match e.tick(now, seen) {
                Tick::Wait => {}
                Tick::Renew(ttl) => {
                    for m in &e.made {
                        if let Err(err) = self.mitigations.extend(m.id, ttl, &actor).await {
                            warn!(attack = id, mitigation = m.id, "renewal: {err}");
                        }
                    }
                    if let Some(e) = self.escalations.get_mut(&id) {
                        e.renewed(now);
                    }
                    self.remember(id, now).await;
                }
                Tick::Withdraw => self.hold_down_over(id, &actor, now).await,
                Tick::Close => self.close(id, now).await,
                Tick::Starved if self.detector.attack(id).is_none() => {
                    // The attack itself is forgotten: nothing can bring it back; undo it all.
                    if let Some(mut e) = self.escalations.remove(&id) {
                        self.undo(id, &mut e, &actor, &format!("attack {id} over"), now)
                            .await;
                        self.detector
                            .watch(e.target, e.prefix, e.class, e.vector, false);
                        self.forget(memory_key(e.target, e.prefix, e.vector)).await;
                    }
                }
                Tick::Starved => self.starve(id, &actor, now).await,
            }
        }
    }

    /// Nothing has seen the attack for the lifetime its mitigations were given: they are withdrawn
    /// on record; the attack is held, and its steps start over if it is seen again.
    async fn starve(&mut self, id: u64, actor: &str, now: u64) {
        let node = self
            .detector
            .attack(id)
            .and_then(|a| self.detector.seen_by(a))
            .unwrap_or("no node")
            .to_string();
        let Some(e) = self.escalations.get_mut(&id) else {
            return;
        };
        let gone = e.starved(now);
        let reason = format!("no evidence: node {node} stale, attack {id} unseen");
        for m in &gone {
            if self.held_by_another(id, m.id) {
                continue;
            }
            if let Err(err) = self.mitigations.withdraw(m.id, actor, &reason).await {
                warn!(attack = id, mitigation = m.id, "withdrawal: {err}");
            }
        }
        warn!(
            attack = id,
            node,
            withdrawn = gone.len(),
            "{reason}: mitigations withdrawn"
        );
        self.note(
            id,
            now,
            format!(
                "withdrew {} mitigations: {reason}; the steps start over if it is seen again",
                gone.len()
            ),
        );
    }

    /// The hold-down after the attack went quiet is over: its mitigations are withdrawn (to
    /// look: while they were in place, quiet proved nothing), and the attack is on probation:
    /// a return is the same attack, its rules back at once. With no probation it is over.
    async fn hold_down_over(&mut self, id: u64, actor: &str, now: u64) {
        let Some(mut e) = self.escalations.remove(&id) else {
            return;
        };
        let reason = format!(
            "attack {id} quiet for its hold-down of {} s",
            e.this_hold().as_secs()
        );
        self.undo(id, &mut e, actor, &reason, now).await;
        e.withdrawn(now);
        let probation = e.policy.recurrence.probation;
        self.escalations.insert(id, e);
        if probation.is_zero() {
            self.close(id, now).await;
            return;
        }
        self.note(
            id,
            now,
            format!(
                "on probation for {} s: a return is the same attack",
                probation.as_secs()
            ),
        );
        self.remember(id, now).await;
    }

    /// The probation is over with no return: the attack is over, its end told if it was not
    /// when it went quiet, and nothing about it is kept.
    async fn close(&mut self, id: u64, now: u64) {
        let Some(e) = self.escalations.remove(&id) else {
            return;
        };
        self.detector
            .watch(e.target, e.prefix, e.class, e.vector, false);
        self.forget(memory_key(e.target, e.prefix, e.vector)).await;
        self.metrics.attacks_closed.fetch_add(1, Ordering::Relaxed);
        self.audit.record_later(
            "detection",
            "attack.over",
            serde_json::json!({"attack": id, "returns": e.returns}),
        );
        self.note(
            id,
            now,
            format!(
                "over: no return within {} s of the withdrawal ({} returns)",
                e.policy.recurrence.probation.as_secs(),
                e.returns
            ),
        );
        info!(attack = id, returns = e.returns, "attack over");
        if !e.end_told {
            if let (Some(al), Some(a)) = (&self.alerts, self.detector.attack(id)) {
                al.send(Alert::attack(EventKind::AttackEnd, a, ""));
            }
        }
    }

    /// Withdraws what an escalation made, undoes its playbook calls and removes its node-local
    /// drops.
    async fn undo(&mut self, id: u64, e: &mut Escalation, actor: &str, reason: &str, now: u64) {
        for m in &e.made {
            if self.held_by_another(id, m.id) {
                continue;
            }
            if let Err(err) = self.mitigations.withdraw(m.id, actor, reason).await {
                warn!(attack = id, mitigation = m.id, "withdrawal: {err}");
            }
        }
        for (c, event) in &e.calls {
            if let Some(undo) = &c.undo {
                let mut event = event.clone();
                event.kind = EventKind::AttackEnd;
                self.playbooks.spawn(
                    playbook::Call {
                        actor: actor.to_string(),
                        action: "playbook.undo",
                        name: c.name.clone(),
                        request: undo.clone(),
                        timeout: c.timeout,
                        attempts: c.attempts,
                    },
                    event,
                );
            }
        }
        for (node, d) in &e.locals {
            self.local.remove(node, *d);
            self.audit.record_later(
                actor,
                "local.undrop",
                serde_json::json!({"node": node, "drop": d}),
            );
        }
        self.note(id, now, format!("withdrew {} mitigations", e.made.len()));
        if !e.locals.is_empty() {
            self.note(id, now, format!("removing {} local drops", e.locals.len()));
        }
        let undone = e.calls.iter().filter(|(c, _)| c.undo.is_some()).count();
        if undone > 0 {
            self.note(id, now, format!("undoing {undone} playbook calls"));
        }
        if let Some(a) = self.detector.attack_mut(id) {
            a.cap = None;
        }
    }
}

#[cfg(test)]
mod tests;
