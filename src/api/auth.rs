//! Who may do what: tokens, their scopes, and the caller a request authenticates as.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use ipnet::IpNet;
use serde::Deserialize;

use super::error::ApiError;
use crate::traffic::FastMap;

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
    buckets: std::sync::Mutex<FastMap<String, (f64, std::time::Instant)>>,
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
        // Looked up before it is inserted: no name copied per request.
        if !b.contains_key(name) {
            b.insert(name.to_string(), (burst, now));
        }
        let Some((level, last)) = b.get_mut(name) else {
            return Ok(());
        };
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

/// Most of the engine's time one node's reports may take, on average: a tenth of its one task.
pub const NODE_WORK_PER_SECOND: Duration = Duration::from_millis(100);
/// What a node may spend at once, before its average counts.
pub const NODE_WORK_BURST: Duration = Duration::from_millis(200);

/// What each node may ask of the engine: one report in flight (a second one is refused until the
/// first is judged, so one node's reports never queue in front of others'), and a budget of the
/// engine's time, spent by what each of its reports took to judge and refilled at
/// [`NODE_WORK_PER_SECOND`] up to [`NODE_WORK_BURST`]; a node in debt is refused until it is not.
/// Keyed by token name (bounded by the configuration, forgotten on reload with the token).
#[derive(Debug, Default)]
pub struct NodeTurns {
    gates: std::sync::Mutex<FastMap<String, Gate>>,
}

#[derive(Debug)]
struct Gate {
    busy: bool,
    /// Engine time this node may still spend, microseconds (negative: in debt).
    credit_us: i64,
    at: std::time::Instant,
}

/// Why a node's report must wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Its previous report is still being judged.
    InFlight,
    /// It spent its share of the engine's time; this long until it has some again.
    OverBudget(Duration),
}

impl std::fmt::Display for Wait {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Wait::InFlight => write!(
                f,
                "this node's previous report is still being judged: one at a time per node"
            ),
            Wait::OverBudget(d) => write!(
                f,
                "this node's reports took more than its share of detection ({} ms a second); retry in {} ms",
                NODE_WORK_PER_SECOND.as_millis(),
                d.as_millis()
            ),
        }
    }
}

impl NodeTurns {
    /// `node`'s turn for one report at `now`, or why it must wait.
    pub fn begin(self: &Arc<Self>, node: &str, now: std::time::Instant) -> Result<NodeTurn, Wait> {
        let per_us = NODE_WORK_PER_SECOND.as_micros() as i64;
        let burst = NODE_WORK_BURST.as_micros() as i64;
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        if !gates.contains_key(node) {
            gates.insert(
                node.to_string(),
                Gate {
                    busy: false,
                    credit_us: burst,
                    at: now,
                },
            );
        }
        let Some(g) = gates.get_mut(node) else {
            return Err(Wait::InFlight);
        };
        let refill = now.saturating_duration_since(g.at).as_micros() as i64 * per_us / 1_000_000;
        g.credit_us = g.credit_us.saturating_add(refill).min(burst);
        g.at = now;
        if g.busy {
            return Err(Wait::InFlight);
        }
        if g.credit_us < 0 {
            let us = (-g.credit_us).saturating_mul(1_000_000) / per_us.max(1);
            return Err(Wait::OverBudget(Duration::from_micros(us as u64)));
        }
        g.busy = true;
        Ok(NodeTurn {
            turns: self.clone(),
            node: node.to_string(),
            work: Duration::ZERO,
        })
    }

    fn end(&self, node: &str, work: Duration) {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(g) = gates.get_mut(node) {
            g.busy = false;
            g.credit_us = g
                .credit_us
                .saturating_sub(work.as_micros().min(i64::MAX as u128) as i64);
        }
    }

    /// Forgets tokens no longer configured (a reload).
    pub fn keep(&self, names: &[&str]) {
        let mut gates = self.gates.lock().unwrap_or_else(|e| e.into_inner());
        gates.retain(|k, _| names.contains(&k.as_str()));
    }
}

/// One node's report in flight: ends when dropped, charging the node what judging it took
/// (nothing if it was dropped unjudged).
#[derive(Debug)]
pub struct NodeTurn {
    turns: Arc<NodeTurns>,
    node: String,
    work: Duration,
}

impl crate::engine::Turn for NodeTurn {
    fn judged(mut self: Box<Self>, work: Duration) {
        self.work = work;
    }
}

impl Drop for NodeTurn {
    fn drop(&mut self) {
        self.turns.end(&self.node, self.work);
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

/// The configured tokens, found by the SHA-256 digest of their secret: a request costs one digest
/// however many tokens there are (a fleet has one per node), and what a lookup's time depends on is
/// the digest, which tells nothing of any secret.
#[derive(Debug, Default)]
pub struct TokenTable {
    by_digest: std::collections::HashMap<[u8; 32], Token>,
}

fn digest(secret: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(secret).into()
}

impl TokenTable {
    pub fn new(tokens: &[Token]) -> TokenTable {
        TokenTable {
            by_digest: tokens
                .iter()
                .map(|t| (digest(t.secret.as_bytes()), t.clone()))
                .collect(),
        }
    }

    /// The token whose secret is `secret`.
    pub fn find(&self, secret: &[u8]) -> Option<&Token> {
        self.by_digest.get(&digest(secret))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_node_has_one_report_in_flight_and_a_share_of_the_engine() {
        use crate::engine::Turn;
        let turns = Arc::new(NodeTurns::default());
        let t0 = Instant::now();
        let first = turns.begin("web1", t0).unwrap();
        // A second one while the first is judged: refused; another node is not held up.
        assert_eq!(turns.begin("web1", t0).unwrap_err(), Wait::InFlight);
        let other = turns.begin("web2", t0).unwrap();
        // Judged in 300 ms: 100 ms beyond the burst, a second of debt at 100 ms a second.
        Box::new(first).judged(Duration::from_millis(300));
        assert_eq!(
            turns.begin("web1", t0).unwrap_err(),
            Wait::OverBudget(Duration::from_secs(1))
        );
        let half = t0 + Duration::from_millis(500);
        assert_eq!(
            turns.begin("web1", half).unwrap_err(),
            Wait::OverBudget(Duration::from_millis(500))
        );
        let turn = turns.begin("web1", t0 + Duration::from_secs(1)).unwrap();
        // Dropped unjudged (the engine stopped): the node is free again and pays nothing.
        drop(turn);
        let turn = turns.begin("web1", t0 + Duration::from_secs(1)).unwrap();
        Box::new(turn).judged(Duration::from_micros(50));
        // Cheap reports go on for ever: a refill of 100 ms a second, 50 us each.
        let mut now = t0 + Duration::from_secs(1);
        for _ in 0..10_000 {
            now += Duration::from_millis(1);
            let t = turns.begin("web1", now).unwrap();
            Box::new(t).judged(Duration::from_micros(50));
        }
        // The credit never grows past the burst, however long a node was quiet.
        let later = now + Duration::from_secs(3600);
        let t = turns.begin("web1", later).unwrap();
        Box::new(t).judged(Duration::from_millis(250));
        assert!(matches!(
            turns.begin("web1", later),
            Err(Wait::OverBudget(_))
        ));
        drop(other);
        // Forgotten on reload when the token goes.
        turns.keep(&["web2"]);
        assert!(turns.begin("web1", later).is_ok(), "a new budget");
    }

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
