//! The namespace lab (`integration/lab`) driven from Rust: bring it up and down, send bounded
//! floods from the attacker's namespace, read what each router holds. Shared by
//! `integration/lab.rs` (the end-to-end and fault tests) and `benches/lab.rs` (the figures).

use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use nix::sched::{CloneFlags, setns};

pub const VICTIM: &str = "192.0.2.2";
pub const ATTACKER: &str = "192.0.2.1";

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
    for c in ["ip", "bird", "gobgpd", "curl"] {
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

/// Sends a flood from the attacker's namespace at `pps` until `stop` says so or `max` passes
/// (both bounds hold). Returns (packets sent, when the first one left).
pub fn flood(
    ns: &str,
    kind: Kind,
    pps: u64,
    max: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> io::Result<(u64, Instant)> {
    in_netns(ns, move || {
        let src: Ipv4Addr = ATTACKER.parse().map_err(io::Error::other)?;
        let dst: Ipv4Addr = VICTIM.parse().map_err(io::Error::other)?;
        let (udp, raw) = match kind {
            Kind::Ntp => (Some(UdpSocket::bind((src, 123))?), None),
            Kind::Syn => (
                None,
                Some(socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::RAW,
                    Some(socket2::Protocol::TCP),
                )?),
            ),
            Kind::Icmp => (
                None,
                Some(socket2::Socket::new(
                    socket2::Domain::IPV4,
                    socket2::Type::RAW,
                    Some(socket2::Protocol::ICMPV4),
                )?),
            ),
        };
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
                Kind::Icmp => {
                    let mut h = vec![0u8; 64];
                    h[0] = 8;
                    h[4..6].copy_from_slice(&1u16.to_be_bytes());
                    h[6..8].copy_from_slice(&(n as u16).to_be_bytes());
                    let c = checksum(&h);
                    h[2..4].copy_from_slice(&c.to_be_bytes());
                    h
                }
                Kind::Ntp => Vec::new(),
            }
        };
        let start = Instant::now();
        let mut sent = 0u64;
        let dst_sa: socket2::SockAddr = SocketAddr::from((dst, 0)).into();
        while start.elapsed() < max && !stop.load(std::sync::atomic::Ordering::Relaxed) {
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
            thread::sleep(Duration::from_micros(500));
        }
        Ok((sent, start))
    })
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
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<thread::JoinHandle<io::Result<(u64, Instant)>>>,
}

impl Flood {
    pub fn start(lab: &Lab, kind: Kind, pps: u64, max: Duration) -> Flood {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (ns, s) = (lab.ns("att"), stop.clone());
        Flood {
            stop,
            thread: Some(thread::spawn(move || flood(&ns, kind, pps, max, s))),
        }
    }

    /// Stops it: packets sent, and when the first one left.
    pub fn stop(mut self) -> (u64, Instant) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .and_then(|r| r.ok())
            .unwrap_or((0, Instant::now()))
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
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
