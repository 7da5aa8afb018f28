//! Delivery of reports to the controller: a bounded backlog shared with the probe's loop, and one
//! sender thread that posts from it, oldest first, over one keep-alive connection.
//!
//! The loop only ever pushes (never blocks on the network): when the backlog is full the oldest
//! report is dropped and counted. The sender looks at the oldest report, posts it, and removes it
//! once the controller has answered for it:
//! - 2xx: delivered;
//! - 4xx other than 429: the controller will never take this report (bad token, schema): logged as
//!   an error and dropped;
//! - no answer, 5xx or 429: kept, and retried after an exponential back-off (250 ms doubling to
//!   4 s, with jitter); a `Retry-After` in seconds on those answers is honoured (up to 4 s).
//!
//! The backlog holds the bodies in MessagePack, encoded once: a few kilobytes each normally, up to
//! about 150 kB for a report full to every bound. So besides its bound in reports it has one in
//! bytes, [`MAX_BACKLOG_BYTES`], past which the oldest are dropped too: a flood while the
//! controller is away cannot grow the probe.
//!
//! MessagePack is what the controller reads cheapest (`crate::telemetry::Encoding`). A controller
//! from before it reads the body as JSON and answers 400: the client then sends that report as JSON,
//! and every one after it (each re-encoded as it is posted) until the probe restarts.

use std::collections::{HashSet, VecDeque};
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::Duration;

use ipnet::IpNet;
use rand::Rng;
use tracing::{Span, debug, error, info, warn};

use crate::telemetry::Encoding;

/// First retry delay.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest retry delay: short, because a probe that comes back late misses the start of an attack;
/// one small request every few seconds costs the controller nothing.
pub const BACKOFF_MAX: Duration = Duration::from_secs(4);
/// Most bytes of reports the backlog holds, whatever its bound in reports.
pub const MAX_BACKLOG_BYTES: usize = 2 << 20;
/// A request that takes longer than this counts as a failure.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of the controller's answer read: its capture list, drops and trusted sources
/// (at most `detect::MAX_TRUSTED` prefixes, about 12 KB) fit.
const MAX_ANSWER: u64 = 64 * 1024;

#[derive(Debug, Clone)]
struct Queued {
    seq: u64,
    body: Arc<[u8]>,
}

#[derive(Debug)]
struct Queue {
    items: VecDeque<Queued>,
    cap: usize,
    /// Bytes of reports in `items`.
    bytes: usize,
    /// Reports dropped for lack of room since the last successful delivery.
    dropped: u64,
    closed: bool,
}

/// The reports waiting for the controller, at most `cap` of them.
#[derive(Debug)]
pub struct Backlog {
    queue: Mutex<Queue>,
    changed: Condvar,
}

impl Backlog {
    pub fn new(cap: usize) -> Arc<Backlog> {
        let cap = cap.max(1);
        Arc::new(Backlog {
            queue: Mutex::new(Queue {
                items: VecDeque::with_capacity(cap.min(64)),
                cap,
                bytes: 0,
                dropped: 0,
                closed: false,
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        // The queue is consistent after every operation; a panicking holder cannot break it.
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues a report; returns the sequence number of the last report dropped to make room, if
    /// any (the oldest go, even one being posted: the post may still succeed, and dropping any
    /// other would lose a report for certain).
    pub fn push(&self, seq: u64, body: Vec<u8>) -> Option<u64> {
        let mut q = self.lock();
        let mut evicted = None;
        while !q.items.is_empty()
            && (q.items.len() >= q.cap || q.bytes + body.len() > MAX_BACKLOG_BYTES)
        {
            if let Some(r) = q.items.pop_front() {
                q.bytes -= r.body.len();
                evicted = Some(r.seq);
                q.dropped += 1;
            }
        }
        q.bytes += body.len();
        q.items.push_back(Queued {
            seq,
            body: body.into(),
        });
        drop(q);
        self.changed.notify_all();
        evicted
    }

    /// Reports waiting.
    pub fn len(&self) -> usize {
        self.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Lets the sender finish: it delivers nothing more and its thread ends.
    pub fn close(&self) {
        self.lock().closed = true;
        self.changed.notify_all();
    }

    /// The oldest report, waiting for one; `None` once closed.
    fn oldest(&self) -> Option<Queued> {
        let mut q = self.lock();
        loop {
            if q.closed {
                return None;
            }
            if let Some(r) = q.items.front() {
                return Some(r.clone());
            }
            q = self.changed.wait(q).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Removes report `seq`, answered by the controller, if it is still the oldest; returns how many
    /// reports were lost for lack of room since the last call (not counting `seq` itself, if it
    /// was dropped from the backlog while being posted).
    fn done(&self, seq: u64) -> u64 {
        let mut q = self.lock();
        if q.items.front().is_some_and(|r| r.seq == seq) {
            if let Some(r) = q.items.pop_front() {
                q.bytes -= r.body.len();
            }
        } else {
            q.dropped = q.dropped.saturating_sub(1);
        }
        std::mem::take(&mut q.dropped)
    }

    /// Sleeps for `d`, or less if closed; returns whether it was closed.
    fn pause(&self, d: Duration) -> bool {
        let q = self.lock();
        let (q, _) = self
            .changed
            .wait_timeout_while(q, d, |q| !q.closed)
            .unwrap_or_else(PoisonError::into_inner);
        q.closed
    }
}

/// Exponential back-off with jitter: each delay is drawn from [d/2, d], d doubling from
/// [`BACKOFF_MIN`] up to [`BACKOFF_MAX`].
#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    pub fn reset(&mut self) {
        self.failures = 0;
    }

    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The delay before the next attempt.
    pub fn next(&mut self, rng: &mut impl Rng) -> Duration {
        let d = BACKOFF_MIN
            .saturating_mul(1u32 << self.failures.min(16))
            .min(BACKOFF_MAX);
        self.failures = self.failures.saturating_add(1);
        d.mul_f64(rng.random_range(0.5..=1.0))
    }
}

/// What became of one post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Refused for good: status and the start of the controller's answer.
    Refused(u16, String),
    /// Worth retrying: why, and how long the controller asked us to wait.
    Retry(String, Option<Duration>),
}

/// Posts reports to `{controller}/api/v1/telemetry`.
#[derive(Debug)]
pub struct Client {
    /// Set once the controller refused MessagePack and took JSON: an older one, sent JSON from then
    /// on.
    json_only: AtomicBool,
    agent: ureq::Agent,
    url: String,
    authorization: String,
    /// Where the controller's answers say which addresses it captures.
    capture: Option<Arc<Mutex<HashSet<IpAddr>>>>,
    /// Where they say which node-local drops it wants.
    drops: Option<super::nft::Wanted>,
    /// Where they say which sources are trusted (never attack traffic).
    trusted: Option<Arc<Mutex<Vec<IpNet>>>>,
}

impl Client {
    /// A client of `controller` (`http://` or `https://` with the public web's roots).
    pub fn new(controller: &str, token: &str) -> Client {
        Client::build(controller, token, ureq::tls::TlsConfig::default())
    }

    /// A client of `controller` whose `https://` is checked, and shown, as `tls` says.
    pub fn with_tls(
        controller: &str,
        token: &str,
        tls: &crate::api::tls::ClientTls,
    ) -> Result<Client, String> {
        Ok(Client::build(controller, token, tls.config()?))
    }

    fn build(controller: &str, token: &str, tls: ureq::tls::TlsConfig) -> Client {
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .max_idle_connections(1)
            .max_idle_connections_per_host(1)
            .user_agent(concat!("deflect-probe/", env!("CARGO_PKG_VERSION")))
            .build()
            .new_agent();
        Client {
            json_only: AtomicBool::new(false),
            agent,
            url: format!("{}/api/v1/telemetry", controller.trim_end_matches('/')),
            authorization: format!("Bearer {token}"),
            capture: None,
            drops: None,
            trusted: None,
        }
    }

    /// Keeps the trusted sources the controller names (its answer's `trusted`) in `list`: the
    /// aggregator of the next interval leaves them out.
    pub fn with_trusted(mut self, list: Arc<Mutex<Vec<IpNet>>>) -> Client {
        self.trusted = Some(list);
        self
    }

    /// Keeps the node-local drops the controller wants (its answer's `drops`) in `wanted`.
    pub fn with_drops(mut self, wanted: super::nft::Wanted) -> Client {
        self.drops = Some(wanted);
        self
    }

    /// Keeps the addresses the controller captures (its answer's `capture` list) in `set`.
    pub fn with_capture(mut self, set: Arc<Mutex<HashSet<IpAddr>>>) -> Client {
        self.capture = Some(set);
        self
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Posts one report, `body` in MessagePack; as JSON to a controller that does not read it.
    ///
    /// A controller from before MessagePack reads every body as JSON and answers 400 (one that
    /// names the types it reads would answer 415): the same report then goes again as JSON, and
    /// if that is taken, JSON is what this client sends from then on. A report refused either
    /// way is refused for what it says, not for its encoding: the JSON answer is returned and
    /// nothing changes.
    pub fn post(&self, body: &[u8]) -> Outcome {
        if self.json_only.load(Ordering::Relaxed) {
            return self.post_json(body);
        }
        match self.send(body, Encoding::MessagePack) {
            Outcome::Refused(status @ (400 | 415), why) => {
                let o = self.post_json(body);
                if o == Outcome::Delivered {
                    warn!(
                        url = self.url(),
                        "the controller does not read MessagePack reports ({status}: {why}): sending JSON from now on"
                    );
                    self.json_only.store(true, Ordering::Relaxed);
                }
                o
            }
            o => o,
        }
    }

    /// `body` (MessagePack) re-encoded and sent as JSON.
    fn post_json(&self, body: &[u8]) -> Outcome {
        match Encoding::MessagePack.decode(body) {
            Ok(r) => self.send(&Encoding::Json.encode(&r), Encoding::Json),
            Err(e) => Outcome::Refused(0, format!("report not re-encoded as JSON: {e}")),
        }
    }

    fn send(&self, body: &[u8], encoding: Encoding) -> Outcome {
        let res = self
            .agent
            .post(&self.url)
            .header("authorization", &self.authorization)
            .header("content-type", encoding.content_type())
            .send(body);
        let mut res = match res {
            Ok(r) => r,
            Err(e) => return Outcome::Retry(e.to_string(), None),
        };
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s).min(BACKOFF_MAX));
        // Read the answer (bounded) so the connection can be reused.
        let text = res
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER)
            .read_to_string()
            .unwrap_or_default();
        match status {
            200..=299 => {
                if let Some(list) = &self.trusted {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    // No list in the answer is none trusted; an unreadable one changes nothing.
                    if let Ok(t) = serde_json::from_value::<Vec<IpNet>>(
                        v.get("trusted").cloned().unwrap_or(serde_json::json!([])),
                    ) {
                        if let Ok(mut l) = list.lock() {
                            *l = t;
                        }
                    }
                }
                if let Some(w) = &self.drops {
                    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                    // No list in the answer is no drop: a restarted controller clears them.
                    let drops: Vec<crate::telemetry::LocalDrop> =
                        serde_json::from_value(v.get("drops").cloned().unwrap_or_default())
                            .unwrap_or_default();
                    if let Ok(mut w) = w.lock() {
                        *w = Some(drops);
                    }
                }
                if let Some(set) = &self.capture {
                    let wanted: HashSet<IpAddr> = serde_json::from_str::<serde_json::Value>(&text)
                        .ok()
                        .and_then(|v| {
                            v.get("capture")?
                                .as_array()?
                                .iter()
                                .map(|a| a.as_str()?.parse().ok())
                                .collect()
                        })
                        .unwrap_or_default();
                    if let Ok(mut s) = set.lock() {
                        *s = wanted;
                    }
                }
                Outcome::Delivered
            }
            429 | 500..=599 => {
                Outcome::Retry(format!("HTTP {status} {}", snippet(&text)), retry_after)
            }
            _ => Outcome::Refused(status, snippet(&text)),
        }
    }
}

fn snippet(text: &str) -> String {
    let t = text.trim();
    match t.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

/// Starts the sender thread; it ends when the backlog is closed.
pub fn spawn(
    backlog: Arc<Backlog>,
    client: Client,
    span: Span,
) -> std::io::Result<thread::JoinHandle<()>> {
    thread::Builder::new()
        .name("probe-sender".into())
        .stack_size(256 * 1024)
        .spawn(move || {
            let _g = span.enter();
            run(&backlog, &client);
        })
}

fn run(backlog: &Backlog, client: &Client) {
    let mut backoff = Backoff::default();
    let mut rng = rand::rng();
    while let Some(r) = backlog.oldest() {
        match client.post(&r.body) {
            Outcome::Delivered => {
                let dropped = backlog.done(r.seq);
                if backoff.failures() > 0 {
                    info!(
                        seq = r.seq,
                        dropped,
                        "controller reachable again, sending the backlog ({} waiting)",
                        backlog.len()
                    );
                } else if dropped > 0 {
                    warn!(dropped, "reports dropped: the backlog was full");
                }
                backoff.reset();
            }
            Outcome::Refused(status, text) => {
                error!(
                    seq = r.seq,
                    status,
                    url = client.url(),
                    "controller refused the report, dropping it: {text}"
                );
                backlog.done(r.seq);
            }
            Outcome::Retry(why, wait) => {
                let delay = backoff.next(&mut rng).max(wait.unwrap_or_default());
                if backoff.failures() == 1 {
                    warn!(
                        url = client.url(),
                        "controller unreachable ({why}); keeping reports (at most the backlog) and retrying"
                    );
                } else {
                    debug!(
                        attempt = backoff.failures(),
                        ?delay,
                        "controller still unreachable: {why}"
                    );
                }
                if backlog.pause(delay) {
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    use super::*;

    #[test]
    fn backlog_drops_the_oldest_when_full() {
        let b = Backlog::new(3);
        for seq in 0..3 {
            assert_eq!(b.push(seq, vec![seq as u8]), None);
        }
        assert_eq!(b.push(3, vec![3]), Some(0));
        assert_eq!(b.push(4, vec![4]), Some(1));
        assert_eq!(b.len(), 3);
        let r = b.oldest().unwrap();
        assert_eq!(r.seq, 2);
        assert_eq!(b.done(2), 2, "two dropped");
        assert_eq!(b.oldest().unwrap().seq, 3);
        // The report being posted is the oldest: it is the one dropped for room, but once the
        // controller has it, it does not count as lost, and the next oldest stays.
        assert_eq!(b.push(6, vec![6]), None);
        assert_eq!(b.push(7, vec![7]), Some(3));
        assert_eq!(b.done(3), 0, "delivered, so not lost");
        assert_eq!(b.oldest().unwrap().seq, 4);
        assert_eq!(b.len(), 3);
        b.close();
        assert!(b.oldest().is_none());
    }

    #[test]
    fn backlog_is_bounded_in_bytes_too() {
        let b = Backlog::new(300);
        let big = MAX_BACKLOG_BYTES / 4;
        for seq in 0..10 {
            b.push(seq, vec![0; big]);
        }
        assert_eq!(b.len(), 4);
        assert_eq!(b.oldest().unwrap().seq, 6);
        assert_eq!(b.lock().bytes, 4 * big);
        assert_eq!(b.done(6), 6);
        assert_eq!(b.lock().bytes, 3 * big);
        // One report larger than the whole budget is still kept, alone.
        b.push(10, vec![0; MAX_BACKLOG_BYTES + 1]);
        assert_eq!(b.len(), 1);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut rng = rand::rng();
        let mut b = Backoff::default();
        let mut prev_cap = Duration::ZERO;
        for i in 0..20 {
            let cap = BACKOFF_MIN.saturating_mul(1 << i.min(16)).min(BACKOFF_MAX);
            let d = b.next(&mut rng);
            assert!(
                d >= cap / 2 && d <= cap,
                "attempt {i}: {d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= prev_cap);
            prev_cap = cap;
        }
        assert_eq!(prev_cap, BACKOFF_MAX);
        b.reset();
        assert!(b.next(&mut rng) <= BACKOFF_MIN);
    }

    /// A one-connection-at-a-time HTTP server answering each request with the next status of
    /// `statuses` (then 202), reporting (auth header, body) of each request.
    fn server(statuses: Vec<u16>) -> (String, mpsc::Receiver<(String, String)>) {
        server_answering(statuses, r#"{"error":"no"}"#)
    }

    /// [`server`], answering `answer` to every request.
    fn server_answering(
        statuses: Vec<u16>,
        answer: &'static str,
    ) -> (String, mpsc::Receiver<(String, String)>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", l.local_addr().unwrap());
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            let mut statuses = statuses.into_iter();
            for conn in l.incoming() {
                let Ok(conn) = conn else { return };
                let mut r = BufReader::new(conn.try_clone().unwrap());
                let mut w = conn;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let (mut len, mut auth) = (0, String::new());
                    loop {
                        let mut h = String::new();
                        r.read_line(&mut h).unwrap();
                        let h = h.trim_end();
                        if h.is_empty() {
                            break;
                        }
                        let (k, v) = h.split_once(':').unwrap();
                        match k.to_ascii_lowercase().as_str() {
                            "content-length" => len = v.trim().parse().unwrap(),
                            "authorization" => auth = v.trim().to_string(),
                            _ => {}
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).unwrap();
                    let status = statuses.next().unwrap_or(202);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: application/json\r\n\r\n{answer}",
                        answer.len()
                    );
                    w.write_all(head.as_bytes()).unwrap();
                    if tx
                        .send((auth, String::from_utf8_lossy(&body).into_owned()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
        (url, rx)
    }

    #[test]
    fn post_sends_the_token_and_classifies_answers() {
        // A 400 is asked again in JSON (an older controller), and refused again.
        let (url, rx) = server(vec![202, 401, 503, 429, 400, 400]);
        let c = Client::new(&format!("{url}/"), "s3cret");
        assert_eq!(c.url(), format!("{url}/api/v1/telemetry"));
        let body = Encoding::MessagePack.encode(&crate::telemetry::Report::default());
        assert_eq!(c.post(&body), Outcome::Delivered);
        assert_eq!(
            rx.recv().unwrap(),
            (
                "Bearer s3cret".into(),
                String::from_utf8_lossy(&body).into_owned()
            )
        );
        assert_eq!(
            c.post(&body),
            Outcome::Refused(401, r#"{"error":"no"}"#.into())
        );
        assert!(matches!(c.post(&body), Outcome::Retry(why, None) if why.contains("503")));
        assert!(matches!(c.post(&body), Outcome::Retry(..)));
        assert!(matches!(c.post(&body), Outcome::Refused(400, _)));
    }

    #[test]
    fn a_controller_that_does_not_read_messagepack_gets_json_from_then_on() {
        let report = crate::telemetry::Report {
            node: "web1".into(),
            seq: 7,
            interval_ms: 1000,
            one_in: 1,
            ..Default::default()
        };
        let body = Encoding::MessagePack.encode(&report);
        let json = String::from_utf8(Encoding::Json.encode(&report)).unwrap();
        let lossy = String::from_utf8_lossy(&body).into_owned();
        // A controller that reads it: MessagePack as it is.
        let (url, rx) = server(vec![202]);
        let c = Client::new(&url, "t");
        assert_eq!(c.post(&body), Outcome::Delivered);
        assert_eq!(rx.recv().unwrap().1, lossy);
        // Older ones: 400 (every body read as JSON) or 415, then the same report again, as JSON,
        // and every one after it.
        for refusal in [400, 415] {
            let (url, rx) = server(vec![refusal, 202, 202]);
            let c = Client::new(&url, "t");
            assert_eq!(c.post(&body), Outcome::Delivered);
            assert_eq!(rx.recv().unwrap().1, lossy);
            assert_eq!(rx.recv().unwrap().1, json);
            assert_eq!(c.post(&body), Outcome::Delivered);
            assert_eq!(rx.recv().unwrap().1, json);
        }
        // A report refused in both encodings is refused for what it says: the client keeps
        // MessagePack.
        let (url, rx) = server(vec![400, 400, 202]);
        let c = Client::new(&url, "t");
        assert!(matches!(c.post(&body), Outcome::Refused(400, _)));
        assert_eq!(rx.recv().unwrap().1, lossy);
        assert_eq!(rx.recv().unwrap().1, json);
        assert_eq!(c.post(&body), Outcome::Delivered);
        assert_eq!(rx.recv().unwrap().1, lossy);
    }

    #[test]
    fn the_trusted_sources_come_from_the_answer_and_none_named_is_none_trusted() {
        let (url, _rx) = server_answering(
            vec![202],
            r#"{"accepted":true,"started":[],"trusted":["192.0.2.128/25","2001:db8:ffff::/48"]}"#,
        );
        let list: Arc<Mutex<Vec<IpNet>>> = Default::default();
        let c = Client::new(&url, "t").with_trusted(list.clone());
        assert_eq!(c.post(b"{}"), Outcome::Delivered);
        assert_eq!(
            *list.lock().unwrap(),
            [
                "192.0.2.128/25".parse::<IpNet>().unwrap(),
                "2001:db8:ffff::/48".parse().unwrap()
            ]
        );
        // A controller that trusts nothing (or an older one) says nothing: none trusted.
        let (url, _rx) = server_answering(vec![202], r#"{"accepted":true,"started":[]}"#);
        let c = Client::new(&url, "t").with_trusted(list.clone());
        assert_eq!(c.post(b"{}"), Outcome::Delivered);
        assert!(list.lock().unwrap().is_empty());
        // An unreadable list changes nothing.
        *list.lock().unwrap() = vec!["192.0.2.0/24".parse().unwrap()];
        let (url, _rx) = server_answering(vec![202], r#"{"trusted":["speedtest"]}"#);
        let c = Client::new(&url, "t").with_trusted(list.clone());
        assert_eq!(c.post(b"{}"), Outcome::Delivered);
        assert_eq!(list.lock().unwrap().len(), 1);
    }

    #[test]
    fn sender_retries_5xx_drops_4xx_and_keeps_order() {
        let (url, rx) = server(vec![503, 403]);
        let backlog = Backlog::new(10);
        let h = spawn(backlog.clone(), Client::new(&url, "t"), Span::none()).unwrap();
        for seq in 0..4u64 {
            backlog.push(seq, format!("{seq}").into_bytes());
        }
        // 0 (503, retried), 0 again (403, dropped), then 1, 2, 3.
        let got: Vec<String> = (0..5)
            .map(|_| rx.recv_timeout(Duration::from_secs(5)).unwrap().1)
            .collect();
        assert_eq!(got, ["0", "0", "1", "2", "3"]);
        backlog.close();
        h.join().unwrap();
    }

    #[test]
    fn unreachable_controller_fails_fast() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let c = Client::new(&format!("http://127.0.0.1:{port}"), "t");
        assert!(matches!(c.post(b"{}"), Outcome::Retry(..)));
    }
}
