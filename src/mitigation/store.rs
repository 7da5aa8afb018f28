//! The durable store: mitigations and the audit log, in one redb database (`state_dir/deflect.redb`).
//!
//! Why redb: an embedded, pure-Rust, ACID key-value store with copy-on-write B-trees; a commit returns
//! only once it is on disk (`Durability::Immediate`), and a crash at any moment leaves the last
//! committed state. No C to build, nothing to configure, one file.
//!
//! Every change is one transaction: the mitigation rows it touches and the audit entries that
//! describe them are committed together, so the log never disagrees with the state. The mitigation set
//! is the only writer; it calls [`Store::commit`] before it acknowledges anything.
//!
//! Integrity: a mitigation is stored as its JSON, a zero byte and the SHA-256 of the JSON (JSON never
//! holds a raw zero byte, so records written before the checksum read as they are); audit entries are
//! covered by their hash chain. A record that fails its checksum, or does not parse, is refused with
//! its table and key. redb panics on some damage to its own pages: every call into it is guarded, and
//! a panic becomes [`StoreError::Damaged`], which says what to do. `deflect store check`, `export`,
//! `repair` and `import` ([`Store::scan`], [`Store::rebuild`]) work on a stopped daemon's store.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{self, AuditDraft, AuditEntry};
use crate::mitigation::record::Mitigation;

const MITIGATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("mitigations");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Other tasks' state kept beside the mitigations (opaque to the store), by key.
const MEMORY: TableDefinition<&str, &[u8]> = TableDefinition::new("memory");

/// Most memories read back at start: a store that holds more was not written by deflect.
pub const MAX_MEMORIES: usize = 100_000;

/// Changes to the memory table in one commit: (key, value or `None` to remove).
pub type Memos = [(String, Option<Vec<u8>>)];

/// Reads the audit log beside the writer (a snapshot at the time of each call).
#[derive(Debug, Clone)]
pub struct AuditReader {
    db: Arc<Database>,
}

impl AuditReader {
    /// Verifies the whole chain, one entry at a time: memory stays constant however long it is.
    pub fn verify(&self) -> Result<Result<u64, audit::AuditError>, StoreError> {
        guarded(|| {
            let r = self.db.begin_read().map_err(db_err)?;
            let t = r.open_table(AUDIT).map_err(db)?;
            let mut v = audit::Verifier::default();
            for row in t.iter().map_err(db)? {
                let (k, val) = row.map_err(db)?;
                if let Err(e) = v.push(&parse_entry(k.value(), val.value())?) {
                    return Ok(Err(e));
                }
            }
            Ok(Ok(v.entries()))
        })
    }
}

/// Store failures: deflect refuses the change rather than acknowledge it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store {path}: {source}")]
    Open {
        path: PathBuf,
        source: Box<redb::Error>,
    },
    #[error("state store: {0}")]
    Db(#[from] Box<redb::Error>),
    #[error("no state store at {0} (is this deflect's state_dir?)")]
    Missing(PathBuf),
    #[error(
        "state store holds an unreadable record {key} in {table}: {error}; stop deflect and run `deflect store check --state-dir DIR`, then `deflect store repair --state-dir DIR`"
    )]
    Corrupt {
        table: &'static str,
        key: u64,
        error: String,
    },
    #[error(
        "state store file is damaged ({0}); stop deflect and run `deflect store check --state-dir DIR`, then `deflect store repair --state-dir DIR` (the damaged file is kept beside the new one)"
    )]
    Damaged(String),
}

/// Runs `f`, a call into redb, turning a panic (redb's answer to some damaged pages) into
/// [`StoreError::Damaged`].
fn guarded<T>(f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic in the storage engine".into());
            Err(StoreError::Damaged(what))
        }
    }
}

/// Length of a mitigation record's trailer: a zero byte and a SHA-256.
const TRAILER: usize = 33;

/// A mitigation as stored: its JSON, a zero byte, the SHA-256 of the JSON.
fn seal_record(m: &Mitigation) -> Result<Vec<u8>, StoreError> {
    let mut v = serde_json::to_vec(m).map_err(|e| StoreError::Corrupt {
        table: "mitigations",
        key: m.id,
        error: e.to_string(),
    })?;
    let sum = Sha256::digest(&v);
    v.push(0);
    v.extend_from_slice(&sum);
    Ok(v)
}

/// A stored mitigation, its checksum verified (records from before checksums have none).
fn open_record(key: u64, bytes: &[u8]) -> Result<Mitigation, StoreError> {
    let corrupt = |error: String| StoreError::Corrupt {
        table: "mitigations",
        key,
        error,
    };
    let json = match bytes.len().checked_sub(TRAILER) {
        Some(at) if bytes[at] == 0 => {
            let (json, sum) = (&bytes[..at], &bytes[at + 1..]);
            if Sha256::digest(json).as_slice() != sum {
                return Err(corrupt(
                    "checksum mismatch: the record changed on disk".into(),
                ));
            }
            json
        }
        _ => bytes,
    };
    let m: Mitigation = serde_json::from_slice(json).map_err(|e| corrupt(e.to_string()))?;
    if m.id != key {
        return Err(corrupt(format!(
            "record of mitigation {} under key {key}",
            m.id
        )));
    }
    Ok(m)
}

/// Everything readable in a store, and what is not: for `deflect store check`, `export` and
/// `repair`, and what `import` reads back.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Scan {
    pub mitigations: Vec<Mitigation>,
    /// The audit log as far as it verifies.
    pub audit: Vec<AuditEntry>,
    /// Readable audit entries after the chain broke: kept for people, not for the chain.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audit_unverified: Vec<AuditEntry>,
    #[serde(default)]
    pub memories: Vec<(String, Vec<u8>)>,
    /// What could not be read, one line each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub damaged: Vec<String>,
}

fn db<E: Into<redb::Error>>(e: E) -> StoreError {
    StoreError::Db(Box::new(e.into()))
}

/// redb's page cache.
const CACHE_BYTES: usize = 1024 * 1024;

/// The open database.
#[derive(Debug)]
pub struct Store {
    db: Arc<Database>,
    path: PathBuf,
    /// The last audit entry's (seq, hash): where the next one chains from.
    audit_head: (u64, String),
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        guarded(|| Store::open_unguarded(dir))
    }

    fn open_unguarded(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("deflect.redb");
        let open_err = |e: redb::Error| StoreError::Open {
            path: path.clone(),
            source: Box::new(e),
        };
        std::fs::create_dir_all(dir).map_err(|e| open_err(redb::Error::Io(e)))?;
        // The store is written far more than read (reads happen at start and for audit pages), so a
        // small page cache is enough; redb's default (1 GiB) would keep every page ever written.
        let database = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(&path)
            .map_err(|e| open_err(e.into()))?;
        let w = database.begin_write().map_err(db_err)?;
        w.open_table(MITIGATIONS).map_err(db)?;
        w.open_table(AUDIT).map_err(db)?;
        w.open_table(MEMORY).map_err(db)?;
        w.commit().map_err(db)?;
        let mut s = Store {
            db: Arc::new(database),
            path,
            audit_head: (0, audit::genesis()),
        };
        if let Some(last) = s.audit_last()? {
            s.audit_head = (last.seq, last.hash);
        }
        Ok(s)
    }

    /// Opens the store in `dir` only if there is one: for tools that read a daemon's state, which
    /// must not create an empty store where there was none and report on it.
    pub fn open_existing(dir: &Path) -> Result<Store, StoreError> {
        let path = dir.join("deflect.redb");
        if !path.is_file() {
            return Err(StoreError::Missing(path));
        }
        Store::open(dir)
    }

    /// The sequence number of the last audit entry (0: none yet).
    pub fn audit_last_seq(&self) -> u64 {
        self.audit_head.0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes `mitigations` (inserted or replaced by id) and `memos`, and seals `drafts` into the
    /// audit log, in one durable transaction. Returns the sealed entries.
    pub fn commit(
        &mut self,
        mitigations: &[&Mitigation],
        memos: &Memos,
        drafts: Vec<AuditDraft>,
        time_ms: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        guarded(|| self.commit_unguarded(mitigations, memos, drafts, time_ms))
    }

    fn commit_unguarded(
        &mut self,
        mitigations: &[&Mitigation],
        memos: &Memos,
        drafts: Vec<AuditDraft>,
        time_ms: u64,
    ) -> Result<Vec<AuditEntry>, StoreError> {
        let w = self.db.begin_write().map_err(db_err)?;
        let mut sealed = Vec::with_capacity(drafts.len());
        let (mut seq, mut hash) = self.audit_head.clone();
        {
            let mut t = w.open_table(MITIGATIONS).map_err(db)?;
            for m in mitigations {
                t.insert(m.id, seal_record(m)?.as_slice()).map_err(db)?;
            }
            let mut mem = w.open_table(MEMORY).map_err(db)?;
            for (k, v) in memos {
                match v {
                    Some(v) => mem.insert(k.as_str(), v.as_slice()).map(drop),
                    None => mem.remove(k.as_str()).map(drop),
                }
                .map_err(db)?;
            }
            let mut a = w.open_table(AUDIT).map_err(db)?;
            for d in drafts {
                let e = audit::seal(d, seq, &hash, time_ms);
                let json = serde_json::to_vec(&e).unwrap_or_default();
                a.insert(e.seq, json.as_slice()).map_err(db)?;
                seq = e.seq;
                hash = e.hash.clone();
                sealed.push(e);
            }
        }
        w.commit().map_err(db)?;
        self.audit_head = (seq, hash);
        Ok(sealed)
    }

    /// Every mitigation ever stored (withdrawn ones included), by id.
    pub fn mitigations(&self) -> Result<Vec<Mitigation>, StoreError> {
        guarded(|| {
            let r = self.db.begin_read().map_err(db_err)?;
            let t = r.open_table(MITIGATIONS).map_err(db)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(db)? {
                let (k, v) = row.map_err(db)?;
                out.push(open_record(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    /// Everything readable, record by record, and what is not (see [`Scan`]).
    pub fn scan(&self) -> Scan {
        let mut scan = Scan::default();
        let mitigations = guarded(|| {
            let r = self.db.begin_read().map_err(db_err)?;
            let t = r.open_table(MITIGATIONS).map_err(db)?;
            let mut ok = Vec::new();
            let mut bad = Vec::new();
            for row in t.iter().map_err(db)? {
                match row {
                    Ok((k, v)) => match open_record(k.value(), v.value()) {
                        Ok(m) => ok.push(m),
                        Err(e) => bad.push(format!("mitigation {}: {}", k.value(), short(&e))),
                    },
                    Err(e) => {
                        bad.push(format!("mitigations table: {e}"));
                        break;
                    }
                }
            }
            Ok((ok, bad))
        });
        match mitigations {
            Ok((ok, bad)) => {
                scan.mitigations = ok;
                scan.damaged.extend(bad);
            }
            Err(e) => scan
                .damaged
                .push(format!("mitigations table: {}", short(&e))),
        }
        let audit = guarded(|| {
            let r = self.db.begin_read().map_err(db_err)?;
            let t = r.open_table(AUDIT).map_err(db)?;
            let (mut chained, mut rest, mut bad) = (Vec::new(), Vec::new(), Vec::new());
            let mut v = audit::Verifier::default();
            let mut broken = false;
            for row in t.iter().map_err(db)? {
                let e = match row {
                    Ok((k, val)) => match parse_entry(k.value(), val.value()) {
                        Ok(e) => e,
                        Err(e) => {
                            bad.push(format!("audit entry {}: {}", k.value(), short(&e)));
                            broken = true;
                            continue;
                        }
                    },
                    Err(e) => {
                        bad.push(format!("audit table: {e}"));
                        break;
                    }
                };
                if !broken {
                    match v.push(&e) {
                        Ok(()) => {
                            chained.push(e);
                            continue;
                        }
                        Err(err) => {
                            bad.push(format!("audit log: {err}"));
                            broken = true;
                        }
                    }
                }
                rest.push(e);
            }
            Ok((chained, rest, bad))
        });
        match audit {
            Ok((chained, rest, bad)) => {
                scan.audit = chained;
                scan.audit_unverified = rest;
                scan.damaged.extend(bad);
            }
            Err(e) => scan.damaged.push(format!("audit table: {}", short(&e))),
        }
        match self.memories() {
            Ok(m) => scan.memories = m,
            Err(e) => scan.damaged.push(format!("memory table: {}", short(&e))),
        }
        scan
    }

    /// Writes a new store in `dir` from `scan` (what a damaged store still had, or an export),
    /// with an audit entry `action` saying so, chained after the log kept. The file in place, if
    /// any, is kept beside as `deflect.redb.damaged-TIME`. Returns the new store's path.
    pub fn rebuild(
        dir: &Path,
        scan: &Scan,
        action: &str,
        detail: serde_json::Value,
        time_ms: u64,
    ) -> Result<PathBuf, StoreError> {
        let path = dir.join("deflect.redb");
        let fresh = dir.join("deflect.redb.new");
        let _ = std::fs::remove_file(&fresh);
        // The log to keep must verify before anything is written.
        let mut v = audit::Verifier::default();
        for e in &scan.audit {
            v.push(e).map_err(|e| StoreError::Corrupt {
                table: "audit",
                key: 0,
                error: format!("the log to keep does not verify: {e}"),
            })?;
        }
        guarded(|| {
            let database = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&fresh)
                .map_err(|e| StoreError::Open {
                    path: fresh.clone(),
                    source: Box::new(e.into()),
                })?;
            let w = database.begin_write().map_err(db_err)?;
            {
                let mut t = w.open_table(MITIGATIONS).map_err(db)?;
                for m in &scan.mitigations {
                    t.insert(m.id, seal_record(m)?.as_slice()).map_err(db)?;
                }
                let mut a = w.open_table(AUDIT).map_err(db)?;
                let (mut seq, mut hash) = (0, audit::genesis());
                for e in &scan.audit {
                    let json = serde_json::to_vec(e).unwrap_or_default();
                    a.insert(e.seq, json.as_slice()).map_err(db)?;
                    (seq, hash) = (e.seq, e.hash.clone());
                }
                let note = audit::seal(
                    AuditDraft::new("system", action, detail),
                    seq,
                    &hash,
                    time_ms,
                );
                let json = serde_json::to_vec(&note).unwrap_or_default();
                a.insert(note.seq, json.as_slice()).map_err(db)?;
                let mut mem = w.open_table(MEMORY).map_err(db)?;
                for (k, v) in &scan.memories {
                    mem.insert(k.as_str(), v.as_slice()).map_err(db)?;
                }
            }
            w.commit().map_err(db)?;
            Ok(())
        })?;
        let io = |e: std::io::Error| StoreError::Open {
            path: path.clone(),
            source: Box::new(redb::Error::Io(e)),
        };
        if path.exists() {
            std::fs::rename(&path, dir.join(format!("deflect.redb.damaged-{time_ms}")))
                .map_err(io)?;
        }
        std::fs::rename(&fresh, &path).map_err(io)?;
        Ok(path)
    }

    /// The memory table, at most [`MAX_MEMORIES`] entries.
    pub fn memories(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        guarded(|| {
            let r = self.db.begin_read().map_err(db_err)?;
            let t = r.open_table(MEMORY).map_err(db)?;
            let mut out = Vec::new();
            for row in t.iter().map_err(db)?.take(MAX_MEMORIES) {
                let (k, v) = row.map_err(db)?;
                out.push((k.value().to_string(), v.value().to_vec()));
            }
            Ok(out)
        })
    }

    /// One mitigation by id.
    pub fn mitigation(&self, id: u64) -> Result<Option<Mitigation>, StoreError> {
        guarded(|| {
            let r = self.db.begin_read().map_err(db_err)?;
            let t = r.open_table(MITIGATIONS).map_err(db)?;
            let Some(v) = t.get(id).map_err(db)? else {
                return Ok(None);
            };
            open_record(id, v.value()).map(Some)
        })
    }

    /// Up to `limit` audit entries after sequence number `after`, in order.
    pub fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        guarded(|| {
            let r = self.db.begin_read().map_err(db_err)?;
            let t = r.open_table(AUDIT).map_err(db)?;
            let mut out = Vec::new();
            for row in t.range(after.saturating_add(1)..).map_err(db)?.take(limit) {
                let (k, v) = row.map_err(db)?;
                out.push(parse_entry(k.value(), v.value())?);
            }
            Ok(out)
        })
    }

    fn audit_last(&self) -> Result<Option<AuditEntry>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(AUDIT).map_err(db)?;
        match t.last().map_err(db)? {
            Some((k, v)) => Ok(Some(parse_entry(k.value(), v.value())?)),
            None => Ok(None),
        }
    }

    /// Verifies the whole audit chain as stored (see [`AuditReader::verify`]).
    pub fn audit_verify(&self) -> Result<Result<u64, audit::AuditError>, StoreError> {
        self.audit_reader().verify()
    }

    /// A reader of the audit log for other threads: redb's read transactions run beside the
    /// writer, so a long read never holds up the mitigation set.
    pub fn audit_reader(&self) -> AuditReader {
        AuditReader {
            db: self.db.clone(),
        }
    }

    /// Rewrites one raw audit row: only for tests that tamper with the log on purpose.
    #[doc(hidden)]
    pub fn tamper_audit(&mut self, seq: u64, entry: Option<&AuditEntry>) -> Result<(), StoreError> {
        let w = self.db.begin_write().map_err(db_err)?;
        {
            let mut a = w.open_table(AUDIT).map_err(db)?;
            match entry {
                Some(e) => {
                    let json = serde_json::to_vec(e).unwrap_or_default();
                    a.insert(seq, json.as_slice()).map_err(db)?;
                }
                None => {
                    a.remove(seq).map_err(db)?;
                }
            }
        }
        w.commit().map_err(db)?;
        Ok(())
    }
}

fn db_err(e: redb::TransactionError) -> StoreError {
    db(e)
}

/// An error without the advice about what to run (the tools that scan print their own).
fn short(e: &StoreError) -> String {
    match e {
        StoreError::Corrupt { error, .. } => error.clone(),
        StoreError::Damaged(what) => format!("damaged ({what})"),
        other => other.to_string(),
    }
}

fn parse_entry(key: u64, bytes: &[u8]) -> Result<AuditEntry, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: "audit",
        key,
        error: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> Mitigation {
        serde_json::from_str(
            r#"{"id":7,"kind":"rtbh","prefix":"203.0.113.7/32","reason":"r","actor":"noc","created_ms":1,"expires_ms":2}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_record_is_checked_against_its_checksum_and_older_records_still_read() {
        let m = record();
        let sealed = seal_record(&m).unwrap();
        assert_eq!(open_record(7, &sealed).unwrap(), m);
        // Written before checksums: read as it is.
        let legacy = serde_json::to_vec(&m).unwrap();
        assert_eq!(open_record(7, &legacy).unwrap(), m);
        // Any one bit changed, in the JSON or in the trailer: refused, never another record.
        for i in 0..sealed.len() {
            for bit in 0..8 {
                let mut b = sealed.clone();
                b[i] ^= 1 << bit;
                match open_record(7, &b) {
                    Err(StoreError::Corrupt { key: 7, .. }) => {}
                    Ok(other) => panic!("byte {i} bit {bit}: read as {other:?}"),
                    Err(e) => panic!("byte {i} bit {bit}: {e}"),
                }
            }
        }
        // Under another key: refused.
        assert!(open_record(8, &sealed).is_err());
    }
}
