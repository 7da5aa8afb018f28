//! The audit log: who changed what, when, hash-chained so that an edited, deleted or reordered entry
//! is detected ([`verify`]).
//!
//! Each entry's hash is SHA-256 over the previous entry's hash and the entry's own canonical JSON
//! (sequence number, time, actor, action, detail). The first entry chains from 32 zero octets.
//! Entries are written by the store in the same transaction as the change they describe.
//!
//! Retention prunes the oldest entries. The log then starts at a later entry, and that start is a
//! checkpoint: the entry recording the prune (`audit.prune`, sealed in the same transaction) names
//! the last entry removed, its sequence number and hash (`through_seq`, `through_hash`), and the
//! first entry kept must chain from exactly that. A log that starts after 1 without such an entry
//! in its chain lost its head some other way, and does not verify. (A repair that finds the head
//! missing says so the same way, in its `store.repair` entry.) What no hash chain can show is a
//! log cut at its end: compare its last entry with one you wrote down (`deflect audit verify`
//! prints it).

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

/// A draft whose detail is already its canonical JSON text (what its `Value` prints): how the
/// store takes drafts, so that one made in thousands (a batch's) need not build a `Value`.
#[derive(Debug, Clone, PartialEq)]
pub struct RawDraft {
    pub actor: String,
    pub action: String,
    pub detail: String,
}

impl From<AuditDraft> for RawDraft {
    fn from(d: AuditDraft) -> RawDraft {
        RawDraft {
            actor: d.actor,
            action: d.action,
            detail: d.detail.to_string(),
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

/// A text as JSON writes it (quoted, escaped). Strings always serialize.
fn json_text(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// An entry's hash: SHA-256 over the previous entry's hash and the entry's canonical JSON, its
/// fields in the order of their names, compact (what a `serde_json::Value` object of them prints).
/// `actor` and `action` come as JSON texts ([`json_text`]), `detail` as its JSON. The one
/// definition of the canonical form: sealing, the store's sealing and verifying all hash here.
fn chain_hash(
    prev: &str,
    seq: u64,
    time_ms: u64,
    actor: &str,
    action: &str,
    detail: &str,
) -> String {
    let canonical = format!(
        r#"{{"action":{action},"actor":{actor},"detail":{detail},"seq":{seq},"time_ms":{time_ms}}}"#
    );
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(canonical.as_bytes());
    hex::encode(h.finalize())
}

fn digest(
    prev: &str,
    seq: u64,
    time_ms: u64,
    actor: &str,
    action: &str,
    detail: &serde_json::Value,
) -> String {
    chain_hash(
        prev,
        seq,
        time_ms,
        &json_text(actor),
        &json_text(action),
        &detail.to_string(),
    )
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

/// [`seal`], for the store: the entry's sequence number, its hash, and its stored JSON (what
/// `serde_json` writes for the [`AuditEntry`]), the detail printed once for both the hash and the
/// record, and no entry built only to be dropped. A batch seals tens of thousands at once.
pub fn seal_stored(
    draft: &RawDraft,
    prev_seq: u64,
    prev_hash: &str,
    time_ms: u64,
) -> (u64, String, Vec<u8>) {
    let seq = prev_seq + 1;
    let (actor, action) = (json_text(&draft.actor), json_text(&draft.action));
    let detail = &draft.detail;
    let hash = chain_hash(prev_hash, seq, time_ms, &actor, &action, detail);
    // `AuditEntry`'s fields in their declared order (a previous hash read from a damaged store
    // may be any text: escaped like the rest).
    let prev = json_text(prev_hash);
    let stored = format!(
        r#"{{"seq":{seq},"time_ms":{time_ms},"actor":{actor},"action":{action},"detail":{detail},"prev":{prev},"hash":"{hash}"}}"#
    );
    (seq, hash, stored.into_bytes())
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
    #[error(
        "the log starts at entry {first}: entries 1 to {} are missing and no {PRUNE} entry in the chain says they were pruned (deleted)", first - 1
    )]
    Unvouched { first: u64 },
}

/// The action of the entry that records a prune; its detail says where the log now starts.
pub const PRUNE: &str = "audit.prune";
/// The actions of entries that may say where the log starts: a prune's, and a repair's or an
/// import's when the log they kept starts after 1 (its head was lost, and they say so).
const CHECKPOINTS: [&str; 3] = [PRUNE, "store.repair", "store.import"];

/// What a verified log holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verified {
    /// Entries checked.
    pub entries: u64,
    /// The first one's sequence number (after 1: the ones before were pruned); 0 when empty.
    pub first_seq: u64,
    /// The last one's, and its hash: where the next entry chains from. Kept elsewhere, they
    /// show later whether the log was cut at its end.
    pub last_seq: u64,
    pub last_hash: String,
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} entries", self.entries)?;
        if self.entries > 0 {
            write!(f, ", {} to {}", self.first_seq, self.last_seq)?;
        }
        if self.first_seq > 1 {
            write!(f, " (1 to {} pruned, on record)", self.first_seq - 1)?;
        }
        if self.entries > 0 {
            write!(f, "; last hash {}", self.last_hash)?;
        }
        Ok(())
    }
}

/// The detail fields that make an entry a checkpoint: the log kept starts after `through_seq`,
/// whose hash was `through_hash`.
pub fn checkpoint(through_seq: u64, through_hash: &str) -> serde_json::Value {
    serde_json::json!({"through_seq": through_seq, "through_hash": through_hash})
}

/// Whether `e` records that the log starts after entry `seq` with hash `hash`.
fn vouches(e: &AuditEntry, seq: u64, hash: &str) -> bool {
    CHECKPOINTS.contains(&e.action.as_str())
        && e.detail["through_seq"].as_u64() == Some(seq)
        && e.detail["through_hash"].as_str() == Some(hash)
}

/// Checks a whole log, in the order it is stored.
pub fn verify<'a>(
    entries: impl IntoIterator<Item = &'a AuditEntry>,
) -> Result<Verified, AuditError> {
    let mut v = Verifier::default();
    for e in entries {
        v.push(e)?;
    }
    v.finish()
}

/// Checks a log one entry at a time, in the order it is stored: constant memory, whatever its
/// length.
#[derive(Debug, Clone)]
pub struct Verifier {
    prev: String,
    /// The last sequence number checked.
    n: u64,
    /// The first (0: none yet).
    first: u64,
    /// Where a pruned log starts, (seq, hash) of the last entry pruned, until an entry in the
    /// chain vouches for it.
    unvouched: Option<(u64, String)>,
}

impl Default for Verifier {
    fn default() -> Verifier {
        Verifier {
            prev: genesis(),
            n: 0,
            first: 0,
            unvouched: None,
        }
    }
}

impl Verifier {
    /// The next entry.
    pub fn push(&mut self, e: &AuditEntry) -> Result<(), AuditError> {
        if self.first == 0 {
            self.first = e.seq;
            if e.seq > 1 {
                // A pruned log: it starts where it says, on condition that a checkpoint in the
                // chain (checked by `finish`) says the same.
                self.n = e.seq - 1;
                self.prev.clone_from(&e.prev);
                self.unvouched = Some((self.n, e.prev.clone()));
            }
        }
        let expected = self.n.saturating_add(1);
        if e.seq != expected {
            return Err(AuditError::Sequence {
                position: self.entries() as usize,
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
        if let Some((seq, hash)) = &self.unvouched {
            if vouches(e, *seq, hash) {
                self.unvouched = None;
            }
        }
        self.prev.clone_from(&e.hash);
        self.n = expected;
        Ok(())
    }

    /// Entries that verified so far.
    pub fn entries(&self) -> u64 {
        if self.first == 0 || self.n < self.first {
            0
        } else {
            (self.n - self.first).saturating_add(1)
        }
    }

    /// Where a pruned log starts, (seq, hash) of the entry before its first, while no checkpoint
    /// has vouched for it.
    pub fn unvouched(&self) -> Option<(u64, &str)> {
        self.unvouched.as_ref().map(|(s, h)| (*s, h.as_str()))
    }

    /// The log as checked, once every entry is in: a log that starts after 1 verifies only if
    /// an entry in its chain recorded that start.
    pub fn finish(&self) -> Result<Verified, AuditError> {
        if self.unvouched.is_some() {
            return Err(AuditError::Unvouched { first: self.first });
        }
        Ok(Verified {
            entries: self.entries(),
            first_seq: self.first,
            last_seq: self.n,
            last_hash: self.prev.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Any JSON value, nested a few levels.
    fn any_value() -> impl proptest::strategy::Strategy<Value = serde_json::Value> {
        use proptest::prelude::*;
        use serde_json::Value;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON numbers are finite", |f| f.is_finite())
                .prop_map(Value::from),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(any::<String>(), inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest::proptest! {
        /// The hash is SHA-256 over the previous hash and the entry's fields as a `Value`
        /// object prints them (its keys in order): what every stored log was sealed with.
        #[test]
        fn the_chain_hash_is_over_the_entry_as_a_value_prints_it(
            actor in proptest::prelude::any::<String>(),
            action in proptest::prelude::any::<String>(),
            detail in any_value(),
            seq in proptest::prelude::any::<u64>(),
            prev in proptest::prelude::any::<String>(),
            time_ms in proptest::prelude::any::<u64>(),
        ) {
            let body = serde_json::json!({
                "action": action, "actor": actor, "detail": detail, "seq": seq, "time_ms": time_ms,
            });
            let mut h = Sha256::new();
            h.update(prev.as_bytes());
            h.update(body.to_string().as_bytes());
            proptest::prop_assert_eq!(
                digest(&prev, seq, time_ms, &actor, &action, &detail),
                hex::encode(h.finalize())
            );
        }

        /// What the store writes for an entry is exactly the entry `seal` makes, serialized: the
        /// same hash, the same bytes, whatever the texts and the detail hold.
        #[test]
        fn a_stored_seal_is_the_sealed_entry_byte_for_byte(
            actor in proptest::prelude::any::<String>(),
            action in proptest::prelude::any::<String>(),
            detail in any_value(),
            prev_seq in 0u64..u64::MAX,
            prev in proptest::prelude::any::<String>(),
            time_ms in proptest::prelude::any::<u64>(),
        ) {
            let draft = AuditDraft { actor, action, detail };
            let (seq, hash, stored) =
                seal_stored(&RawDraft::from(draft.clone()), prev_seq, &prev, time_ms);
            let e = seal(draft, prev_seq, &prev, time_ms);
            proptest::prop_assert_eq!((seq, &hash), (e.seq, &e.hash));
            proptest::prop_assert_eq!(
                String::from_utf8(stored).unwrap(),
                serde_json::to_string(&e).unwrap()
            );
        }
    }

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
    fn the_canonical_form_is_the_one_chains_were_sealed_with() {
        // How entries were hashed before: a Value object of the fields, printed.
        let old = |prev: &str,
                   seq: u64,
                   t: u64,
                   actor: &str,
                   action: &str,
                   d: &serde_json::Value| {
            let body = serde_json::json!({"seq": seq, "time_ms": t, "actor": actor, "action": action, "detail": d});
            let mut h = Sha256::new();
            h.update(prev.as_bytes());
            h.update(body.to_string().as_bytes());
            hex::encode(h.finalize())
        };
        let details = [
            serde_json::json!(null),
            serde_json::json!({"id": 7, "rule": "dst 203.0.113.7/32 then discard", "z": [1, 2.5, "é\"\n"], "a": {"y": true, "b": null}}),
            serde_json::json!("a \u{1} string"),
            serde_json::json!([u64::MAX, -1, 1e300]),
        ];
        for d in &details {
            for (actor, action) in [("noc", "mitigation.create"), ("policy:p \"x\"", "ünïcode")] {
                assert_eq!(
                    digest(&genesis(), 42, 1_796_000_000_000, actor, action, d),
                    old(&genesis(), 42, 1_796_000_000_000, actor, action, d)
                );
            }
        }
    }

    #[test]
    fn an_untouched_chain_verifies() {
        let v = verify(&chain(5)).unwrap();
        assert_eq!((v.entries, v.first_seq, v.last_seq), (5, 1, 5));
        assert_eq!(verify(&chain(0)).unwrap().entries, 0);
    }

    /// Appends an entry to `c`.
    fn append(c: &mut Vec<AuditEntry>, action: &str, detail: serde_json::Value) {
        let (seq, prev) = c.last().map_or((0, genesis()), |e| (e.seq, e.hash.clone()));
        c.push(seal(
            AuditDraft::new("system", action, detail),
            seq,
            &prev,
            5000,
        ));
    }

    /// `c` with its first `n` entries pruned the way the store does it: removed, and an
    /// `audit.prune` entry naming the last one removed appended.
    fn pruned(mut c: Vec<AuditEntry>, n: usize) -> Vec<AuditEntry> {
        let last = c[n - 1].clone();
        let head = c.last().cloned().unwrap();
        c.drain(..n);
        c.push(seal(
            AuditDraft::new("system", PRUNE, checkpoint(last.seq, &last.hash)),
            head.seq,
            &head.hash,
            5000,
        ));
        c
    }

    #[test]
    fn a_pruned_log_verifies_from_its_checkpoint() {
        let c = pruned(chain(10), 4);
        let v = verify(&c).unwrap();
        assert_eq!((v.entries, v.first_seq, v.last_seq), (7, 5, 11));
        assert_eq!(
            v.to_string(),
            format!(
                "7 entries, 5 to 11 (1 to 4 pruned, on record); last hash {}",
                c[6].hash
            )
        );
        // Pruned again, past the first prune's own entry: the newer checkpoint vouches.
        let mut c = pruned(c, 7);
        append(&mut c, "mitigation.create", serde_json::json!({"id": 1}));
        let v = verify(&c).unwrap();
        assert_eq!((v.entries, v.first_seq, v.last_seq), (2, 12, 13));
        // Pruned to nothing but the checkpoint itself.
        let c = pruned(chain(3), 3);
        assert_eq!(verify(&c).unwrap().first_seq, 4);
    }

    #[test]
    fn a_head_removed_without_a_checkpoint_is_detected() {
        // The first entries deleted by hand: no prune entry vouches for the new start.
        let mut c = chain(6);
        c.drain(..2);
        assert_eq!(verify(&c), Err(AuditError::Unvouched { first: 3 }));
        // More deleted than the checkpoint says.
        let mut c = pruned(chain(10), 3);
        c.remove(0);
        assert_eq!(verify(&c), Err(AuditError::Unvouched { first: 5 }));
        // A checkpoint for another start, or with another hash, vouches for nothing.
        let mut c = chain(6);
        c.drain(..2);
        let prev = c[0].prev.clone();
        append(&mut c, PRUNE, checkpoint(1, &prev));
        assert_eq!(verify(&c), Err(AuditError::Unvouched { first: 3 }));
        let mut c = chain(6);
        c.drain(..2);
        append(&mut c, PRUNE, checkpoint(2, &genesis()));
        assert_eq!(verify(&c), Err(AuditError::Unvouched { first: 3 }));
        // The right fields under another action vouch for nothing either.
        let mut c = chain(6);
        c.drain(..2);
        let prev = c[0].prev.clone();
        append(&mut c, "mitigation.create", checkpoint(2, &prev));
        assert_eq!(verify(&c), Err(AuditError::Unvouched { first: 3 }));
        // A forged checkpoint inserted into the chain breaks it.
        let mut c = chain(6);
        let cut = c[1].clone();
        c.drain(..2);
        let forged = seal(
            AuditDraft::new("system", PRUNE, checkpoint(cut.seq, &cut.hash)),
            c[1].seq,
            &c[1].hash,
            5000,
        );
        c.insert(2, forged);
        assert!(verify(&c).is_err());
    }

    #[test]
    fn damage_after_a_prune_is_found_as_before() {
        let mut c = pruned(chain(10), 4);
        c[2].actor = "mallory".into();
        assert_eq!(verify(&c), Err(AuditError::Edited { seq: 7 }));
        let mut c = pruned(chain(10), 4);
        c.remove(3);
        assert!(matches!(
            verify(&c),
            Err(AuditError::Sequence {
                position: 3,
                seq: 9,
                expected: 8
            })
        ));
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
