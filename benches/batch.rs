//! Mitigations in thousands: 10,000 FlowSpec rules into a live BIRD and a live GoBGP, one batch
//! request against one request per rule (16 clients), and back out with one withdrawal by filter.
//! Times run from the first request sent to the last rule in (or out of) the router's table, as its
//! own tool counts it (`birdc`, `gobgp`). In the same run, each router's own ingest limit: the same
//! 10,000 rules as UPDATE messages encoded before the clock starts, written down a bare BGP session
//! at once (what no controller can beat).
//!
//! `cargo bench --bench batch` prints the figures. deflect runs as its own process (the release
//! binary); BIRD 2 and GoBGP are started on loopback as the interop tests start them. Goal: 10k rules
//! in one batch in BIRD's table within 100 ms, and into GoBGP at GoBGP's own ingest limit.
//! `BATCH_ONLY=1` stops after BIRD's batch (for a profiler).

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "../integration/routers/mod.rs"]
mod routers;

use bytes::BytesMut;
use deflect_bgp::codec::CodecCtx;
use deflect_bgp::iana::{Afi, Family, Safi};
use deflect_bgp::message::Message;
use deflect_bgp::open::{Capability, Open};
use deflect_bgp::rib::{AdjRibOut, SessionCtx};
use routers::{Bird, Gobgp, Session, free_port};
use serde_json::{Value, json};

mod support;
use support::cpu_time;

const TOKEN: &str = "bench-token-0123456789";
const RULES: usize = 10_000;

fn rule(i: usize, port: u16) -> String {
    format!(
        "dst 10.{}.{}.{}/32 proto udp dport {port} then discard",
        i >> 16 & 255,
        i >> 8 & 255,
        i & 255
    )
}

/// A router under test: how many IPv4 FlowSpec rules its table holds, by its own tool.
enum Router {
    Bird(Bird),
    Gobgp(Gobgp),
}

impl Router {
    fn name(&self) -> &'static str {
        match self {
            Router::Bird(_) => "BIRD",
            Router::Gobgp(_) => "GoBGP",
        }
    }

    fn session(&self) -> &Session {
        match self {
            Router::Bird(b) => &b.session,
            Router::Gobgp(g) => &g.session,
        }
    }

    fn log(&self) -> String {
        match self {
            Router::Bird(b) => b.log(),
            Router::Gobgp(g) => g.log(),
        }
    }

    fn established(&self) -> bool {
        match self {
            Router::Bird(b) => b
                .birdc("show protocols deflect")
                .unwrap_or_default()
                .contains("Established"),
            Router::Gobgp(g) => g.established().unwrap_or(false),
        }
    }

    /// Rules in the table: `show route table ft4 count`, `gobgp global rib summary`.
    fn rules(&self) -> usize {
        match self {
            Router::Bird(b) => b
                .birdc("show route table ft4 count")
                .ok()
                .and_then(|s| {
                    s.lines()
                        .find(|l| l.contains("of") && l.contains("routes"))
                        .and_then(|l| l.split_whitespace().next()?.parse().ok())
                })
                .unwrap_or(0),
            Router::Gobgp(g) => g
                .gobgp("global rib summary -a ipv4-flowspec")
                .ok()
                .and_then(|s| {
                    // "Table ipv4-flowspec\nDestination: 10000, Path: 10000"
                    let at = s.find("Destination:")? + "Destination:".len();
                    s[at..].split(',').next()?.trim().parse().ok()
                })
                .unwrap_or(0),
        }
    }

    /// Waits until the table has `n` rules; how long from `t0`.
    fn until(&self, n: usize, t0: Instant) -> Duration {
        let give_up = Instant::now() + Duration::from_secs(120);
        while self.rules() != n {
            assert!(
                Instant::now() < give_up,
                "{} never had {n} rules",
                self.name()
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        t0.elapsed()
    }

    /// Runs `f` (the requests) while the table is watched from `t0` until it has `n` rules: the
    /// routes may be in before the answer is (they are sent while the store commits).
    fn watching<T: Send>(
        &self,
        n: usize,
        t0: Instant,
        f: impl FnOnce() -> T + Send,
    ) -> (T, Duration) {
        std::thread::scope(|s| {
            let watch = s.spawn(|| self.until(n, t0));
            let out = f();
            (out, watch.join().expect("the watch thread"))
        })
    }

    fn wait_established(&self) {
        let give_up = Instant::now() + Duration::from_secs(30);
        while !self.established() {
            assert!(
                Instant::now() < give_up,
                "no session with {}; its log:\n{}",
                self.name(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The 10,000 rules as the UPDATE messages deflect would send on an eBGP session: each parsed as
/// deflect parses a rule, the actions shared as the mitigation set shares them, encoded with
/// deflect-bgp's own Adj-RIB-Out.
fn encoded_updates(local_as: u32) -> Vec<u8> {
    let parse = |i| deflect::route::parse_flow(&rule(i, 53)).expect("a valid rule");
    let attrs = Arc::new(parse(0).1);
    let mut rib = AdjRibOut::new();
    for i in 0..RULES {
        rib.set(parse(i).0, attrs.clone()).expect("a valid route");
    }
    rib.session_up(SessionCtx {
        local_as,
        ebgp: true,
        codec: CodecCtx {
            four_octet_as: true,
            extended_message: false,
        },
        families: [Family::Ipv4FlowSpec].into_iter().collect(),
        max_flowspec_nlri_len: 239,
    });
    let mut out = BytesMut::new();
    while rib.drain(&mut out, usize::MAX) > 0 {}
    out.to_vec()
}

/// A bare BGP session to `s`'s router from deflect's address: OPEN, KEEPALIVE, and a thread that
/// reads (and drops) what the router sends until the session is closed.
struct BarePeer {
    stream: TcpStream,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl BarePeer {
    fn connect(s: &Session) -> BarePeer {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(SocketAddr::new(s.router_addr, 0)),
            socket2::Type::STREAM,
            None,
        )
        .unwrap();
        socket
            .bind(&SocketAddr::new(s.deflect_addr, 0).into())
            .unwrap();
        socket
            .connect(&SocketAddr::new(s.router_addr, s.router_port).into())
            .expect("the router listens");
        let mut stream: TcpStream = socket.into();
        stream.set_nodelay(true).unwrap();
        let open = Message::Open(Open {
            asn: s.deflect_as,
            hold_time: 240,
            router_id: "192.0.2.10".parse().unwrap(),
            capabilities: vec![
                Capability::Multiprotocol {
                    afi: Afi::Ipv4.code(),
                    safi: Safi::FlowSpec.code(),
                },
                Capability::FourOctetAs(s.deflect_as),
            ],
        });
        let ctx = CodecCtx {
            four_octet_as: true,
            extended_message: false,
        };
        let mut out = BytesMut::new();
        open.encode(&ctx, &mut out).unwrap();
        Message::Keepalive.encode(&ctx, &mut out).unwrap();
        stream.write_all(&out).unwrap();
        let mut r = stream.try_clone().unwrap();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 65536];
            while matches!(r.read(&mut buf), Ok(n) if n > 0) {}
        });
        BarePeer {
            stream,
            reader: Some(reader),
        }
    }

    /// Closes the session: the router drops what it learned from it.
    fn close(mut self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The router's own limit: the encoded UPDATEs written at once on a session already up; from the
/// first octet written to the last rule in its table.
fn router_ingest(router: &Router, updates: &[u8]) -> Duration {
    // A router just left by a session holds off a new one for a moment (GoBGP: idle hold time).
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut peer = loop {
        let peer = BarePeer::connect(router.session());
        let up = Instant::now() + Duration::from_secs(2);
        while !router.established() && Instant::now() < up {
            std::thread::sleep(Duration::from_millis(20));
        }
        if router.established() {
            break peer;
        }
        peer.close();
        assert!(
            Instant::now() < give_up,
            "no session with {}; its log:\n{}",
            router.name(),
            router.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let t0 = Instant::now();
    peer.stream.write_all(updates).unwrap();
    let all_in = router.until(RULES, t0);
    peer.close();
    router.until(0, Instant::now());
    all_in
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> (u16, Value) {
    post_text(agent, url, &body.to_string())
}

/// [`post`] with the body already encoded (as a feed would hold it before the clock starts).
fn post_text(agent: &ureq::Agent, url: &str, body: &str) -> (u16, Value) {
    let mut r = agent
        .post(url)
        .header("Authorization", &format!("Bearer {TOKEN}"))
        .content_type("application/json")
        .send(body)
        .expect("deflect answers");
    let st = r.status().as_u16();
    let text = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .unwrap_or_default();
    (st, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// The release deflect peered with `router` alone; its API's mitigations URL.
fn start_deflect(router: &Router, dir: &std::path::Path) -> (std::process::Child, String) {
    let s = router.session();
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).unwrap();
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let yaml = format!(
        "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\ngraceful_restart: 0\n\
         api:\n  listen: 127.0.0.1:{api_port}\n  tokens:\n    - {{ name: feed, token: {TOKEN}, scope: write, rate: 100000 }}\n\
         neighbors:\n  - {{ name: router, address: {}, port: {}, remote_as: {}, local_address: {}, connect_retry: 1s, receives: [flowspec] }}\n\
         protected:\n  bench: [10.0.0.0/8]\nlimits:\n  max_ttl: 24h\n  max_active: 100000\n  max_new_per_minute: 100000\n",
        dir.join("state").display(),
        s.router_addr,
        s.router_port,
        s.router_as,
        s.deflect_addr,
    );
    std::fs::write(dir.join("bench.yaml"), yaml).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(["run", "--config"])
        .arg(dir.join("bench.yaml"))
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("deflect starts");
    router.wait_established();
    (
        child,
        format!("http://127.0.0.1:{api_port}/api/v1/mitigations"),
    )
}

fn session(router: &str, deflect: &str, router_as: u32) -> Session {
    let router_addr: IpAddr = router.parse().unwrap();
    Session {
        router_addr,
        router_port: free_port(router_addr),
        router_as,
        router_id: "192.0.2.254",
        deflect_addr: deflect.parse().unwrap(),
        deflect_as: 65000,
        md5_password: None,
        graceful_restart: false,
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let bird =
        Router::Bird(Bird::start(session("127.0.74.1", "127.0.74.2", 65001)).expect("bird starts"));
    let gobgp = Router::Gobgp(
        Gobgp::start(session("127.0.75.1", "127.0.75.2", 65002)).expect("gobgpd starts"),
    );
    let only_batch = std::env::var_os("BATCH_ONLY").is_some();

    // Each router's own ingest limit, three rounds each.
    if !only_batch {
        let updates = encoded_updates(65000);
        for r in [&bird, &gobgp] {
            let mut rounds: Vec<Duration> = (0..3).map(|_| router_ingest(r, &updates)).collect();
            rounds.sort();
            eprintln!(
                "{RULES} FlowSpec rules as pre-encoded UPDATEs ({} kB) written at once down a bare session: all in {}'s table in {:.1} ms (best of 3; median {:.1} ms)",
                updates.len() / 1000,
                r.name(),
                ms(rounds[0]),
                ms(rounds[1])
            );
        }
    }

    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    for r in [&bird, &gobgp] {
        let dir = std::env::temp_dir().join(format!(
            "deflect-bench-batch-{}-{}",
            r.name(),
            std::process::id()
        ));
        let (mut child, base) = start_deflect(r, &dir);

        // One batch.
        let items: Vec<Value> = (0..RULES)
            .map(|i| json!({"kind": "flowspec", "rule": rule(i, 53), "ttl": "1h", "reason": "batch"}))
            .collect();
        let body = json!({"mitigations": items}).to_string();
        let cpu0 = cpu_time(child.id());
        let t0 = Instant::now();
        let ((st, v, answered, batch_cpu), all_in) = r.watching(RULES, t0, || {
            let (st, v) = post_text(&agent, &format!("{base}/batch"), &body);
            (st, v, t0.elapsed(), cpu_time(child.id()) - cpu0)
        });
        assert_eq!(
            (st, v["created"].as_u64()),
            (200, Some(RULES as u64)),
            "{}",
            v["error"]
        );
        eprintln!(
            "{RULES} FlowSpec rules in one batch: answered in {:.0} ms (deflect's CPU {:.0} ms), all in {}'s table in {:.0} ms",
            ms(answered),
            ms(batch_cpu),
            r.name(),
            ms(all_in)
        );
        if only_batch {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&dir);
            return;
        }

        // Out again with one filter.
        let t0 = Instant::now();
        let ((st, v), all_out) = r.watching(0, t0, || {
            post(
                &agent,
                &format!("{base}/withdraw"),
                &json!({"filter": {"reason": "batch"}, "reason": "bench"}),
            )
        });
        assert_eq!((st, v["withdrawn"].as_u64()), (200, Some(RULES as u64)));
        eprintln!(
            "the same withdrawn by one filter: out of {}'s table in {:.0} ms",
            r.name(),
            ms(all_out)
        );

        // One request per rule, 16 clients (other rules: the withdrawn ones are kept as records).
        let t0 = Instant::now();
        let (answered, all_in) = r.watching(RULES, t0, || {
            std::thread::scope(|s| {
                for c in 0..16 {
                    let base = &base;
                    s.spawn(move || {
                        let agent = ureq::Agent::config_builder()
                            .http_status_as_error(false)
                            .build()
                            .new_agent();
                        for i in (c..RULES).step_by(16) {
                            let body =
                                json!({"kind": "flowspec", "rule": rule(i, 123), "ttl": "1h"});
                            let (st, _) = post(&agent, base, &body);
                            assert_eq!(st, 201);
                        }
                    });
                }
            });
            t0.elapsed()
        });

        eprintln!(
            "{RULES} FlowSpec rules one request each, 16 clients: answered in {:.0} ms, all in {}'s table in {:.0} ms",
            ms(answered),
            r.name(),
            ms(all_in)
        );

        // The session goes down with deflect: the router drops its rules.
        let _ = child.kill();
        let _ = child.wait();
        r.until(0, Instant::now());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
