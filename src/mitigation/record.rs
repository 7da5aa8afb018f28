//! What goes in and out of the mitigation set: the typed [`Order`] every source sends, the
//! [`Mitigation`] record it keeps and serves, and why a request was refused.

use std::net::IpAddr;
use std::time::Duration;

use deflect_bgp::flowspec::Action;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::route::{Divert, Kind, Target};

/// A mitigation as stored and served. (A field added here goes into [`Sorted`] too: the audit
/// log's canonical form of a record; a property test compares the two.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mitigation {
    pub id: u64,
    pub kind: Kind,
    /// FlowSpec: the rule and its actions in deflect's text syntax (canonical form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// RTBH: the prefix blackholed; S/RTBH: the source; divert: the covering prefix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<IpNet>,
    /// Divert: the scrubbing service's next hop (the other kinds take each peer's, or none).
    /// Absent from records of the other kinds, so records written before diversions existed
    /// read, and checksum, as they were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_hop: Option<IpAddr>,
    /// Divert: its communities (`ASN:VALUE`) and large communities (`G:L1:L2`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub communities: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub large_communities: Vec<String>,
    /// Peer names it goes to; empty means every eligible peer.
    #[serde(default)]
    pub peers: Vec<String>,
    pub reason: String,
    /// API token name, or `policy:NAME attack:ID`.
    pub actor: String,
    pub created_ms: u64,
    pub expires_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdrawn_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub withdraw_reason: Option<String>,
    /// Recorded under the global dry-run switch: never announced.
    #[serde(default)]
    pub dry_run: bool,
}

/// A record as the audit log's canonical JSON prints it (a `serde_json::Value` of it: the fields
/// in the order of their names), written without building the Value: a batch audits thousands.
#[derive(Serialize)]
struct Sorted<'a> {
    actor: &'a str,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    communities: &'a [String],
    created_ms: u64,
    dry_run: bool,
    expires_ms: u64,
    id: u64,
    kind: Kind,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    large_communities: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    next_hop: Option<IpAddr>,
    peers: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<IpNet>,
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    rule: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    withdraw_reason: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    withdrawn_ms: Option<u64>,
}

impl Mitigation {
    /// The record's canonical JSON: what `serde_json::to_value(self)` prints, byte for byte.
    pub fn canonical_json(&self) -> String {
        let s = Sorted {
            actor: &self.actor,
            communities: &self.communities,
            created_ms: self.created_ms,
            dry_run: self.dry_run,
            expires_ms: self.expires_ms,
            id: self.id,
            kind: self.kind,
            large_communities: &self.large_communities,
            next_hop: self.next_hop,
            peers: &self.peers,
            prefix: self.prefix,
            reason: &self.reason,
            rule: self.rule.as_deref(),
            withdraw_reason: self.withdraw_reason.as_deref(),
            withdrawn_ms: self.withdrawn_ms,
        };
        // Strings, numbers and addresses always serialize.
        serde_json::to_string(&s).unwrap_or_default()
    }

    pub fn is_active(&self, now: u64) -> bool {
        self.withdrawn_ms.is_none() && self.expires_ms > now
    }

    /// The record of `target`'s fields: `(rule, prefix, next_hop, communities, large)`.
    pub fn fields(target: &Target) -> TargetFields {
        match target {
            Target::Flowspec(r) => TargetFields {
                rule: Some(r.to_string()),
                ..TargetFields::default()
            },
            Target::Rtbh(p) | Target::SourceRtbh(p) => TargetFields {
                prefix: Some(*p),
                ..TargetFields::default()
            },
            Target::Divert(d) => TargetFields {
                prefix: Some(d.prefix),
                next_hop: Some(d.next_hop),
                communities: d.communities.iter().map(ToString::to_string).collect(),
                large_communities: d
                    .large_communities
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                ..TargetFields::default()
            },
        }
    }

    /// Its own target fields, as recorded (see [`Mitigation::fields`] for a target's).
    pub fn target_fields(&self) -> TargetFields {
        TargetFields {
            rule: self.rule.clone(),
            prefix: self.prefix,
            next_hop: self.next_hop,
            communities: self.communities.clone(),
            large_communities: self.large_communities.clone(),
        }
    }

    /// What it announces, read back from its record.
    pub fn target(&self) -> Result<Target, String> {
        let attrs = self.next_hop.is_some()
            || !self.communities.is_empty()
            || !self.large_communities.is_empty();
        match (self.kind, &self.rule, &self.prefix, attrs) {
            (Kind::Flowspec, Some(rule), None, false) => Target::parse(Kind::Flowspec, rule),
            (Kind::Rtbh | Kind::SourceRtbh, None, Some(p), false) => {
                Target::parse(self.kind, &p.to_string())
            }
            (Kind::Divert, None, Some(prefix), _) => {
                let d = Divert {
                    prefix: *prefix,
                    next_hop: self
                        .next_hop
                        .ok_or("a divert mitigation holds a next hop")?,
                    communities: self
                        .communities
                        .iter()
                        .map(|c| c.parse().map_err(|e| format!("community {c}: {e}")))
                        .collect::<Result<_, String>>()?,
                    large_communities: self
                        .large_communities
                        .iter()
                        .map(|c| c.parse().map_err(|e| format!("large community {c}: {e}")))
                        .collect::<Result<_, String>>()?,
                };
                d.check()?;
                Ok(Target::Divert(d))
            }
            (kind, _, _, _) => Err(format!(
                "a {kind} mitigation holds {}",
                match kind {
                    Kind::Flowspec => "a rule and nothing else",
                    Kind::Rtbh | Kind::SourceRtbh => "a prefix and nothing else",
                    Kind::Divert => "a prefix, a next hop and communities, and no rule",
                }
            )),
        }
    }
}

/// An order to the mitigation set: what to announce, for how long, to whom, why, and who asks.
/// The API builds one from its JSON body at its edge; a policy builds one from an attack.
#[derive(Debug, Clone, PartialEq)]
pub struct Order {
    pub target: Target,
    /// The configured default when `None`.
    pub ttl: Option<Duration>,
    /// Peer names; every eligible peer when empty.
    pub peers: Vec<String>,
    pub reason: String,
    /// Who asks: an API token's name, or `policy:NAME attack:ID`. The audit log's actor.
    pub actor: String,
}

/// A target as a record's fields (see [`Mitigation::fields`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TargetFields {
    pub rule: Option<String>,
    pub prefix: Option<IpNet>,
    pub next_hop: Option<IpAddr>,
    pub communities: Vec<String>,
    pub large_communities: Vec<String>,
}

impl Order {
    /// The order as the audit log records it (a refused one included).
    pub fn describe(&self) -> serde_json::Value {
        let f = Mitigation::fields(&self.target);
        serde_json::json!({
            "kind": self.target.kind(),
            "rule": f.rule,
            "prefix": f.prefix,
            "next_hop": f.next_hop,
            "communities": f.communities,
            "large_communities": f.large_communities,
            "ttl": self.ttl.map(|d| format!("{}s", d.as_secs())),
            "peers": self.peers,
            "reason": self.reason,
        })
    }
}

/// New actions for an active FlowSpec mitigation (its match stays: it is the rule's identity).
#[derive(Debug, Clone, PartialEq)]
pub struct Amend {
    pub actions: Vec<Action>,
    /// A new lifetime from now, if longer than what is left (the policy's, on escalation).
    pub ttl: Option<Duration>,
    pub reason: String,
    pub actor: String,
}

/// Why a request was not carried out. Each maps to one HTTP status in the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Malformed request (HTTP 400).
    #[error("{0}")]
    Invalid(String),
    /// A guardrail said no (HTTP 422).
    #[error("{0}")]
    Guardrail(String),
    #[error("no mitigation {0}")]
    NotFound(u64),
    /// HTTP 409.
    #[error("{0}")]
    Conflict(String),
    /// The store failed; nothing was changed (HTTP 503).
    #[error("{0}")]
    Store(String),
    /// An item of an atomic batch not made because item `cause` was refused (HTTP 409).
    #[error("not made: item {cause} of this atomic batch was refused")]
    NotMade { cause: usize },
}

/// What a create did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    New(Mitigation),
    /// The same rule was active: its lifetime was extended.
    Extended(Mitigation),
}

/// Which active mitigations a withdrawal by filter takes: all of the fields given must match,
/// and at least one must be given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawFilter {
    /// Made by this actor (a token's name, or `policy:NAME attack:ID`).
    pub actor: Option<String>,
    /// Whose reason contains this text.
    pub reason: Option<String>,
    pub kind: Option<Kind>,
    /// Whose destination (for S/RTBH, whose source) lies inside this prefix.
    pub prefix: Option<IpNet>,
}

impl WithdrawFilter {
    pub fn is_empty(&self) -> bool {
        *self == WithdrawFilter::default()
    }

    pub fn matches(&self, m: &Mitigation) -> bool {
        self.admits(&m.actor, &m.reason, m.kind, || m.target().ok())
    }

    /// [`WithdrawFilter::matches`] on a mitigation's parts: the set holds its active ones
    /// compact, and reads a target only for a filter by prefix.
    pub fn admits(
        &self,
        actor: &str,
        reason: &str,
        kind: Kind,
        target: impl FnOnce() -> Option<Target>,
    ) -> bool {
        let inside = |p: &IpNet| {
            target().is_some_and(|t| {
                t.destination()
                    .or_else(|| t.source())
                    .is_some_and(|d| p.contains(&d))
            })
        };
        self.actor.as_ref().is_none_or(|a| a == actor)
            && self
                .reason
                .as_ref()
                .is_none_or(|r| reason.contains(r.as_str()))
            && self.kind.is_none_or(|k| k == kind)
            && self.prefix.as_ref().is_none_or(inside)
    }
}

/// One item of a batch: an order, or why it could not be one (with the request as given, for
/// the audit log).
pub type BatchItem = Result<Order, (serde_json::Value, Refusal)>;

/// Filters for a list.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListFilter {
    pub kind: Option<Kind>,
    /// Only active ones (default), or all ever made.
    pub all: Option<bool>,
    pub actor: Option<String>,
    pub peer: Option<String>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn any_mitigation() -> impl Strategy<Value = Mitigation> {
        let text = || proptest::option::of(any::<String>());
        let texts = || proptest::collection::vec(any::<String>(), 0..3);
        let net = proptest::option::of(
            (any::<[u8; 4]>(), 0u8..=32).prop_map(|(a, l)| IpNet::new(IpAddr::from(a), l).unwrap()),
        );
        let addr = proptest::option::of(any::<[u8; 16]>().prop_map(IpAddr::from));
        (
            (
                any::<u64>(),
                proptest::sample::select(Kind::ALL.to_vec()),
                text(),
                net,
                addr,
            ),
            (texts(), texts(), texts(), any::<String>(), any::<String>()),
            (
                any::<u64>(),
                any::<u64>(),
                proptest::option::of(any::<u64>()),
                text(),
                any::<bool>(),
            ),
        )
            .prop_map(
                |(
                    (id, kind, rule, prefix, next_hop),
                    (communities, large_communities, peers, reason, actor),
                    (created_ms, expires_ms, withdrawn_ms, withdraw_reason, dry_run),
                )| Mitigation {
                    id,
                    kind,
                    rule,
                    prefix,
                    next_hop,
                    communities,
                    large_communities,
                    peers,
                    reason,
                    actor,
                    created_ms,
                    expires_ms,
                    withdrawn_ms,
                    withdraw_reason,
                    dry_run,
                },
            )
    }

    proptest! {
        /// The audit log's detail of a record, written straight, is what its Value prints.
        #[test]
        fn a_record_s_canonical_json_is_what_its_value_prints(m in any_mitigation()) {
            let v = serde_json::to_value(&m).unwrap();
            prop_assert_eq!(m.canonical_json(), v.to_string());
        }
    }
}
