//! Recordings → the reports detection would have received, each with its node and arrival time.
//!
//! Three kinds of file, told apart by their first bytes:
//! - a capture (pcap, either byte order and resolution, or pcapng as tshark and tcpdump write):
//!   UDP datagrams to the sFlow port are an agent's datagrams and go through the collector's own
//!   per-agent state ([`Agents`]); datagrams to a NetFlow/IPFIX port go through that collector's
//!   per-exporter state ([`Exporters`]: templates, and records spread over the time they cover,
//!   handed over after the learned delay as live); every other frame is traffic as a probe samples it and goes
//!   through the probe's aggregator, one in `one_in` of the packets it stands for. Ethernet,
//!   Linux cooked (v1 and v2) and raw IP link types are read.
//! - JSON lines of reports, as the probe sends them (`deflect probe --record FILE` writes them):
//!   each is checked as the telemetry API checks it.
//!
//! Intervals are cut on the recording's own timeline, from its first packet, every interval
//! including the quiet ones (a probe reports every interval). A last interval shorter than half of
//! one is left out: its rates would be a guess. Nothing in a file can make the reader panic or
//! grow without bound beyond the reports themselves; what does not read is counted and named.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use etherparse::{SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use pcap_file::pcap::PcapReader;
use pcap_file::pcapng::PcapNgReader;
use pcap_file::pcapng::blocks::Block;
use pcap_file::pcapng::blocks::interface_description::InterfaceDescriptionOption;
use serde::Serialize;

use crate::collector::Agents;
use crate::collector::netflow::Exporters;
use crate::pcap::with_ethernet;
use crate::telemetry::Report;
use crate::traffic::aggregate::Aggregator;
use crate::traffic::packet;

/// How captures are read.
#[derive(Debug, Clone)]
pub struct Options {
    /// The probe's interval, for captures of traffic.
    pub interval: Duration,
    /// The sampling rate the capture's frames were taken at (1: every packet).
    pub one_in: u32,
    /// The node that captured the traffic (not sFlow).
    pub node: String,
    /// UDP destination port of sFlow datagrams.
    pub sflow_port: u16,
    /// UDP destination ports of NetFlow v5/v9 and IPFIX datagrams.
    pub netflow_ports: Vec<u16>,
    /// Most errors kept per file (the rest counted).
    pub max_errors: usize,
    /// The configuration's sFlow agents (names, sampling overrides, bounds); any other address
    /// in a capture is an agent with the defaults.
    pub agents: Vec<crate::collector::TrustedAgent>,
    /// The configuration's NetFlow/IPFIX exporters, likewise.
    pub exporters: Vec<crate::collector::TrustedAgent>,
    /// The longest NetFlow/IPFIX records are waited for.
    pub max_delay: Duration,
    /// Detection's trusted sources: left out where samples are aggregated, as live.
    pub trusted: Vec<ipnet::IpNet>,
}

/// One report as detection gets it.
#[derive(Debug, Clone)]
pub struct Timed {
    pub at_ms: u64,
    pub node: String,
    pub report: Report,
}

/// What a file held.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileInfo {
    pub file: String,
    pub format: &'static str,
    /// Frames read from a capture.
    #[serde(skip_serializing_if = "is_zero")]
    pub frames: u64,
    /// Frames taken as traffic, and as sFlow datagrams.
    #[serde(skip_serializing_if = "is_zero")]
    pub traffic: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub sflow_datagrams: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub netflow_datagrams: u64,
    /// Frames with no IP packet, of an unknown link type, or unreadable lines.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: u64,
    pub reports: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl FileInfo {
    fn error(&mut self, max: usize, e: String) {
        self.skipped += 1;
        if self.errors.len() < max {
            self.errors.push(e);
        }
    }
}

/// Reads one file.
pub fn read(path: &Path, opts: &Options) -> Result<(Vec<Timed>, FileInfo), String> {
    let name = path.display().to_string();
    let mut file = File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let mut magic = [0u8; 4];
    let n = read_up_to(&mut file, &mut magic).map_err(|e| format!("{name}: {e}"))?;
    let file = File::open(path).map_err(|e| format!("{name}: {e}"))?;
    let mut info = FileInfo {
        file: name.clone(),
        ..FileInfo::default()
    };
    let out = match (n, magic) {
        (4, [0xa1, 0xb2, 0xc3, 0xd4] | [0xd4, 0xc3, 0xb2, 0xa1])
        | (4, [0xa1, 0xb2, 0x3c, 0x4d] | [0x4d, 0x3c, 0xb2, 0xa1]) => {
            info.format = "pcap";
            let r = PcapReader::new(BufReader::new(file)).map_err(|e| format!("{name}: {e}"))?;
            captured(Capture::Pcap(r), opts, &mut info)
        }
        (4, [0x0a, 0x0d, 0x0d, 0x0a]) => {
            info.format = "pcapng";
            let r = PcapNgReader::new(BufReader::new(file)).map_err(|e| format!("{name}: {e}"))?;
            captured(Capture::PcapNg(r), opts, &mut info)
        }
        _ => {
            info.format = "reports";
            reports(BufReader::new(file), opts, &mut info)
        }
    };
    info.reports = out.len() as u64;
    Ok((out, info))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Longest report line read (the telemetry API's own body limit is smaller).
const MAX_LINE: u64 = 4 << 20;

/// JSON lines of reports.
fn reports(mut r: impl BufRead, opts: &Options, info: &mut FileInfo) -> Vec<Timed> {
    let mut out = Vec::new();
    let mut buf = Vec::new();
    for i in 1.. {
        buf.clear();
        let place = format!("{}:{i}", info.file);
        match (&mut r).take(MAX_LINE).read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                info.error(opts.max_errors, format!("{place}: {e}"));
                break;
            }
        }
        if buf.last() != Some(&b'\n') && buf.len() as u64 == MAX_LINE {
            info.error(
                opts.max_errors,
                format!("{place}: longer than {MAX_LINE} bytes: skipped"),
            );
            // The rest of the line.
            loop {
                buf.clear();
                match (&mut r).take(MAX_LINE).read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) if buf.last() == Some(&b'\n') => break,
                    Ok(_) => {}
                }
            }
            continue;
        }
        let line = String::from_utf8_lossy(&buf);
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let report: Report = match serde_json::from_str(&line) {
            Ok(r) => r,
            Err(e) => {
                info.error(opts.max_errors, format!("{place}: not a report: {e}"));
                continue;
            }
        };
        if let Err(e) = report.validate() {
            info.error(opts.max_errors, format!("{place}: refused: {e}"));
            continue;
        }
        out.push(Timed {
            at_ms: report.time_ms,
            node: report.node.clone(),
            report,
        });
    }
    out
}

/// A capture file of either format.
enum Capture<R: Read> {
    Pcap(PcapReader<R>),
    PcapNg(PcapNgReader<R>),
}

/// One captured frame.
struct Frame {
    time_ms: u64,
    link: DataLink,
    data: Vec<u8>,
}

impl<R: Read> Capture<R> {
    /// The next frame; `Some(Err)` for a block that does not read (the reader stops after it).
    fn next(&mut self) -> Option<Result<Frame, String>> {
        match self {
            Capture::Pcap(r) => {
                let link = r.header().datalink;
                // The reader scales the fraction by the file's resolution (micro or nano).
                let p = match r.next_packet()? {
                    Ok(p) => p,
                    Err(e) => return Some(Err(e.to_string())),
                };
                Some(Ok(Frame {
                    time_ms: p.timestamp.as_millis() as u64,
                    link,
                    data: p.data.into_owned(),
                }))
            }
            Capture::PcapNg(r) => loop {
                let block = match r.next_block()? {
                    Ok(b) => b.into_owned(),
                    Err(e) => return Some(Err(e.to_string())),
                };
                match block {
                    Block::EnhancedPacket(p) => {
                        let Some(idb) = r.packet_interface(&p) else {
                            return Some(Err(format!(
                                "packet of interface {} that was never described",
                                p.interface_id
                            )));
                        };
                        // The reader hands the raw count as nanoseconds; the interface says
                        // what a unit is (microseconds unless told).
                        let ticks = p.timestamp.as_nanos();
                        let mut resol = 6u8;
                        let mut offset = 0u64;
                        for o in &idb.options {
                            match o {
                                InterfaceDescriptionOption::IfTsResol(v) => resol = *v,
                                InterfaceDescriptionOption::IfTsOffset(v) => offset = *v,
                                _ => {}
                            }
                        }
                        let ms =
                            ticks_to_ms(ticks, resol).saturating_add(offset.saturating_mul(1000));
                        return Some(Ok(Frame {
                            time_ms: ms,
                            link: idb.linktype,
                            data: p.data.into_owned(),
                        }));
                    }
                    Block::SimplePacket(_) => {
                        return Some(Err(
                            "simple packet blocks carry no time: not replayable".to_string()
                        ));
                    }
                    _ => continue,
                }
            },
        }
    }
}

/// A pcapng timestamp in units of `resol` (RFC draft: the high bit says a power of two, else of
/// ten) to milliseconds.
fn ticks_to_ms(ticks: u128, resol: u8) -> u64 {
    let ms = if resol & 0x80 != 0 {
        let shift = u32::from(resol & 0x7f);
        if shift >= 127 {
            0
        } else {
            ticks.saturating_mul(1000) >> shift
        }
    } else {
        match resol {
            0..=3 => ticks.saturating_mul(10u128.pow(3 - u32::from(resol))),
            r => ticks / 10u128.pow(u32::from(r.min(38)) - 3),
        }
    };
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The frame as Ethernet, whatever its link type; `None` for link types not read.
fn ethernet(link: DataLink, data: &[u8]) -> Option<Vec<u8>> {
    match link {
        DataLink::ETHERNET => Some(data.to_vec()),
        DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => Some(with_ethernet(data)),
        // Linux cooked v1: 16 bytes, the protocol in the last two.
        DataLink::LINUX_SLL => data.get(16..).map(with_ethernet),
        // Linux cooked v2: 20 bytes, the protocol in the first two.
        DataLink::LINUX_SLL2 => data.get(20..).map(with_ethernet),
        _ => None,
    }
}

/// A UDP datagram in this frame: its destination port, the address it comes from, its payload.
fn udp(frame: &[u8]) -> Option<(u16, IpAddr, Bytes)> {
    let p = SlicedPacket::from_ethernet(frame).ok()?;
    let Some(TransportSlice::Udp(udp)) = &p.transport else {
        return None;
    };
    let from = match p.net.as_ref()? {
        etherparse::NetSlice::Ipv4(ip) => IpAddr::V4(ip.header().source_addr()),
        etherparse::NetSlice::Ipv6(ip) => IpAddr::V6(ip.header().source_addr()),
        _ => return None,
    };
    Some((
        udp.destination_port(),
        from,
        Bytes::copy_from_slice(udp.payload()),
    ))
}

/// Longest silence in a capture filled with quiet intervals; past it, nothing is reported until
/// the next frame (a capture cut and resumed, or a clock that jumped, cannot make a replay report
/// every second of a year).
const MAX_GAP_MS: u64 = 10 * 60 * 1000;

/// The probe's and the collector's intervals over a capture.
fn captured<R: Read>(mut cap: Capture<R>, opts: &Options, info: &mut FileInfo) -> Vec<Timed> {
    let step = opts.interval.as_millis().max(1) as u64;
    let mut out = Vec::new();
    let mut agg = Aggregator::new().with_trusted(opts.trusted.clone());
    let mut agents = Agents::adopting(&opts.agents, &opts.trusted);
    let mut exporters = Exporters::adopting(
        &opts.exporters,
        &opts.trusted,
        opts.interval,
        opts.max_delay,
    );
    let mut seq = 0;
    // The current interval: [end - step, end).
    let mut end: Option<u64> = None;
    let mut last = 0;
    let mut traffic_seen = false;
    let mut flush = |agg: &mut Aggregator,
                     agents: &mut Agents,
                     exporters: &mut Exporters,
                     at: u64,
                     elapsed: u64,
                     traffic: bool| {
        let elapsed = Duration::from_millis(elapsed);
        if traffic {
            let a = std::mem::replace(agg, Aggregator::new().with_trusted(opts.trusted.clone()));
            let sampled = a.samples();
            let finished = a.finish_all(elapsed);
            seq += 1;
            out.push(Timed {
                at_ms: at,
                node: opts.node.clone(),
                report: Report {
                    node: opts.node.clone(),
                    seq,
                    time_ms: at,
                    interval_ms: elapsed.as_millis() as u32,
                    one_in: opts.one_in,
                    sampled,
                    interfaces: Vec::new(),
                    targets: finished.targets,
                    rollups: finished.rollups,
                    packets: Vec::new(),
                    applied: Vec::new(),
                    drop_error: None,
                },
            });
        }
        for (node, report) in agents
            .flush(elapsed, at)
            .into_iter()
            .chain(exporters.flush(at))
        {
            out.push(Timed {
                at_ms: at,
                node,
                report,
            });
        }
    };
    while let Some(f) = cap.next() {
        let f = match f {
            Ok(f) => f,
            Err(e) => {
                info.error(opts.max_errors, format!("{}: {e}", info.file));
                break;
            }
        };
        info.frames += 1;
        // Time goes forward only: a frame stamped earlier counts in the current interval.
        let t = f.time_ms.max(last);
        last = t;
        let mut e = *end.get_or_insert(t + step);
        if t >= e {
            flush(&mut agg, &mut agents, &mut exporters, e, step, traffic_seen);
            e += step;
        }
        if t >= e + MAX_GAP_MS {
            // A silence this long is no traffic to judge (the capture stopped, or its clock
            // jumped): nothing is reported for it, as from a probe that was off, and the
            // intervals start again at this frame.
            e = t + step;
        }
        while t >= e {
            flush(&mut agg, &mut agents, &mut exporters, e, step, traffic_seen);
            e += step;
        }
        end = Some(e);
        let Some(frame) = ethernet(f.link, &f.data) else {
            info.error(
                opts.max_errors,
                format!(
                    "{}: frame {}: link type {:?} not read",
                    info.file, info.frames, f.link
                ),
            );
            continue;
        };
        match udp(&frame) {
            Some((port, from, payload)) if port == opts.sflow_port => {
                info.sflow_datagrams += 1;
                agents.datagram(payload, from, t, None);
                continue;
            }
            Some((port, from, payload)) if opts.netflow_ports.contains(&port) => {
                info.netflow_datagrams += 1;
                exporters.datagram(payload, from, t);
                continue;
            }
            _ => {}
        }
        match packet::parse(&frame) {
            Some(p) => {
                info.traffic += 1;
                traffic_seen = true;
                agg.add(&p, opts.one_in);
            }
            None => info.skipped += 1,
        }
    }
    if let Some(e) = end {
        let partial = last + 1 - (e - step);
        if partial * 2 >= step {
            flush(
                &mut agg,
                &mut agents,
                &mut exporters,
                e - step + partial,
                partial,
                traffic_seen,
            );
        }
        // NetFlow/IPFIX records still waiting for their delay: handed over as live, after it.
        let mut at = e - step + partial.max(1);
        for _ in 0..=(opts.max_delay.as_millis() as u64 / step) {
            if !exporters.pending() {
                break;
            }
            at += step;
            for (node, report) in exporters.flush(at) {
                out.push(Timed {
                    at_ms: at,
                    node,
                    report,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn opts() -> Options {
        Options {
            interval: Duration::from_secs(1),
            one_in: 1,
            node: "t".into(),
            sflow_port: 6343,
            netflow_ports: vec![2055, 4739],
            max_errors: 5,
            agents: Vec::new(),
            exporters: Vec::new(),
            max_delay: Duration::from_secs(60),
            trusted: Vec::new(),
        }
    }

    /// A frame of UDP from 198.18.0.1:123 to 192.0.2.10.
    fn udp_frame() -> Vec<u8> {
        let mut ip = vec![
            0x45, 0, 0, 48, 0, 1, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 192, 0, 2, 10,
        ];
        ip.extend_from_slice(&[0, 123, 0x9c, 0x40, 0, 28, 0, 0]);
        ip.extend_from_slice(&[0; 20]);
        with_ethernet(&ip)
    }

    /// A classic pcap of `n` frames, 100 ms apart.
    fn pcap(n: u32) -> Vec<u8> {
        use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
        let mut w = PcapWriter::with_header(Vec::new(), PcapHeader::default()).unwrap();
        let f = udp_frame();
        for i in 0..n {
            let t = Duration::from_millis(1_780_000_000_000 + u64::from(i) * 100);
            w.write_packet(&PcapPacket::new(t, f.len() as u32, &f))
                .unwrap();
        }
        w.into_writer()
    }

    fn read_bytes(bytes: &[u8]) -> Result<(Vec<Timed>, FileInfo), String> {
        let dir = std::env::temp_dir().join(format!(
            "deflect-replay-input-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("f");
        std::fs::write(&p, bytes).unwrap();
        let r = read(&p, &opts());
        let _ = std::fs::remove_dir_all(&dir);
        r
    }

    #[test]
    fn report_lines_are_checked_one_by_one() {
        let good = r#"{"node":"n1","seq":1,"time_ms":1780000001000,"interval_ms":1000,"targets":[{"dst":"192.0.2.10","pps":5,"bps":4000}]}"#;
        let text = format!(
            "{good}\n\n# a comment\nnot json\n{}\n{good}",
            good.replace("\"interval_ms\":1000", "\"interval_ms\":0")
        );
        let (reports, info) = read_bytes(text.as_bytes()).unwrap();
        assert_eq!(info.format, "reports");
        assert_eq!(reports.len(), 2, "{:?}", info.errors);
        assert_eq!(info.skipped, 2);
        assert!(
            info.errors[0].ends_with(":4: not a report: expected ident at line 1 column 2"),
            "{:?}",
            info.errors
        );
        assert!(info.errors[1].contains(":5: refused"), "{:?}", info.errors);
        assert_eq!(reports[0].node, "n1");
    }

    #[test]
    fn a_long_silence_is_not_filled_with_quiet_intervals() {
        let mut b = pcap(2);
        // The second frame a year later.
        let second = 24 + 16 + udp_frame().len();
        let t = u32::from_le_bytes(b[second..second + 4].try_into().unwrap()) + 365 * 86_400;
        b[second..second + 4].copy_from_slice(&t.to_le_bytes());
        let (reports, _) = read_bytes(&b).unwrap();
        assert_eq!(
            reports.len(),
            1,
            "the first interval only (the last is too short)"
        );
    }

    #[test]
    fn a_capture_becomes_one_report_per_interval_with_its_rates() {
        // 40 frames over 3.9 s: intervals ending at +1, +2, +3 s, and the last 0.9 s (kept: more
        // than half an interval).
        let (reports, info) = read_bytes(&pcap(40)).unwrap();
        assert_eq!((info.format, info.frames, info.traffic), ("pcap", 40, 40));
        let times: Vec<u64> = reports
            .iter()
            .map(|t| t.at_ms - 1_780_000_000_000)
            .collect();
        assert_eq!(times, [1000, 2000, 3000, 3901]);
        let t = &reports[0].report.targets[0];
        assert_eq!((t.dst.to_string(), t.pps), ("192.0.2.10".to_string(), 10));
        assert_eq!(t.flows[0].sport, Some(123));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Whatever a file holds, after any of the magic numbers, reading it never panics.
        #[test]
        fn any_file_reads_or_fails_without_panicking(
            magic in prop::sample::select(vec![
                vec![0xd4u8, 0xc3, 0xb2, 0xa1],
                vec![0xa1, 0xb2, 0xc3, 0xd4],
                vec![0x4d, 0x3c, 0xb2, 0xa1],
                vec![0x0a, 0x0d, 0x0d, 0x0a],
                b"{\"n".to_vec(),
                vec![],
            ]),
            rest in prop::collection::vec(any::<u8>(), 0..600),
        ) {
            let mut b = magic;
            b.extend(rest);
            let _ = read_bytes(&b);
        }

        /// A capture cut anywhere, or with a byte changed, reads what it can.
        #[test]
        fn a_damaged_capture_reads_what_it_can(cut in 0usize..1400, at in 0usize..1400, x in any::<u8>()) {
            let mut b = pcap(20);
            if at < b.len() {
                b[at] ^= x;
            }
            b.truncate(cut);
            // 2 s of frames: a few intervals, and at most the quiet of the longest gap filled
            // in when a time jumped.
            if let Ok((reports, _)) = read_bytes(&b) {
                let most = 4 + (MAX_GAP_MS / 1000) as usize;
                prop_assert!(reports.len() <= most, "{} reports", reports.len());
            }
        }
    }

    #[test]
    fn pcapng_ticks_follow_the_interface_resolution() {
        assert_eq!(ticks_to_ms(1_500_000, 6), 1_500);
        assert_eq!(ticks_to_ms(1_500_000_000, 9), 1_500);
        assert_eq!(ticks_to_ms(3, 0), 3_000);
        assert_eq!(ticks_to_ms(1 << 20, 0x80 | 10), 1_024_000);
        assert_eq!(ticks_to_ms(u128::MAX, 0), u64::MAX);
        assert_eq!(ticks_to_ms(5, 0xff), 0);
        assert_eq!(ticks_to_ms(5, 99), 0);
    }
}
