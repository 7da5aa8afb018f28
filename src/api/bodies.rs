//! The bodies the API takes, and how each becomes a typed request at this edge: text parsed,
//! bounds checked, refusals as HTTP 400.

use std::time::Duration;

use deflect_bgp::flowspec::text::parse_actions;
use serde::{Deserialize, Serialize};

use crate::diag::parse_duration;
use crate::mitigation::{Amend, Order, Refusal};
use crate::route::{Kind, Target};

/// The body of `POST /api/v1/mitigations`, as JSON: text to be parsed into an [`Order`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateRequest {
    pub kind: Option<Kind>,
    /// FlowSpec: `MATCHES then ACTIONS`.
    pub rule: Option<String>,
    /// RTBH: the prefix; S/RTBH: the source (/32, /128); divert: the covering prefix.
    pub prefix: Option<String>,
    /// Divert: the scrubbing service's next hop.
    pub next_hop: Option<String>,
    /// Divert: communities (`ASN:VALUE`, `no-export`...) and large communities (`G:L1:L2`).
    pub communities: Option<Vec<String>>,
    pub large_communities: Option<Vec<String>>,
    /// `90s`, `10m`, `24h`...; the configured default when absent.
    pub ttl: Option<String>,
    pub peers: Option<Vec<String>>,
    pub reason: Option<String>,
}

/// The body of `POST /api/v1/mitigations/batch`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    /// Create bodies, at most [`MAX_BATCH_ITEMS`].
    pub mitigations: Vec<CreateRequest>,
    /// All or none (default: each item on its own).
    #[serde(default)]
    pub atomic: bool,
}

/// Most items in one batch, and the largest batch body (10,000 FlowSpec rules are about 1.5 MB).
pub const MAX_BATCH_ITEMS: usize = 10_000;
pub const MAX_BATCH_BODY: usize = 16 * 1024 * 1024;

impl BatchRequest {
    /// Each item's order, or why it cannot be one (with the item, for the audit log).
    pub fn items(&self, actor: &str) -> Result<Vec<crate::mitigation::BatchItem>, Refusal> {
        if self.mitigations.is_empty() {
            return Err(Refusal::Invalid("mitigations is empty".into()));
        }
        if self.mitigations.len() > MAX_BATCH_ITEMS {
            return Err(Refusal::Invalid(format!(
                "{} mitigations in one batch; at most {MAX_BATCH_ITEMS}",
                self.mitigations.len()
            )));
        }
        Ok(self
            .mitigations
            .iter()
            .map(|r| {
                r.order(actor)
                    .map_err(|e| (serde_json::to_value(r).unwrap_or_default(), e))
            })
            .collect())
    }
}

/// The body of `POST /api/v1/mitigations/withdraw`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    /// Which active mitigations: at least one of actor, reason, kind, prefix.
    pub filter: crate::mitigation::WithdrawFilter,
    pub reason: Option<String>,
}

/// Most communities a diversion carries, of each sort.
const MAX_COMMUNITIES: usize = 32;

impl CreateRequest {
    /// The order it asks for on behalf of `actor`, or why it cannot be one (HTTP 400).
    pub fn order(&self, actor: &str) -> Result<Order, Refusal> {
        let invalid = |s: String| Err(Refusal::Invalid(s));
        let kind = self.kind.ok_or_else(|| {
            Refusal::Invalid("kind is missing: flowspec, rtbh, source-rtbh or divert".into())
        })?;
        let a = if kind == Kind::Rtbh { "an" } else { "a" };
        let attrs = self.next_hop.is_some()
            || self.communities.is_some()
            || self.large_communities.is_some();
        if attrs && kind != Kind::Divert {
            return invalid(format!(
                "{a} {kind} mitigation takes no next_hop or communities (only divert does)"
            ));
        }
        let text = match (kind, &self.rule, &self.prefix) {
            (Kind::Flowspec, Some(rule), None) => rule.clone(),
            (Kind::Flowspec, None, _) => {
                return invalid("a flowspec mitigation needs a rule".into());
            }
            (Kind::Flowspec, Some(_), Some(_)) => {
                return invalid("a flowspec mitigation takes a rule, not a prefix".into());
            }
            (_, _, None) => return invalid(format!("{a} {kind} mitigation needs a prefix")),
            (_, Some(_), Some(_)) => {
                return invalid(format!("{a} {kind} mitigation takes a prefix, not a rule"));
            }
            (Kind::Divert, None, Some(prefix)) => {
                let Some(nh) = &self.next_hop else {
                    return invalid(
                        "a divert mitigation needs next_hop (the scrubbing service's address)"
                            .into(),
                    );
                };
                let (c, l) = (
                    self.communities.as_deref().unwrap_or_default(),
                    self.large_communities.as_deref().unwrap_or_default(),
                );
                if c.len() > MAX_COMMUNITIES || l.len() > MAX_COMMUNITIES {
                    return invalid(format!(
                        "at most {MAX_COMMUNITIES} communities and {MAX_COMMUNITIES} large communities"
                    ));
                }
                // One word each: the text form below is the parser's.
                let word = |w: &str| !w.is_empty() && !w.contains(char::is_whitespace);
                if !word(prefix) || !word(nh) || !c.iter().chain(l).all(|w| word(w)) {
                    return invalid(
                        "prefix, next_hop and each community are single words without spaces"
                            .into(),
                    );
                }
                let mut t = format!("{prefix} next-hop {nh}");
                for x in c {
                    t += &format!(" community {x}");
                }
                for x in l {
                    t += &format!(" large-community {x}");
                }
                t
            }
            (_, None, Some(prefix)) => prefix.clone(),
        };
        let target = Target::parse(kind, &text).map_err(Refusal::Invalid)?;
        reason_within_bounds(self.reason.as_deref())?;
        Ok(Order {
            target,
            ttl: self.ttl.as_deref().map(ttl).transpose()?,
            peers: self.peers.clone().unwrap_or_default(),
            reason: self.reason.clone().unwrap_or_default(),
            actor: actor.to_string(),
        })
    }
}

/// Longest reason a mitigation keeps (it is stored with it, and audited).
const MAX_REASON: usize = 1024;

pub fn reason_within_bounds(reason: Option<&str>) -> Result<(), Refusal> {
    match reason {
        Some(r) if r.len() > MAX_REASON => Err(Refusal::Invalid(format!(
            "reason is {} bytes long; at most {MAX_REASON}",
            r.len()
        ))),
        _ => Ok(()),
    }
}

/// A lifetime as the API takes it.
pub fn ttl(text: &str) -> Result<Duration, Refusal> {
    parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Refusal::Invalid(format!(
                "ttl {text:?} is not a duration; write e.g. 90s, 10m or 24h"
            ))
        })
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    pub ttl: String,
}

/// The body of `PATCH /api/v1/mitigations/{id}`: new actions for a FlowSpec mitigation.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AmendRequest {
    /// In rule syntax: `discard`, `rate-bytes 125000`...
    pub actions: String,
    pub ttl: Option<String>,
    pub reason: Option<String>,
}

impl AmendRequest {
    /// The change it asks for on behalf of `actor`, or why it cannot be one (HTTP 400).
    pub fn amend(&self, actor: &str) -> Result<Amend, Refusal> {
        let actions =
            parse_actions(&self.actions).map_err(|e| Refusal::Invalid(format!("actions: {e}")))?;
        reason_within_bounds(self.reason.as_deref())?;
        Ok(Amend {
            actions,
            ttl: self.ttl.as_deref().map(ttl).transpose()?,
            reason: self
                .reason
                .clone()
                .unwrap_or_else(|| "changed by hand".into()),
            actor: actor.to_string(),
        })
    }
}
