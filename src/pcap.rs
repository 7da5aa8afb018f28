//! Forensic captures: when an attack starts, the sampled packets sent to its target (from sFlow
//! raw headers and from probe samples) are written to a classic pcap file, bounded in time and
//! size, kept for a number of days, and served by the API (`GET /api/v1/attacks/{id}/pcap`).
//!
//! ```text
//!  sFlow collector ─┐  wants(dst)? offer(frame)        ┌─► state_dir/pcap/attack-ID.pcap
//!  telemetry API  ──┴──────(bounded mpsc)──► recorder ─┤    (Ethernet frames as sampled)
//!  engine ── start(attack, target) / stop(attack) ──►  └─► retention: older than keep_days deleted
//! ```
//!
//! The recorder task owns the files. Sources ask [`Recorder::wants`] first (a read lock on a small
//! set), so frames to addresses nobody captures never cross a channel; a full channel drops the
//! frame and counts it, it never blocks detection.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use serde::Serialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{Instrument, info, info_span, warn};

/// Capture limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// How long after the attack starts packets are written.
    pub seconds: Duration,
    /// Largest file.
    pub max_bytes: u64,
    /// Files older than this are deleted.
    pub keep: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            seconds: Duration::from_secs(60),
            max_bytes: 20 * 1024 * 1024,
            keep: Duration::from_secs(7 * 86_400),
        }
    }
}

/// A sampled packet: an Ethernet frame (or its first bytes) and its length on the wire.
#[derive(Debug, Clone)]
pub struct Frame {
    pub dst: IpAddr,
    pub time: SystemTime,
    pub orig_len: u32,
    pub data: Bytes,
}

/// A capture file as the API lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CaptureInfo {
    pub attack: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<IpAddr>,
    pub file: String,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub packets: Option<u64>,
    /// Still being written.
    pub recording: bool,
}

#[derive(Debug)]
enum Msg {
    Frame(Frame),
    Start {
        attack: u64,
        target: IpAddr,
    },
    Stop {
        attack: u64,
    },
    List {
        reply: oneshot::Sender<Vec<CaptureInfo>>,
    },
    Read {
        attack: u64,
        reply: oneshot::Sender<Option<Vec<u8>>>,
    },
}

/// Counters for `/metrics`.
#[derive(Debug, Default)]
pub struct PcapMetrics {
    pub frames_written: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub captures: AtomicU64,
}

/// A handle to the recorder task.
#[derive(Debug, Clone)]
pub struct Recorder {
    tx: mpsc::Sender<Msg>,
    watch: Arc<RwLock<HashSet<IpAddr>>>,
    dir: PathBuf,
    pub metrics: Arc<PcapMetrics>,
}

impl Recorder {
    /// Whether frames to `dst` are wanted now.
    pub fn wants(&self, dst: IpAddr) -> bool {
        self.watch
            .read()
            .map(|w| !w.is_empty() && w.contains(&dst))
            .unwrap_or(false)
    }

    /// The addresses captured now.
    pub fn watching(&self) -> Vec<IpAddr> {
        self.watch
            .read()
            .map(|w| w.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Hands a frame over; dropped (and counted) if the recorder is behind.
    pub fn offer(&self, frame: Frame) {
        if self.tx.try_send(Msg::Frame(frame)).is_err() {
            self.metrics.frames_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Starts capturing for an attack.
    pub async fn start(&self, attack: u64, target: IpAddr) {
        let _ = self.tx.send(Msg::Start { attack, target }).await;
    }

    /// Stops an attack's capture early (it stops by itself at its time limit).
    pub async fn stop(&self, attack: u64) {
        let _ = self.tx.send(Msg::Stop { attack }).await;
    }

    /// Every capture on disk, newest first.
    pub async fn list(&self) -> Vec<CaptureInfo> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Msg::List { reply }).await.is_err() {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }

    /// The file of an attack's capture, if there is one.
    pub fn path_of(&self, attack: u64) -> Option<PathBuf> {
        let p = file_of(&self.dir, attack);
        p.exists().then_some(p)
    }

    /// An attack's capture, whole: a capture being recorded is flushed first, so what is read
    /// ends on a packet boundary.
    pub async fn read(&self, attack: u64) -> Option<Vec<u8>> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(Msg::Read { attack, reply }).await.ok()?;
        rx.await.ok().flatten()
    }
}

fn file_of(dir: &Path, attack: u64) -> PathBuf {
    dir.join(format!("attack-{attack}.pcap"))
}

struct Active {
    target: IpAddr,
    writer: PcapWriter<File>,
    until: Instant,
    bytes: u64,
    packets: u64,
}

struct Task {
    dir: PathBuf,
    limits: Limits,
    active: HashMap<u64, Active>,
    watch: Arc<RwLock<HashSet<IpAddr>>>,
    metrics: Arc<PcapMetrics>,
}

/// Starts the recorder, writing under `dir`, on a task of `tasks`; when `stop` is cancelled it
/// closes the captures under way and ends.
pub fn start(
    dir: PathBuf,
    limits: Limits,
    tasks: &TaskTracker,
    stop: CancellationToken,
) -> std::io::Result<Recorder> {
    std::fs::create_dir_all(&dir)?;
    let (tx, rx) = mpsc::channel(4096);
    let watch = Arc::new(RwLock::new(HashSet::new()));
    let metrics = Arc::new(PcapMetrics::default());
    let task = Task {
        dir: dir.clone(),
        limits,
        active: HashMap::new(),
        watch: watch.clone(),
        metrics: metrics.clone(),
    };
    tasks.spawn(task.run(rx, stop).instrument(info_span!("pcap")));
    Ok(Recorder {
        tx,
        watch,
        dir,
        metrics,
    })
}

/// Bytes of the pcap file header, and of each record's header.
const FILE_HEADER: u64 = 24;
const RECORD_HEADER: u64 = 16;

impl Task {
    async fn run(mut self, mut rx: mpsc::Receiver<Msg>, stop: CancellationToken) {
        self.expire_old();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut last_retention = Instant::now();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                msg = rx.recv() => match msg {
                    None => break,
                    Some(m) => self.handle(m),
                },
                _ = tick.tick() => {
                    let now = Instant::now();
                    let done: Vec<u64> = self
                        .active
                        .iter()
                        .filter(|(_, a)| a.until <= now)
                        .map(|(id, _)| *id)
                        .collect();
                    for id in done {
                        self.close(id, "time limit");
                    }
                    if last_retention.elapsed() >= Duration::from_secs(3600) {
                        last_retention = now;
                        self.expire_old();
                    }
                }
            }
        }
        let ids: Vec<u64> = self.active.keys().copied().collect();
        for id in ids {
            self.close(id, "shutting down");
        }
    }

    fn handle(&mut self, m: Msg) {
        match m {
            Msg::Frame(f) => self.write(f),
            Msg::Start { attack, target } => self.open(attack, target),
            Msg::Stop { attack } => self.close(attack, "stopped"),
            Msg::List { reply } => {
                let _ = reply.send(self.list());
            }
            Msg::Read { attack, reply } => {
                // Records are written whole, unbuffered, by this task: the file ends on a record.
                let _ = reply.send(std::fs::read(file_of(&self.dir, attack)).ok());
            }
        }
    }

    fn open(&mut self, attack: u64, target: IpAddr) {
        if self.active.contains_key(&attack) {
            return;
        }
        let path = file_of(&self.dir, attack);
        let file = match File::create(&path) {
            Ok(f) => f,
            Err(e) => {
                warn!(attack, path = %path.display(), "capture not started: {e}");
                return;
            }
        };
        let header = PcapHeader {
            endianness: pcap_file::Endianness::Little,
            ..PcapHeader::default()
        };
        match PcapWriter::with_header(file, header) {
            Ok(writer) => {
                info!(attack, %target, path = %path.display(), "capture started");
                self.active.insert(
                    attack,
                    Active {
                        target,
                        writer,
                        until: Instant::now() + self.limits.seconds,
                        bytes: FILE_HEADER,
                        packets: 0,
                    },
                );
                self.metrics.captures.fetch_add(1, Ordering::Relaxed);
                self.rewatch();
            }
            Err(e) => warn!(attack, "capture not started: {e}"),
        }
    }

    fn write(&mut self, f: Frame) {
        let ts = f.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut full = Vec::new();
        for (id, a) in self.active.iter_mut() {
            if a.target != f.dst {
                continue;
            }
            let size = RECORD_HEADER + f.data.len() as u64;
            if a.bytes + size > self.limits.max_bytes {
                full.push(*id);
                continue;
            }
            let packet = PcapPacket::new(ts, f.orig_len.max(f.data.len() as u32), &f.data);
            match a.writer.write_packet(&packet) {
                Ok(_) => {
                    a.bytes += size;
                    a.packets += 1;
                    self.metrics.frames_written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    warn!(attack = id, "capture write failed: {e}");
                    full.push(*id);
                }
            }
        }
        for id in full {
            self.close(id, "size limit");
        }
    }

    fn close(&mut self, attack: u64, why: &str) {
        if let Some(a) = self.active.remove(&attack) {
            let mut w = a.writer.into_writer();
            if let Err(e) = std::io::Write::flush(&mut w) {
                warn!(attack, "capture flush failed: {e}");
            }
            info!(
                attack,
                packets = a.packets,
                bytes = a.bytes,
                "capture closed: {why}"
            );
            self.rewatch();
        }
    }

    fn rewatch(&self) {
        if let Ok(mut w) = self.watch.write() {
            *w = self.active.values().map(|a| a.target).collect();
        }
    }

    fn list(&self) -> Vec<CaptureInfo> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return out;
        };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(id) = name
                .strip_prefix("attack-")
                .and_then(|s| s.strip_suffix(".pcap"))
                .and_then(|s| s.parse::<u64>().ok())
            else {
                continue;
            };
            let active = self.active.get(&id);
            out.push(CaptureInfo {
                attack: id,
                target: active.map(|a| a.target),
                file: name,
                bytes: active.map_or_else(|| e.metadata().map_or(0, |m| m.len()), |a| a.bytes),
                packets: active.map(|a| a.packets),
                recording: active.is_some(),
            });
        }
        out.sort_by_key(|c| std::cmp::Reverse(c.attack));
        out
    }

    /// Deletes captures older than the retention.
    fn expire_old(&self) {
        let Ok(rd) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for e in rd.flatten() {
            let old = e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > self.limits.keep);
            let ours = e.file_name().to_string_lossy().ends_with(".pcap");
            if old && ours {
                match std::fs::remove_file(e.path()) {
                    Ok(()) => {
                        info!(file = %e.path().display(), "capture deleted: past its retention")
                    }
                    Err(err) => warn!(file = %e.path().display(), "capture not deleted: {err}"),
                }
            }
        }
    }
}

/// An Ethernet header in front of a bare IP packet (sFlow headers of protocol IPv4 or IPv6), so
/// every capture has one link type.
pub fn with_ethernet(ip: &[u8]) -> Vec<u8> {
    let ethertype: [u8; 2] = match ip.first().map(|b| b >> 4) {
        Some(6) => [0x86, 0xdd],
        _ => [0x08, 0x00],
    };
    let mut f = Vec::with_capacity(14 + ip.len());
    f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 1]);
    f.extend_from_slice(&ethertype);
    f.extend_from_slice(ip);
    f
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_capture_holds_the_target_s_frames_within_its_limits() {
        let dir = std::env::temp_dir().join(format!("deflect-pcap-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let limits = Limits {
            seconds: Duration::from_secs(60),
            max_bytes: FILE_HEADER + 3 * (RECORD_HEADER + 60),
            keep: Duration::from_secs(3600),
        };
        let r = start(
            dir.clone(),
            limits,
            &TaskTracker::new(),
            CancellationToken::new(),
        )
        .unwrap();
        let victim: IpAddr = "203.0.113.7".parse().unwrap();
        assert!(!r.wants(victim));
        r.start(9, victim).await;
        // The set is updated by the task: wait for it.
        for _ in 0..100 {
            if r.wants(victim) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(r.wants(victim));
        assert!(!r.wants("203.0.113.8".parse().unwrap()));
        for i in 0..5u8 {
            r.offer(Frame {
                dst: victim,
                time: SystemTime::now(),
                orig_len: 1500,
                data: Bytes::from(vec![i; 60]),
            });
        }
        // Three fit; the fourth closes it.
        for _ in 0..100 {
            if !r.wants(victim) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let list = r.list().await;
        assert_eq!(list.len(), 1);
        assert!(!list[0].recording);
        assert_eq!(list[0].bytes, FILE_HEADER + 3 * (RECORD_HEADER + 60));
        let data = std::fs::read(r.path_of(9).unwrap()).unwrap();
        let mut reader = pcap_file::pcap::PcapReader::new(&data[..]).unwrap();
        let mut n = 0;
        while let Some(p) = reader.next_packet() {
            let p = p.unwrap();
            assert_eq!(p.orig_len, 1500);
            assert_eq!(p.data[0], n);
            n += 1;
        }
        assert_eq!(n, 3);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn bare_ip_gets_an_ethernet_header() {
        assert_eq!(&with_ethernet(&[0x45, 0])[12..], &[0x08, 0x00, 0x45, 0]);
        assert_eq!(&with_ethernet(&[0x60, 0])[12..], &[0x86, 0xdd, 0x60, 0]);
    }
}
