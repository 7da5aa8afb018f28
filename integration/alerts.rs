//! Alerts against a local HTTP receiver on loopback: the exact payload each service expects
//! (Slack, Discord, PagerDuty Events API v2, Opsgenie, a signed webhook), retries with back-off,
//! timeouts, no retry on a permanent refusal, and delivery within a second.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use deflect::alert::{self, Event, EventKind, Sink, SinkKind};
use deflect::detect::{Attack, Class, Signature, Vector};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// The alerter as the daemon starts it, on tasks of its own.
fn start_alerts(
    sinks: Vec<Sink>,
    audit: Option<std::sync::Arc<dyn deflect::audit::AuditSink>>,
) -> alert::Alerter {
    alert::start(sinks, audit, &TaskTracker::new(), CancellationToken::new())
}

/// One request the receiver got.
#[derive(Debug)]
struct Got {
    path: String,
    headers: Vec<(String, String)>,
    body: Value,
    raw: Vec<u8>,
}

impl Got {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A receiver answering each request with the next (status, delay) of `script` (then 200).
fn receiver(script: Vec<(u16, Duration)>) -> (String, mpsc::Receiver<Got>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut script = script.into_iter();
        for conn in l.incoming().take(64) {
            let Ok(mut s) = conn else { continue };
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut line = String::new();
            if r.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
            let mut headers = Vec::new();
            let mut len = 0;
            loop {
                let mut h = String::new();
                if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = h.trim().split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
            }
            let mut raw = vec![0; len];
            let _ = r.read_exact(&mut raw);
            let (status, delay) = script.next().unwrap_or((200, Duration::ZERO));
            std::thread::sleep(delay);
            let _ = s.write_all(
                format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{{}}"
                )
                .as_bytes(),
            );
            let body = serde_json::from_slice(&raw).unwrap_or(Value::Null);
            if tx
                .send(Got {
                    path,
                    headers,
                    body,
                    raw,
                })
                .is_err()
            {
                break;
            }
        }
    });
    (url, rx)
}

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

fn sink(kind: SinkKind, url: &str, secret: &str) -> Sink {
    Sink {
        name: format!("{kind:?}").to_lowercase(),
        kind,
        url: url.into(),
        events: Vec::new(),
        secret: secret.into(),
        template: None,
        timeout: Duration::from_secs(2),
        attempts: 3,
    }
}

const WAIT: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_service_gets_the_payload_it_expects() {
    let a = attack();
    let start = Event::attack(EventKind::AttackStart, &a, "");
    let end = Event::attack(EventKind::AttackEnd, &a, "");

    // Slack and Discord: their incoming-webhook bodies, with the template.
    let (url, rx) = receiver(vec![]);
    let mut s = sink(SinkKind::Slack, &url, "");
    s.template = Some(":rotating_light: {{vector}} on {{target}}: {{pps}} pps".into());
    let al = start_alerts(vec![s], None);
    al.send(start.clone());
    let got = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(
        got.body,
        json!({"text": ":rotating_light: amplification on 203.0.113.7: 80000 pps"})
    );
    assert_eq!(got.header("content-type"), Some("application/json"));

    let (url, rx) = receiver(vec![]);
    let al = start_alerts(vec![sink(SinkKind::Discord, &url, "")], None);
    al.send(start.clone());
    let got = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(
        got.body,
        json!({"content": "deflect attack.start: amplification on 203.0.113.7 (customers) at 80000 pps"})
    );

    // PagerDuty Events API v2: trigger with a dedup key, then resolve with the same key.
    let (url, rx) = receiver(vec![]);
    let al = start_alerts(
        vec![sink(
            SinkKind::Pagerduty,
            &format!("{url}/v2/enqueue"),
            "R0UTINGKEY",
        )],
        None,
    );
    al.send(start.clone());
    let got = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(got.path, "/v2/enqueue");
    let b = &got.body;
    assert_eq!(b["routing_key"], "R0UTINGKEY");
    assert_eq!(b["event_action"], "trigger");
    assert_eq!(b["dedup_key"], "deflect-attack-42-1764000000000");
    assert_eq!(b["payload"]["source"], "deflect");
    assert_eq!(b["payload"]["severity"], "critical");
    assert_eq!(b["payload"]["component"], "203.0.113.7");
    assert_eq!(b["payload"]["class"], "amplification");
    assert_eq!(b["payload"]["group"], "customers");
    assert!(
        b["payload"]["summary"]
            .as_str()
            .unwrap()
            .contains("amplification on 203.0.113.7")
    );
    assert!(b["payload"]["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(b["payload"]["custom_details"]["attack"]["id"], 42);
    al.send(end.clone());
    let got = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(
        got.body,
        json!({"routing_key": "R0UTINGKEY", "event_action": "resolve", "dedup_key": "deflect-attack-42-1764000000000"})
    );

    // Opsgenie: create with an alias and the GenieKey header, then close by alias.
    let (url, rx) = receiver(vec![]);
    let al = start_alerts(
        vec![sink(
            SinkKind::Opsgenie,
            &format!("{url}/v2/alerts"),
            "0PSKEY",
        )],
        None,
    );
    al.send(start.clone());
    let got = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(got.path, "/v2/alerts");
    assert_eq!(got.header("authorization"), Some("GenieKey 0PSKEY"));
    assert_eq!(got.body["alias"], "deflect-attack-42-1764000000000");
    assert_eq!(got.body["source"], "deflect");
    assert_eq!(got.body["details"]["target"], "203.0.113.7");
    assert!(got.body["message"].as_str().unwrap().len() <= 130);
    al.send(end);
    let got = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(
        got.path,
        "/v2/alerts/deflect-attack-42-1764000000000/close?identifierType=alias"
    );
    assert_eq!(got.body["source"], "deflect");

    // The webhook: signed with HMAC-SHA256 of the exact body.
    let (url, rx) = receiver(vec![]);
    let al = start_alerts(vec![sink(SinkKind::Webhook, &url, "s3cret")], None);
    al.send(Event::peer_down("edge1", "hold timer expired"));
    let got = rx.recv_timeout(WAIT).unwrap();
    assert_eq!(got.body["event"], "peer.down");
    assert_eq!(got.body["data"]["peer"], "edge1");
    let sig = got.header("x-deflect-signature").unwrap();
    assert_eq!(sig, format!("sha256={}", alert::sign(b"s3cret", &got.raw)));
    assert_ne!(sig, format!("sha256={}", alert::sign(b"other", &got.raw)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_are_retried_with_back_off_and_recorded() {
    // 500, 503, then 200: three attempts, delivered.
    let (url, rx) = receiver(vec![(500, Duration::ZERO), (503, Duration::ZERO)]);
    let al = start_alerts(vec![sink(SinkKind::Webhook, &url, "k")], None);
    let t = Instant::now();
    al.send(Event::peer_down("edge1", "x"));
    for _ in 0..3 {
        rx.recv_timeout(WAIT).unwrap();
    }
    // Back-off: 200 ms, then 400 ms, between the attempts.
    assert!(
        t.elapsed() >= Duration::from_millis(550),
        "{:?}",
        t.elapsed()
    );
    let d = wait_delivery(&al);
    assert_eq!(
        (d.outcome.as_str(), d.attempts, d.status),
        ("delivered", 3, Some(200))
    );

    // A permanent refusal (400) is not retried.
    let (url, rx) = receiver(vec![(400, Duration::ZERO)]);
    let al = start_alerts(vec![sink(SinkKind::Slack, &url, "")], None);
    al.send(Event::peer_down("edge1", "x"));
    rx.recv_timeout(WAIT).unwrap();
    let d = wait_delivery(&al);
    assert_eq!(
        (d.outcome.as_str(), d.attempts, d.status),
        ("failed", 1, Some(400))
    );
    assert!(d.error.unwrap().contains("HTTP 400"));
    assert!(
        rx.recv_timeout(Duration::from_millis(800)).is_err(),
        "no second attempt"
    );

    // A receiver slower than the timeout: every attempt times out, then it is given up.
    let slow = Duration::from_millis(1500);
    let (url, _rx) = receiver(vec![(200, slow), (200, slow)]);
    let mut s = sink(SinkKind::Discord, &url, "");
    s.timeout = Duration::from_millis(300);
    s.attempts = 2;
    let al = start_alerts(vec![s], None);
    al.send(Event::peer_down("edge1", "x"));
    let d = wait_delivery(&al);
    assert_eq!(
        (d.outcome.as_str(), d.attempts, d.status),
        ("failed", 2, None)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_leaves_within_a_second_and_only_for_its_events() {
    let (url, rx) = receiver(vec![]);
    let mut s = sink(SinkKind::Webhook, &url, "k");
    s.events = vec![EventKind::AttackStart];
    let al = start_alerts(vec![s], None);
    let a = attack();
    al.send(Event::attack(EventKind::AttackEnd, &a, ""));
    let t = Instant::now();
    al.send(Event::attack(EventKind::AttackStart, &a, ""));
    let got = rx.recv_timeout(WAIT).unwrap();
    assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
    assert_eq!(
        got.body["event"], "attack.start",
        "the end was not subscribed"
    );
    let d = wait_delivery(&al);
    assert!(d.latency_ms < 1000, "{d:?}");
}

fn wait_delivery(al: &alert::Alerter) -> alert::Delivery {
    let start = Instant::now();
    loop {
        if let Some(d) = al.recent().into_iter().next() {
            return d;
        }
        assert!(start.elapsed() < WAIT, "no delivery recorded");
        std::thread::sleep(Duration::from_millis(20));
    }
}
