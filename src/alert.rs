//! Alerts: attack start, escalation and end, and peer down, to Slack, Discord, PagerDuty (Events
//! API v2), Opsgenie and a generic webhook signed with HMAC-SHA256.
//!
//! ```text
//!  engine ─┐ try_send (bounded; full: dropped, counted)
//!  peers  ─┴────────────► alerter task ──► one delivery task per (event, sink):
//!                             │              render → POST (timeout) → retry with back-off
//!                             └── recent deliveries (API) ◄────┘   audit: alert.delivered / alert.failed
//! ```
//!
//! Detection and BGP never wait for an alert: events are handed over with `try_send`, and each
//! delivery runs on its own task (the HTTP call itself on the blocking pool). Every delivery, and
//! every failure, is visible in `GET /api/v1/alerts` and in the audit log.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info_span, warn};

use crate::audit::AuditSink;
use crate::clock::now_ms;
use crate::detect::Attack;
use crate::http;

/// Kinds of alert sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SinkKind {
    Slack,
    Discord,
    Pagerduty,
    Opsgenie,
    Webhook,
}

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize)]
pub enum EventKind {
    #[serde(rename = "attack.start")]
    AttackStart,
    #[serde(rename = "attack.escalate")]
    AttackEscalate,
    #[serde(rename = "attack.end")]
    AttackEnd,
    #[serde(rename = "peer.down")]
    PeerDown,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::AttackStart => "attack.start",
            EventKind::AttackEscalate => "attack.escalate",
            EventKind::AttackEnd => "attack.end",
            EventKind::PeerDown => "peer.down",
        }
    }
}

/// One sink, resolved from the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Sink {
    pub name: String,
    pub kind: SinkKind,
    pub url: String,
    /// Events it gets; all when empty.
    pub events: Vec<EventKind>,
    /// Webhook: the HMAC key. PagerDuty: the routing key. Opsgenie: the API key.
    pub secret: String,
    /// The message text, with `{{field}}` placeholders (see [`render`]).
    pub template: Option<String>,
    pub timeout: Duration,
    /// Attempts in all, the first included.
    pub attempts: u32,
}

/// The default text of a message.
pub const DEFAULT_TEMPLATE: &str = "deflect {{event}}: {{summary}}";

/// An event, with what templates can refer to.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub kind: EventKind,
    pub time_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attack: Option<Attack>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// One line for humans.
    pub summary: String,
}

impl Event {
    pub fn attack(kind: EventKind, a: &Attack, detail: &str) -> Event {
        let what = match kind {
            EventKind::AttackStart => format!(
                "{} on {} ({}) at {} pps",
                a.vector,
                a.what(),
                a.group,
                a.pps
            ),
            EventKind::AttackEscalate => format!("{} on {}: {detail}", a.vector, a.what()),
            EventKind::AttackEnd => format!(
                "{} on {} is over (peak {} pps)",
                a.vector,
                a.what(),
                a.peak_pps
            ),
            EventKind::PeerDown => detail.to_string(),
        };
        Event {
            kind,
            time_ms: now_ms(),
            attack: Some(a.clone()),
            peer: None,
            summary: what,
        }
    }

    pub fn peer_down(peer: &str, why: &str) -> Event {
        Event {
            kind: EventKind::PeerDown,
            time_ms: now_ms(),
            attack: None,
            peer: Some(peer.to_string()),
            summary: format!("BGP peer {peer} is down: {why}"),
        }
    }

    /// A template field's value.
    fn field(&self, name: &str) -> Option<String> {
        let a = self.attack.as_ref();
        Some(match name {
            "event" => self.kind.name().to_string(),
            "summary" => self.summary.clone(),
            "time_ms" => self.time_ms.to_string(),
            "peer" => self.peer.clone().unwrap_or_default(),
            "attack" => a?.id.to_string(),
            "target" => a?.target.to_string(),
            // The attacked prefix (carpet bombing), or the address as a /32 or /128.
            "prefix" => a?.dst().to_string(),
            "group" => a?.group.clone(),
            "vector" => a?.vector.to_string(),
            "pps" => a?.pps.to_string(),
            "bps" => a?.bps.to_string(),
            "peak_pps" => a?.peak_pps.to_string(),
            "policy" => a?.policy.clone().unwrap_or_default(),
            "node" => a?.node.clone(),
            // Secrets for playbook requests; alert templates refuse them at configuration time.
            env if env.starts_with("env.") => std::env::var(&env[4..]).ok()?,
            _ => return None,
        })
    }
}

/// Fields a template may use.
pub const FIELDS: &[&str] = &[
    "event", "summary", "time_ms", "peer", "attack", "target", "group", "vector", "pps", "bps",
    "peak_pps", "policy", "node", "prefix",
];

/// Fills `{{field}}` placeholders; unknown ones are left as written (the configuration check
/// refuses them, so this only happens for fields an event does not have).
pub fn render(template: &str, e: &Event) -> String {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(i) = rest.find("{{") {
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        match after.find("}}") {
            Some(j) => {
                if let Some(v) = e.field(after[..j].trim()) {
                    out.push_str(&v);
                }
                rest = &after[j + 2..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// The request a sink gets for an event: (url, headers, JSON body).
pub fn request(s: &Sink, e: &Event) -> (String, Vec<(String, String)>, Vec<u8>) {
    let text = render(s.template.as_deref().unwrap_or(DEFAULT_TEMPLATE), e);
    let details = serde_json::to_value(e).unwrap_or(Value::Null);
    let dedup = match (&e.attack, &e.peer) {
        // The id with the start time: ids are short and count up, so another deflect (or this
        // one over a new store) sending to the same service has its own attack 42.
        (Some(a), _) => format!("deflect-attack-{}-{}", a.id, a.started_ms),
        (None, Some(p)) => format!("deflect-peer-{p}"),
        _ => "deflect".to_string(),
    };
    let resolve = e.kind == EventKind::AttackEnd;
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    let (url, body) = match s.kind {
        SinkKind::Slack => (s.url.clone(), json!({ "text": text })),
        SinkKind::Discord => (s.url.clone(), json!({ "content": text })),
        SinkKind::Pagerduty => {
            let severity = match e.kind {
                EventKind::AttackStart | EventKind::AttackEscalate | EventKind::PeerDown => {
                    "critical"
                }
                EventKind::AttackEnd => "info",
            };
            let mut body = json!({
                "routing_key": s.secret,
                "event_action": if resolve { "resolve" } else { "trigger" },
                "dedup_key": dedup,
            });
            if !resolve {
                body["payload"] = json!({
                    "summary": text.chars().take(1024).collect::<String>(),
                    "source": "deflect",
                    "severity": severity,
                    "timestamp": rfc3339(e.time_ms),
                    "component": e.attack.as_ref().map(|a| a.target.to_string()).or(e.peer.clone()),
                    "group": e.attack.as_ref().map(|a| a.group.clone()),
                    "class": e.attack.as_ref().map(|a| a.vector.to_string()).unwrap_or_else(|| "peer".into()),
                    "custom_details": details,
                });
            }
            (s.url.clone(), body)
        }
        SinkKind::Opsgenie => {
            headers.push(("Authorization".into(), format!("GenieKey {}", s.secret)));
            let base = s.url.trim_end_matches('/');
            if resolve {
                (
                    format!("{base}/{dedup}/close?identifierType=alias"),
                    json!({ "source": "deflect", "note": text }),
                )
            } else {
                (
                    base.to_string(),
                    json!({
                        "message": text.chars().take(130).collect::<String>(),
                        "alias": dedup,
                        "description": e.summary,
                        "source": "deflect",
                        "priority": if e.kind == EventKind::AttackEscalate { "P1" } else { "P2" },
                        "tags": ["deflect", e.kind.name()],
                        "details": flat_details(e),
                    }),
                )
            }
        }
        SinkKind::Webhook => (
            s.url.clone(),
            json!({ "event": e.kind.name(), "time_ms": e.time_ms, "text": text, "data": details }),
        ),
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    if s.kind == SinkKind::Webhook && !s.secret.is_empty() {
        headers.push((
            "X-Deflect-Signature".into(),
            format!("sha256={}", sign(s.secret.as_bytes(), &body)),
        ));
    }
    (url, headers, body)
}

/// HMAC-SHA256 of a webhook body, in hex: what a receiver recomputes with the shared secret.
pub fn sign(key: &[u8], body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Opsgenie's details are a map of strings.
fn flat_details(e: &Event) -> Value {
    let mut m = serde_json::Map::new();
    for f in FIELDS {
        if let Some(v) = e.field(f) {
            if !v.is_empty() {
                m.insert((*f).to_string(), Value::String(v));
            }
        }
    }
    Value::Object(m)
}

fn rfc3339(ms: u64) -> String {
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let secs = ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        ms % 1000
    )
}

/// One delivery as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Delivery {
    pub time_ms: u64,
    pub sink: String,
    pub event: String,
    pub summary: String,
    /// delivered, failed
    pub outcome: String,
    pub attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// From the event to the answer.
    pub latency_ms: u64,
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct AlertMetrics {
    pub delivered: AtomicU64,
    pub failed: AtomicU64,
    pub dropped: AtomicU64,
}

/// Recent deliveries kept for the API.
const RECENT: usize = 200;

/// A handle to the alerter.
#[derive(Debug, Clone)]
pub struct Alerter {
    tx: mpsc::Sender<Event>,
    recent: Arc<Mutex<VecDeque<Delivery>>>,
    pub metrics: Arc<AlertMetrics>,
}

impl Alerter {
    /// Hands an event over without waiting; dropped (and counted) when the queue is full.
    pub fn send(&self, e: Event) {
        if self.tx.try_send(e).is_err() {
            self.metrics.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Recent deliveries, newest first.
    pub fn recent(&self) -> Vec<Delivery> {
        self.recent
            .lock()
            .map(|r| r.iter().rev().cloned().collect())
            .unwrap_or_default()
    }
}

/// Starts the alerter with its sinks. Deliveries run on `tasks`; `stop` ends the alerter and cuts
/// retries short.
pub fn start(
    sinks: Vec<Sink>,
    audit: Option<Arc<dyn AuditSink>>,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> Alerter {
    let (tx, mut rx) = mpsc::channel::<Event>(1024);
    let recent = Arc::new(Mutex::new(VecDeque::new()));
    let metrics = Arc::new(AlertMetrics::default());
    let (r, m) = (recent.clone(), metrics.clone());
    let deliveries = tasks.clone();
    tasks.spawn(
        async move {
            loop {
                let e = tokio::select! {
                    e = rx.recv() => match e {
                        Some(e) => e,
                        None => break,
                    },
                    _ = stop.cancelled() => break,
                };
                for s in sinks
                    .iter()
                    .filter(|s| s.events.is_empty() || s.events.contains(&e.kind))
                {
                    let (s, e, r, m, audit) =
                        (s.clone(), e.clone(), r.clone(), m.clone(), audit.clone());
                    deliveries.spawn(deliver(s, e, r, m, audit, stop.clone()));
                }
            }
        }
        .instrument(info_span!("alerts")),
    );
    Alerter {
        tx,
        recent,
        metrics,
    }
}

async fn deliver(
    s: Sink,
    e: Event,
    recent: Arc<Mutex<VecDeque<Delivery>>>,
    metrics: Arc<AlertMetrics>,
    audit: Option<Arc<dyn AuditSink>>,
    stop: CancellationToken,
) {
    let (url, headers, body) = request(&s, &e);
    let req = http::Request {
        method: "POST".into(),
        url,
        headers,
        body: Some(body),
        timeout: s.timeout,
    };
    let http::Outcome {
        attempts: attempt,
        status,
        error,
    } = http::send_with_retry(&req, s.attempts, &stop).await;
    let ok = error.is_none();
    let d = Delivery {
        time_ms: now_ms(),
        sink: s.name.clone(),
        event: e.kind.name().to_string(),
        summary: e.summary.clone(),
        outcome: if ok { "delivered" } else { "failed" }.to_string(),
        attempts: attempt,
        status,
        error: error.clone(),
        latency_ms: now_ms().saturating_sub(e.time_ms),
    };
    if ok {
        metrics.delivered.fetch_add(1, Ordering::Relaxed);
    } else {
        metrics.failed.fetch_add(1, Ordering::Relaxed);
        warn!(sink = %s.name, event = e.kind.name(), attempts = attempt, "alert not delivered: {}", error.as_deref().unwrap_or(""));
    }
    if let Some(a) = audit {
        a.record_later(
            "alerts",
            if ok {
                "alert.delivered"
            } else {
                "alert.failed"
            },
            serde_json::to_value(&d).unwrap_or_default(),
        );
    }
    if let Ok(mut r) = recent.lock() {
        if r.len() >= RECENT {
            r.pop_front();
        }
        r.push_back(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::{Class, Signature, Vector};

    fn attack() -> Attack {
        Attack {
            id: 42,
            target: "203.0.113.7".parse().unwrap(),
            group: "customers".into(),
            node: "web1".into(),
            vector: Vector::Amplification,
            class: Class::UdpAmp,
            signature: Signature::default(),
            started_ms: 1_764_000_000_000,
            ended_ms: None,
            pps: 80_000,
            bps: 300_000_000,
            peak_pps: 90_000,
            peak_bps: 330_000_000,
            threshold_pps: 5000,
            baseline_pps: 10,
            timeline: Vec::new(),
            mitigations: vec![7],
            policy: Some("amplification".into()),
            series: Vec::new(),
            ioc: Default::default(),
            cap: None,
            quiet_upstream: false,
            prefix: None,
            addresses: 0,
        }
    }

    #[test]
    fn templates_fill_fields() {
        let e = Event::attack(EventKind::AttackStart, &attack(), "");
        assert_eq!(
            render(
                "{{event}} {{vector}} on {{ target }} ({{pps}} pps) {{nope}}!",
                &e
            ),
            "attack.start amplification on 203.0.113.7 (80000 pps) !"
        );
        assert_eq!(render("unclosed {{event", &e), "unclosed {{event");
    }

    #[test]
    fn dates_are_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_764_168_245_123), "2025-11-26T14:44:05.123Z");
        assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn hmac_matches_rfc_4231_test_case_2() {
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
