//! `api`: where the API listens, its body limit and its tokens.

use std::collections::BTreeSet;
use std::net::SocketAddr;

use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::api::{Scope, Token};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_body_limit")]
    pub max_body: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_api_listen(),
            tokens: Vec::new(),
            max_body: default_body_limit(),
        }
    }
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8179))
}

fn default_body_limit() -> usize {
    64 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who the token is: the actor in the audit log.
    pub name: Spanned<String>,
    /// The secret itself, or `env:NAME` to read it from the environment.
    pub token: Spanned<String>,
    pub scope: Scope,
}

/// Checks the tokens; one whose secret comes from an unset variable is left out (nobody can use it).
pub(super) fn tokens(api: &ApiConfig, err: &mut dyn FnMut(&Location, String)) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut names = BTreeSet::new();
    for t in &api.tokens {
        if !names.insert(t.name.value.clone()) {
            err(
                &t.name.referenced,
                format!(
                    "token name {:?} is used twice; names identify actors in the audit log",
                    t.name.value
                ),
            );
        }
        let secret = match t.token.value.strip_prefix("env:") {
            Some(var) => std::env::var(var).unwrap_or_default(),
            None => t.token.value.clone(),
        };
        if secret.is_empty() {
            // A token from an unset variable is left out: nobody can use it. Said so.
            tracing::warn!(
                token = %t.name.value,
                "API token left out: its value is empty (is its environment variable set?)"
            );
            continue;
        }
        if secret.len() < 16 {
            err(
                &t.token.referenced,
                "token is shorter than 16 characters; use a long random string".into(),
            );
        }
        tokens.push(Token {
            name: t.name.value.clone(),
            secret,
            scope: t.scope,
        });
    }
    tokens
}
