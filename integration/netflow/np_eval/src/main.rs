//! Evaluation of the `netflow_parser` crate (and, when present, `deflect_netflow`) for deflect.
//!
//!     np_eval DATA_DIR [fuzz_mutations] [speed_datagrams]
//!
//! DATA_DIR holds pmacct-*.pcap and their tshark *.expected.json (integration/netflow/capture.sh).
//! Sections: correctness against tshark, template behaviour, robustness (random bytes and seeded
//! mutations under catch_unwind), template flood memory, decode speed in datagrams per CPU-second.
use netflow_parser::variable_versions::ipfix::{FlowSetBody as IpfixBody, IPFix};
use netflow_parser::variable_versions::v9::{FlowSetBody as V9Body, V9};
use netflow_parser::{
    AutoScopedParser, FieldValue, IpfixField as IPFixField, NetflowPacket, NetflowParser, PendingFlowsConfig,
};
use netflow_parser::variable_versions::ipfix::lookup::IANAIPFixField as I;
use serde_json::Value;
use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, SocketAddr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

// ---------- allocation counter ----------
struct Counting;
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static ALLOC_BYTES: AtomicU64 = AtomicU64::new(0);
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        ALLOC_BYTES.fetch_add(l.size() as u64, Relaxed);
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Relaxed);
        ALLOC_BYTES.fetch_add(n as u64, Relaxed);
        unsafe { System.realloc(p, l, n) }
    }
}
#[global_allocator]
static GLOBAL: Counting = Counting;

fn thread_cpu() -> f64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: valid pointer to a timespec; CLOCK_THREAD_CPUTIME_ID is supported on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}
fn rss_kb() -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    s.lines().find(|l| l.starts_with("VmRSS:")).and_then(|l| l.split_whitespace().nth(1)).unwrap().parse().unwrap()
}

// ---------- seeded xorshift ----------
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

// ---------- pcap ----------
struct Dgram {
    from: SocketAddr,
    bytes: Vec<u8>,
}
fn read_pcap(path: &str) -> Vec<Dgram> {
    let b = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert_eq!(&b[0..4], &[0xd4, 0xc3, 0xb2, 0xa1], "{path}: little-endian classic pcap expected");
    let link = u32::from_le_bytes(b[20..24].try_into().unwrap());
    let mut off = 24;
    let mut out = vec![];
    while off + 16 <= b.len() {
        let incl = u32::from_le_bytes(b[off + 8..off + 12].try_into().unwrap()) as usize;
        let pkt = &b[off + 16..off + 16 + incl];
        off += 16 + incl;
        let ip = match link {
            1 => &pkt[14..],
            113 => &pkt[16..],
            _ => panic!("link type {link}"),
        };
        assert_eq!(ip[0] >> 4, 4);
        let ihl = (ip[0] & 15) as usize * 4;
        let src = IpAddr::from([ip[12], ip[13], ip[14], ip[15]]);
        let udp = &ip[ihl..];
        let sport = u16::from_be_bytes([udp[0], udp[1]]);
        let ulen = u16::from_be_bytes([udp[4], udp[5]]) as usize;
        out.push(Dgram { from: SocketAddr::new(src, sport), bytes: udp[8..ulen].to_vec() });
    }
    out
}

// ---------- a flow record reduced to what deflect needs ----------
#[derive(Debug, Default, Clone, PartialEq)]
struct Rec {
    src: Option<IpAddr>,
    dst: Option<IpAddr>,
    proto: Option<u64>,
    sport: Option<u64>,
    dport: Option<u64>,
    packets: Option<u64>,
    octets: Option<u64>,
    start_ms: Option<u64>,
    end_ms: Option<u64>,
    sampler_id: Option<u64>,
}
#[derive(Debug, Default, Clone, PartialEq)]
struct Opt {
    sampler_id: Option<u64>,
    sampler_mode: Option<u64>,
    interval: Option<u64>,
}

fn num(v: &FieldValue) -> Option<u64> {
    match v {
        FieldValue::ProtocolType(p) => Some(u8::from(*p) as u64),
        FieldValue::TcpControlBits(..) => None,
        other => other.as_u64(),
    }
}
fn ip(v: &FieldValue) -> Option<IpAddr> {
    match v {
        FieldValue::Ip4Addr(a) => Some(IpAddr::V4(*a)),
        FieldValue::Ip6Addr(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}
/// IANA element number -> our record (v9 numbers coincide with IPFIX for these).
fn put(r: &mut Rec, id: u16, v: &FieldValue) {
    match id {
        8 | 27 => r.src = ip(v),
        12 | 28 => r.dst = ip(v),
        4 => r.proto = num(v),
        7 => r.sport = num(v),
        11 => r.dport = num(v),
        2 => r.packets = num(v),
        1 => r.octets = num(v),
        152 => r.start_ms = num(v),
        153 => r.end_ms = num(v),
        48 => r.sampler_id = num(v),
        _ => {}
    }
}
fn put_opt(o: &mut Opt, id: u16, v: &FieldValue) {
    match id {
        48 | 302 => o.sampler_id = num(v),
        49 | 304 => o.sampler_mode = num(v),
        50 | 34 | 305 => o.interval = num(v),
        _ => {}
    }
}
fn ipfix_id(f: &IPFixField) -> Option<u16> {
    match f {
        // the IPFIX field enum has an Unknown(u16) variant, so no `as u16`: name each element
        IPFixField::IANA(x) => Some(match x {
            I::OctetDeltaCount => 1,
            I::PacketDeltaCount => 2,
            I::ProtocolIdentifier => 4,
            I::SourceTransportPort => 7,
            I::SourceIpv4address => 8,
            I::DestinationTransportPort => 11,
            I::DestinationIpv4address => 12,
            I::SourceIpv6address => 27,
            I::DestinationIpv6address => 28,
            I::SamplingInterval => 34,
            I::SamplerId => 48,
            I::SamplerMode => 49,
            I::SamplerRandomInterval => 50,
            I::FlowStartMilliseconds => 152,
            I::FlowEndMilliseconds => 153,
            I::SelectorId => 302,
            I::SelectorAlgorithm => 304,
            I::SamplingPacketInterval => 305,
            _ => return None,
        }),
        _ => None,
    }
}

#[derive(Default, Debug)]
struct Out {
    recs: Vec<Rec>,
    opts: Vec<Opt>,
    no_template: usize,
    v5_sampling: Option<u16>,
}
fn extract(p: &NetflowPacket, o: &mut Out) {
    match p {
        NetflowPacket::V5(v) => {
            o.v5_sampling = Some(v.header.sampling_interval);
            for f in &v.flowsets {
                o.recs.push(Rec {
                    src: Some(IpAddr::V4(f.src_addr)),
                    dst: Some(IpAddr::V4(f.dst_addr)),
                    proto: Some(f.protocol_number as u64),
                    sport: Some(f.src_port as u64),
                    dport: Some(f.dst_port as u64),
                    packets: Some(f.d_pkts as u64),
                    octets: Some(f.d_octets as u64),
                    start_ms: Some(f.first as u64),
                    end_ms: Some(f.last as u64),
                    sampler_id: None,
                })
            }
        }
        NetflowPacket::V9(v) => extract_v9(v, o),
        NetflowPacket::IPFix(v) => extract_ipfix(v, o),
        _ => {}
    }
}
fn extract_v9(v: &V9, o: &mut Out) {
    for fs in &v.flowsets {
        match &fs.body {
            V9Body::Data(d) => {
                for rec in &d.fields {
                    let mut r = Rec::default();
                    for (f, val) in rec {
                        put(&mut r, u16::from(*f), val);
                    }
                    o.recs.push(r);
                }
            }
            V9Body::OptionsData(d) => {
                for od in &d.fields {
                    let mut x = Opt::default();
                    for (f, val) in &od.options_fields {
                        put_opt(&mut x, u16::from(*f), val);
                    }
                    o.opts.push(x);
                }
            }
            V9Body::NoTemplate(_) => o.no_template += 1,
            _ => {}
        }
    }
}
fn extract_ipfix(v: &IPFix, o: &mut Out) {
    for fs in &v.flowsets {
        match &fs.body {
            IpfixBody::Data(d) => {
                for rec in &d.fields {
                    let mut r = Rec::default();
                    for (f, val) in rec {
                        if let Some(id) = ipfix_id(f) {
                            put(&mut r, id, val);
                        }
                    }
                    o.recs.push(r);
                }
            }
            IpfixBody::OptionsData(d) => {
                for od in &d.fields {
                    let mut x = Opt::default();
                    for (f, val) in od {
                        if let Some(id) = ipfix_id(f) {
                            put_opt(&mut x, id, val);
                        }
                    }
                    o.opts.push(x);
                }
            }
            IpfixBody::NoTemplate(_) => o.no_template += 1,
            IpfixBody::V9Data(_) | IpfixBody::V9OptionsData(_) => {}
            _ => {}
        }
    }
}

// ---------- section 1: correctness against tshark ----------
fn exp_rec(r: &Value, v5: bool) -> Rec {
    let n = |k: &str| r.get(k).and_then(|x| x.as_u64());
    let a = |k: &str| r.get(k).and_then(|x| x.as_str()).map(|s| s.parse().unwrap());
    Rec {
        src: a("src"),
        dst: a("dst"),
        proto: n("proto"),
        sport: n("src_port"),
        dport: n("dst_port"),
        packets: n("packets"),
        octets: n("octets"),
        start_ms: if v5 { n("first_uptime_ms") } else { n("start_ms") },
        end_ms: if v5 { n("last_uptime_ms") } else { n("end_ms") },
        sampler_id: n("sampler_id"),
    }
}
fn correctness(dir: &str) {
    println!("## correctness against tshark (netflow_parser, AutoScopedParser keyed by exporter address)");
    let mut names: Vec<_> = std::fs::read_dir(dir).unwrap().filter_map(|e| {
        let n = e.unwrap().file_name().into_string().unwrap();
        n.strip_suffix(".pcap").map(|s| s.to_string())
    }).collect();
    names.sort();
    for name in names {
        let dg = read_pcap(&format!("{dir}/{name}.pcap"));
        let exp: Value = serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}.expected.json")).unwrap()).unwrap();
        let exp = exp["datagrams"].as_array().unwrap();
        let mut p = AutoScopedParser::new();
        let (mut ok, mut bad, mut total, mut opts_ok, mut opts_total, mut errs, mut nt) = (0, 0, 0, 0, 0, 0, 0);
        let mut first_bad = None;
        let mut sampling = vec![];
        for (i, d) in dg.iter().enumerate() {
            let res = p.parse_from_source(d.from, &d.bytes);
            if res.error.is_some() {
                errs += 1;
            }
            let mut o = Out::default();
            for pk in &res.packets {
                extract(pk, &mut o);
            }
            nt += o.no_template;
            if let Some(s) = o.v5_sampling {
                sampling.push(s);
            }
            let e = &exp[i];
            let v5 = e["version"] == 5;
            let er: Vec<Rec> = e["records"].as_array().unwrap().iter().map(|r| exp_rec(r, v5)).collect();
            total += er.len();
            for (k, r) in er.iter().enumerate() {
                if o.recs.get(k) == Some(r) {
                    ok += 1
                } else {
                    bad += 1;
                    if first_bad.is_none() {
                        first_bad = Some(format!("dgram {i} rec {k}: tshark {r:?} vs parser {:?}", o.recs.get(k)));
                    }
                }
            }
            if o.recs.len() > er.len() {
                bad += o.recs.len() - er.len();
            }
            for (k, x) in e["options"].as_array().unwrap().iter().enumerate() {
                if x.get("sampler_random_interval").is_none() {
                    continue;
                }
                opts_total += 1;
                let want = Opt {
                    sampler_id: x["sampler_id"].as_u64(),
                    sampler_mode: x["sampler_mode"].as_u64(),
                    interval: x["sampler_random_interval"].as_u64(),
                };
                if o.opts.iter().any(|g| *g == want) {
                    opts_ok += 1;
                } else {
                    println!("   options {k} differ: tshark {want:?} parser {:?}", o.opts);
                }
            }
        }
        sampling.dedup();
        println!(
            "{name}: {} datagrams, records {ok}/{total} equal to tshark ({bad} differ), sampler options {opts_ok}/{opts_total}, parse errors {errs}, no-template flowsets {nt}{}",
            dg.len(),
            if sampling.is_empty() { String::new() } else { format!(", v5 header sampling_interval {sampling:?}") }
        );
        if let Some(b) = first_bad {
            println!("   first difference: {b}");
        }
    }
}

// ---------- raw v9/IPFIX walking, to build test datagrams ----------
struct Parts {
    header: Vec<u8>,
    template_dgram: Vec<u8>,
    records: Vec<Vec<u8>>, // raw records of the main IPv4 template
    tid: u16,
}
fn parts(dg: &[Dgram]) -> Parts {
    let ipfix = u16::from_be_bytes([dg[0].bytes[0], dg[0].bytes[1]]) == 10;
    let hl = if ipfix { 16 } else { 20 };
    let mut lens = std::collections::HashMap::new();
    let mut records: std::collections::HashMap<u16, Vec<Vec<u8>>> = Default::default();
    for d in dg {
        let b = &d.bytes;
        let mut off = hl;
        while off + 4 <= b.len() {
            let id = u16::from_be_bytes([b[off], b[off + 1]]);
            let len = u16::from_be_bytes([b[off + 2], b[off + 3]]) as usize;
            if len < 4 || off + len > b.len() {
                break;
            }
            let body = &b[off + 4..off + len];
            if (id == 0 && !ipfix) || (id == 2 && ipfix) {
                let mut t = 0;
                while t + 4 <= body.len() {
                    let tid = u16::from_be_bytes([body[t], body[t + 1]]);
                    let n = u16::from_be_bytes([body[t + 2], body[t + 3]]) as usize;
                    t += 4;
                    let mut rl = 0;
                    for _ in 0..n {
                        let ty = u16::from_be_bytes([body[t], body[t + 1]]);
                        rl += u16::from_be_bytes([body[t + 2], body[t + 3]]) as usize;
                        t += if ipfix && ty & 0x8000 != 0 { 8 } else { 4 };
                    }
                    lens.insert(tid, rl);
                }
            } else if id >= 256 {
                if let Some(&rl) = lens.get(&id) {
                    for r in body.chunks_exact(rl) {
                        records.entry(id).or_default().push(r.to_vec());
                    }
                }
            }
            off += len;
        }
    }
    let (&tid, recs) = records.iter().max_by_key(|(_, v)| v.len()).unwrap();
    Parts { header: dg[0].bytes[..hl].to_vec(), template_dgram: dg[0].bytes.clone(), records: recs.clone(), tid }
}
/// Writes the sequence number datagram `i` of a steady export would carry (v9: datagrams, IPFIX: records).
fn reseq(b: &mut [u8], i: usize, per: usize) {
    if b[1] == 10 {
        b[8..12].copy_from_slice(&((i * per) as u32).to_be_bytes());
    } else {
        b[12..16].copy_from_slice(&((i + 2) as u32).to_be_bytes());
    }
}
/// A datagram of `n` data records of the main template, sequence `seq`.
fn build(p: &Parts, n: usize, seq: u32, rng: &mut Rng) -> Vec<u8> {
    let mut b = p.header.clone();
    let ipfix = b[1] == 10;
    let rl = p.records[0].len();
    let set_len = 4 + n * rl;
    b.extend_from_slice(&p.tid.to_be_bytes());
    b.extend_from_slice(&(set_len as u16).to_be_bytes());
    for _ in 0..n {
        b.extend_from_slice(&p.records[rng.below(p.records.len())]);
    }
    if ipfix {
        let l = b.len() as u16;
        b[2..4].copy_from_slice(&l.to_be_bytes());
        b[8..12].copy_from_slice(&seq.to_be_bytes());
    } else {
        b[2..4].copy_from_slice(&(n as u16).to_be_bytes());
        b[12..16].copy_from_slice(&seq.to_be_bytes());
    }
    b
}

// ---------- section 2: template behaviour ----------
fn v9_dgram(source_id: u16, sets: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![0, 9, 0, sets.len() as u8, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1];
    b.extend_from_slice(&(source_id as u32).to_be_bytes());
    for s in sets {
        b.extend_from_slice(s);
    }
    b
}
fn set(id: u16, body: &[u8]) -> Vec<u8> {
    let mut s = id.to_be_bytes().to_vec();
    s.extend_from_slice(&((body.len() + 4) as u16).to_be_bytes());
    s.extend_from_slice(body);
    s
}
fn ipfix_dgram(odid: u32, sets: &[Vec<u8>]) -> Vec<u8> {
    let mut b = vec![0, 10, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1];
    b.extend_from_slice(&odid.to_be_bytes());
    for s in sets {
        b.extend_from_slice(s);
    }
    let l = b.len() as u16;
    b[2..4].copy_from_slice(&l.to_be_bytes());
    b
}
fn recs_of(res: &netflow_parser::ParseResult) -> Out {
    let mut o = Out::default();
    for p in &res.packets {
        extract(p, &mut o);
    }
    o
}
fn behaviour(dir: &str) {
    println!("## template behaviour");
    let v9 = read_pcap(&format!("{dir}/pmacct-v9.pcap"));
    // data before template
    let mut p = NetflowParser::default();
    let r1 = p.parse_bytes(&v9[1].bytes);
    let o1 = recs_of(&r1);
    let r0 = p.parse_bytes(&v9[0].bytes);
    let o0 = recs_of(&r0);
    println!("data before template, default parser: {} records, {} no-template flowsets; after the template datagram: {} records (its own), error {:?}",
        o1.recs.len(), o1.no_template, o0.recs.len(), r0.error.is_some());
    let mut p = NetflowParser::builder().with_pending_flows(PendingFlowsConfig::default()).build().unwrap();
    let o1 = recs_of(&p.parse_bytes(&v9[1].bytes));
    let o0 = recs_of(&p.parse_bytes(&v9[0].bytes));
    println!("data before template, with_pending_flows: {} records at first, {} after the template datagram (its own {} + replayed)",
        o1.recs.len(), o0.recs.len(), recs_of(&NetflowParser::default().parse_bytes(&v9[0].bytes)).recs.len());
    println!("default v9 cache: {:?}", {
        let mut p = NetflowParser::default();
        let _ = p.parse_bytes(&v9[0].bytes);
        let c = p.v9_cache_info();
        (c.current_size, c.max_size_per_cache, c.num_caches, c.ttl_config)
    });

    // scoping: two source ids, same template id 300, different layouts
    let t_a = set(0, &[1, 44, 0, 2, 0, 8, 0, 4, 0, 12, 0, 4]); // 300: src4, dst4
    let t_b = set(0, &[1, 44, 0, 2, 0, 2, 0, 4, 0, 1, 0, 4]); // 300: packets, octets
    let data = set(300, &[198, 51, 100, 1, 203, 0, 113, 10]);
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mut single = NetflowParser::default();
    let _ = single.parse_bytes(&v9_dgram(7, &[t_a.clone()]));
    let _ = single.parse_bytes(&v9_dgram(8, &[t_b.clone()]));
    let o = recs_of(&single.parse_bytes(&v9_dgram(7, &[data.clone()])));
    println!("NetflowParser (one cache): source 7's data after source 8 redefined template 300: {:?}", o.recs.first());
    let mut auto = AutoScopedParser::new();
    let _ = auto.parse_from_source(from, &v9_dgram(7, &[t_a]));
    let _ = auto.parse_from_source(from, &v9_dgram(8, &[t_b]));
    let o = recs_of(&auto.parse_from_source(from, &v9_dgram(7, &[data])));
    println!("AutoScopedParser (addr, source_id): source 7's data: {:?}; sources {}", o.recs.first().map(|r| (r.src, r.dst)), auto.source_count());

    // IPFIX withdrawal, enterprise and variable-length fields
    let mut p = NetflowParser::default();
    // template 400: sourceIPv4Address(8,4), PEN 29305 el 1 len 4, applicationName(96, varlen), PEN 12345 el 2 varlen
    let mut t = vec![1, 144, 0, 4, 0, 8, 0, 4, 0x80, 1, 0, 4, 0, 0, 0x72, 0x79, 0, 96, 0xff, 0xff, 0x80, 2, 0xff, 0xff, 0, 0, 0x30, 0x39];
    let tset = set(2, &t);
    let mut d = vec![198, 51, 100, 7, 0xde, 0xad, 0xbe, 0xef, 4, b'h', b't', b't', b'p', 255, 1, 44];
    d.extend(std::iter::repeat(b'z').take(300));
    let dset = set(400, &d);
    let r = p.parse_bytes(&ipfix_dgram(1, &[tset, dset.clone()]));
    let mut shown = String::new();
    if let Some(NetflowPacket::IPFix(x)) = r.packets.first() {
        for fs in &x.flowsets {
            if let IpfixBody::Data(dd) = &fs.body {
                for rec in &dd.fields {
                    for (f, v) in rec {
                        let vs = format!("{v:?}");
                        shown += &format!("{f:?}={} | ", if vs.len() > 60 { format!("{}...({} chars)", &vs[..60], vs.len()) } else { vs });
                    }
                }
            }
        }
    }
    println!("IPFIX enterprise + variable-length record: error {:?}; {shown}", r.error.as_ref().map(|e| e.to_string()));
    t.truncate(0);
    let wd = set(2, &[1, 144, 0, 0]);
    let had = p.has_ipfix_template(400);
    let rw = p.parse_bytes(&ipfix_dgram(1, &[wd]));
    let o = recs_of(&p.parse_bytes(&ipfix_dgram(1, &[dset])));
    println!("IPFIX withdrawal of 400: had {had}, after withdrawal has {} (error {:?}); data afterwards: {} records, {} no-template",
        p.has_ipfix_template(400), rw.error.is_some(), o.recs.len(), o.no_template);
}

// ---------- section 3: robustness ----------
fn mutate(rng: &mut Rng, src: &[u8]) -> Vec<u8> {
    let mut b = src.to_vec();
    for _ in 0..1 + rng.below(4) {
        if b.is_empty() {
            break;
        }
        match rng.below(7) {
            0 => { let i = rng.below(b.len()); b[i] = rng.next() as u8; }
            1 => { let i = rng.below(b.len()); b[i] ^= 1 << rng.below(8); }
            2 => { let n = rng.below(b.len() + 1); b.truncate(n); }
            3 => { for _ in 0..rng.below(64) { b.push(rng.next() as u8); } }
            4 | 5 => {
                // an interesting 16-bit value at a random even offset (lengths, counts, ids)
                if b.len() >= 2 {
                    let i = rng.below(b.len() - 1) & !1;
                    let v: u16 = [0, 1, 2, 3, 4, 0xffff, 0x8000, 0x7fff, 256, 1024, (b.len() - i) as u16][rng.below(11)];
                    b[i..i + 2].copy_from_slice(&v.to_be_bytes());
                }
            }
            _ => { let i = rng.below(b.len()); let j = rng.below(b.len()); b.swap(i, j); }
        }
    }
    b
}
fn robustness(corpus: &[Vec<u8>], mutations: usize, name: &str, decode: &mut dyn FnMut(&[u8]) -> usize) {
    static PANICS: AtomicU64 = AtomicU64::new(0);
    std::panic::set_hook(Box::new(|info| {
        if PANICS.fetch_add(1, Relaxed) < 3 {
            eprintln!("panic: {info}");
        }
    }));
    PANICS.store(0, Relaxed);
    let rss0 = rss_kb();
    let mut rng = Rng(0x9e3779b97f4a7c15);
    let t0 = Instant::now();
    let (mut panics, mut recs) = (0u64, 0usize);
    let random = mutations / 5;
    for i in 0..random {
        let n = rng.below(1500);
        let mut b: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        if b.len() >= 2 && i % 2 == 0 {
            b[0] = 0;
            b[1] = [5u8, 9, 10][rng.below(3)];
        }
        match catch_unwind(AssertUnwindSafe(|| decode(&b))) { Ok(n) => recs += n, Err(_) => panics += 1 }
    }
    let mut done = 0;
    for _ in 0..mutations {
        if t0.elapsed().as_secs() > 240 { break; }
        let src = &corpus[rng.below(corpus.len())];
        let b = mutate(&mut rng, src);
        match catch_unwind(AssertUnwindSafe(|| decode(&b))) { Ok(n) => recs += n, Err(_) => panics += 1 }
        done += 1;
    }
    let _ = std::panic::take_hook();
    println!("{name}: {random} random buffers + {done} mutations of {} real datagrams (seed 0x9e3779b97f4a7c15): {panics} panics, {recs} records decoded, {:.1} s, RSS {} -> {} kB",
        corpus.len(), t0.elapsed().as_secs_f64(), rss0, rss_kb());
}

// ---------- section 4: template flood ----------
fn flood() {
    println!("## template flood (v9, one exporter address)");
    let mut rng = Rng(42);
    let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let mk = |rng: &mut Rng, n: usize| -> Vec<u8> {
        let mut body = vec![];
        for _ in 0..n {
            let tid = 256 + rng.below(65280) as u16;
            body.extend_from_slice(&tid.to_be_bytes());
            body.extend_from_slice(&20u16.to_be_bytes());
            for _ in 0..20 {
                body.extend_from_slice(&(1 + rng.below(100) as u16).to_be_bytes());
                body.extend_from_slice(&4u16.to_be_bytes());
            }
        }
        set(0, &body)
    };
    let rss0 = rss_kb();
    let mut one = AutoScopedParser::new();
    let t = thread_cpu();
    for _ in 0..20_000 {
        let s = mk(&mut rng, 10);
        let _ = one.parse_from_source(from, &v9_dgram(7, &[s]));
    }
    let rss1 = rss_kb();
    println!("200,000 templates (ids random in 256..65535, 20 fields) in 20,000 datagrams, one source id: RSS {rss0} -> {rss1} kB, {:.2} CPU-s",
        thread_cpu() - t);
    drop(one);
    let mut many = AutoScopedParser::new();
    let rss0 = rss_kb();
    let t = thread_cpu();
    for i in 0..50_000u32 {
        let s = mk(&mut rng, 10);
        let mut d = v9_dgram(0, &[s]);
        d[16..20].copy_from_slice(&i.to_be_bytes());
        let _ = many.parse_from_source(from, &d);
    }
    println!("50,000 source ids x 10 templates from one address: sources kept {}, RSS {rss0} -> {} kB, {:.2} CPU-s",
        many.source_count(), rss_kb(), thread_cpu() - t);
}

// ---------- section 5: speed ----------
fn speed(dir: &str, n: usize) {
    println!("## speed (one thread, CPU time from CLOCK_THREAD_CPUTIME_ID)");
    for (file, per) in [("pmacct-v9.pcap", 24usize), ("pmacct-ipfix.pcap", 24)] {
        let dg = read_pcap(&format!("{dir}/{file}"));
        let p = parts(&dg);
        let mut rng = Rng(7);
        let set: Vec<Vec<u8>> = (0..1024).map(|i| build(&p, per, 100 + i as u32 * per as u32, &mut rng)).collect();
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut parser = AutoScopedParser::new();
        let _ = parser.parse_from_source(from, &p.template_dgram);
        // check a built datagram decodes whole
        let mut b0 = set[0].clone(); reseq(&mut b0, 0, per);
        let o = recs_of(&parser.parse_from_source(from, &b0));
        assert_eq!(o.recs.len(), per, "built datagram decodes");
        for mode in ["parse only", "parse + extract"] {
            let a0 = ALLOCS.load(Relaxed);
            let b0 = ALLOC_BYTES.load(Relaxed);
            let t0 = thread_cpu();
            let mut recs = 0usize;
            for i in 1..=n {
                let mut b = set[i % set.len()].clone(); // like for like: one copy, as a receive buffer would be
                reseq(&mut b, i, per);
                let res = parser.parse_from_source(from, &b);
                if mode == "parse + extract" {
                    let o = recs_of(&res);
                    recs += o.recs.len();
                } else {
                    recs += res.packets.len();
                }
            }
            let cpu = thread_cpu() - t0;
            let allocs = (ALLOCS.load(Relaxed) - a0) as f64 / n as f64;
            let bytes = (ALLOC_BYTES.load(Relaxed) - b0) as f64 / n as f64;
            println!("netflow_parser {file} ({} B, {per} records/datagram) {mode}: {n} datagrams in {cpu:.3} CPU-s = {:.0} datagrams/CPU-s = {:.2} M records/CPU-s; {allocs:.0} allocations ({bytes:.0} B) per datagram [{recs}]",
                set[0].len(), n as f64 / cpu, (n * per) as f64 / cpu / 1e6);
        }
    }
}

#[cfg(feature = "deflect")]
mod deflect {
    use super::*;
    use deflect_netflow::session::{Limits, Session};
    pub fn to_rec(f: &deflect_netflow::flow::Flow, v5: bool) -> Rec {
        Rec {
            src: Some(f.src), dst: Some(f.dst), proto: Some(f.proto as u64),
            sport: Some(f.src_port as u64), dport: Some(f.dst_port as u64),
            packets: Some(f.packets), octets: Some(f.bytes),
            start_ms: if v5 { None } else { f.start_ms }, end_ms: if v5 { None } else { f.end_ms },
            sampler_id: None,
        }
    }
    pub fn correctness(dir: &str) {
        println!("## correctness against tshark (deflect_netflow Session, one per exporter address; v5 times and sampler ids not compared)");
        for name in ["pmacct-v5", "pmacct-v5-sampled", "pmacct-v9", "pmacct-v9-sampled", "pmacct-ipfix", "pmacct-ipfix-sampled"] {
            let dg = read_pcap(&format!("{dir}/{name}.pcap"));
            let exp: Value = serde_json::from_str(&std::fs::read_to_string(format!("{dir}/{name}.expected.json")).unwrap()).unwrap();
            let exp = exp["datagrams"].as_array().unwrap();
            let mut s = Session::new(Limits::default());
            let (mut ok, mut total, mut errs) = (0, 0, 0);
            let mut sampling = std::collections::BTreeSet::new();
            let mut first_bad = None;
            for (i, d) in dg.iter().enumerate() {
                let v5 = exp[i]["version"] == 5;
                let got: Vec<Rec> = match s.decode(bytes::Bytes::from(d.bytes.clone()), 1_000 * i as u64) {
                    Ok(p) => { errs += p.errors.len(); for f in &p.flows { sampling.insert(f.sampling); } p.flows.iter().map(|f| to_rec(f, v5)).collect() }
                    Err(e) => { errs += 1; if first_bad.is_none() { first_bad = Some(format!("dgram {i}: {e}")); } vec![] }
                };
                for (k, r) in exp[i]["records"].as_array().unwrap().iter().enumerate() {
                    total += 1;
                    let mut want = exp_rec(r, v5);
                    want.sampler_id = None;
                    if v5 { want.start_ms = None; want.end_ms = None; }
                    if got.get(k) == Some(&want) { ok += 1 } else if first_bad.is_none() {
                        first_bad = Some(format!("dgram {i} rec {k}: tshark {want:?} vs deflect {:?}", got.get(k)));
                    }
                }
            }
            println!("{name}: records {ok}/{total} equal to tshark, errors {errs}, Flow.sampling values {sampling:?}");
            if let Some(b) = first_bad { println!("   first difference: {b}"); }
        }
    }
    pub fn speed(dir: &str, n: usize) {
        for file in ["pmacct-v9.pcap", "pmacct-ipfix.pcap"] {
            let per = 24;
            let dg = read_pcap(&format!("{dir}/{file}"));
            let p = parts(&dg);
            let mut rng = Rng(7);
            let set: Vec<Vec<u8>> = (0..1024).map(|i| build(&p, per, 100 + i as u32 * per as u32, &mut rng)).collect();
            let mut s = Session::new(Limits::default());
            s.decode(bytes::Bytes::from(p.template_dgram.clone()), 0).unwrap();
            let mut b0 = set[0].clone(); reseq(&mut b0, 0, per);
            assert_eq!(s.decode(bytes::Bytes::from(b0), 1).unwrap().flows.len(), per);
            let a0 = ALLOCS.load(Relaxed);
            let b0 = ALLOC_BYTES.load(Relaxed);
            let t0 = thread_cpu();
            let mut recs = 0;
            for i in 1..=n {
                let mut b = set[i % set.len()].to_vec(); // like for like: one copy, as a receive buffer would be
                reseq(&mut b, i, per);
                match s.decode(bytes::Bytes::from(b), 2 + i as u64 / 1000) { Ok(pk) => recs += pk.flows.len(), Err(e) => panic!("{e}") }
            }
            let cpu = thread_cpu() - t0;
            println!("deflect_netflow {file} ({} B, {per} records/datagram) decode to Flow: {n} datagrams in {cpu:.3} CPU-s = {:.0} datagrams/CPU-s = {:.2} M records/CPU-s; {:.0} allocations ({:.0} B) per datagram [{recs}]",
                set[0].len(), n as f64 / cpu, (n * per) as f64 / cpu / 1e6,
                (ALLOCS.load(Relaxed) - a0) as f64 / n as f64, (ALLOC_BYTES.load(Relaxed) - b0) as f64 / n as f64);
        }
    }
    pub fn fuzz(corpus: &[Vec<u8>], mutations: usize) {
        let mut s = Session::new(Limits::default());
        for c in corpus { let _ = s.decode(bytes::Bytes::from(c.clone()), 0); }
        let mut now = 0u64;
        robustness(corpus, mutations, "deflect_netflow Session (templates learned from the captures, mutated templates learned too)", &mut |b| {
            now += 1;
            s.decode(bytes::Bytes::copy_from_slice(b), now / 1000).map(|p| p.flows.len()).unwrap_or(0)
        });
        println!("   session after fuzzing: {} templates, {} held sets", s.templates(), s.held_sets());
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map(|s| s.as_str()).unwrap_or("data");
    let mutations: usize = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(1_000_000);
    let speed_n: usize = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(200_000);
    let what = args.get(4).map(|s| s.as_str()).unwrap_or("all");
    println!("netflow_parser 1.0.6 eval; rustc {}", env!("RUSTC_VERSION_HINT"));
    if what == "all" || what == "correct" {
        correctness(dir);
        behaviour(dir);
        #[cfg(feature = "deflect")]
        deflect::correctness(dir);
    }
    if what == "all" || what == "speed" {
        speed(dir, speed_n);
        #[cfg(feature = "deflect")]
        deflect::speed(dir, speed_n);
    }
    if what == "all" || what == "fuzz" {
        println!("## robustness");
        let mut corpus = vec![];
        for e in std::fs::read_dir(dir).unwrap() {
            let n = e.unwrap().path();
            if n.extension().map(|x| x == "pcap").unwrap_or(false) {
                corpus.extend(read_pcap(n.to_str().unwrap()).into_iter().map(|d| d.bytes));
            }
        }
        let from: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mut p = AutoScopedParser::new();
        for c in &corpus { let _ = p.parse_from_source(from, c); }
        robustness(&corpus, mutations, "netflow_parser AutoScopedParser (templates learned from the captures, mutated templates learned too)", &mut |b| {
            let r = p.parse_from_source(from, b);
            recs_of(&r).recs.len()
        });
        #[cfg(feature = "deflect")]
        deflect::fuzz(&corpus, mutations);
    }
    if what == "all" || what == "flood" { flood(); }
}
