//! The harness the ingest bench runs collectors in: pmacct's daemons (`sfacctd`, `nfacctd`) and
//! our own receiver as a child process, fed the same datagrams over UDP on 127.0.0.1, and the CPU
//! time of the process doing the work read from the scheduler.
//!
//! Generalised from `sflow/benches/decode.rs` (which keeps its own copy of the sfacctd part):
//! the daemon is a parameter ([`Daemon`]), and the driver ([`drive`]) works on any process by
//! PID. Every process started here is stopped by its PID, and every loop and wait is bounded.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Run time of the calling thread, from the scheduler, in nanoseconds.
pub fn thread_cpu_ns() -> u64 {
    schedstat_ns(Path::new("/proc/thread-self/schedstat")).unwrap_or(0)
}

fn schedstat_ns(path: &Path) -> Option<u64> {
    fs::read_to_string(path)
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Run time of every thread of process `pid`, in nanoseconds.
pub fn process_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .take(1024)
        .filter_map(|t| schedstat_ns(&t.ok()?.path().join("schedstat")))
        .sum()
}

/// User and system CPU time of process `pid` (all its threads), in clock ticks.
pub fn user_system_ticks(pid: u32) -> (u64, u64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: state is the 1st, utime the 12th, stime the 13th.
    let f: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse().ok()).unwrap_or(0);
    (tick(11), tick(12))
}

/// Whether process `pid` exists and is not a zombie.
fn running(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let state = s.rsplit(')').next()?.split_whitespace().next()?.to_owned();
            Some(state != "Z")
        })
        .unwrap_or(false)
}

fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The receive queue (octets) and drop count of the UDP sockets bound to 127.0.0.1:`port`
/// (summed, when shards share it).
pub fn udp_queue(port: u16) -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/net/udp").ok()?;
    let local = format!("0100007F:{port:04X}");
    let mut found = None;
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) == Some(&local.as_str()) {
            let rx = f.get(4)?.split(':').nth(1)?;
            let rx = u64::from_str_radix(rx, 16).ok()?;
            let drops: u64 = f.last()?.parse().ok()?;
            let (r, d) = found.unwrap_or((0, 0));
            found = Some((r + rx, d + drops));
        }
    }
    found
}

/// Waits (at most `limit`) until the receive queue of the socket on `port` is empty.
pub fn drain(port: u16, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        match udp_queue(port) {
            Some((0, _)) | None => break,
            _ => std::thread::sleep(Duration::from_micros(200)),
        }
    }
}

/// Waits (at most 10 s) until a socket is bound on 127.0.0.1:`port`.
pub fn wait_bound(port: u16) -> bool {
    for _ in 0..200 {
        if udp_queue(port).is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A free UDP port on 127.0.0.1 (free when asked).
pub fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One round of the driver: datagrams processed (sent − socket drops) per CPU-second of the
/// receiving process.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    pub processed: u64,
    pub dropped: u64,
    pub cpu_s: f64,
    /// Wall time from letting the receiver go to its queue empty, summed (saturated only).
    pub busy_s: f64,
}

impl Round {
    pub fn per_cpu_s(&self) -> f64 {
        self.processed as f64 / self.cpu_s.max(1e-9)
    }
}

/// How the sender feeds a receiver.
#[derive(Debug, Clone, Copy)]
pub enum Drive {
    /// The receiver is stopped (SIGSTOP), `burst` datagrams are queued on its socket, it is let
    /// go (SIGCONT) and its queue let drain: it always finds a full queue, as under a flood, and
    /// the sender (whose system calls do the kernel's loopback receive work) never limits it.
    /// Sent from `sources` sockets in turn (shards are chosen by a hash of the source port).
    Saturated { burst: usize, sources: usize },
    /// As fast as the sender goes, waiting whenever the receiver's queue holds more than
    /// `max_queue` octets (`sflow/benches/decode.rs`'s way): a receiver faster than the sender
    /// wakes up for each datagram or few.
    Paced { max_queue: u64 },
}

/// Feeds the receiver `pid` on 127.0.0.1:`port` `rounds` rounds of the whole `set`, each
/// measured apart (CPU time of every thread of `pid`).
pub fn drive(set: &[Bytes], rounds: usize, port: u16, pid: u32, how: Drive) -> Vec<Round> {
    let sources = match how {
        Drive::Saturated { sources, .. } => sources.clamp(1, 64),
        Drive::Paced { .. } => 1,
    };
    let txs: Vec<UdpSocket> = (0..sources)
        .map(|_| UdpSocket::bind("127.0.0.1:0").expect("bind the sender"))
        .collect();
    let tx = &txs[0];
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut out = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let mut busy = Duration::ZERO;
        let Some((_, drops0)) = udp_queue(port) else {
            break;
        };
        let cpu0 = process_cpu_ns(pid);
        let mut sent = 0u64;
        match how {
            Drive::Saturated { burst, .. } => {
                for chunk in set.chunks(burst.max(1)) {
                    signal(pid, "STOP");
                    for (i, b) in chunk.iter().enumerate() {
                        if txs[i % txs.len()].send_to(b, to).is_ok() {
                            sent += 1;
                        }
                    }
                    let let_go = Instant::now();
                    signal(pid, "CONT");
                    drain(port, Duration::from_secs(30));
                    busy += let_go.elapsed();
                }
            }
            Drive::Paced { max_queue } => {
                for (i, b) in set.iter().enumerate() {
                    if i % 8 == 0 {
                        // Wait for the receiver to catch up, at most 10 s per check.
                        for _ in 0..50_000 {
                            match udp_queue(port) {
                                Some((rx, _)) if rx > max_queue => {
                                    std::thread::sleep(Duration::from_micros(200))
                                }
                                _ => break,
                            }
                        }
                    }
                    if tx.send_to(b, to).is_ok() {
                        sent += 1;
                    }
                }
                drain(port, Duration::from_secs(30));
            }
        }
        // The last datagram dequeued is still being processed: a moment for it.
        std::thread::sleep(Duration::from_millis(50));
        let cpu = process_cpu_ns(pid).saturating_sub(cpu0);
        let Some((_, drops1)) = udp_queue(port) else {
            break;
        };
        let dropped = drops1.saturating_sub(drops0);
        out.push(Round {
            processed: sent.saturating_sub(dropped),
            dropped,
            cpu_s: cpu as f64 / 1e9,
            busy_s: busy.as_secs_f64(),
        });
    }
    out
}

/// Which pmacct daemon: they share configuration keys but for the prefix.
#[derive(Debug, Clone, Copy)]
pub enum Daemon {
    /// sFlow (`sfacctd_port`, `sfacctd_ip`).
    Sfacctd,
    /// NetFlow v5/v9 and IPFIX (`nfacctd_port`, `nfacctd_ip`).
    Nfacctd,
}

impl Daemon {
    pub fn program(self) -> &'static str {
        match self {
            Daemon::Sfacctd => "sfacctd",
            Daemon::Nfacctd => "nfacctd",
        }
    }

    pub fn installed(self) -> bool {
        std::env::var_os("PATH").is_some_and(|paths| {
            std::env::split_paths(&paths).any(|p| p.join(self.program()).is_file())
        })
    }
}

/// A pmacct daemon with a `print` plugin aggregating on source and destination host, protocol and
/// ports (so each flow is parsed down to L4 and accounted), stopped by PID when dropped.
#[derive(Debug)]
pub struct Pmacct {
    core: Child,
    dir: PathBuf,
}

impl Pmacct {
    pub fn start(daemon: Daemon, port: u16) -> Option<Pmacct> {
        let name = daemon.program();
        let dir = std::env::temp_dir().join(format!(
            "deflect-ingest-bench-{name}-{}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).ok()?;
        let conf = dir.join(format!("{name}.conf"));
        fs::write(
            &conf,
            format!(
                "daemonize: false\n\
                 {name}_ip: 127.0.0.1\n\
                 {name}_port: {port}\n\
                 {name}_pipe_size: 4194304\n\
                 {name}_disable_checks: true\n\
                 plugins: print[p]\n\
                 aggregate[p]: src_host, dst_host, proto, src_port, dst_port\n\
                 print_output[p]: csv\n\
                 print_output_file[p]: {}\n\
                 print_output_file_append[p]: true\n\
                 print_refresh_time[p]: 3600\n\
                 plugin_pipe_size[p]: 67108864\n\
                 plugin_buffer_size[p]: 65536\n\
                 logfile: {}\n",
                dir.join("flows.csv").display(),
                dir.join(format!("{name}.log")).display(),
            ),
        )
        .ok()?;
        let core = Command::new(name)
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let s = Pmacct { core, dir };
        if wait_bound(port) {
            std::thread::sleep(Duration::from_millis(300));
            return Some(s);
        }
        None
    }

    pub fn pid(&self) -> u32 {
        self.core.id()
    }

    /// The plugin processes: children of the core process.
    pub fn plugins(&self) -> Vec<u32> {
        let Ok(entries) = fs::read_dir("/proc") else {
            return vec![];
        };
        entries
            .take(100_000)
            .filter_map(|e| {
                let pid: u32 = e.ok()?.file_name().to_str()?.parse().ok()?;
                let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
                // The parent PID is the second field after the ")" that ends the command name.
                let ppid: u32 = stat
                    .rsplit(')')
                    .next()?
                    .split_whitespace()
                    .nth(1)?
                    .parse()
                    .ok()?;
                (ppid == self.pid()).then_some(pid)
            })
            .collect()
    }

    /// SIGINT (its graceful stop: the plugin writes its output), then up to 30 s for the core and
    /// the plugins to exit; SIGKILL to whichever is left past that.
    pub fn stop(&mut self) {
        let plugins = self.plugins();
        signal(self.pid(), "CONT");
        signal(self.pid(), "INT");
        for _ in 0..300 {
            let core_done = matches!(self.core.try_wait(), Ok(Some(_)));
            if core_done && !plugins.iter().any(|p| running(*p)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.core.kill();
        let _ = self.core.wait();
        for p in plugins.into_iter().filter(|p| running(*p)) {
            signal(p, "KILL");
        }
    }

    /// The daemon's log lines that warn or err (at most `n`, the last ones).
    pub fn complaints(&self, n: usize) -> Vec<String> {
        let name = self.dir.join(
            fs::read_dir(&self.dir)
                .ok()
                .into_iter()
                .flatten()
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .find(|f| f.ends_with(".log"))
                .unwrap_or_default(),
        );
        let log = fs::read_to_string(name).unwrap_or_default();
        let bad: Vec<String> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .map(str::to_owned)
            .collect();
        bad[bad.len().saturating_sub(n)..].to_vec()
    }

    /// The sum of the PACKETS column of the print plugin's CSV output.
    pub fn packets_accounted(&self) -> Option<u64> {
        let csv = fs::read_to_string(self.dir.join("flows.csv")).ok()?;
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next()?.split(',').collect();
        let col = header.iter().position(|h| *h == "PACKETS")?;
        Some(
            lines
                .filter_map(|l| l.split(',').nth(col)?.parse::<u64>().ok())
                .sum(),
        )
    }
}

impl Drop for Pmacct {
    fn drop(&mut self) {
        if let Ok(None) = self.core.try_wait() {
            self.stop();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The median of some rates, and their range.
pub fn median(rates: &[f64]) -> (f64, f64, f64) {
    let mut v = rates.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.get(v.len() / 2).copied().unwrap_or(0.0);
    (
        mid,
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}
