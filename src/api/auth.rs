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
