//! `api`: where the API listens, its limits and its tokens.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::api::{DEFAULT_TOP_TARGETS, Limits, MAX_TOP_TARGETS, Scope, Token};
use crate::diag::positive_duration;
use crate::route::no_host_bits;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_listen")]
    pub listen: Spanned<SocketAddr>,
    /// TLS: the server's certificate and key, and optionally the CA of the clients' certificates.
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    /// Plain HTTP on an address other than loopback: only when said (a lab, a trusted network).
    #[serde(default)]
    pub plain_http: Option<Spanned<bool>>,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_body_limit")]
    pub max_body: usize,
    /// Connections open at once; more are closed as they come.
    #[serde(default)]
    pub max_connections: Option<Spanned<usize>>,
    /// A request's headers (and an idle connection's next request) must arrive within this.
    #[serde(default)]
    pub header_timeout: Option<Spanned<String>>,
    /// A request must be done within this, its body read included.
    #[serde(default)]
    pub request_timeout: Option<Spanned<String>>,
    /// What `/metrics` shows of the traffic.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// `api.metrics`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// The busiest targets with series of their own (those under attack have them anyway).
    pub top_targets: Option<Spanned<usize>>,
}

/// Checks `api.metrics`: how many of the busiest targets have series of their own.
pub(super) fn top_targets(api: &ApiConfig, err: &mut dyn FnMut(&Location, String)) -> usize {
    match &api.metrics.top_targets {
        Some(n) if n.value > MAX_TOP_TARGETS => {
            err(
                &n.referenced,
                format!(
                    "api.metrics.top_targets {} is above {MAX_TOP_TARGETS}: each target is up to {} series \
                     in every scrape (targets under attack have theirs anyway); for more, ask \
                     /api/v1/targets?limit=N",
                    n.value,
                    crate::api::SERIES_PER_TARGET
                ),
            );
            MAX_TOP_TARGETS
        }
        Some(n) => n.value,
        None => DEFAULT_TOP_TARGETS,
    }
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_api_listen(),
            tls: None,
            plain_http: None,
            tokens: Vec::new(),
            max_body: default_body_limit(),
            max_connections: None,
            header_timeout: None,
            request_timeout: None,
            metrics: MetricsConfig::default(),
        }
    }
}

/// Checks the server's limits.
pub(super) fn limits(api: &ApiConfig, err: &mut dyn FnMut(&Location, String)) -> Limits {
    let mut l = Limits::default();
    if let Some(n) = &api.max_connections {
        if n.value == 0 {
            err(
                &n.referenced,
                "max_connections is at least 1 (the default is 1024)".into(),
            );
        }
        l.max_connections = n.value.max(1);
    }
    if let Some(d) = &api.header_timeout {
        if let Some(d) = positive_duration(d, "header_timeout", "10s", err) {
            l.header_timeout = d;
        }
    }
    if let Some(d) = &api.request_timeout {
        if let Some(d) = positive_duration(d, "request_timeout", "30s", err) {
            l.request_timeout = d;
        }
    }
    l
}

fn default_api_listen() -> Spanned<SocketAddr> {
    Spanned::new(
        SocketAddr::from(([127, 0, 0, 1], 8179)),
        Location::UNKNOWN,
        Location::UNKNOWN,
    )
}

/// `api.tls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, PEM, the server's own first.
    pub cert: Spanned<PathBuf>,
    /// Its private key, PEM.
    pub key: Spanned<PathBuf>,
    /// Every client must show a certificate from this CA (PEM).
    pub client_ca: Option<Spanned<PathBuf>>,
}

/// Checks TLS: its files are read now (a bad one is an error here, not at the first connection),
/// and an API on an address other than loopback either has TLS or says `plain_http: true`.
pub(super) fn tls(
    api: &ApiConfig,
    err: &mut dyn FnMut(&Location, String),
) -> Option<crate::api::tls::Files> {
    let plain = api.plain_http.as_ref().is_some_and(|p| p.value);
    let Some(t) = &api.tls else {
        if !plain && !api.listen.value.ip().is_loopback() {
            err(
                &api.listen.referenced,
                format!(
                    "api.listen {} is not a loopback address and api.tls is not set: tokens, \
                     reports and orders would cross the network in clear. Set api.tls (cert, \
                     key) or, on a network you trust (a lab), api.plain_http: true",
                    api.listen.value
                ),
            );
        }
        return None;
    };
    if let Some(p) = api.plain_http.as_ref().filter(|p| p.value) {
        err(
            &p.referenced,
            "api.plain_http and api.tls are both set: the API serves one or the other; remove one"
                .into(),
        );
    }
    let files = crate::api::tls::Files {
        cert: t.cert.value.clone(),
        key: t.key.value.clone(),
        client_ca: t.client_ca.as_ref().map(|c| c.value.clone()),
    };
    if let Err(e) = crate::api::tls::server_config(&files) {
        err(&t.cert.referenced, format!("api.tls: {e}"));
    }
    Some(files)
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
    /// A node token: the prefixes it may report on; reports on other addresses are dropped and
    /// counted. Without it, a node may report on any protected address.
    pub serves: Option<Spanned<Vec<Spanned<IpNet>>>>,
    /// Requests per second it may make (bursts of twice that); by scope when absent.
    pub rate: Option<Spanned<u32>>,
}

/// Checks the tokens; one whose secret comes from an unset variable is left out (nobody can use it).
pub(super) fn tokens(api: &ApiConfig, err: &mut dyn FnMut(&Location, String)) -> Vec<Token> {
    let mut tokens: Vec<Token> = Vec::new();
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
        if let Some(other) = tokens.iter().find(|o| o.secret == secret) {
            err(
                &t.token.referenced,
                format!(
                    "token {:?} has the same value as token {:?}: a token says who is calling, so each needs its own",
                    t.name.value, other.name
                ),
            );
        }
        let serves = match (&t.serves, t.scope) {
            (Some(s), Scope::Node) => {
                for n in &s.value {
                    if let Err(e) = no_host_bits(&n.value) {
                        err(&n.referenced, e);
                    }
                }
                Some(s.value.iter().map(|n| n.value.trunc()).collect())
            }
            (Some(s), _) => {
                err(
                    &s.referenced,
                    "serves bounds what a node reports; only a node token has it".into(),
                );
                None
            }
            (None, Scope::Node) => {
                // A node speaks for the addresses it serves; one that could speak for all is said
                // so in the file, not by leaving the list out.
                err(
                    &t.name.referenced,
                    format!(
                        "node token {:?} has no serves: list the prefixes its node may report on (serves: [203.0.113.7/32, ...]); serves: [0.0.0.0/0, ::/0] lets it report on every protected address",
                        t.name.value
                    ),
                );
                None
            }
            (None, _) => None,
        };
        let rate = match &t.rate {
            Some(r) if r.value == 0 => {
                err(
                    &r.referenced,
                    "rate is at least 1 request a second; remove the token to refuse it everything"
                        .into(),
                );
                1
            }
            Some(r) => r.value,
            None => t.scope.default_rate(),
        };
        tokens.push(Token {
            name: t.name.value.clone(),
            secret,
            scope: t.scope,
            serves,
            rate,
        });
    }
    tokens
}
