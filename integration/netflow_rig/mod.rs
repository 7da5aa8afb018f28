//! A real exporter in the path: pmacct's `pmacctd` with its `nfprobe` plugin watches the victim's
//! link and exports NetFlow v5, v9 or IPFIX from the real packets to the real `deflect run`, which
//! announces its rule to a live GoBGP.
//!
//! ```text
//!  namespace tx                         namespace rx
//!  198.51.100.1-20 ── veth ──► 198.51.100.254, 203.0.113.77 (lo)
//!  (python3: NTP-shaped        pmacctd -i veth (nfprobe) ──► 127.0.0.1:PORT deflect run ──► GoBGP
//!   answers, bounded)                                                     (127.0.53.2)    (127.0.53.1)
//! ```
//!
//! Everything runs inside the two namespaces (`ip netns exec`); the test process reaches the API
//! from a thread that enters `rx` (`setns(2)`). On drop every process is killed by its PID and the
//! namespaces are deleted (with the veth pair). Shared by `integration/netflow.rs` and
//! `benches/netflow_lab.rs`.

#![allow(dead_code)]

#[path = "../probe_lab/mod.rs"]
mod probe_lab;
#[path = "../routers/mod.rs"]
pub mod routers;

use std::fs::{self, File};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use probe_lab::ip;
use routers::{Gobgp, Session, wait_for};
use serde_json::Value;

pub const VICTIM: &str = "203.0.113.77";
pub const READ: &str = "read-token-0123456789";
/// The rule the shipped-like policy below makes of the flood.
pub const RULE: &str = "[destination: 203.0.113.77/32][protocol: ==udp][source-port: ==123]";

/// Why the rig cannot run here, or `None`.
pub fn unavailable() -> Option<String> {
    if let Some(why) = probe_lab::unavailable() {
        return Some(why);
    }
    for (tool, package) in [
        ("pmacctd", "pmacct"),
        ("gobgpd", "gobgpd"),
        ("python3", "python3"),
        ("dumpcap", "tshark"),
    ] {
        if which(tool).is_none() {
            return Some(format!("{tool} is missing (apt-get install {package})"));
        }
    }
    None
}

/// Where `tool` is: on the PATH, or in /usr/sbin (not on every PATH, even root's).
pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

static RIGS: AtomicUsize = AtomicUsize::new(0);

/// What pmacctd exports.
#[derive(Debug, Clone, Copy)]
pub struct Export {
    /// 5, 9 or 10 (IPFIX).
    pub version: u8,
    /// pmacctd's `sampling_rate` (1 in N), if any.
    pub sampling: Option<u32>,
}

/// The two namespaces, deflect, GoBGP and (when started) pmacctd; all undone on drop.
pub struct Rig {
    pub tx: String,
    pub rx: String,
    pub dir: PathBuf,
    pub api_port: u16,
    pub collector_port: u16,
    n: usize,
    pub gobgp: Option<Gobgp>,
    deflect: Option<Child>,
    pmacctd: Option<Child>,
    dumpcap: Option<Child>,
}

impl Rig {
    /// The namespaces, deflect with a NetFlow collector trusting 127.0.0.1, and GoBGP peered.
    pub fn start(tag: &str) -> Result<Rig, String> {
        let pid = std::process::id();
        let n = RIGS.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("dfl-netflow-{pid}-{n}-{tag}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("policies")).map_err(|e| e.to_string())?;
        let mut rig = Rig {
            tx: format!("dfl-nf-{pid}-{n}-tx"),
            rx: format!("dfl-nf-{pid}-{n}-rx"),
            dir,
            // In a namespace of its own: any port is free.
            api_port: 8179,
            collector_port: 2055,
            n,
            gobgp: None,
            deflect: None,
            pmacctd: None,
            dumpcap: None,
        };
        rig.network()?;
        rig.daemons()?;
        Ok(rig)
    }

    /// Interface names: at most 15 bytes.
    pub fn veth_rx(&self) -> String {
        format!("dnr{}x{}", std::process::id(), self.n)
    }

    fn veth_tx(&self) -> String {
        format!("dnt{}x{}", std::process::id(), self.n)
    }

    fn network(&self) -> Result<(), String> {
        let (tx, rx, vt, vr) = (&self.tx, &self.rx, &self.veth_tx(), &self.veth_rx());
        ip(&["netns", "add", tx])?;
        ip(&["netns", "add", rx])?;
        ip(&[
            "link", "add", "name", vt, "netns", tx, "type", "veth", "peer", "name", vr, "netns", rx,
        ])?;
        for i in 1..=20 {
            ip(&[
                "-n",
                tx,
                "addr",
                "add",
                &format!("198.51.100.{i}/24"),
                "dev",
                vt,
            ])?;
        }
        ip(&["-n", rx, "addr", "add", "198.51.100.254/24", "dev", vr])?;
        ip(&[
            "-n",
            rx,
            "addr",
            "add",
            &format!("{VICTIM}/32"),
            "dev",
            "lo",
        ])?;
        for (ns, dev) in [(tx, vt), (rx, vr)] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n",
            tx,
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            "198.51.100.254",
        ])?;
        Ok(())
    }

    fn daemons(&mut self) -> Result<(), String> {
        fs::write(
            self.dir.join("policies/amplification.yaml"),
            "match:\n  vectors: [amplification]\nwithdraw_after: 1s\nsteps:\n  - announce: flowspec\n    match: [proto, sport]\n    action: discard\n",
        )
        .map_err(|e| e.to_string())?;
        let session = Session {
            router_addr: "127.0.53.1".parse().unwrap(),
            router_port: 1179,
            router_as: 65001,
            router_id: "192.0.2.254",
            deflect_addr: "127.0.53.2".parse().unwrap(),
            deflect_as: 65000,
            md5_password: None,
            graceful_restart: false,
        };
        self.gobgp = Some(Gobgp::start_in(session.clone(), Some(&self.rx))?);
        let yaml = format!(
            "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\ngraceful_restart: 0\npolicies: {}\n\
             api:\n  listen: 127.0.0.1:{api}\n  tokens:\n    - {{ name: viewer, token: {READ}, scope: read }}\n\
             neighbors:\n  - {{ name: gobgp, address: {}, port: {}, remote_as: 65001, local_address: {}, connect_retry: 1s }}\n\
             protected:\n  customers: [203.0.113.0/24]\n\
             detection:\n  thresholds:\n    floor_pps: {{ udp-amp: 2000 }}\n    warmup: 1s\n    cooldown: 1s\n\
             netflow:\n  listen: [127.0.0.1:{port}]\n  exporters:\n    - {{ address: 127.0.0.1, name: edge }}\n",
            self.dir.join("state").display(),
            self.dir.join("policies").display(),
            session.router_addr,
            session.router_port,
            session.deflect_addr,
            api = self.api_port,
            port = self.collector_port,
        );
        fs::write(self.dir.join("deflect.yaml"), yaml).map_err(|e| e.to_string())?;
        let log = File::create(self.dir.join("deflect.log")).map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.rx,
                env!("CARGO_BIN_EXE_deflect"),
                "run",
                "--config",
            ])
            .arg(self.dir.join("deflect.yaml"))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| e.to_string())?;
        self.deflect = Some(child);
        let g = self.gobgp.as_ref().unwrap();
        wait_for("the BGP session", Duration::from_secs(30), || {
            Ok(g.established()?.then_some(()))
        })
        .map_err(|e| format!("{e}\n{}", self.log()))?;
        Ok(())
    }

    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("deflect.log")).unwrap_or_default()
    }

    /// `GET path` on deflect's API, as JSON (`Null` when it does not answer).
    pub fn api(&self, path: &str) -> Value {
        probe_lab::api_get(&self.rx, self.api_port, READ, path).unwrap_or(Value::Null)
    }

    /// The FlowSpec rules in GoBGP's RIB, in its own text.
    pub fn rules(&self) -> Vec<String> {
        self.gobgp
            .as_ref()
            .and_then(|g| g.rib("ipv4-flowspec").ok())
            .map(|v| v.into_iter().map(|(k, _)| k).collect())
            .unwrap_or_default()
    }

    /// Starts pmacctd on the victim's link, exporting as `e` says with 1 s timeouts.
    pub fn export(&mut self, e: Export) -> Result<(), String> {
        self.stop_export();
        let conf = self.dir.join(format!("pmacctd-{}.conf", e.version));
        let mut text = format!(
            "daemonize: false\npcap_interface: {}\npcap_ifindex: sys\nplugins: nfprobe\n\
             nfprobe_receiver: 127.0.0.1:{}\nnfprobe_source_ip: 127.0.0.1\nnfprobe_version: {}\n\
             nfprobe_engine: {}\n\
             nfprobe_timeouts: tcp=1:tcp.rst=1:tcp.fin=1:udp=1:icmp=1:general=1:maxlife=1:expint=1\n",
            self.veth_rx(),
            self.collector_port,
            e.version,
            // v5 has an engine type and id; v9 and IPFIX a source id (observation domain).
            if e.version == 5 { "1:7" } else { "7" },
        );
        if let Some(n) = e.sampling {
            text.push_str(&format!("sampling_rate: {n}\n"));
        }
        fs::write(&conf, text).map_err(|e| e.to_string())?;
        let log = File::create(self.dir.join("pmacctd.log")).map_err(|e| e.to_string())?;
        let child = Command::new("ip")
            .args(["netns", "exec", &self.rx])
            .arg(which("pmacctd").ok_or("pmacctd is missing (apt-get install pmacct)")?)
            .arg("-f")
            .arg(&conf)
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("pmacctd (apt-get install pmacct): {e}"))?;
        self.pmacctd = Some(child);
        // pmacctd opens its capture within a second or so.
        thread::sleep(Duration::from_millis(1500));
        Ok(())
    }

    pub fn stop_export(&mut self) {
        stop(&mut self.pmacctd, "INT");
    }

    /// Captures what reaches the collector (dumpcap in rx, on lo) into `file`.
    pub fn capture(&mut self, file: &PathBuf) -> Result<(), String> {
        let child = Command::new("ip")
            .args(["netns", "exec", &self.rx, "dumpcap", "-q", "-i", "lo", "-f"])
            .arg(format!("udp dst port {}", self.collector_port))
            .arg("-w")
            .arg(file)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("dumpcap (apt-get install tshark): {e}"))?;
        self.dumpcap = Some(child);
        thread::sleep(Duration::from_millis(1500));
        Ok(())
    }

    pub fn stop_capture(&mut self) {
        stop(&mut self.dumpcap, "INT");
    }

    /// NTP-shaped answers from the 20 reflectors to the victim, `pps` for `seconds`, from port 123
    /// to spread destination ports, 468-byte payloads; returns the datagrams sent.
    pub fn flood(&self, pps: u32, seconds: f64) -> Result<u64, String> {
        let script = format!(
            r#"
import socket, time
socks = []
for i in range(1, 21):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.51.100.%d" % i, 123))
    socks.append(s)
payload = b"\x24" + b"\x00" * 467
pps, seconds = {pps}, {seconds}
start = time.monotonic()
sent = 0
while True:
    now = time.monotonic() - start
    if now >= seconds:
        break
    due = int(now * pps)
    while sent < due and sent < pps * seconds:
        try:
            socks[sent % 20].sendto(payload, ("{VICTIM}", 1024 + sent % 4000))
        except OSError:
            pass
        sent += 1
    time.sleep(0.001)
print(sent)
"#
        );
        let out = Command::new("ip")
            .args(["netns", "exec", &self.tx, "python3", "-c", &script])
            .output()
            .map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|e| format!("{e}"))
    }

    /// From now, how long until GoBGP holds the flood's rule (bounded by `limit`).
    pub fn until_rule(&self, since: Instant, limit: Duration) -> Option<Duration> {
        while since.elapsed() < limit {
            if self.rules().iter().any(|r| r == RULE) {
                return Some(since.elapsed());
            }
            thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// Waits (bounded) until GoBGP holds no rule.
    pub fn until_withdrawn(&self, limit: Duration) -> Result<(), String> {
        wait_for("the rule withdrawn", limit, || {
            Ok(self.rules().is_empty().then_some(()))
        })
    }
}

fn stop(child: &mut Option<Child>, signal: &str) {
    if let Some(mut c) = child.take() {
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &c.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        stop(&mut self.dumpcap, "INT");
        stop(&mut self.pmacctd, "INT");
        stop(&mut self.deflect, "TERM");
        self.gobgp = None;
        let _ = ip(&["netns", "del", &self.tx]);
        let _ = ip(&["netns", "del", &self.rx]);
        let _ = fs::remove_dir_all(&self.dir);
    }
}
