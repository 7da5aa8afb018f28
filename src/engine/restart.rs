//! What detection keeps across a restart beside the escalations' memories (`mod.rs`): its learned
//! baselines, in a snapshot file of their own ([`crate::detect::snapshot`]), and the attack ids
//! given so far, reserved in the store.
//!
//! Baselines: written every [`SAVE_EVERY`] and at shutdown, off the engine's task (one write in
//! flight at a time; a write still running when the next is due lets that one go by), atomically
//! (a temporary file, fsync, rename, fsync of the directory): a crash leaves the last whole
//! snapshot. Read once at start. A missing file is a first start; a damaged one is set aside as
//! `baselines.bin.bad` and detection starts cold, saying so.
//!
//! Attack ids: short and counting up, as mitigations' are. They must never be given twice, also
//! after a crash, since the audit log, alerts and the store's memories name attacks by id: ids
//! are reserved [`ID_BLOCK`] at a time in the store, before any of them is used, and a restart
//! goes on from the end of the last reservation (a crash skips what was reserved and not used; a
//! clean stop gives the unused part back).

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::Engine;
use crate::detect::snapshot;

/// How often the baselines are written.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

/// Attack ids reserved in the store at a time.
pub const ID_BLOCK: u64 = 1000;

/// The store's memory key of the end of the reserved attack ids (no target and vector key starts
/// with `#`).
pub const IDS_KEY: &str = "#attack-ids";

/// The engine's side of the snapshot file.
#[derive(Debug)]
pub struct Baselines {
    path: PathBuf,
    /// The write under way, if any.
    saving: Option<tokio::task::JoinHandle<()>>,
    last: Instant,
}

impl Baselines {
    pub fn new(path: PathBuf) -> Baselines {
        Baselines {
            path,
            saving: None,
            last: Instant::now(),
        }
    }
}

impl Engine {
    /// Reads the snapshot file, if there is one, into the detector.
    pub(super) async fn restore_baselines(&mut self, now: u64) {
        let Some(path) = self.baselines.as_ref().map(|b| b.path.clone()) else {
            return;
        };
        let t = Instant::now();
        let read = {
            let path = path.clone();
            tokio::task::spawn_blocking(move || std::fs::read(&path)).await
        };
        let bytes = match read {
            Ok(Ok(b)) => b,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return,
            Ok(Err(e)) => {
                warn!(path = %path.display(), "learned baselines not read, detection starts cold: {e}");
                return;
            }
            Err(e) => {
                warn!("learned baselines not read: {e}");
                return;
            }
        };
        match snapshot::decode(&bytes) {
            Ok(s) => {
                let age = now.saturating_sub(s.taken_ms) / 1000;
                let skipped = s.skipped;
                let r = self.detector.restore(s, now);
                self.metrics
                    .baselines_restored
                    .store((r.targets + r.prefixes) as u64, Ordering::Relaxed);
                info!(
                    targets = r.targets,
                    prefixes = r.prefixes,
                    idle = r.idle,
                    refused = r.refused,
                    skipped,
                    age_s = age,
                    took_ms = t.elapsed().as_millis() as u64,
                    "learned baselines restored: each address takes its own back with its first report"
                );
            }
            Err(e) => {
                let bad = path.with_extension("bin.bad");
                let kept = std::fs::rename(&path, &bad).is_ok();
                self.metrics
                    .baselines_unreadable
                    .fetch_add(1, Ordering::Relaxed);
                warn!(
                    path = %path.display(),
                    kept_as = %if kept { bad.display().to_string() } else { "-".into() },
                    "learned baselines unreadable, detection starts cold (warm-up as on a first start): {e}"
                );
            }
        }
    }

    /// Writes the snapshot when it is due (`force`: now, and waits for it: at shutdown).
    pub(super) async fn save_baselines(&mut self, now: u64, force: bool) {
        let Some(b) = self.baselines.as_mut() else {
            return;
        };
        if !force && b.last.elapsed() < SAVE_EVERY {
            return;
        }
        if let Some(h) = &b.saving {
            if !h.is_finished() && !force {
                return;
            }
        }
        if let Some(h) = b.saving.take() {
            let _ = h.await;
        }
        b.last = Instant::now();
        let t = Instant::now();
        let (bytes, entries) = self.detector.snapshot(now);
        let encode = t.elapsed();
        let path = b.path.clone();
        let metrics = self.metrics.clone();
        let len = bytes.len();
        let write = tokio::task::spawn_blocking(move || {
            let t = Instant::now();
            match write_atomically(&path, &bytes) {
                Ok(()) => {
                    metrics.baselines_saved.fetch_add(1, Ordering::Relaxed);
                    metrics
                        .baselines_bytes
                        .store(bytes.len() as u64, Ordering::Relaxed);
                    tracing::debug!(
                        entries,
                        bytes = bytes.len(),
                        encode_ms = encode.as_secs_f64() * 1000.0,
                        write_ms = t.elapsed().as_secs_f64() * 1000.0,
                        "learned baselines written"
                    );
                }
                Err(e) => {
                    metrics
                        .baselines_save_errors
                        .fetch_add(1, Ordering::Relaxed);
                    warn!(path = %path.display(), "learned baselines not written: {e}");
                }
            }
        });
        if force {
            let _ = write.await;
            info!(
                entries,
                bytes = len,
                "learned baselines written for the restart"
            );
        } else {
            b.saving = Some(write);
        }
    }

    /// Attack ids go on after the last reservation, and a first block is reserved before any is
    /// given. Without the store, ids go on from where they are, and a warning says so.
    pub(super) async fn restore_attack_ids(&mut self, stored: Option<&[u8]>) {
        if let Some(end) = stored.and_then(|v| serde_json::from_slice::<u64>(v).ok()) {
            self.detector.skip_attack_ids_to(end);
        }
        self.reserved_ids = 0;
        self.reserve_attack_ids().await;
    }

    /// At a clean stop, the reservation is cut back to the next id, so ids go on without a gap.
    pub(super) async fn release_attack_ids(&mut self) {
        let next = self.detector.next_attack_id();
        if next >= self.reserved_ids {
            return;
        }
        let value = serde_json::to_vec(&next).ok();
        if self
            .mitigations
            .remember(IDS_KEY.to_string(), value)
            .await
            .is_ok()
        {
            self.reserved_ids = next;
        }
    }

    /// Reserves the next block of attack ids when fewer than half a block is left. Called after
    /// each report is judged and before its events are acted on, so no id is named anywhere
    /// durable before its reservation is.
    pub(super) async fn reserve_attack_ids(&mut self) {
        let next = self.detector.next_attack_id();
        if next + ID_BLOCK / 2 <= self.reserved_ids {
            return;
        }
        let end = next + ID_BLOCK;
        let value = serde_json::to_vec(&end).ok();
        match self.mitigations.remember(IDS_KEY.to_string(), value).await {
            Ok(()) => self.reserved_ids = end,
            Err(e) => {
                warn!(
                    "attack ids not reserved in the store (a restart now may give one twice): {e}"
                )
            }
        }
    }
}

/// Writes `bytes` to `path` so that a crash leaves either the old file or the new one.
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("bin.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
