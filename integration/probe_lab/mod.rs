//! A two-namespace lab for the probe, on the real kernel: namespaces `a` and `b` joined by a veth
//! pair (192.0.2.1/24 and 2001:db8::1/64 in `a`, 192.0.2.2/24 and 2001:db8::2/64 in `b`), a telemetry
//! receiver listening inside `b`, and the real `deflect probe` binary run in `b` with `ip netns exec`.
//!
//! The test process never moves: it makes sockets inside a namespace from a short-lived thread that
//! enters it (`setns(2)`); a socket stays in the namespace it was made in. Everything is undone on
//! drop, also when a test fails: the probe is killed by its PID, the receiver stopped, the
//! namespaces deleted (which deletes the veth pair).
//!
//! Shared by `integration/probe.rs` and `benches/probe.rs`.

#![allow(dead_code)]

use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use deflect::telemetry::{Encoding, Report};
use nix::sched::{CloneFlags, setns};

pub const A4: &str = "192.0.2.1";
pub const B4: &str = "192.0.2.2";
pub const A6: &str = "2001:db8::1";
pub const B6: &str = "2001:db8::2";

/// Why the lab cannot run here (not root, no `ip`), or `None`.
pub fn unavailable() -> Option<String> {
    // Effective UID 0 is what `ip netns add` needs.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if euid != "0" {
        return Some("not root (network namespaces need it)".into());
    }
    match Command::new("ip").arg("-V").output() {
        Ok(o) if o.status.success() => None,
        _ => Some("`ip` (iproute2) is missing".into()),
    }
}

/// Runs `ip ARGS`, failing with its stderr.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `f` on a thread inside network namespace `ns`, returning its result.
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

/// `GET path` with `token` on the API at 127.0.0.1:`port` inside namespace `ns`, as JSON
/// (`None` when it cannot be reached or is not JSON).
pub fn api_get(ns: &str, port: u16, token: &str, path: &str) -> Option<serde_json::Value> {
    let url = format!("http://127.0.0.1:{port}{path}");
    let auth = format!("Bearer {token}");
    in_netns(ns, move || {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(5)))
            .build()
            .new_agent();
        let mut r = agent
            .get(&url)
            .header("Authorization", &auth)
            .call()
            .map_err(io::Error::other)?;
        let text = r.body_mut().read_to_string().unwrap_or_default();
        Ok(serde_json::from_str(&text).ok())
    })
    .ok()
    .flatten()
}

static LABS: AtomicUsize = AtomicUsize::new(0);

/// Two namespaces and a veth pair; deleted on drop, with every process started in them.
#[derive(Debug)]
pub struct Lab {
    pub ns_a: String,
    pub ns_b: String,
    pub veth_a: String,
    pub veth_b: String,
    pub dir: PathBuf,
    children: Vec<Child>,
}

impl Lab {
    pub fn new(tag: &str) -> Result<Lab, String> {
        let pid = std::process::id();
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dfl-probe-{pid}-{n}-{tag}"));
        fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let lab = Lab {
            ns_a: format!("dfl-p-{pid}-{n}-a"),
            ns_b: format!("dfl-p-{pid}-{n}-b"),
            // Interface names: at most 15 bytes.
            veth_a: format!("dfa{pid}x{n}"),
            veth_b: format!("dfb{pid}x{n}"),
            dir,
            children: Vec::new(),
        };
        // From here on, Drop cleans whatever was made.
        lab.setup()?;
        Ok(lab)
    }

    fn setup(&self) -> Result<(), String> {
        let (a, b, va, vb) = (&self.ns_a, &self.ns_b, &self.veth_a, &self.veth_b);
        ip(&["netns", "add", a])?;
        ip(&["netns", "add", b])?;
        ip(&[
            "link", "add", "name", va, "netns", a, "type", "veth", "peer", "name", vb, "netns", b,
        ])?;
        for (ns, dev, v4, v6) in [(a, va, A4, A6), (b, vb, B4, B6)] {
            ip(&["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", dev])?;
            ip(&[
                "-n",
                ns,
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                dev,
                "nodad",
            ])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Starts `deflect probe ARGS` in namespace `b`, its stderr in a file (see [`Lab::probe_log`]).
    pub fn start_probe(&mut self, args: &[&str]) -> Result<u32, String> {
        self.spawn_in_b(env!("CARGO_BIN_EXE_deflect"), "probe", args)
    }

    /// Starts `exe sub ARGS` in namespace `b` (`ip netns exec` execs it: the PID is its own).
    pub fn spawn_in_b(&mut self, exe: &str, sub: &str, args: &[&str]) -> Result<u32, String> {
        self.spawn_in_b_logged(exe, sub, args, "probe.log")
    }

    /// [`Lab::spawn_in_b`] with its stderr in `log` (in the lab's directory).
    pub fn spawn_in_b_logged(
        &mut self,
        exe: &str,
        sub: &str,
        args: &[&str],
        log: &str,
    ) -> Result<u32, String> {
        let log = File::create(self.dir.join(log)).map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.ns_b, exe, sub])
            .args(args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("ip netns exec: {e}"))?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// What the probe logged so far.
    pub fn probe_log(&self) -> String {
        fs::read_to_string(self.dir.join("probe.log")).unwrap_or_default()
    }

    /// Waits (bounded) for the probe started last to exit; its exit status.
    pub fn wait_probe_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let child = self.children.last_mut()?;
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Ok(Some(s)) = child.try_wait() {
                return Some(s);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// Kills every process started in the lab (by PID) and reaps it.
    pub fn kill_all(&mut self) {
        for mut c in self.children.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.kill_all();
        let _ = ip(&["netns", "del", &self.ns_a]);
        let _ = ip(&["netns", "del", &self.ns_b]);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// One report as received, with when it arrived (wall clock, ms since the epoch).
#[derive(Debug, Clone)]
pub struct Received {
    pub at_ms: u64,
    pub auth: String,
    pub report: Report,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A minimal HTTP/1.1 telemetry receiver (keep-alive, `Content-Length` bodies), answering 202 to
/// every POST whose body is a valid report, 400 otherwise. Stopped on drop.
#[derive(Debug)]
pub struct Receiver {
    pub addr: SocketAddr,
    pub reports: Arc<Mutex<Vec<Received>>>,
    /// Bodies that were not valid reports.
    pub invalid: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
}

impl Receiver {
    /// A port on 127.0.0.1 in `ns` that nothing listens on (yet).
    pub fn free_port(ns: &str) -> io::Result<u16> {
        in_netns(ns, || {
            Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
        })
    }

    /// Listens on 127.0.0.1:`port` in namespace `ns` (0: any port).
    pub fn start(ns: &str, port: u16) -> io::Result<Receiver> {
        let listener = in_netns(ns, move || TcpListener::bind(("127.0.0.1", port)))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let reports = Arc::new(Mutex::new(Vec::new()));
        let invalid = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (r, i, s) = (reports.clone(), invalid.clone(), stop.clone());
        thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        let (r, i, s) = (r.clone(), i.clone(), s.clone());
                        thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let _ = serve(conn, &r, &i, &s);
                        });
                    }
                    Err(_) => thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Ok(Receiver {
            addr,
            reports,
            invalid,
            stop,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn reports(&self) -> Vec<Received> {
        self.reports.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.reports.lock().unwrap().len()
    }

    /// Polls (bounded) until `f` holds for the reports received.
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        f: impl Fn(&[Received]) -> bool,
    ) -> Result<(), String> {
        let start = Instant::now();
        loop {
            if f(&self.reports.lock().unwrap()) {
                return Ok(());
            }
            if start.elapsed() > timeout {
                return Err(format!("timed out after {timeout:?} waiting for {what}"));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Receiver {
    /// The accept loop and the connections see the flag within half a second and close.
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    conn: TcpStream,
    reports: &Mutex<Vec<Received>>,
    invalid: &Mutex<Vec<String>>,
    stop: &AtomicBool,
) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_millis(500)))?;
    conn.set_nodelay(true)?;
    let mut r = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    loop {
        let mut line = String::new();
        match r.read_line(&mut line) {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                continue;
            }
            Err(e) => return Err(e),
        }
        let mut len = 0usize;
        let mut auth = String::new();
        // The probe sends MessagePack; JSON is what a request without a type is.
        let mut encoding = Some(Encoding::Json);
        loop {
            let mut h = String::new();
            r.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.to_ascii_lowercase().as_str() {
                    "content-length" => len = v.trim().parse().unwrap_or(0),
                    "authorization" => auth = v.trim().to_string(),
                    "content-type" => encoding = Encoding::of_content_type(v.trim()),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        let decoded = encoding.map(|e| e.decode(&body));
        let status = match decoded {
            Some(Ok(report)) if report.validate().is_ok() => {
                reports.lock().unwrap().push(Received {
                    at_ms: now_ms(),
                    auth,
                    report,
                });
                "202 Accepted"
            }
            _ => {
                invalid
                    .lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&body).into_owned());
                "400 Bad Request"
            }
        };
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        // One write: with Nagle, a response in pieces waits for the client's delayed ACK.
        w.write_all(format!("HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n").as_bytes())?;
    }
}

/// A paced UDP sender in namespace `ns`: `count` datagrams of `len` bytes from `from` to `to`, at
/// `pps` per second (in 1 ms bursts), stopping at `max_time` whatever. Returns (sent, seconds).
pub fn send_udp(
    ns: &str,
    from: SocketAddr,
    to: SocketAddr,
    count: u64,
    pps: u64,
    len: usize,
    max_time: Duration,
) -> io::Result<(u64, f64)> {
    send_udp_spread(ns, from, to, 1, count, pps, len, max_time)
}

/// The same, to `spread` destination ports from `to`'s, in turn: how a reflection looks (answers
/// go to whatever ports the spoofed requests came from).
#[allow(clippy::too_many_arguments)]
pub fn send_udp_spread(
    ns: &str,
    from: SocketAddr,
    to: SocketAddr,
    spread: u16,
    count: u64,
    pps: u64,
    len: usize,
    max_time: Duration,
) -> io::Result<(u64, f64)> {
    in_netns(ns, move || {
        let sock = UdpSocket::bind(from)?;
        let payload = vec![0x5a; len];
        let start = Instant::now();
        let mut sent = 0u64;
        while sent < count && start.elapsed() < max_time {
            // Catch up to the schedule, one millisecond at a time.
            let due = ((start.elapsed().as_secs_f64() * pps as f64) as u64 + 1).min(count);
            while sent < due {
                let port = to
                    .port()
                    .wrapping_add((sent % u64::from(spread.max(1))) as u16);
                match sock.send_to(&payload, SocketAddr::new(to.ip(), port)) {
                    Ok(_) => sent += 1,
                    // A full queue (ENOBUFS) or a neighbour not yet resolved: try again later.
                    Err(_) => break,
                }
            }
            thread::sleep(Duration::from_micros(500));
        }
        Ok((sent, start.elapsed().as_secs_f64()))
    })
}

/// Sends `count` TCP SYNs from namespace `ns` to `to` (non-blocking connects to a closed port: each
/// one is a SYN answered by a RST). Returns how many were sent.
pub fn send_syns(ns: &str, to: SocketAddr, count: u64) -> io::Result<u64> {
    in_netns(ns, move || {
        let domain = if to.is_ipv4() {
            socket2::Domain::IPV4
        } else {
            socket2::Domain::IPV6
        };
        let mut sent = 0;
        for _ in 0..count {
            let s = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
            s.set_nonblocking(true)?;
            match s.connect(&to.into()) {
                Ok(()) => sent += 1,
                Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => sent += 1,
                Err(_) => {}
            }
            thread::sleep(Duration::from_micros(200));
        }
        Ok(sent)
    })
}

/// Sends a few packets from `a` to `b` so that neighbour discovery is done before a measurement.
pub fn warm_up(ns: &str, from: IpAddr, to: IpAddr) -> io::Result<()> {
    in_netns(ns, move || {
        let sock = UdpSocket::bind(SocketAddr::new(from, 0))?;
        for _ in 0..3 {
            let _ = sock.send_to(b"warm-up", SocketAddr::new(to, 9));
            thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    })
}

/// `utime + stime` of process `pid`, in clock ticks (`USER_HZ`, 100 on Linux), and its resident set
/// in kB.
pub fn proc_usage(pid: u32) -> io::Result<(u64, u64)> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or_else(|| io::Error::other("bad stat"))?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state); utime and stime are fields 14 and 15.
    let ticks = f
        .get(11)
        .zip(f.get(12))
        .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
        .ok_or_else(|| io::Error::other("bad stat fields"))?;
    let status = fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok((ticks, rss))
}
