//! `deflect store check|export|repair|import`: a stopped daemon's state store, looked at and
//! mended record by record.
//!
//! - `check` reads every mitigation (its checksum verified), every audit entry (the chain
//!   verified) and the engine's memories, and says what it could not read; exit status 4 when
//!   anything is damaged.
//! - `export` writes the same as JSON (to stdout or `--out`): what `import` takes back.
//! - `repair` writes a new store from what is readable, with the audit log as far as it verifies
//!   and a `store.repair` entry naming what was lost; the damaged file is kept beside it.
//! - `import` makes a store from an export, in a directory that has none.
//!
//! The daemon holds the store's lock while it runs: these refuse to work beside it.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Subcommand;

use crate::clock::now_ms;
use crate::mitigation::store::{Scan, Store, StoreError};

#[derive(Debug, Subcommand)]
pub enum StoreCmd {
    /// Read every record and say what is damaged (exit 4 if anything is).
    Check {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Everything readable, as JSON (what `import` takes).
    Export {
        #[arg(long)]
        state_dir: PathBuf,
        /// Write to this file instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Rewrite the store from what is readable; the damaged file is kept beside it.
    Repair {
        #[arg(long)]
        state_dir: PathBuf,
    },
    /// Make a store from an export, in a state directory that has none.
    Import {
        #[arg(long)]
        state_dir: PathBuf,
        file: PathBuf,
    },
}

pub fn main(cmd: StoreCmd) -> ExitCode {
    match run(cmd) {
        Ok(code) => code,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "deflect store: {e}");
            ExitCode::from(1)
        }
    }
}

/// Opens a stopped daemon's store, or says why not.
fn open(dir: &std::path::Path) -> Result<Store, String> {
    Store::open_existing(dir).map_err(|e| match e {
        StoreError::Missing(_) | StoreError::Damaged(_) => e.to_string(),
        other => format!("{other} (is deflect still running on this state directory?)"),
    })
}

fn run(cmd: StoreCmd) -> Result<ExitCode, String> {
    let mut o = std::io::stdout().lock();
    match cmd {
        StoreCmd::Check { state_dir } => {
            let scan = open(&state_dir)?.scan();
            let now = now_ms();
            let active = scan.mitigations.iter().filter(|m| m.is_active(now)).count();
            let _ = writeln!(
                o,
                "mitigations: {} readable ({active} active); audit log: {} entries verify{}; memories: {}",
                scan.mitigations.len(),
                scan.audit.len(),
                if scan.audit_unverified.is_empty() {
                    String::new()
                } else {
                    format!(", {} more after the break", scan.audit_unverified.len())
                },
                scan.memories.len()
            );
            if scan.damaged.is_empty() {
                let _ = writeln!(o, "no damage found");
                return Ok(ExitCode::SUCCESS);
            }
            for d in &scan.damaged {
                let _ = writeln!(o, "damaged: {d}");
            }
            let _ = writeln!(
                o,
                "run `deflect store export` to keep what is readable, then `deflect store repair`"
            );
            Ok(ExitCode::from(4))
        }
        StoreCmd::Export { state_dir, out } => {
            let scan = open(&state_dir)?.scan();
            let json = serde_json::to_string_pretty(&scan).map_err(|e| e.to_string())?;
            match out {
                Some(path) => std::fs::write(&path, json + "\n")
                    .map_err(|e| format!("{}: {e}", path.display()))?,
                None => {
                    let _ = writeln!(o, "{json}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        StoreCmd::Repair { state_dir } => {
            let scan = open(&state_dir)?.scan();
            if scan.damaged.is_empty() {
                let _ = writeln!(o, "no damage found: nothing to repair");
                return Ok(ExitCode::SUCCESS);
            }
            let detail = serde_json::json!({
                "lost": scan.damaged,
                "mitigations_kept": scan.mitigations.len(),
                "audit_kept": scan.audit.len(),
                "audit_unverified_dropped": scan.audit_unverified.len(),
            });
            let path = Store::rebuild(&state_dir, &scan, "store.repair", detail, now_ms())
                .map_err(|e| e.to_string())?;
            let _ = writeln!(
                o,
                "repaired {}: {} mitigations and {} audit entries kept, {} damaged records left out (named in the audit log); the damaged file is beside it",
                path.display(),
                scan.mitigations.len(),
                scan.audit.len(),
                scan.damaged.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        StoreCmd::Import { state_dir, file } => {
            if state_dir.join("deflect.redb").exists() {
                return Err(format!(
                    "{} already holds a store: import only into a state directory without one",
                    state_dir.display()
                ));
            }
            let text =
                std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let scan: Scan =
                serde_json::from_str(&text).map_err(|e| format!("{}: {e}", file.display()))?;
            std::fs::create_dir_all(&state_dir)
                .map_err(|e| format!("{}: {e}", state_dir.display()))?;
            let detail = serde_json::json!({
                "from": file.display().to_string(),
                "mitigations": scan.mitigations.len(),
                "audit": scan.audit.len(),
            });
            let path = Store::rebuild(&state_dir, &scan, "store.import", detail, now_ms())
                .map_err(|e| e.to_string())?;
            let _ = writeln!(
                o,
                "imported {}: {} mitigations, {} audit entries",
                path.display(),
                scan.mitigations.len(),
                scan.audit.len()
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}
