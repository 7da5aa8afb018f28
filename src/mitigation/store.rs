//! The durable store: mitigations and the audit log, in one redb database (`state_dir/deflect.redb`).
//!
//! Why redb: an embedded, pure-Rust, ACID key-value store with copy-on-write B-trees; a commit returns
//! only once it is on disk (`Durability::Immediate`), and a crash at any moment leaves the last
//! committed state. No C to build, nothing to configure, one file.
//!
//! Every change is one transaction: the mitigation rows it touches and the audit entries that
//! describe it are committed together, so the log never disagrees with the state. The mitigation set
//! is the only writer; it calls [`Store::commit`] before it acknowledges anything.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

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
    #[error("state store holds an unreadable record {key} in {table}: {error}")]
    Corrupt {
        table: &'static str,
        key: u64,
        error: String,
    },
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
        let w = self.db.begin_write().map_err(db_err)?;
        let mut sealed = Vec::with_capacity(drafts.len());
        let (mut seq, mut hash) = self.audit_head.clone();
        {
            let mut t = w.open_table(MITIGATIONS).map_err(db)?;
            for m in mitigations {
                let json = serde_json::to_vec(m).map_err(|e| StoreError::Corrupt {
                    table: "mitigations",
                    key: m.id,
                    error: e.to_string(),
                })?;
                t.insert(m.id, json.as_slice()).map_err(db)?;
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
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(MITIGATIONS).map_err(db)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db)? {
            let (k, v) = row.map_err(db)?;
            let m: Mitigation =
                serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
                    table: "mitigations",
                    key: k.value(),
                    error: e.to_string(),
                })?;
            out.push(m);
        }
        Ok(out)
    }

    /// The memory table, at most [`MAX_MEMORIES`] entries.
    pub fn memories(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(MEMORY).map_err(db)?;
        let mut out = Vec::new();
        for row in t.iter().map_err(db)?.take(MAX_MEMORIES) {
            let (k, v) = row.map_err(db)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// One mitigation by id.
    pub fn mitigation(&self, id: u64) -> Result<Option<Mitigation>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(MITIGATIONS).map_err(db)?;
        let Some(v) = t.get(id).map_err(db)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                table: "mitigations",
                key: id,
                error: e.to_string(),
            })
    }

    /// Up to `limit` audit entries after sequence number `after`, in order.
    pub fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let r = self.db.begin_read().map_err(db_err)?;
        let t = r.open_table(AUDIT).map_err(db)?;
        let mut out = Vec::new();
        for row in t.range(after.saturating_add(1)..).map_err(db)?.take(limit) {
            let (k, v) = row.map_err(db)?;
            out.push(parse_entry(k.value(), v.value())?);
        }
        Ok(out)
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

fn parse_entry(key: u64, bytes: &[u8]) -> Result<AuditEntry, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        table: "audit",
        key,
        error: e.to_string(),
    })
}
