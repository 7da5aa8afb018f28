//! The mitigation set's handle: the requests its task takes, and the counters it publishes.
//!
//! One task owns the set because one writer owns the store: changes and the audit entries that
//! describe them go in the same transaction. So the handle is two things, and the types say which:
//! the set's own requests ([`MitigationHandle::create`], `withdraw`, `extend`, reads), and the
//! audit log's [`AuditSink`], which everything else that audits (alerts, playbooks, detection)
//! holds without seeing the set.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc, oneshot};
use tracing::warn;

use crate::audit::{AuditDraft, AuditEntry, AuditSink};
use crate::mitigation::guardrails::Guardrails;
use crate::mitigation::record::{
    Amend, BatchItem, Created, ListFilter, Mitigation, Order, Refusal, WithdrawFilter,
};
use crate::mitigation::store::AuditReader;
use crate::peer::{Neighbor, PeerHandle};

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub created: AtomicU64,
    pub refused: AtomicU64,
    /// Refusals counted but not audited (past the per-actor limit).
    pub refused_unaudited: AtomicU64,
    pub withdrawn: AtomicU64,
    pub expired: AtomicU64,
    pub announces: AtomicU64,
    pub withdraws: AtomicU64,
    pub active: AtomicU64,
    /// Active by kind, in the order of [`crate::route::Kind::ALL`].
    pub active_by_kind: [AtomicU64; crate::route::Kind::ALL.len()],
    /// Audit entries and withdrawn mitigations removed by retention.
    pub pruned_audit: AtomicU64,
    pub pruned_mitigations: AtomicU64,
}

pub(super) type Reply<T> = oneshot::Sender<Result<T, Refusal>>;

/// Requests to the mitigation set.
#[derive(Debug)]
pub(super) enum Request {
    Create {
        order: Order,
        reply: Reply<Created>,
    },
    /// Many creates in one transaction; all or none when `atomic`.
    Batch {
        actor: String,
        items: Vec<BatchItem>,
        atomic: bool,
        reply: Reply<Vec<Result<Created, Refusal>>>,
    },
    /// Withdraws every active mitigation the filter matches, in one transaction.
    WithdrawWhere {
        filter: WithdrawFilter,
        actor: String,
        reason: String,
        reply: Reply<Vec<Mitigation>>,
    },
    Withdraw {
        id: u64,
        actor: String,
        reason: String,
        reply: Reply<Mitigation>,
    },
    Extend {
        id: u64,
        ttl: Duration,
        actor: String,
        reply: Reply<Mitigation>,
    },
    Amend {
        id: u64,
        amend: Amend,
        reply: Reply<Mitigation>,
    },
    Get {
        id: u64,
        reply: Reply<Mitigation>,
    },
    List {
        filter: ListFilter,
        reply: Reply<Vec<Mitigation>>,
    },
    Audit {
        after: u64,
        limit: usize,
        reply: Reply<Vec<AuditEntry>>,
    },
    /// An audit entry for something that changed no mitigation (a refused reload...).
    Record {
        draft: AuditDraft,
        reply: Reply<()>,
    },
    /// A request refused before it could become an order (a malformed API body): counted and
    /// audited like any refusal.
    Refused {
        actor: String,
        what: serde_json::Value,
        why: Refusal,
        reply: Reply<()>,
    },
    /// Another task's state kept in the store beside the mitigations (the engine's memory of
    /// attacks that may come back), by key; `None` removes it.
    Remember {
        key: String,
        value: Option<Vec<u8>>,
        reply: Reply<()>,
    },
    /// Withdraws what has expired by the set's clock (a manual clock's driver asks; the wall
    /// clock's set has a timer of its own).
    Expire {
        reply: Reply<()>,
    },
    /// One batch of retention now (the set's timer does it hourly).
    Prune {
        reply: Reply<crate::mitigation::store::Pruned>,
    },
    /// Everything kept with `Remember`.
    Memories {
        reply: Reply<Vec<(String, Vec<u8>)>>,
    },
    /// A new configuration: guardrails and the peers with what they receive (the reload is on
    /// record already: see [`MitigationHandle::reload`]).
    Reload {
        guardrails: Guardrails,
        peers: Vec<(Neighbor, PeerHandle)>,
        reply: Reply<()>,
    },
}

/// A handle to the mitigation set task.
#[derive(Debug, Clone)]
pub struct MitigationHandle {
    tx: mpsc::Sender<Request>,
    pub metrics: Arc<Metrics>,
    /// The audit log's reader: verification runs beside the set, one at a time.
    reader: AuditReader,
    verifying: Arc<Semaphore>,
}

impl MitigationHandle {
    pub(super) fn new(
        tx: mpsc::Sender<Request>,
        metrics: Arc<Metrics>,
        reader: AuditReader,
    ) -> MitigationHandle {
        MitigationHandle {
            tx,
            metrics,
            reader,
            verifying: Arc::new(Semaphore::new(1)),
        }
    }

    async fn ask<T>(&self, make: impl FnOnce(Reply<T>) -> Request) -> Result<T, Refusal> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(make(tx))
            .await
            .map_err(|_| Refusal::Store("deflect is shutting down".into()))?;
        rx.await
            .map_err(|_| Refusal::Store("deflect is shutting down".into()))?
    }

    pub async fn create(&self, order: Order) -> Result<Created, Refusal> {
        self.ask(|reply| Request::Create { order, reply }).await
    }

    /// Creates each item in one durable transaction (one fsync), answering per item; with
    /// `atomic`, all of them or none. Each new mitigation counts against the guardrails (the rate
    /// cap and the active maximum) as a single create would.
    pub async fn create_batch(
        &self,
        actor: &str,
        items: Vec<BatchItem>,
        atomic: bool,
    ) -> Result<Vec<Result<Created, Refusal>>, Refusal> {
        self.ask(|reply| Request::Batch {
            actor: actor.into(),
            items,
            atomic,
            reply,
        })
        .await
    }

    /// Withdraws every active mitigation `filter` matches (it must say something), in one
    /// transaction; returns them.
    pub async fn withdraw_where(
        &self,
        filter: WithdrawFilter,
        actor: &str,
        reason: &str,
    ) -> Result<Vec<Mitigation>, Refusal> {
        self.ask(|reply| Request::WithdrawWhere {
            filter,
            actor: actor.into(),
            reason: reason.into(),
            reply,
        })
        .await
    }

    pub async fn withdraw(
        &self,
        id: u64,
        actor: &str,
        reason: &str,
    ) -> Result<Mitigation, Refusal> {
        self.ask(|reply| Request::Withdraw {
            id,
            actor: actor.into(),
            reason: reason.into(),
            reply,
        })
        .await
    }

    pub async fn extend(&self, id: u64, ttl: Duration, actor: &str) -> Result<Mitigation, Refusal> {
        self.ask(|reply| Request::Extend {
            id,
            ttl,
            actor: actor.into(),
            reply,
        })
        .await
    }

    /// Changes an active FlowSpec mitigation's actions in place: the same rule, so the peers get
    /// one UPDATE with the same NLRI and the new actions (an implicit withdraw), never a
    /// withdrawal and an announcement with a gap between them.
    pub async fn amend(&self, id: u64, amend: Amend) -> Result<Mitigation, Refusal> {
        self.ask(|reply| Request::Amend { id, amend, reply }).await
    }

    pub async fn get(&self, id: u64) -> Result<Mitigation, Refusal> {
        self.ask(|reply| Request::Get { id, reply }).await
    }

    pub async fn list(&self, filter: ListFilter) -> Result<Vec<Mitigation>, Refusal> {
        self.ask(|reply| Request::List { filter, reply }).await
    }

    pub async fn audit(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, Refusal> {
        self.ask(|reply| Request::Audit {
            after,
            limit,
            reply,
        })
        .await
    }

    /// Verifies the whole audit chain on a blocking thread, beside the set: a long log holds up
    /// no change. One verification at a time; others wait their turn.
    pub async fn audit_verify(&self) -> Result<crate::audit::Verified, Refusal> {
        let _turn = self
            .verifying
            .acquire()
            .await
            .map_err(|_| Refusal::Store("deflect is shutting down".into()))?;
        let reader = self.reader.clone();
        match tokio::task::spawn_blocking(move || reader.verify()).await {
            Ok(Ok(Ok(n))) => Ok(n),
            Ok(Ok(Err(e))) => Err(Refusal::Conflict(format!("audit log does not verify: {e}"))),
            Ok(Err(e)) => Err(Refusal::Store(e.to_string())),
            Err(e) => Err(Refusal::Store(format!("audit verification: {e}"))),
        }
    }

    /// Counts and audits a request refused at an edge, before it became an order; returns the
    /// refusal for the caller to answer with.
    pub async fn refused(&self, actor: &str, what: serde_json::Value, why: Refusal) -> Refusal {
        let r = why.clone();
        if let Err(e) = self
            .ask(|reply| Request::Refused {
                actor: actor.into(),
                what,
                why,
                reply,
            })
            .await
        {
            warn!("refusal not audited: {e}");
        }
        r
    }

    /// Writes one audit entry and waits until it is durable; failures are logged (the caller has
    /// nothing to undo).
    pub async fn record(&self, actor: &str, action: &str, detail: serde_json::Value) {
        if let Err(e) = self.try_record(actor, action, detail).await {
            warn!("audit entry not written: {e}");
        }
    }

    /// Writes one audit entry and waits until it is durable, or says why it could not be: for a
    /// caller that must not go on unrecorded (a reload is refused whole when the log cannot be
    /// written).
    pub async fn try_record(
        &self,
        actor: &str,
        action: &str,
        detail: serde_json::Value,
    ) -> Result<(), Refusal> {
        let draft = AuditDraft::new(actor, action, detail);
        self.ask(|reply| Request::Record { draft, reply }).await
    }

    /// Applies a new configuration's guardrails and peers: what the guardrails now forbid is
    /// withdrawn on record, and every peer is given the whole active set. The caller has put the
    /// reload on record first ([`MitigationHandle::try_record`]), before anything changed: the peers
    /// handed over here are sessions already running, which must get their routes whatever the
    /// store says.
    pub async fn reload(
        &self,
        guardrails: Guardrails,
        peers: Vec<(Neighbor, PeerHandle)>,
    ) -> Result<(), Refusal> {
        self.ask(|reply| Request::Reload {
            guardrails,
            peers,
            reply,
        })
        .await
    }

    /// Keeps `value` under `key` in the store (`None`: forgets it), durable when this returns.
    pub async fn remember(&self, key: String, value: Option<Vec<u8>>) -> Result<(), Refusal> {
        self.ask(|reply| Request::Remember { key, value, reply })
            .await
    }

    /// Prunes the store now, one batch (see [`Store::prune`](crate::mitigation::store::Store::prune));
    /// the set also does it by itself, hourly.
    pub async fn prune(&self) -> Result<crate::mitigation::store::Pruned, Refusal> {
        self.ask(|reply| Request::Prune { reply }).await
    }

    /// Withdraws what has expired by the set's clock, when that clock is moved by hand.
    pub async fn expire_due(&self) -> Result<(), Refusal> {
        self.ask(|reply| Request::Expire { reply }).await
    }

    /// Everything kept with [`MitigationHandle::remember`].
    pub async fn memories(&self) -> Result<Vec<(String, Vec<u8>)>, Refusal> {
        self.ask(|reply| Request::Memories { reply }).await
    }

    /// The audit log, for those that only write to it.
    pub fn audit_sink(&self) -> Arc<dyn AuditSink> {
        Arc::new(self.clone())
    }

    /// Active mitigations, as last published.
    pub fn active(&self) -> u64 {
        self.metrics.active.load(Ordering::Relaxed)
    }
}

impl AuditSink for MitigationHandle {
    /// Queues one audit entry without waiting for it: it joins the next group commit, in order
    /// with what is sent after it (an attack's start before the mitigation it causes).
    fn record_later(&self, actor: &str, action: &str, detail: serde_json::Value) {
        let (reply, _) = oneshot::channel();
        let req = Request::Record {
            draft: AuditDraft::new(actor, action, detail),
            reply,
        };
        match self.tx.try_send(req) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(req)) => {
                let tx = self.tx.clone();
                tokio::spawn(async move {
                    let _ = tx.send(req).await;
                });
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                warn!("audit entry not written: deflect is shutting down")
            }
        }
    }
}
