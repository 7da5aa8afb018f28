//! Ingest at fleet size: 10,000 nodes, each with its own token (scope node, serving its own /24)
//! and its own keep-alive connection, each reporting once a second on 5 addresses, the reports
//! spread evenly over the second. Figures: deflect's CPU (utime + stime from `/proc`, as a share
//! of one core) and each report's round trip, p50 and p99. The API answers a report once the
//! engine has judged it (`POST /api/v1/telemetry` waits for the engine's acknowledgement), so the
//! round trip is report → decision.
//!
//! `cargo bench --bench fleet` prints the figures: one window with every node sending JSON, then
//! one with every node sending MessagePack (`application/msgpack`), in the same deflect process.
//! A report that waits for its answer past its node's next second delays that node's next report
//! (as a probe sends from its backlog one at a time): the reports judged a second say whether
//! deflect kept up with 10,000 a second.
//! `FLEET_NODES` (10,000), `FLEET_WARMUP` (15 s) and `FLEET_WINDOW` (30 s) change the set-up;
//! `FLEET_ALLOCATOR` (`mimalloc`, as a fleet's controller would run; or `system`) is deflect's
//! `allocator:`.
//! First, in process: what reading one report costs in each encoding.
//!
//! deflect runs as its own process (the release binary). The load generator is made cheap so that
//! it takes little of the machine's two cores from deflect: one thread, a hand-written HTTP/1.1
//! client on tokio, each node's request built once and only its `seq` and `time_ms` patched per
//! second. Its own CPU share is printed beside deflect's. Goal on this 2-core machine: at most
//! 50% of one core, report → decision p99 under 10 ms.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deflect::telemetry::{Encoding, Flow, Interface, Report, Rollup, Source, Target, rollup_of};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;
use support::{cpu_ticks, free_port, rss_kib};

/// Addresses each node reports on.
const PER_NODE: usize = 5;
/// Stand-ins for `seq` and `time_ms` in a node's encoded report, found and patched per request.
const SEQ_MARK: u64 = 0xA1B2_C3D4_E5F6_0718;
const TIME_MARK: u64 = 0xB1B2_C3D4_E5F6_0728;

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn token(n: usize) -> String {
    format!("fleet-node-token-{n:06}")
}

/// Node `n`'s /24.
fn node_net(n: usize) -> ipnet::IpNet {
    let a = std::net::Ipv4Addr::new(10, (n >> 8) as u8, n as u8, 0);
    ipnet::IpNet::new(a.into(), 24).unwrap()
}

/// What a probe on a web server with a DNS resolver beside it sends each second: its two
/// interfaces' counters, its 5 addresses with the classes of their traffic (web over TCP,
/// handshakes, DNS answers, ICMP) and their top 10 sources, and the /24's rollup of all of it.
fn report(n: usize) -> Report {
    let net = node_net(n);
    let base = match net.addr() {
        std::net::IpAddr::V4(a) => u32::from(a),
        std::net::IpAddr::V6(_) => unreachable!("an IPv4 /24"),
    };
    let sources = |k: usize| -> Vec<Source> {
        (0..10u32)
            .map(|s| Source {
                addr: std::net::Ipv4Addr::from(
                    0xC633_6400 + ((n as u32 * 7 + k as u32 * 13 + s) % 250),
                )
                .into(),
                pps: 40 - u64::from(s) * 3,
            })
            .collect()
    };
    let targets: Vec<Target> = (0..PER_NODE)
        .map(|k| {
            let flows = vec![
                Flow {
                    proto: 6,
                    dport: Some(443),
                    tcp_flags: Some(0x10),
                    pps: 300 + k as u64,
                    bps: 2_400_000,
                    ..Flow::default()
                },
                Flow {
                    proto: 6,
                    dport: Some(443),
                    tcp_flags: Some(0x02),
                    pps: 12,
                    bps: 7_680,
                    ..Flow::default()
                },
                Flow {
                    proto: 17,
                    sport: Some(53),
                    dport: Some(40000 + k as u16),
                    pps: 10,
                    bps: 8_000,
                    ..Flow::default()
                },
                Flow {
                    proto: 1,
                    pps: 2,
                    bps: 1_344,
                    ..Flow::default()
                },
            ];
            let mut t =
                Target::of_flows(std::net::Ipv4Addr::from(base + 1 + k as u32).into(), flows);
            t.sources = sources(k);
            t
        })
        .collect();
    let mut folded: Vec<Flow> = Vec::new();
    for f in targets.iter().flat_map(|t| &t.flows) {
        let class = |g: &Flow| (g.proto, g.tcp_flags, g.sport.is_some());
        match folded.iter_mut().find(|g| class(g) == class(f)) {
            Some(g) => {
                g.pps += f.pps;
                g.bps += f.bps;
                if g.dport != f.dport {
                    g.dport = None;
                }
            }
            None => folded.push(f.clone()),
        }
    }
    let rollup = Rollup {
        prefix: rollup_of(targets[0].dst),
        addresses: PER_NODE as u32,
        pps: targets.iter().map(|t| t.pps).sum(),
        bps: targets.iter().map(|t| t.bps).sum(),
        flows: folded,
        sources: sources(0),
    };
    let interface = |name: &str, rx: u64| Interface {
        name: name.into(),
        rx_packets: rx,
        rx_bytes: rx * 1000,
        rx_dropped: 0,
        tx_packets: rx * 9 / 10,
        tx_bytes: rx * 1400,
        tx_dropped: 0,
    };
    Report {
        node: format!("n{n}"),
        seq: SEQ_MARK,
        time_ms: TIME_MARK,
        interval_ms: 1000,
        one_in: 8,
        sampled: 200,
        interfaces: vec![interface("eth0", 1_700), interface("eth1", 40)],
        targets,
        rollups: vec![rollup],
        ..Report::default()
    }
}

/// One node's request, built once: the head up to the length, and the body cut around `seq`
/// and `time_ms`.
#[derive(Debug)]
struct Template {
    head: Vec<u8>,
    body: [Vec<u8>; 3],
    encoding: Encoding,
}

/// `bytes` cut around the first occurrence of `mark` and of the one after it.
fn cut(bytes: &[u8], first: &[u8], second: &[u8]) -> [Vec<u8>; 3] {
    let find = |hay: &[u8], needle: &[u8]| {
        hay.windows(needle.len())
            .position(|w| w == needle)
            .expect("the mark is in the encoded report")
    };
    let a = find(bytes, first);
    let rest = &bytes[a + first.len()..];
    let b = find(rest, second);
    [
        bytes[..a].to_vec(),
        rest[..b].to_vec(),
        rest[b + second.len()..].to_vec(),
    ]
}

impl Template {
    fn new(n: usize, encoding: Encoding, host: &str) -> Template {
        let r = report(n);
        let encoded = encoding.encode(&r);
        let body = match encoding {
            Encoding::Json => cut(
                &encoded,
                SEQ_MARK.to_string().as_bytes(),
                TIME_MARK.to_string().as_bytes(),
            ),
            Encoding::MessagePack => {
                // A u64 past 2^32 is 0xcf and 8 bytes: those are patched, the marker kept.
                let mut parts = cut(&encoded, &SEQ_MARK.to_be_bytes(), &TIME_MARK.to_be_bytes());
                assert_eq!(parts[0].last(), Some(&0xcf));
                assert_eq!(parts[1].last(), Some(&0xcf));
                parts[0].pop();
                parts[1].pop();
                parts
            }
        };
        let head = format!(
            "POST /api/v1/telemetry HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {}\r\ncontent-type: {}\r\ncontent-length: ",
            token(n),
            encoding.content_type()
        );
        Template {
            head: head.into_bytes(),
            body,
            encoding,
        }
    }

    /// The request for `seq` at `time_ms`, into `out`.
    fn write(&self, seq: u64, time_ms: u64, out: &mut Vec<u8>) {
        let mut body = Vec::with_capacity(self.body.iter().map(Vec::len).sum::<usize>() + 40);
        let num = |v: u64, b: &mut Vec<u8>| match self.encoding {
            Encoding::Json => b.extend_from_slice(v.to_string().as_bytes()),
            // Always the 8-byte form: longer than needed, which MessagePack allows.
            Encoding::MessagePack => {
                b.push(0xcf);
                b.extend_from_slice(&v.to_be_bytes());
            }
        };
        body.extend_from_slice(&self.body[0]);
        num(seq, &mut body);
        body.extend_from_slice(&self.body[1]);
        num(time_ms, &mut body);
        body.extend_from_slice(&self.body[2]);
        out.clear();
        out.extend_from_slice(&self.head);
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(&body);
    }
}

/// One answer read off `s`: its status.
async fn answer(s: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        let n = s.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
        let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = std::str::from_utf8(&buf[..end]).unwrap_or("");
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("content-length")
                    .then(|| v.trim().parse().ok())?
            })
            .unwrap_or(0);
        while buf.len() < end + 4 + length {
            let n = s.read(&mut chunk).await?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        return Ok(status);
    }
}

/// One report's outcome: when it was sent (milliseconds from the start), its round trip in
/// microseconds, its status (0: no answer).
type Sent = (u32, u32, u16);

/// Node `n`: connects at its offset in the first second, then sends one report a second at that
/// offset (or as soon as its previous one is answered, if that is later), JSON before
/// `compact_from` seconds and MessagePack from then, `seconds` reports in all.
async fn node(
    n: usize,
    addr: SocketAddr,
    start: tokio::time::Instant,
    offset: Duration,
    seconds: u32,
    compact_from: u32,
) -> Vec<Sent> {
    let host = addr.to_string();
    let json = Template::new(n, Encoding::Json, &host);
    let compact = Template::new(n, Encoding::MessagePack, &host);
    let switch = start + Duration::from_secs(u64::from(compact_from));
    // However late the answers, the run ends.
    let end = start + Duration::from_secs(u64::from(seconds) + 30);
    let mut out = Vec::with_capacity(seconds as usize);
    let (mut req, mut buf) = (Vec::with_capacity(4096), Vec::with_capacity(1024));
    tokio::time::sleep_until(start + offset).await;
    let mut conn: Option<TcpStream> = None;
    for sec in 0..seconds {
        tokio::time::sleep_until(start + offset + Duration::from_secs(u64::from(sec))).await;
        let now = tokio::time::Instant::now();
        if now > end {
            break;
        }
        let at = (now - start).as_millis() as u32;
        if conn.is_none() {
            conn = TcpStream::connect(addr).await.ok();
            if let Some(c) = &conn {
                let _ = c.set_nodelay(true);
            }
        }
        let Some(c) = conn.as_mut() else {
            out.push((at, 0, 0));
            continue;
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis() as u64;
        let t = if now < switch { &json } else { &compact };
        t.write(u64::from(sec), now_ms, &mut req);
        let t0 = Instant::now();
        let status = match c.write_all(&req).await {
            Ok(()) => answer(c, &mut buf).await.unwrap_or(0),
            Err(_) => 0,
        };
        let us = t0.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        if status == 0 {
            conn = None;
        }
        out.push((at, us, status));
    }
    // Connections stay open until every node has sent its last report: the first nodes to finish
    // closing theirs would otherwise measure deflect tearing down thousands of connections while
    // the last second's reports are still in flight (probes do not all leave at once).
    tokio::time::sleep_until(start + Duration::from_secs(u64::from(seconds) + 1)).await;
    drop(conn);
    out
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    f64::from(sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]) / 1e3
}

/// What reading one node's report costs in each encoding, in process: best of 5 rounds of 20,000.
fn decode_cost() {
    let r = report(0);
    for e in [Encoding::Json, Encoding::MessagePack] {
        let bytes = e.encode(&r);
        let mut best = f64::MAX;
        for _ in 0..5 {
            let t = Instant::now();
            for _ in 0..20_000 {
                std::hint::black_box(e.decode(std::hint::black_box(&bytes)).unwrap());
            }
            best = best.min(t.elapsed().as_secs_f64() / 20_000.0);
        }
        eprintln!(
            "one report in {e:?}: {} bytes, read in {:.1} µs (in process, best of 5 × 20,000)",
            bytes.len(),
            best * 1e6
        );
    }
}

fn main() {
    decode_cost();
    let nodes = env_or("FLEET_NODES", 10_000) as usize;
    let warmup = env_or("FLEET_WARMUP", 15) as u32;
    let window = env_or("FLEET_WINDOW", 30) as u32;
    // JSON: [warmup, warmup + window); a few seconds for the switch; MessagePack for as long.
    let gap = 3;
    let compact_from = warmup + window;
    let seconds = compact_from + gap + window;

    let dir = std::env::temp_dir().join(format!("deflect-bench-fleet-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("policies")).unwrap();
    let api_port = free_port();
    // What a fleet's configuration says: a token per node serving its own addresses, at the
    // default rate of a node token; connections for every node and some to spare.
    let tokens: String = (0..nodes)
        .map(|n| {
            format!(
                "    - {{ name: n{n}, token: {}, scope: node, serves: [{}] }}\n",
                token(n),
                node_net(n)
            )
        })
        .collect();
    let allocator = std::env::var("FLEET_ALLOCATOR").unwrap_or_else(|_| "mimalloc".into());
    let yaml = format!(
        "local_as: 65000\nrouter_id: 192.0.2.10\nallocator: {allocator}\nstate_dir: {}\npolicies: {}\napi:\n  listen: 127.0.0.1:{api_port}\n  max_connections: {}\n  tokens:\n{tokens}\
         protected:\n  fleet: [10.0.0.0/8]\n\
         detection:\n  max_targets: {}\n  max_prefixes: {}\n  thresholds:\n    warmup: 10s\n",
        dir.join("state").display(),
        dir.join("policies").display(),
        nodes + nodes / 10 + 64,
        nodes * PER_NODE * 2,
        nodes * 2,
    );
    std::fs::write(dir.join("fleet.yaml"), yaml).unwrap();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(["run", "--config"])
        .arg(dir.join("fleet.yaml"))
        // Errors only: every node going stale once the load stops is a warning each.
        .env("RUST_LOG", "error")
        .spawn()
        .expect("deflect starts");
    let pid = child.id();
    let health = format!("http://127.0.0.1:{api_port}/api/v1/health");
    let t = Instant::now();
    while ureq::get(&health).call().is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "deflect's API within 60 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // One thread for the load: the less of the two cores it takes, the more deflect has.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{api_port}").parse().unwrap();
    let me = std::process::id();
    let results = rt.block_on(async {
        let start = tokio::time::Instant::now() + Duration::from_millis(200);
        let tasks: Vec<_> = (0..nodes)
            .map(|n| {
                let offset = Duration::from_secs(1) * n as u32 / nodes as u32;
                tokio::spawn(node(n, addr, start, offset, seconds, compact_from))
            })
            .collect();
        // deflect's and the load generator's CPU over each window, from another task on the
        // same thread: sampled at the windows' edges.
        let at = |s: u32| start + Duration::from_secs(u64::from(s));
        let mut cpu = Vec::new();
        for (from, to) in [(warmup, warmup + window), (compact_from + gap, seconds)] {
            tokio::time::sleep_until(at(from)).await;
            let (d0, l0, t0) = (cpu_ticks(pid), cpu_ticks(me), Instant::now());
            tokio::time::sleep_until(at(to)).await;
            let wall = t0.elapsed().as_secs_f64();
            cpu.push((
                (cpu_ticks(pid) - d0) as f64 / wall,
                (cpu_ticks(me) - l0) as f64 / wall,
                rss_kib(pid),
            ));
        }
        let mut all = Vec::with_capacity(nodes);
        for t in tasks {
            all.push(t.await.unwrap());
        }
        (all, cpu)
    });
    let (all, cpu) = results;
    let _ = std::process::Command::new("kill")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    eprintln!(
        "{nodes} nodes, one connection and one report a second each ({} addresses, {PER_NODE} per node), {window} s windows after {warmup} s, allocator: {allocator}; load: {}",
        nodes * PER_NODE,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    let size = |e| {
        let mut v = Vec::new();
        Template::new(0, e, "127.0.0.1:65535").write(99, 1_800_000_000_000, &mut v);
        v.len()
    };
    for (i, (what, from, to, size)) in [
        ("JSON", warmup, warmup + window, size(Encoding::Json)),
        (
            "MessagePack",
            compact_from + gap,
            seconds,
            size(Encoding::MessagePack),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let mut ok = Vec::new();
        let mut other = std::collections::BTreeMap::new();
        // Where the slow answers fall: reports over 50 ms, by the second of the run they were sent in.
        let mut slow = std::collections::BTreeMap::new();
        for &(at, us, status) in all.iter().flatten() {
            if at < from * 1000 || at >= to * 1000 {
                continue;
            }
            if status == 202 {
                ok.push(us);
                if us > 50_000 {
                    *slow.entry(at / 1000).or_insert(0u32) += 1;
                }
            } else {
                *other.entry(status).or_insert(0u64) += 1;
            }
        }
        ok.sort_unstable();
        let (deflect, load, rss) = cpu[i];
        eprintln!(
            "  {what} (requests of {size} bytes): deflect at {:.1}% of one core, the load generator at {:.1}%; report → decision p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms ({:.0} reports judged a second{}); deflect resident {} MiB",
            deflect,
            load,
            percentile(&ok, 0.5),
            percentile(&ok, 0.99),
            percentile(&ok, 1.0),
            ok.len() as f64 / f64::from(to - from),
            if other.is_empty() {
                String::new()
            } else {
                format!(", others by status (0: no answer): {other:?}")
            },
            rss / 1024
        );
        if !slow.is_empty() {
            eprintln!("    answers over 50 ms, by second of the run: {slow:?}");
        }
    }
}
