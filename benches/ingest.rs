//! End-to-end ingest per CPU-second: deflect's collector receive path against pmacct's, on the
//! same datagrams over UDP on 127.0.0.1, in the same run.
//!
//! `cargo bench --bench ingest` (needs `sfacctd` on the PATH for the comparison: `apt-get install
//! -y pmacct`; without it only our figures are printed).
//!
//! The datagrams are `sflow/benches/decode.rs`'s: 10,000 distinct sFlow v5 datagrams of a switch
//! sampling a reflection flood, 8 flow samples (128-octet Ethernet/IPv4/UDP raw header + extended
//! switch) and 1 counter sample each, about 1.9 kB.
//!
//! Each receiver is a process of its own, driven the same way ([`pmacct::saturate`]): stopped,
//! 500 datagrams (about 1 MB) queued on its socket, let go, its queue let drain; ten rounds of the
//! set. So it always finds a full queue, as under a flood, and the sender (whose system calls do
//! the kernel's loopback receive work) never limits it. Counted: datagrams processed (sent − the
//! socket's drops, from `/proc/net/udp`) over the CPU time of every thread of the process, system
//! calls included; the median round is reported.
//!
//! 1. ours, batched: this bench's own binary as a child (`--receiver`), a tokio current-thread
//!    runtime running what the collector's `Run` loop runs: `DatagramSocket::recv_batch` (64 slots
//!    of 8972 octets, one `recvmmsg`), each datagram copied into its `Bytes` and handed to the
//!    collector's own `Agents::datagram` (decode, sequence tracking, sampled header parsed,
//!    aggregation), intervals flushed every second.
//! 2. ours, one `recv` per datagram: the same with `DatagramSocket::recv_one` (what the collector
//!    did before).
//! 3. sfacctd (Debian's pmacct) with a print plugin aggregating on hosts, protocol and ports, 4 MB
//!    of socket buffer; its core process counted (it receives, decodes, parses and hands flows to
//!    the plugin), the plugin's CPU time not, which favours sfacctd; stopped with SIGINT and its
//!    accounted packets checked against the flow samples sent.
//!
//! Also printed, to place the figures: ours in memory through `Agents::datagram` (no socket), and
//! the cost of the copy into `Bytes` that `Batch::drain` makes per datagram.
//!
//! NetFlow/IPFIX against `nfacctd`: a [`Pass`] per protocol; the NetFlow one needs the
//! `deflect-netflow` crate's encoder (datagrams) and `Session::decode` (the receiver child's
//! consumer), and uses `pmacct::Daemon::Nfacctd` with the same driver.

use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use deflect::clock::now_ms;
use deflect::collector::recv::{Batch, DEFAULT_SLOTS, DatagramSocket, JUMBO_SLOT};
use deflect::collector::{Agents, DEFAULT_MAX_SAMPLING_RATE, TrustedAgent};
use deflect_sflow::encode::{DatagramBuilder, ethernet_udp_frame, raw_header};
use deflect_sflow::{
    CounterRecord, CounterSample, EthernetCounters, ExtendedSwitch, FlowRecord, FlowSample,
    GenericInterface,
};

mod pmacct;

use pmacct::{Daemon, Drive, Pmacct, Round, median, process_cpu_ns, thread_cpu_ns};

const DATAGRAMS: usize = 10_000;
const FLOW_SAMPLES: usize = 8;
const ROUNDS: usize = 10;
/// Datagrams queued per burst: about 1 MB of payload, well under the 8 MB (4 MB asked, doubled)
/// both receivers' sockets get.
const BURST: usize = 500;
/// What the sender sends last: the receiver child prints its tally and exits.
const STOP: &[u8] = b"STOP";

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

/// The collector's state, trusting the sender (127.0.0.1); `max_pps` unbounded, since the bench
/// sends far more than a real link would in a second.
fn sflow_agents() -> Agents {
    Agents::new(
        &[TrustedAgent {
            address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            name: "bench".into(),
            sampling_rate: None,
            pre_filter: false,
            max_sampling_rate: DEFAULT_MAX_SAMPLING_RATE,
            max_pps: u64::MAX,
        }],
        &[],
    )
}

/// How the receiver child reads its socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Batched(usize),
    OneRecv,
}

/// What the receiver child does with each datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Work {
    /// The collector's `Agents::datagram`: decode, sequence, parse, aggregate.
    Collector,
    /// `deflect_sflow::decode` and each raw header parsed to its UDP ports with etherparse (what
    /// `sflow/benches/decode.rs` measures, and the tracker's end-to-end figure was).
    DecodeParse,
}

/// Decodes one datagram; each sampled header parsed down to its UDP ports. Returns the headers
/// parsed.
fn decode_parse(data: Bytes) -> u64 {
    let Ok(d) = deflect_sflow::decode(data) else {
        return 0;
    };
    let mut parsed = 0;
    for s in &d.samples {
        if let deflect_sflow::Sample::Flow(f) = s {
            for r in &f.records {
                if let FlowRecord::RawHeader(h) = r {
                    if let Ok(p) = etherparse::LaxSlicedPacket::from_ethernet(&h.header) {
                        if let Some(etherparse::TransportSlice::Udp(u)) = &p.transport {
                            parsed += u64::from(u.source_port() > 0);
                        }
                    }
                }
            }
        }
    }
    std::hint::black_box(&d);
    parsed
}

/// The receiver child: the collector's loop over `port`, until the STOP datagram; prints
/// `datagrams sampled` (flow samples aggregated, from the reports) on stdout.
#[allow(clippy::print_stdout)]
fn receiver(port: u16, mode: Mode, work: Work) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (datagrams, sampled) = rt.block_on(async move {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let socket = DatagramSocket::bind(addr, 8 << 20).expect("bind");
        let mut batch = Batch::new(
            match mode {
                Mode::Batched(slots) => slots,
                Mode::OneRecv => 1,
            },
            JUMBO_SLOT,
        );
        let mut agents = sflow_agents();
        let (mut datagrams, mut sampled) = (0u64, 0u64);
        let mut flushed = Instant::now();
        let flush = |agents: &mut Agents, elapsed: Duration| -> u64 {
            agents
                .flush(elapsed, now_ms())
                .iter()
                .map(|(_, r)| r.sampled)
                .sum()
        };
        // Bounded: the parent sends STOP, or stops waiting after 10 idle minutes.
        'outer: loop {
            let r = match mode {
                Mode::Batched(_) => {
                    tokio::time::timeout(Duration::from_secs(600), socket.recv_batch(&mut batch))
                        .await
                }
                Mode::OneRecv => {
                    tokio::time::timeout(Duration::from_secs(600), socket.recv_one(&mut batch))
                        .await
                }
            };
            let Ok(Ok(_)) = r else { break };
            let now = now_ms();
            for (data, from) in batch.drain() {
                if data.as_ref() == STOP {
                    break 'outer;
                }
                datagrams += 1;
                match work {
                    Work::Collector => agents.datagram(data, from.ip(), now, None),
                    Work::DecodeParse => sampled += decode_parse(data),
                }
            }
            if flushed.elapsed() >= Duration::from_secs(1) {
                sampled += flush(&mut agents, flushed.elapsed());
                flushed = Instant::now();
            }
        }
        sampled += flush(&mut agents, flushed.elapsed());
        (datagrams, sampled)
    });
    println!("{datagrams} {sampled}");
}

/// The receiver child, stopped by PID when dropped.
struct Receiver {
    child: Child,
    port: u16,
}

impl Receiver {
    fn start(mode: Mode, work: Work) -> Option<Receiver> {
        let port = pmacct::free_port();
        let mode = match mode {
            Mode::Batched(slots) => format!("batched:{slots}"),
            Mode::OneRecv => "one".into(),
        };
        let child = Command::new(std::env::current_exe().ok()?)
            .args(["--receiver", "sflow", &port.to_string(), &mode])
            .arg(match work {
                Work::Collector => "collector",
                Work::DecodeParse => "decode-parse",
            })
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        let r = Receiver { child, port };
        pmacct::wait_bound(port).then_some(r)
    }

    /// Sends STOP, waits (at most 10 s) for its tally: datagrams and flow samples aggregated.
    fn finish(mut self) -> Option<(u64, u64)> {
        let tx = UdpSocket::bind("127.0.0.1:0").ok()?;
        let to = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        for _ in 0..100 {
            let _ = tx.send_to(STOP, to);
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let mut out = String::new();
        self.child.stdout.take()?.read_to_string(&mut out).ok()?;
        let mut f = out.split_whitespace().map(|v| v.parse::<u64>().ok());
        Some((f.next()??, f.next()??))
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A protocol's pass: its datagrams, and the pmacct daemon to compare with.
struct Pass {
    name: &'static str,
    datagrams: Vec<Bytes>,
    /// Flow records per datagram (to check what the receivers accounted).
    flows_per_datagram: u64,
    daemon: Daemon,
}

fn line(what: &str, rounds: &[Round]) -> f64 {
    let per: Vec<f64> = rounds.iter().map(Round::per_cpu_s).collect();
    let (mid, lo, hi) = median(&per);
    let processed: u64 = rounds.iter().map(|r| r.processed).sum();
    let dropped: u64 = rounds.iter().map(|r| r.dropped).sum();
    let cpu: f64 = rounds.iter().map(|r| r.cpu_s).sum();
    eprintln!(
        "{what:<44} {mid:>9.0} datagrams per CPU-second (median of {}: {lo:.0}..{hi:.0}; \
         {processed} processed, {dropped} dropped, {cpu:.2} s CPU)",
        per.len()
    );
    mid
}

fn ours(pass: &Pass, how: Drive, mode: Mode, work: Work, what: &str) -> Option<f64> {
    let r = Receiver::start(mode, work)?;
    let pid = r.child.id();
    let rounds = pmacct::drive(&pass.datagrams, ROUNDS, r.port, pid, how);
    let rate = line(what, &rounds);
    let (datagrams, sampled) = r.finish()?;
    let sent = (pass.datagrams.len() * rounds.len()) as u64;
    eprintln!(
        "  took {datagrams} of {sent} datagrams, {sampled} flow samples aggregated or parsed (expected {})",
        datagrams * pass.flows_per_datagram
    );
    Some(rate)
}

fn theirs(pass: &Pass, how: Drive) -> Option<f64> {
    let port = pmacct::free_port();
    let mut d = Pmacct::start(pass.daemon, port)?;
    let plugins = d.plugins();
    let plugin0: u64 = plugins.iter().map(|p| process_cpu_ns(*p)).sum();
    let (user0, system0) = pmacct::user_system_ticks(d.pid());
    let rounds = pmacct::drive(&pass.datagrams, ROUNDS, port, d.pid(), how);
    let (user1, system1) = pmacct::user_system_ticks(d.pid());
    let plugin: u64 = plugins.iter().map(|p| process_cpu_ns(*p)).sum();
    let rate = line(
        &format!(
            "{} core process (plugin not counted)",
            pass.daemon.program()
        ),
        &rounds,
    );
    let (user, system) = (user1.saturating_sub(user0), system1.saturating_sub(system0));
    d.stop();
    let processed: u64 = rounds.iter().map(|r| r.processed).sum();
    eprintln!(
        "  {:.0}% of its CPU time in the kernel; print plugin {:.2} s CPU more; accounted {} \
         sampled packets for {} flow samples processed",
        100.0 * system as f64 / (user + system).max(1) as f64,
        plugin.saturating_sub(plugin0) as f64 / 1e9,
        d.packets_accounted()
            .map_or("(unreadable)".into(), |p| p.to_string()),
        processed * pass.flows_per_datagram,
    );
    Some(rate)
}

/// Ours without a socket: the set through `Agents::datagram` on this thread (at least `min`
/// of CPU), and what copying each datagram into `Bytes` costs beside it.
fn in_memory(set: &[Bytes], min: Duration) -> (f64, f64) {
    let mut agents = sflow_agents();
    let from = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let (mut n, cpu0, start) = (0u64, thread_cpu_ns(), Instant::now());
    for _ in 0..1000 {
        let now = now_ms();
        for b in set {
            agents.datagram(b.clone(), from, now, None);
            n += 1;
        }
        let _ = agents.flush(Duration::from_secs(1), now);
        if start.elapsed() >= min {
            break;
        }
    }
    let rate = n as f64 / ((thread_cpu_ns() - cpu0) as f64 / 1e9).max(1e-9);
    let (mut copies, cpu0) = (0u64, thread_cpu_ns());
    for _ in 0..20 {
        for b in set {
            std::hint::black_box(Bytes::copy_from_slice(b));
            copies += 1;
        }
    }
    let copy_ns = (thread_cpu_ns() - cpu0) as f64 / copies as f64;
    (rate, copy_ns)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--receiver") {
        let port = args.get(i + 2).and_then(|p| p.parse().ok()).expect("port");
        let mode = match args.get(i + 3).map(String::as_str) {
            Some("one") => Mode::OneRecv,
            Some(m) => Mode::Batched(
                m.strip_prefix("batched:")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(DEFAULT_SLOTS),
            ),
            None => Mode::Batched(DEFAULT_SLOTS),
        };
        let work = match args.get(i + 4).map(String::as_str) {
            Some("decode-parse") => Work::DecodeParse,
            _ => Work::Collector,
        };
        receiver(port, mode, work);
        return;
    }
    // `cargo test --benches` runs this with `--bench` absent: keep it quick there.
    let bench = args.iter().any(|a| a == "--bench");
    let sflow = Pass {
        name: "sFlow v5",
        datagrams: flood_datagrams(),
        flows_per_datagram: FLOW_SAMPLES as u64,
        daemon: Daemon::Sfacctd,
    };
    let octets: usize = sflow.datagrams.iter().map(Bytes::len).sum();
    eprintln!(
        "ingest, {}: {} distinct datagrams of {} octets on average, {} rounds in bursts of {BURST}; \
         load average {}",
        sflow.name,
        sflow.datagrams.len(),
        octets / sflow.datagrams.len(),
        ROUNDS,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    if !bench {
        let (rate, _) = in_memory(&sflow.datagrams[..100], Duration::ZERO);
        eprintln!(
            "smoke run: {rate:.0} datagrams per CPU-second in memory (run `cargo bench --bench ingest` for figures)"
        );
        return;
    }
    let (mem, copy_ns) = in_memory(&sflow.datagrams, Duration::from_secs(2));
    eprintln!(
        "{:<44} {mem:>9.0} datagrams per CPU-second; the copy into Bytes {copy_ns:.0} ns each \
         ({:.1}% of that)",
        "ours in memory, Agents::datagram (no socket)",
        copy_ns * mem / 1e7
    );
    let slots: Vec<usize> = std::env::var("INGEST_SLOTS")
        .ok()
        .map(|v| v.split(',').filter_map(|s| s.parse().ok()).collect())
        .unwrap_or_else(|| vec![DEFAULT_SLOTS]);
    for (regime, how) in [
        ("saturated", Drive::Saturated { burst: BURST }),
        ("paced", Drive::Paced { max_queue: 1 << 20 }),
    ] {
        eprintln!("-- {regime}: {how:?}");
        compare(&sflow, how, &slots);
    }
    // NetFlow v9 / IPFIX against nfacctd: the same `compare` once deflect-netflow's encoder and
    // `Session::decode` are here (a `Pass` with its datagrams and `Daemon::Nfacctd`, and a `Work`
    // for the receiver child).
}

/// One pass in one regime: ours (batched, one recv; the collector's work, and decode + parse
/// only) against the pmacct daemon.
fn compare(pass: &Pass, how: Drive, slots: &[usize]) {
    let mut batched = None;
    for s in slots {
        let r = ours(
            pass,
            how,
            Mode::Batched(*s),
            Work::Collector,
            &format!("ours, recv_batch ({s} slots) + Agents::datagram"),
        );
        if *s == DEFAULT_SLOTS || batched.is_none() {
            batched = r.or(batched);
        }
    }
    let one = ours(
        pass,
        how,
        Mode::OneRecv,
        Work::Collector,
        "ours, one recv each + Agents::datagram",
    );
    let light_batched = ours(
        pass,
        how,
        Mode::Batched(DEFAULT_SLOTS),
        Work::DecodeParse,
        "ours, recv_batch + decode + parse only",
    );
    let light_one = ours(
        pass,
        how,
        Mode::OneRecv,
        Work::DecodeParse,
        "ours, one recv each + decode + parse only",
    );
    let p = pass.daemon.program();
    if !pass.daemon.installed() {
        eprintln!("{p} is not installed (apt-get install -y pmacct): no comparison");
        return;
    }
    let Some(t) = theirs(pass, how) else {
        eprintln!("{p} did not start: no comparison");
        return;
    };
    let ratio = |o: Option<f64>| o.map_or("-".into(), |o| format!("{:.1}x", o / t));
    eprintln!(
        "ratio to {p}, {}: collector batched {}, one recv {}; decode + parse only batched {}, \
         one recv {} (goal: 5x)",
        pass.name,
        ratio(batched),
        ratio(one),
        ratio(light_batched),
        ratio(light_one),
    );
}
