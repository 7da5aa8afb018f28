//! Outgoing HTTP for alerts and playbook calls: one request ([`send`]) and the one retry loop both
//! use ([`send_with_retry`]): exponential back-off from 200 ms to 10 s, no retry after a 4xx other
//! than 429 (it will never succeed), and a stop as soon as shutdown is asked for.
//!
//! The client is `ureq` (blocking, small, no TLS in this build); each attempt runs on the blocking
//! pool so callers stay async.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// One request to send, already templated.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Per attempt.
    pub timeout: Duration,
}

/// How a request ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub attempts: u32,
    /// The last HTTP status, if an answer came.
    pub status: Option<u16>,
    /// Why it failed; `None` when it succeeded (2xx).
    pub error: Option<String>,
}

/// First retry delay; it doubles up to [`RETRY_MAX`].
pub const RETRY_MIN: Duration = Duration::from_millis(200);
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// Sends `req` up to `attempts` times (at least once) with back-off; gives up early when `stop`
/// is cancelled (the outcome then says so).
pub async fn send_with_retry(req: &Request, attempts: u32, stop: &CancellationToken) -> Outcome {
    let mut wait = RETRY_MIN;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = {
            let req = req.clone();
            tokio::task::spawn_blocking(move || {
                send(
                    &req.method,
                    &req.url,
                    &req.headers,
                    req.body.as_deref(),
                    req.timeout,
                )
            })
            .await
            .unwrap_or_else(|e| Err((None, e.to_string())))
        };
        let (status, why) = match r {
            Ok(st) => {
                return Outcome {
                    attempts: attempt,
                    status: Some(st),
                    error: None,
                };
            }
            Err(e) => e,
        };
        let fatal = status.is_some_and(|st| (400..500).contains(&st) && st != 429);
        if fatal || attempt >= attempts.max(1) {
            return Outcome {
                attempts: attempt,
                status,
                error: Some(why),
            };
        }
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = stop.cancelled() => {
                return Outcome {
                    attempts: attempt,
                    status,
                    error: Some(format!("{why} (not retried: deflect is shutting down)")),
                };
            }
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// One request; Ok(status) for 2xx, else the status (if any) and why.
pub fn send(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<u16, (Option<u16>, String)> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .user_agent(concat!("deflect/", env!("CARGO_PKG_VERSION")))
        .build()
        .new_agent();
    let result = match method {
        "GET" | "DELETE" if body.is_none() => {
            let mut req = if method == "GET" {
                agent.get(url)
            } else {
                agent.delete(url)
            };
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.call()
        }
        _ => {
            let mut req = match method {
                "PUT" => agent.put(url),
                "PATCH" => agent.patch(url),
                "GET" => agent.get(url).force_send_body(),
                "DELETE" => agent.delete(url).force_send_body(),
                _ => agent.post(url),
            };
            for (k, v) in headers {
                req = req.header(k, v);
            }
            req.send(body.unwrap_or_default())
        }
    };
    match result {
        Ok(mut r) => {
            let st = r.status().as_u16();
            let text = r
                .body_mut()
                .with_config()
                .limit(4096)
                .read_to_string()
                .unwrap_or_default();
            if (200..300).contains(&st) {
                Ok(st)
            } else {
                Err((
                    Some(st),
                    format!("HTTP {st}: {}", text.chars().take(200).collect::<String>()),
                ))
            }
        }
        Err(e) => Err((None, e.to_string())),
    }
}

/// A receiver for tests of what deflect sends.
#[cfg(test)]
pub(crate) mod testing {
    /// A receiver on loopback answering its connections with `statuses`, one each, in order: it
    /// tells the (method, path, authorization, body) of each request.
    pub fn receiver(
        statuses: &'static [u16],
    ) -> (
        u16,
        std::sync::mpsc::Receiver<(String, String, String, String)>,
    ) {
        use std::io::{BufRead, Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for (conn, st) in l.incoming().zip(statuses) {
                let Ok(mut c) = conn else { continue };
                let mut r = std::io::BufReader::new(c.try_clone().unwrap());
                let mut first = String::new();
                let _ = r.read_line(&mut first);
                let mut it = first.split_whitespace();
                let (method, path) = (
                    it.next().unwrap_or("").to_string(),
                    it.next().unwrap_or("").to_string(),
                );
                let (mut len, mut auth) = (0, String::new());
                loop {
                    let mut h = String::new();
                    if r.read_line(&mut h).is_err() || h.trim().is_empty() {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                    if lower.starts_with("authorization:") {
                        auth = h["authorization:".len()..].trim().to_string();
                    }
                }
                let mut body = vec![0; len];
                let _ = r.read_exact(&mut body);
                let _ = write!(
                    c,
                    "HTTP/1.1 {st} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = tx.send((
                    method,
                    path,
                    auth,
                    String::from_utf8_lossy(&body).into_owned(),
                ));
            }
        });
        (port, rx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(
        statuses: &'static [u16],
    ) -> (
        String,
        std::sync::mpsc::Receiver<(String, String, String, String)>,
    ) {
        let (port, rx) = testing::receiver(statuses);
        (format!("http://127.0.0.1:{port}/hook"), rx)
    }

    fn post(url: &str) -> Request {
        Request {
            method: "POST".into(),
            url: url.into(),
            headers: vec![("x-test".into(), "1".into())],
            body: Some(b"{}".to_vec()),
            timeout: Duration::from_secs(2),
        }
    }

    #[tokio::test]
    async fn a_failing_request_is_retried_until_it_succeeds() {
        let (url, got) = server(&[503, 429, 200]);
        let out = send_with_retry(&post(&url), 5, &CancellationToken::new()).await;
        assert_eq!(
            out,
            Outcome {
                attempts: 3,
                status: Some(200),
                error: None
            }
        );
        for _ in 0..3 {
            let (method, path, _, body) = got.recv_timeout(Duration::from_secs(5)).unwrap();
            assert_eq!(
                (method.as_str(), path.as_str(), body.as_str()),
                ("POST", "/hook", "{}")
            );
        }
    }

    #[tokio::test]
    async fn a_client_error_is_not_retried_and_attempts_are_bounded() {
        let (url, _) = server(&[400]);
        let out = send_with_retry(&post(&url), 5, &CancellationToken::new()).await;
        assert_eq!((out.attempts, out.status), (1, Some(400)));
        assert!(out.error.unwrap().contains("HTTP 400"));
        let (url, _) = server(&[500, 500, 500]);
        let out = send_with_retry(&post(&url), 2, &CancellationToken::new()).await;
        assert_eq!((out.attempts, out.status), (2, Some(500)));
    }

    #[tokio::test]
    async fn shutdown_cuts_the_retries_short() {
        let (url, _) = server(&[500, 500, 500, 500, 500]);
        let stop = CancellationToken::new();
        stop.cancel();
        let out = send_with_retry(&post(&url), 5, &stop).await;
        assert_eq!(out.attempts, 1);
        assert!(out.error.unwrap().contains("shutting down"));
    }
}
