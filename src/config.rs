//! The daemon's configuration: YAML, read in two passes.
//!
//! 1. Syntax and shape: `serde-saphyr` with `deny_unknown_fields` everywhere; values that later checks
//!    refer to keep their YAML position ([`Spanned`]).
//! 2. Meaning: references, overlaps, families, limits ([`Config::check`]).
//!
//! Every error reads `file:line:col: what is wrong and how to fix it`. With no file, deflect runs on
//! [`Config::embedded`]: API on loopback, state in `./deflect-state`, no peers.
//!
//! What this module must not do: open sockets or files other than the one it reads. Applying a
//! configuration is the daemon's job (`daemon.rs`), all or nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use deflect_bgp::community::{Community, LargeCommunity};
use deflect_bgp::iana::Family;
use ipnet::IpNet;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::peer::conn::SocketOptions;
use crate::peer::{Mode, PeerConfig};

/// A configuration error with its position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub file: String,
    pub line: u64,
    pub column: u64,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// Every error found, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// What kinds of mitigation a neighbor receives.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Flowspec,
    Rtbh,
}

/// An API token's permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Read,
    Write,
    /// A node probe: may only send telemetry, under the token's name.
    Node,
}

/// The whole file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub local_as: Spanned<u32>,
    pub router_id: Spanned<Ipv4Addr>,
    /// Addresses to accept BGP connections on.
    #[serde(default)]
    pub listen: Vec<Spanned<SocketAddr>>,
    /// Where the store lives.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Nothing is announced to any peer: mitigations are recorded and shown only.
    #[serde(default)]
    pub dry_run: bool,
    /// RFC 4724 restart time advertised to every peer, seconds; 0 disables graceful restart.
    #[serde(default = "default_graceful_restart")]
    pub graceful_restart: u16,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub neighbors: Vec<NeighborConfig>,
    /// Named groups of prefixes deflect may mitigate for.
    #[serde(default)]
    pub protected: BTreeMap<String, Vec<Spanned<IpNet>>>,
    /// Prefixes no mitigation may ever match.
    #[serde(default)]
    pub never_block: Vec<Spanned<IpNet>>,
    #[serde(default)]
    pub limits: Limits,
    /// Thresholds and the rest of detection.
    #[serde(default)]
    pub detection: DetectionConfig,
    /// The policy directory (default `policies`); the shipped policies when it does not exist.
    pub policies: Option<PathBuf>,
    /// Packet captures of attacks.
    #[serde(default)]
    pub forensics: ForensicsConfig,
    /// The sFlow collector.
    pub sflow: Option<SflowConfig>,
    /// Where alerts go.
    #[serde(default)]
    pub alerts: Vec<AlertConfig>,
    /// Indicator lists matched against sampled sources.
    #[serde(default)]
    pub ioc: Vec<IocConfig>,
    /// Where this configuration was read from (not in the file).
    #[serde(skip)]
    pub source: String,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from("deflect-state")
}

fn default_graceful_restart() -> u16 {
    120
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    #[serde(default = "default_api_listen")]
    pub listen: SocketAddr,
    #[serde(default)]
    pub tokens: Vec<TokenConfig>,
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_body_limit")]
    pub max_body: usize,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_api_listen(),
            tokens: Vec::new(),
            max_body: default_body_limit(),
        }
    }
}

fn default_api_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8179))
}

fn default_body_limit() -> usize {
    64 * 1024
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who the token is: the actor in the audit log.
    pub name: Spanned<String>,
    /// The secret itself, or `env:NAME` to read it from the environment.
    pub token: Spanned<String>,
    pub scope: Scope,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    /// Defaults to the address.
    pub name: Option<Spanned<String>>,
    pub address: Spanned<IpAddr>,
    pub remote_as: Spanned<u32>,
    #[serde(default = "default_port")]
    pub port: u16,
    pub local_address: Option<IpAddr>,
    #[serde(default)]
    pub passive: bool,
    pub md5_password: Option<Spanned<String>>,
    #[serde(default)]
    pub gtsm: bool,
    #[serde(default = "default_hold_time")]
    pub hold_time: Spanned<u16>,
    /// Wait between connection attempts (RFC 4271 ConnectRetryTimer), e.g. `10s`.
    pub connect_retry: Option<Spanned<String>>,
    /// Defaults to the families the `receives` kinds need.
    pub families: Option<Vec<Spanned<String>>>,
    /// Mitigation kinds this neighbor gets.
    #[serde(default = "default_receives")]
    pub receives: Spanned<Vec<Kind>>,
    /// Send FlowSpec NLRI of 240 octets and more (GoBGP 3.10 refuses them).
    #[serde(default)]
    pub long_flowspec: bool,
    pub rtbh: Option<Spanned<RtbhConfig>>,
}

fn default_port() -> u16 {
    179
}

fn default_hold_time() -> Spanned<u16> {
    Spanned::new(
        90,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn default_receives() -> Spanned<Vec<Kind>> {
    Spanned::new(
        vec![Kind::Flowspec],
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

/// How this neighbor takes RTBH routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtbhConfig {
    pub next_hop_ipv4: Option<Spanned<IpAddr>>,
    pub next_hop_ipv6: Option<Spanned<IpAddr>>,
    /// Defaults to `[blackhole]` (RFC 7999).
    #[serde(default)]
    pub communities: Vec<Spanned<String>>,
    #[serde(default)]
    pub large_communities: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default = "default_ttl")]
    pub default_ttl: Spanned<String>,
    #[serde(default = "max_ttl")]
    pub max_ttl: Spanned<String>,
    #[serde(default = "default_max_active")]
    pub max_active: usize,
    #[serde(default = "default_max_new")]
    pub max_new_per_minute: u32,
    /// Shortest RTBH prefixes allowed (longest is always /32 and /128).
    #[serde(default = "default_rtbh_v4")]
    pub rtbh_min_prefix_v4: Spanned<u8>,
    #[serde(default = "default_rtbh_v6")]
    pub rtbh_min_prefix_v6: Spanned<u8>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            default_ttl: default_ttl(),
            max_ttl: max_ttl(),
            max_active: default_max_active(),
            max_new_per_minute: default_max_new(),
            rtbh_min_prefix_v4: default_rtbh_v4(),
            rtbh_min_prefix_v6: default_rtbh_v6(),
        }
    }
}

fn unknown<T>(v: T) -> Spanned<T> {
    Spanned::new(
        v,
        serde_saphyr::Location::UNKNOWN,
        serde_saphyr::Location::UNKNOWN,
    )
}

fn default_ttl() -> Spanned<String> {
    unknown("10m".into())
}

fn max_ttl() -> Spanned<String> {
    unknown("24h".into())
}

fn default_max_active() -> usize {
    10_000
}

fn default_max_new() -> u32 {
    600
}

fn default_rtbh_v4() -> Spanned<u8> {
    unknown(32)
}

fn default_rtbh_v6() -> Spanned<u8> {
    unknown(128)
}

/// One indicator list, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IocConfig {
    pub name: Spanned<String>,
    /// One address or prefix per line; `#` and `;` start comments (DROP-list format).
    pub file: PathBuf,
}

/// One alert sink, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    pub name: Spanned<String>,
    pub kind: crate::alert::SinkKind,
    /// The webhook URL (Slack, Discord, webhook), or the API's (PagerDuty, Opsgenie: defaults to
    /// theirs).
    pub url: Option<Spanned<String>>,
    /// Events sent; all when absent.
    #[serde(default)]
    pub events: Vec<crate::alert::EventKind>,
    /// Webhook: HMAC key. PagerDuty: routing key. Opsgenie: API key. `env:NAME` reads it from the
    /// environment.
    pub secret: Option<Spanned<String>>,
    /// Message text with `{{field}}` placeholders.
    pub template: Option<Spanned<String>>,
    /// Per attempt (default 5s).
    pub timeout: Option<Spanned<String>>,
    /// Attempts in all (default 5).
    pub attempts: Option<u32>,
}

/// Forensic captures, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForensicsConfig {
    /// How long after an attack starts its packets are captured (default 60s).
    pub pcap_duration: Option<Spanned<String>>,
    /// Largest capture file, bytes (default 20 MB).
    pub pcap_max_bytes: Option<u64>,
    /// Days captures are kept (default 7).
    pub keep_days: Option<u32>,
}

/// The sFlow collector, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SflowConfig {
    /// Where datagrams arrive (default 0.0.0.0:6343).
    #[serde(default = "default_sflow_listen")]
    pub listen: SocketAddr,
    /// How often estimates are handed to detection (default 1s).
    pub interval: Option<Spanned<String>>,
    /// Trusted agents, by the source address of their datagrams; others are dropped and counted.
    #[serde(default)]
    pub agents: Vec<SflowAgentConfig>,
}

fn default_sflow_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 6343))
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SflowAgentConfig {
    pub address: Spanned<IpAddr>,
    /// Defaults to the address.
    pub name: Option<String>,
    /// Use this sampling rate instead of the one the agent announces.
    pub sampling_rate: Option<Spanned<u32>>,
}

/// One trusted sFlow agent, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SflowAgent {
    pub address: IpAddr,
    pub name: String,
    pub sampling_rate: Option<u32>,
}

/// The sFlow collector, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sflow {
    pub listen: SocketAddr,
    pub interval: Duration,
    pub agents: Vec<SflowAgent>,
}

/// Detection settings, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectionConfig {
    /// A node silent this long is stale (and at least three of its intervals).
    pub stale_after: Option<Spanned<String>>,
    /// Most addresses tracked.
    pub max_targets: Option<usize>,
    /// Thresholds for every protected group.
    #[serde(default)]
    pub thresholds: ThresholdsConfig,
    /// Per protected group, what differs from `thresholds`.
    #[serde(default)]
    pub groups: BTreeMap<String, Spanned<ThresholdsConfig>>,
}

/// Thresholds, as written; each unset one comes from the level above.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThresholdsConfig {
    /// Static floor per traffic class, packets per second.
    #[serde(default)]
    pub floor_pps: BTreeMap<crate::detect::Class, f64>,
    /// Static floor for all traffic to an address, bits per second.
    pub floor_bps: Option<f64>,
    pub ratio: Option<Spanned<f64>>,
    pub deviations: Option<Spanned<f64>>,
    pub confirm: Option<Spanned<u32>>,
    pub end_ratio: Option<Spanned<f64>>,
    pub cooldown: Option<Spanned<String>>,
    pub warmup: Option<Spanned<String>>,
    pub half_life: Option<Spanned<String>>,
}

impl ThresholdsConfig {
    /// `base` with what this level sets.
    fn apply(
        &self,
        mut t: crate::detect::Thresholds,
        err: &mut dyn FnMut(&serde_saphyr::Location, String),
    ) -> crate::detect::Thresholds {
        for (c, v) in &self.floor_pps {
            t.floor_pps[c.index()] = *v;
        }
        if let Some(v) = self.floor_bps {
            t.floor_bps = v;
        }
        if let Some(v) = &self.ratio {
            if v.value < 1.0 {
                err(
                    &v.referenced,
                    "ratio below 1 would flag ordinary traffic; use 2 to 10".into(),
                );
            }
            t.ratio = v.value;
        }
        if let Some(v) = &self.deviations {
            if v.value < 0.0 {
                err(&v.referenced, "deviations cannot be negative".into());
            }
            t.deviations = v.value;
        }
        if let Some(v) = &self.confirm {
            if v.value == 0 {
                err(
                    &v.referenced,
                    "confirm is at least 1 (the interval the threshold is crossed)".into(),
                );
            }
            t.confirm = v.value.max(1);
        }
        if let Some(v) = &self.end_ratio {
            if !(0.0..=1.0).contains(&v.value) {
                err(
                    &v.referenced,
                    "end_ratio is a share of the threshold, 0 to 1 (0.5: quiet below half)".into(),
                );
            }
            t.end_ratio = v.value;
        }
        for (field, what, slot) in [
            (&self.cooldown, "cooldown", &mut t.cooldown),
            (&self.warmup, "warmup", &mut t.warmup),
            (&self.half_life, "half_life", &mut t.half_life),
        ] {
            if let Some(v) = field {
                match parse_duration(&v.value) {
                    Some(d) => *slot = d,
                    None => err(
                        &v.referenced,
                        format!("{what} {:?} is not a duration; write e.g. 30s, 5m", v.value),
                    ),
                }
            }
        }
        if t.half_life.is_zero() {
            t.half_life = Duration::from_secs(1);
        }
        t
    }
}

/// `90s`, `10m`, `24h`, `7d`, or a plain number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit())
        .map_or((s, "s"), |i| s.split_at(i));
    let n: u64 = num.parse().ok()?;
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// Limits, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guardrails {
    pub default_ttl: Duration,
    pub max_ttl: Duration,
    pub max_active: usize,
    pub max_new_per_minute: u32,
    pub rtbh_min_prefix_v4: u8,
    pub rtbh_min_prefix_v6: u8,
    pub protected: BTreeMap<String, Vec<IpNet>>,
    pub never_block: Vec<IpNet>,
    pub dry_run: bool,
}

/// An API token, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    pub name: String,
    pub secret: String,
    pub scope: Scope,
}

/// RTBH settings of one neighbor, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rtbh {
    pub next_hop_ipv4: Option<IpAddr>,
    pub next_hop_ipv6: Option<IpAddr>,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
}

/// A neighbor, resolved: the peer task's configuration and what it receives.
#[derive(Debug, Clone)]
pub struct Neighbor {
    pub peer: PeerConfig,
    pub receives: BTreeSet<Kind>,
    pub rtbh: Rtbh,
}

impl PartialEq for Neighbor {
    /// Two neighbors are the same when nothing that would reset the session differs.
    fn eq(&self, o: &Self) -> bool {
        let (a, b) = (&self.peer, &o.peer);
        self.receives == o.receives
            && self.rtbh == o.rtbh
            && (
                a.name.as_str(),
                a.remote,
                a.port,
                a.remote_as,
                a.local_as,
                a.router_id,
                a.mode,
                a.hold_time,
            ) == (
                b.name.as_str(),
                b.remote,
                b.port,
                b.remote_as,
                b.local_as,
                b.router_id,
                b.mode,
                b.hold_time,
            )
            && a.connect_retry == b.connect_retry
            && (&a.families, a.graceful_restart, a.max_flowspec_nlri_len)
                == (&b.families, b.graceful_restart, b.max_flowspec_nlri_len)
            && (&a.socket.md5_password, a.socket.gtsm, a.socket.local_addr)
                == (&b.socket.md5_password, b.socket.gtsm, b.socket.local_addr)
    }
}

/// A checked configuration, ready to apply.
#[derive(Debug, Clone)]
pub struct Settings {
    pub source: String,
    pub listen: Vec<SocketAddr>,
    pub state_dir: PathBuf,
    pub api_listen: SocketAddr,
    pub api_max_body: usize,
    pub tokens: Vec<Token>,
    pub neighbors: Vec<Neighbor>,
    pub guardrails: Guardrails,
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub detection: crate::detect::Settings,
    /// The policy directory; `None`: the shipped policies.
    pub policy_dir: Option<PathBuf>,
    pub pcap: crate::pcap::Limits,
    pub sflow: Option<Sflow>,
    pub alerts: Vec<crate::alert::Sink>,
    /// Indicator lists: (name, file).
    pub ioc: Vec<(String, PathBuf)>,
}

impl Settings {
    /// What policies may refer to.
    pub fn known(&self) -> crate::policy::Known {
        crate::policy::Known {
            groups: self.guardrails.protected.keys().cloned().collect(),
            peers: self.neighbors.iter().map(|n| n.peer.name.clone()).collect(),
            ioc: self.ioc.iter().map(|(n, _)| n.clone()).collect(),
        }
    }

    /// Loads the policies this configuration names, checked against it.
    pub fn load_policies(&self) -> Result<crate::policy::Policies, ConfigErrors> {
        crate::policy::Policies::load(self.policy_dir.as_deref(), &self.known())
    }
}

/// A YAML syntax or shape error, positioned, with a hint where one helps.
pub fn yaml_error(source: &str, e: &serde_saphyr::Error) -> ConfigError {
    let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
    let raw = e.without_snippet().to_string();
    // The library appends " at line L, column C"; the position is printed in front.
    let message = match raw.rfind(" at line ") {
        Some(i) => raw[..i].to_string(),
        None => raw,
    };
    ConfigError {
        file: source.into(),
        line,
        column,
        message: hint(&message),
    }
}

/// The configuration used when no file is given.
pub const EMBEDDED: &str = "\
# deflect's embedded defaults: API on loopback, state in ./deflect-state, no peers.
local_as: 65000
router_id: 192.0.2.1
api:
  listen: 127.0.0.1:8179
  tokens:
    - { name: local, token: 'env:DEFLECT_TOKEN', scope: write }
protected:
  documentation: [192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24, 2001:db8::/32]
";

impl Config {
    /// Reads and checks a file.
    pub fn load(path: &Path) -> Result<Settings, ConfigErrors> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                file: name.clone(),
                line: 0,
                column: 0,
                message: format!("cannot read: {e}"),
            }])
        })?;
        Config::parse(&name, &text)?.check()
    }

    /// The embedded defaults.
    pub fn embedded() -> Result<Settings, ConfigErrors> {
        Config::parse("<embedded>", EMBEDDED)?.check()
    }

    /// First pass: syntax, shape, unknown fields.
    pub fn parse(source: &str, text: &str) -> Result<Config, ConfigErrors> {
        match serde_saphyr::from_str::<Config>(text) {
            Ok(mut c) => {
                c.source = source.to_string();
                Ok(c)
            }
            Err(e) => Err(ConfigErrors(vec![yaml_error(source, &e)])),
        }
    }

    /// Second pass: meaning. Collects every problem, not just the first.
    pub fn check(self) -> Result<Settings, ConfigErrors> {
        let mut errs = Vec::new();
        let src = self.source.clone();
        let mut err = |at: &serde_saphyr::Location, msg: String| {
            errs.push(ConfigError {
                file: src.clone(),
                line: at.line(),
                column: at.column(),
                message: msg,
            });
        };

        if self.local_as.value == 0 {
            err(
                &self.local_as.referenced,
                "local_as 0 is reserved; use your AS number".into(),
            );
        }
        if self.router_id.value.is_unspecified() {
            err(
                &self.router_id.referenced,
                "router_id 0.0.0.0 is invalid; use an IPv4 address of this host".into(),
            );
        }

        // Limits.
        let ttl = |s: &Spanned<String>,
                   what: &str,
                   err: &mut dyn FnMut(&serde_saphyr::Location, String)| {
            parse_duration(&s.value)
                .filter(|d| !d.is_zero())
                .unwrap_or_else(|| {
                    err(
                        &s.referenced,
                        format!(
                            "{what} {:?} is not a duration; write e.g. 90s, 10m, 24h or 7d",
                            s.value
                        ),
                    );
                    Duration::from_secs(600)
                })
        };
        let default_ttl = ttl(&self.limits.default_ttl, "default_ttl", &mut err);
        let max_ttl_v = ttl(&self.limits.max_ttl, "max_ttl", &mut err);
        if default_ttl > max_ttl_v {
            err(
                &self.limits.default_ttl.referenced,
                "default_ttl is longer than max_ttl; lower it or raise max_ttl".into(),
            );
        }
        for (p, max, what) in [
            (&self.limits.rtbh_min_prefix_v4, 32u8, "rtbh_min_prefix_v4"),
            (&self.limits.rtbh_min_prefix_v6, 128u8, "rtbh_min_prefix_v6"),
        ] {
            if p.value > max {
                err(
                    &p.referenced,
                    format!("{what} {} is beyond /{max}", p.value),
                );
            }
        }

        // Protected groups and the never-block list.
        let mut protected: BTreeMap<String, Vec<IpNet>> = BTreeMap::new();
        let mut seen: Vec<(IpNet, String)> = Vec::new();
        for (group, nets) in &self.protected {
            for n in nets {
                if n.value.trunc() != n.value {
                    err(
                        &n.referenced,
                        format!(
                            "{} has host bits set; did you mean {}?",
                            n.value,
                            n.value.trunc()
                        ),
                    );
                }
                if let Some((other, g)) = seen
                    .iter()
                    .find(|(o, _)| o.contains(&n.value) || n.value.contains(o))
                {
                    err(
                        &n.referenced,
                        format!(
                            "{} overlaps {other} of group {g:?}; a prefix belongs to one group",
                            n.value
                        ),
                    );
                }
                seen.push((n.value, group.clone()));
                protected
                    .entry(group.clone())
                    .or_default()
                    .push(n.value.trunc());
            }
        }
        for n in &self.never_block {
            if n.value.trunc() != n.value {
                err(
                    &n.referenced,
                    format!(
                        "{} has host bits set; did you mean {}?",
                        n.value,
                        n.value.trunc()
                    ),
                );
            }
        }

        // API tokens.
        let mut tokens = Vec::new();
        let mut names = BTreeSet::new();
        for t in &self.api.tokens {
            if !names.insert(t.name.value.clone()) {
                err(
                    &t.name.referenced,
                    format!(
                        "token name {:?} is used twice; names identify actors in the audit log",
                        t.name.value
                    ),
                );
            }
            let secret = match t.token.value.strip_prefix("env:") {
                Some(var) => std::env::var(var).unwrap_or_default(),
                None => t.token.value.clone(),
            };
            if secret.is_empty() {
                // A token from an unset variable is left out: nobody can use it.
                continue;
            }
            if secret.len() < 16 {
                err(
                    &t.token.referenced,
                    "token is shorter than 16 characters; use a long random string".into(),
                );
            }
            tokens.push(Token {
                name: t.name.value.clone(),
                secret,
                scope: t.scope,
            });
        }

        // Neighbors.
        let mut neighbors = Vec::new();
        let mut addrs = BTreeSet::new();
        for n in &self.neighbors {
            let addr = n.address.value;
            if !addrs.insert((addr, n.port)) {
                err(
                    &n.address.referenced,
                    format!("neighbor {addr} port {} is configured twice", n.port),
                );
            }
            if n.remote_as.value == 0 {
                err(&n.remote_as.referenced, "remote_as 0 is reserved".into());
            }
            if n.hold_time.value == 1 || n.hold_time.value == 2 {
                err(
                    &n.hold_time.referenced,
                    "hold_time is 0 or at least 3 seconds (RFC 4271 §4.2)".into(),
                );
            }
            let receives: BTreeSet<Kind> = n.receives.value.iter().copied().collect();
            let families: BTreeSet<Family> = match &n.families {
                Some(list) => list
                    .iter()
                    .filter_map(|f| {
                        let fam = Family::from_name(&f.value);
                        if fam.is_none() {
                            err(&f.referenced, format!("unknown family {:?}; use ipv4-flowspec, ipv6-flowspec, ipv4-unicast or ipv6-unicast", f.value));
                        }
                        fam
                    })
                    .collect(),
                None => receives
                    .iter()
                    .flat_map(|k| match k {
                        Kind::Flowspec => [Family::Ipv4FlowSpec, Family::Ipv6FlowSpec],
                        Kind::Rtbh => [Family::Ipv4Unicast, Family::Ipv6Unicast],
                    })
                    .collect(),
            };
            if receives.contains(&Kind::Flowspec)
                && !families
                    .iter()
                    .any(|f| matches!(f, Family::Ipv4FlowSpec | Family::Ipv6FlowSpec))
            {
                err(&n.receives.referenced, "this neighbor receives flowspec but has no flowspec family; add ipv4-flowspec or ipv6-flowspec".into());
            }
            let mut rtbh = Rtbh::default();
            if receives.contains(&Kind::Rtbh) {
                match &n.rtbh {
                    None => err(
                        &n.address.referenced,
                        format!(
                            "neighbor {addr} receives rtbh but has no rtbh section with a next hop"
                        ),
                    ),
                    Some(r) => {
                        for (nh, v4) in [
                            (&r.value.next_hop_ipv4, true),
                            (&r.value.next_hop_ipv6, false),
                        ] {
                            if let Some(nh) = nh {
                                if nh.value.is_ipv4() != v4 {
                                    err(
                                        &nh.referenced,
                                        format!(
                                            "{} is not an IPv{} address",
                                            nh.value,
                                            if v4 { 4 } else { 6 }
                                        ),
                                    );
                                }
                            }
                        }
                        rtbh.next_hop_ipv4 = r.value.next_hop_ipv4.as_ref().map(|s| s.value);
                        rtbh.next_hop_ipv6 = r.value.next_hop_ipv6.as_ref().map(|s| s.value);
                        if rtbh.next_hop_ipv4.is_none() && rtbh.next_hop_ipv6.is_none() {
                            err(&r.referenced, "rtbh needs next_hop_ipv4 or next_hop_ipv6 (the discard next hop the router resolves to a null route)".into());
                        }
                        for c in &r.value.communities {
                            match c.value.parse::<Community>() {
                                Ok(c) => rtbh.communities.push(c),
                                Err(e) => err(
                                    &c.referenced,
                                    format!("{e}; write ASN:VALUE or blackhole, no-export"),
                                ),
                            }
                        }
                        if rtbh.communities.is_empty() {
                            rtbh.communities.push(Community::BLACKHOLE);
                        }
                        for c in &r.value.large_communities {
                            match c.value.parse::<LargeCommunity>() {
                                Ok(c) => rtbh.large_communities.push(c),
                                Err(e) => err(&c.referenced, e.to_string()),
                            }
                        }
                        if rtbh.next_hop_ipv4.is_some() && !families.contains(&Family::Ipv4Unicast)
                            || rtbh.next_hop_ipv6.is_some()
                                && !families.contains(&Family::Ipv6Unicast)
                        {
                            err(&r.referenced, "an rtbh next hop is set for a family this neighbor does not have; add ipv4-unicast / ipv6-unicast to families".into());
                        }
                    }
                }
            } else if let Some(r) = &n.rtbh {
                err(&r.referenced, "rtbh settings on a neighbor that does not receive rtbh; add rtbh to receives or remove them".into());
            }
            if n.passive && self.listen.is_empty() {
                err(
                    &n.address.referenced,
                    "passive neighbor but deflect listens nowhere; add a listen address".into(),
                );
            }
            let mut peer = PeerConfig::new(addr, n.remote_as.value);
            peer.name = n
                .name
                .as_ref()
                .map_or_else(|| addr.to_string(), |s| s.value.clone());
            peer.port = n.port;
            peer.local_as = self.local_as.value;
            peer.router_id = self.router_id.value;
            peer.mode = if n.passive {
                Mode::Passive
            } else {
                Mode::Active
            };
            peer.hold_time = n.hold_time.value;
            if let Some(cr) = &n.connect_retry {
                match parse_duration(&cr.value).filter(|d| !d.is_zero()) {
                    Some(d) => peer.connect_retry = d,
                    None => err(
                        &cr.referenced,
                        format!(
                            "connect_retry {:?} is not a duration; write e.g. 10s",
                            cr.value
                        ),
                    ),
                }
            }
            peer.families = families;
            peer.graceful_restart = (self.graceful_restart > 0).then_some(self.graceful_restart);
            peer.max_flowspec_nlri_len = if n.long_flowspec { 4095 } else { 239 };
            peer.socket = SocketOptions {
                md5_password: n.md5_password.as_ref().map(|s| s.value.clone()),
                gtsm: n.gtsm,
                local_addr: n.local_address,
            };
            if let Some(pw) = &n.md5_password {
                if pw.value.len() > crate::sys::MD5_MAX_KEY_LEN {
                    err(
                        &pw.referenced,
                        format!(
                            "md5_password is longer than {} bytes",
                            crate::sys::MD5_MAX_KEY_LEN
                        ),
                    );
                }
            }
            neighbors.push(Neighbor {
                peer,
                receives,
                rtbh,
            });
        }
        let mut names = BTreeSet::new();
        for (n, c) in neighbors.iter().zip(&self.neighbors) {
            if !names.insert(n.peer.name.clone()) {
                let at = c
                    .name
                    .as_ref()
                    .map_or(&c.address.referenced, |s| &s.referenced);
                err(at, format!("neighbor name {:?} is used twice", n.peer.name));
            }
        }

        // Detection.
        let base = self
            .detection
            .thresholds
            .apply(crate::detect::Thresholds::default(), &mut err);
        for (g, t) in &self.detection.groups {
            if !self.protected.contains_key(g) {
                err(
                    &t.referenced,
                    format!(
                        "detection.groups: no protected group named {g:?}; add it under protected or remove it"
                    ),
                );
            }
        }
        let mut groups = Vec::new();
        for (g, nets) in &protected {
            let th = match self.detection.groups.get(g) {
                Some(t) => t.value.apply(base.clone(), &mut err),
                None => base.clone(),
            };
            groups.push((g.clone(), nets.clone(), th));
        }
        let mut detection = crate::detect::Settings {
            groups,
            ..crate::detect::Settings::default()
        };
        if let Some(n) = self.detection.max_targets {
            detection.max_targets = n;
        }
        if let Some(v) = &self.detection.stale_after {
            match parse_duration(&v.value).filter(|d| !d.is_zero()) {
                Some(d) => detection.stale_after = d,
                None => err(
                    &v.referenced,
                    format!("stale_after {:?} is not a duration; write e.g. 5s", v.value),
                ),
            }
        }

        // Forensics.
        let mut pcap = crate::pcap::Limits::default();
        if let Some(d) = &self.forensics.pcap_duration {
            match parse_duration(&d.value).filter(|d| !d.is_zero()) {
                Some(v) => pcap.seconds = v,
                None => err(
                    &d.referenced,
                    format!(
                        "pcap_duration {:?} is not a duration; write e.g. 60s",
                        d.value
                    ),
                ),
            }
        }
        if let Some(b) = self.forensics.pcap_max_bytes {
            pcap.max_bytes = b;
        }
        if let Some(days) = self.forensics.keep_days {
            pcap.keep = Duration::from_secs(u64::from(days) * 86_400);
        }

        // Alerts.
        let mut alerts: Vec<crate::alert::Sink> = Vec::new();
        for a in &self.alerts {
            use crate::alert::SinkKind;
            if alerts.iter().any(|x| x.name == a.name.value) {
                err(
                    &a.name.referenced,
                    format!("alert {:?} is defined twice", a.name.value),
                );
            }
            let url = match (&a.url, a.kind) {
                (Some(u), _) => {
                    if !u.value.starts_with("http://") && !u.value.starts_with("https://") {
                        err(
                            &u.referenced,
                            "url must start with http:// or https://".into(),
                        );
                    }
                    u.value.clone()
                }
                (None, SinkKind::Pagerduty) => "https://events.pagerduty.com/v2/enqueue".into(),
                (None, SinkKind::Opsgenie) => "https://api.opsgenie.com/v2/alerts".into(),
                (None, _) => {
                    err(
                        &a.name.referenced,
                        "this alert needs a url (the webhook to post to)".into(),
                    );
                    String::new()
                }
            };
            let (secret, from_env) = match &a.secret {
                Some(s) => match s.value.strip_prefix("env:") {
                    Some(var) => (std::env::var(var).unwrap_or_default(), true),
                    None => (s.value.clone(), false),
                },
                None => (String::new(), false),
            };
            if secret.is_empty() && from_env {
                // Like a token from an unset variable: this sink is left out, and said so.
                tracing::warn!(
                    alert = %a.name.value,
                    "alert left out: its secret's environment variable is not set"
                );
                continue;
            }
            if secret.is_empty() && matches!(a.kind, SinkKind::Pagerduty | SinkKind::Opsgenie) {
                err(
                    a.secret.as_ref().map_or(&a.name.referenced, |s| &s.referenced),
                    "PagerDuty needs its routing key and Opsgenie its API key as secret (env:NAME keeps it out of the file); it is empty".into(),
                );
            }
            if let Some(t) = &a.template {
                let mut rest = t.value.as_str();
                while let Some(i) = rest.find("{{") {
                    let after = &rest[i + 2..];
                    let Some(j) = after.find("}}") else { break };
                    let name = after[..j].trim();
                    if !crate::alert::FIELDS.contains(&name) {
                        err(
                            &t.referenced,
                            format!(
                                "template field {{{{{name}}}}} is unknown; use {}",
                                crate::alert::FIELDS.join(", ")
                            ),
                        );
                    }
                    rest = &after[j + 2..];
                }
            }
            let mut timeout = Duration::from_secs(5);
            if let Some(t) = &a.timeout {
                match parse_duration(&t.value).filter(|d| !d.is_zero()) {
                    Some(d) => timeout = d,
                    None => err(
                        &t.referenced,
                        format!("timeout {:?} is not a duration; write e.g. 5s", t.value),
                    ),
                }
            }
            alerts.push(crate::alert::Sink {
                name: a.name.value.clone(),
                kind: a.kind,
                url,
                events: a.events.clone(),
                secret,
                template: a.template.as_ref().map(|t| t.value.clone()),
                timeout,
                attempts: a.attempts.unwrap_or(5).clamp(1, 20),
            });
        }

        // Indicator lists.
        let mut ioc: Vec<(String, PathBuf)> = Vec::new();
        for l in &self.ioc {
            if ioc.iter().any(|(n, _)| n == &l.name.value) {
                err(
                    &l.name.referenced,
                    format!("indicator list {:?} is defined twice", l.name.value),
                );
            }
            ioc.push((l.name.value.clone(), l.file.clone()));
        }

        // sFlow.
        let sflow = self.sflow.as_ref().map(|c| {
            let mut interval = Duration::from_secs(1);
            if let Some(i) = &c.interval {
                match parse_duration(&i.value).filter(|d| !d.is_zero()) {
                    Some(d) => interval = d,
                    None => err(
                        &i.referenced,
                        format!("interval {:?} is not a duration; write e.g. 1s", i.value),
                    ),
                }
            }
            let mut agents: Vec<SflowAgent> = Vec::new();
            for a in &c.agents {
                if agents.iter().any(|x| x.address == a.address.value) {
                    err(
                        &a.address.referenced,
                        format!("agent {} is listed twice", a.address.value),
                    );
                }
                if let Some(r) = &a.sampling_rate {
                    if r.value == 0 {
                        err(&r.referenced, "sampling_rate is at least 1".into());
                    }
                }
                agents.push(SflowAgent {
                    address: a.address.value,
                    name: a
                        .name
                        .clone()
                        .unwrap_or_else(|| a.address.value.to_string()),
                    sampling_rate: a.sampling_rate.as_ref().map(|r| r.value.max(1)),
                });
            }
            Sflow {
                listen: c.listen,
                interval,
                agents,
            }
        });

        if !errs.is_empty() {
            errs.sort_by_key(|e| (e.line, e.column));
            return Err(ConfigErrors(errs));
        }
        Ok(Settings {
            source: self.source,
            listen: self.listen.iter().map(|s| s.value).collect(),
            state_dir: self.state_dir,
            api_listen: self.api.listen,
            api_max_body: self.api.max_body,
            tokens,
            neighbors,
            guardrails: Guardrails {
                default_ttl,
                max_ttl: max_ttl_v,
                max_active: self.limits.max_active,
                max_new_per_minute: self.limits.max_new_per_minute,
                rtbh_min_prefix_v4: self.limits.rtbh_min_prefix_v4.value,
                rtbh_min_prefix_v6: self.limits.rtbh_min_prefix_v6.value,
                protected,
                never_block: self.never_block.iter().map(|s| s.value.trunc()).collect(),
                dry_run: self.dry_run,
            },
            local_as: self.local_as.value,
            router_id: self.router_id.value,
            detection,
            policy_dir: Some(self.policies.unwrap_or_else(|| PathBuf::from("policies"))),
            pcap,
            sflow,
            alerts,
            ioc,
        })
    }
}

/// Adds a way out to the library's messages where it has none.
fn hint(message: &str) -> String {
    if message.starts_with("unknown field") {
        format!("{message}; remove it or check its spelling")
    } else if message.starts_with("missing field") {
        format!("{message}; add it")
    } else {
        message.to_string()
    }
}
