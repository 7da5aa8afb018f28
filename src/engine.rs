//! The detection task: telemetry in, attacks and policy steps out, mitigations through the
//! mitigation set.
//!
//! ```text
//!  POST /api/v1/telemetry ──► engine task ── Detector (baselines, attacks)
//!                                  │        └ Policies (escalation per attack)
//!                                  └──► MitigationHandle::create / withdraw  (same guardrails, audit)
//! ```
//!
//! One task owns the detector and every attack's escalation. It answers a report once the
//! report is judged and any mitigation it caused is durable and handed to the peers, so a
//! report → UPDATE path has no queue in the middle. A timer runs the steps that wait (`after`,
//! `if_above_pps`), renews the lifetime of mitigations while their attack lasts, withdraws them
//! after the policy's hold-down once it ends, marks silent nodes stale, and reloads the policy
//! directory when its files change.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tracing::{Instrument, info, info_span, warn};

use crate::alert::{Alerter, Event as Alert, EventKind};
use crate::config::Kind;
use crate::detect::{self, Attack, Detector, Event, Node, TargetView};
use crate::ioc::Lists;
use crate::mitigation::{CreateRequest, Created, MitigationHandle, now_ms};
use crate::pcap::Recorder;
use crate::policy::{self, Call, HttpRequest, Policies, Policy};
use crate::telemetry::{LocalDrop, Report};

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

#[derive(Debug)]
enum Request {
    Report {
        node: String,
        report: Box<Report>,
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
        settings: detect::Settings,
        policies: Box<Policies>,
        known: policy::Known,
        ioc: Lists,
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
    pub nodes_stale: AtomicU64,
    pub policy_steps: AtomicU64,
    pub policy_reload_errors: AtomicU64,
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
    pub async fn reconfigure(
        &self,
        settings: detect::Settings,
        policies: Policies,
        known: policy::Known,
        ioc: Lists,
    ) -> Result<(), String> {
        self.ask(|reply| Request::Reconfigure {
            settings,
            policies: Box::new(policies),
            known,
            ioc,
            reply,
        })
        .await
        .ok_or_else(|| "deflect is shutting down".to_string())
    }
}

/// A mitigation a policy step made.
#[derive(Debug, Clone)]
struct Made {
    id: u64,
    kind: Kind,
    /// The rule's matches (FlowSpec) or the prefix: what identifies it on the wire.
    matches: String,
}

/// One attack's way through its policy.
#[derive(Debug, Clone)]
struct Escalation {
    policy: Policy,
    fired: usize,
    made: Vec<Made>,
    /// Playbook calls made, with the event they were made for: undone on withdrawal, even if the
    /// attack itself is no longer remembered by then.
    calls: Vec<(Call, Alert)>,
    /// Node-local drops asked for: (node, drop id).
    locals: Vec<(String, u64)>,
    last_refresh: u64,
    ended_at: Option<u64>,
}

struct Engine {
    detector: Detector,
    policies: Policies,
    policy_error: Option<String>,
    known: policy::Known,
    escalations: BTreeMap<u64, Escalation>,
    mitigations: MitigationHandle,
    recorder: Option<Recorder>,
    alerts: Option<Alerter>,
    ioc: Lists,
    /// Node-local drops wanted, per node: drop id → (the drop, its attack).
    local: HashMap<String, BTreeMap<u64, (LocalDrop, u64)>>,
    /// Drop ids each node said were in force, last time.
    applied: HashMap<String, Vec<u64>>,
    next_drop: u64,
    metrics: Arc<EngineMetrics>,
}

/// How often the timer runs.
const TICK: Duration = Duration::from_millis(250);
/// How often the policy directory is looked at.
const POLICY_POLL: Duration = Duration::from_secs(2);

/// Starts the engine task.
pub fn start(
    settings: detect::Settings,
    policies: Policies,
    known: policy::Known,
    mitigations: MitigationHandle,
    recorder: Option<Recorder>,
    alerts: Option<Alerter>,
    ioc: Lists,
) -> (EngineHandle, tokio::task::JoinHandle<()>) {
    let metrics = Arc::new(EngineMetrics::default());
    let engine = Engine {
        detector: Detector::new(settings, now_ms()),
        policies,
        policy_error: None,
        known,
        escalations: BTreeMap::new(),
        mitigations,
        recorder,
        alerts,
        ioc,
        local: HashMap::new(),
        applied: HashMap::new(),
        next_drop: now_ms(),
        metrics: metrics.clone(),
    };
    let (tx, rx) = mpsc::channel(1024);
    let task = tokio::spawn(engine.run(rx).instrument(info_span!("engine")));
    (EngineHandle { tx, metrics }, task)
}

impl Engine {
    async fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_poll = tokio::time::Instant::now();
        loop {
            tokio::select! {
                req = rx.recv() => {
                    let Some(req) = req else { return };
                    self.handle(req).await;
                }
                _ = tick.tick() => {
                    let now = now_ms();
                    for node in self.detector.check_stale(now) {
                        warn!(node, "node stopped reporting: stale, its targets are held as they are");
                        self.mitigations
                            .record("system", "node.stale", serde_json::json!({"node": node}))
                            .await;
                    }
                    self.timers(now).await;
                    if last_poll.elapsed() >= POLICY_POLL {
                        last_poll = tokio::time::Instant::now();
                        if self.policies.changed() {
                            self.reload_policies().await;
                        }
                        self.ioc.refresh();
                    }
                    self.publish();
                }
            }
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
                reply,
            } => {
                let now = now_ms();
                let events = self.detector.ingest(&node, &report, now);
                // Sources in indicator lists, before the policies look at the attacks.
                if !self.ioc.is_empty() {
                    for e in &events {
                        let (Event::Started(id) | Event::Updated(id)) = e else {
                            continue;
                        };
                        let Some(a) = self.detector.attack_mut(*id) else {
                            continue;
                        };
                        let Some(t) = report.targets.iter().find(|t| t.dst == a.target) else {
                            continue;
                        };
                        for src in &t.sources {
                            for list in self.ioc.lookup(src.addr) {
                                *a.ioc.entry(list.to_string()).or_default() += 1;
                            }
                        }
                    }
                }
                let mut started = Vec::new();
                for e in events {
                    match e {
                        Event::Started(id) => {
                            started.push(id);
                            self.on_start(id, now).await;
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
                self.confirm_drops(&node, &report, now).await;
                let drops = self
                    .local
                    .get(&node)
                    .map(|m| m.values().map(|(d, _)| d.clone()).collect())
                    .unwrap_or_default();
                let _ = reply.send(Ack {
                    accepted: true,
                    started,
                    capture: Vec::new(),
                    drops,
                });
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
            Request::Reconfigure {
                settings,
                policies,
                known,
                ioc,
                reply,
            } => {
                self.detector.reconfigure(settings);
                self.policies = *policies;
                self.known = known;
                self.ioc = ioc;
                self.policy_error = None;
                let _ = reply.send(());
            }
        }
    }

    async fn on_start(&mut self, id: u64, now: u64) {
        let Some(a) = self.detector.attack(id) else {
            return;
        };
        info!(
            attack = id,
            target = %a.target,
            vector = %a.vector,
            pps = a.pps,
            "attack started"
        );
        let policy = self.policies.find(a).cloned();
        let detail = serde_json::json!({
            "attack": id, "target": a.target, "vector": a.vector, "pps": a.pps,
            "signature": a.signature, "policy": policy.as_ref().map(|p| &p.name),
        });
        self.mitigations
            .record_later("detection", "attack.start", detail);
        if let Some(r) = &self.recorder {
            r.start(id, a.target).await;
        }
        if let Some(al) = &self.alerts {
            al.send(Alert::attack(EventKind::AttackStart, a, ""));
        }
        let Some(a) = self.detector.attack(id) else {
            return;
        };
        let Some(policy) = policy else {
            if let Some(a) = self.detector.attack_mut(id) {
                a.note(now, "no policy matches: nothing announced");
            }
            return;
        };
        // A new attack on the same target and vector during another's hold-down takes over its
        // mitigations: nothing is withdrawn and announced again.
        let (target, vector) = (a.target, a.vector);
        let mut esc = Escalation {
            policy: policy.clone(),
            fired: 0,
            made: Vec::new(),
            calls: Vec::new(),
            locals: Vec::new(),
            last_refresh: now,
            ended_at: None,
        };
        let previous: Option<u64> = self
            .escalations
            .iter()
            .find(|(pid, e)| {
                e.ended_at.is_some()
                    && self
                        .detector
                        .attack(**pid)
                        .is_some_and(|p| p.target == target && p.vector == vector)
            })
            .map(|(pid, _)| *pid);
        if let Some(pid) = previous {
            if let Some(old) = self.escalations.remove(&pid) {
                esc.fired = old.fired;
                esc.made = old.made;
                esc.calls = old.calls;
                esc.locals = old.locals;
                if let Some(p) = self.detector.attack_mut(pid) {
                    p.note(now, format!("resumed as attack {id}"));
                }
            }
        }
        if let Some(a) = self.detector.attack_mut(id) {
            a.policy = Some(policy.name.clone());
            a.mitigations = esc.made.iter().map(|m| m.id).collect();
            a.note(now, format!("policy {}", policy.name));
        }
        self.escalations.insert(id, esc);
        self.advance(id, now).await;
    }

    async fn on_end(&mut self, id: u64, now: u64) {
        let pps = self.detector.attack(id).map_or(0, |a| a.peak_pps);
        if let (Some(al), Some(a)) = (&self.alerts, self.detector.attack(id)) {
            al.send(Alert::attack(EventKind::AttackEnd, a, ""));
        }
        info!(attack = id, peak_pps = pps, "attack ended");
        self.mitigations
            .record(
                "detection",
                "attack.end",
                serde_json::json!({"attack": id, "peak_pps": pps}),
            )
            .await;
        if let Some(e) = self.escalations.get_mut(&id) {
            e.ended_at = Some(now);
            let hold = e.policy.withdraw_after;
            if let Some(a) = self.detector.attack_mut(id) {
                a.note(
                    now,
                    format!("withdrawal in {} s (hold-down)", hold.as_secs()),
                );
            }
        }
    }

    /// Fires the steps whose time and condition have come.
    async fn advance(&mut self, id: u64, now: u64) {
        loop {
            let Some(e) = self.escalations.get(&id) else {
                return;
            };
            if e.ended_at.is_some() || e.fired >= e.policy.steps.len() {
                return;
            }
            let Some(a) = self.detector.attack(id) else {
                return;
            };
            let step = e.policy.steps[e.fired].clone();
            if now < a.started_ms + step.after.as_millis() as u64 {
                return;
            }
            if step.if_above_pps.is_some_and(|x| a.pps < x) {
                return;
            }
            let policy = e.policy.clone();
            let n = e.fired;
            if let Some(e) = self.escalations.get_mut(&id) {
                e.fired += 1;
            }
            self.fire(id, &policy, n, now).await;
        }
    }

    async fn fire(&mut self, id: u64, policy: &Policy, n: usize, now: u64) {
        let Some(a) = self.detector.attack(id) else {
            return;
        };
        let step = &policy.steps[n];
        if let Some(call) = &step.call {
            let a = a.clone();
            self.fire_call(id, &a, policy, n, call, now);
            return;
        }
        if let Some(l) = &step.local {
            let a = a.clone();
            self.fire_local(id, &a, policy, n, l, now);
            return;
        }
        let Some(announce) = step.announce else {
            return;
        };
        let (req, matches) = match announce {
            Kind::Flowspec => {
                let rule = policy::flowspec_rule(a.target, &a.signature, &step.parts, &step.action);
                let matches = rule.split(" then ").next().unwrap_or_default().to_string();
                (
                    CreateRequest {
                        kind: Some(Kind::Flowspec),
                        rule: Some(rule),
                        ..CreateRequest::default()
                    },
                    matches,
                )
            }
            Kind::Rtbh => {
                let prefix = match a.target {
                    IpAddr::V4(x) => format!("{x}/32"),
                    IpAddr::V6(x) => format!("{x}/128"),
                };
                (
                    CreateRequest {
                        kind: Some(Kind::Rtbh),
                        prefix: Some(prefix.clone()),
                        ..CreateRequest::default()
                    },
                    prefix,
                )
            }
        };
        let req = CreateRequest {
            ttl: Some(format!("{}s", policy.ttl.as_secs().max(1))),
            peers: (!step.peers.is_empty()).then(|| step.peers.clone()),
            reason: Some(format!(
                "{} on {} ({} pps), policy {} step {}",
                a.vector,
                a.target,
                a.pps,
                policy.name,
                n + 1
            )),
            ..req
        };
        let what = req.rule.clone().or(req.prefix.clone()).unwrap_or_default();
        self.metrics.policy_steps.fetch_add(1, Ordering::Relaxed);
        if policy.dry_run {
            if let Some(a) = self.detector.attack_mut(id) {
                a.note(
                    now,
                    format!("step {} (dry-run): would announce {what}", n + 1),
                );
            }
            return;
        }
        let actor = format!("policy:{} attack:{id}", policy.name);
        // The same match with other actions replaces the one before (a rule is identified by its
        // match); other rules of the same kind are withdrawn once the new one is in place.
        let (same, others): (Vec<Made>, Vec<Made>) = self
            .escalations
            .get(&id)
            .map(|e| {
                e.made
                    .iter()
                    .filter(|m| m.kind == announce)
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
            .into_iter()
            .partition(|m| m.matches == matches);
        for m in &same {
            let _ = self
                .mitigations
                .withdraw(m.id, &actor, &format!("replaced by step {}", n + 1))
                .await;
        }
        let made = self.mitigations.create(req, &actor).await;
        let note = match made {
            Ok(Created::New(m)) | Ok(Created::Extended(m)) => {
                for o in &others {
                    if announce == Kind::Flowspec {
                        let _ = self
                            .mitigations
                            .withdraw(o.id, &actor, &format!("replaced by step {}", n + 1))
                            .await;
                    }
                }
                if let Some(e) = self.escalations.get_mut(&id) {
                    e.made.retain(|x| {
                        !(x.kind == announce
                            && (x.matches == matches || announce == Kind::Flowspec))
                    });
                    e.made.push(Made {
                        id: m.id,
                        kind: announce,
                        matches,
                    });
                }
                if let Some(a) = self.detector.attack_mut(id) {
                    if !a.mitigations.contains(&m.id) {
                        a.mitigations.push(m.id);
                    }
                }
                format!("step {}: mitigation {} announces {what}", n + 1, m.id)
            }
            Err(e) => {
                warn!(attack = id, "policy step refused: {e}");
                format!("step {}: refused: {e}", n + 1)
            }
        };
        if let Some(a) = self.detector.attack_mut(id) {
            a.note(now, note.clone());
        }
        // The first step is the attack's start; the next ones are escalations.
        if let (Some(al), Some(a), true) = (&self.alerts, self.detector.attack(id), n > 0) {
            al.send(Alert::attack(EventKind::AttackEscalate, a, &note));
        }
    }

    /// A playbook step: the request goes out on its own task (an external API may be slow; the
    /// attack does not wait), its outcome goes to the audit log; its undo is kept for withdrawal.
    fn fire_call(&mut self, id: u64, a: &Attack, policy: &Policy, n: usize, call: &Call, now: u64) {
        let actor = format!("policy:{} attack:{id}", policy.name);
        if let Some(at) = self.detector.attack_mut(id) {
            at.note(
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
        }
        if policy.dry_run {
            return;
        }
        let event = Alert::attack(EventKind::AttackEscalate, a, "");
        if let Some(e) = self.escalations.get_mut(&id) {
            e.calls.push((call.clone(), event.clone()));
        }
        playbook(
            self.mitigations.clone(),
            actor,
            "playbook.call",
            call.name.clone(),
            call.request.clone(),
            call.timeout,
            call.attempts,
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
        use policy::Part;
        let sig = &a.signature;
        let has = |p: Part| step.parts.contains(&p);
        let drop = LocalDrop {
            id: self.next_drop,
            dst: a.target,
            src: sig.sources.first().copied().filter(|_| has(Part::Sources)),
            proto: sig.proto.filter(|_| {
                has(Part::Proto)
                    || (has(Part::Sport) && !sig.sports.is_empty())
                    || (has(Part::Dport) && !sig.dports.is_empty())
                    || (has(Part::TcpFlags) && sig.tcp_flags.is_some())
            }),
            sports: if has(Part::Sport) {
                sig.sports.clone()
            } else {
                Vec::new()
            },
            dports: if has(Part::Dport) {
                sig.dports.clone()
            } else {
                Vec::new()
            },
            tcp_flags: sig.tcp_flags.filter(|_| has(Part::TcpFlags)),
            fragment: sig.fragment && has(Part::Fragment),
            rate_bytes: step.rate_bytes,
        };
        let nft = drop.nft();
        let probe = !a.node.starts_with("sflow:");
        let note = if policy.dry_run {
            format!(
                "step {} (dry-run): would drop on node {}: {nft}",
                n + 1,
                a.node
            )
        } else if !probe {
            format!(
                "step {}: no probe on node {} to drop locally",
                n + 1,
                a.node
            )
        } else {
            self.next_drop += 1;
            self.local
                .entry(a.node.clone())
                .or_default()
                .insert(drop.id, (drop.clone(), id));
            if let Some(e) = self.escalations.get_mut(&id) {
                e.locals.push((a.node.clone(), drop.id));
            }
            self.mitigations.record_later(
                &format!("policy:{} attack:{id}", policy.name),
                "local.drop",
                serde_json::json!({"node": a.node, "drop": drop.id, "nft": nft}),
            );
            format!(
                "step {}: node {} asked to drop locally ({}): {nft}",
                n + 1,
                a.node,
                drop.id
            )
        };
        if let Some(at) = self.detector.attack_mut(id) {
            at.note(now, note);
        }
    }

    /// What a node's report says is in force: confirmations go to the attacks' timelines.
    async fn confirm_drops(&mut self, node: &str, report: &Report, now: u64) {
        let before = self.applied.get(node).cloned().unwrap_or_default();
        if before == report.applied && report.drop_error.is_none() {
            return;
        }
        for d in report.applied.iter().filter(|d| !before.contains(d)) {
            if let Some((_, attack)) = self.local.get(node).and_then(|m| m.get(d)) {
                let attack = *attack;
                if let Some(a) = self.detector.attack_mut(attack) {
                    a.note(now, format!("node {node} applied local drop {d}"));
                }
                self.mitigations.record_later(
                    node,
                    "local.applied",
                    serde_json::json!({"drop": d, "attack": attack}),
                );
            }
        }
        if let Some(e) = &report.drop_error {
            let attacks: Vec<u64> = self
                .local
                .get(node)
                .map(|m| m.values().map(|(_, a)| *a).collect())
                .unwrap_or_default();
            for attack in attacks {
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
        self.applied
            .insert(node.to_string(), report.applied.clone());
    }

    /// Steps that wait, lifetimes renewed, withdrawals after hold-down.
    async fn timers(&mut self, now: u64) {
        let ids: Vec<u64> = self.escalations.keys().copied().collect();
        for id in ids {
            self.advance(id, now).await;
            let Some(e) = self.escalations.get(&id).cloned() else {
                continue;
            };
            let actor = format!("policy:{} attack:{id}", e.policy.name);
            match e.ended_at {
                Some(t) if now >= t + e.policy.withdraw_after.as_millis() as u64 => {
                    for m in &e.made {
                        match self
                            .mitigations
                            .withdraw(m.id, &actor, &format!("attack {id} over"))
                            .await
                        {
                            Ok(_) => {}
                            Err(err) => warn!(attack = id, mitigation = m.id, "withdrawal: {err}"),
                        }
                    }
                    for (c, event) in &e.calls {
                        if let Some(undo) = &c.undo {
                            let mut event = event.clone();
                            event.kind = EventKind::AttackEnd;
                            playbook(
                                self.mitigations.clone(),
                                actor.clone(),
                                "playbook.undo",
                                c.name.clone(),
                                undo.clone(),
                                c.timeout,
                                c.attempts,
                                event,
                            );
                        }
                    }
                    for (node, d) in &e.locals {
                        if let Some(m) = self.local.get_mut(node) {
                            m.remove(d);
                        }
                        self.mitigations.record_later(
                            &actor,
                            "local.undrop",
                            serde_json::json!({"node": node, "drop": d}),
                        );
                    }
                    if let Some(a) = self.detector.attack_mut(id) {
                        a.note(now, format!("withdrew {} mitigations", e.made.len()));
                        if !e.locals.is_empty() {
                            a.note(now, format!("removing {} local drops", e.locals.len()));
                        }
                        let undone = e.calls.iter().filter(|(c, _)| c.undo.is_some()).count();
                        if undone > 0 {
                            a.note(now, format!("undoing {undone} playbook calls"));
                        }
                    }
                    self.escalations.remove(&id);
                }
                Some(_) => {}
                None => {
                    // Renew lifetimes at a third of the TTL, so a live attack never loses its rule.
                    let every = (e.policy.ttl.as_millis() as u64 / 3).max(1000);
                    if now >= e.last_refresh + every && !e.made.is_empty() {
                        let ttl = format!("{}s", e.policy.ttl.as_secs().max(1));
                        for m in &e.made {
                            if let Err(err) = self.mitigations.extend(m.id, &ttl, &actor).await {
                                warn!(attack = id, mitigation = m.id, "renewal: {err}");
                            }
                        }
                        if let Some(e) = self.escalations.get_mut(&id) {
                            e.last_refresh = now;
                        }
                    }
                }
            }
        }
    }
}

/// Sends a playbook request (templated for `event`) on its own task, with retries; the outcome
/// is audited as `action`.
#[allow(clippy::too_many_arguments)]
fn playbook(
    audit: MitigationHandle,
    actor: String,
    action: &'static str,
    name: String,
    req: HttpRequest,
    timeout: Duration,
    attempts: u32,
    event: Alert,
) {
    tokio::spawn(async move {
        let url = crate::alert::render(&req.url, &event);
        let headers: Vec<(String, String)> = req
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), crate::alert::render(v, &event)))
            .collect();
        let body = req.body.as_ref().map(|b| crate::alert::render(b, &event));
        let mut wait = Duration::from_millis(200);
        let mut tries = 0;
        let outcome = loop {
            tries += 1;
            let (m, u, h, b) = (
                req.method.clone(),
                url.clone(),
                headers.clone(),
                body.clone(),
            );
            let r = tokio::task::spawn_blocking(move || {
                crate::alert::send(&m, &u, &h, b.as_deref().map(str::as_bytes), timeout)
            })
            .await
            .unwrap_or_else(|e| Err((None, e.to_string())));
            match r {
                Ok(st) => break Ok(st),
                Err((Some(st), why)) if (400..500).contains(&st) && st != 429 => {
                    break Err((Some(st), why));
                }
                Err(e) if tries >= attempts => break Err(e),
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(10));
                }
            }
        };
        // The request as audited: templated, but header values (credentials) left out.
        let detail = serde_json::json!({
            "call": name,
            "method": req.method,
            "url": url,
            "headers": headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            "attempts": tries,
            "status": match &outcome { Ok(s) => Some(*s), Err((s, _)) => *s },
            "error": outcome.as_ref().err().map(|(_, e)| e.clone()),
        });
        if let Err((_, e)) = &outcome {
            warn!(call = %name, "playbook {action} failed: {e}");
        }
        audit.record_later(&actor, action, detail);
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::Guardrails;
    use crate::detect::{Class, Thresholds};
    use crate::mitigation::{ListFilter, Mitigation};
    use crate::store::Store;
    use crate::telemetry::{Flow, Target};

    const VICTIM: &str = "203.0.113.7";

    struct Rig {
        engine: EngineHandle,
        set: MitigationHandle,
        dir: std::path::PathBuf,
        seq: u64,
    }

    impl Drop for Rig {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    async fn rig(tag: &str, policy: &str) -> Rig {
        rig_with(tag, policy, Lists::default()).await
    }

    async fn rig_with(tag: &str, policy: &str, ioc: Lists) -> Rig {
        let dir = std::env::temp_dir().join(format!("deflect-engine-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        let protected: BTreeMap<String, Vec<ipnet::IpNet>> = [(
            "customers".to_string(),
            vec!["203.0.113.0/24".parse().unwrap()],
        )]
        .into();
        let guardrails = Guardrails {
            default_ttl: Duration::from_secs(600),
            max_ttl: Duration::from_secs(3600),
            max_active: 100,
            max_new_per_minute: 100,
            rtbh_min_prefix_v4: 32,
            rtbh_min_prefix_v6: 128,
            protected: protected.clone(),
            never_block: Vec::new(),
            dry_run: false,
        };
        let (set, _) = crate::mitigation::start(store, guardrails, Vec::new(), 65000)
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
            ..detect::Settings::default()
        };
        let known = policy::Known {
            groups: ["customers".to_string()].into(),
            peers: Default::default(),
            ioc: ioc.lists.iter().map(|l| l.name.clone()).collect(),
        };
        let policies = Policies::parse(&[("p.yaml".into(), policy.into())], &known).unwrap();
        let (engine, _) = start(settings, policies, known, set.clone(), None, None, ioc);
        Rig {
            engine,
            set,
            dir,
            seq: 0,
        }
    }

    impl Rig {
        /// One 100 ms report with `ntp` pps of NTP answers to the victim.
        async fn report(&mut self, ntp: u64) -> Ack {
            self.report_from(ntp, "192.0.2.200").await
        }

        /// The same, the flood coming from `source`.
        async fn report_from(&mut self, ntp: u64, source: &str) -> Ack {
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
                }],
                packets: Vec::new(),
                applied: Vec::new(),
                drop_error: None,
            };
            self.engine.report("web1", r).await.unwrap()
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
    async fn a_step_that_waits_replaces_the_rule_before_it_only_above_its_rate() {
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
        // It grows: the discard replaces the rate limit (same match: one rule on the wire).
        r.for_ms(300, 80_000).await;
        let now = r.active().await;
        assert_eq!(now.len(), 1, "{now:?}");
        assert_eq!(
            now[0].rule.as_deref(),
            Some("dst 203.0.113.7/32 proto udp sport 123 then discard")
        );
        let old = r.set.get(first[0].id).await.unwrap();
        assert_eq!(old.withdraw_reason.as_deref(), Some("replaced by step 2"));
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
                .any(|m| m.what == "step 1 (dry-run): would announce dst 203.0.113.7/32 proto 17 sport 123 then rate-bytes 125000"),
            "{:#?}",
            a.timeline
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_attack_back_during_the_hold_down_keeps_its_rule() {
        let policy = ESCALATE.replace("withdraw_after: 1s", "withdraw_after: 3s");
        let mut r = rig("resume", &policy).await;
        r.for_ms(300, 0).await;
        let first = r.report(20_000).await.started[0];
        let rule = r.active().await;
        assert_eq!(rule.len(), 1);
        // Ends (0.5 s cooldown), then comes back within the 3 s hold-down.
        r.for_ms(1000, 0).await;
        assert!(r.engine.attack(first).await.unwrap().ended_ms.is_some());
        let second = r.report(20_000).await.started[0];
        assert_ne!(first, second);
        r.for_ms(3500, 20_000).await;
        assert_eq!(
            r.active().await,
            rule,
            "the same mitigation, never withdrawn"
        );
        let a = r.engine.attack(second).await.unwrap();
        assert_eq!(a.mitigations, vec![rule[0].id]);
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

    /// A receiver on loopback: (method, path, authorization, body) of each request.
    fn receiver() -> (
        u16,
        std::sync::mpsc::Receiver<(String, String, String, String)>,
    ) {
        use std::io::{BufRead, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for conn in l.incoming().take(8) {
                let Ok(mut c) = conn else { continue };
                let mut r = std::io::BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                let mut it = first.split_whitespace();
                let (method, path) = (
                    it.next().unwrap_or("").to_string(),
                    it.next().unwrap_or("").to_string(),
                );
                let (mut len, mut auth) = (0, String::new());
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = h["authorization:".len()..].trim().to_string();
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let _ = c.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
                let _ = tx.send((
                    method,
                    path,
                    auth,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
            }
        });
        (port, rx)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_playbook_step_calls_an_api_and_undoes_it_on_withdrawal() {
        let (port, rx) = receiver();
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
}
