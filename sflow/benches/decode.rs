//! sFlow decode rate on one core, and a comparison with pmacct's `sfacctd` on the same datagrams, in
//! the same run.
//!
//! `cargo bench -p deflect-sflow --bench decode` (needs `sfacctd` on the PATH for the comparison:
//! `apt-get install -y pmacct`; without it only our figures are printed).
//!
//! The datagrams: 10,000 distinct ones, as a switch exports them under a reflection flood. Each has
//! 8 flow samples (a raw-header record with the first 128 octets of an Ethernet/IPv4/UDP frame from
//! an amplification port, and an extended switch record) and 1 counter sample (generic interface
//! and Ethernet counters); about 1.9 kB each. Sources, victims, ports and lengths vary from sample to
//! sample (a fixed xorshift seed, so every run decodes the same bytes).
//!
//! What is measured, always as CPU time of the thread or process doing the work (the per-task
//! `/proc/.../schedstat` run time, in nanoseconds), so that the other core's load does not skew it:
//!
//! 1. ours, decode only: [`decode`] of every datagram, every sample and record, in memory (19 MB of
//!    datagrams, so mostly out of cache), then the result dropped; five windows of 0.6 s of CPU
//!    each, the median window reported.
//! 2. ours, decode and parse: as 1, plus each sampled header parsed down to its UDP ports with
//!    etherparse, which is what sfacctd also does with every sample.
//! 3. ours over loopback: a thread receiving the datagrams from a UDP socket on 127.0.0.1 (one
//!    `recv` and one copy into `Bytes` each), decoding and parsing as 2; its CPU time includes the
//!    system calls, like sfacctd's. Paced like 4, with its queue kept under 64 kB.
//! 4. sfacctd 1.7.7 (Debian's pmacct), started on 127.0.0.1 with a `print` plugin aggregating on
//!    source and destination host, protocol and ports (so each sample is parsed down to L4 and
//!    accounted), 4 MB of socket buffer. The same 10,000 datagrams are replayed to it over UDP, 10
//!    rounds, paced so that its socket queue never holds more than 1 MB (the sender waits on the
//!    queue length in `/proc/net/udp`); after each round the queue is let drain and the round's
//!    datagrams processed (sent − the socket's drops, also from `/proc/net/udp`) are divided by the
//!    CPU time its core process used meanwhile; the median round is reported. The core process
//!    receives and decodes the datagrams and hands the flows to the plugin; the plugin's own CPU
//!    time (aggregation and output) is printed but not counted, which favours sfacctd. It is
//!    stopped with SIGINT (its graceful stop), and the packet total of its CSV output is checked
//!    against the flow samples sent, to show it did decode every one.
//!
//! The ratio printed is (1) over (4), the goal being 5x or more; (3) over (4) compares like with
//! like, socket included (about a third of sfacctd's CPU time is the kernel receiving). Medians keep
//! a burst of other work on the machine from moving either figure much. Every process started here
//! is stopped by its PID, and every loop and wait is bounded.

use std::fs;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use deflect_sflow::encode::{DatagramBuilder, ethernet_udp_frame, raw_header};
use deflect_sflow::{
    CounterRecord, CounterSample, EthernetCounters, ExtendedSwitch, FlowRecord, FlowSample,
    GenericInterface, Sample, decode,
};
use etherparse::{LaxSlicedPacket, TransportSlice};

const DATAGRAMS: usize = 10_000;
const FLOW_SAMPLES: usize = 8;

/// xorshift64*: a fixed, dependency-free source of variety.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The datagrams of a switch (agent 192.0.2.10) sampling a reflection flood at 1 in 4096.
fn flood_datagrams() -> Vec<Bytes> {
    let mut rng = Rng(0x5eed_f10d_cafe_0001);
    let agent = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10));
    let reflector_ports = [123u16, 53, 11211, 1900, 19, 389];
    let lengths = [468usize, 1200, 1400, 482, 90, 1472];
    let mut flow_seq = 0u32;
    let mut pool = 0u32;
    (0..DATAGRAMS)
        .map(|i| {
            let i = u32::try_from(i).unwrap_or(u32::MAX);
            let mut b = DatagramBuilder::new(agent)
                .sequence(i + 1)
                .uptime_ms(3_600_000 + i * 5);
            for _ in 0..FLOW_SAMPLES {
                let r = rng.next();
                let src = Ipv4Addr::from(0x0a00_0000 | (r as u32 & 0x00ff_ffff));
                let dst = Ipv4Addr::new(203, 0, 113, 1 + (r >> 32) as u8 % 8);
                let sport = reflector_ports[rng.below(reflector_ports.len() as u64) as usize];
                let dport = 1024 + rng.below(64_000) as u16;
                let len = lengths[rng.below(lengths.len() as u64) as usize];
                let frame = ethernet_udp_frame(src.into(), dst.into(), sport, dport, len);
                let input = 1 + rng.below(48) as u32;
                flow_seq += 1;
                pool = pool.wrapping_add(4096);
                b = b.flow(FlowSample {
                    expanded: false,
                    sequence: flow_seq,
                    source_id_type: 0,
                    source_id_index: input,
                    sampling_rate: 4096,
                    sample_pool: pool,
                    drops: 0,
                    input,
                    output: 49,
                    records: vec![
                        FlowRecord::RawHeader(raw_header(&frame)),
                        FlowRecord::ExtendedSwitch(ExtendedSwitch {
                            src_vlan: 100,
                            src_priority: 0,
                            dst_vlan: 100,
                            dst_priority: 0,
                        }),
                    ],
                });
            }
            let port = 1 + i % 48;
            b = b.counters(CounterSample {
                expanded: false,
                sequence: i + 1,
                source_id_type: 0,
                source_id_index: port,
                records: vec![
                    CounterRecord::Generic(GenericInterface {
                        if_index: port,
                        if_type: 6,
                        if_speed: 100_000_000_000,
                        if_direction: 1,
                        if_status: 3,
                        if_in_octets: u64::from(i) * 1_000_000,
                        if_in_ucast_pkts: i * 800,
                        ..GenericInterface::default()
                    }),
                    CounterRecord::Ethernet(EthernetCounters::default()),
                ],
            });
            b.encode().freeze()
        })
        .collect()
}

/// Run time of the calling thread, from the scheduler, in nanoseconds.
fn thread_cpu_ns() -> u64 {
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
fn process_cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .take(1024)
        .filter_map(|t| schedstat_ns(&t.ok()?.path().join("schedstat")))
        .sum()
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    datagrams: u64,
    samples: u64,
    records: u64,
    headers_parsed: u64,
    port_sum: u64,
}

/// Decodes one datagram fully; with `parse`, each sampled header down to its UDP ports.
fn consume(bytes: Bytes, parse: bool, t: &mut Tally) {
    let d = match decode(bytes) {
        Ok(d) => d,
        Err(e) => panic!("a generated datagram does not decode: {e}"),
    };
    t.datagrams += 1;
    for s in &d.samples {
        t.samples += 1;
        match s {
            Sample::Flow(f) => {
                t.records += f.records.len() as u64;
                if parse {
                    for r in &f.records {
                        if let FlowRecord::RawHeader(h) = r {
                            if let Ok(p) = LaxSlicedPacket::from_ethernet(&h.header) {
                                t.headers_parsed += 1;
                                if let Some(TransportSlice::Udp(u)) = &p.transport {
                                    t.port_sum += u64::from(u.source_port());
                                }
                            }
                        }
                    }
                }
            }
            Sample::Counters(c) => t.records += c.records.len() as u64,
            Sample::Unknown { .. } => {}
        }
    }
    black_box(&d);
}

#[derive(Debug, Clone, Copy)]
struct Rate {
    tally: Tally,
    cpu_s: f64,
}

impl Rate {
    fn per_cpu_s(&self, n: u64) -> f64 {
        n as f64 / self.cpu_s.max(1e-9)
    }
}

/// Rounds of the whole set, in memory, on this thread, until `min` has passed (at most 1000).
fn in_memory(set: &[Bytes], parse: bool, min: Duration) -> Rate {
    // One round to warm caches and the allocator.
    let mut warm = Tally::default();
    for b in set {
        consume(b.clone(), parse, &mut warm);
    }
    let mut t = Tally::default();
    let start = Instant::now();
    let cpu0 = thread_cpu_ns();
    for _ in 0..1000 {
        for b in set {
            consume(b.clone(), parse, &mut t);
        }
        if start.elapsed() >= min {
            break;
        }
    }
    let cpu = thread_cpu_ns().saturating_sub(cpu0);
    Rate {
        tally: t,
        cpu_s: cpu as f64 / 1e9,
    }
}

/// The receive queue (octets) and drop count of the UDP socket bound to 127.0.0.1:`port`.
fn udp_queue(port: u16) -> Option<(u64, u64)> {
    let text = fs::read_to_string("/proc/net/udp").ok()?;
    let local = format!("0100007F:{port:04X}");
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.get(1) == Some(&local.as_str()) {
            let rx = f.get(4)?.split(':').nth(1)?;
            let rx = u64::from_str_radix(rx, 16).ok()?;
            let drops = f.last()?.parse().ok()?;
            return Some((rx, drops));
        }
    }
    None
}

/// Sends `rounds` rounds of `set` to 127.0.0.1:`port`, waiting whenever the receiver's queue holds
/// more than `max_queue` octets. Returns the datagrams sent.
fn replay(set: &[Bytes], rounds: usize, port: u16, max_queue: u64) -> u64 {
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind the sender");
    let to = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut sent = 0u64;
    for _ in 0..rounds {
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
    }
    sent
}

/// Waits (at most `limit`) until the receive queue of the socket on `port` is empty.
fn drain(port: u16, limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        match udp_queue(port) {
            Some((0, _)) | None => break,
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

/// A free UDP port on 127.0.0.1 (free when asked).
fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Ours, over loopback: a receiving thread decodes and parses what a paced sender sends.
fn over_loopback(set: &[Bytes], rounds: usize) -> Rate {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind the receiver");
    let port = rx.local_addr().expect("local address").port();
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("read timeout");
    let expected = (set.len() * rounds) as u64;
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 65536];
        let mut t = Tally::default();
        let cpu0 = thread_cpu_ns();
        // Bounded: the expected count, or 4 idle timeouts in a row once traffic stopped.
        let mut idle = 0;
        while t.datagrams < expected && idle < 4 {
            match rx.recv(&mut buf) {
                Ok(n) => {
                    idle = 0;
                    let b = Bytes::copy_from_slice(buf.get(..n).unwrap_or(&[]));
                    consume(b, true, &mut t);
                }
                Err(_) => idle += 1,
            }
        }
        let cpu = thread_cpu_ns().saturating_sub(cpu0);
        Rate {
            tally: t,
            cpu_s: cpu as f64 / 1e9,
        }
    });
    // The receiver's socket buffer is the default (about 200 kB): keep its queue well under that.
    replay(set, rounds, port, 64 << 10);
    receiver.join().expect("receiver thread")
}

/// User and system CPU time of process `pid` (all its threads), in clock ticks.
fn user_system_ticks(pid: u32) -> (u64, u64) {
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

/// sfacctd and its plugin, stopped by PID when dropped.
struct Sfacctd {
    core: Child,
    dir: PathBuf,
}

impl Sfacctd {
    fn start(port: u16) -> Option<Sfacctd> {
        let dir = std::env::temp_dir().join(format!("deflect-sflow-bench-{}", std::process::id()));
        fs::create_dir_all(&dir).ok()?;
        let conf = dir.join("sfacctd.conf");
        fs::write(
            &conf,
            format!(
                "daemonize: false\n\
                 sfacctd_ip: 127.0.0.1\n\
                 sfacctd_port: {port}\n\
                 sfacctd_pipe_size: 4194304\n\
                 sfacctd_disable_checks: true\n\
                 plugins: print[p]\n\
                 aggregate[p]: src_host, dst_host, proto, src_port, dst_port\n\
                 print_output[p]: csv\n\
                 print_output_file[p]: {}\n\
                 print_refresh_time[p]: 3600\n\
                 plugin_pipe_size[p]: 67108864\n\
                 plugin_buffer_size[p]: 65536\n\
                 logfile: {}\n",
                dir.join("flows.csv").display(),
                dir.join("sfacctd.log").display(),
            ),
        )
        .ok()?;
        let core = Command::new("sfacctd")
            .arg("-f")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let s = Sfacctd { core, dir };
        // Up: its socket is in /proc/net/udp (at most 10 s).
        for _ in 0..200 {
            if udp_queue(port).is_some() {
                std::thread::sleep(Duration::from_millis(300));
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    fn pid(&self) -> u32 {
        self.core.id()
    }

    /// The plugin processes: children of the core process.
    fn plugins(&self) -> Vec<u32> {
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
    fn stop(&mut self) {
        let plugins = self.plugins();
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.pid().to_string())
            .status();
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
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(p.to_string())
                .status();
        }
    }

    /// The sum of the PACKETS column of the print plugin's CSV output.
    fn packets_accounted(&self) -> Option<u64> {
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

impl Drop for Sfacctd {
    fn drop(&mut self) {
        if let Ok(None) = self.core.try_wait() {
            self.stop();
        }
        let _ = fs::remove_dir_all(&self.dir);
    }
}

struct SfacctdRate {
    /// Datagrams processed per CPU-second of the core process, one figure per round of the set.
    rounds: Vec<f64>,
    processed: u64,
    dropped: u64,
    core_cpu_s: f64,
    /// The part of its CPU time spent in the kernel (receiving), from utime and stime.
    kernel_share: f64,
    plugin_cpu_s: f64,
    wall_s: f64,
    accounted: Option<u64>,
}

fn sfacctd(set: &[Bytes], rounds: usize) -> Option<SfacctdRate> {
    let port = free_port();
    let mut s = Sfacctd::start(port)?;
    let plugins = s.plugins();
    let plugin_cpu = || plugins.iter().map(|p| process_cpu_ns(*p)).sum::<u64>();
    let (_, drops_start) = udp_queue(port)?;
    let core_start = process_cpu_ns(s.pid());
    let (user0, system0) = user_system_ticks(s.pid());
    let plugin0 = plugin_cpu();
    let start = Instant::now();
    let mut per_round = Vec::with_capacity(rounds);
    let mut sent = 0;
    for _ in 0..rounds {
        let (_, drops0) = udp_queue(port)?;
        let core0 = process_cpu_ns(s.pid());
        let n = replay(set, 1, port, 1 << 20);
        drain(port, Duration::from_secs(30));
        // The last datagram dequeued is still being processed: a moment for it.
        std::thread::sleep(Duration::from_millis(50));
        let core = process_cpu_ns(s.pid()).saturating_sub(core0);
        let (_, drops1) = udp_queue(port)?;
        let processed = n.saturating_sub(drops1.saturating_sub(drops0));
        per_round.push(processed as f64 / (core as f64 / 1e9).max(1e-9));
        sent += n;
    }
    let wall_s = start.elapsed().as_secs_f64();
    let core = process_cpu_ns(s.pid()).saturating_sub(core_start);
    let (user1, system1) = user_system_ticks(s.pid());
    let user = user1.saturating_sub(user0);
    let system = system1.saturating_sub(system0);
    let plugin = plugin_cpu().saturating_sub(plugin0);
    let (_, drops_end) = udp_queue(port)?;
    let dropped = drops_end.saturating_sub(drops_start);
    s.stop();
    Some(SfacctdRate {
        rounds: per_round,
        processed: sent.saturating_sub(dropped),
        dropped,
        core_cpu_s: core as f64 / 1e9,
        kernel_share: system as f64 / (user + system).max(1) as f64,
        plugin_cpu_s: plugin as f64 / 1e9,
        wall_s,
        accounted: s.packets_accounted(),
    })
}

/// The median of some rates, and their range.
fn median(rates: &[f64]) -> (f64, f64, f64) {
    let mut v = rates.to_vec();
    v.sort_by(f64::total_cmp);
    let mid = v.get(v.len() / 2).copied().unwrap_or(0.0);
    (
        mid,
        v.first().copied().unwrap_or(0.0),
        v.last().copied().unwrap_or(0.0),
    )
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(program).is_file()))
}

#[allow(clippy::print_stdout)]
fn main() {
    // `cargo test --benches` runs this with `--bench` absent: keep it quick there.
    let bench = std::env::args().any(|a| a == "--bench");
    let set = flood_datagrams();
    let octets: usize = set.iter().map(Bytes::len).sum();
    let samples_per = (FLOW_SAMPLES + 1) as f64;
    println!(
        "sFlow decode: {} distinct datagrams, {} flow samples (128-octet Ethernet/IPv4/UDP header + \
         extended switch) and 1 counter sample (generic + Ethernet) each, {} octets on average",
        set.len(),
        FLOW_SAMPLES,
        octets / set.len()
    );
    if !bench {
        let r = in_memory(&set[..100], true, Duration::ZERO);
        println!(
            "smoke run: {} datagrams decoded (run with `cargo bench` for figures)",
            r.tally.datagrams
        );
        return;
    }

    // Ours in windows of 0.6 s of CPU, sfacctd in rounds of the set: the median of each, so that
    // a burst of load on the machine moves neither figure much.
    let windows = |parse: bool| -> Vec<Rate> {
        (0..5)
            .map(|_| in_memory(&set, parse, Duration::from_millis(600)))
            .collect()
    };
    let line = |what: &str, rates: &[Rate]| -> f64 {
        let per: Vec<f64> = rates
            .iter()
            .map(|r| r.per_cpu_s(r.tally.datagrams))
            .collect();
        let (mid, lo, hi) = median(&per);
        let datagrams: u64 = rates.iter().map(|r| r.tally.datagrams).sum();
        let cpu: f64 = rates.iter().map(|r| r.cpu_s).sum();
        println!(
            "{what:<42} {mid:>9.0} datagrams/s {:>10.0} samples/s per CPU-second \
             (median of {}: {lo:.0}..{hi:.0}; {datagrams} datagrams, {cpu:.2} s CPU)",
            mid * samples_per,
            per.len(),
        );
        mid
    };
    let ours = line("ours, decode only, in memory", &windows(false));
    let parsed = windows(true);
    assert!(
        parsed
            .iter()
            .all(|r| r.tally.headers_parsed == r.tally.datagrams * FLOW_SAMPLES as u64)
    );
    line("ours, decode + sampled header parse", &parsed);
    let looped = over_loopback(&set, 10);
    let ours_loop = line("ours, UDP loopback recv + decode + parse", &[looped]);

    if !on_path("sfacctd") {
        println!("sfacctd is not installed (apt-get install -y pmacct): no comparison");
        return;
    }
    let Some(s) = sfacctd(&set, 10) else {
        println!("sfacctd did not start: no comparison");
        return;
    };
    let (theirs, lo, hi) = median(&s.rounds);
    println!(
        "{:<42} {theirs:>9.0} datagrams/s {:>10.0} samples/s per CPU-second \
         (median of {}: {lo:.0}..{hi:.0}; {} datagrams, {} dropped, {:.2} s CPU of which {:.0}% in \
         the kernel, {:.2} s wall; print plugin {:.2} s CPU more)",
        "sfacctd core process, UDP loopback",
        theirs * samples_per,
        s.rounds.len(),
        s.processed,
        s.dropped,
        s.core_cpu_s,
        s.kernel_share * 100.0,
        s.wall_s,
        s.plugin_cpu_s
    );
    match s.accounted {
        Some(p) => println!(
            "sfacctd accounted {p} sampled packets for {} flow samples processed",
            s.processed * FLOW_SAMPLES as u64
        ),
        None => println!("sfacctd's output could not be read"),
    }
    println!(
        "ratio: ours (decode only) / sfacctd = {:.1}x (goal: 5x); ours over loopback / sfacctd = {:.1}x",
        ours / theirs,
        ours_loop / theirs
    );
}
