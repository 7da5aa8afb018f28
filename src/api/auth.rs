//! Who may do what: tokens, their scopes, and the caller a request authenticates as.

use std::net::IpAddr;
use std::sync::Arc;

use axum::http::StatusCode;
use ipnet::IpNet;
use serde::Deserialize;

use super::error::ApiError;

/// An API token's permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    /// A node probe: may only send telemetry, under the token's name.
    Node,
}

/// An API token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// Who the token is: the actor in the audit log.
    pub name: String,
    pub secret: String,
    pub scope: Scope,
    /// A node token: the addresses it may report on (`None`: any).
    pub serves: Option<Arc<[IpNet]>>,
    /// Requests per second it may make (bursts of twice that).
    pub rate: u32,
}

impl Scope {
    /// Requests per second a token of this scope may make unless its configuration says: room
    /// for automation that makes thousands of rules one request each (a write is one durable
    /// commit, about 2 ms), for dashboards, and for a probe reporting ten times a second; a
    /// runaway or stolen token is still bounded.
    pub fn default_rate(self) -> u32 {
        match self {
            Scope::Write => 500,
            Scope::Read => 200,
            Scope::Node => 50,
        }
    }
}

/// Per-token request budgets: a token bucket each, refilled at the token's rate, holding twice
/// that. Keyed by the token's name (the tokens are the configuration's, so the table is bounded).
#[derive(Debug, Default)]
pub struct RateLimits {
    buckets: std::sync::Mutex<std::collections::HashMap<String, (f64, std::time::Instant)>>,
}

impl RateLimits {
    /// Takes one request from `name`'s budget at `rate` a second; `Err(seconds to wait)` when
    /// it is spent.
    pub fn take(&self, name: &str, rate: u32, now: std::time::Instant) -> Result<(), u64> {
        let rate = f64::from(rate.max(1));
        let burst = rate * 2.0;
        let Ok(mut b) = self.buckets.lock() else {
            return Ok(());
        };
        let (level, last) = b.entry(name.to_string()).or_insert((burst, now));
        *level = (*level + now.saturating_duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *level >= 1.0 {
            *level -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - *level) / rate).ceil().max(1.0) as u64)
        }
    }

    /// Forgets tokens no longer configured (a reload).
    pub fn keep(&self, names: &[&str]) {
        if let Ok(mut b) = self.buckets.lock() {
            b.retain(|k, _| names.contains(&k.as_str()));
        }
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
    /// A node: the addresses it may report on (`None`: any).
    pub serves: Option<Arc<[IpNet]>>,
}

impl Caller {
    /// Whether this caller may speak for `addr`.
    pub fn serves(&self, addr: IpAddr) -> bool {
        self.serves
            .as_ref()
            .is_none_or(|nets| nets.iter().any(|n| n.contains(&addr)))
    }

    /// Whether this caller may speak for every address of `net`.
    pub fn serves_net(&self, net: ipnet::IpNet) -> bool {
        self.serves
            .as_ref()
            .is_none_or(|nets| nets.iter().any(|n| n.contains(&net)))
    }

    pub(super) fn must_write(&self) -> Result<(), ApiError> {
        match self.scope {
            Scope::Write => Ok(()),
            Scope::Read => Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("token {:?} may only read", self.name),
            )),
            Scope::Node => Err(self.node_only()),
        }
    }

    pub(super) fn must_read(&self) -> Result<(), ApiError> {
        match self.scope {
            Scope::Write | Scope::Read => Ok(()),
            Scope::Node => Err(self.node_only()),
        }
    }

    pub(super) fn node_only(&self) -> ApiError {
        ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "token {:?} is a node token: it may only send telemetry",
                self.name
            ),
        )
    }
}

/// Comparison of two secrets in time that tells nothing of either: their SHA-256 digests (of
/// equal length whatever the secrets) compared without an early exit.
pub(super) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_token_gets_a_burst_of_twice_its_rate_then_its_rate() {
        let l = RateLimits::default();
        let t0 = Instant::now();
        let ok = (0..30).filter(|_| l.take("noc", 10, t0).is_ok()).count();
        assert_eq!(ok, 20, "a burst of twice the rate");
        assert_eq!(l.take("noc", 10, t0), Err(1));
        // Another token has its own budget.
        assert!(l.take("grafana", 10, t0).is_ok());
        // A tenth of a second later: one more.
        let t1 = t0 + Duration::from_millis(100);
        assert!(l.take("noc", 10, t1).is_ok());
        assert!(l.take("noc", 10, t1).is_err());
        // Forgotten on reload when the token goes.
        l.keep(&["grafana"]);
        assert!(l.take("noc", 10, t1).is_ok(), "a new budget");
    }
}
