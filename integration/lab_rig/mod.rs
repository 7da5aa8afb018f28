//! The namespace lab (`integration/lab`) driven from Rust: bring it up and down, send bounded
//! floods from the attacker's namespace through either edge router, read what each router holds,
//! what each router's enforcer programmed and what reached the victim. Shared by
//! `integration/lab.rs` (the end-to-end and fault tests), `integration/enforce.rs` (the routers in
//! the path), `benches/lab.rs` and `benches/enforce.rs` (the figures).

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

pub const VICTIM: &str = "192.0.2.2";
/// The attacker's address behind BIRD's edge (its default route).
pub const ATTACKER: &str = "203.0.113.9";

/// The edge router a flood or a ping goes through (`integration/lab` routes the attacker's two
/// source addresses through one each).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    Bird,
    Gobgp,
}

impl Edge {
    pub const BOTH: [Edge; 2] = [Edge::Bird, Edge::Gobgp];

    /// The attacker's source address that routes through this edge.
    pub fn source(self) -> Ipv4Addr {
        match self {
            Edge::Bird => Ipv4Addr::new(203, 0, 113, 9),
            Edge::Gobgp => Ipv4Addr::new(203, 0, 113, 13),
        }
    }

    /// The router's namespace suffix.
    pub fn ns(self) -> &'static str {
        match self {
            Edge::Bird => "bird",
            Edge::Gobgp => "gob",
        }
    }

    /// As in the lab's file names (`enforcer-NAME.log`) and the victim's counters (`from_NAME`).
    pub fn name(self) -> &'static str {
        match self {
            Edge::Bird => "bird",
            Edge::Gobgp => "gobgp",
        }
    }
}

/// A lab, down on drop.
pub struct Lab {
    pub id: String,
    pub dir: PathBuf,
    script: PathBuf,
    env: Vec<(String, String)>,
    /// Labs share the host side's address (198.51.100.5): one at a time in a process.
    _turn: std::sync::MutexGuard<'static, ()>,
}

static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Why the lab cannot run here, or `None`.
pub fn unavailable() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0");
    if !root {
        return Some("not root (network namespaces need it)".into());
    }
    for c in ["ip", "bird", "gobgpd", "curl", "nft", "python3"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {c}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!("{c} is missing"));
        }
    }
    None
}

impl Lab {
    /// `integration/lab up` with this id and settings (`LAB_INTERVAL`, `LAB_HOLD`, ...).
    pub fn up(id: &str, settings: &[(&str, &str)]) -> Result<Lab, String> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
        let dir = std::env::temp_dir().join(format!("deflect-lab-{id}"));
        let mut env: Vec<(String, String)> = vec![
            ("LAB_ID".into(), id.into()),
            ("LAB_DIR".into(), dir.display().to_string()),
            ("DEFLECT".into(), env!("CARGO_BIN_EXE_deflect").into()),
        ];
        env.extend(settings.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let lab = Lab {
            id: id.into(),
            dir,
            script: root.join("integration/lab"),
            env,
            _turn: turn,
        };
        // A lab left over by a killed run goes first.
        let _ = lab.run("down");
        let out = lab.run("up")?;
        if !out.0 {
            return Err(format!("lab up failed:\n{}", out.1));
        }
        Ok(lab)
    }

    fn run(&self, what: &str) -> Result<(bool, String), String> {
        let out = Command::new(&self.script)
            .arg(what)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", self.script.display()))?;
        Ok((
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        ))
    }

    pub fn ns(&self, which: &str) -> String {
        format!("dfl-{}-{which}", self.id)
    }

    pub fn token(&self) -> String {
        std::fs::read_to_string(self.dir.join("token")).unwrap_or_default()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default()
    }

    #[allow(dead_code)]
    pub fn pid(&self, name: &str) -> Option<u32> {
        std::fs::read_to_string(self.dir.join(format!("{name}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Runs a command in a namespace; its stdout, or an error with its stderr.
    pub fn exec(&self, ns: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns)])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// FlowSpec routes in BIRD's ft4 table, with their attributes, one string per route.
    pub fn bird_rules(&self) -> Vec<String> {
        let sock = self.dir.join("bird.ctl").display().to_string();
        let out = self
            .exec(
                "bird",
                &["birdc", "-s", &sock, "show", "route", "table", "ft4", "all"],
            )
            .unwrap_or_default();
        let mut rules: Vec<String> = Vec::new();
        for line in out.lines().skip(1) {
            if line.starts_with("flow4") {
                rules.push(line.to_string());
            } else if let Some(last) = rules.last_mut() {
                last.push('\n');
                last.push_str(line);
            }
        }
        rules
    }

    /// FlowSpec routes in GoBGP: (its text of the NLRI, the path's attributes as JSON).
    pub fn gobgp_rules(&self) -> Vec<(String, serde_json::Value)> {
        let out = self
            .exec(
                "gob",
                &[
                    "gobgp",
                    "-p",
                    "50051",
                    "global",
                    "rib",
                    "-a",
                    "ipv4-flowspec",
                    "-j",
                ],
            )
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let mut routes = Vec::new();
        if let Some(map) = v.as_object() {
            for (k, paths) in map {
                if let Some(p) = paths.as_array().and_then(|a| a.first()) {
                    routes.push((k.clone(), p["attrs"].clone()));
                }
            }
        }
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        routes
    }

    /// `deflect ARGS` against the lab's API, as an operator would run it.
    pub fn cli(&self, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_deflect"))
            .args(args)
            .env("DEFLECT_API", "http://198.51.100.6:8179")
            .env("DEFLECT_TOKEN", self.token())
            .output()
            .unwrap();
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// GET on the lab's API (from this namespace, over the host–controller link).
    pub fn api(&self, path: &str) -> serde_json::Value {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        agent
            .get(format!("http://198.51.100.6:8179{path}"))
            .header("Authorization", &format!("Bearer {}", self.token()))
            .call()
            .ok()
            .and_then(|mut r| r.body_mut().read_json().ok())
            .unwrap_or_default()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run("down");
    }
}

/// Runs `f` on a thread that entered namespace `ns` (sockets made there stay there).
pub fn in_netns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = File::open(&path)?;
        setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
        f()
    })
    .join()
    .map_err(|_| io::Error::other("namespace thread panicked"))?
}

/// What a flood is made of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// UDP from source port 123 (NTP amplification) to port 4444.
    Ntp,
    /// TCP SYNs to port 80.
    Syn,
    /// ICMP echo requests.
    Icmp,
    /// UDP from one ephemeral port to port 4444 (a plain UDP flood, no amplifier's port).
    Udp,
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends a flood from the attacker's namespace through BIRD's edge at `pps` until `stop` says so or
/// `max` passes (both bounds hold). Returns (packets sent, when the first one left).
pub fn flood(
    ns: &str,
    kind: Kind,
    pps: u64,
    max: Duration,
    stop: Arc<AtomicBool>,
) -> io::Result<(u64, Instant)> {
    flood_via(ns, Edge::Bird, kind, pps, max, stop, Arc::default())
}

/// [`flood`] through `edge`, counting what it sent in `sent` as it goes.
pub fn flood_via(
    ns: &str,
    edge: Edge,
    kind: Kind,
    pps: u64,
    max: Duration,
    stop: Arc<AtomicBool>,
    sent_so_far: Arc<AtomicU64>,
) -> io::Result<(u64, Instant)> {
    in_netns(ns, move || {
        let src = edge.source();
        let dst: Ipv4Addr = VICTIM.parse().map_err(io::Error::other)?;
        let raw = |p| socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::RAW, Some(p));
        let (udp, raw) = match kind {
            Kind::Ntp => (Some(UdpSocket::bind((src, 123))?), None),
            Kind::Udp => (Some(UdpSocket::bind((src, 0))?), None),
            Kind::Syn => (None, Some(raw(socket2::Protocol::TCP)?)),
            Kind::Icmp => (None, Some(raw(socket2::Protocol::ICMPV4)?)),
        };
        // The source address picks the edge (source routing in the attacker's namespace).
        if let Some(r) = &raw {
            r.bind(&SocketAddr::from((src, 0)).into())?;
        }
        let to = SocketAddr::from((dst, 4444));
        let payload = vec![0x5au8; 468];
        let packet = |n: u64| -> Vec<u8> {
            match kind {
                Kind::Syn => {
                    let sport = 1024 + (n % 60000) as u16;
                    let mut h = vec![0u8; 20];
                    h[0..2].copy_from_slice(&sport.to_be_bytes());
                    h[2..4].copy_from_slice(&80u16.to_be_bytes());
                    h[4..8].copy_from_slice(&(n as u32).to_be_bytes());
                    h[12] = 5 << 4;
                    h[13] = 0x02;
                    h[14..16].copy_from_slice(&64240u16.to_be_bytes());
                    let mut pseudo = Vec::with_capacity(32);
                    pseudo.extend_from_slice(&src.octets());
                    pseudo.extend_from_slice(&dst.octets());
                    pseudo.extend_from_slice(&[0, 6, 0, 20]);
                    pseudo.extend_from_slice(&h);
                    let c = checksum(&pseudo);
                    h[16..18].copy_from_slice(&c.to_be_bytes());
                    h
                }
                Kind::Icmp => echo_request(n as u16, 64),
                Kind::Ntp | Kind::Udp => Vec::new(),
            }
        };
        let start = Instant::now();
        let mut sent = 0u64;
        let dst_sa: socket2::SockAddr = SocketAddr::from((dst, 0)).into();
        while start.elapsed() < max && !stop.load(Ordering::Relaxed) {
            let due = (start.elapsed().as_secs_f64() * pps as f64) as u64 + 1;
            while sent < due {
                let ok = match (&udp, &raw) {
                    (Some(u), _) => u.send_to(&payload, to).is_ok(),
                    (_, Some(r)) => r.send_to(&packet(sent), &dst_sa).is_ok(),
                    _ => false,
                };
                if !ok {
                    break;
                }
                sent += 1;
            }
            sent_so_far.store(sent, Ordering::Relaxed);
            thread::sleep(Duration::from_micros(500));
        }
        Ok((sent, start))
    })
}

/// An ICMP echo request with identifier 1, sequence `seq` and `len` bytes in all.
fn echo_request(seq: u16, len: usize) -> Vec<u8> {
    let mut h = vec![0u8; len];
    h[0] = 8;
    h[4..6].copy_from_slice(&1u16.to_be_bytes());
    h[6..8].copy_from_slice(&seq.to_be_bytes());
    let c = checksum(&h);
    h[2..4].copy_from_slice(&c.to_be_bytes());
    h
}

/// Polls `f` every 10 ms until it gives `Some`, for at most `timeout`.
pub fn poll<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if let Some(v) = f() {
            return Some(v);
        }
        thread::sleep(Duration::from_millis(10));
    }
    None
}

impl Lab {
    /// Restarts a lab process by name (`gobgpd`, `bird`, `deflect`, `probe`) after killing it with
    /// `signal`; the command line is the one `integration/lab up` used.
    pub fn restart(&self, name: &str, signal: &str) -> Result<(), String> {
        if let Some(pid) = self.pid(name) {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
            // Bounded wait for it to be gone.
            let _ = poll(Duration::from_secs(5), || {
                (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            });
        }
        self.start(name)
    }

    /// Kills a lab process by name, with `signal`.
    pub fn kill(&self, name: &str, signal: &str) {
        if let Some(pid) = self.pid(name) {
            let _ = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
            let _ = poll(Duration::from_secs(5), || {
                (!std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(())
            });
        }
    }

    /// Starts a lab process by name, as `integration/lab up` does.
    pub fn start(&self, name: &str) -> Result<(), String> {
        let d = |f: &str| self.dir.join(f).display().to_string();
        let (ns, args): (&str, Vec<String>) = match name {
            "gobgpd" => (
                "gob",
                vec![
                    "gobgpd".into(),
                    "-f".into(),
                    d("gobgpd.toml"),
                    "--api-hosts".into(),
                    "127.0.0.1:50051".into(),
                ],
            ),
            "bird" => (
                "bird",
                vec![
                    "bird".into(),
                    "-f".into(),
                    "-c".into(),
                    d("bird.conf"),
                    "-s".into(),
                    d("bird.ctl"),
                    "-P".into(),
                    d("bird.pidfile"),
                ],
            ),
            "deflect" => (
                "ctl",
                vec![
                    env!("CARGO_BIN_EXE_deflect").into(),
                    "run".into(),
                    "--config".into(),
                    d("deflect.yaml"),
                ],
            ),
            other => return Err(format!("cannot start {other}")),
        };
        let log = File::options()
            .append(true)
            .create(true)
            .open(self.dir.join(format!("{name}.log")))
            .map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns(ns)])
            .args(&args)
            .env("LAB_TOKEN", self.token())
            .env(
                "LAB_NODE_TOKEN",
                std::fs::read_to_string(self.dir.join("node-token")).unwrap_or_default(),
            )
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        std::fs::write(self.dir.join(format!("{name}.pid")), child.id().to_string())
            .map_err(|e| e.to_string())?;
        // The lab's `down` stops it by the PID file; the handle is not needed.
        std::mem::forget(child);
        Ok(())
    }

    /// Both BGP sessions as the routers see them.
    pub fn sessions_up(&self) -> (bool, bool) {
        let sock = self.dir.join("bird.ctl").display().to_string();
        let bird = self
            .exec(
                "bird",
                &["birdc", "-s", &sock, "show", "protocols", "deflect"],
            )
            .is_ok_and(|o| o.contains("Established"));
        let gobgp = self
            .exec(
                "gob",
                &["gobgp", "-p", "50051", "neighbor", "203.0.113.5", "-j"],
            )
            .is_ok_and(|o| o.contains("\"session_state\":6"));
        (bird, gobgp)
    }

    /// `ip link set DEV up|down` in a namespace.
    pub fn link(&self, ns: &str, dev: &str, up: bool) {
        let _ = Command::new("ip")
            .args([
                "-n",
                &self.ns(ns),
                "link",
                "set",
                dev,
                if up { "up" } else { "down" },
            ])
            .status();
    }
}

/// A flood running on its own thread until stopped.
pub struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<thread::JoinHandle<io::Result<(u64, Instant)>>>,
}

impl Flood {
    /// Through BIRD's edge.
    pub fn start(lab: &Lab, kind: Kind, pps: u64, max: Duration) -> Flood {
        Flood::via(lab, Edge::Bird, kind, pps, max)
    }

    pub fn via(lab: &Lab, edge: Edge, kind: Kind, pps: u64, max: Duration) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let (ns, s, n) = (lab.ns("att"), stop.clone(), sent.clone());
        Flood {
            stop,
            sent,
            thread: Some(thread::spawn(move || {
                flood_via(&ns, edge, kind, pps, max, s, n)
            })),
        }
    }

    /// Packets sent so far (updated every half millisecond or so).
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Stops it: packets sent, and when the first one left.
    pub fn stop(mut self) -> (u64, Instant) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .and_then(|r| r.ok())
            .unwrap_or((0, Instant::now()))
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What the router's enforcer programmed: (rule comment, packets its counter saw), in rule order.
/// The comment names the route in the router's own words (see `integration/enforcer`).
pub type Enforced = Vec<(String, u64)>;

impl Lab {
    pub fn enforced(&self, edge: Edge) -> Enforced {
        let out = self
            .exec(
                edge.ns(),
                &["nft", "-j", "list", "table", "inet", "deflect_enforcer"],
            )
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        let mut rules = Vec::new();
        for item in v["nftables"].as_array().into_iter().flatten() {
            let rule = &item["rule"];
            let Some(comment) = rule["comment"].as_str() else {
                continue;
            };
            let packets = rule["expr"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|e| e["counter"]["packets"].as_u64())
                .unwrap_or(0);
            rules.push((comment.to_string(), packets));
        }
        rules
    }

    /// Packets the enforcer at `edge` counted on the rules for `route` (its name as the router
    /// prints it; a route may be several rules).
    pub fn enforced_packets(&self, edge: Edge, route: &str) -> Option<u64> {
        let rules: Vec<u64> = self
            .enforced(edge)
            .into_iter()
            .filter(|(c, _)| c.starts_with(route))
            .map(|(_, p)| p)
            .collect();
        (!rules.is_empty()).then(|| rules.iter().sum())
    }

    /// The blackhole routes the enforcer at `edge` installed.
    pub fn blackholes(&self, edge: Edge) -> String {
        self.exec(edge.ns(), &["ip", "route", "show", "proto", "199"])
            .unwrap_or_default()
    }

    /// Packets (from the attacker, any kind) that reached the victim through `edge`.
    pub fn victim_packets(&self, edge: Edge) -> u64 {
        let name = format!("from_{}", edge.name());
        let out = self
            .exec(
                "vic",
                &["nft", "-j", "list", "counter", "inet", "lab_victim", &name],
            )
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        v["nftables"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|i| i["counter"]["packets"].as_u64())
            .unwrap_or(0)
    }

    /// One ICMP echo from the attacker to the victim through `edge`: did the reply come within
    /// `timeout`?
    pub fn ping(&self, edge: Edge, timeout: Duration) -> bool {
        static SEQ: AtomicU64 = AtomicU64::new(1);
        let seq = SEQ.fetch_add(1, Ordering::Relaxed) as u16;
        in_netns(&self.ns("att"), move || {
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::RAW,
                Some(socket2::Protocol::ICMPV4),
            )?;
            s.bind(&SocketAddr::from((edge.source(), 0)).into())?;
            let to: Ipv4Addr = VICTIM.parse().map_err(io::Error::other)?;
            s.send_to(&echo_request(seq, 64), &SocketAddr::from((to, 0)).into())?;
            let deadline = Instant::now() + timeout;
            let mut buf = [0u8; 1500];
            while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                s.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
                let Ok(n) = io::Read::read(&mut &s, &mut buf) else {
                    return Ok(false);
                };
                let b = &buf[..n];
                if n < 20 {
                    continue;
                }
                let ihl = usize::from(b[0] & 0x0f) * 4;
                let reply = b.get(ihl..ihl + 8).is_some_and(|icmp| {
                    icmp[0] == 0
                        && icmp[4..6] == 1u16.to_be_bytes()
                        && icmp[6..8] == seq.to_be_bytes()
                }) && b[12..16] == to.octets();
                if reply {
                    return Ok(true);
                }
            }
            Ok(false)
        })
        .unwrap_or(false)
    }

    pub fn enforcer_log(&self, edge: Edge) -> String {
        self.log(&format!("enforcer-{}", edge.name()))
    }
}

/// The rule an NTP flood gets, as each router shows it.
pub const NTP_BIRD: &str = "flow4 { dst 192.0.2.2/32; proto 17; sport 123; }";
pub const NTP_GOBGP: &str = "[destination: 192.0.2.2/32][protocol: ==udp][source-port: ==123]";

impl Lab {
    pub fn bird_has_ntp(&self) -> bool {
        self.bird_rules().iter().any(|r| r.starts_with(NTP_BIRD))
    }

    pub fn gobgp_has_ntp(&self) -> bool {
        self.gobgp_rules().iter().any(|(k, _)| k == NTP_GOBGP)
    }
}
