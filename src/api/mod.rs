//! The HTTP API (axum), JSON under `/api/v1`, Prometheus text at `/metrics`.
//!
//! Handlers only translate: they authenticate the bearer token, validate the body, and ask the
//! mitigation set, which owns every decision. A write is answered only after the mitigation set
//! has made it durable. Errors are `{"error": "..."}` with the status decided in one place,
//! [`ApiError::into_response`].
//!
//! Beside the handlers here: `auth` (tokens, scopes, the caller), `state` (what handlers share, and
//! how a bearer token becomes a caller), `bodies` (request bodies turned into typed requests: an
//! [`crate::mitigation::Order`], an [`crate::mitigation::Amend`]), `error`, `metrics`.
//!
//! The OpenAPI document (`openapi.json` beside this file) is served at `/api/v1/openapi.json`; a test
//! checks that it lists exactly the routes in [`ROUTES`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::SystemTime;

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tracing::warn;

mod auth;
mod bodies;
mod error;
mod metrics;
mod serve;
mod state;
pub mod tls;

pub use self::auth::{Caller, NodeTurns, RateLimits, Scope, Token, TokenTable};
use self::bodies::reason_within_bounds;
pub use self::bodies::{
    AmendRequest, BatchRequest, CreateRequest, ExtendRequest, MAX_BATCH_ITEMS, WithdrawRequest, ttl,
};
pub use self::error::ApiError;
use self::metrics::metrics;
pub use self::metrics::{
    DEFAULT_TOP_TARGETS, MAX_ATTACKED_TARGETS, MAX_TOP_TARGETS, SERIES_PER_TARGET,
};
pub use self::serve::{Limits, ServerMetrics, serve};
pub use self::state::{ApiMetrics, ApiState};
use crate::mitigation::{Created, ListFilter, Refusal};
use crate::peer::PeerHandle;
use crate::telemetry::Encoding;

/// Every route: (method, path). The router and the OpenAPI document both follow this list.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/api/v1/health"),
    ("get", "/api/v1/mitigations"),
    ("post", "/api/v1/mitigations"),
    ("post", "/api/v1/mitigations/batch"),
    ("post", "/api/v1/mitigations/withdraw"),
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
    ("get", "/api/v1/netflow"),
    ("get", "/api/v1/alerts"),
    ("get", "/api/v1/ioc"),
    ("get", "/api/v1/openapi.json"),
    ("get", "/dashboard"),
    ("get", "/metrics"),
];

/// The OpenAPI 3 document.
pub const OPENAPI: &str = include_str!("openapi.json");

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
            "/api/v1/mitigations/batch",
            post(batch).layer(DefaultBodyLimit::max(bodies::MAX_BATCH_BODY.max(max_body))),
        )
        .route("/api/v1/mitigations/withdraw", post(withdraw_where))
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
        .route("/api/v1/netflow", get(netflow))
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
    let f = query_of(q)?;
    Ok(axum::Json(s.mitigations.list(f).await?))
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

/// `POST /api/v1/mitigations/batch`: many creates, one transaction; a result per item, in order:
/// `{"status": 201, "id": N}` (200: the same rule, extended) or `{"status": N, "error": "..."}`.
/// Ids only: a feed of thousands needs them to withdraw later, and `GET` has the rest.
async fn batch(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    caller.must_write()?;
    let req: BatchRequest = body(b)?;
    let items = req.items(&caller.name)?;
    let results = s
        .mitigations
        .create_batch(&caller.name, items, req.atomic)
        .await?;
    let (mut created, mut refused) = (0, 0);
    // An atomic batch refused: the item that caused it (the others say so; when every item
    // was refused on its own, the first).
    let cause = results.iter().find_map(|r| match r {
        Err(Refusal::NotMade { cause }) => Some(*cause),
        _ => None,
    });
    let cause = cause.or(results.iter().position(|r| r.is_err()));
    let out: Vec<serde_json::Value> = results
        .into_iter()
        .map(|r| match r {
            Ok(Created::New(m)) => {
                created += 1;
                json!({"status": 201, "id": m.id})
            }
            Ok(Created::Extended(m)) => json!({"status": 200, "id": m.id}),
            Err(e) => {
                refused += 1;
                let e = ApiError::from(e);
                json!({"status": e.0.as_u16(), "error": e.1})
            }
        })
        .collect();
    // 200, each item saying what became of it; an atomic batch with a refusal made nothing: 422.
    let mut answer = json!({"created": created, "refused": refused, "results": out});
    if let (true, Some(i)) = (req.atomic && refused > 0, cause) {
        let why = answer["results"][i]["error"].as_str().unwrap_or_default();
        answer["error"] = json!(format!(
            "atomic batch refused, nothing made: item {i}: {why}"
        ));
        return Ok((StatusCode::UNPROCESSABLE_ENTITY, axum::Json(answer)).into_response());
    }
    Ok((StatusCode::OK, axum::Json(answer)).into_response())
}

/// `POST /api/v1/mitigations/withdraw`: every active mitigation a filter matches.
async fn withdraw_where(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    b: Result<Bytes, BytesRejection>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_write()?;
    let req: WithdrawRequest = body(b)?;
    reason_within_bounds(req.reason.as_deref())?;
    let reason = req.reason.unwrap_or_else(|| "withdrawn by filter".into());
    let gone = s
        .mitigations
        .withdraw_where(req.filter, &caller.name, &reason)
        .await?;
    Ok(axum::Json(
        json!({"withdrawn": gone.len(), "mitigations": gone}),
    ))
}

/// A query string, or a 400 saying what is wrong with it.
fn query_of<T>(
    q: Result<Query<T>, axum::extract::rejection::QueryRejection>,
) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))
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
    let q = query_of(q)?;
    reason_within_bounds(q.reason.as_deref())?;
    let reason = q.reason.unwrap_or_else(|| "withdrawn by hand".into());
    Ok(axum::Json(
        s.mitigations.withdraw(id, &caller.name, &reason).await?,
    ))
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
    let q = query_of(q)?;
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
    let v = s.mitigations.audit_verify().await?;
    Ok(axum::Json(json!({
        "ok": true,
        "entries": v.entries,
        "first_seq": v.first_seq,
        "last_seq": v.last_seq,
        "last_hash": v.last_hash,
    })))
}

/// The encoding of a report, from its `Content-Type`: MessagePack when it says so, JSON otherwise
/// (none, `application/json`, or whatever a client such as `curl -d` puts there), as every body
/// was read before there was a choice.
fn encoding_of(headers: &HeaderMap) -> Encoding {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(Encoding::of_content_type)
        .unwrap_or(Encoding::Json)
}

/// `POST /api/v1/telemetry`: one probe report, JSON or MessagePack. The node is the token's name.
async fn telemetry(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
    headers: HeaderMap,
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
    let encoding = encoding_of(&headers);
    // One report at a time per node, within its share of the engine's time: whatever one node
    // sends, the others' reports wait for at most one of its own.
    let turn = s
        .turns
        .begin(&caller.name, std::time::Instant::now())
        .map_err(|w| {
            let c = match w {
                auth::Wait::InFlight => &s.metrics.telemetry_busy,
                auth::Wait::OverBudget(_) => &s.metrics.telemetry_over_budget,
            };
            c.fetch_add(1, Ordering::Relaxed);
            ApiError(StatusCode::TOO_MANY_REQUESTS, w.to_string())
        })?;
    let b = b.map_err(|e| ApiError(e.status(), format!("request body: {}", e.body_text())))?;
    let mut report = encoding
        .decode(&b)
        .map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("request body: {e}")))?;
    report
        .validate()
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()))?;
    // A node speaks only for the addresses it serves: the rest is dropped and counted.
    let before = report.targets.len() + report.rollups.len();
    report.targets.retain(|t| caller.serves(t.dst));
    // A rollup only if it serves all of its prefix (detection rolls up the served targets of
    // the others itself).
    report.rollups.retain(|r| caller.serves_net(r.prefix));
    let refused = before - report.targets.len() - report.rollups.len();
    if refused > 0 {
        let total = s
            .metrics
            .telemetry_refused_targets
            .fetch_add(refused as u64, Ordering::Relaxed)
            + refused as u64;
        // A probe that also sees its management address says so every interval: logged when the
        // count crosses a power of two, counted always.
        if (total - refused as u64).leading_zeros() != total.leading_zeros() {
            warn!(
                node = %caller.name,
                refused,
                total,
                "report on addresses this node does not serve: dropped (deflect_telemetry_targets_refused_total)"
            );
        }
    }
    // Raw samples go to the captures; they are not detection's business.
    for p in std::mem::take(&mut report.packets) {
        let Ok(data) = hex::decode(&p.data) else {
            continue;
        };
        if let Some(info) = crate::traffic::packet::parse(&data) {
            if caller.serves(info.dst) && s.recorder.wants(info.dst) {
                s.recorder.offer(crate::pcap::Frame {
                    dst: info.dst,
                    time: std::time::UNIX_EPOCH + std::time::Duration::from_millis(p.time_ms),
                    orig_len: p.orig_len,
                    data: Bytes::from(data),
                });
            }
        }
    }
    let mut ack = s
        .engine
        .report_in_turn(&caller.name, report, Box::new(turn))
        .await
        .ok_or_else(|| {
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
    let q = query_of(q)?;
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
    let q = query_of(q)?;
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

async fn netflow(
    caller: Caller,
    State(s): State<Arc<ApiState>>,
) -> Result<impl IntoResponse, ApiError> {
    caller.must_read()?;
    let stats = s
        .netflow
        .as_ref()
        .and_then(|st| st.lock().ok().map(|g| g.clone()))
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                "the NetFlow/IPFIX collector is off; configure netflow: to turn it on".into(),
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

#[cfg(test)]
mod tests;
