//! The HTTP API (axum), JSON under `/api/v1`, Prometheus text at `/metrics`.
//!
//! Handlers only translate: they authenticate the bearer token, validate the body, and ask the
//! mitigation set, which owns every decision. A write is answered only after the mitigation set
//! has made it durable. Errors are `{"error": "..."}` with the status decided in one place,
//! [`ApiError::into_response`].
//!
//! The OpenAPI document (`openapi.json` beside this file) is served at `/api/v1/openapi.json`; a test
//! checks that it lists exactly the routes in [`ROUTES`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use deflect_bgp::flowspec::text::parse_actions;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::collector::SharedStats;
use crate::diag::parse_duration;
use crate::engine::EngineHandle;
use crate::mitigation::{Amend, Created, ListFilter, MitigationHandle, Order, Refusal};
use crate::pcap::Recorder;
use crate::peer::PeerHandle;
use crate::route::{Kind, Target};
use crate::telemetry::Report;

/// Every route: (method, path). The router and the OpenAPI document both follow this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/health"),
    ("get", "/api/v1/mitigations"),
    ("post", "/api/v1/mitigations"),
    ("get", "/api/v1/mitigations/{id}"),
    ("patch", "/api/v1/mitigations/{id}"),
    ("delete", "/api/v1/mitigations/{id}"),
    ("post", "/api/v1/mitigations/{id}/extend"),
    ("get", "/api/v1/peers"),
    ("get", "/api/v1/audit"),
    ("get", "/api/v1/audit/verify"),
    ("post", "/api/v1/telemetry"),
    ("get", "/api/v1/attacks"),
    ("get", "/api/v1/attacks/{id}"),
    ("get", "/api/v1/attacks/{id}/pcap"),
    ("get", "/api/v1/pcaps"),
    ("get", "/api/v1/targets"),
    ("get", "/api/v1/targets/{addr}"),
    ("get", "/api/v1/nodes"),
    ("get", "/api/v1/policies"),
    ("get", "/api/v1/sflow"),
    ("get", "/api/v1/alerts"),
    ("get", "/api/v1/ioc"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/dashboard"),
    ("get", "/metrics"),
];

/// The OpenAPI 3 document.
pub const OPENAPI: &str = include_str!("openapi.json");

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
}

/// The API's own counters, for `/metrics`.
#[derive(Debug, Default)]
pub struct ApiMetrics {
    pub requests: AtomicU64,
    pub errors: AtomicU64,
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
    pub tokens: RwLock<Vec<Token>>,
    pub peers: RwLock<Vec<PeerHandle>>,
    pub started: Instant,
    pub metrics: ApiMetrics,
}

/// An API error: status and message.
#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.0,
            axum::Json(json!({"error": self.1, "status": self.0.as_u16()})),
        )
            .into_response()
    }
}

impl From<Refusal> for ApiError {
    fn from(r: Refusal) -> ApiError {
        let status = match &r {
            Refusal::Invalid(_) => StatusCode::BAD_REQUEST,
            Refusal::Guardrail(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Refusal::NotFound(_) => StatusCode::NOT_FOUND,
            Refusal::Conflict(_) => StatusCode::CONFLICT,
            Refusal::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        ApiError(status, r.to_string())
    }
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Caller {
    pub name: String,
    pub scope: Scope,
}

impl Caller {
    fn must_write(&self) -> Result<(), ApiError> {
        match self.scope {
            Scope::Write => Ok(()),
            Scope::Read => Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("token {:?} may only read", self.name),
            )),
            Scope::Node => Err(self.node_only()),
        }
    }

    fn must_read(&self) -> Result<(), ApiError> {
        match self.scope {
            Scope::Write | Scope::Read => Ok(()),
            Scope::Node => Err(self.node_only()),
        }
    }

    fn node_only(&self) -> ApiError {
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
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    let (x, y) = (Sha256::digest(a), Sha256::digest(b));
    x.iter()
        .zip(y.iter())
        .fold(0u8, |acc, (p, q)| acc | (p ^ q))
        == 0
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
        tokens
            .iter()
            .find(|t| same_secret(t.secret.as_bytes(), token.as_bytes()))
            .map(|t| Caller {
                name: t.name.clone(),
                scope: t.scope,
            })
            .ok_or_else(|| unauthorized("unknown token"))
    }
}

/// A JSON body: size-limited by the router, an object (serde would take a struct from an array,
/// field by position), unknown fields refused by the type.
fn body<T: for<'de> Deserialize<'de>>(b: Result<Bytes, BytesRejection>) -> Result<T, ApiError> {
    let b = b.map_err(|e| ApiError(e.status(), format!("request body: {}", e.body_text())))?;
    if b.iter().find(|c| !c.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "request body: expected a JSON object".into(),
        ));
    }
    serde_json::from_slice(&b)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("request body: {e}")))
}

pub fn router(state: Arc<ApiState>, max_body: usize) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/api/v1/mitigations", get(list).post(create))
        .route(
            "/api/v1/mitigations/{id}",
            get(show).patch(amend).delete(withdraw),
        )
        .route("/api/v1/mitigations/{id}/extend", post(extend))
        .route("/api/v1/peers", get(peers))
        .route("/api/v1/audit", get(audit))
        .route("/api/v1/audit/verify", get(audit_verify))
        .route("/api/v1/telemetry", post(telemetry))
        .route("/api/v1/attacks", get(attacks))
        .route("/api/v1/attacks/{id}", get(attack))
        .route("/api/v1/attacks/{id}/pcap", get(attack_pcap))
        .route("/api/v1/pcaps", get(pcaps))
        .route("/api/v1/targets", get(targets))
        .route("/api/v1/targets/{addr}", get(target))
        .route("/api/v1/nodes", get(nodes))
        .route("/api/v1/policies", get(policies))
        .route("/api/v1/sflow", get(sflow))
        .route("/api/v1/alerts", get(alerts))
        .route("/api/v1/ioc", get(ioc))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/dashboard", get(dashboard))
        .route(
            "/",
            get(|| async { axum::response::Redirect::to("/dashboard") }),
        )
        .route("/metrics", get(metrics))
        .fallback(|| async {
            ApiError(
                StatusCode::NOT_FOUND,
                "no such endpoint; see /api/v1/openapi.json".into(),
            )
        })
        .layer(axum::middleware::from_fn_with_state(state.clone(), count))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn count(
    State(s): State<Arc<ApiState>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    s.metrics.requests.fetch_add(1, Ordering::Relaxed);
    let r = next.run(req).await;
    if r.status().is_client_error() || r.status().is_server_error() {
        s.metrics.errors.fetch_add(1, Ordering::Relaxed);
    }
    r
}

async fn health(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    let peers = s.peers.read().map(|p| p.clone()).unwrap_or_default();
    let up = peers
        .iter()
        .filter(|p| p.status().state == deflect_bgp::fsm::State::Established)
        .count();
    axum::Json(json!({
        "status": "ok",
        "uptime_s": s.started.elapsed().as_secs(),
        "peers": peers.len(),
        "peers_established": up,
        "active_mitigations": s.mitigations.metrics.active.load(Ordering::Relaxed),
    }))
}

async fn list(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<ListFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    let Query(f) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok(axum::Json(s.mitigations.list(f).await?))
}

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

fn reason_within_bounds(reason: Option<&str>) -> Result<(), Refusal> {
    match reason {
        Some(r) if r.len() > MAX_REASON => Err(Refusal::Invalid(format!(
            "reason is {} bytes long; at most {MAX_REASON}",
            r.len()
        ))),
        _ => Ok(()),
    }
}

/// A lifetime as the API takes it.
fn ttl(text: &str) -> Result<std::time::Duration, Refusal> {
    parse_duration(text)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            Refusal::Invalid(format!(
                "ttl {text:?} is not a duration; write e.g. 90s, 10m or 24h"
            ))
        })
}

async fn create(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.must_write()?;
    let req: CreateRequest = body(b)?;
    let order = match req.order(&caller.name) {
        Ok(o) => o,
        Err(why) => {
            let what = serde_json::to_value(&req).unwrap_or_default();
            return Err(s.mitigations.refused(&caller.name, what, why).await.into());
        }
    };
    Ok(match s.mitigations.create(order).await? {
        Created::New(m) => {
            let mut r = (StatusCode::CREATED, axum::Json(&m)).into_response();
            if let Ok(v) = HeaderValue::from_str(&format!("/api/v1/mitigations/{}", m.id)) {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Created::Extended(m) => (StatusCode::OK, axum::Json(m)).into_response(),
    })
}

fn id_of(p: Result<Path<u64>, axum::extract::rejection::PathRejection>) -> Result<u64, ApiError> {
    p.map(|Path(id)| id)
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, "the id is a number".into()))
}

async fn show(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    p: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    Ok(axum::Json(s.mitigations.get(id_of(p)?).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WithdrawQuery {
    reason: Option<String>,
}

async fn withdraw(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    p: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    q: Result<Query<WithdrawQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_write()?;
    let id = id_of(p)?;
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    reason_within_bounds(q.reason.as_deref())?;
    let reason = q.reason.unwrap_or_else(|| "withdrawn by hand".into());
    Ok(axum::Json(
        s.mitigations.withdraw(id, &caller.name, &reason).await?,
    ))
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExtendRequest {
    pub ttl: String,
}

async fn extend(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    p: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_write()?;
    let id = id_of(p)?;
    let req: ExtendRequest = body(b)?;
    let ttl = match ttl(&req.ttl) {
        Ok(d) => d,
        Err(why) => {
            let what = json!({"extend": id, "ttl": req.ttl});
            return Err(s.mitigations.refused(&caller.name, what, why).await.into());
        }
    };
    Ok(axum::Json(
        s.mitigations.extend(id, ttl, &caller.name).await?,
    ))
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

async fn amend(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    p: Result<Path<u64>, axum::extract::rejection::PathRejection>,
    b: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_write()?;
    let id = id_of(p)?;
    let req: AmendRequest = body(b)?;
    let change = match req.amend(&caller.name) {
        Ok(a) => a,
        Err(why) => {
            let what = json!({"amend": id, "actions": req.actions});
            return Err(s.mitigations.refused(&caller.name, what, why).await.into());
        }
    };
    Ok(axum::Json(s.mitigations.amend(id, change).await?))
}

/// One peer as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct PeerView {
    pub name: String,
    pub address: String,
    pub remote_as: u32,
    pub state: String,
    pub uptime_s: Option<u64>,
    pub families: Vec<String>,
    pub routes_advertised: usize,
    pub routes_desired: usize,
    pub held_back: usize,
    pub announced: u64,
    pub withdrawn: u64,
    pub updates_received: u64,
    pub last_error: Option<String>,
}

pub fn peer_view(p: &PeerHandle) -> PeerView {
    let c = p.config();
    let s = p.status();
    PeerView {
        name: c.name.clone(),
        address: std::net::SocketAddr::new(c.remote, c.port).to_string(),
        remote_as: c.remote_as,
        state: s.state.to_string(),
        uptime_s: s
            .established_at
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .map(|d| d.as_secs()),
        families: s.families.iter().map(|f| f.name().to_string()).collect(),
        routes_advertised: s.advertised,
        routes_desired: s.desired,
        held_back: s.held_back,
        announced: s.rib.announced,
        withdrawn: s.rib.withdrawn,
        updates_received: s.updates_received,
        last_error: s.last_error,
    }
}

async fn peers(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    let peers = s.peers.read().map(|p| p.clone()).unwrap_or_default();
    Ok(axum::Json(peers.iter().map(peer_view).collect::<Vec<_>>()))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    after: Option<u64>,
    limit: Option<usize>,
    /// The last `limit` entries instead of those after `after`.
    last: Option<bool>,
}

async fn audit(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<AuditQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let after = if q.last.unwrap_or(false) {
        u64::MAX
    } else {
        q.after.unwrap_or(0)
    };
    let entries = s.mitigations.audit(after, limit).await?;
    let next = (entries.len() == limit)
        .then(|| entries.last().map(|e| e.seq))
        .flatten();
    Ok(axum::Json(json!({"entries": entries, "next_after": next})))
}

async fn audit_verify(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    let n = s.mitigations.audit_verify().await?;
    Ok(axum::Json(json!({"ok": true, "entries": n})))
}

/// `POST /api/v1/telemetry`: one probe report. The node is the token's name.
async fn telemetry(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    match caller.scope {
        Scope::Node => {}
        Scope::Read => {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!("token {:?} may only read", caller.name),
            ));
        }
        // A node speaks for itself under its own token; an operator's token is not a node.
        Scope::Write => {
            return Err(ApiError(
                StatusCode::FORBIDDEN,
                format!(
                    "token {:?} is not a node token: reports come from probes with scope node",
                    caller.name
                ),
            ));
        }
    }
    let mut report: Report = body(b)?;
    report
        .validate()
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    // Raw samples go to the captures; they are not detection's business.
    for p in std::mem::take(&mut report.packets) {
        let Ok(data) = hex::decode(&p.data) else {
            continue;
        };
        if let Some(info) = crate::traffic::packet::parse(&data) {
            if s.recorder.wants(info.dst) {
                s.recorder.offer(crate::pcap::Frame {
                    dst: info.dst,
                    time: std::time::UNIX_EPOCH + std::time::Duration::from_millis(p.time_ms),
                    orig_len: p.orig_len,
                    data: Bytes::from(data),
                });
            }
        }
    }
    let mut ack = s.engine.report(&caller.name, report).await.ok_or_else(|| {
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "deflect is shutting down".into(),
        )
    })?;
    ack.capture = s.recorder.watching();
    Ok((StatusCode::ACCEPTED, axum::Json(ack)).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AttacksQuery {
    /// Only attacks under way (default), or every one remembered.
    all: Option<bool>,
}

async fn attacks(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<AttacksQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    Ok(axum::Json(s.engine.attacks(!q.all.unwrap_or(false)).await))
}

async fn attack(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    p: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    let id = id_of(p)?;
    match s.engine.attack(id).await {
        Some(a) => Ok(axum::Json(a)),
        None => Err(ApiError(StatusCode::NOT_FOUND, format!("no attack {id}"))),
    }
}

/// An attack's capture, as a pcap file.
async fn attack_pcap(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    p: Result<Path<u64>, axum::extract::rejection::PathRejection>,
) -> Result<Response, ApiError> {
    caller.must_read()?;
    let id = id_of(p)?;
    let data =
        s.recorder.read(id).await.ok_or_else(|| {
            ApiError(StatusCode::NOT_FOUND, format!("no capture for attack {id}"))
        })?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                "application/vnd.tcpdump.pcap".to_string(),
            ),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"attack-{id}.pcap\""),
            ),
        ],
        data,
    )
        .into_response())
}

async fn pcaps(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    Ok(axum::Json(s.recorder.list().await))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetsQuery {
    limit: Option<usize>,
}

async fn targets(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    q: Result<Query<TargetsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let limit = q.limit.unwrap_or(100).clamp(1, 10_000);
    Ok(axum::Json(s.engine.targets(limit).await))
}

async fn target(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    p: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    let text = p.map(|Path(a)| a).unwrap_or_default();
    let addr: std::net::IpAddr = text.parse().map_err(|_| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("{text:?} is not an IPv4 or IPv6 address"),
        )
    })?;
    match s.engine.target(addr).await {
        Some(t) => Ok(axum::Json(t)),
        None => Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no traffic reported to {addr}"),
        )),
    }
}

async fn nodes(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    Ok(axum::Json(s.engine.nodes().await))
}

async fn policies(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    match s.engine.policies().await {
        Some(p) => Ok(axum::Json(p)),
        None => Err(ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "deflect is shutting down".into(),
        )),
    }
}

async fn sflow(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    let stats = s
        .sflow
        .as_ref()
        .and_then(|st| st.lock().ok().map(|g| g.clone()))
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "the sFlow collector is off; configure sflow: to turn it on".into(),
            )
        })?;
    Ok(axum::Json(stats))
}

async fn alerts(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    Ok(axum::Json(s.alerts.recent()))
}

async fn ioc(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    Ok(axum::Json(s.engine.ioc().await))
}

/// The dashboard: one page, built into the binary; it signs in with an API token.
async fn dashboard() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' data:",
            ),
        ],
        DASHBOARD,
    )
}

/// The dashboard's page.
pub const DASHBOARD: &str = include_str!("dashboard.html");

async fn openapi() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

async fn metrics(State(s): State<Arc<ApiState>>) -> impl IntoResponse {
    let m = &s.mitigations.metrics;
    let mut out = String::new();
    let mut counter = |name: &str, help: &str, kind: &str, v: u64| {
        out.push_str(&format!(
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {v}\n"
        ));
    };
    counter(
        "deflect_mitigations_active",
        "Mitigations active now.",
        "gauge",
        m.active.load(Ordering::Relaxed),
    );
    counter(
        "deflect_mitigations_created_total",
        "Mitigations created.",
        "counter",
        m.created.load(Ordering::Relaxed),
    );
    counter(
        "deflect_mitigations_refused_total",
        "Requests refused by a guardrail or as invalid.",
        "counter",
        m.refused.load(Ordering::Relaxed),
    );
    counter(
        "deflect_mitigations_refusals_unaudited_total",
        "Refusals past the audit log's per-actor limit of 60 a minute: counted, not recorded.",
        "counter",
        m.refused_unaudited.load(Ordering::Relaxed),
    );
    counter(
        "deflect_mitigations_withdrawn_total",
        "Mitigations withdrawn by hand.",
        "counter",
        m.withdrawn.load(Ordering::Relaxed),
    );
    counter(
        "deflect_mitigations_expired_total",
        "Mitigations withdrawn at expiry.",
        "counter",
        m.expired.load(Ordering::Relaxed),
    );
    counter(
        "deflect_announces_total",
        "Routes given to peers.",
        "counter",
        m.announces.load(Ordering::Relaxed),
    );
    counter(
        "deflect_withdraws_total",
        "Routes taken from peers.",
        "counter",
        m.withdraws.load(Ordering::Relaxed),
    );
    counter(
        "deflect_api_requests_total",
        "API requests.",
        "counter",
        s.metrics.requests.load(Ordering::Relaxed),
    );
    counter(
        "deflect_api_errors_total",
        "API requests answered with an error.",
        "counter",
        s.metrics.errors.load(Ordering::Relaxed),
    );
    let e = &s.engine.metrics;
    counter(
        "deflect_telemetry_reports_total",
        "Probe reports judged.",
        "counter",
        e.reports.load(Ordering::Relaxed),
    );
    counter(
        "deflect_attacks_started_total",
        "Attacks detected.",
        "counter",
        e.attacks_started.load(Ordering::Relaxed),
    );
    counter(
        "deflect_attacks_active",
        "Attacks under way.",
        "gauge",
        e.attacks_active.load(Ordering::Relaxed),
    );
    counter(
        "deflect_targets",
        "Protected addresses with learned baselines.",
        "gauge",
        e.targets.load(Ordering::Relaxed),
    );
    counter(
        "deflect_nodes_stale",
        "Nodes that stopped reporting.",
        "gauge",
        e.nodes_stale.load(Ordering::Relaxed),
    );
    counter(
        "deflect_policy_steps_total",
        "Policy steps fired.",
        "counter",
        e.policy_steps.load(Ordering::Relaxed),
    );
    counter(
        "deflect_policy_reload_errors_total",
        "Policy directory changes refused.",
        "counter",
        e.policy_reload_errors.load(Ordering::Relaxed),
    );
    let al = &s.alerts.metrics;
    counter(
        "deflect_alerts_delivered_total",
        "Alerts delivered.",
        "counter",
        al.delivered.load(Ordering::Relaxed),
    );
    counter(
        "deflect_alerts_failed_total",
        "Alerts that could not be delivered after every attempt.",
        "counter",
        al.failed.load(Ordering::Relaxed),
    );
    counter(
        "deflect_alerts_dropped_total",
        "Alerts dropped: the queue was full.",
        "counter",
        al.dropped.load(Ordering::Relaxed),
    );
    let pc = &s.recorder.metrics;
    counter(
        "deflect_pcap_frames_written_total",
        "Sampled packets written to attack captures.",
        "counter",
        pc.frames_written.load(Ordering::Relaxed),
    );
    counter(
        "deflect_pcap_frames_dropped_total",
        "Sampled packets not captured: the recorder was behind.",
        "counter",
        pc.frames_dropped.load(Ordering::Relaxed),
    );
    if let Some(st) = s
        .sflow
        .as_ref()
        .and_then(|st| st.lock().ok().map(|g| g.clone()))
    {
        counter(
            "deflect_sflow_untrusted_datagrams_total",
            "sFlow datagrams from addresses that are not trusted agents.",
            "counter",
            st.untrusted,
        );
        for (name, help, get) in [
            (
                "deflect_sflow_datagrams_total",
                "sFlow datagrams received per agent.",
                (|a: &crate::collector::AgentStats| a.datagrams)
                    as fn(&crate::collector::AgentStats) -> u64,
            ),
            (
                "deflect_sflow_lost_datagrams_total",
                "sFlow datagrams missing from an agent's sequence.",
                |a| a.lost,
            ),
            (
                "deflect_sflow_agent_restarts_total",
                "sFlow agent restarts seen.",
                |a| a.restarts,
            ),
            (
                "deflect_sflow_decode_errors_total",
                "sFlow datagrams that did not decode.",
                |a| a.decode_errors,
            ),
            (
                "deflect_sflow_flow_samples_total",
                "sFlow flow samples received.",
                |a| a.flow_samples,
            ),
        ] {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} counter\n"));
            for a in &st.agents {
                out.push_str(&format!(
                    "{name}{{agent=\"{}\"}} {}\n",
                    a.name.replace('"', "'"),
                    get(a)
                ));
            }
        }
    }
    let peers = s.peers.read().map(|p| p.clone()).unwrap_or_default();
    out.push_str("# HELP deflect_peer_up Whether the BGP session is established.\n# TYPE deflect_peer_up gauge\n");
    for p in &peers {
        let up = u8::from(p.status().state == deflect_bgp::fsm::State::Established);
        out.push_str(&format!(
            "deflect_peer_up{{peer=\"{}\"}} {up}\n",
            p.config().name.replace('"', "'")
        ));
    }
    out.push_str("# HELP deflect_peer_routes Routes advertised to the peer.\n# TYPE deflect_peer_routes gauge\n");
    for p in &peers {
        out.push_str(&format!(
            "deflect_peer_routes{{peer=\"{}\"}} {}\n",
            p.config().name.replace('"', "'"),
            p.status().advertised
        ));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(v: serde_json::Value) -> Result<Order, Refusal> {
        serde_json::from_value::<CreateRequest>(v)
            .unwrap()
            .order("noc")
    }

    #[test]
    fn a_body_becomes_a_typed_order_at_the_edge() {
        let o = order(json!({
            "kind": "flowspec",
            "rule": "dst 203.0.113.9/32 proto 17 sport 123 then discard",
            "ttl": "90s",
            "peers": ["edge1"],
            "reason": "ntp",
        }))
        .unwrap();
        assert_eq!(
            o.target.to_string(),
            "dst 203.0.113.9/32 proto udp sport 123 then discard"
        );
        assert_eq!(o.ttl, Some(std::time::Duration::from_secs(90)));
        assert_eq!(
            (o.peers, o.reason.as_str()),
            (vec!["edge1".to_string()], "ntp")
        );
        assert_eq!(o.actor, "noc");
        let o = order(json!({"kind": "rtbh", "prefix": "2001:db8::9/128"})).unwrap();
        assert_eq!(o.target, Target::host("2001:db8::9".parse().unwrap()));
        assert_eq!(o.ttl, None, "the configured default");
    }

    #[test]
    fn a_body_that_cannot_be_an_order_says_why() {
        for (body, why) in [
            (json!({"prefix": "203.0.113.9/32"}), "kind is missing"),
            (json!({"kind": "flowspec"}), "needs a rule"),
            (json!({"kind": "rtbh"}), "needs a prefix"),
            (
                json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32 then discard", "prefix": "203.0.113.9/32"}),
                "not a prefix",
            ),
            (
                json!({"kind": "rtbh", "rule": "dst 203.0.113.9/32 then discard", "prefix": "203.0.113.9/32"}),
                "not a rule",
            ),
            (
                json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32"}),
                "give an action",
            ),
            (
                json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32 dport 70000 then discard"}),
                "beyond 65535",
            ),
            (
                json!({"kind": "rtbh", "prefix": "203.0.113.9/24"}),
                "host bits",
            ),
            (
                json!({"kind": "rtbh", "prefix": "203.0.113.9/32", "ttl": "soon"}),
                "not a duration",
            ),
            (
                json!({"kind": "rtbh", "prefix": "203.0.113.9/32", "ttl": "0s"}),
                "not a duration",
            ),
            (
                json!({"kind": "rtbh", "prefix": "203.0.113.9/32", "reason": "r".repeat(1025)}),
                "at most 1024",
            ),
        ] {
            match order(body.clone()) {
                Err(Refusal::Invalid(e)) => assert!(e.contains(why), "{body}: {e}"),
                other => panic!("{body}: {other:?}"),
            }
        }
    }

    #[test]
    fn secrets_compare_equal_only_when_equal_whatever_their_lengths() {
        assert!(same_secret(b"0123456789abcdef", b"0123456789abcdef"));
        assert!(!same_secret(b"0123456789abcdef", b"0123456789abcdeg"));
        assert!(!same_secret(b"0123456789abcdef", b"0123456789abcdef0"));
        assert!(!same_secret(b"", b"0123456789abcdef"));
    }

    #[test]
    fn a_body_must_be_a_json_object() {
        let array = Ok(Bytes::from_static(br#"["rtbh", null, "203.0.113.9/32"]"#));
        let e = body::<CreateRequest>(array).unwrap_err();
        assert_eq!(e.0, StatusCode::BAD_REQUEST);
        assert!(e.1.contains("expected a JSON object"), "{}", e.1);
        let object = Ok(Bytes::from_static(br#" {"kind": "rtbh"}"#));
        assert!(body::<CreateRequest>(object).is_ok());
    }

    #[test]
    fn an_amend_body_gives_new_actions_or_says_why_not() {
        let a = AmendRequest {
            actions: "rate-bytes 125000 traffic-action sample+terminal".into(),
            ttl: Some("10m".into()),
            reason: None,
        }
        .amend("noc")
        .unwrap();
        assert_eq!(a.actions.len(), 2);
        assert_eq!(a.ttl, Some(std::time::Duration::from_secs(600)));
        assert_eq!(
            (a.actor.as_str(), a.reason.as_str()),
            ("noc", "changed by hand")
        );
        for (actions, ttl, why) in [
            ("", None, "actions:"),
            ("explode", None, "actions:"),
            ("rate-bytes", None, "actions:"),
            ("discard", Some("soon"), "not a duration"),
        ] {
            let r = AmendRequest {
                actions: actions.into(),
                ttl: ttl.map(Into::into),
                reason: None,
            }
            .amend("noc");
            match r {
                Err(Refusal::Invalid(e)) => assert!(e.contains(why), "{actions}: {e}"),
                other => panic!("{actions}: {other:?}"),
            }
        }
    }

    proptest::proptest! {
        /// Whatever the strings, a body gives an order of the kind it asked for, or a 400; never a
        /// panic.
        #[test]
        fn any_body_gives_an_order_of_its_kind_or_a_refusal(
            kind in proptest::option::of(proptest::bool::ANY),
            rule in proptest::option::of("(dst|src|proto|sport|dport|then|discard|rate-bytes|[0-9./:, ]){0,12}"),
            prefix in proptest::option::of("[0-9a-f.:/]{0,20}"),
            ttl in proptest::option::of("[0-9]{0,5}(ms|s|m|h|d|x)?"),
        ) {
            let req = CreateRequest {
                kind: kind.map(|f| if f { Kind::Flowspec } else { Kind::Rtbh }),
                rule,
                prefix,
                ttl,
                peers: None,
                reason: None,
            };
            match req.order("noc") {
                Ok(o) => {
                    proptest::prop_assert_eq!(Some(o.target.kind()), req.kind);
                    proptest::prop_assert!(o.ttl.is_none_or(|d| !d.is_zero()));
                }
                Err(e) => proptest::prop_assert!(matches!(e, Refusal::Invalid(_))),
            }
        }

        /// Whatever the words, an amend body gives at least one action, or a 400.
        #[test]
        fn any_amend_body_gives_actions_or_a_refusal(
            actions in "(discard|rate-bytes|rate-packets|traffic-action|redirect|mark|terminal|sample|[0-9.:+ -]){0,8}",
        ) {
            let req = AmendRequest { actions, ttl: None, reason: None };
            match req.amend("noc") {
                Ok(a) => proptest::prop_assert!(!a.actions.is_empty()),
                Err(e) => proptest::prop_assert!(matches!(e, Refusal::Invalid(_))),
            }
        }
    }
}
