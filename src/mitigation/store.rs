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

use redb::{Database, ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit::{self, AuditDraft, AuditEntry, RawDraft};
use crate::mitigation::record::Mitigation;

const MITIGATIONS: TableDefinition<u64, &[u8]> = TableDefinition::new("mitigations");
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// Other tasks' state kept beside the mitigations (opaque to the store), by key.
const MEMORY: TableDefinition<&str, &[u8]> = TableDefinition::new("memory");

/// Most memories read back at start: a store that holds more was not written by deflect.
pub const MAX_MEMORIES: usize = 100_000;

/// Changes to the memory table in one commit: (key, value or `None` to remove).
pub type Memos = [(String, Option<Vec<u8>>)];

/// How long the store keeps what is over, and how much of it: audit entries and withdrawn
/// mitigations older than `keep`, or past the counts, are pruned, oldest first (see
/// [`Store::prune`]). Active mitigations are never pruned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Retention {
    pub keep: std::time::Duration,
    pub max_audit_entries: u64,
    pub max_withdrawn: u64,
}

impl Default for Retention {
    fn default() -> Retention {
        Retention {
            keep: std::time::Duration::from_secs(400 * 86_400),
            max_audit_entries: 2_000_000,
            max_withdrawn: 200_000,
        }
    }
}

/// Most rows one prune removes, and twice that many withdrawn-mitigation rows looked at: a prune is
/// one write transaction of the mitigation set's task, kept to a few milliseconds; what is left
/// goes in the next.
pub const PRUNE_BATCH: usize = 5_000;

/// What one prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub audit: u64,
    pub mitigations: u64,
    /// Some is left for the next prune.
    pub more: bool,
}

/// Reads the audit log beside the writer (a snapshot at the time of each call).
#[derive(Debug, Clone)]
pub struct AuditReader {
    db: Arc<Database>,
}

impl AuditReader {
    /// Verifies the whole chain, one entry at a time: memory stays constant however long it is.
    pub fn verify(&self) -> Result<Result<audit::Verified, audit::AuditError>, StoreError> {
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
            Ok(v.finish())
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
    /// Where the next prune looks for withdrawn mitigations (a mitigation id).
    prune_from: u64,
    /// Tests: how many of the next commits fail (a disk that refuses writes).
    #[cfg(test)]
    failing: Arc<std::sync::atomic::AtomicUsize>,
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
            prune_from: 0,
            #[cfg(test)]
            failing: Arc::default(),
        };
        if let Some(last) = s.audit_last()? {
            s.audit_head = (last.seq, last.hash);
        }
        Ok(s)
    }

    /// Tests: the switch that makes the next commits fail (set it to how many).
    #[cfg(test)]
    pub(crate) fn failing(&self) -> Arc<std::sync::atomic::AtomicUsize> {
        self.failing.clone()
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
    /// audit log, in one durable transaction. Returns the last audit entry's sequence number.
    pub fn commit<D: Into<RawDraft>>(
        &mut self,
        mitigations: &[&Mitigation],
        memos: &Memos,
        drafts: Vec<D>,
        time_ms: u64,
    ) -> Result<u64, StoreError> {
        guarded(|| self.commit_unguarded(mitigations, memos, drafts, time_ms))
    }

    fn commit_unguarded<D: Into<RawDraft>>(
        &mut self,
        mitigations: &[&Mitigation],
        memos: &Memos,
        drafts: Vec<D>,
        time_ms: u64,
    ) -> Result<u64, StoreError> {
        #[cfg(test)]
        {
            use std::sync::atomic::Ordering::Relaxed;
            if self
                .failing
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::Damaged("a write refused by the test".into()));
            }
        }
        let w = self.db.begin_write().map_err(db_err)?;
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
                let (s, h, json) = audit::seal_stored(&d.into(), seq, &hash, time_ms);
                a.insert(s, json.as_slice()).map_err(db)?;
                (seq, hash) = (s, h);
            }
        }
        w.commit().map_err(db)?;
        self.audit_head = (seq, hash);
        Ok(seq)
    }

    /// Removes, in one transaction, audit entries and withdrawn mitigations past `r` at `now`
    /// (`active`: how many stored mitigations are active), at most [`PRUNE_BATCH`] of each,
    /// oldest first, and seals an [`audit::PRUNE`] entry saying what went and where the log now
    /// starts: the checkpoint that keeps the chain verifiable. The last audit entry and the
    /// mitigation with the highest id (the next id follows it) always stay.
    pub fn prune(&mut self, r: &Retention, now: u64, active: u64) -> Result<Pruned, StoreError> {
        guarded(|| self.prune_unguarded(r, now, active))
    }

    fn prune_unguarded(
        &mut self,
        r: &Retention,
        now: u64,
        active: u64,
    ) -> Result<Pruned, StoreError> {
        let cutoff = now.saturating_sub(r.keep.as_millis() as u64);
        let w = self.db.begin_write().map_err(db_err)?;
        let mut done = Pruned::default();
        let (head_seq, head_hash) = self.audit_head.clone();
        let through;
        {
            // Audit entries, from the first: while too many, or too old.
            let mut a = w.open_table(AUDIT).map_err(db)?;
            let first = a
                .first()
                .map_err(db)?
                .map(|(k, v)| (k.value(), v.value().to_vec()));
            let mut start = match &first {
                Some((k, v)) if *k > 1 => (k - 1, parse_entry(*k, v)?.prev),
                _ => (0, audit::genesis()),
            };
            let mut count = first.as_ref().map_or(0, |(k, _)| head_seq + 1 - k);
            let mut gone = Vec::new();
            for row in a.range(..head_seq).map_err(db)?.take(PRUNE_BATCH + 1) {
                let (k, v) = row.map_err(db)?;
                let e = parse_entry(k.value(), v.value())?;
                if (count <= r.max_audit_entries && e.time_ms >= cutoff)
                    || gone.len() == PRUNE_BATCH
                {
                    done.more = gone.len() == PRUNE_BATCH;
                    break;
                }
                count -= 1;
                gone.push(e.seq);
                start = (e.seq, e.hash);
            }
            for seq in &gone {
                a.remove(seq).map_err(db)?;
            }
            done.audit = gone.len() as u64;
            through = start;

            // Withdrawn mitigations, from where the last prune stopped: while too many, or
            // withdrawn too long ago.
            let mut t = w.open_table(MITIGATIONS).map_err(db)?;
            let last_id = t.last().map_err(db)?.map_or(0, |(k, _)| k.value());
            let mut withdrawn = t.len().map_err(db)?.saturating_sub(active);
            let mut gone = Vec::new();
            let mut looked = 0;
            let mut next_from = 0;
            for row in t.range(self.prune_from..last_id).map_err(db)? {
                let (k, v) = row.map_err(db)?;
                looked += 1;
                if looked > 2 * PRUNE_BATCH || gone.len() == PRUNE_BATCH {
                    next_from = k.value();
                    break;
                }
                // A record that does not read is left for `deflect store check`.
                let Ok(m) = open_record(k.value(), v.value()) else {
                    continue;
                };
                let Some(at) = m.withdrawn_ms else { continue };
                if withdrawn > r.max_withdrawn || at < cutoff {
                    withdrawn -= 1;
                    gone.push(m.id);
                }
            }
            for id in &gone {
                t.remove(id).map_err(db)?;
            }
            done.mitigations = gone.len() as u64;
            done.more |= next_from != 0;
            self.prune_from = next_from;

            if done.audit + done.mitigations > 0 {
                let mut detail = audit::checkpoint(through.0, &through.1);
                detail["entries"] = done.audit.into();
                detail["mitigations"] = done.mitigations.into();
                detail["keep_days"] = (r.keep.as_secs() / 86_400).into();
                detail["max_audit_entries"] = r.max_audit_entries.into();
                detail["max_withdrawn"] = r.max_withdrawn.into();
                let e = audit::seal(
                    AuditDraft::new("system", audit::PRUNE, detail),
                    head_seq,
                    &head_hash,
                    now,
                );
                let json = serde_json::to_vec(&e).unwrap_or_default();
                a.insert(e.seq, json.as_slice()).map_err(db)?;
                self.audit_head = (e.seq, e.hash);
            }
        }
        if done.audit + done.mitigations > 0 {
            w.commit().map_err(db)?;
        } else {
            w.abort().map_err(db)?;
        }
        Ok(done)
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
            if let Err(e) = v.finish() {
                bad.push(format!("audit log: {e}"));
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
        // The log to keep must verify before anything is written. If its head is missing (not
        // pruned on record), the new entry says where the log now starts, and that it was lost.
        let mut v = audit::Verifier::default();
        for e in &scan.audit {
            v.push(e).map_err(|e| StoreError::Corrupt {
                table: "audit",
                key: 0,
                error: format!("the log to keep does not verify: {e}"),
            })?;
        }
        let mut detail = detail;
        if let (Some((seq, hash)), Some(d)) = (v.unvouched(), detail.as_object_mut()) {
            d.insert(
                "audit_head_lost".into(),
                format!("entries 1 to {seq}").into(),
            );
            d.insert("through_seq".into(), seq.into());
            d.insert("through_hash".into(), hash.into());
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
    pub fn audit_verify(&self) -> Result<Result<audit::Verified, audit::AuditError>, StoreError> {
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

    const DAY: u64 = 86_400_000;

    fn temp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("deflect-store-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn draft(i: u64) -> AuditDraft {
        AuditDraft::new("noc", "mitigation.create", serde_json::json!({"id": i}))
    }

    /// A mitigation `id`, withdrawn at `withdrawn` (or active).
    fn mitigation(id: u64, withdrawn: Option<u64>) -> Mitigation {
        let mut m = record();
        m.id = id;
        m.withdrawn_ms = withdrawn;
        m
    }

    /// Every audit entry as stored, in order.
    fn log(s: &Store) -> Vec<AuditEntry> {
        s.audit_page(0, usize::MAX).unwrap()
    }

    fn retention(days: u64, entries: u64, withdrawn: u64) -> Retention {
        Retention {
            keep: std::time::Duration::from_millis(days * DAY),
            max_audit_entries: entries,
            max_withdrawn: withdrawn,
        }
    }

    #[test]
    fn retention_prunes_the_oldest_in_batches_and_the_log_verifies_after_each() {
        let d = temp("prune-audit");
        let mut s = Store::open(&d).unwrap();
        let now = 1000 * DAY;
        // 12,000 entries from 500 days ago, 3,000 from 10 days ago.
        for chunk in 0..15u64 {
            let t = if chunk < 12 {
                now - 500 * DAY
            } else {
                now - 10 * DAY
            };
            let drafts = (0..1000).map(|i| draft(chunk * 1000 + i)).collect();
            s.commit(&[], &[], drafts, t).unwrap();
        }
        let r = retention(400, 1_000_000, 1_000_000);
        let mut rounds = Vec::new();
        loop {
            let p = s.prune(&r, now, 0).unwrap();
            rounds.push(p.audit);
            // After each batch the log verifies, from where the last batch stopped.
            let v = s.audit_verify().unwrap().unwrap();
            assert_eq!(v.first_seq, rounds.iter().sum::<u64>() + 1, "{rounds:?}");
            if !p.more {
                break;
            }
        }
        assert_eq!(rounds, [5000, 5000, 2000]);
        // Nothing left to prune: no entry, no transaction.
        let last = s.audit_last_seq();
        assert_eq!(s.prune(&r, now, 0).unwrap(), Pruned::default());
        assert_eq!(s.audit_last_seq(), last);
        // Each prune is on record with what went and where the log now starts.
        let l = log(&s);
        let prunes: Vec<&AuditEntry> = l.iter().filter(|e| e.action == audit::PRUNE).collect();
        assert_eq!(prunes.len(), 3);
        assert_eq!(prunes[2].detail["through_seq"], 12_000);
        assert_eq!(prunes[2].detail["entries"], 2000);
        assert_eq!(l[0].seq, 12_001);
        // Reopened: the chain goes on from its head, and still verifies.
        drop(s);
        let mut s = Store::open(&d).unwrap();
        s.commit(&[], &[], vec![draft(99)], now).unwrap();
        let v = s.audit_verify().unwrap().unwrap();
        assert_eq!((v.first_seq, v.entries), (12_001, 3_004));

        // By count: under the most kept, nothing goes; over it, the oldest, whatever their age.
        let r = retention(400, 10_000, 1_000_000);
        let p = s.prune(&r, now, 0).unwrap();
        assert_eq!(p, Pruned::default());
        let r = retention(400, 1_000, 1_000_000);
        let p = s.prune(&r, now, 0).unwrap();
        assert_eq!((p.audit, p.more), (2_004, false));
        let v = s.audit_verify().unwrap().unwrap();
        // 1,000 kept, and the entry that says so.
        assert_eq!(v.entries, 1_001);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn retention_prunes_withdrawn_mitigations_never_active_ones_nor_the_last_id() {
        let d = temp("prune-mitigations");
        let mut s = Store::open(&d).unwrap();
        let now = 1000 * DAY;
        // 1..=20 withdrawn 500 days ago, 21..=30 active, 31..=40 withdrawn yesterday, 41
        // withdrawn 500 days ago (the highest id).
        let mut all = Vec::new();
        for id in 1..=41u64 {
            let w = match id {
                1..=20 | 41 => Some(now - 500 * DAY),
                21..=30 => None,
                _ => Some(now - DAY),
            };
            all.push(mitigation(id, w));
        }
        let refs: Vec<&Mitigation> = all.iter().collect();
        s.commit(&refs, &[], vec![draft(0)], now - 600 * DAY)
            .unwrap();
        let p = s
            .prune(&retention(400, 1_000_000, 1_000_000), now, 10)
            .unwrap();
        assert_eq!(p.mitigations, 20);
        let ids: Vec<u64> = s.mitigations().unwrap().iter().map(|m| m.id).collect();
        assert_eq!(ids, (21..=41).collect::<Vec<_>>());
        // By count: the oldest ids first, down to the most kept; active ones are not counted.
        let p = s.prune(&retention(400, 1_000_000, 4), now, 10).unwrap();
        assert_eq!(p.mitigations, 7);
        let ids: Vec<u64> = s.mitigations().unwrap().iter().map(|m| m.id).collect();
        assert_eq!(
            ids,
            [21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 38, 39, 40, 41]
        );
        // The entries that say so, and the log verifies (the one entry older than `keep` went too).
        let l = log(&s);
        assert_eq!(l.iter().filter(|e| e.action == audit::PRUNE).count(), 2);
        assert!(s.audit_verify().unwrap().is_ok());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_log_whose_head_was_removed_by_hand_does_not_verify_and_a_repair_says_so() {
        let d = temp("head-removed");
        let mut s = Store::open(&d).unwrap();
        s.commit(&[], &[], (0..5).map(draft).collect(), 1000)
            .unwrap();
        s.tamper_audit(1, None).unwrap();
        s.tamper_audit(2, None).unwrap();
        assert_eq!(
            s.audit_verify().unwrap(),
            Err(audit::AuditError::Unvouched { first: 3 })
        );
        let scan = s.scan();
        assert!(
            scan.damaged
                .iter()
                .any(|l| l.contains("entries 1 to 2 are missing")),
            "{:?}",
            scan.damaged
        );
        drop(s);
        // The repaired log keeps 3..=5 and its repair entry names the loss and vouches for the
        // new start.
        Store::rebuild(&d, &scan, "store.repair", serde_json::json!({}), 2000).unwrap();
        let s = Store::open(&d).unwrap();
        let v = s.audit_verify().unwrap().unwrap();
        assert_eq!((v.first_seq, v.last_seq), (3, 6));
        let repair = s.audit_page(5, 1).unwrap().remove(0);
        assert_eq!(repair.detail["audit_head_lost"], "entries 1 to 2");
        let _ = std::fs::remove_dir_all(&d);
    }
}
