//! Node-local drops: the controller's answer to a report lists the drops it wants on this node;
//! the probe makes nftables hold exactly those, in its own table (`inet deflect`), and says in its
//! next report which are in force.
//!
//! The whole table is rewritten in one `nft -f -` transaction whenever the wanted set changes, so
//! the kernel never holds half of a change; an empty set deletes the table. The rules are built
//! here from structured fields ([`LocalDrop::nft`]), never taken as text from the network. Needs
//! CAP_NET_ADMIN (and the `nft` program); without them, the error is reported to the controller.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use tracing::{info, warn};

use crate::telemetry::LocalDrop;

/// The table deflect owns.
pub const TABLE: &str = "deflect";

/// The wanted drops, as the last answer said (`None` until an answer said anything).
pub type Wanted = Arc<Mutex<Option<Vec<LocalDrop>>>>;

/// The nft script that makes the table hold exactly `drops`.
pub fn script(drops: &[LocalDrop]) -> String {
    if drops.is_empty() {
        // `add` first, so that deleting never fails on a table that is not there.
        return format!("add table inet {TABLE}\ndelete table inet {TABLE}\n");
    }
    let mut s = format!(
        "add table inet {TABLE}\nflush table inet {TABLE}\n\
         add chain inet {TABLE} input {{ type filter hook input priority -150 ; policy accept ; }}\n"
    );
    for d in drops {
        s += &format!("add rule inet {TABLE} input {}\n", d.nft());
    }
    s
}

/// What is in force.
#[derive(Debug, Default)]
pub struct Applied {
    pub drops: Vec<LocalDrop>,
    pub error: Option<String>,
    /// The table was made to match an answer at least once (a start clears what a previous run
    /// may have left).
    synced: bool,
}

impl Applied {
    /// Brings nftables to `wanted` if it differs from what is in force.
    pub fn sync(&mut self, wanted: &Wanted) {
        let Some(want) = wanted.lock().ok().and_then(|w| w.clone()) else {
            return;
        };
        // Nothing to change; and an empty set that could not be applied (no nft, no
        // CAP_NET_ADMIN: the error was reported) is not retried every interval.
        if self.synced && want == self.drops && (self.error.is_none() || want.is_empty()) {
            return;
        }
        self.synced = true;
        match run(&script(&want)) {
            Ok(()) => {
                info!(drops = want.len(), "node-local drops applied");
                self.drops = want;
                self.error = None;
            }
            Err(e) => {
                if self.error.as_deref() != Some(e.as_str()) {
                    warn!("node-local drops not applied: {e}");
                }
                self.error = Some(e);
            }
        }
    }

    pub fn ids(&self) -> Vec<u64> {
        self.drops.iter().map(|d| d.id).collect()
    }
}

fn run(script: &str) -> Result<(), String> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run nft (install nftables): {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child.wait_with_output().map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop_ntp() -> LocalDrop {
        LocalDrop {
            id: 7,
            dst: "192.0.2.2".parse().unwrap(),
            src: None,
            proto: Some(17),
            sports: vec![123],
            dports: vec![],
            tcp_flags: None,
            fragment: false,
            rate_bytes: None,
        }
    }

    #[test]
    fn rules_from_fields() {
        assert_eq!(
            drop_ntp().nft(),
            "ip daddr 192.0.2.2 meta l4proto 17 th sport { 123 } counter drop comment \"deflect 7\""
        );
        let syn = LocalDrop {
            id: 8,
            dst: "2001:db8::2".parse().unwrap(),
            src: Some("2001:db8::66".parse().unwrap()),
            proto: Some(6),
            sports: vec![],
            dports: vec![80, 443],
            tcp_flags: Some((0x02, 0x10)),
            fragment: false,
            rate_bytes: Some(125_000),
        };
        assert_eq!(
            syn.nft(),
            "ip6 daddr 2001:db8::2 ip6 saddr 2001:db8::66 meta l4proto 6 th dport { 80, 443 } tcp flags & 0x12 == 0x02 limit rate over 125000 bytes/second counter drop comment \"deflect 8\""
        );
        let frag = LocalDrop {
            fragment: true,
            sports: vec![53],
            ..drop_ntp()
        };
        assert_eq!(
            frag.nft(),
            "ip daddr 192.0.2.2 ip frag-off & 0x1fff != 0 meta l4proto 17 counter drop comment \"deflect 7\""
        );
        assert!(script(&[]).ends_with("delete table inet deflect\n"));
        assert!(script(&[drop_ntp()]).contains("flush table inet deflect\n"));
    }
}
