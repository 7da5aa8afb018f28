//! The audit log: who changed what, when, hash-chained so that an edited, deleted or reordered entry
//! is detected ([`verify`]).
//!
//! Each entry's hash is SHA-256 over the previous entry's hash and the entry's own canonical JSON
//! (sequence number, time, actor, action, detail). The first entry chains from 32 zero octets.
//! Entries are written by the store in the same transaction as the change they describe.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// One entry, as stored and served.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// 1, 2, 3, ... without gaps.
    pub seq: u64,
    /// Unix time, milliseconds.
    pub time_ms: u64,
    /// API token name, `policy:...`, `system`, or `config`.
    pub actor: String,
    /// What happened: `mitigation.create`, `mitigation.refused`, `announce`, `withdraw`, `config.reload`...
    pub action: String,
    /// What changed, as JSON.
    pub detail: serde_json::Value,
    /// Hex of the previous entry's hash.
    pub prev: String,
    /// Hex of this entry's hash.
    pub hash: String,
}

/// An entry before it has its place in the chain.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditDraft {
    pub actor: String,
    pub action: String,
    pub detail: serde_json::Value,
}

impl AuditDraft {
    pub fn new(actor: &str, action: &str, detail: serde_json::Value) -> AuditDraft {
        AuditDraft {
            actor: actor.to_string(),
            action: action.to_string(),
            detail,
        }
    }
}

/// Where audit entries go. The mitigation set implements it: it seals entries in the same
/// transactions as the changes they describe (one writer for the store). Alerts, playbooks and
/// anything else that only writes to the log hold this, not the set.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Queues one entry without waiting for it; entries keep the order they were queued in.
    fn record_later(&self, actor: &str, action: &str, detail: serde_json::Value);
}

/// The hash that starts the chain.
pub fn genesis() -> String {
    hex::encode([0u8; 32])
}

fn digest(
    prev: &str,
    seq: u64,
    time_ms: u64,
    actor: &str,
    action: &str,
    detail: &serde_json::Value,
) -> String {
    let body = serde_json::json!({"seq": seq, "time_ms": time_ms, "actor": actor, "action": action, "detail": detail});
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(body.to_string().as_bytes());
    hex::encode(h.finalize())
}

/// Places a draft after `prev` (the previous entry's hash and sequence number).
pub fn seal(draft: AuditDraft, prev_seq: u64, prev_hash: &str, time_ms: u64) -> AuditEntry {
    let seq = prev_seq + 1;
    let hash = digest(
        prev_hash,
        seq,
        time_ms,
        &draft.actor,
        &draft.action,
        &draft.detail,
    );
    AuditEntry {
        seq,
        time_ms,
        actor: draft.actor,
        action: draft.action,
        detail: draft.detail,
        prev: prev_hash.to_string(),
        hash,
    }
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    #[error("entry {seq}: its content does not match its hash (edited)")]
    Edited { seq: u64 },
    #[error(
        "entry at position {position} has sequence number {seq}, expected {expected} (deleted or reordered)"
    )]
    Sequence {
        position: usize,
        seq: u64,
        expected: u64,
    },
    #[error(
        "entry {seq}: it does not chain from the entry before it (deleted, inserted or reordered)"
    )]
    Broken { seq: u64 },
}

/// Checks a whole log, in the order it is stored. Returns the number of entries.
pub fn verify<'a>(entries: impl IntoIterator<Item = &'a AuditEntry>) -> Result<u64, AuditError> {
    let mut v = Verifier::default();
    for e in entries {
        v.push(e)?;
    }
    Ok(v.entries())
}

/// Checks a log one entry at a time, in the order it is stored: constant memory, whatever its
/// length.
#[derive(Debug, Clone)]
pub struct Verifier {
    prev: String,
    n: u64,
}

impl Default for Verifier {
    fn default() -> Verifier {
        Verifier {
            prev: genesis(),
            n: 0,
        }
    }
}

impl Verifier {
    /// The next entry.
    pub fn push(&mut self, e: &AuditEntry) -> Result<(), AuditError> {
        let expected = self.n + 1;
        if e.seq != expected {
            return Err(AuditError::Sequence {
                position: self.n as usize,
                seq: e.seq,
                expected,
            });
        }
        if e.prev != self.prev {
            return Err(AuditError::Broken { seq: e.seq });
        }
        if digest(&e.prev, e.seq, e.time_ms, &e.actor, &e.action, &e.detail) != e.hash {
            return Err(AuditError::Edited { seq: e.seq });
        }
        self.prev.clone_from(&e.hash);
        self.n = expected;
        Ok(())
    }

    /// Entries that verified so far.
    pub fn entries(&self) -> u64 {
        self.n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(n: u64) -> Vec<AuditEntry> {
        let mut v: Vec<AuditEntry> = Vec::new();
        for i in 0..n {
            let (seq, prev) = v.last().map_or((0, genesis()), |e| (e.seq, e.hash.clone()));
            v.push(seal(
                AuditDraft::new("noc", "mitigation.create", serde_json::json!({"id": i})),
                seq,
                &prev,
                1000 + i,
            ));
        }
        v
    }

    #[test]
    fn an_untouched_chain_verifies() {
        assert_eq!(verify(&chain(5)), Ok(5));
        assert_eq!(verify(&chain(0)), Ok(0));
    }

    #[test]
    fn an_edited_entry_is_detected() {
        let mut c = chain(5);
        c[2].actor = "mallory".into();
        assert_eq!(verify(&c), Err(AuditError::Edited { seq: 3 }));
        let mut c = chain(5);
        c[4].detail = serde_json::json!({"id": 99});
        assert_eq!(verify(&c), Err(AuditError::Edited { seq: 5 }));
    }

    #[test]
    fn a_deleted_entry_is_detected() {
        let mut c = chain(5);
        c.remove(1);
        assert!(matches!(
            verify(&c),
            Err(AuditError::Sequence {
                position: 1,
                seq: 3,
                expected: 2
            })
        ));
        // Renumbering after the deletion does not hide it: the chain breaks.
        let mut c = chain(5);
        c.remove(1);
        for (i, e) in c.iter_mut().enumerate() {
            e.seq = i as u64 + 1;
        }
        assert!(verify(&c).is_err());
    }

    #[test]
    fn a_reordered_entry_is_detected() {
        let mut c = chain(5);
        c.swap(1, 3);
        assert!(verify(&c).is_err());
        let mut c = chain(5);
        c.swap(1, 3);
        let (a, b) = (c[1].seq, c[3].seq);
        c[1].seq = b;
        c[3].seq = a;
        assert!(matches!(
            verify(&c),
            Err(AuditError::Broken { .. }) | Err(AuditError::Edited { .. })
        ));
    }
}
