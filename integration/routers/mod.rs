//! Live routers for interop tests: BIRD 2 and GoBGP started as plain processes on loopback, with
//! generated configs, queried through their own CLIs (`birdc`, `gobgp -j`).
//!
//! Every router gets its own temporary directory and its own 127.0.x.y address, so tests run in
//! parallel without sharing ports. Every wait is a bounded poll. Each router is stopped by its PID
//! when dropped (SIGTERM, then SIGKILL after two seconds), and its directory is removed.

#![allow(dead_code)]

use std::fs;
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub type Result<T> = std::result::Result<T, String>;

/// A free TCP port on `addr` (bound, then released).
pub fn free_port(addr: IpAddr) -> u16 {
    TcpListener::bind(SocketAddr::new(addr, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Polls `f` every 100 ms until it returns `Some`, for at most `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let start = Instant::now();
    let mut last = String::new();
    loop {
        match f() {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = e,
        }
        if start.elapsed() > timeout {
            return Err(format!(
                "timed out after {timeout:?} waiting for {what} (last error: {last})"
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "deflect-{tag}-{}-{}",
        std::process::id(),
        rand_suffix()
    ));
    let _ = fs::create_dir_all(&d);
    d
}

fn rand_suffix() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish() & 0xffff_ffff
}

fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let pid = c.id() as i32;
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status();
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(2) {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        let _ = c.wait();
    }
}

fn tail(path: &Path) -> String {
    let s = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// What a router needs to know about deflect's side of the session.
#[derive(Debug, Clone)]
pub struct Session {
    /// The router's own address and BGP port.
    pub router_addr: IpAddr,
    pub router_port: u16,
    pub router_as: u32,
    pub router_id: &'static str,
    /// deflect's address and AS.
    pub deflect_addr: IpAddr,
    pub deflect_as: u32,
    pub md5_password: Option<String>,
    /// Keep deflect's routes while it restarts (RFC 4724 helper mode).
    pub graceful_restart: bool,
}

// ---------------------------------------------------------------------------------------------

/// A BIRD 2 process.
pub struct Bird {
    pub session: Session,
    dir: PathBuf,
    child: Option<Child>,
}

impl Bird {
    pub fn start(session: Session) -> Result<Bird> {
        Bird::start_with(session, "")
    }

    /// BIRD with `extra` at the end of its config: static routes that resolve the next hops
    /// deflect announces (a discard route for RTBH and S/RTBH, a path to a scrubbing service),
    /// as a real edge would have them.
    pub fn start_with(session: Session, extra: &str) -> Result<Bird> {
        let dir = temp_dir("bird");
        let s = &session;
        let password = s
            .md5_password
            .as_ref()
            .map(|p| format!("  password \"{p}\";\n"))
            .unwrap_or_default();
        let gr = if s.graceful_restart {
            "  graceful restart on;\n"
        } else {
            ""
        };
        let config = format!(
            "router id {rid};\nlog \"{log}\" all;\nflow4 table ft4;\nflow6 table ft6;\nprotocol device {{}}\n\
             protocol bgp deflect {{\n  local {ra} port {rp} as {ras};\n  neighbor {da} as {das};\n  multihop 2;\n  passive on;\n\
             {password}{gr}  ipv4 {{ import all; export none; }};\n  ipv6 {{ import all; export none; }};\n\
             flow4 {{ table ft4; import all; export none; }};\n  flow6 {{ table ft6; import all; export none; }};\n}}\n{extra}",
            rid = s.router_id,
            log = dir.join("bird.log").display(),
            ra = s.router_addr,
            rp = s.router_port,
            ras = s.router_as,
            da = s.deflect_addr,
            das = s.deflect_as,
        );
        fs::write(dir.join("bird.conf"), config).map_err(|e| e.to_string())?;
        let mut b = Bird {
            session,
            dir,
            child: None,
        };
        b.spawn()?;
        Ok(b)
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("bird.ctl")
    }

    fn spawn(&mut self) -> Result<()> {
        let child = Command::new("bird")
            .arg("-c")
            .arg(self.dir.join("bird.conf"))
            .arg("-s")
            .arg(self.socket())
            .arg("-P")
            .arg(self.dir.join("bird.pid"))
            .arg("-f")
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.dir.join("bird.stderr")).map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot start bird (is the bird2 package installed?): {e}"))?;
        self.child = Some(child);
        wait_for("BIRD's control socket", Duration::from_secs(10), || {
            Ok(self.birdc("show status").ok())
        })?;
        Ok(())
    }

    pub fn birdc(&self, cmd: &str) -> Result<String> {
        run(Command::new("birdc")
            .arg("-s")
            .arg(self.socket())
            .args(cmd.split_whitespace()))
    }

    pub fn established(&self) -> Result<bool> {
        Ok(self
            .birdc("show protocols deflect")?
            .contains("Established"))
    }

    /// `(rule text as BIRD prints it, ext communities)` from `show route table ft4|ft6 all`.
    pub fn flow_routes(&self, table: &str) -> Result<Vec<(String, Vec<String>)>> {
        let out = self.birdc(&format!("show route table {table} all"))?;
        let mut routes: Vec<(String, Vec<String>)> = Vec::new();
        for line in out.lines() {
            if line.starts_with("flow") {
                let rule = line
                    .split(" [")
                    .next()
                    .unwrap_or(line)
                    .split("  ")
                    .next()
                    .unwrap_or(line)
                    .trim();
                routes.push((rule.to_string(), Vec::new()));
            } else if let Some(ec) = line.trim().strip_prefix("BGP.ext_community: ") {
                if let Some(r) = routes.last_mut() {
                    r.1 = ec
                        .split(") (")
                        .map(|s| s.trim_matches(|c| c == '(' || c == ')').to_string())
                        .collect();
                }
            }
        }
        Ok(routes)
    }

    /// `(prefix, next hop, communities)` from `show route table master4|master6 all`.
    pub fn unicast_routes(&self, table: &str) -> Result<Vec<(String, String, String)>> {
        let out = self.birdc(&format!("show route table {table} all"))?;
        let mut routes: Vec<(String, String, String)> = Vec::new();
        for line in out.lines() {
            let t = line.trim();
            if !line.starts_with(char::is_whitespace)
                && (line.contains('/') && !line.starts_with("Table"))
            {
                let prefix = line
                    .split_whitespace()
                    .next()
                    .unwrap_or_default()
                    .to_string();
                routes.push((prefix, String::new(), String::new()));
            } else if let Some(nh) = t.strip_prefix("BGP.next_hop: ") {
                if let Some(r) = routes.last_mut() {
                    r.1 = nh.to_string();
                }
            } else if let Some(c) = t.strip_prefix("BGP.community: ") {
                if let Some(r) = routes.last_mut() {
                    r.2 = c.to_string();
                }
            }
        }
        Ok(routes)
    }

    /// Stops BIRD by PID and starts it again with the same config.
    pub fn restart(&mut self) -> Result<()> {
        stop(&mut self.child);
        self.spawn()
    }

    pub fn log(&self) -> String {
        tail(&self.dir.join("bird.log"))
    }
}

impl Drop for Bird {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------------------------

/// A GoBGP process.
pub struct Gobgp {
    pub session: Session,
    api_port: u16,
    dir: PathBuf,
    child: Option<Child>,
    /// The network namespace it runs in (`ip netns exec`), if not this one.
    netns: Option<String>,
}

impl Gobgp {
    pub fn start(session: Session) -> Result<Gobgp> {
        Gobgp::start_in(session, None)
    }

    /// Starts GoBGP inside network namespace `netns`; its CLI is run there too.
    pub fn start_in(session: Session, netns: Option<&str>) -> Result<Gobgp> {
        let dir = temp_dir("gobgp");
        let s = &session;
        let api_port = free_port("127.0.0.1".parse().map_err(|_| "address")?);
        let mut families = String::new();
        for f in [
            "ipv4-flowspec",
            "ipv6-flowspec",
            "ipv4-unicast",
            "ipv6-unicast",
        ] {
            families.push_str(&format!(
                "  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"{f}\"\n"
            ));
            if s.graceful_restart {
                families.push_str(
                    "    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n",
                );
            }
        }
        let password = s
            .md5_password
            .as_ref()
            .map(|p| format!("    auth-password = \"{p}\"\n"))
            .unwrap_or_default();
        let gr = if s.graceful_restart {
            "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = 120\n"
        } else {
            ""
        };
        let config = format!(
            "[global.config]\n  as = {ras}\n  router-id = \"{rid}\"\n  port = {rp}\n  local-address-list = [\"{ra}\"]\n\
             [global.apply-policy.config]\n  default-import-policy = \"accept-route\"\n\
             [[neighbors]]\n  [neighbors.config]\n    neighbor-address = \"{da}\"\n    peer-as = {das}\n{password}\
             {gr}  [neighbors.timers.config]\n    idle-hold-time-after-reset = 1\n  [neighbors.transport.config]\n    passive-mode = true\n    local-address = \"{ra}\"\n{families}",
            ras = s.router_as,
            rid = s.router_id,
            rp = s.router_port,
            ra = s.router_addr,
            da = s.deflect_addr,
            das = s.deflect_as,
        );
        fs::write(dir.join("gobgp.toml"), config).map_err(|e| e.to_string())?;
        let mut g = Gobgp {
            session,
            api_port,
            dir,
            child: None,
            netns: netns.map(str::to_string),
        };
        g.spawn()?;
        Ok(g)
    }

    fn spawn(&mut self) -> Result<()> {
        let log = fs::File::create(self.dir.join("gobgpd.log")).map_err(|e| e.to_string())?;
        let child = self
            .command("gobgpd")
            .arg("-f")
            .arg(self.dir.join("gobgp.toml"))
            .arg("--api-hosts")
            .arg(format!("127.0.0.1:{}", self.api_port))
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("cannot start gobgpd (is the gobgpd package installed?): {e}"))?;
        self.child = Some(child);
        wait_for("GoBGP's API", Duration::from_secs(10), || {
            Ok(self.gobgp("global").ok())
        })?;
        Ok(())
    }

    /// `program`, in the namespace GoBGP runs in.
    fn command(&self, program: &str) -> Command {
        match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => Command::new(program),
        }
    }

    pub fn gobgp(&self, args: &str) -> Result<String> {
        run(self
            .command("gobgp")
            .arg("-p")
            .arg(self.api_port.to_string())
            .args(args.split_whitespace()))
    }

    pub fn established(&self) -> Result<bool> {
        let out = self.gobgp(&format!("neighbor {} -j", self.session.deflect_addr))?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        Ok(v["state"]["session_state"] == 6)
    }

    /// The RIB of `family` as GoBGP's JSON: its own text of each NLRI, and the path's attributes.
    pub fn rib(&self, family: &str) -> Result<Vec<(String, serde_json::Value)>> {
        let out = self.gobgp(&format!("global rib -a {family} -j"))?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
        let mut routes = Vec::new();
        if let Some(map) = v.as_object() {
            for (k, paths) in map {
                if let Some(p) = paths.as_array().and_then(|a| a.first()) {
                    routes.push((k.clone(), p["attrs"].clone()));
                }
            }
        }
        routes.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(routes)
    }

    pub fn restart(&mut self) -> Result<()> {
        stop(&mut self.child);
        self.spawn()
    }

    pub fn log(&self) -> String {
        tail(&self.dir.join("gobgpd.log"))
    }
}

impl Drop for Gobgp {
    fn drop(&mut self) {
        stop(&mut self.child);
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The attribute of `type_code` in GoBGP's JSON attribute list.
pub fn gobgp_attr(attrs: &serde_json::Value, type_code: u64) -> Option<&serde_json::Value> {
    attrs.as_array()?.iter().find(|a| a["type"] == type_code)
}
