//! The mitigation set's task: the one owner of what deflect announces.
//!
//! Every source (the API and CLI, and the policies through the engine) sends typed orders to one task, which checks
//! guardrails, pushes each group of changes to the peers' Adj-RIB-Outs while it makes it durable in
//! the store together with its audit entries, and answers once it is durable. Expiry withdraws a
//! mitigation by itself.
//!
//! ```text
//!  API handlers ──(bounded mpsc, oneshot replies)──► MitigationSet task ──► Store (redb, fsync)
//!                                                          │
//!                                                          └──► PeerHandle::set / remove (each peer)
//! ```
//!
//! A mitigation's identity is its NLRI: a FlowSpec rule's encoded bytes, or an RTBH prefix. The same
//! rule asked for twice is one mitigation whose lifetime is extended.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use deflect_bgp::flowspec::{Action, FlowRoute};
use deflect_bgp::iana::Family;
use deflect_bgp::rib::{RouteAttrs, RouteKey};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::audit::{AuditDraft, RawDraft};
use crate::clock::Clock;
use crate::mitigation::guardrails::{self, Guardrails};
use crate::mitigation::handle::{Metrics, MitigationHandle, Reply, Request};
use crate::mitigation::record::{
    Amend, BatchItem, Created, ListFilter, Mitigation, Order, Refusal, TargetFields, WithdrawFilter,
};
use crate::mitigation::store::{Pruned, Store, StoreError};
use crate::peer::{Neighbor, PeerHandle, RouteChange};
use crate::route::{Divert, Kind, Target};

/// A parsed, active mitigation: what the peers get.
#[derive(Debug, Clone)]
struct Live {
    key: RouteKey,
    kind: Kind,
    family: Family,
    /// Attributes the route carries itself, shared by every peer: a FlowSpec rule's actions as
    /// extended communities, a diversion's next hop and communities. `None`: each peer's RTBH
    /// next hop and communities (RTBH and S/RTBH).
    flow_attrs: Option<Arc<RouteAttrs>>,
}

impl Live {
    fn of(target: &Target) -> Live {
        Live {
            key: target.key(),
            kind: target.kind(),
            family: target.family(),
            flow_attrs: match target {
                Target::Flowspec(r) => Some(Arc::new(RouteAttrs {
                    ext_communities: r.ext_communities(),
                    ..RouteAttrs::default()
                })),
                Target::Divert(d) => Some(Arc::new(d.attrs())),
                Target::Rtbh(_) | Target::SourceRtbh(_) => None,
            },
        }
    }

    /// What it announces, read back from its NLRI and attributes: the inverse of [`Live::of`].
    /// `None` for attributes `Live::of` never makes.
    fn target(&self) -> Option<Target> {
        match (&self.key, self.kind, self.flow_attrs.as_deref()) {
            (RouteKey::FlowSpec(rule), Kind::Flowspec, Some(a)) => {
                Some(Target::Flowspec(FlowRoute {
                    rule: rule.clone(),
                    actions: a
                        .ext_communities
                        .iter()
                        .map(|c| Action::from_ext_community(*c))
                        .collect::<Option<_>>()?,
                }))
            }
            (RouteKey::Unicast(p), Kind::Rtbh, None) => Some(Target::Rtbh(*p)),
            (RouteKey::Unicast(p), Kind::SourceRtbh, None) => Some(Target::SourceRtbh(*p)),
            (RouteKey::Unicast(p), Kind::Divert, Some(a)) => Some(Target::Divert(Divert {
                prefix: *p,
                next_hop: a.next_hop?,
                communities: a.communities.clone(),
                large_communities: a.large_communities.clone(),
            })),
            _ => None,
        }
    }
}

/// An active mitigation as memory holds it. What it announces is kept once, in the form the
/// peers get ([`Live`]: the NLRI and the shared attributes); its record ([`Mitigation`]), with the
/// rule's text, is built from that when asked for. A full record in memory cost about 500 bytes
/// more per mitigation, and 100k may be active.
#[derive(Debug, Clone)]
struct Active {
    live: Live,
    /// Who made it, why, for which peers: shared ([`Origins`]).
    origin: Arc<Origin>,
    created_ms: u64,
    expires_ms: u64,
    dry_run: bool,
    /// The record's target fields when they are not what its target prints now (a record written
    /// by an older version), kept as read so that it is served and stored unchanged.
    fields: Option<Box<TargetFields>>,
}

impl Active {
    /// `m` (active) held compact; `target` is what it announces, `live` its peers' form.
    fn new(m: &Mitigation, target: &Target, live: Live, origins: &mut Origins) -> Active {
        let exact = live.target().as_ref() == Some(target)
            && m.target_fields() == Mitigation::fields(target);
        Active::held(m, live, origins, exact)
    }

    /// [`Active::new`] for `m` just made, whose target fields are `Mitigation::fields(target)`:
    /// only whether `live` reads back as `target` is left to check (printing the rule again
    /// for each of a batch's thousands is not free).
    fn made(m: &Mitigation, target: &Target, live: Live, origins: &mut Origins) -> Active {
        let exact = live.target().as_ref() == Some(target);
        Active::held(m, live, origins, exact)
    }

    fn held(m: &Mitigation, live: Live, origins: &mut Origins, exact: bool) -> Active {
        Active {
            live,
            origin: origins.get(Origin {
                actor: m.actor.as_str().into(),
                reason: m.reason.as_str().into(),
                peers: m.peers.clone().into_boxed_slice(),
            }),
            created_ms: m.created_ms,
            expires_ms: m.expires_ms,
            dry_run: m.dry_run,
            fields: (!exact).then(|| Box::new(m.target_fields())),
        }
    }

    /// The record of mitigation `id`.
    fn record(&self, id: u64) -> Mitigation {
        let f = match &self.fields {
            Some(f) => (**f).clone(),
            None => self
                .live
                .target()
                .map(|t| Mitigation::fields(&t))
                .unwrap_or_default(),
        };
        Mitigation {
            id,
            kind: self.live.kind,
            rule: f.rule,
            prefix: f.prefix,
            next_hop: f.next_hop,
            communities: f.communities,
            large_communities: f.large_communities,
            peers: self.origin.peers.to_vec(),
            reason: self.origin.reason.to_string(),
            actor: self.origin.actor.to_string(),
            created_ms: self.created_ms,
            expires_ms: self.expires_ms,
            withdrawn_ms: None,
            withdraw_reason: None,
            dry_run: self.dry_run,
        }
    }

    /// What it announces (as its record reads, for one kept as read).
    fn target(&self, id: u64) -> Result<Target, String> {
        match &self.fields {
            Some(_) => self.record(id).target(),
            None => self
                .live
                .target()
                .ok_or_else(|| format!("mitigation {id} holds attributes of no target")),
        }
    }
}

/// Who made a mitigation, why, and for which peers (every eligible one when empty).
#[derive(Debug, PartialEq, Eq, Hash)]
struct Origin {
    actor: Box<str>,
    reason: Box<str>,
    peers: Box<[String]>,
}

/// Origins by value: one API token or one attack's policy makes thousands of mitigations with
/// the same actor, reason and peers, which then cost a pointer each.
#[derive(Debug, Default)]
struct Origins {
    set: HashSet<Arc<Origin>>,
    /// Size at which the next sweep drops the origins nobody holds any more: twice what the last
    /// sweep kept, so that many origins all in use (a reason per attack) cost no sweep per create.
    sweep_at: usize,
}

/// The least size at which origins are swept.
const ORIGINS_SWEPT_FROM: usize = 4096;

impl Origins {
    fn get(&mut self, o: Origin) -> Arc<Origin> {
        if let Some(a) = self.set.get(&o) {
            return a.clone();
        }
        if self.set.len() >= self.sweep_at.max(ORIGINS_SWEPT_FROM) {
            self.set.retain(|k| Arc::strong_count(k) > 1);
            self.sweep_at = self.set.len() * 2;
        }
        let a = Arc::new(o);
        self.set.insert(a.clone());
        a
    }
}

/// The task's state.
struct MitigationSet {
    store: Store,
    guardrails: Guardrails,
    peers: Vec<(Neighbor, PeerHandle)>,
    /// Active mitigations by id (withdrawn ones are in the store only).
    active: BTreeMap<u64, Active>,
    /// Identity (NLRI) of each active mitigation.
    by_key: HashMap<RouteKey, u64>,
    /// Creation times within the last minute, for the rate guardrail.
    recent: VecDeque<u64>,
    next_id: u64,
    metrics: Arc<Metrics>,
    /// RTBH attributes per (peer index, prefix family), shared by every route to that peer.
    rtbh_attrs: HashMap<(usize, bool), Arc<RouteAttrs>>,
    /// Our AS, to show the UPDATEs that would be sent when there is no peer.
    local_as: u32,
    /// Active mitigations by expiry time, for the next expiry in O(log n).
    expiries: BTreeSet<(u64, u64)>,
    /// Changes made in memory but not yet durable, with what waits for them.
    pending: Pending,
    /// After a failed store write, expiries wait until then before trying again.
    retry_at: u64,
    /// FlowSpec attributes by value: thousands of rules share a handful of action sets.
    flow_attrs: HashSet<Arc<RouteAttrs>>,
    /// Actors, reasons and peer lists, shared.
    origins: Origins,
    /// Refusals audited this minute, per actor.
    refusals: RefusalWindow,
    /// Where the set reads the time: the wall's, or a replay's.
    clock: Clock,
    /// When retention next prunes the store.
    next_prune: u64,
}

/// A group commit: changes accepted in memory, sent to the peers while one durable transaction
/// holds all of them, and the callers answered once it is durable. If the write fails, every caller
/// gets a store error, the memory is rebuilt from the store and the peers are sent its truth for
/// every route the group touched, so nothing undurable is acknowledged or stays announced.
#[derive(Default)]
struct Pending {
    changed: Vec<Mitigation>,
    memos: Vec<(String, Option<Vec<u8>>)>,
    drafts: Vec<Draft>,
    ops: Vec<PeerOp>,
    replies: Vec<Deferred>,
}

/// An audit entry of the group. The two a batch has thousands of are kept as what they say and
/// turned into JSON in `flush`, once the group's routes are on their way to the peers.
enum Draft {
    Ready(AuditDraft),
    /// `mitigation.create`: its detail is the record staged at `changed[at]`.
    Created {
        actor: String,
        at: usize,
    },
    /// `announce`: mitigation `id` to peer `peer`.
    Announce {
        actor: String,
        id: u64,
        peer: String,
    },
}

impl Draft {
    /// The draft as the store takes it, its detail printed (canonically) straight from what it
    /// says.
    fn ready(self, changed: &[Mitigation]) -> RawDraft {
        match self {
            Draft::Ready(d) => d.into(),
            Draft::Created { actor, at } => RawDraft {
                actor,
                action: "mitigation.create".into(),
                detail: changed[at].canonical_json(),
            },
            Draft::Announce { actor, id, peer } => RawDraft {
                actor,
                action: "announce".into(),
                // `{"id": id, "peer": peer}`, its keys in order. A string always serializes.
                detail: format!(
                    r#"{{"id":{id},"peer":{}}}"#,
                    serde_json::to_string(&peer).unwrap_or_default()
                ),
            },
        }
    }
}

/// What to tell the peers (while the group is made durable).
enum PeerOp {
    Set(usize, RouteKey, Arc<RouteAttrs>),
    Remove(usize, RouteKey),
    /// No peers: log the UPDATE that would have been sent.
    Show(u64, RouteKey, RouteAttrs),
}

/// Route changes in a group from which its commit runs off the runtime ([`off_the_runtime`]).
/// Below, the commit is short and the hand-over (another worker thread woken, and over time
/// more threads with their own allocator arenas: 1.1-1.3 MiB more resident at 10k active
/// mitigations, measured) costs more than the routes wait.
const OFF_THE_RUNTIME: usize = 256;

/// Runs `f` (a commit: serialization, writes, fsync) with this worker thread handed over as a
/// blocking one, so the tasks it woke (the peers', with the group's routes) run on another worker
/// meanwhile instead of waiting behind it. A current-thread runtime (tests) just runs `f`.
fn off_the_runtime<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// How to take back one item of an atomic batch: a mitigation it made, or the one it extended
/// as it was before.
enum Undo {
    New(u64),
    Extended(Option<(u64, Active)>),
}

/// An answer waiting for its commit.
enum Deferred {
    Created(Reply<Created>, Result<Created, Refusal>),
    Batch(
        Reply<Vec<Result<Created, Refusal>>>,
        Vec<Result<Created, Refusal>>,
    ),
    Withdrawn(Reply<Vec<Mitigation>>, Vec<Mitigation>),
    One(Reply<Mitigation>, Result<Mitigation, Refusal>),
    Unit(Reply<()>),
}

/// Most requests in one group commit.
const MAX_BATCH: usize = 512;

/// Refusals audited per actor and minute (the rest are counted): refused requests cannot grow the
/// store without bound.
const REFUSALS_AUDITED: u32 = 60;
/// Actors tracked per minute for that limit; more share one count.
const REFUSAL_ACTORS: usize = 1024;
/// Longest text of a refused request kept in the audit log.
const REFUSED_TEXT_MAX: usize = 256;

/// How often retention prunes the store, and how soon it goes on when a batch left some.
const PRUNE_EVERY_MS: u64 = 3_600_000;
const PRUNE_AGAIN_MS: u64 = 1_000;

/// Refusals per actor in the current minute.
#[derive(Debug, Default)]
struct RefusalWindow {
    window_ms: u64,
    per_actor: HashMap<String, u32>,
}

impl RefusalWindow {
    /// Counts one refusal by `actor` at `now`; returns its number in the minute.
    fn count(&mut self, actor: &str, now: u64) -> u32 {
        if now >= self.window_ms + 60_000 {
            self.window_ms = now;
            self.per_actor.clear();
        }
        let key = if self.per_actor.len() < REFUSAL_ACTORS || self.per_actor.contains_key(actor) {
            actor
        } else {
            "(others)"
        };
        let n = self.per_actor.entry(key.to_string()).or_insert(0);
        *n += 1;
        *n
    }
}

/// A request as audited: strings past [`REFUSED_TEXT_MAX`] bytes cut, saying how much was cut.
fn shorten(v: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) if s.len() > REFUSED_TEXT_MAX => {
            let mut end = REFUSED_TEXT_MAX;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            Value::String(format!("{}… (+{} bytes)", &s[..end], s.len() - end))
        }
        Value::Array(a) => Value::Array(a.into_iter().map(shorten).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, shorten(v))).collect()),
        other => other,
    }
}

impl MitigationSet {
    /// Adds a change to the group commit under way.
    fn stage(&mut self, changed: &Mitigation, drafts: Vec<AuditDraft>) {
        self.pending.changed.push(changed.clone());
        self.pending
            .drafts
            .extend(drafts.into_iter().map(Draft::Ready));
    }

    /// Records a refusal in the audit log (with the group: a refusal changes nothing else), its
    /// request's long texts cut short, and at most [`REFUSALS_AUDITED`] a minute per actor: past
    /// that, refusals are counted, and the log says once that it stops recording them.
    fn refused(&mut self, actor: &str, what: serde_json::Value, why: &Refusal) {
        self.metrics.refused.fetch_add(1, Ordering::Relaxed);
        let now = self.clock.now_ms();
        match self.refusals.count(actor, now) {
            n if n <= REFUSALS_AUDITED => self.pending.drafts.push(Draft::Ready(AuditDraft::new(
                actor,
                "mitigation.refused",
                serde_json::json!({"request": shorten(what), "reason": why.to_string()}),
            ))),
            n => {
                self.metrics
                    .refused_unaudited
                    .fetch_add(1, Ordering::Relaxed);
                if n == REFUSALS_AUDITED + 1 {
                    warn!(
                        actor,
                        "more than {REFUSALS_AUDITED} refusals in a minute: counted, not audited"
                    );
                    self.pending.drafts.push(Draft::Ready(AuditDraft::new(
                        actor,
                        "mitigation.refused.suppressed",
                        serde_json::json!({
                            "audited_per_minute": REFUSALS_AUDITED,
                            "until_ms": self.refusals.window_ms + 60_000,
                        }),
                    )));
                }
            }
        }
    }

    /// Tells the peers and makes the group durable at once, then answers the callers.
    ///
    /// The peers' tasks encode and write while this one commits (two cores, not one after the
    /// other). Nothing is acknowledged before it is durable, and nothing announced can outlive
    /// the store's truth: a crash before the commit ends takes the BGP sessions down with it
    /// (routers drop what they carried, or with graceful restart hold it stale until the
    /// End-of-RIB that follows the restart's announcement of what the store holds); a commit
    /// that fails rebuilds the memory from the store and sends each peer, for every route this
    /// group touched, what the store says of it.
    async fn flush(&mut self) {
        let p = std::mem::take(&mut self.pending);
        if p.changed.is_empty() && p.memos.is_empty() && p.drafts.is_empty() && p.replies.is_empty()
        {
            return;
        }
        let now = self.clock.now_ms();
        // One command per peer for the whole group, its changes in order.
        let mut changes: Vec<Vec<RouteChange>> = self.peers.iter().map(|_| Vec::new()).collect();
        let mut touched = Vec::new();
        let mut shows = Vec::new();
        let (mut announces, mut withdraws) = (0, 0);
        for op in p.ops {
            match op {
                PeerOp::Set(i, key, attrs) => {
                    touched.push((i, key.clone()));
                    changes[i].push(RouteChange::Set(key, attrs));
                    announces += 1;
                }
                PeerOp::Remove(i, key) => {
                    touched.push((i, key.clone()));
                    changes[i].push(RouteChange::Remove(key));
                    withdraws += 1;
                }
                PeerOp::Show(id, key, attrs) => shows.push((id, key, attrs)),
            }
        }
        for ((_, h), c) in self.peers.iter().zip(changes) {
            if !c.is_empty() {
                h.apply(c).await;
            }
        }
        let refs: Vec<&Mitigation> = p.changed.iter().collect();
        let store = &mut self.store;
        let (changed, drafts) = (&p.changed, p.drafts);
        let commit = || {
            let drafts: Vec<RawDraft> = drafts.into_iter().map(|d| d.ready(changed)).collect();
            store.commit(&refs, &p.memos, drafts, now)
        };
        let res = if touched.len() >= OFF_THE_RUNTIME {
            off_the_runtime(commit)
        } else {
            commit()
        };
        match res {
            Ok(_) => {
                self.metrics
                    .announces
                    .fetch_add(announces, Ordering::Relaxed);
                self.metrics
                    .withdraws
                    .fetch_add(withdraws, Ordering::Relaxed);
                for (id, key, attrs) in shows {
                    for hex in crate::route::show_update(self.local_as, &key, &attrs) {
                        info!(id, "no peers: would send UPDATE {hex}");
                    }
                }
                for r in p.replies {
                    match r {
                        Deferred::Created(tx, r) => drop(tx.send(r)),
                        Deferred::Batch(tx, r) => drop(tx.send(Ok(r))),
                        Deferred::Withdrawn(tx, r) => drop(tx.send(Ok(r))),
                        Deferred::One(tx, r) => drop(tx.send(r)),
                        Deferred::Unit(tx) => drop(tx.send(Ok(()))),
                    }
                }
            }
            Err(e) => {
                warn!(
                    "store write failed, {} requests refused, {} route changes taken back: {e}",
                    p.replies.len(),
                    touched.len()
                );
                let fail = Refusal::Store(format!("the change could not be made durable: {e}"));
                for r in p.replies {
                    match r {
                        Deferred::Created(tx, r) => drop(tx.send(r.and(Err(fail.clone())))),
                        Deferred::Batch(tx, _) => drop(tx.send(Err(fail.clone()))),
                        Deferred::Withdrawn(tx, _) => drop(tx.send(Err(fail.clone()))),
                        Deferred::One(tx, r) => drop(tx.send(r.and(Err(fail.clone())))),
                        Deferred::Unit(tx) => drop(tx.send(Err(fail.clone()))),
                    }
                }
                self.retry_at = now + 1000;
                if let Err(e) = self.resync() {
                    warn!("the store cannot be read back either: {e}");
                }
                self.take_back(touched).await;
            }
        }
    }

    /// After a commit that failed: each route the group changed goes back to what the (resynced)
    /// memory says of it, per peer: announced with its attributes if an active mitigation has it
    /// for that peer, withdrawn otherwise.
    async fn take_back(&mut self, touched: Vec<(usize, RouteKey)>) {
        let mut changes: Vec<Vec<RouteChange>> = self.peers.iter().map(|_| Vec::new()).collect();
        for (i, key) in touched {
            let now = self
                .by_key
                .get(&key)
                .and_then(|id| self.active.get(id))
                .and_then(|a| {
                    self.targets(a.dry_run, &a.origin.peers, &a.live)
                        .into_iter()
                        .find(|(p, _)| *p == i)
                });
            changes[i].push(match now {
                Some((_, attrs)) => RouteChange::Set(key, attrs),
                None => RouteChange::Remove(key),
            });
        }
        for ((_, h), c) in self.peers.iter().zip(changes) {
            if !c.is_empty() {
                h.apply(c).await;
            }
        }
    }

    /// Rebuilds the memory from the store, after a write that failed.
    fn resync(&mut self) -> Result<(), StoreError> {
        let stored = self.store.mitigations()?;
        self.active.clear();
        for n in &self.metrics.active_by_kind {
            n.store(0, Ordering::Relaxed);
        }
        self.by_key.clear();
        self.expiries.clear();
        self.next_id = stored.iter().map(|m| m.id + 1).max().unwrap_or(1);
        for m in stored {
            self.insert_stored(m);
        }
        self.metrics
            .active
            .store(self.active.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    /// `a` active as mitigation `id` (in place of what it was), counted by kind, its NLRI its
    /// identity, its expiry due.
    fn activate(&mut self, id: u64, a: Active) {
        let by_kind = &self.metrics.active_by_kind;
        let (kind, key, expires) = (a.live.kind, a.live.key.clone(), a.expires_ms);
        if let Some(old) = self.active.insert(id, a) {
            by_kind[old.live.kind as usize].fetch_sub(1, Ordering::Relaxed);
            self.expiries.remove(&(old.expires_ms, id));
        }
        by_kind[kind as usize].fetch_add(1, Ordering::Relaxed);
        self.by_key.insert(key, id);
        self.expiries.insert((expires, id));
    }

    /// Mitigation `id` no longer active: out of every index, counted by kind.
    fn deactivate(&mut self, id: u64) -> Option<Active> {
        let a = self.active.remove(&id)?;
        self.metrics.active_by_kind[a.live.kind as usize].fetch_sub(1, Ordering::Relaxed);
        self.by_key.remove(&a.live.key);
        self.expiries.remove(&(a.expires_ms, id));
        Some(a)
    }

    /// Shares `live`'s FlowSpec attributes with every other rule that has the same actions.
    fn intern(&mut self, live: &mut Live) {
        if let Some(a) = &live.flow_attrs {
            match self.flow_attrs.get(a) {
                Some(shared) => live.flow_attrs = Some(shared.clone()),
                None => {
                    // Action sets nobody uses any more are dropped once there are many.
                    if self.flow_attrs.len() >= 4096 {
                        self.flow_attrs.retain(|k| Arc::strong_count(k) > 1);
                    }
                    self.flow_attrs.insert(a.clone());
                }
            }
        }
    }

    /// Takes a stored mitigation into memory, live if it is not withdrawn.
    fn insert_stored(&mut self, m: Mitigation) {
        if m.withdrawn_ms.is_none() {
            match m.target() {
                Ok(target) => {
                    let mut live = Live::of(&target);
                    self.intern(&mut live);
                    let a = Active::new(&m, &target, live, &mut self.origins);
                    self.activate(m.id, a);
                }
                Err(e) => warn!(
                    id = m.id,
                    "stored mitigation no longer parses, left out: {e}"
                ),
            }
        }
    }

    /// Which peers get a mitigation (`dry_run` on record, for `peers`, announcing `live`), with
    /// the attributes each gets.
    fn targets(
        &self,
        dry_run: bool,
        peers: &[String],
        live: &Live,
    ) -> Vec<(usize, Arc<RouteAttrs>)> {
        if dry_run || self.guardrails.dry_run {
            return Vec::new();
        }
        self.receivers(live.kind, peers, live)
    }

    /// The peers (among `names`, or all when empty) that take a route of `kind` in `live`'s
    /// family, with its attributes for each: an RTBH route needs the peer's next hop for its
    /// family.
    fn receivers(
        &self,
        kind: Kind,
        names: &[String],
        live: &Live,
    ) -> Vec<(usize, Arc<RouteAttrs>)> {
        let mut out = Vec::new();
        for (i, (n, _)) in self.peers.iter().enumerate() {
            if !names.is_empty() && !names.contains(&n.peer.name) {
                continue;
            }
            if !n.receives.contains(&kind) || !n.peer.families.contains(&live.family) {
                continue;
            }
            let attrs = match &live.flow_attrs {
                Some(a) => a.clone(),
                None => {
                    let v4 = live.family == Family::Ipv4Unicast;
                    let Some(a) = self.rtbh_attrs.get(&(i, v4)) else {
                        continue;
                    };
                    a.clone()
                }
            };
            out.push((i, attrs));
        }
        out
    }

    fn rebuild_rtbh_attrs(&mut self) {
        self.rtbh_attrs.clear();
        for (i, (n, _)) in self.peers.iter().enumerate() {
            for (v4, nh) in [(true, n.rtbh.next_hop_ipv4), (false, n.rtbh.next_hop_ipv6)] {
                if let Some(nh) = nh {
                    let a = RouteAttrs {
                        next_hop: Some(nh),
                        communities: n.rtbh.communities.clone(),
                        large_communities: n.rtbh.large_communities.clone(),
                        ..RouteAttrs::default()
                    };
                    self.rtbh_attrs.insert((i, v4), Arc::new(a));
                }
            }
        }
    }

    /// Stages `m` with `drafts`, an `announce` draft per peer that gets `live`, and the peer
    /// operations that follow the commit. With no peers, the UPDATE that would be sent is shown:
    /// an RTBH route's next hop is each peer's own, so a documentation address stands in for it.
    fn stage_announce(&mut self, m: &Mitigation, live: &Live, actor: &str, first: Draft) {
        let targets = self.targets(m.dry_run, &m.peers, live);
        let announces = targets.iter().map(|(i, _)| Draft::Announce {
            actor: actor.to_string(),
            id: m.id,
            peer: self.peers[*i].0.peer.name.clone(),
        });
        let drafts: Vec<Draft> = std::iter::once(first).chain(announces).collect();
        self.pending.changed.push(m.clone());
        self.pending.drafts.extend(drafts);
        for (i, attrs) in targets {
            self.pending
                .ops
                .push(PeerOp::Set(i, live.key.clone(), attrs));
        }
        if self.peers.is_empty() {
            let attrs = match (&live.flow_attrs, &live.key) {
                (Some(a), _) => (**a).clone(),
                (None, key) => RouteAttrs {
                    next_hop: Some(if key.family() == Family::Ipv4Unicast {
                        IpAddr::from([192, 0, 2, 1])
                    } else {
                        IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1])
                    }),
                    communities: vec![deflect_bgp::community::Community::BLACKHOLE],
                    ..RouteAttrs::default()
                },
            };
            self.pending
                .ops
                .push(PeerOp::Show(m.id, live.key.clone(), attrs));
        }
    }

    /// Gives each peer every active mitigation it takes, as one command per peer (packed into as
    /// few UPDATEs as the session allows), then says its table is complete (End-of-RIB waits for
    /// that); returns what went where: (id, peer index), by id.
    async fn push_active(&self) -> Vec<(u64, usize)> {
        let mut changes: Vec<Vec<RouteChange>> = self.peers.iter().map(|_| Vec::new()).collect();
        let mut sent = Vec::new();
        for (id, a) in &self.active {
            for (i, attrs) in self.targets(a.dry_run, &a.origin.peers, &a.live) {
                changes[i].push(RouteChange::Set(a.live.key.clone(), attrs));
                sent.push((*id, i));
            }
        }
        for ((_, h), c) in self.peers.iter().zip(changes) {
            h.apply(c).await;
            // Its table is all there: End-of-RIB may follow (held since the peer started).
            h.table_complete().await;
        }
        sent
    }

    fn create(&mut self, order: Order) -> Result<Created, Refusal> {
        let now = self.clock.now_ms();
        let r = self.try_create(&order, now);
        match &r {
            Ok(Created::New(m)) => info!(
                id = m.id,
                actor = m.actor,
                "mitigation created: {}",
                m.target().map(|t| t.to_string()).unwrap_or_default()
            ),
            Ok(Created::Extended(_)) => {}
            Err(e) => self.refused(&order.actor, order.describe(), e),
        }
        r
    }

    /// Creates each item, in the group commit under way (one transaction, one fsync). With
    /// `atomic`, one refusal undoes the others: memory and the group are put back as they were
    /// before the batch, and every item is refused saying which one was the cause.
    fn batch(
        &mut self,
        actor: &str,
        items: Vec<BatchItem>,
        atomic: bool,
    ) -> Vec<Result<Created, Refusal>> {
        let now = self.clock.now_ms();
        let mark = (
            self.pending.changed.len(),
            self.pending.drafts.len(),
            self.pending.ops.len(),
            self.next_id,
        );
        // Room for the whole batch at once, rather than growing (and copying) thousands of times.
        let (n, peers) = (items.len(), self.peers.len().max(1));
        self.by_key.reserve(n);
        self.pending.changed.reserve(n);
        self.pending.drafts.reserve(n * (1 + peers));
        self.pending.ops.reserve(n * peers);
        let mut results = Vec::with_capacity(n);
        let mut refusals = Vec::new();
        let mut made = Vec::new();
        for (i, item) in items.into_iter().enumerate() {
            let r = match item {
                Ok(order) => {
                    // What an atomic batch needs to put back if an item is refused.
                    let prior = atomic
                        .then(|| {
                            self.by_key
                                .get(&order.target.key())
                                .and_then(|id| Some((*id, self.active.get(id)?.clone())))
                        })
                        .flatten();
                    let r = self.try_create(&order, now);
                    match &r {
                        Ok(Created::New(m)) if atomic => made.push(Undo::New(m.id)),
                        Ok(Created::Extended(_)) if atomic => made.push(Undo::Extended(prior)),
                        Ok(_) => {}
                        Err(e) => refusals.push((i, order.describe(), e.clone())),
                    }
                    r
                }
                Err((what, why)) => {
                    refusals.push((i, what, why.clone()));
                    Err(why)
                }
            };
            results.push(r);
        }
        if atomic && !refusals.is_empty() {
            for u in made.into_iter().rev() {
                self.undo_create(u);
            }
            self.pending.changed.truncate(mark.0);
            self.pending.drafts.truncate(mark.1);
            self.pending.ops.truncate(mark.2);
            self.next_id = mark.3;
            let cause = refusals[0].0;
            for r in &mut results {
                if r.is_ok() {
                    *r = Err(Refusal::NotMade { cause });
                }
            }
        }
        for (_, what, why) in &refusals {
            self.refused(actor, what.clone(), why);
        }
        let new = results
            .iter()
            .filter(|r| matches!(r, Ok(Created::New(_))))
            .count();
        info!(
            actor,
            items = results.len(),
            created = new,
            refused = refusals.len(),
            atomic,
            "batch of mitigations"
        );
        results
    }

    /// Takes back a create of this batch (see [`Self::batch`]).
    fn undo_create(&mut self, u: Undo) {
        match u {
            Undo::New(id) => {
                self.deactivate(id);
                self.recent.pop_back();
                self.metrics.created.fetch_sub(1, Ordering::Relaxed);
            }
            Undo::Extended(prior) => {
                if let Some((id, p)) = prior {
                    self.activate(id, p);
                }
            }
        }
        self.metrics
            .active
            .store(self.active.len() as u64, Ordering::Relaxed);
    }

    /// Withdraws every active mitigation `filter` matches.
    fn withdraw_where(
        &mut self,
        filter: &WithdrawFilter,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<Mitigation>, Refusal> {
        if filter.is_empty() {
            return Err(Refusal::Invalid(
                "a withdrawal by filter names an actor, a reason, a kind or a prefix; withdraw one by one by id otherwise".into(),
            ));
        }
        let now = self.clock.now_ms();
        let ids: Vec<u64> = self
            .active
            .iter()
            .filter(|(id, a)| {
                filter.admits(&a.origin.actor, &a.origin.reason, a.live.kind, || {
                    a.target(**id).ok()
                })
            })
            .map(|(id, _)| *id)
            .collect();
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            if let Ok(m) = self.withdraw(id, actor, reason, now) {
                self.metrics.withdrawn.fetch_add(1, Ordering::Relaxed);
                out.push(m);
            }
        }
        info!(
            actor,
            reason,
            withdrawn = out.len(),
            "mitigations withdrawn by filter"
        );
        Ok(out)
    }

    /// The guardrails on what `target` matches, and one only the set can check: an S/RTBH
    /// source is no configured neighbor's address nor deflect's own on a session (the route
    /// would cut the session that carries it, and the edge's others with that router).
    fn check(&self, target: &Target) -> Result<(), Refusal> {
        self.guardrails.check_target(target)?;
        if let Target::SourceRtbh(src) = target {
            let session = self.peers.iter().find(|(n, _)| {
                src.contains(&n.peer.remote)
                    || n.peer.socket.local_addr.is_some_and(|a| src.contains(&a))
            });
            if let Some((n, _)) = session {
                return Err(Refusal::Guardrail(format!(
                    "source {src} is an address of the BGP session with neighbor {}: S/RTBH would cut it",
                    n.peer.name
                )));
            }
        }
        Ok(())
    }

    fn try_create(&mut self, order: &Order, now: u64) -> Result<Created, Refusal> {
        let actor = order.actor.as_str();
        let target = &order.target;
        target.check().map_err(Refusal::Invalid)?;
        let mut live = Live::of(target);
        let fields = Mitigation::fields(target);
        let rule = fields.rule.clone();
        let ttl = self.guardrails.ttl(order.ttl)?;
        self.check(target)?;
        let peers = order.peers.clone();
        self.guardrails.check_peers(target, &peers)?;
        for p in &peers {
            if !self.peers.iter().any(|(n, _)| &n.peer.name == p) {
                return Err(Refusal::Invalid(format!("no peer named {p:?}")));
            }
        }
        // With neighbors configured, a mitigation none of them can take would be reported active
        // and reach no router: refused, saying why. (Without neighbors, announcements are shown.)
        if !self.peers.is_empty() && self.receivers(target.kind(), &peers, &live).is_empty() {
            return Err(guardrails::no_receiver(target, &peers));
        }
        let expires = now + ttl.as_millis() as u64;

        // The same rule again: one mitigation, its lifetime extended.
        if let Some((&id, a)) = self
            .by_key
            .get(&live.key)
            .and_then(|id| Some((id, self.active.get(id)?)))
        {
            let mut m = a.record(id);
            if m.kind != target.kind() {
                return Err(Refusal::Conflict(format!(
                    "mitigation {id} announces the same prefix as {}; withdraw it first",
                    m.kind
                )));
            }
            let same = m.rule == rule
                && m.next_hop == fields.next_hop
                && m.communities == fields.communities
                && m.large_communities == fields.large_communities;
            if !same {
                return Err(Refusal::Conflict(format!(
                    "mitigation {id} matches the same traffic with other actions or attributes ({}); change them in place (PATCH) or withdraw it first",
                    m.target().map(|t| t.to_string()).unwrap_or_default()
                )));
            }
            let (mut have, mut want) = (m.peers.clone(), peers.clone());
            have.sort();
            want.sort();
            if have != want {
                return Err(Refusal::Conflict(format!(
                    "mitigation {id} is the same rule for other peers ({}); withdraw it first",
                    if m.peers.is_empty() {
                        "every eligible peer".to_string()
                    } else {
                        m.peers.join(", ")
                    }
                )));
            }
            let d = AuditDraft::new(
                actor,
                "mitigation.extend",
                serde_json::json!({"id": id, "expires_ms": m.expires_ms.max(expires), "by": "same rule again"}),
            );
            let until = m.expires_ms.max(expires);
            self.set_expiry(id, until);
            m.expires_ms = until;
            self.stage(&m, vec![d]);
            return Ok(Created::Extended(m));
        }

        if target.kind() == Kind::SourceRtbh {
            let n = self
                .active
                .values()
                .filter(|a| a.live.kind == Kind::SourceRtbh)
                .count();
            self.guardrails.check_source_rtbh_cap(n)?;
        }
        let active = self.active.len();
        if active >= self.guardrails.max_active {
            return Err(Refusal::Guardrail(format!(
                "{active} mitigations are active, the maximum configured"
            )));
        }
        while self.recent.front().is_some_and(|t| *t + 60_000 <= now) {
            self.recent.pop_front();
        }
        if self.recent.len() >= self.guardrails.max_new_per_minute as usize {
            return Err(Refusal::Guardrail(format!(
                "{} mitigations were created in the last minute, the maximum configured",
                self.recent.len()
            )));
        }

        self.intern(&mut live);
        let m = Mitigation {
            id: self.next_id,
            kind: target.kind(),
            rule: fields.rule,
            prefix: fields.prefix,
            next_hop: fields.next_hop,
            communities: fields.communities,
            large_communities: fields.large_communities,
            peers,
            reason: order.reason.clone(),
            actor: actor.to_string(),
            created_ms: now,
            expires_ms: expires,
            withdrawn_ms: None,
            withdraw_reason: None,
            dry_run: self.guardrails.dry_run,
        };
        let draft = Draft::Created {
            actor: actor.to_string(),
            at: self.pending.changed.len(),
        };
        // Announced while made durable, acknowledged once durable (see `flush`).
        self.stage_announce(&m, &live, actor, draft);
        self.next_id += 1;
        self.recent.push_back(now);
        let a = Active::made(&m, target, live, &mut self.origins);
        self.activate(m.id, a);
        self.metrics.created.fetch_add(1, Ordering::Relaxed);
        self.metrics
            .active
            .store(self.active.len() as u64, Ordering::Relaxed);
        Ok(Created::New(m))
    }

    /// Moves active mitigation `id`'s expiry.
    fn set_expiry(&mut self, id: u64, expires_ms: u64) {
        if let Some(a) = self.active.get_mut(&id) {
            self.expiries.remove(&(a.expires_ms, id));
            a.expires_ms = expires_ms;
            self.expiries.insert((expires_ms, id));
        }
    }

    fn withdraw(
        &mut self,
        id: u64,
        actor: &str,
        reason: &str,
        now: u64,
    ) -> Result<Mitigation, Refusal> {
        let Some(a) = self.active.get(&id) else {
            return match self.stored(id) {
                Some(m) => Err(Refusal::Conflict(format!(
                    "mitigation {id} is not active ({})",
                    m.withdraw_reason.as_deref().unwrap_or("expired")
                ))),
                None => Err(Refusal::NotFound(id)),
            };
        };
        let mut m = a.record(id);
        m.withdrawn_ms = Some(now);
        m.withdraw_reason = Some(reason.to_string());
        let targets = self.targets(a.dry_run, &a.origin.peers, &a.live);
        let key = a.live.key.clone();
        let mut drafts = vec![AuditDraft::new(
            actor,
            "mitigation.withdraw",
            serde_json::json!({"id": id, "reason": reason}),
        )];
        drafts.extend(targets.iter().map(|(i, _)| {
            AuditDraft::new(
                actor,
                "withdraw",
                serde_json::json!({"id": id, "peer": self.peers[*i].0.peer.name}),
            )
        }));
        self.stage(&m, drafts);
        for (i, _) in targets {
            self.pending.ops.push(PeerOp::Remove(i, key.clone()));
        }
        // One line each at debug: an expiry or a filter can withdraw thousands at once, and say
        // so once (the audit log has each).
        debug!(id, actor, reason, "mitigation withdrawn");
        // Memory holds what is active; the withdrawn one is in the store (with this batch).
        self.deactivate(id);
        self.metrics
            .active
            .store(self.active.len() as u64, Ordering::Relaxed);
        Ok(m)
    }

    fn extend(&mut self, id: u64, ttl: Duration, actor: &str) -> Result<Mitigation, Refusal> {
        let now = self.clock.now_ms();
        if !self.active.contains_key(&id) {
            return Err(self.inactive(id));
        }
        let d = match self.guardrails.ttl(Some(ttl)) {
            Ok(d) => d,
            Err(e) => {
                let ttl = format!("{}s", ttl.as_secs());
                self.refused(actor, serde_json::json!({"extend": id, "ttl": ttl}), &e);
                return Err(e);
            }
        };
        self.set_expiry(id, now + d.as_millis() as u64);
        let m = self.active[&id].record(id);
        let draft = AuditDraft::new(
            actor,
            "mitigation.extend",
            serde_json::json!({"id": id, "expires_ms": m.expires_ms}),
        );
        self.stage(&m, vec![draft]);
        Ok(m)
    }

    fn amend(&mut self, id: u64, a: Amend) -> Result<Mitigation, Refusal> {
        let now = self.clock.now_ms();
        let what = serde_json::json!({
            "amend": id,
            "actions": a.actions.iter().map(ToString::to_string).collect::<Vec<_>>(),
            "reason": a.reason,
        });
        let r = self.try_amend(id, &a, now);
        if let Err(e) = &r {
            if !matches!(e, Refusal::NotFound(_)) {
                self.refused(&a.actor, what, e);
            }
        }
        r
    }

    fn try_amend(&mut self, id: u64, a: &Amend, now: u64) -> Result<Mitigation, Refusal> {
        let Some(now_active) = self.active.get(&id) else {
            return Err(self.inactive(id));
        };
        let mut m = now_active.record(id);
        let Ok(Target::Flowspec(route)) = now_active.target(id) else {
            return Err(Refusal::Invalid(format!(
                "mitigation {id} is {}: only a FlowSpec rule has actions to change",
                m.kind
            )));
        };
        let target = Target::Flowspec(deflect_bgp::flowspec::FlowRoute {
            rule: route.rule,
            actions: a.actions.clone(),
        });
        target.check().map_err(Refusal::Invalid)?;
        let expires = match a.ttl {
            Some(t) => m
                .expires_ms
                .max(now + self.guardrails.ttl(Some(t))?.as_millis() as u64),
            None => m.expires_ms,
        };
        let from = m.rule.clone();
        m.rule = Some(target.to_string());
        m.expires_ms = expires;
        self.set_expiry(id, expires);
        let draft = AuditDraft::new(
            &a.actor,
            "mitigation.amend",
            serde_json::json!({"id": id, "from": from, "to": m.rule, "reason": a.reason, "expires_ms": m.expires_ms}),
        );
        if from == m.rule {
            self.stage(&m, vec![draft]);
            return Ok(m);
        }
        // The same NLRI with the new actions: the Adj-RIB-Out sends it as one UPDATE.
        let mut new = Live::of(&target);
        self.intern(&mut new);
        self.stage_announce(&m, &new, &a.actor, Draft::Ready(draft));
        info!(id, actor = %a.actor, rule = ?m.rule, "mitigation amended");
        let active = Active::new(&m, &target, new, &mut self.origins);
        self.activate(id, active);
        Ok(m)
    }

    /// Why a change to mitigation `id`, which is not active, is refused.
    fn inactive(&self, id: u64) -> Refusal {
        match self.stored(id) {
            Some(_) => Refusal::Conflict(format!("mitigation {id} is not active")),
            None => Refusal::NotFound(id),
        }
    }

    /// A mitigation by id: active ones from memory, the others from the store.
    fn stored(&self, id: u64) -> Option<Mitigation> {
        match self.active.get(&id) {
            Some(a) => Some(a.record(id)),
            None => self.store.mitigation(id).ok().flatten(),
        }
    }

    fn list(&self, f: &ListFilter) -> Result<Vec<Mitigation>, Refusal> {
        let now = self.clock.now_ms();
        let every = f.all.unwrap_or(false);
        // Withdrawn mitigations live in the store only: memory stays the size of what is active.
        let source: Vec<Mitigation> = if every {
            self.store
                .mitigations()
                .map_err(|e| Refusal::Store(e.to_string()))?
        } else {
            self.active.iter().map(|(id, a)| a.record(*id)).collect()
        };
        Ok(source
            .into_iter()
            .filter(|m| every || m.is_active(now))
            .filter(|m| f.kind.is_none_or(|k| k == m.kind))
            .filter(|m| f.actor.as_ref().is_none_or(|a| a == &m.actor))
            .filter(|m| {
                f.peer
                    .as_ref()
                    .is_none_or(|p| m.peers.is_empty() || m.peers.contains(p))
            })
            .collect())
    }

    /// Withdraws everything whose time has come, in one group.
    async fn expire(&mut self) {
        let now = self.clock.now_ms();
        let due: Vec<u64> = self
            .expiries
            .iter()
            .take_while(|(t, _)| *t <= now)
            .map(|(_, id)| *id)
            .collect();
        let mut expired = 0;
        for id in due {
            if self.withdraw(id, "system", "expired", now).is_ok() {
                self.metrics.expired.fetch_add(1, Ordering::Relaxed);
                expired += 1;
            }
        }
        if expired > 0 {
            info!(expired, "mitigations expired: withdrawn");
        }
        self.flush().await;
    }

    fn next_expiry(&self) -> Option<u64> {
        self.expiries.first().map(|(t, _)| (*t).max(self.retry_at))
    }

    /// One batch of retention: the oldest audit entries and withdrawn mitigations past the
    /// guardrails' `retention` go, in a transaction of their own with the entry that records it.
    fn prune(&mut self) -> Result<Pruned, Refusal> {
        let now = self.clock.now_ms();
        let r = self
            .store
            .prune(&self.guardrails.retention, now, self.active.len() as u64);
        self.next_prune = now + PRUNE_EVERY_MS;
        match r {
            Ok(p) => {
                if p.more {
                    self.next_prune = now + PRUNE_AGAIN_MS;
                }
                if p.audit + p.mitigations > 0 {
                    info!(
                        audit_entries = p.audit,
                        mitigations = p.mitigations,
                        more = p.more,
                        "store pruned: past its retention"
                    );
                }
                self.metrics
                    .pruned_audit
                    .fetch_add(p.audit, Ordering::Relaxed);
                self.metrics
                    .pruned_mitigations
                    .fetch_add(p.mitigations, Ordering::Relaxed);
                Ok(p)
            }
            Err(e) => {
                warn!("store not pruned, trying again in an hour: {e}");
                Err(Refusal::Store(e.to_string()))
            }
        }
    }

    async fn reload(&mut self, guardrails: Guardrails, peers: Vec<(Neighbor, PeerHandle)>) {
        self.guardrails = guardrails;
        self.peers = peers;
        self.rebuild_rtbh_attrs();
        // What the new guardrails forbid (a never-block prefix added, a protected group removed)
        // is withdrawn on record.
        let now = self.clock.now_ms();
        let forbidden: Vec<(u64, Refusal)> = self
            .active
            .iter()
            .filter_map(|(id, a)| {
                let t = a.target(*id).ok()?;
                self.check(&t).err().map(|e| (*id, e))
            })
            .collect();
        for (id, why) in forbidden {
            let reason = format!("refused on reload: {why}");
            warn!(id, "{reason}");
            if self.withdraw(id, "config", &reason, now).is_ok() {
                self.metrics.withdrawn.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.flush().await;
        // Peer handles may be new: give every peer the whole active set (idempotent for the others).
        self.push_active().await;
    }

    async fn run(mut self, mut rx: mpsc::Receiver<Request>, stop: CancellationToken) {
        loop {
            let next = self
                .next_expiry()
                .map_or(self.next_prune, |t| t.min(self.next_prune));
            // A manual clock's driver asks for expiries itself (`Request::Expire`).
            let sleep = Some(next)
                .filter(|_| !self.clock.is_manual())
                .map(|t| Duration::from_millis(t.saturating_sub(self.clock.now_ms())));
            tokio::select! {
                _ = stop.cancelled() => {
                    // What is already queued is carried out and made durable; then the task ends
                    // and the store holds the state for the next start.
                    rx.close();
                    while let Some(req) = rx.recv().await {
                        self.handle(req).await;
                    }
                    self.flush().await;
                    return;
                }
                req = rx.recv() => {
                    let Some(req) = req else { return };
                    self.handle(req).await;
                    // Group commit: whatever else is waiting goes into the same transaction.
                    while self.pending.replies.len() < MAX_BATCH {
                        match rx.try_recv() {
                            Ok(req) => self.handle(req).await,
                            Err(_) => break,
                        }
                    }
                    self.flush().await;
                }
                _ = tokio::time::sleep(sleep.unwrap_or(Duration::from_secs(3600))), if sleep.is_some() => {
                    self.expire().await;
                    if self.clock.now_ms() >= self.next_prune {
                        let _ = self.prune();
                    }
                }
            }
        }
    }

    /// Carries out one request. Changes join the group commit; anything that reads or stands
    /// alone first makes the group durable, so it never sees or mixes with undurable state.
    async fn handle(&mut self, req: Request) {
        match req {
            Request::Create { order, reply } => {
                let r = self.create(order);
                self.pending.replies.push(Deferred::Created(reply, r));
            }
            Request::Batch {
                actor,
                items,
                atomic,
                reply,
            } => {
                let r = self.batch(&actor, items, atomic);
                self.pending.replies.push(Deferred::Batch(reply, r));
            }
            Request::WithdrawWhere {
                filter,
                actor,
                reason,
                reply,
            } => match self.withdraw_where(&filter, &actor, &reason) {
                Ok(v) => self.pending.replies.push(Deferred::Withdrawn(reply, v)),
                Err(e) => drop(reply.send(Err(e))),
            },
            Request::Withdraw {
                id,
                actor,
                reason,
                reply,
            } => {
                let now = self.clock.now_ms();
                let r = self.withdraw(id, &actor, &reason, now);
                match &r {
                    Ok(_) => {
                        info!(id, actor, reason, "mitigation withdrawn");
                        self.metrics.withdrawn.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        let what = serde_json::json!({"withdraw": id, "reason": reason});
                        if !matches!(e, Refusal::NotFound(_)) {
                            self.refused(&actor, what, e);
                        }
                    }
                }
                self.pending.replies.push(Deferred::One(reply, r));
            }
            Request::Extend {
                id,
                ttl,
                actor,
                reply,
            } => {
                let r = self.extend(id, ttl, &actor);
                self.pending.replies.push(Deferred::One(reply, r));
            }
            Request::Amend { id, amend, reply } => {
                let r = self.amend(id, amend);
                self.pending.replies.push(Deferred::One(reply, r));
            }
            Request::Record { draft, reply } => {
                self.pending.drafts.push(Draft::Ready(draft));
                self.pending.replies.push(Deferred::Unit(reply));
            }
            Request::Refused {
                actor,
                what,
                why,
                reply,
            } => {
                self.refused(&actor, what, &why);
                self.pending.replies.push(Deferred::Unit(reply));
            }
            Request::Remember { key, value, reply } => {
                self.pending.memos.push((key, value));
                self.pending.replies.push(Deferred::Unit(reply));
            }
            other => {
                self.flush().await;
                self.handle_alone(other).await;
            }
        }
    }

    async fn handle_alone(&mut self, req: Request) {
        match req {
            Request::Create { .. }
            | Request::Batch { .. }
            | Request::WithdrawWhere { .. }
            | Request::Withdraw { .. }
            | Request::Extend { .. }
            | Request::Amend { .. }
            | Request::Record { .. }
            | Request::Refused { .. }
            | Request::Remember { .. } => {
                unreachable!("grouped requests are handled by handle()")
            }
            Request::Expire { reply } => {
                self.expire().await;
                let _ = reply.send(Ok(()));
            }
            Request::Prune { reply } => {
                let _ = reply.send(self.prune());
            }
            Request::Memories { reply } => {
                let _ = reply.send(
                    self.store
                        .memories()
                        .map_err(|e| Refusal::Store(e.to_string())),
                );
            }
            Request::Get { id, reply } => {
                let _ = reply.send(self.stored(id).ok_or(Refusal::NotFound(id)));
            }
            Request::List { filter, reply } => {
                let _ = reply.send(self.list(&filter));
            }
            Request::Audit {
                after,
                limit,
                reply,
            } => {
                // `u64::MAX` asks for the last `limit` entries.
                let after = if after == u64::MAX {
                    self.store.audit_last_seq().saturating_sub(limit as u64)
                } else {
                    after
                };
                let _ = reply.send(
                    self.store
                        .audit_page(after, limit)
                        .map_err(|e| Refusal::Store(e.to_string())),
                );
            }
            Request::Reload {
                guardrails,
                peers,
                reply,
            } => {
                self.reload(guardrails, peers).await;
                let _ = reply.send(Ok(()));
            }
        }
    }
}

/// Opens the set over `store`: restores what is still active, withdraws (on record) what expired while
/// deflect was down, announces the rest, and starts the task.
pub async fn start(
    store: Store,
    guardrails: Guardrails,
    peers: Vec<(Neighbor, PeerHandle)>,
    local_as: u32,
    clock: Clock,
    stop: CancellationToken,
) -> Result<(MitigationHandle, tokio::task::JoinHandle<()>), StoreError> {
    let now = clock.now_ms();
    let stored = store.mitigations()?;
    // The rate guardrail's window goes on across a restart: what was made in the last minute
    // still counts.
    let mut recent: Vec<u64> = stored
        .iter()
        .map(|m| m.created_ms)
        .filter(|t| t + 60_000 > now)
        .collect();
    recent.sort_unstable();
    let mut set = MitigationSet {
        next_id: stored.iter().map(|m| m.id + 1).max().unwrap_or(1),
        store,
        guardrails,
        peers,
        active: BTreeMap::new(),
        by_key: HashMap::new(),
        recent: recent.into(),
        metrics: Arc::new(Metrics::default()),
        rtbh_attrs: HashMap::new(),
        local_as,
        expiries: BTreeSet::new(),
        pending: Pending::default(),
        retry_at: 0,
        flow_attrs: HashSet::new(),
        origins: Origins::default(),
        refusals: RefusalWindow::default(),
        clock,
        next_prune: 0,
    };
    set.rebuild_rtbh_attrs();
    let mut expired = Vec::new();
    let mut refused = 0;
    let mut drafts = Vec::new();
    for mut m in stored {
        // What was active is checked again before it is announced: its lifetime, that it reads,
        // and the guardrails in force now (the configuration may have changed while deflect was
        // down). What fails is withdrawn on record, never announced.
        let why = if m.withdrawn_ms.is_some() {
            None
        } else if m.expires_ms <= now {
            Some("expired while deflect was down".to_string())
        } else {
            match m.target() {
                Err(e) => Some(format!("refused on restore: the record does not read: {e}")),
                Ok(t) => set
                    .check(&t)
                    .err()
                    .map(|e| format!("refused on restore: {e}")),
            }
        };
        if let Some(why) = why {
            refused += usize::from(!why.starts_with("expired"));
            m.withdrawn_ms = Some(now);
            m.withdraw_reason = Some(why.clone());
            drafts.push(AuditDraft::new(
                "system",
                "mitigation.withdraw",
                serde_json::json!({"id": m.id, "reason": why}),
            ));
            expired.push(m.clone());
        }
        set.insert_stored(m);
    }
    let refs: Vec<&Mitigation> = expired.iter().collect();
    drafts.push(AuditDraft::new(
        "system",
        "restore",
        serde_json::json!({
            "active": set.active.len(),
            "expired": expired.len() - refused,
            "refused": refused,
        }),
    ));
    set.store.commit(&refs, &[], drafts, now)?;
    let sent = set.push_active().await;
    set.metrics
        .announces
        .fetch_add(sent.len() as u64, Ordering::Relaxed);
    let announce_drafts: Vec<AuditDraft> = sent
        .into_iter()
        .map(|(id, i)| {
            AuditDraft::new(
                "system",
                "announce",
                serde_json::json!({"id": id, "peer": set.peers[i].0.peer.name}),
            )
        })
        .collect();
    if !announce_drafts.is_empty() {
        set.store.commit(&[], &[], announce_drafts, now)?;
    }
    info!(
        active = set.active.len(),
        expired = expired.len() - refused,
        refused,
        "mitigations restored"
    );
    set.metrics
        .active
        .store(set.active.len() as u64, Ordering::Relaxed);
    // Retention's first batch now; the rest, if any, from the task.
    let _ = set.prune();
    let (tx, rx) = mpsc::channel(1024);
    let handle = MitigationHandle::new(tx, set.metrics.clone(), set.store.audit_reader());
    let task = tokio::spawn(set.run(rx, stop));
    Ok((handle, task))
}

#[cfg(test)]
mod draft_tests {
    use super::*;

    /// A batch's drafts, printed straight, say what the `Value` each stands for says.
    #[test]
    fn a_batch_s_drafts_print_what_their_values_print() {
        let m = Mitigation {
            id: 7,
            kind: Kind::Flowspec,
            rule: Some("dst 203.0.113.1/32 proto udp then discard".into()),
            prefix: None,
            next_hop: None,
            communities: Vec::new(),
            large_communities: Vec::new(),
            peers: vec!["edge \"1\"".into()],
            reason: "flood".into(),
            actor: "noc".into(),
            created_ms: 1,
            expires_ms: 2,
            withdrawn_ms: None,
            withdraw_reason: None,
            dry_run: false,
        };
        let created = Draft::Created {
            actor: "noc".into(),
            at: 0,
        }
        .ready(std::slice::from_ref(&m));
        assert_eq!(
            created,
            RawDraft::from(AuditDraft::new(
                "noc",
                "mitigation.create",
                serde_json::to_value(&m).unwrap()
            ))
        );
        let peer = "edge \"1\" \u{e9}\n".to_string();
        let announce = Draft::Announce {
            actor: "noc".into(),
            id: 7,
            peer: peer.clone(),
        }
        .ready(&[]);
        assert_eq!(
            announce,
            RawDraft::from(AuditDraft::new(
                "noc",
                "announce",
                serde_json::json!({"id": 7, "peer": peer})
            ))
        );
    }
}
