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
    /// RTBH: the prefix.
    pub prefix: Option<String>,
    /// `90s`, `10m`, `24h`...; the configured default when absent.
    pub ttl: Option<String>,
    pub peers: Option<Vec<String>>,
    pub reason: Option<String>,
}

impl CreateRequest {
    /// The order it asks for on behalf of `actor`, or why it cannot be one (HTTP 400).
    pub fn order(&self, actor: &str) -> Result<Order, Refusal> {
        let kind = self
            .kind
            .ok_or_else(|| Refusal::Invalid("kind is missing: flowspec or rtbh".into()))?;
        let text = match (kind, &self.rule, &self.prefix) {
            (Kind::Flowspec, Some(rule), None) => rule,
            (Kind::Rtbh, None, Some(prefix)) => prefix,
            (Kind::Flowspec, None, _) => {
                return Err(Refusal::Invalid(
                    "a flowspec mitigation needs a rule".into(),
                ));
            }
            (Kind::Flowspec, Some(_), Some(_)) => {
                return Err(Refusal::Invalid(
                    "a flowspec mitigation takes a rule, not a prefix".into(),
                ));
            }
            (Kind::Rtbh, _, None) => {
                return Err(Refusal::Invalid("an rtbh mitigation needs a prefix".into()));
            }
            (Kind::Rtbh, Some(_), Some(_)) => {
                return Err(Refusal::Invalid(
                    "an rtbh mitigation takes a prefix, not a rule".into(),
                ));
            }
        };
        let target = Target::parse(kind, text).map_err(Refusal::Invalid)?;
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
