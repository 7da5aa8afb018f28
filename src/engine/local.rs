//! Node-local drops: what each node's probe is asked to drop with nftables, carried in the answer
//! to its reports, and what it says is in force.
//!
//! The table is the engine's; this module keeps it and tells what changed, for the attacks'
//! timelines and the audit log. A probe gets all its drops in every answer (none: remove any), so
//! the node converges whatever it missed.

use std::collections::{BTreeMap, HashMap};

use crate::telemetry::LocalDrop;

/// Drops wanted and drops applied, per node.
#[derive(Debug, Default)]
pub struct LocalDrops {
    /// Drops wanted, per node: drop id → (the drop, its attack).
    wanted: HashMap<String, BTreeMap<u64, (LocalDrop, u64)>>,
    /// Drop ids each node said were in force, last time.
    applied: HashMap<String, Vec<u64>>,
    next_id: u64,
}

/// What a node's report said about its drops.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Confirmed {
    /// (drop id, attack) newly in force.
    pub applied: Vec<(u64, u64)>,
    /// Attacks whose drops on this node could not be applied.
    pub failed: Vec<u64>,
}

impl LocalDrops {
    /// Ids start at `first` (a clock reading: ids from before a restart are not reused).
    pub fn new(first: u64) -> LocalDrops {
        LocalDrops {
            next_id: first,
            ..LocalDrops::default()
        }
    }

    /// The id the next drop gets.
    pub fn next_id(&self) -> u64 {
        self.next_id
    }

    /// Asks `node` for `drop` (its id from [`LocalDrops::next_id`]) on behalf of `attack`.
    pub fn add(&mut self, node: &str, drop: LocalDrop, attack: u64) {
        self.next_id = self.next_id.max(drop.id + 1);
        self.wanted
            .entry(node.to_string())
            .or_default()
            .insert(drop.id, (drop, attack));
    }

    pub fn remove(&mut self, node: &str, id: u64) {
        if let Some(m) = self.wanted.get_mut(node) {
            m.remove(&id);
        }
    }

    /// Every drop `node` should have in force.
    pub fn wanted(&self, node: &str) -> Vec<LocalDrop> {
        self.wanted
            .get(node)
            .map(|m| m.values().map(|(d, _)| d.clone()).collect())
            .unwrap_or_default()
    }

    /// Takes what `node` said is in force (and its error, if any).
    pub fn confirm(&mut self, node: &str, applied: &[u64], error: Option<&str>) -> Confirmed {
        let before = self.applied.get(node).cloned().unwrap_or_default();
        if before == applied && error.is_none() {
            return Confirmed::default();
        }
        let mine = self.wanted.get(node);
        let out = Confirmed {
            applied: applied
                .iter()
                .filter(|d| !before.contains(d))
                .filter_map(|d| mine.and_then(|m| m.get(d)).map(|(_, a)| (*d, *a)))
                .collect(),
            failed: match error {
                Some(_) => mine
                    .map(|m| m.values().map(|(_, a)| *a).collect())
                    .unwrap_or_default(),
                None => Vec::new(),
            },
        };
        self.applied.insert(node.to_string(), applied.to_vec());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drop(id: u64) -> LocalDrop {
        LocalDrop {
            id,
            dst: "203.0.113.7".parse().unwrap(),
            src: None,
            proto: Some(17),
            sports: vec![123],
            dports: Vec::new(),
            tcp_flags: None,
            fragment: false,
            rate_bytes: None,
        }
    }

    #[test]
    fn a_node_gets_its_drops_and_confirmations_are_told_once() {
        let mut t = LocalDrops::new(100);
        let id = t.next_id();
        t.add("web1", drop(id), 7);
        assert_eq!(t.next_id(), 101);
        assert_eq!(t.wanted("web1"), vec![drop(100)]);
        assert!(t.wanted("web2").is_empty());
        assert_eq!(t.confirm("web1", &[100], None).applied, vec![(100, 7)]);
        assert_eq!(t.confirm("web1", &[100], None), Confirmed::default());
        assert_eq!(t.confirm("web1", &[100], Some("nft: no")).failed, vec![7]);
        t.remove("web1", 100);
        assert!(t.wanted("web1").is_empty());
    }
}
