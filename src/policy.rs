//! Policies: YAML files in a directory, one policy per file (named by the file), that turn attacks
//! into mitigations, step by step.
//!
//! ```yaml
//! description: NTP, DNS, memcached... reflection: drop the amplifier's source port to the victim.
//! priority: 10            # lower first; the first policy that matches an attack runs it
//! match:
//!   vectors: [amplification]
//!   groups: [customers]   # any group when absent
//!   min_pps: 0            # attack size, at least
//! ttl: 10m                # each mitigation's lifetime, renewed while the attack lasts and is seen
//! withdraw_after: 60s     # hold-down after the attack goes quiet
//! recurrence:             # the attack comes back: it is the same attack, and the rule returns
//!   probation: 15m        # a return this long after the withdrawal still counts as one
//!   growth: 4             # each return multiplies the hold-down...
//!   max_withdraw_after: 1h  # ...up to this
//! dry_run: false
//! steps:
//!   - announce: flowspec
//!     match: [proto, sport]   # what of the signature the rule matches (dst always)
//!     action: discard         # or rate-bytes N, rate-packets N
//!   - after: 60s              # still above 1 Mpps a minute in: blackhole the address
//!     if_above_pps: 1000000
//!     announce: rtbh
//!     peers: [edge1]
//! ```
//!
//! Three more steps act on a flood from few sources, and move a flood to a scrubbing service:
//!
//! ```yaml
//!   - announce: flowspec          # source-based FlowSpec: one rule per heavy source,
//!     match: [src, proto, sport]  #   dst VICTIM src S/32 proto udp sport 123 then discard
//!     action: discard
//!     sources: { max: 8, min_share: 5% }   # the defaults; max at most 16 (MAX_SOURCES_PER_STEP)
//!   - announce: source-rtbh       # S/RTBH (RFC 5635): each heavy source's /32 or /128 to the
//!     sources: { max: 4, min_share: 10% }  #   neighbors that receive source-rtbh (or peers:)
//!   - after: 30s
//!     announce: divert            # the victim's covering prefix to a scrubbing service
//!     peers: [scrubber]           #   named explicitly, each receiving divert
//!     divert:
//!       prefix_length_v4: 24      # the defaults: the /24, and the /48 for IPv6
//!       prefix_length_v6: 48
//!       next_hop_ipv4: 198.51.100.10          # where the service takes the traffic (one at least)
//!       next_hop_ipv6: 2001:db8:ffff::10
//!       communities: [65000:800, no-export]
//!       large_communities: ['65000:8:1']
//! ```
//!
//! `match: { concentrated: 80% }` takes only attacks whose eight heaviest sources carry together
//! at least that share of them: a flood from a few hosts, for which their sources are the right
//! rule (the shipped `few-sources` policy), not a spoofed one.
//!
//! A heavy source carries at least `min_share` of the attack's packets in some interval (the
//! shares the signature keeps), is of the victim's family and is not the victim; the heaviest
//! `max` are taken. `src` (a rule per source) differs from `sources` (the heaviest source, in the
//! one rule the step makes). A step naming a neighbor that does not receive its kind is an error
//! at the name, as is a source-rtbh or divert step when no neighbor receives the kind.
//!
//! Loading is the same two passes as the configuration, with `file:line:col` errors; a directory
//! with any error is refused whole, and the policies in force stay.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use deflect_bgp::community::{Community, LargeCommunity};
use deflect_bgp::flowspec::Action;
use deflect_bgp::flowspec::action::check_actions;
use deflect_bgp::flowspec::text::parse_actions;
use serde::{Deserialize, Serialize, Serializer};
use serde_saphyr::Spanned;

use crate::detect::{Attack, Vector};
use crate::diag::{
    ConfigError, ConfigErrors, parse_duration, positive_duration, unplaced, yaml_error,
};
use crate::route::Kind;

mod build;
mod steps;
pub use self::build::{
    divert_target, flowspec_route, flowspec_route_to, heavy_sources, source_routes,
};

/// One policy file, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    description: String,
    #[serde(default = "default_priority")]
    priority: i32,
    #[serde(rename = "match")]
    matches: MatchFile,
    #[serde(default = "default_ttl")]
    ttl: Spanned<String>,
    #[serde(default = "default_withdraw_after")]
    withdraw_after: Spanned<String>,
    #[serde(default)]
    recurrence: Option<RecurrenceFile>,
    #[serde(default)]
    dry_run: bool,
    steps: Spanned<Vec<StepFile>>,
}

/// What a policy does when its attack comes back, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RecurrenceFile {
    #[serde(default)]
    probation: Option<Spanned<String>>,
    #[serde(default)]
    growth: Option<Spanned<u32>>,
    #[serde(default)]
    max_withdraw_after: Option<Spanned<String>>,
}

/// What a policy does when its attack comes back after it went quiet: during the hold-down (the
/// rule still in place) or within `probation` after the withdrawal, it is the same attack; its
/// rules return at once, and the next hold-down is `growth` times longer, up to
/// `max_withdraw_after`. Quiet under deflect's own rule is no proof that a flood ended: the
/// hold-down is how long deflect waits before it looks again, and each return shows it looked
/// too soon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Recurrence {
    pub probation: Duration,
    pub growth: u32,
    pub max_withdraw_after: Duration,
}

impl Default for Recurrence {
    fn default() -> Recurrence {
        Recurrence {
            probation: Duration::from_secs(15 * 60),
            growth: 4,
            max_withdraw_after: Duration::from_secs(3600),
        }
    }
}

/// Most a hold-down may grow to: a rule that must come down one day.
const MAX_HOLD_DOWN: Duration = Duration::from_secs(24 * 3600);
/// Most a hold-down may grow at each return.
const MAX_GROWTH: u32 = 16;

fn default_priority() -> i32 {
    100
}

fn default_ttl() -> Spanned<String> {
    unplaced("10m".into())
}

fn default_withdraw_after() -> Spanned<String> {
    unplaced("60s".into())
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchFile {
    vectors: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
    #[serde(default)]
    min_pps: u64,
    #[serde(default)]
    min_bps: u64,
    /// Only attacks whose heaviest sources carry together at least this share of it.
    #[serde(default)]
    concentrated: Option<Spanned<String>>,
    /// Only attacks whose sources were seen in one of these indicator lists.
    #[serde(default)]
    ioc: Vec<Spanned<String>>,
    /// `address`, `prefix` (carpet bombing) or `any` (the default).
    #[serde(default)]
    target: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepFile {
    #[serde(default)]
    after: Option<Spanned<String>>,
    #[serde(default)]
    if_above_pps: Option<u64>,
    /// A mitigation to announce...
    #[serde(default)]
    announce: Option<Spanned<Kind>>,
    /// ...or an external API to call (a playbook step)...
    #[serde(default)]
    call: Option<Spanned<CallFile>>,
    /// ...or a drop on the attacked node itself, by its probe (nftables).
    #[serde(default)]
    local: Option<Spanned<LocalFile>>,
    #[serde(default, rename = "match")]
    matches: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    action: Option<Spanned<String>>,
    #[serde(default)]
    peers: Vec<Spanned<String>>,
    /// Which heavy sources a `src` FlowSpec step or a source-rtbh step takes.
    #[serde(default)]
    sources: Option<Spanned<SourcesFile>>,
    /// What a divert step announces.
    #[serde(default)]
    divert: Option<Spanned<DivertFile>>,
}

/// How a step picks heavy sources, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct SourcesFile {
    #[serde(default)]
    max: Option<Spanned<usize>>,
    /// A percentage: `5%`, `0.5%`.
    #[serde(default)]
    min_share: Option<Spanned<String>>,
}

/// A diversion step's route, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct DivertFile {
    #[serde(default)]
    prefix_length_v4: Option<Spanned<u8>>,
    #[serde(default)]
    prefix_length_v6: Option<Spanned<u8>>,
    #[serde(default)]
    next_hop_ipv4: Option<Spanned<IpAddr>>,
    #[serde(default)]
    next_hop_ipv6: Option<Spanned<IpAddr>>,
    #[serde(default)]
    communities: Vec<Spanned<String>>,
    #[serde(default)]
    large_communities: Vec<Spanned<String>>,
}

/// Most sources one step may name: rules or S/RTBH routes per step and attack (a signature keeps
/// no more sources than this).
pub const MAX_SOURCES_PER_STEP: usize = crate::detect::classify::MAX_SOURCES;

/// How a step picks the attack's heavy sources (a `src` FlowSpec step, a source-rtbh step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SourceSelect {
    /// Most sources (rules, routes) the step makes; at most [`MAX_SOURCES_PER_STEP`].
    pub max: usize,
    /// Least share of the attack's packets a source must carry, in basis points (1/100 of a %).
    pub min_share_bp: u16,
}

impl Default for SourceSelect {
    fn default() -> SourceSelect {
        SourceSelect {
            max: 8,
            min_share_bp: 500,
        }
    }
}

/// What a divert step announces: the victim's covering prefix (its /24 or /48 by default), with
/// the scrubbing service's next hop and the communities that steer it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DivertStep {
    pub prefix_length_v4: u8,
    pub prefix_length_v6: u8,
    pub next_hop_ipv4: Option<IpAddr>,
    pub next_hop_ipv6: Option<IpAddr>,
    #[serde(serialize_with = "texts")]
    pub communities: Vec<Community>,
    #[serde(serialize_with = "texts")]
    pub large_communities: Vec<LargeCommunity>,
}

fn texts<T: std::fmt::Display, S: Serializer>(v: &[T], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(ToString::to_string))
}

/// A node-local drop step, as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocalFile {
    #[serde(default, rename = "match")]
    matches: Option<Vec<Spanned<String>>>,
    /// `drop`, or `rate-bytes N`.
    action: Spanned<String>,
}

/// A node-local drop step, resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LocalStep {
    pub parts: BTreeSet<Part>,
    /// Rate-limit instead of dropping everything.
    pub rate_bytes: Option<u64>,
}

/// A playbook step: an HTTP request to an external API, and the one that undoes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CallFile {
    name: String,
    #[serde(default)]
    method: Option<String>,
    url: Spanned<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    undo: Option<RequestFile>,
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    #[serde(default)]
    attempts: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestFile {
    #[serde(default)]
    method: Option<String>,
    url: Spanned<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

/// An HTTP request with `{{field}}` and `{{env.NAME}}` placeholders.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// A playbook call, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Call {
    pub name: String,
    pub request: HttpRequest,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub undo: Option<HttpRequest>,
    pub timeout: Duration,
    pub attempts: u32,
}

const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Parts of a signature a FlowSpec step can match on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    Proto,
    Sport,
    Dport,
    TcpFlags,
    Fragment,
    /// The heaviest source, in the one rule.
    Sources,
    /// One rule per heavy source (`sources:` of the step says how many and how heavy).
    Src,
}

impl FromStr for Part {
    type Err = ();
    fn from_str(s: &str) -> Result<Part, ()> {
        Ok(match s {
            "proto" => Part::Proto,
            "sport" => Part::Sport,
            "dport" => Part::Dport,
            "tcp-flags" => Part::TcpFlags,
            "fragment" => Part::Fragment,
            "sources" => Part::Sources,
            "src" => Part::Src,
            _ => return Err(()),
        })
    }
}

/// A step, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Step {
    pub after: Duration,
    pub if_above_pps: Option<u64>,
    /// What the step announces; `None` for a call.
    pub announce: Option<Kind>,
    /// A playbook call instead of an announcement.
    pub call: Option<Call>,
    /// A node-local drop instead of an announcement.
    pub local: Option<LocalStep>,
    /// FlowSpec: signature parts matched besides the destination.
    pub parts: BTreeSet<Part>,
    /// FlowSpec: the actions (shown in rule syntax).
    #[serde(rename = "action", serialize_with = "actions_text")]
    pub actions: Vec<Action>,
    pub peers: Vec<String>,
    /// A `src` FlowSpec step or a source-rtbh step: which heavy sources it takes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<SourceSelect>,
    /// A divert step: what it announces.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divert: Option<DivertStep>,
}

/// A policy, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Policy {
    pub name: String,
    pub file: String,
    pub description: String,
    pub priority: i32,
    /// Empty: every vector.
    pub vectors: Vec<Vector>,
    pub groups: Vec<String>,
    pub min_pps: u64,
    pub min_bps: u64,
    /// Indicator lists, one of which the attack's sources must hit; any attack when empty.
    pub ioc: Vec<String>,
    /// The share (basis points) the attack's heaviest sources must carry together; 0: any attack.
    #[serde(skip_serializing_if = "is_zero_bp")]
    pub concentrated_bp: u16,
    /// Attacks on an address, on a prefix (carpet bombing), or both (`None`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetScope>,
    pub ttl: Duration,
    pub withdraw_after: Duration,
    pub recurrence: Recurrence,
    pub dry_run: bool,
    pub steps: Vec<Step>,
}

impl Policy {
    pub fn matches(&self, a: &Attack) -> bool {
        (self.vectors.is_empty() || self.vectors.contains(&a.vector))
            && (self.groups.is_empty() || self.groups.contains(&a.group))
            && a.peak_pps >= self.min_pps
            && a.peak_bps >= self.min_bps
            && (self.ioc.is_empty() || self.ioc.iter().any(|l| a.ioc.contains_key(l)))
            && (self.concentrated_bp == 0 || concentration_bp(a) >= self.concentrated_bp)
            && match self.target {
                None => true,
                Some(TargetScope::Address) => a.prefix.is_none(),
                Some(TargetScope::Prefix) => a.prefix.is_some(),
            }
    }
}

fn is_zero_bp(bp: &u16) -> bool {
    *bp == 0
}

/// Most sources counted in an attack's concentration: a flood from more hosts than this is
/// nothing a handful of source rules can take.
pub const CONCENTRATION_SOURCES: usize = 8;

/// The share of an attack (basis points) its [`CONCENTRATION_SOURCES`] heaviest sources carry
/// together (each source's largest share, so an upper bound when their peaks differ in time).
pub fn concentration_bp(a: &Attack) -> u16 {
    let mut shares = a.signature.shares.clone();
    shares.sort_unstable_by(|x, y| y.cmp(x));
    let sum: u32 = shares
        .iter()
        .take(CONCENTRATION_SOURCES)
        .map(|&bp| u32::from(bp))
        .sum();
    sum.min(10_000) as u16
}

/// What a policy's `match.target` takes: attacks on one address, or on a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TargetScope {
    Address,
    Prefix,
}

/// The policies in force, in the order they are tried.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Policies {
    pub list: Vec<Policy>,
    /// Where they came from, and what the files looked like then (to see changes).
    #[serde(skip)]
    pub dir: Option<PathBuf>,
    #[serde(skip)]
    pub stamp: Vec<(PathBuf, SystemTime, u64)>,
}

/// What is needed to check references.
#[derive(Debug, Clone, Default)]
pub struct Known {
    pub groups: BTreeSet<String>,
    /// Neighbors by name, with the mitigation kinds each receives.
    pub peers: BTreeMap<String, BTreeSet<Kind>>,
    /// Indicator list names.
    pub ioc: BTreeSet<String>,
}

/// The shipped policies, used when the policy directory does not exist.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "carpet-amplification.yaml",
        include_str!("../policies/carpet-amplification.yaml"),
    ),
    ("carpet.yaml", include_str!("../policies/carpet.yaml")),
    (
        "amplification.yaml",
        include_str!("../policies/amplification.yaml"),
    ),
    ("syn-flood.yaml", include_str!("../policies/syn-flood.yaml")),
    ("tcp-flags.yaml", include_str!("../policies/tcp-flags.yaml")),
    ("ack-flood.yaml", include_str!("../policies/ack-flood.yaml")),
    (
        "tcp-connection-flood.yaml",
        include_str!("../policies/tcp-connection-flood.yaml"),
    ),
    ("udp-flood.yaml", include_str!("../policies/udp-flood.yaml")),
    (
        "few-sources.yaml",
        include_str!("../policies/few-sources.yaml"),
    ),
    (
        "icmp-flood.yaml",
        include_str!("../policies/icmp-flood.yaml"),
    ),
    (
        "fragment-flood.yaml",
        include_str!("../policies/fragment-flood.yaml"),
    ),
    ("gre-flood.yaml", include_str!("../policies/gre-flood.yaml")),
    (
        "volumetric.yaml",
        include_str!("../policies/volumetric.yaml"),
    ),
];

/// Files of a directory that hold policies, sorted, with their modification time and size.
pub fn listing(dir: &Path) -> std::io::Result<Vec<(PathBuf, SystemTime, u64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let p = e.path();
        let yaml = p.extension().is_some_and(|x| x == "yaml" || x == "yml");
        if !yaml {
            continue;
        }
        let md = e.metadata()?;
        out.push((p, md.modified()?, md.len()));
    }
    out.sort();
    Ok(out)
}

impl Policies {
    /// Loads a directory; `None`, or a directory that does not exist, gives the shipped policies.
    pub fn load(dir: Option<&Path>, known: &Known) -> Result<Policies, ConfigErrors> {
        let Some(dir) = dir.filter(|d| d.exists()) else {
            let files: Vec<(String, String)> = EMBEDDED
                .iter()
                .map(|(n, t)| (format!("<embedded>/policies/{n}"), t.to_string()))
                .collect();
            return Policies::parse(&files, known);
        };
        let io = |e: std::io::Error| {
            ConfigErrors(vec![ConfigError {
                file: dir.display().to_string(),
                line: 0,
                column: 0,
                message: format!("cannot read the policy directory: {e}"),
            }])
        };
        let stamp = listing(dir).map_err(io)?;
        let mut files = Vec::new();
        for (p, _, _) in &stamp {
            let text = std::fs::read_to_string(p).map_err(io)?;
            files.push((p.display().to_string(), text));
        }
        let mut out = Policies::parse(&files, known)?;
        out.dir = Some(dir.to_path_buf());
        out.stamp = stamp;
        Ok(out)
    }

    /// True when the directory's files changed since they were loaded.
    pub fn changed(&self) -> bool {
        match &self.dir {
            Some(d) => listing(d).map_or(true, |l| l != self.stamp),
            None => false,
        }
    }

    /// Parses and checks `(file name, text)` pairs, all or nothing.
    pub fn parse(files: &[(String, String)], known: &Known) -> Result<Policies, ConfigErrors> {
        let mut errs = Vec::new();
        let mut list = Vec::new();
        for (file, text) in files {
            match serde_saphyr::from_str::<PolicyFile>(text) {
                Ok(p) => {
                    if let Some(pol) = check(file, p, known, &mut errs) {
                        list.push(pol);
                    }
                }
                Err(e) => errs.push(yaml_error(file, &e)),
            }
        }
        if !errs.is_empty() {
            return Err(ConfigErrors(errs));
        }
        list.sort_by(|a, b| a.priority.cmp(&b.priority).then(a.name.cmp(&b.name)));
        Ok(Policies {
            list,
            dir: None,
            stamp: Vec::new(),
        })
    }

    /// The policy that runs an attack.
    pub fn find(&self, a: &Attack) -> Option<&Policy> {
        self.list.iter().find(|p| p.matches(a))
    }

    pub fn get(&self, name: &str) -> Option<&Policy> {
        self.list.iter().find(|p| p.name == name)
    }
}

fn check(file: &str, p: PolicyFile, known: &Known, errs: &mut Vec<ConfigError>) -> Option<Policy> {
    let before = errs.len();
    let mut err = |at: &serde_saphyr::Location, message: String| {
        errs.push(ConfigError {
            file: file.to_string(),
            line: at.line(),
            column: at.column(),
            message,
        })
    };
    let name = Path::new(file)
        .file_stem()
        .map_or_else(|| file.to_string(), |s| s.to_string_lossy().into_owned());
    let mut vectors = Vec::new();
    for v in &p.matches.vectors {
        if v.value == "any" {
            continue;
        }
        match Vector::from_name(&v.value) {
            Some(x) => vectors.push(x),
            None => err(
                &v.referenced,
                format!(
                    "unknown vector {:?}; use any, or one of: {}",
                    v.value,
                    Vector::ALL.map(|v| v.name()).join(", ")
                ),
            ),
        }
    }
    if p.matches.vectors.is_empty() {
        err(
            &p.steps.referenced,
            "match.vectors is empty; name the vectors this policy handles, or `any`".into(),
        );
    }
    for g in &p.matches.groups {
        if !known.groups.contains(&g.value) {
            err(
                &g.referenced,
                format!(
                    "no protected group named {:?}; the configuration has: {}",
                    g.value,
                    known.groups.iter().cloned().collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }
    let target = match p.matches.target.as_ref().map(|t| (t.value.as_str(), t)) {
        None | Some(("any", _)) => None,
        Some(("address", _)) => Some(TargetScope::Address),
        Some(("prefix", _)) => Some(TargetScope::Prefix),
        Some((other, t)) => {
            err(
                &t.referenced,
                format!(
                    "match.target {other:?}: use address (one address), prefix (a flood spread over a prefix: carpet bombing) or any"
                ),
            );
            None
        }
    };
    let dur =
        |s: &Spanned<String>, what: &str, err: &mut dyn FnMut(&serde_saphyr::Location, String)| {
            parse_duration(&s.value).unwrap_or_else(|| {
                err(
                    &s.referenced,
                    format!(
                        "{what} {:?} is not a duration; write e.g. 30s, 10m or 1h",
                        s.value
                    ),
                );
                Duration::ZERO
            })
        };
    let ttl = dur(&p.ttl, "ttl", &mut err);
    if ttl.is_zero() && parse_duration(&p.ttl.value).is_some() {
        err(
            &p.ttl.referenced,
            "ttl must be more than 0s: every mitigation expires".into(),
        );
    }
    let withdraw_after = dur(&p.withdraw_after, "withdraw_after", &mut err);
    let concentrated_bp = match &p.matches.concentrated {
        None => 0,
        Some(c) => steps::share_bp(&c.value).unwrap_or_else(|| {
            err(
                &c.referenced,
                format!(
                    "match.concentrated {:?} is not a share; write a percentage above 0 and at most 100, e.g. 80%",
                    c.value
                ),
            );
            0
        }),
    };
    let mut recurrence = Recurrence::default();
    if let Some(r) = &p.recurrence {
        if let Some(d) = &r.probation {
            recurrence.probation = dur(d, "recurrence.probation", &mut err);
        }
        if let Some(g) = &r.growth {
            if (1..=MAX_GROWTH).contains(&g.value) {
                recurrence.growth = g.value;
            } else {
                err(
                    &g.referenced,
                    format!(
                        "recurrence.growth must be 1 (the hold-down never grows) to {MAX_GROWTH}"
                    ),
                );
            }
        }
        if let Some(d) = &r.max_withdraw_after {
            let m = dur(d, "recurrence.max_withdraw_after", &mut err);
            if m > MAX_HOLD_DOWN {
                err(
                    &d.referenced,
                    format!(
                        "recurrence.max_withdraw_after is at most {}h: every rule comes down one day",
                        MAX_HOLD_DOWN.as_secs() / 3600
                    ),
                );
            } else if m < withdraw_after && parse_duration(&d.value).is_some() {
                err(
                    &d.referenced,
                    "recurrence.max_withdraw_after is shorter than withdraw_after; make it as long or longer".into(),
                );
            }
            recurrence.max_withdraw_after = m;
        }
    }
    recurrence.max_withdraw_after = recurrence.max_withdraw_after.max(withdraw_after);
    if p.steps.value.is_empty() {
        err(
            &p.steps.referenced,
            "a policy needs at least one step".into(),
        );
    }
    let mut steps = Vec::new();
    let mut last_after = Duration::ZERO;
    for s in &p.steps.value {
        let after = s
            .after
            .as_ref()
            .map_or(Duration::ZERO, |a| dur(a, "after", &mut err));
        if after < last_after {
            if let Some(a) = &s.after {
                err(
                    &a.referenced,
                    "steps run in order: this step's `after` is earlier than the step before"
                        .into(),
                );
            }
        }
        last_after = after;
        let mut parts = BTreeSet::new();
        let mut actions = Vec::new();
        let mut call = None;
        let mut local = None;
        let kinds = usize::from(s.announce.is_some())
            + usize::from(s.call.is_some())
            + usize::from(s.local.is_some());
        if kinds != 1 {
            err(
                s.announce.as_ref().map_or(&p.steps.referenced, |a| &a.referenced),
                "every step does one thing: announce: flowspec|rtbh|source-rtbh|divert, call: (an external API) or local: (a drop on the node); split it".into(),
            );
        }
        if let Some(c) = &s.call {
            call = check_call(&c.value, &c.referenced, &mut err);
        }
        if let Some(l) = &s.local {
            let lparts = parse_parts(l.value.matches.as_deref(), &mut err);
            if let Some(m) = l.value.matches.iter().flatten().find(|m| m.value == "src") {
                err(
                    &m.referenced,
                    "a local drop takes one source: use sources (the heaviest), not src".into(),
                );
            }
            let a = &l.value.action;
            let rate_bytes = match a.value.trim() {
                "drop" => Some(None),
                other => other
                    .strip_prefix("rate-bytes ")
                    .and_then(|n| n.trim().parse::<u64>().ok())
                    .filter(|n| *n > 0)
                    .map(Some),
            };
            match rate_bytes {
                Some(rate_bytes) => {
                    local = Some(LocalStep {
                        parts: lparts,
                        rate_bytes,
                    })
                }
                None => err(
                    &a.referenced,
                    "a local action is drop, or rate-bytes N".into(),
                ),
            }
        }
        let kind = s.announce.as_ref().map(|k| k.value).filter(|_| kinds == 1);
        match kind {
            None => {}
            Some(Kind::Flowspec) => {
                parts = parse_parts(s.matches.as_deref(), &mut err);
                match &s.action {
                    None => err(
                        s.announce
                            .as_ref()
                            .map_or(&p.steps.referenced, |a| &a.referenced),
                        "a flowspec step needs an action: discard, rate-bytes N or rate-packets N"
                            .into(),
                    ),
                    Some(a) => match parse_actions(&a.value) {
                        Ok(list) => match check_actions(&list) {
                            Ok(()) => actions = list,
                            Err((x, why)) => err(&a.referenced, format!("action: {x} {why}")),
                        },
                        Err(e) => err(&a.referenced, format!("action: {e}")),
                    },
                }
            }
            Some(k @ (Kind::Rtbh | Kind::SourceRtbh | Kind::Divert)) => {
                if let Some(a) = &s.action {
                    err(
                        &a.referenced,
                        format!("{k} step takes no action: the route itself does it"),
                    );
                }
                if let Some(m) = s.matches.as_ref().and_then(|m| m.first()) {
                    err(
                        &m.referenced,
                        format!("{k} step matches no part of the signature; remove match"),
                    );
                }
            }
        }
        let at = s
            .announce
            .as_ref()
            .map_or(&p.steps.referenced, |a| &a.referenced);
        let sources = steps::sources(kind, &parts, s.sources.as_ref(), at, &mut err);
        let divert = steps::divert(kind, s.divert.as_ref(), at, &mut err);
        steps::peers(kind, &s.peers, known, at, &mut err);
        steps.push(Step {
            after,
            if_above_pps: s.if_above_pps,
            announce: kind,
            call,
            local,
            parts,
            actions,
            peers: s.peers.iter().map(|p| p.value.clone()).collect(),
            sources,
            divert,
        });
    }
    if errs.len() > before {
        return None;
    }
    Some(Policy {
        name,
        file: file.to_string(),
        description: p.description,
        priority: p.priority,
        vectors,
        groups: p.matches.groups.iter().map(|g| g.value.clone()).collect(),
        min_pps: p.matches.min_pps,
        min_bps: p.matches.min_bps,
        ioc: p.matches.ioc.iter().map(|l| l.value.clone()).collect(),
        concentrated_bp,
        target,
        ttl,
        withdraw_after,
        recurrence,
        dry_run: p.dry_run,
        steps,
    })
}

/// The signature parts a step matches on: all of them when the step does not say.
fn parse_parts(
    matches: Option<&[Spanned<String>]>,
    err: &mut dyn FnMut(&serde_saphyr::Location, String),
) -> BTreeSet<Part> {
    let Some(list) = matches else {
        return [
            Part::Proto,
            Part::Sport,
            Part::Dport,
            Part::TcpFlags,
            Part::Fragment,
        ]
        .into_iter()
        .collect();
    };
    let mut parts = BTreeSet::new();
    for m in list {
        match m.value.parse::<Part>() {
            Ok(x) => {
                parts.insert(x);
            }
            Err(()) => err(
                &m.referenced,
                format!(
                    "unknown match {:?}; use proto, sport, dport, tcp-flags, fragment, sources (the heaviest source) or src (a rule per heavy source)",
                    m.value
                ),
            ),
        }
    }
    parts
}

/// Checks a call step.
fn check_call(
    c: &CallFile,
    at: &serde_saphyr::Location,
    err: &mut dyn FnMut(&serde_saphyr::Location, String),
) -> Option<Call> {
    let before_ok = std::cell::Cell::new(true);
    let request = |method: &Option<String>,
                   url: &Spanned<String>,
                   headers: &std::collections::BTreeMap<String, String>,
                   body: &Option<String>,
                   default: &str,
                   err: &mut dyn FnMut(&serde_saphyr::Location, String)| {
        let method = method
            .clone()
            .unwrap_or_else(|| default.to_string())
            .to_uppercase();
        if !METHODS.contains(&method.as_str()) {
            err(
                at,
                format!("method {method} is not one of {}", METHODS.join(", ")),
            );
            before_ok.set(false);
        }
        if !url.value.starts_with("http://") && !url.value.starts_with("https://") {
            err(
                &url.referenced,
                "url must start with http:// or https://".into(),
            );
            before_ok.set(false);
        }
        for text in std::iter::once(&url.value)
            .chain(headers.values())
            .chain(body.iter())
        {
            let mut rest = text.as_str();
            while let Some(i) = rest.find("{{") {
                let after = &rest[i + 2..];
                let Some(j) = after.find("}}") else { break };
                let name = after[..j].trim();
                if !name.starts_with("env.") && !crate::alert::FIELDS.contains(&name) {
                    err(
                        &url.referenced,
                        format!(
                            "template field {{{{{name}}}}} is unknown; use env.NAME or {}",
                            crate::alert::FIELDS.join(", ")
                        ),
                    );
                    before_ok.set(false);
                }
                rest = &after[j + 2..];
            }
        }
        HttpRequest {
            method,
            url: url.value.clone(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            body: body.clone(),
        }
    };
    let main = request(&c.method, &c.url, &c.headers, &c.body, "POST", err);
    let undo = c
        .undo
        .as_ref()
        .map(|u| request(&u.method, &u.url, &u.headers, &u.body, "DELETE", err));
    let mut timeout = Duration::from_secs(10);
    if let Some(t) = &c.timeout {
        match positive_duration(t, "timeout", "10s", err) {
            Some(d) => timeout = d,
            None => before_ok.set(false),
        }
    }
    before_ok.get().then(|| Call {
        name: c.name.clone(),
        request: main,
        undo,
        timeout,
        attempts: c.attempts.unwrap_or(3).clamp(1, 10),
    })
}

/// Actions in rule syntax, as the API shows a step.
fn actions_text<S: Serializer>(actions: &[Action], s: S) -> Result<S::Ok, S::Error> {
    let words: Vec<String> = actions.iter().map(Action::to_string).collect();
    s.serialize_str(&words.join(" "))
}

#[cfg(test)]
mod tests;
