//! The mitigation set: the one owner of what deflect announces, with its store.
//!
//! ```text
//!  API (orders from JSON) ─┐
//!  engine (policy orders) ─┴─(bounded mpsc, oneshot replies)─► set task ──► store (redb, fsync)
//!  alerts, playbooks ───(AuditSink: audit entries only)──────►    │
//!                                                                 └──► PeerHandle::set / remove
//! ```
//!
//! - [`record`]: the typed [`Order`] in, the [`Mitigation`] record out, refusals.
//! - [`guardrails`]: the pure checks every order passes.
//! - [`handle`]: the requests the task takes and its counters; the handle is also the audit log's
//!   [`AuditSink`](crate::audit::AuditSink).
//! - `set`: the task, its group commit and expiry.
//! - [`store`]: the durable state and the audit log, in one redb database.

pub mod guardrails;
pub mod handle;
pub mod record;
mod set;
pub mod store;

pub use self::handle::{Metrics, MitigationHandle};
pub use self::record::{
    Amend, BatchItem, Created, ListFilter, Mitigation, Order, Refusal, WithdrawFilter,
};
pub use self::set::start;

#[cfg(test)]
mod tests;
