//! [`Session`]: one exporter's state, and [`Session::decode`], which reads one datagram against it.
//!
//! What a session keeps, and why (every collection bounded by [`Limits`]):
//! - templates and options templates, keyed by (version, source id / observation domain, template
//!   id): RFC 3954 §5.2 and RFC 7011 §8 scope a template to the exporter (the session) and domain.
//!   Over UDP they are resent periodically and expire when not refreshed (RFC 7011 §8.4); a flood
//!   of new ids evicts the least recently used.
//! - data sets that arrived before their template, copied, for a short while: exporters send
//!   templates every few seconds, and a collector that starts (or an exporter that reorders)
//!   would otherwise lose the first seconds of flows. They are decoded when the template comes,
//!   never guessed.
//! - per domain: the sequence number expected next (loss, restarts), sampling and timeouts learned
//!   from options data, the exporter's boot time (IPFIX systemInitTimeMilliseconds).
//! - samplers (v9 FLOW_SAMPLER_ID, IPFIX samplerId / selectorId) and their 1-in-N.
//!
//! It must not read a clock: `now_ms` is the caller's, used only for expiry.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::Bytes;

use crate::error::{DecodeError, ErrorKind, Place};
use crate::flow::Flow;
use crate::ie;
use crate::record::{self, Clock, Compiled, Values};
use crate::template::{self, TemplateRecord};
use crate::v5;

/// The bounds of one [`Session`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Templates and options templates kept; beyond, the least recently used is evicted. Also
    /// bounds the domains whose sequence and options state is tracked.
    pub max_templates: usize,
    /// A template with more fields is refused.
    pub max_template_fields: usize,
    /// A template not refreshed for this long expires (RFC 7011 §8.4).
    pub template_lifetime_ms: u64,
    /// Data sets held for a template not yet known, at most this many...
    pub max_pending_sets: usize,
    /// ...holding at most this many octets...
    pub max_pending_bytes: usize,
    /// ...for at most this long.
    pub pending_ms: u64,
    /// Sampler entries kept (least recently used evicted).
    pub max_samplers: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_templates: 256,
            max_template_fields: 256,
            template_lifetime_ms: 30 * 60 * 1000,
            max_pending_sets: 64,
            max_pending_bytes: 256 * 1024,
            pending_ms: 10_000,
            max_samplers: 64,
        }
    }
}

/// Cumulative counters of one session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Datagrams given to [`Session::decode`], and those refused whole (bad header).
    pub datagrams: u64,
    pub datagrams_refused: u64,
    /// Flows returned.
    pub flows: u64,
    pub templates_added: u64,
    /// The same template again (its lifetime restarts).
    pub templates_refreshed: u64,
    /// The same id with another layout.
    pub templates_replaced: u64,
    pub templates_withdrawn: u64,
    pub templates_expired: u64,
    pub templates_evicted: u64,
    /// Refused: id below 256, too many fields, no field, records too long, bad scope.
    pub templates_refused: u64,
    /// Data sets held because their template was unknown.
    pub sets_unknown_template: u64,
    /// Held sets decoded when their template came.
    pub sets_decoded_late: u64,
    /// Held sets dropped: too old, no room, or their domain restarted.
    pub sets_dropped: u64,
    /// Sets with a reserved id (v9 2–255, IPFIX 0, 1, 4–255), skipped.
    pub sets_reserved: u64,
    /// Template sets and set headers that could not be read to the end.
    pub sets_malformed: u64,
    /// Data records with a field past the end of their set (the rest of the set is lost).
    pub records_malformed: u64,
    /// Data records with no address: not a [`Flow`].
    pub records_not_flows: u64,
    /// Options data records read (samplers, timeouts, boot time).
    pub options_records: u64,
    /// Sequence gaps: v5 flows, v9 packets, IPFIX data records.
    pub lost: u64,
    /// Exporter restarts seen (sequence or uptime going back).
    pub restarts: u64,
    pub samplers_evicted: u64,
    pub domains_evicted: u64,
}

/// What one datagram carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// 5, 9 or 10.
    pub version: u16,
    /// The header's export time, unix ms.
    pub export_ms: u64,
    /// v9 source id, IPFIX observation domain id, v5 `engine_type << 8 | engine_id`.
    pub domain: u32,
    /// The header's sequence number.
    pub sequence: u32,
    /// This datagram's flows, then those of held sets its templates resolved.
    pub flows: Vec<Flow>,
    /// The sequence gap this datagram revealed (v5 flows, v9 packets, IPFIX data records).
    pub lost: u64,
    /// The exporter restarted (sequence or uptime went back): the domain's templates, samplers
    /// and options state were cleared before this datagram was read.
    pub restarted: bool,
    /// The domain's timeouts, from options data (sticky).
    pub active_timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    /// Sets that could not be decoded (each lost alone; the others were decoded).
    pub errors: Vec<DecodeError>,
}

type TemplateKey = (u16, u32, u16);
type DomainKey = (u16, u32);

#[derive(Debug)]
struct Entry {
    compiled: Arc<Compiled>,
    refreshed_ms: u64,
    used: u64,
}

#[derive(Debug, Default)]
struct Domain {
    /// The sequence number the next datagram should carry; `None` before the first, or when the
    /// last one had records that could not be counted (held sets).
    next_sequence: Option<u32>,
    uptime_ms: Option<u32>,
    sampling: Option<u32>,
    active_timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    init_ms: Option<u64>,
    used: u64,
}

#[derive(Debug)]
struct Sampler {
    key: (u16, u32, u64),
    one_in: u32,
    used: u64,
}

#[derive(Debug)]
struct Held {
    key: TemplateKey,
    set_index: usize,
    data: Bytes,
    clock: Clock,
    received_ms: u64,
}

/// One exporter's decoding state; see the module documentation.
#[derive(Debug)]
pub struct Session {
    limits: Limits,
    templates: HashMap<TemplateKey, Entry>,
    domains: HashMap<DomainKey, Domain>,
    samplers: Vec<Sampler>,
    held: VecDeque<Held>,
    held_bytes: usize,
    /// A logical clock for least-recently-used eviction.
    tick: u64,
    next_sweep_ms: u64,
    stats: SessionStats,
}

/// How far a sequence may go back and still be a reordered datagram rather than a restart.
const REORDER_PACKETS: u32 = 64;
const REORDER_RECORDS: u32 = 4096;
/// How far sysUptime may go back (reordering) before it means a reboot.
const UPTIME_BACK_MS: i32 = 10_000;

impl Session {
    pub fn new(limits: Limits) -> Session {
        Session {
            limits,
            templates: HashMap::new(),
            domains: HashMap::new(),
            samplers: Vec::new(),
            held: VecDeque::new(),
            held_bytes: 0,
            tick: 0,
            next_sweep_ms: 0,
            stats: SessionStats::default(),
        }
    }

    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Live templates and options templates.
    pub fn templates(&self) -> usize {
        self.templates.len()
    }

    /// Data sets held for a template.
    pub fn held_sets(&self) -> usize {
        self.held.len()
    }

    /// Decodes one UDP payload received at `now_ms` (unix ms, the caller's clock; used only for
    /// template expiry and held sets). v5, v9 and IPFIX are told apart by the version field.
    pub fn decode(&mut self, data: Bytes, now_ms: u64) -> Result<Packet, DecodeError> {
        self.stats.datagrams += 1;
        self.tick += 1;
        self.expire(now_ms);
        let r = match data.get(..2) {
            Some(&[a, b]) => match u16::from_be_bytes([a, b]) {
                ie::version::V5 => self.v5(&data),
                ie::version::V9 => self.v9(data, now_ms),
                ie::version::IPFIX => self.ipfix(data, now_ms),
                v => Err(ErrorKind::Version(v)),
            },
            _ => Err(ErrorKind::Truncated {
                need: 2,
                have: data.len(),
            }),
        };
        match r {
            Ok(p) => {
                self.stats.flows += p.flows.len() as u64;
                Ok(p)
            }
            Err(kind) => {
                self.stats.datagrams_refused += 1;
                Err(Place::Header.error(kind))
            }
        }
    }

    /// Drops held sets older than `pending_ms`, and (at most once a second of the caller's clock)
    /// templates not refreshed for `template_lifetime_ms`.
    fn expire(&mut self, now_ms: u64) {
        while let Some(h) = self.held.front() {
            if now_ms.saturating_sub(h.received_ms) <= self.limits.pending_ms {
                break;
            }
            self.drop_front_held();
        }
        if now_ms >= self.next_sweep_ms {
            self.next_sweep_ms = now_ms.saturating_add(1000);
            let lifetime = self.limits.template_lifetime_ms;
            let before = self.templates.len();
            self.templates
                .retain(|_, e| now_ms.saturating_sub(e.refreshed_ms) <= lifetime);
            self.stats.templates_expired += (before - self.templates.len()) as u64;
        }
    }

    fn drop_front_held(&mut self) {
        if let Some(h) = self.held.pop_front() {
            self.held_bytes -= h.data.len();
            self.stats.sets_dropped += 1;
        }
    }

    /// The domain's state, created (evicting the least recently used) if new.
    fn domain(&mut self, key: DomainKey) -> &mut Domain {
        if self.domains.len() >= self.limits.max_templates.max(1)
            && !self.domains.contains_key(&key)
        {
            if let Some(old) = self
                .domains
                .iter()
                .min_by_key(|(_, d)| d.used)
                .map(|(k, _)| *k)
            {
                self.domains.remove(&old);
                self.stats.domains_evicted += 1;
            }
        }
        let d = self.domains.entry(key).or_default();
        d.used = self.tick;
        d
    }

    /// Checks `sequence` against the one expected; returns (lost, restarted). `window` is how far
    /// back a reordered datagram may be.
    fn sequence(
        &mut self,
        key: DomainKey,
        sequence: u32,
        uptime: Option<u32>,
        window: u32,
    ) -> (u64, bool) {
        let d = self.domain(key);
        let uptime_back = match (d.uptime_ms, uptime) {
            (Some(prev), Some(now)) => prev.wrapping_sub(now) as i32 > UPTIME_BACK_MS,
            _ => false,
        };
        let (lost, back_far, late) = match d.next_sequence {
            Some(next) => {
                let diff = sequence.wrapping_sub(next) as i32;
                if diff >= 0 {
                    (u64::from(diff.unsigned_abs()), false, false)
                } else {
                    (0, diff.unsigned_abs() > window, true)
                }
            }
            None => (0, false, false),
        };
        let restarted = uptime_back || back_far;
        if uptime.is_some() && (restarted || !late) {
            d.uptime_ms = uptime;
        }
        if restarted {
            self.restart(key);
            self.stats.restarts += 1;
            return (0, true);
        }
        self.stats.lost += lost;
        (lost, false)
    }

    /// Sets the sequence the next datagram should carry (unless this one was a late one).
    fn advance(
        &mut self,
        key: DomainKey,
        sequence: u32,
        by: Option<u32>,
        lost: u64,
        restarted: bool,
    ) {
        let d = self.domain(key);
        let late = d
            .next_sequence
            .is_some_and(|next| (sequence.wrapping_sub(next) as i32) < 0);
        if late && !restarted && lost == 0 {
            return;
        }
        d.next_sequence = by.map(|n| sequence.wrapping_add(n));
    }

    /// An exporter restarted: what it told before no longer holds (RFC 7011 §8: templates live
    /// only as long as the exporter's session).
    fn restart(&mut self, key: DomainKey) {
        self.templates.retain(|k, _| (k.0, k.1) != key);
        self.samplers.retain(|s| (s.key.0, s.key.1) != key);
        let mut dropped = 0;
        let mut bytes = 0;
        self.held.retain(|h| {
            let keep = (h.key.0, h.key.1) != key;
            if !keep {
                dropped += 1;
                bytes += h.data.len();
            }
            keep
        });
        self.held_bytes -= bytes;
        self.stats.sets_dropped += dropped;
        let d = self.domain(key);
        let used = d.used;
        *d = Domain {
            used,
            ..Domain::default()
        };
    }

    fn v5(&mut self, data: &[u8]) -> Result<Packet, ErrorKind> {
        let h = v5::header(data)?;
        let flows = v5::records(data, &h)?;
        let domain = u32::from(h.engine_type) << 8 | u32::from(h.engine_id);
        let key = (ie::version::V5, domain);
        let (lost, restarted) = self.sequence(key, h.sequence, Some(h.uptime_ms), REORDER_RECORDS);
        self.advance(key, h.sequence, Some(u32::from(h.count)), lost, restarted);
        Ok(Packet {
            version: ie::version::V5,
            export_ms: h.export_ms,
            domain,
            sequence: h.sequence,
            flows,
            lost,
            restarted,
            active_timeout_ms: None,
            idle_timeout_ms: None,
            errors: Vec::new(),
        })
    }

    /// RFC 3954 §5.1: version(2) count(2) sysUptime(4) unix_secs(4) sequence(4) source_id(4).
    fn v9(&mut self, data: Bytes, now_ms: u64) -> Result<Packet, ErrorKind> {
        const HEADER: usize = 20;
        let Some(h) = data.get(..HEADER) else {
            return Err(ErrorKind::Truncated {
                need: HEADER,
                have: data.len(),
            });
        };
        let word = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let uptime = word(4);
        let export_ms = u64::from(word(8)) * 1000;
        let sequence = word(12);
        let domain = word(16);
        let key = (ie::version::V9, domain);
        let (lost, restarted) = self.sequence(key, sequence, Some(uptime), REORDER_PACKETS);
        // v9 counts export packets, so the next is known whatever this one held.
        self.advance(key, sequence, Some(1), lost, restarted);
        let clock = Clock {
            export_ms,
            uptime_ms: Some(uptime),
            init_ms: None,
        };
        let mut p = self.packet(
            ie::version::V9,
            export_ms,
            domain,
            sequence,
            lost,
            restarted,
        );
        self.sets(key, data.slice(HEADER..), clock, now_ms, &mut p);
        self.finish(key, &mut p);
        Ok(p)
    }

    /// RFC 7011 §3.1: version(2) length(2) export time(4) sequence(4) observation domain(4).
    fn ipfix(&mut self, data: Bytes, now_ms: u64) -> Result<Packet, ErrorKind> {
        const HEADER: usize = 16;
        let Some(h) = data.get(..HEADER) else {
            return Err(ErrorKind::Truncated {
                need: HEADER,
                have: data.len(),
            });
        };
        let len = u16::from_be_bytes([h[2], h[3]]);
        if usize::from(len) < HEADER || usize::from(len) > data.len() {
            return Err(ErrorKind::MessageLength {
                len,
                have: data.len(),
            });
        }
        let word = |at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
        let export_ms = u64::from(word(4)) * 1000;
        let sequence = word(8);
        let domain = word(12);
        let key = (ie::version::IPFIX, domain);
        let (lost, restarted) = self.sequence(key, sequence, None, REORDER_RECORDS);
        let clock = Clock {
            export_ms,
            uptime_ms: None,
            init_ms: None,
        };
        let mut p = self.packet(
            ie::version::IPFIX,
            export_ms,
            domain,
            sequence,
            lost,
            restarted,
        );
        let counted = self.sets(
            key,
            data.slice(HEADER..usize::from(len)),
            clock,
            now_ms,
            &mut p,
        );
        self.advance(key, sequence, counted, lost, restarted);
        self.finish(key, &mut p);
        Ok(p)
    }

    fn packet(
        &self,
        version: u16,
        export_ms: u64,
        domain: u32,
        sequence: u32,
        lost: u64,
        restarted: bool,
    ) -> Packet {
        Packet {
            version,
            export_ms,
            domain,
            sequence,
            flows: Vec::new(),
            lost,
            restarted,
            active_timeout_ms: None,
            idle_timeout_ms: None,
            errors: Vec::new(),
        }
    }

    fn finish(&mut self, key: DomainKey, p: &mut Packet) {
        let d = self.domain(key);
        p.active_timeout_ms = d.active_timeout_ms;
        p.idle_timeout_ms = d.idle_timeout_ms;
    }

    /// Walks the sets of a v9 or IPFIX message body. Returns the data records it counted, or
    /// `None` when some could not be counted (a held or broken data set).
    fn sets(
        &mut self,
        key: DomainKey,
        body: Bytes,
        clock: Clock,
        now_ms: u64,
        p: &mut Packet,
    ) -> Option<u32> {
        let ipfix = key.0 == ie::version::IPFIX;
        let mut pos = 0;
        let mut index = 0;
        let mut records: Option<u32> = Some(0);
        let mut learned = false;
        while pos < body.len() {
            let rest = &body[pos..];
            if rest.len() < 4 {
                // v9 may pad the datagram; IPFIX message lengths cover whole sets.
                if ipfix || rest.iter().any(|&b| b != 0) {
                    p.errors
                        .push(Place::Set(index, 0).error(ErrorKind::Truncated {
                            need: 4,
                            have: rest.len(),
                        }));
                    self.stats.sets_malformed += 1;
                }
                break;
            }
            let id = u16::from_be_bytes([rest[0], rest[1]]);
            let len = u16::from_be_bytes([rest[2], rest[3]]);
            if usize::from(len) < 4 || usize::from(len) > rest.len() {
                p.errors
                    .push(Place::Set(index, id).error(ErrorKind::SetLength {
                        len,
                        have: rest.len(),
                    }));
                self.stats.sets_malformed += 1;
                records = None;
                break;
            }
            let set = body.slice(pos + 4..pos + usize::from(len));
            pos += usize::from(len);
            let template_set = if ipfix {
                match id {
                    ie::set::IPFIX_TEMPLATE => Some(false),
                    ie::set::IPFIX_OPTIONS_TEMPLATE => Some(true),
                    _ => None,
                }
            } else {
                match id {
                    ie::set::V9_TEMPLATE => Some(false),
                    ie::set::V9_OPTIONS_TEMPLATE => Some(true),
                    _ => None,
                }
            };
            if let Some(options) = template_set {
                learned |= self.template_set(key, index, id, &set, options, now_ms, p);
            } else if id >= ie::set::FIRST_DATA {
                let tkey = (key.0, key.1, id);
                match self.lookup(tkey, now_ms) {
                    Some(c) => {
                        let (n, complete) = self.data_set(&c, tkey, index, &set, &clock, p);
                        records = records.and_then(|r| complete.then(|| r.saturating_add(n)));
                    }
                    None => {
                        self.hold(tkey, index, &set, clock, now_ms);
                        records = None;
                    }
                }
            } else {
                self.stats.sets_reserved += 1;
            }
            index += 1;
        }
        if learned && !self.held.is_empty() {
            self.resolve_held(key, now_ms, p);
        }
        records
    }

    /// Reads a template set and applies it; true if a template was defined.
    #[allow(clippy::too_many_arguments)]
    fn template_set(
        &mut self,
        key: DomainKey,
        index: usize,
        set_id: u16,
        set: &[u8],
        options: bool,
        now_ms: u64,
        p: &mut Packet,
    ) -> bool {
        let ipfix = key.0 == ie::version::IPFIX;
        let max = self.limits.max_template_fields;
        let parsed = if ipfix {
            template::ipfix_set(set, options, max)
        } else {
            template::v9_set(set, options, max)
        };
        let mut defined = false;
        for r in parsed.records {
            match r {
                Ok(TemplateRecord::Define(t)) => {
                    defined = true;
                    self.define(key, Compiled::new(t, ipfix), now_ms);
                }
                Ok(TemplateRecord::Withdraw(id)) => {
                    if self.templates.remove(&(key.0, key.1, id)).is_some() {
                        self.stats.templates_withdrawn += 1;
                    }
                }
                Ok(TemplateRecord::WithdrawAll { options }) => {
                    let before = self.templates.len();
                    self.templates
                        .retain(|k, e| (k.0, k.1) != key || e.compiled.template.options != options);
                    self.stats.templates_withdrawn += (before - self.templates.len()) as u64;
                }
                Err((id, kind)) => {
                    self.stats.templates_refused += 1;
                    p.errors
                        .push(Place::Template(index, set_id, id).error(kind));
                }
            }
        }
        if let Some((id, kind)) = parsed.stopped {
            self.stats.sets_malformed += 1;
            p.errors
                .push(Place::Template(index, set_id, id).error(kind));
        }
        defined
    }

    fn define(&mut self, key: DomainKey, c: Compiled, now_ms: u64) {
        let tkey = (key.0, key.1, c.template.id);
        if let Some(e) = self.templates.get_mut(&tkey) {
            if e.compiled.template == c.template {
                self.stats.templates_refreshed += 1;
            } else {
                self.stats.templates_replaced += 1;
                e.compiled = Arc::new(c);
            }
            e.refreshed_ms = now_ms;
            e.used = self.tick;
            return;
        }
        if self.templates.len() >= self.limits.max_templates {
            let oldest = self
                .templates
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(k, _)| *k);
            if let Some(k) = oldest {
                self.templates.remove(&k);
                self.stats.templates_evicted += 1;
            }
        }
        if self.limits.max_templates == 0 {
            return;
        }
        self.stats.templates_added += 1;
        self.templates.insert(
            tkey,
            Entry {
                compiled: Arc::new(c),
                refreshed_ms: now_ms,
                used: self.tick,
            },
        );
    }

    /// The live template for `key`; an expired one is removed.
    fn lookup(&mut self, key: TemplateKey, now_ms: u64) -> Option<Arc<Compiled>> {
        let e = self.templates.get_mut(&key)?;
        if now_ms.saturating_sub(e.refreshed_ms) > self.limits.template_lifetime_ms {
            self.templates.remove(&key);
            self.stats.templates_expired += 1;
            return None;
        }
        e.used = self.tick;
        Some(Arc::clone(&e.compiled))
    }

    /// Keeps a copy of a data set whose template is unknown, within the bounds.
    fn hold(&mut self, key: TemplateKey, set_index: usize, set: &Bytes, clock: Clock, now_ms: u64) {
        self.stats.sets_unknown_template += 1;
        if set.len() > self.limits.max_pending_bytes || self.limits.max_pending_sets == 0 {
            self.stats.sets_dropped += 1;
            return;
        }
        while self.held.len() >= self.limits.max_pending_sets
            || self.held_bytes + set.len() > self.limits.max_pending_bytes
        {
            self.drop_front_held();
        }
        // A copy: holding a slice would pin the whole receive buffer.
        self.held_bytes += set.len();
        self.held.push_back(Held {
            key,
            set_index,
            data: Bytes::copy_from_slice(set),
            clock,
            received_ms: now_ms,
        });
    }

    /// Decodes the held sets of this domain whose template is now known.
    fn resolve_held(&mut self, key: DomainKey, now_ms: u64, p: &mut Packet) {
        let mut i = 0;
        while i < self.held.len() {
            let k = self.held[i].key;
            let c = if (k.0, k.1) == key {
                self.lookup(k, now_ms)
            } else {
                None
            };
            match c {
                Some(c) => {
                    if let Some(h) = self.held.remove(i) {
                        self.held_bytes -= h.data.len();
                        self.stats.sets_decoded_late += 1;
                        self.data_set(&c, h.key, h.set_index, &h.data, &h.clock, p);
                    }
                }
                None => i += 1,
            }
        }
    }

    /// Decodes a data set's records into `p.flows` (or, for an options template, into the
    /// session's state). Returns the records read and whether the set was read to its end.
    fn data_set(
        &mut self,
        c: &Compiled,
        key: TemplateKey,
        set_index: usize,
        set: &Bytes,
        clock: &Clock,
        p: &mut Packet,
    ) -> (u32, bool) {
        let dkey = (key.0, key.1);
        let mut clock = *clock;
        let (domain_sampling, init_ms) = {
            let d = self.domain(dkey);
            (d.sampling, d.init_ms)
        };
        clock.init_ms = init_ms;
        let mut pos = 0;
        let mut n: u32 = 0;
        // The last sampler id resolved, and what it resolved to: records of one set nearly always
        // share one sampler.
        let mut cached: Option<(Option<u64>, Option<u32>)> = None;
        // min_len >= 1 (template checks), and each record moves `pos` by at least min_len.
        let mut v = Values::default();
        p.flows.reserve(c.flows_in(set.len()));
        while set.len() - pos >= c.min_len {
            match record::read(c, set, &mut pos, &mut v) {
                Ok(()) => {}
                Err((field, kind)) => {
                    self.stats.records_malformed += 1;
                    p.errors.push(
                        Place::Record {
                            set: set_index,
                            set_id: key.2,
                            record: n as usize,
                            field: Some(field),
                        }
                        .error(kind),
                    );
                    return (n, false);
                }
            };
            n += 1;
            if c.template.options {
                self.learn(dkey, &v);
                continue;
            }
            let flow = v.push_flow(
                &clock,
                |id| {
                    if let Some((cid, s)) = cached
                        && cid == id
                    {
                        return s;
                    }
                    let s = self.resolve_sampling(dkey, id, domain_sampling);
                    cached = Some((id, s));
                    s
                },
                &mut p.flows,
            );
            if !flow {
                self.stats.records_not_flows += 1;
            }
        }
        (n, true)
    }

    /// The 1-in-N for a record of `domain` whose sampler id is `id`: the sampler's, else the
    /// domain-wide value, else the domain's only sampler.
    fn resolve_sampling(
        &self,
        domain: DomainKey,
        id: Option<u64>,
        domain_wide: Option<u32>,
    ) -> Option<u32> {
        let mut of_domain = self
            .samplers
            .iter()
            .filter(|s| (s.key.0, s.key.1) == domain);
        if let Some(id) = id
            && let Some(s) = of_domain.clone().find(|s| s.key.2 == id)
        {
            return Some(s.one_in);
        }
        if domain_wide.is_some() {
            return domain_wide;
        }
        match (of_domain.next(), of_domain.next()) {
            (Some(only), None) => Some(only.one_in),
            _ => None,
        }
    }

    /// What an options data record tells about its exporter.
    fn learn(&mut self, key: DomainKey, v: &Values) {
        self.stats.options_records += 1;
        let sampling = v.sampling();
        let d = self.domain(key);
        if let Some(t) = v.active_timeout_s() {
            d.active_timeout_ms = Some(t.saturating_mul(1000));
        }
        if let Some(t) = v.idle_timeout_s() {
            d.idle_timeout_ms = Some(t.saturating_mul(1000));
        }
        if let Some(t) = v.init_ms() {
            d.init_ms = Some(t);
        }
        let Some(one_in) = sampling else { return };
        let Some(id) = v.sampler_id() else {
            d.sampling = Some(one_in);
            return;
        };
        let skey = (key.0, key.1, id);
        let tick = self.tick;
        if let Some(s) = self.samplers.iter_mut().find(|s| s.key == skey) {
            s.one_in = one_in;
            s.used = tick;
            return;
        }
        if self.limits.max_samplers == 0 {
            return;
        }
        if self.samplers.len() >= self.limits.max_samplers {
            if let Some(i) = (0..self.samplers.len()).min_by_key(|&i| self.samplers[i].used) {
                self.samplers.swap_remove(i);
                self.stats.samplers_evicted += 1;
            }
        }
        self.samplers.push(Sampler {
            key: skey,
            one_in,
            used: tick,
        });
    }
}
