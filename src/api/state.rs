//! What the handlers share, and how a request's bearer token becomes its [`Caller`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::extract::FromRequestParts;
use axum::http::StatusCode;
use axum::http::header;
use axum::http::request::Parts;

use super::auth::{Caller, TokenTable};
use super::error::ApiError;
use crate::collector::SharedStats;
use crate::engine::EngineHandle;
use crate::mitigation::MitigationHandle;
use crate::pcap::Recorder;
use crate::peer::PeerHandle;

/// The API's own counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
    /// Addresses in reports that their node may not report on (dropped).
    pub telemetry_refused_targets: AtomicU64,
    /// Requests refused: their token's rate was spent.
    pub rate_limited: AtomicU64,
    /// Requests refused: a node token on a client certificate that does not name the node.
    pub node_certificate_refused: AtomicU64,
    /// Reports refused: their node's previous one was still being judged.
    pub telemetry_busy: AtomicU64,
    /// Reports refused: their node had spent its share of the engine's time.
    pub telemetry_over_budget: AtomicU64,
}

/// What handlers share. Tokens and peers are swapped on reload.
#[derive(Debug)]
pub struct ApiState {
    pub mitigations: MitigationHandle,
    pub engine: EngineHandle,
    pub recorder: Recorder,
    pub alerts: crate::alert::Alerter,
    /// The sFlow collector's counters, when it runs.
    pub sflow: Option<SharedStats>,
    /// The NetFlow/IPFIX collector's counters, when it runs.
    pub netflow: Option<crate::collector::netflow::SharedStats>,
    pub tokens: RwLock<TokenTable>,
    pub peers: RwLock<Vec<PeerHandle>>,
    pub started: Instant,
    pub metrics: ApiMetrics,
    /// Per-token request budgets.
    pub limits: super::auth::RateLimits,
    /// Per-node reports in flight and engine time.
    pub turns: Arc<super::auth::NodeTurns>,
    /// The HTTP server's counters (connections).
    pub server: std::sync::Arc<super::ServerMetrics>,
    /// The busiest targets `/metrics` shows (`api.metrics.top_targets`; swapped on reload).
    pub top_targets: AtomicUsize,
}

impl FromRequestParts<Arc<ApiState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<ApiState>,
    ) -> Result<Caller, ApiError> {
        let unauthorized = |m: &str| ApiError(StatusCode::UNAUTHORIZED, m.to_string());
        let value = parts
            .headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthorized("missing Authorization: Bearer TOKEN"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| unauthorized("Authorization must be `Bearer TOKEN`"))?;
        let tokens = state
            .tokens
            .read()
            .map_err(|_| unauthorized("token table unavailable"))?;
        let t = tokens
            .find(token.as_bytes())
            .ok_or_else(|| unauthorized("unknown token"))?;
        // Over TLS with client certificates, a node speaks only on its own certificate.
        if t.scope == super::Scope::Node {
            if let Some(cert) = parts.extensions.get::<Arc<super::tls::PeerCertificate>>() {
                if !cert.names(&t.name) {
                    state
                        .metrics
                        .node_certificate_refused
                        .fetch_add(1, Ordering::Relaxed);
                    return Err(ApiError(
                        StatusCode::FORBIDDEN,
                        format!(
                            "node token {:?} on a client certificate that names {:?}, not {:?}: a node's \
                             certificate must name it (a DNS name in its subject alternative names)",
                            t.name,
                            cert.dns_names(),
                            t.name
                        ),
                    ));
                }
            }
        }
        if let Err(wait) = state.limits.take(&t.name, t.rate, Instant::now()) {
            state.metrics.rate_limited.fetch_add(1, Ordering::Relaxed);
            return Err(ApiError(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "token {:?} is over its {} requests a second; retry in {wait} s",
                    t.name, t.rate
                ),
            ));
        }
        Ok(Caller {
            name: t.name.clone(),
            scope: t.scope,
            serves: t.serves.clone(),
        })
    }
}
