//! The API under hostile load: does a normal request still get a quick answer?
//!
//! `cargo bench --bench api_load` runs the release `deflect run` as its own process (default
//! limits: 1024 connections, 10 s header timeout) and, while a watcher asks `GET /api/v1/health`
//! on a fresh connection every 20 ms (its latency, connect included, p50/p99/max, and failures
//! within 2 s):
//! 1. quiet: nothing else (the reference);
//! 2. 50 clients asking `GET /api/v1/mitigations` and `/api/v1/health` as fast as they can over
//!    keep-alive connections, beside 500 slow connections that send a header one byte a second
//!    and reconnect when cut;
//! 3. 20,000 idle connections, opened by two child processes of 10,000 each (a process may not
//!    hold more descriptors than its limit) as fast as the server accepts them, then reopened as
//!    the server closes them (at most 5,000 a second each).
//!
//! Goals (issue 15): p99 under 50 ms in 2, and in 3 the API still answering. Each phase lasts
//! `LOAD_SECS` (default 15) seconds.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

mod support;
use support::free_port;

const READ: &str = "load-read-token-0123456789";

/// One `GET path` on `s` (keep-alive), the whole answer read; `false` if it failed.
fn request(s: &mut TcpStream, path: &str, close: bool) -> bool {
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {READ}\r\n{}\r\n",
        if close { "Connection: close\r\n" } else { "" }
    );
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    // Read the head, then the body by its Content-Length.
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_lowercase();
        let len: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        while buf.len() < end + 4 + len {
            match s.read(&mut chunk) {
                Ok(0) | Err(_) => return false,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        return head.starts_with("http/1.1 200");
    }
}

/// The watcher: a fresh connection and one health request every 20 ms until `stop`.
fn watch(addr: SocketAddr, stop: &AtomicBool) -> (Vec<Duration>, u64) {
    let (mut times, mut failed) = (Vec::new(), 0u64);
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        let ok = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .ok()
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                request(&mut s, "/api/v1/health", true).then_some(())
            })
            .is_some();
        if ok {
            times.push(t.elapsed());
        } else {
            failed += 1;
        }
        std::thread::sleep(Duration::from_millis(20).saturating_sub(t.elapsed()));
    }
    (times, failed)
}

fn report(phase: &str, (mut times, failed): (Vec<Duration>, u64)) {
    times.sort();
    let p = |q: f64| {
        times
            .get(((times.len() as f64 - 1.0) * q).round() as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    eprintln!(
        "{phase:<44} health p50 {:6.2} ms  p99 {:6.2} ms  max {:7.2} ms  ({} answered, {failed} failed)",
        p(0.5),
        p(0.99),
        times.last().map_or(f64::NAN, |d| d.as_secs_f64() * 1e3),
        times.len()
    );
}

/// Phase 2's load: 50 keep-alive clients and 500 slow connections, until `stop`. Returns the
/// clients' requests answered and the slow connections the server cut.
fn busy(addr: SocketAddr, stop: Arc<AtomicBool>) -> (u64, u64) {
    let answered = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = (0..50)
        .map(|i| {
            let (stop, answered) = (stop.clone(), answered.clone());
            std::thread::spawn(move || {
                let path = if i % 2 == 0 {
                    "/api/v1/mitigations"
                } else {
                    "/api/v1/health"
                };
                while !stop.load(Ordering::Relaxed) {
                    let Ok(mut s) = TcpStream::connect(addr) else {
                        continue;
                    };
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    while !stop.load(Ordering::Relaxed) && request(&mut s, path, false) {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // The slow ones: one thread, non-blocking sockets, one more header byte each a second.
    let mut cut = 0u64;
    let open = || {
        let mut s = TcpStream::connect(addr).ok()?;
        s.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
            .ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let mut slow: Vec<Option<TcpStream>> = (0..500).map(|_| open()).collect();
    while !stop.load(Ordering::Relaxed) {
        let t = Instant::now();
        for s in &mut slow {
            let alive = s.as_mut().is_some_and(|c| {
                let mut b = [0u8; 512];
                match c.read(&mut b) {
                    Ok(_) => false, // an answer (a 408) or the end: cut
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        c.write_all(b"x").is_ok()
                    }
                    Err(_) => false,
                }
            });
            if !alive {
                cut += u64::from(s.is_some());
                *s = open();
            }
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
    }
    for c in clients {
        let _ = c.join();
    }
    (answered.load(Ordering::Relaxed), cut)
}

/// A child holding `n` idle connections to `addr`, reopening those the server closes (at most
/// 5,000 a second), until its stdin closes; prints how many it opened in all.
#[allow(clippy::print_stdout)]
fn hold(addr: SocketAddr, n: usize) {
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read(&mut [0u8; 1]);
            stop.store(true, Ordering::Relaxed);
        });
    }
    let connect = || {
        let s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
        s.set_nonblocking(true).ok()?;
        Some(s)
    };
    let mut held: Vec<Option<TcpStream>> = Vec::with_capacity(n);
    let mut opened = 0u64;
    // Bounded in time too: the parent's phase is seconds long; a lost parent ends this in 10 min.
    let end = Instant::now() + Duration::from_secs(600);
    while !stop.load(Ordering::Relaxed) && Instant::now() < end {
        let t = Instant::now();
        let mut budget = 5000;
        while held.len() < n && budget > 0 {
            held.push(connect());
            opened += 1;
            budget -= 1;
        }
        for s in &mut held {
            // Anything but "nothing to read yet" is the server's end of it: a close or a reset.
            let closed = s.as_mut().is_none_or(|c| {
                !matches!(c.read(&mut [0u8; 64]), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
            });
            if closed && budget > 0 {
                *s = connect();
                opened += 1;
                budget -= 1;
            }
        }
        std::thread::sleep(Duration::from_secs(1).saturating_sub(t.elapsed()));
    }
    println!("{opened}");
}

/// The server's connection counters from `/metrics`.
fn server_counts(addr: SocketAddr) -> String {
    let Ok(mut s) = TcpStream::connect(addr) else {
        return "(no answer)".into();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    [
        "deflect_api_connections_total",
        "deflect_api_connections_evicted_total",
        "deflect_api_connections_refused_total",
        "deflect_api_connection_errors_total",
    ]
    .iter()
    .map(|name| {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or("-");
        format!("{} {}", name.trim_start_matches("deflect_api_"), v.trim())
    })
    .collect::<Vec<_>>()
    .join(", ")
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--hold") {
        let addr: SocketAddr = args[i + 1].parse().unwrap();
        let n: usize = args[i + 2].parse().unwrap();
        hold(addr, n);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("api_load: run `cargo bench --bench api_load` for figures");
        return;
    }
    let secs: u64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(15);
    let state = std::env::temp_dir().join(format!("deflect-api-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    std::fs::create_dir_all(&state).unwrap();
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let yaml = format!(
        "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\napi:\n  listen: 127.0.0.1:{port}\n  tokens:\n    - {{ name: viewer, token: {READ}, scope: read, rate: 1000000 }}\nprotected:\n  bench: [10.0.0.0/8]\n",
        state.display()
    );
    let config = state.join("load.yaml");
    std::fs::write(&config, yaml).unwrap();
    let mut daemon = std::process::Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(["run", "--config"])
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("deflect starts");
    let start = Instant::now();
    while TcpStream::connect(addr)
        .ok()
        .filter(|s| {
            let mut s = s.try_clone().unwrap();
            request(&mut s, "/api/v1/health", true)
        })
        .is_none()
    {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "deflect did not answer"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let phase = |name: &str, load: &(dyn Fn(Arc<AtomicBool>) -> String + Sync)| {
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = {
            let stop = stop.clone();
            std::thread::spawn(move || watch(addr, &stop))
        };
        let loader = {
            let stop = stop.clone();
            std::thread::scope(|sc| {
                let h = sc.spawn(|| load(stop.clone()));
                std::thread::sleep(Duration::from_secs(secs));
                stop.store(true, Ordering::Relaxed);
                h.join().unwrap()
            })
        };
        report(name, watcher.join().unwrap());
        if !loader.is_empty() {
            eprintln!("  {loader}");
        }
        eprintln!("  the server's counts so far: {}", server_counts(addr));
    };
    eprintln!("api_load: {secs} s a phase, deflect pid {}", daemon.id());
    phase("quiet", &|_| String::new());
    phase("50 clients + 500 slow connections", &|stop| {
        let (answered, cut) = busy(addr, stop);
        format!(
            "the 50 clients: {answered} requests answered ({:.0} a second); slow connections cut by the server: {cut}",
            answered as f64 / secs as f64
        )
    });
    phase("20,000 idle connections (two holders)", &|stop| {
        let holders: Vec<_> = (0..2)
            .map(|_| {
                std::process::Command::new(std::env::current_exe().unwrap())
                    .args(["--hold", &addr.to_string(), "10000"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .expect("holder starts")
            })
            .collect();
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let opened: u64 = holders
            .into_iter()
            .map(|mut h| {
                drop(h.stdin.take());
                let mut out = String::new();
                let _ = h.stdout.take().map(|mut o| o.read_to_string(&mut out));
                let _ = h.wait();
                out.trim().parse::<u64>().unwrap_or(0)
            })
            .sum();
        format!("connections opened by the holders (the server closing the excess): {opened}")
    });
    let _ = daemon.kill();
    let _ = daemon.wait();
    let _ = std::fs::remove_dir_all(&state);
}
