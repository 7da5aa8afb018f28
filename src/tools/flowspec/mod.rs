//! `deflect flowspec "<rule>"`: one FlowSpec rule in deflect's text syntax, shown as the bytes
//! deflect would announce and as the same rule for other tools.
//!
//! Every target is a pure function of the [`FlowRoute`]: [`to_hex`], [`to_gobgp`], [`to_exabgp`],
//! [`to_bird`], [`to_junos`], [`to_iosxr`], [`to_nftables`], [`to_iptables`]. A target either prints a
//! rule that matches exactly what deflect's rule matches, or refuses with [`Unsupported`]: one
//! `not expressible in <target>: <what>` line per component or action it cannot say. It never prints
//! a silently different rule. Where a host-local firewall can only come close (a rate limiter, a
//! length the kernel measures after GRO, fragments it reassembles first), the output says so in a
//! `# approximate: ...` comment.
//!
//! What each target cannot express (each case refuses with its reason):
//!
//! | target | not expressible |
//! |---|---|
//! | gobgp | rate-packets; `traffic-action terminal` (all flags clear); TCP flag bits above cwr or a flag value of 0 |
//! | exabgp | an IPv6 rule without a prefix (ExaBGP takes the family from the prefixes); 4-octet AS redirects (ExaBGP 4.2 fails on them) |
//! | bird | flow-label values above 65535 (BIRD writes at most 2 value octets); a bitmask value of 0; TCP flags above 0xfff; fragment tests other than "all of one flag" / "none of one flag" |
//! | junos | flow-label; rate-packets; a rate with an AS or not a whole number of bits/s; fragment tests other than one flag; TCP flag bits above cwr |
//! | iosxr | port; flow-label; rate-packets; redirects; sampling and `traffic-action continue`; TCP flags other than one AND-term of all/none tests; fragment tests other than one flag |
//! | nftables | redirects; two different rate limits; TCP flag bits above cwr |
//! | iptables | redirects; TCP flags ece, cwr and above; IPv6 fragment tests that need a non-zero offset; icmp-code without icmp-type; over 16 ICMP type/code pairs; over 8 IPv6 next-header values; over 32 rules |
//!
//! All targets refuse non-zero IPv6 prefix offsets except nftables (GoBGP and BIRD 2.0.12 read them
//! differently, and deflect refuses them by default too).
//!
//! The router targets were checked live: GoBGP 3.10's CLI, ExaBGP 4.2 and BIRD 2.0.12 build the
//! identical NLRI and communities deflect announces (`integration/flowspec_tool.rs`). Junos and
//! IOS-XR output follows their documented syntax; those routers build their own NLRI from it, which
//! matches the same packets (numeric lists become value and range lists).

use std::fmt::{self, Write as _};
use std::io::Write as _;
use std::net::Ipv6Addr;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use deflect_bgp::flowspec::{Action, BitmaskOp, Component, FlowRoute, NumericOp, Prefix};
use deflect_bgp::iana::Afi;
use deflect_bgp::rib::{AdjRibOut, RouteAttrs, RouteKey};

use crate::route::show_update;

#[derive(Debug, Clone, Args)]
pub struct FlowspecArgs {
    /// The rule in deflect's syntax, `MATCHES [then ACTIONS]` (one quoted argument, or several
    /// words), e.g. "dst 203.0.113.7/32 proto udp sport 123 then discard".
    #[arg(required = true, num_args = 1..)]
    pub rule: Vec<String>,
    /// What to print.
    #[arg(long, value_enum, default_value_t = Format::All)]
    pub format: Format,
    /// The rule's name where a target needs one (ExaBGP, Junos, IOS-XR, hashlimit, log prefixes);
    /// derived from the rule when absent.
    #[arg(long)]
    pub name: Option<String>,
    /// The AS deflect puts in AS_PATH in the UPDATE shown by `--format hex`.
    #[arg(long, default_value_t = 65000)]
    pub local_as: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    All,
    Hex,
    Gobgp,
    Exabgp,
    Bird,
    Junos,
    Iosxr,
    Nftables,
    Iptables,
}

/// `deflect flowspec`: exit 0 when printed, 1 when the one requested target cannot express the
/// rule (its `not expressible` lines are printed), 2 when the rule or the name does not parse.
pub fn main(args: FlowspecArgs) -> ExitCode {
    let text = args.rule.join(" ");
    let route: FlowRoute = match text.parse() {
        Ok(r) => r,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "deflect flowspec: {e}");
            return ExitCode::from(2);
        }
    };
    let name = match args.name {
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            let _ = writeln!(
                std::io::stderr(),
                "deflect flowspec: --name {n:?}: use 1 to 63 letters, digits, '-' or '_', starting with a letter or digit"
            );
            return ExitCode::from(2);
        }
        None => default_name(&route),
    };
    let (out, ok) = render(&route, args.format, &name, args.local_as);
    let mut stdout = std::io::stdout().lock();
    if stdout.write_all(out.as_bytes()).is_err() {
        return ExitCode::FAILURE;
    }
    ExitCode::from(if ok { 0 } else { 1 })
}

/// The text `deflect flowspec` prints, and whether the requested target could express the rule
/// (always true for [`Format::All`], which shows refusals in place).
pub fn render(route: &FlowRoute, format: Format, name: &str, local_as: u32) -> (String, bool) {
    let one = |r: Result<String, Unsupported>| match r {
        Ok(s) => (s, true),
        Err(u) => (u.to_string(), false),
    };
    match format {
        Format::Hex => (to_hex(route, local_as), true),
        Format::Gobgp => one(to_gobgp(route)),
        Format::Exabgp => one(to_exabgp(route, name)),
        Format::Bird => one(to_bird(route)),
        Format::Junos => one(to_junos(route, name)),
        Format::Iosxr => one(to_iosxr(route, name)),
        Format::Nftables => one(to_nftables(route, name)),
        Format::Iptables => one(to_iptables(route, name)),
        Format::All => {
            let mut s = format!("# rule: {route}\n");
            let sections: [(&str, Result<String, Unsupported>); 8] = [
                ("hex", Ok(to_hex(route, local_as))),
                ("gobgp", to_gobgp(route)),
                ("exabgp", to_exabgp(route, name)),
                ("bird", to_bird(route)),
                ("junos", to_junos(route, name)),
                ("iosxr", to_iosxr(route, name)),
                ("nftables", to_nftables(route, name)),
                ("iptables", to_iptables(route, name)),
            ];
            for (title, r) in sections {
                let _ = write!(s, "\n# --- {title} ---\n");
                match r {
                    Ok(t) => s.push_str(&t),
                    Err(u) => s.push_str(&u.to_string()),
                }
            }
            (s, true)
        }
    }
}

/// What a target cannot express of a rule: one reason per component or action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub target: &'static str,
    pub reasons: Vec<String>,
}

/// One `not expressible in <target>: <what>` line per reason.
impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for r in &self.reasons {
            writeln!(f, "not expressible in {}: {r}", self.target)?;
        }
        Ok(())
    }
}

impl std::error::Error for Unsupported {}

/// Collects a target's refusals while it builds its text.
struct Gaps {
    target: &'static str,
    reasons: Vec<String>,
}

impl Gaps {
    fn new(target: &'static str) -> Gaps {
        Gaps {
            target,
            reasons: Vec::new(),
        }
    }

    fn add(&mut self, reason: impl Into<String>) {
        let r = reason.into();
        if !self.reasons.contains(&r) {
            self.reasons.push(r);
        }
    }

    fn finish(self, text: String) -> Result<String, Unsupported> {
        if self.reasons.is_empty() {
            Ok(text)
        } else {
            Err(Unsupported {
                target: self.target,
                reasons: self.reasons,
            })
        }
    }
}

/// Names usable in every target: 1 to 63 of `[A-Za-z0-9_-]`, starting with a letter or digit.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphanumeric())
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `deflect-` and 8 hex digits of a hash of the NLRI and the actions: stable for a given route.
pub fn default_name(route: &FlowRoute) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let communities = route.ext_communities();
    let bytes = route
        .rule
        .wire()
        .iter()
        .chain(communities.iter().flat_map(|c| c.0.iter()));
    for b in bytes {
        h ^= u32::from(*b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("deflect-{h:08x}")
}

// ---------------------------------------------------------------------------------------------
// Shared reading of a rule

fn family_name(afi: Afi) -> &'static str {
    match afi {
        Afi::Ipv4 => "ipv4-flowspec",
        Afi::Ipv6 => "ipv6-flowspec",
    }
}

/// Splits an operator list into its OR-terms (each an AND of operators).
fn split_terms<T>(ops: &[T], and: impl Fn(&T) -> bool) -> Vec<&[T]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..ops.len() {
        if !and(&ops[i]) {
            out.push(&ops[start..i]);
            start = i;
        }
    }
    if !ops.is_empty() {
        out.push(&ops[start..]);
    }
    out
}

fn numeric_terms(ops: &[NumericOp]) -> Vec<&[NumericOp]> {
    split_terms(ops, |o| o.and)
}

fn bitmask_terms(ops: &[BitmaskOp]) -> Vec<&[BitmaskOp]> {
    split_terms(ops, |o| o.and)
}

/// The comparison of a numeric operator, as most tools spell it.
fn numeric_symbol(o: &NumericOp) -> &'static str {
    match (o.lt, o.gt, o.eq) {
        (false, true, false) => ">",
        (false, true, true) => ">=",
        (true, false, false) => "<",
        (true, false, true) => "<=",
        (true, true, false) => "!=",
        // `=`; (the never- and always-true forms are refused when a rule is built)
        _ => "=",
    }
}

/// Inclusive value ranges, sorted and merged.
type Ranges = Vec<(u64, u64)>;

fn merge(mut r: Ranges) -> Ranges {
    r.sort_unstable();
    let mut out: Ranges = Vec::with_capacity(r.len());
    for (a, b) in r {
        match out.last_mut() {
            Some(last) if a <= last.1.saturating_add(1) => last.1 = last.1.max(b),
            _ => out.push((a, b)),
        }
    }
    out
}

fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Ranges {
    let mut out = Vec::new();
    for &(a0, a1) in a {
        for &(b0, b1) in b {
            let (lo, hi) = (a0.max(b0), a1.min(b1));
            if lo <= hi {
                out.push((lo, hi));
            }
        }
    }
    merge(out)
}

/// The values in `0..=max` one operator admits.
fn op_ranges(o: &NumericOp, max: u64) -> Ranges {
    let v = o.value;
    let mut r = Vec::new();
    if o.lt && v > 0 {
        r.push((0, (v - 1).min(max)));
    }
    if o.eq && v <= max {
        r.push((v, v));
    }
    if o.gt && v < max {
        r.push((v + 1, max));
    }
    merge(r)
}

/// The values in `0..=max` a numeric component matches: the union of its AND-terms.
fn ranges_of(ops: &[NumericOp], max: u64) -> Ranges {
    let mut all = Vec::new();
    for term in numeric_terms(ops) {
        let mut set = vec![(0, max)];
        for o in term {
            set = intersect(&set, &op_ranges(o, max));
        }
        all.extend(set);
    }
    merge(all)
}

fn ranges_len(r: &[(u64, u64)]) -> u64 {
    r.iter().map(|(a, b)| b - a + 1).sum()
}

/// The four bitmask tests of RFC 8955 §4.2.1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Test {
    /// `F`: all of F set.
    All,
    /// `!~F`: none of F set.
    None,
    /// `~F`: any of F set.
    Any,
    /// `!=F`: not all of F set.
    NotAll,
}

fn test_of(o: &BitmaskOp) -> Test {
    match (o.matched, o.not) {
        (true, false) => Test::All,
        (false, true) => Test::None,
        (false, false) => Test::Any,
        (true, true) => Test::NotAll,
    }
}

/// Whether a bitmask component (an OR of AND-terms) matches `data`.
fn bitmask_matches(ops: &[BitmaskOp], data: u64) -> bool {
    bitmask_terms(ops)
        .iter()
        .any(|t| t.iter().all(|o| o.matches(data)))
}

/// Whether a bitmask component matches every packet: one of its AND-terms tests nothing (only
/// "all of 0" and "none of 0").
fn bitmask_always(ops: &[BitmaskOp]) -> bool {
    bitmask_terms(ops).iter().any(|t| {
        t.iter()
            .all(|o| o.value == 0 && matches!(test_of(o), Test::All | Test::None))
    })
}

/// Bits of `value` named from `table`, and the bits left without a name.
fn flag_names<'a>(value: u64, table: &[(u64, &'a str)]) -> (Vec<&'a str>, u64) {
    let mut names = Vec::new();
    let mut rest = value;
    for &(bit, name) in table {
        if value & bit != 0 {
            names.push(name);
            rest &= !bit;
        }
    }
    (names, rest)
}

fn bits_of(value: u64) -> impl Iterator<Item = u64> {
    (0..64).map(|i| 1u64 << i).filter(move |b| value & b != 0)
}

const FRAG_DF: u64 = 0x01;
const FRAG_IS: u64 = 0x02;
const FRAG_FIRST: u64 = 0x04;
const FRAG_LAST: u64 = 0x08;

/// How an IPv4 packet's fragment fields look, as far as the fragment component can tell:
/// DF, MF, and whether the fragment offset is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Frag4 {
    df: bool,
    mf: bool,
    offset_zero: bool,
}

impl Frag4 {
    fn all() -> impl Iterator<Item = Frag4> {
        (0..8u8).map(|i| Frag4 {
            df: i & 4 != 0,
            mf: i & 2 != 0,
            offset_zero: i & 1 != 0,
        })
    }

    /// The component's bits for such a packet (RFC 8955 §4.2.2.12).
    fn bits(self) -> u64 {
        let mut b = 0;
        if self.df {
            b |= FRAG_DF;
        }
        if !self.offset_zero {
            b |= FRAG_IS;
        }
        if self.mf && self.offset_zero {
            b |= FRAG_FIRST;
        }
        if !self.mf && !self.offset_zero {
            b |= FRAG_LAST;
        }
        b
    }

    /// Values of `frag-off & 0x7fff` (DF, MF, 13-bit offset) in this state.
    fn frag_off(self) -> (u64, u64) {
        let base = (if self.df { 0x4000 } else { 0 }) + (if self.mf { 0x2000 } else { 0 });
        if self.offset_zero {
            (base, base)
        } else {
            (base + 1, base + 0x1fff)
        }
    }
}

/// The `frag-off & 0x7fff` values of the IPv4 packets a fragment component matches.
fn frag4_ranges(ops: &[BitmaskOp]) -> Ranges {
    merge(
        Frag4::all()
            .filter(|s| bitmask_matches(ops, s.bits()))
            .map(Frag4::frag_off)
            .collect(),
    )
}

/// An IPv6 packet as the fragment component sees it: no fragment header, or one with MF and a
/// zero or non-zero offset (RFC 8956 §3.6: no DF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frag6 {
    Missing,
    Header { mf: bool, offset_zero: bool },
}

impl Frag6 {
    fn all() -> [Frag6; 5] {
        let h = |mf, offset_zero| Frag6::Header { mf, offset_zero };
        [
            Frag6::Missing,
            h(false, true),
            h(true, true),
            h(false, false),
            h(true, false),
        ]
    }

    fn bits(self) -> u64 {
        match self {
            Frag6::Missing => 0,
            Frag6::Header { mf, offset_zero } => Frag4 {
                df: false,
                mf,
                offset_zero,
            }
            .bits(),
        }
    }
}

fn frag6_states(ops: &[BitmaskOp]) -> Vec<Frag6> {
    Frag6::all()
        .into_iter()
        .filter(|s| bitmask_matches(ops, s.bits()))
        .collect()
}

fn has(rule_components: &[Component], f: impl Fn(&Component) -> bool) -> bool {
    rule_components.iter().any(f)
}

/// The IP protocols a host-local rule must restrict to: the protocol component, narrowed by what
/// ports (TCP, UDP, SCTP), TCP flags (TCP) and ICMP fields (ICMP or ICMPv6) need. `None` when
/// nothing restricts the protocol.
fn protocol_ranges(route: &FlowRoute) -> Result<Option<Ranges>, String> {
    let comps = route.rule.components();
    let afi = route.rule.afi();
    let mut set: Option<Ranges> = comps.iter().find_map(|c| match c {
        Component::Protocol(ops) => Some(ranges_of(ops, 0xff)),
        _ => None,
    });
    let mut narrow = |allowed: Ranges| {
        set = Some(intersect(set.as_deref().unwrap_or(&[(0, 0xff)]), &allowed));
    };
    if has(comps, |c| {
        matches!(
            c,
            Component::Port(_) | Component::DestinationPort(_) | Component::SourcePort(_)
        )
    }) {
        narrow(vec![(6, 6), (17, 17), (132, 132)]);
    }
    if has(comps, |c| matches!(c, Component::TcpFlags(_))) {
        narrow(vec![(6, 6)]);
    }
    if has(comps, |c| {
        matches!(c, Component::IcmpType(_) | Component::IcmpCode(_))
    }) {
        let icmp = if afi == Afi::Ipv4 { 1 } else { 58 };
        narrow(vec![(icmp, icmp)]);
    }
    match set {
        Some(s) if s.is_empty() => Err(
            "the rule never matches: its ports, TCP flags and ICMP fields need different protocols"
                .into(),
        ),
        s => Ok(s),
    }
}

fn prefix_offset_gap(gaps: &mut Gaps, c: &Component, afi: Afi, p: &Prefix) {
    if p.offset != 0 {
        gaps.add(format!(
            "{} {} offset {} (a non-zero IPv6 prefix offset; routers read offsets differently)",
            c.keyword(afi),
            p.net,
            p.offset
        ));
    }
}

/// The 8 octets of an action's extended community, as hex.
fn ext_hex(a: &Action) -> String {
    hex::encode(a.to_ext_community().0)
}

/// A rate as a whole number, when it is one.
fn whole(rate: f32) -> Option<u64> {
    (rate.fract() == 0.0 && (0.0..1.8e19).contains(&rate)).then_some(rate as u64)
}

// ---------------------------------------------------------------------------------------------
// Hex

/// The NLRI (with its length prefix), each action's extended community, and the whole UPDATE an
/// eBGP peer would get from AS `local_as` (deflect's own encoder).
pub fn to_hex(route: &FlowRoute, local_as: u32) -> String {
    let afi = route.rule.afi();
    let mut s = format!(
        "family: {} (AFI {}, SAFI 133)\nnlri: {}\n",
        family_name(afi),
        afi.code(),
        hex::encode(route.rule.wire())
    );
    if route.actions.is_empty() {
        s.push_str("ext-communities: none\n");
    }
    for a in &route.actions {
        let _ = writeln!(s, "ext-community: {} ({a})", ext_hex(a));
    }
    let key = RouteKey::FlowSpec(route.rule.clone());
    let attrs = RouteAttrs {
        ext_communities: route.ext_communities(),
        ..RouteAttrs::default()
    };
    match AdjRibOut::check(&key, &attrs) {
        Ok(()) => {
            for u in show_update(local_as, &key, &attrs) {
                let _ = writeln!(s, "update: {u}");
            }
        }
        Err(e) => {
            let _ = writeln!(s, "update: none ({e})");
        }
    }
    s
}

// ---------------------------------------------------------------------------------------------
// GoBGP

const GOBGP_TCP: [(u64, &str); 8] = [
    (0x01, "F"),
    (0x02, "S"),
    (0x04, "R"),
    (0x08, "P"),
    (0x10, "A"),
    (0x20, "U"),
    (0x40, "E"),
    (0x80, "C"),
];
const GOBGP_FRAG: [(u64, &str); 4] = [
    (FRAG_DF, "dont-fragment"),
    (FRAG_IS, "is-fragment"),
    (FRAG_FIRST, "first-fragment"),
    (FRAG_LAST, "last-fragment"),
];

/// Single-quotes a shell word that needs it.
fn shell_word(w: &str) -> String {
    if !w.is_empty()
        && w.chars()
            .all(|c| c.is_ascii_alphanumeric() || "./:_+-,".contains(c))
    {
        w.to_string()
    } else {
        format!("'{w}'")
    }
}

/// `gobgp global rib -a ipv4-flowspec add match ... then ...` (GoBGP 3.x CLI). Add `-p PORT` for
/// a daemon whose API is not on the default port.
pub fn to_gobgp(route: &FlowRoute) -> Result<String, Unsupported> {
    let mut gaps = Gaps::new("gobgp");
    let afi = route.rule.afi();
    let mut words: Vec<String> = ["gobgp", "global", "rib", "-a", family_name(afi), "add"]
        .map(String::from)
        .to_vec();
    words.push("match".into());
    for c in route.rule.components() {
        match c {
            Component::DestinationPrefix(p) | Component::SourcePrefix(p) => {
                prefix_offset_gap(&mut gaps, c, afi, p);
                let kw = if matches!(c, Component::DestinationPrefix(_)) {
                    "destination"
                } else {
                    "source"
                };
                words.push(kw.into());
                words.push(p.net.to_string());
            }
            Component::TcpFlags(ops) | Component::Fragment(ops) => {
                let tcp = matches!(c, Component::TcpFlags(_));
                words.push(if tcp { "tcp-flags" } else { "fragment" }.into());
                for term in bitmask_terms(ops) {
                    let mut w = String::new();
                    for (i, o) in term.iter().enumerate() {
                        if i > 0 {
                            w.push('&');
                        }
                        w.push_str(match test_of(o) {
                            Test::All => "=",
                            Test::None => "!",
                            Test::Any => "",
                            Test::NotAll => "!=",
                        });
                        if tcp {
                            let (names, rest) = flag_names(o.value, &GOBGP_TCP);
                            if o.value == 0 || rest != 0 {
                                gaps.add(format!(
                                    "tcp-flags value {:#x} (the gobgp CLI names only the flags F S R P A U E C, at least one)",
                                    o.value
                                ));
                            }
                            w.push_str(&names.concat());
                        } else if o.value == 0 {
                            w.push_str("not-a-fragment");
                        } else {
                            w.push_str(&flag_names(o.value, &GOBGP_FRAG).0.join("+"));
                        }
                    }
                    words.push(w);
                }
            }
            _ => {
                let kw = match c {
                    Component::Protocol(_) => "protocol",
                    Component::Port(_) => "port",
                    Component::DestinationPort(_) => "destination-port",
                    Component::SourcePort(_) => "source-port",
                    Component::IcmpType(_) => "icmp-type",
                    Component::IcmpCode(_) => "icmp-code",
                    Component::PacketLength(_) => "packet-length",
                    Component::Dscp(_) => "dscp",
                    _ => "label",
                };
                words.push(kw.into());
                for term in numeric_terms(c.numeric().unwrap_or_default()) {
                    let parts: Vec<String> = term
                        .iter()
                        .map(|o| {
                            let sym = match numeric_symbol(o) {
                                "=" => "==",
                                s => s,
                            };
                            format!("{sym}{}", o.value)
                        })
                        .collect();
                    words.push(parts.join("&"));
                }
            }
        }
    }
    let mut notes = Vec::new();
    if !route.actions.is_empty() {
        words.push("then".into());
    }
    for a in &route.actions {
        match *a {
            Action::TrafficRateBytes { asn: 0, rate: 0.0 } => {
                words.push("discard".into());
            }
            Action::TrafficRateBytes { asn, rate } => {
                words.push("rate-limit".into());
                words.push(format!("{rate}"));
                if asn != 0 {
                    words.push("as".into());
                    words.push(asn.to_string());
                }
            }
            Action::TrafficRatePackets { .. } => {
                gaps.add(format!(
                    "{a} (traffic-rate-packets; the gobgp CLI sets only traffic-rate-bytes)"
                ));
            }
            Action::TrafficAction { sample, terminal } => {
                // GoBGP calls the T bit "terminal"; RFC 8955 §7.3 says T set = continue.
                let word = match (sample, terminal) {
                    (false, false) => "terminal",
                    (true, true) => "sample",
                    (true, false) => "sample-terminal",
                    (false, true) => {
                        gaps.add(format!(
                            "{a} (all traffic-action flags clear; the gobgp CLI's `action` always sets sample or the T bit)"
                        ));
                        continue;
                    }
                };
                notes.push(
                    "# gobgp names the T bit \"terminal\"; RFC 8955 §7.3: T set means evaluation continues (deflect's `traffic-action continue`)".to_string(),
                );
                words.push("action".into());
                words.push(word.into());
            }
            Action::RedirectAs2 { asn, value } => {
                words.push("redirect".into());
                words.push(format!("{asn}:{value}"));
            }
            Action::RedirectIpv4 { ip, value } => {
                words.push("redirect".into());
                words.push(format!("{ip}:{value}"));
            }
            Action::RedirectAs4 { asn, value } => {
                // A dotted AS makes gobgp pick the 4-octet AS type, whatever the AS.
                words.push("redirect".into());
                words.push(format!("{}.{}:{value}", asn >> 16, asn & 0xffff));
            }
            Action::TrafficMarking { dscp } => {
                words.push("mark".into());
                words.push(dscp.to_string());
            }
        }
    }
    let mut s = String::new();
    for n in notes {
        s.push_str(&n);
        s.push('\n');
    }
    let line: Vec<String> = words.iter().map(|w| shell_word(w)).collect();
    s.push_str(&line.join(" "));
    s.push('\n');
    gaps.finish(s)
}

// ---------------------------------------------------------------------------------------------
// ExaBGP

const EXA_TCP: [(u64, &str); 9] = [
    (0x01, "fin"),
    (0x02, "syn"),
    (0x04, "rst"),
    (0x08, "push"),
    (0x10, "ack"),
    (0x20, "urg"),
    (0x40, "ece"),
    (0x80, "cwr"),
    (0x100, "ns"),
];

fn exabgp_protocol(v: u64) -> String {
    match v {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        _ => v.to_string(),
    }
}

/// A `flow { route NAME { match { ... } then { ... } } }` block (ExaBGP 4.x), to put in a
/// neighbor that has `family { ipv4 flow; ipv6 flow; }`.
pub fn to_exabgp(route: &FlowRoute, name: &str) -> Result<String, Unsupported> {
    let mut gaps = Gaps::new("exabgp");
    let afi = route.rule.afi();
    let comps = route.rule.components();
    if afi == Afi::Ipv6
        && !has(comps, |c| {
            matches!(
                c,
                Component::DestinationPrefix(_) | Component::SourcePrefix(_)
            )
        })
    {
        gaps.add(
            "an IPv6 rule without dst or src (ExaBGP takes a flow's family from its prefixes)",
        );
    }
    let mut m = Vec::new();
    for c in comps {
        match c {
            Component::DestinationPrefix(p) | Component::SourcePrefix(p) => {
                prefix_offset_gap(&mut gaps, c, afi, p);
                let kw = if matches!(c, Component::DestinationPrefix(_)) {
                    "destination"
                } else {
                    "source"
                };
                m.push(format!("{kw} {};", p.net));
            }
            Component::TcpFlags(ops) | Component::Fragment(ops) => {
                let tcp = matches!(c, Component::TcpFlags(_));
                let terms: Vec<String> = bitmask_terms(ops)
                    .iter()
                    .map(|term| {
                        term.iter()
                            .map(|o| {
                                let op = match test_of(o) {
                                    Test::All => "=",
                                    Test::None => "!",
                                    Test::Any => "",
                                    Test::NotAll => "!=",
                                };
                                let v = if o.value == 0 {
                                    if tcp { "0" } else { "not-a-fragment" }.to_string()
                                } else if tcp {
                                    let (mut names, rest) = flag_names(o.value, &EXA_TCP);
                                    let hex = format!("{rest:#x}");
                                    if rest != 0 {
                                        names.push(&hex);
                                    }
                                    names.join("+")
                                } else {
                                    flag_names(o.value, &GOBGP_FRAG).0.join("+")
                                };
                                format!("{op}{v}")
                            })
                            .collect::<Vec<_>>()
                            .join("&")
                    })
                    .collect();
                let kw = if tcp { "tcp-flags" } else { "fragment" };
                m.push(exabgp_list(kw, &terms));
            }
            _ => {
                let kw = match c {
                    Component::Protocol(_) if afi == Afi::Ipv6 => "next-header",
                    Component::Protocol(_) => "protocol",
                    Component::Port(_) => "port",
                    Component::DestinationPort(_) => "destination-port",
                    Component::SourcePort(_) => "source-port",
                    Component::IcmpType(_) => "icmp-type",
                    Component::IcmpCode(_) => "icmp-code",
                    Component::PacketLength(_) => "packet-length",
                    Component::Dscp(_) if afi == Afi::Ipv6 => "traffic-class",
                    Component::Dscp(_) => "dscp",
                    _ => "flow-label",
                };
                let proto = matches!(c, Component::Protocol(_));
                let terms: Vec<String> = numeric_terms(c.numeric().unwrap_or_default())
                    .iter()
                    .map(|term| {
                        term.iter()
                            .map(|o| {
                                let v = if proto {
                                    exabgp_protocol(o.value)
                                } else {
                                    o.value.to_string()
                                };
                                format!("{}{v}", numeric_symbol(o))
                            })
                            .collect::<Vec<_>>()
                            .join("&")
                    })
                    .collect();
                m.push(exabgp_list(kw, &terms));
            }
        }
    }
    let mut then = Vec::new();
    let mut raw: Vec<(String, String)> = Vec::new();
    for a in &route.actions {
        match *a {
            Action::TrafficRateBytes { asn: 0, rate: 0.0 } => then.push("discard;".into()),
            Action::TrafficRateBytes { asn: 0, rate }
                if rate > 0.0 && rate <= 1e12 && whole(rate).is_some() =>
            {
                then.push(format!("rate-limit {};", whole(rate).unwrap_or_default()));
            }
            Action::RedirectAs2 { asn, value } => then.push(format!("redirect {asn}:{value};")),
            Action::RedirectAs4 { .. } => gaps.add(format!(
                "{a} (ExaBGP 4.2 fails on 4-octet AS redirect communities, as `redirect` or as hex: maximum recursion depth exceeded)"
            )),
            Action::TrafficMarking { dscp } => then.push(format!("mark {dscp};")),
            // What ExaBGP has no keyword for (or spells ambiguously) goes as the raw community.
            _ => raw.push((a.to_string(), format!("0x{}", ext_hex(a)))),
        }
    }
    if !raw.is_empty() {
        let what: Vec<&str> = raw.iter().map(|(t, _)| t.as_str()).collect();
        let hex: Vec<&str> = raw.iter().map(|(_, h)| h.as_str()).collect();
        then.push(format!("# {}", what.join(", ")));
        then.push(format!("extended-community [ {} ];", hex.join(" ")));
    }
    if then.is_empty() {
        then.push("accept;".into());
    }
    let mut s = format!("flow {{\n    route {name} {{\n        match {{\n");
    for l in m {
        let _ = writeln!(s, "            {l}");
    }
    s.push_str("        }\n        then {\n");
    for l in then {
        let _ = writeln!(s, "            {l}");
    }
    s.push_str("        }\n    }\n}\n");
    gaps.finish(s)
}

fn exabgp_list(kw: &str, terms: &[String]) -> String {
    if terms.len() == 1 {
        format!("{kw} {};", terms[0])
    } else {
        format!("{kw} [ {} ];", terms.join(" "))
    }
}

// ---------------------------------------------------------------------------------------------
// BIRD

/// A `route flow4 { ... };` (or `flow6`) for a static protocol with a flow4 (flow6) channel, the
/// actions set as the exact extended communities (BIRD 2).
pub fn to_bird(route: &FlowRoute) -> Result<String, Unsupported> {
    let mut gaps = Gaps::new("bird");
    let afi = route.rule.afi();
    let mut parts = Vec::new();
    for c in route.rule.components() {
        let kw = match c {
            Component::DestinationPrefix(_) => "dst",
            Component::SourcePrefix(_) => "src",
            Component::Protocol(_) if afi == Afi::Ipv6 => "next header",
            Component::Protocol(_) => "proto",
            Component::Port(_) => "port",
            Component::DestinationPort(_) => "dport",
            Component::SourcePort(_) => "sport",
            Component::IcmpType(_) => "icmp type",
            Component::IcmpCode(_) => "icmp code",
            Component::TcpFlags(_) => "tcp flags",
            Component::PacketLength(_) => "length",
            Component::Dscp(_) => "dscp",
            Component::Fragment(_) => "fragment",
            Component::FlowLabel(_) => "label",
        };
        let value = match c {
            Component::DestinationPrefix(p) | Component::SourcePrefix(p) => {
                prefix_offset_gap(&mut gaps, c, afi, p);
                p.net.to_string()
            }
            Component::TcpFlags(ops) => bird_tcp_flags(ops, &mut gaps),
            Component::Fragment(ops) => bird_fragment(ops, &mut gaps),
            _ => {
                let ops = c.numeric().unwrap_or_default();
                if let Some(o) = ops.iter().find(|o| o.value > 0xffff) {
                    gaps.add(format!(
                        "{} value {} (BIRD 2's config writes at most 2 value octets and would truncate it)",
                        c.keyword(afi),
                        o.value
                    ));
                }
                bird_numeric(ops)
            }
        };
        parts.push(format!("{kw} {value};"));
    }
    let family = if afi == Afi::Ipv4 { "flow4" } else { "flow6" };
    let mut s = format!(
        "# in a static protocol with a {family} channel\nroute {family} {{ {} }}",
        parts.join(" ")
    );
    if route.actions.is_empty() {
        s.push_str(";\n");
    } else {
        s.push_str(" {\n");
        for a in &route.actions {
            let b = a.to_ext_community().0;
            let hi = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
            let lo = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            let _ = writeln!(
                s,
                "\tbgp_ext_community.add((generic, {hi:#x}, {lo:#x}));  # {a}"
            );
        }
        s.push_str("};\n");
    }
    gaps.finish(s)
}

/// BIRD's numeric match: `80,443`, `1024..65535`, `>= 512 && <= 1000 || 8080`. A range or bare
/// value may follow only `,` or `||`; after `&&` every condition needs its operator.
fn bird_numeric(ops: &[NumericOp]) -> String {
    let mut s = String::new();
    let mut after_ext = false;
    for (i, term) in numeric_terms(ops).iter().enumerate() {
        let range =
            term.len() >= 2 && numeric_symbol(&term[0]) == ">=" && numeric_symbol(&term[1]) == "<=";
        let first_ext = range || numeric_symbol(&term[0]) == "=";
        if i > 0 {
            s.push_str(if after_ext && first_ext { "," } else { " || " });
        }
        let rest = if range {
            let _ = write!(s, "{}..{}", term[0].value, term[1].value);
            &term[2..]
        } else if first_ext {
            let _ = write!(s, "{}", term[0].value);
            &term[1..]
        } else {
            let _ = write!(s, "{} {}", numeric_symbol(&term[0]), term[0].value);
            &term[1..]
        };
        for o in rest {
            let _ = write!(s, " && {} {}", numeric_symbol(o), o.value);
        }
        after_ext = first_ext && rest.is_empty();
    }
    s
}

/// `[!]value/mask` per test: all of F `F/F`, none `0/F`, any `!0/F`, not all `!F/F`.
fn bird_tcp_flags(ops: &[BitmaskOp], gaps: &mut Gaps) -> String {
    let mut s = String::new();
    for (i, o) in ops.iter().enumerate() {
        if i > 0 {
            s.push_str(if o.and { " && " } else { " || " });
        }
        if o.value == 0 || o.value > 0xfff {
            gaps.add(format!(
                "tcp-flags value {:#x} (BIRD takes a mask of 0x1 to 0xfff)",
                o.value
            ));
        }
        let m = o.value;
        let _ = match test_of(o) {
            Test::All => write!(s, "{m:#x}/{m:#x}"),
            Test::None => write!(s, "0x0/{m:#x}"),
            Test::Any => write!(s, "!0x0/{m:#x}"),
            Test::NotAll => write!(s, "!{m:#x}/{m:#x}"),
        };
    }
    s
}

/// `is_fragment && !last_fragment || dont_fragment`: BIRD writes one flag per test, "all of" or
/// (with `!`) "none of".
fn bird_fragment(ops: &[BitmaskOp], gaps: &mut Gaps) -> String {
    let mut s = String::new();
    for (i, o) in ops.iter().enumerate() {
        if i > 0 {
            s.push_str(if o.and { " && " } else { " || " });
        }
        let name = match o.value {
            FRAG_DF => "dont_fragment",
            FRAG_IS => "is_fragment",
            FRAG_FIRST => "first_fragment",
            FRAG_LAST => "last_fragment",
            _ => "",
        };
        let neg = match test_of(o) {
            Test::All => "",
            Test::None => "!",
            _ => "?",
        };
        if name.is_empty() || neg == "?" {
            gaps.add(format!(
                "fragment test {} (BIRD's fragment syntax tests one flag, set or clear: write the flags as separate tests)",
                fragment_text(o)
            ));
        }
        let _ = write!(s, "{neg}{name}");
    }
    s
}

fn fragment_text(o: &BitmaskOp) -> String {
    let prefix = match test_of(o) {
        Test::All => "",
        Test::None => "!~",
        Test::Any => "~",
        Test::NotAll => "!=",
    };
    let names: [(u64, &str); 4] = [
        (FRAG_DF, "df"),
        (FRAG_IS, "is-frag"),
        (FRAG_FIRST, "first-frag"),
        (FRAG_LAST, "last-frag"),
    ];
    let (n, _) = flag_names(o.value, &names);
    if n.is_empty() {
        format!("{prefix}{:#x}", o.value)
    } else {
        format!("{prefix}{}", n.join("+"))
    }
}

// ---------------------------------------------------------------------------------------------
// Junos

fn value_list(r: &[(u64, u64)], sep: &str) -> Vec<String> {
    r.iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}{sep}{b}")
            }
        })
        .collect()
}

const JUNOS_TCP: [(u64, &str); 6] = [
    (0x01, "fin"),
    (0x02, "syn"),
    (0x04, "rst"),
    (0x08, "push"),
    (0x10, "ack"),
    (0x20, "urgent"),
];

/// A Junos bit-field expression for TCP flags: `syn & !ack`, `(syn | ack)`.
fn junos_tcp_flags(ops: &[BitmaskOp], gaps: &mut Gaps) -> String {
    let name = |b: u64| -> String {
        match JUNOS_TCP.iter().find(|(bit, _)| *bit == b) {
            Some((_, n)) => (*n).to_string(),
            None => format!("{b:#x}"),
        }
    };
    let terms = bitmask_terms(ops);
    let many = terms.len() > 1;
    let mut out = Vec::new();
    for term in &terms {
        let mut parts = Vec::new();
        for o in term.iter() {
            if o.value > 0xff {
                gaps.add(format!(
                    "tcp-flags value {:#x} (beyond the 8 TCP flags)",
                    o.value
                ));
            }
            let bits: Vec<String> = bits_of(o.value).map(name).collect();
            if bits.is_empty() {
                continue;
            }
            let neg: Vec<String> = bits.iter().map(|b| format!("!{b}")).collect();
            match test_of(o) {
                Test::All => parts.push(bits.join(" & ")),
                Test::None => parts.push(neg.join(" & ")),
                Test::Any if bits.len() == 1 => parts.push(bits.join("")),
                Test::Any => parts.push(format!("({})", bits.join(" | "))),
                Test::NotAll if bits.len() == 1 => parts.push(neg.join("")),
                Test::NotAll => parts.push(format!("({})", neg.join(" | "))),
            }
        }
        let t = parts.join(" & ");
        out.push(if many && (parts.len() > 1 || t.contains(" & ")) {
            format!("({t})")
        } else {
            t
        });
    }
    out.join(" | ")
}

/// One flag per alternative, "all of" it, or `not-a-fragment` for "none of is-fragment".
fn fragment_keywords(ops: &[BitmaskOp], gaps: &mut Gaps, target: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    for term in bitmask_terms(ops) {
        let kw = match (term, term.first().map(test_of)) {
            ([o], Some(Test::All)) | ([o], Some(Test::Any)) => match o.value {
                FRAG_DF => Some("dont-fragment"),
                FRAG_IS => Some("is-fragment"),
                FRAG_FIRST => Some("first-fragment"),
                FRAG_LAST => Some("last-fragment"),
                _ => None,
            },
            ([o], Some(Test::None)) | ([o], Some(Test::NotAll)) if o.value == FRAG_IS => {
                Some("not-a-fragment")
            }
            _ => None,
        };
        match kw {
            Some(k) => out.push(k),
            None => {
                let text: Vec<String> = term.iter().map(fragment_text).collect();
                gaps.add(format!(
                    "fragment {} ({target} lists fragment types, each one flag)",
                    text.join("&")
                ));
            }
        }
    }
    out
}

/// `set routing-options flow route NAME match ... / then ...` (inet6 rules under
/// `routing-options rib inet6.0 flow route`).
pub fn to_junos(route: &FlowRoute, name: &str) -> Result<String, Unsupported> {
    let mut gaps = Gaps::new("junos");
    let afi = route.rule.afi();
    let base = match afi {
        Afi::Ipv4 => format!("set routing-options flow route {name}"),
        Afi::Ipv6 => format!("set routing-options rib inet6.0 flow route {name}"),
    };
    let mut lines = Vec::new();
    let mut comments = Vec::new();
    for c in route.rule.components() {
        let m = |what: String| format!("{base} match {what}");
        match c {
            Component::DestinationPrefix(p) | Component::SourcePrefix(p) => {
                prefix_offset_gap(&mut gaps, c, afi, p);
                let kw = if matches!(c, Component::DestinationPrefix(_)) {
                    "destination"
                } else {
                    "source"
                };
                lines.push(m(format!("{kw} {}", p.net)));
            }
            // A test of no flags matches every packet: nothing to say.
            Component::TcpFlags(ops) | Component::Fragment(ops) if bitmask_always(ops) => {}
            Component::TcpFlags(ops) => {
                let e = junos_tcp_flags(ops, &mut gaps);
                lines.push(m(format!("tcp-flags \"{e}\"")));
            }
            Component::Fragment(ops) => {
                for k in fragment_keywords(ops, &mut gaps, "junos") {
                    lines.push(m(format!("fragment {k}")));
                }
            }
            Component::FlowLabel(_) => {
                gaps.add("flow-label (Junos flow routes have no flow-label match)");
            }
            _ => {
                let kw = match c {
                    Component::Protocol(_) => "protocol",
                    Component::Port(_) => "port",
                    Component::DestinationPort(_) => "destination-port",
                    Component::SourcePort(_) => "source-port",
                    Component::IcmpType(_) => "icmp-type",
                    Component::IcmpCode(_) => "icmp-code",
                    Component::PacketLength(_) => "packet-length",
                    _ => "dscp",
                };
                let r = ranges_of(c.numeric().unwrap_or_default(), c.field_max());
                for v in value_list(&r, "-") {
                    lines.push(m(format!("{kw} {v}")));
                }
            }
        }
    }
    let mut then = Vec::new();
    for a in &route.actions {
        match *a {
            Action::TrafficRateBytes { asn: 0, rate: 0.0 } => then.push("discard".into()),
            Action::TrafficRateBytes { asn: 0, rate } => match whole(rate * 8.0) {
                Some(bits) => then.push(format!("rate-limit {bits}")),
                None => gaps.add(format!(
                    "{a} (Junos takes rate-limit in whole bits per second)"
                )),
            },
            Action::TrafficRateBytes { .. } => {
                gaps.add(format!(
                    "{a} (Junos sets no AS in the traffic-rate community)"
                ));
            }
            Action::TrafficRatePackets { .. } => {
                gaps.add(format!(
                    "{a} (traffic-rate-packets; Junos flow routes rate-limit in bits per second)"
                ));
            }
            Action::TrafficAction { sample, terminal } => {
                if sample {
                    then.push("sample".into());
                }
                if !terminal {
                    then.push("next-term".into());
                } else if !sample {
                    comments.push(format!(
                        "# {a}: Junos's default (a flow route is terminal unless it says next-term)"
                    ));
                }
            }
            Action::RedirectAs2 { asn, value } => {
                then.push(format!("routing-instance target:{asn}:{value}"));
            }
            Action::RedirectIpv4 { ip, value } => {
                then.push(format!("routing-instance target:{ip}:{value}"));
            }
            Action::RedirectAs4 { asn, value } => {
                then.push(format!("routing-instance target:{asn}L:{value}"));
            }
            Action::TrafficMarking { dscp } => then.push(format!("mark {dscp}")),
        }
    }
    if route.actions.is_empty() {
        then.push("accept".into());
    }
    for t in then {
        lines.push(format!("{base} then {t}"));
    }
    let mut s = String::new();
    for l in comments.iter().chain(lines.iter()) {
        s.push_str(l);
        s.push('\n');
    }
    gaps.finish(s)
}

// ---------------------------------------------------------------------------------------------
// IOS-XR

/// A `class-map type traffic`, a `policy-map type pbr` with the actions, and the `flowspec`
/// service-policy that originates it.
pub fn to_iosxr(route: &FlowRoute, name: &str) -> Result<String, Unsupported> {
    let mut gaps = Gaps::new("iosxr");
    let afi = route.rule.afi();
    let fam = if afi == Afi::Ipv4 { "ipv4" } else { "ipv6" };
    let mut s = format!("class-map type traffic match-all {name}\n");
    for c in route.rule.components() {
        match c {
            Component::DestinationPrefix(p) | Component::SourcePrefix(p) => {
                prefix_offset_gap(&mut gaps, c, afi, p);
                let kw = if matches!(c, Component::DestinationPrefix(_)) {
                    "destination-address"
                } else {
                    "source-address"
                };
                let _ = writeln!(s, " match {kw} {fam} {}", p.net);
            }
            Component::Port(_) => gaps.add(
                "port (source or destination; IOS-XR class-maps match destination-port and source-port only)",
            ),
            Component::FlowLabel(_) => {
                gaps.add("flow-label (IOS-XR flowspec class-maps have no flow-label match)");
            }
            Component::TcpFlags(ops) | Component::Fragment(ops) if bitmask_always(ops) => {}
            Component::TcpFlags(ops) => {
                let terms = bitmask_terms(ops);
                let mut required = 0;
                let mut forbidden = 0;
                let mut ok = terms.len() == 1;
                for o in terms.iter().flat_map(|t| t.iter()) {
                    match test_of(o) {
                        Test::All => required |= o.value,
                        Test::None => forbidden |= o.value,
                        _ => ok = false,
                    }
                }
                if ok {
                    let _ = writeln!(
                        s,
                        " match tcp-flag {required:#04x} bit-mask {:#04x}",
                        required | forbidden
                    );
                } else {
                    gaps.add(format!(
                        "tcp-flags {} (IOS-XR matches one value under one mask: flags set and clear, AND-ed)",
                        junos_tcp_flags(ops, &mut Gaps::new("iosxr"))
                    ));
                }
            }
            Component::Fragment(ops) => {
                let kws = fragment_keywords(ops, &mut gaps, "iosxr");
                if kws.contains(&"not-a-fragment") {
                    gaps.add("fragment !~is-frag (IOS-XR lists fragment types that are set)");
                } else if !kws.is_empty() {
                    let _ = writeln!(s, " match fragment-type {}", kws.join(" "));
                }
            }
            _ => {
                let kw = match c {
                    Component::Protocol(_) => "protocol".to_string(),
                    Component::DestinationPort(_) => "destination-port".into(),
                    Component::SourcePort(_) => "source-port".into(),
                    Component::IcmpType(_) => format!("{fam} icmp-type"),
                    Component::IcmpCode(_) => format!("{fam} icmp-code"),
                    Component::PacketLength(_) => "packet length".into(),
                    _ => "dscp".into(),
                };
                let r = ranges_of(c.numeric().unwrap_or_default(), c.field_max());
                let _ = writeln!(s, " match {kw} {}", value_list(&r, "-").join(" "));
            }
        }
    }
    s.push_str(" end-class-map\n!\n");
    let _ = write!(
        s,
        "policy-map type pbr {name}\n class type traffic {name}\n"
    );
    for a in &route.actions {
        match *a {
            Action::TrafficRateBytes { asn: 0, rate: 0.0 } => s.push_str("  drop\n"),
            Action::TrafficRateBytes { asn: 0, rate } => match whole(rate * 8.0) {
                Some(bits) => {
                    let _ = writeln!(s, "  police rate {bits} bps");
                }
                None => gaps.add(format!("{a} (IOS-XR polices in whole bits per second)")),
            },
            Action::TrafficRateBytes { .. } => {
                gaps.add(format!(
                    "{a} (IOS-XR sets no AS in the traffic-rate community)"
                ));
            }
            Action::TrafficRatePackets { .. } => gaps.add(format!(
                "{a} (traffic-rate-packets; IOS-XR flowspec polices in bits per second)"
            )),
            Action::TrafficAction {
                sample: false,
                terminal: true,
            } => {
                let _ = writeln!(s, "  ! {a}: IOS-XR's default");
            }
            Action::TrafficAction { .. } => gaps.add(format!(
                "{a} (IOS-XR flowspec policies have no sample or non-terminal action)"
            )),
            Action::RedirectAs2 { .. }
            | Action::RedirectIpv4 { .. }
            | Action::RedirectAs4 { .. } => {
                gaps.add(format!(
                    "{a} (IOS-XR redirects to a VRF by name, `redirect vrf NAME`, not to a route target)"
                ));
            }
            Action::TrafficMarking { dscp } => {
                let _ = writeln!(s, "  set dscp {dscp}");
            }
        }
    }
    if route.actions.is_empty() {
        s.push_str("  transmit\n");
    }
    let _ = write!(
        s,
        " !\n class type traffic class-default\n !\n end-policy-map\n!\nflowspec\n address-family {fam}\n  service-policy type pbr {name}\n !\n!\n"
    );
    gaps.finish(s)
}

// ---------------------------------------------------------------------------------------------
// Host-local filters: shared pieces

/// A conjunction of match expressions; several of them are alternatives (separate rules).
type Conj = Vec<String>;

fn product(a: &[Conj], b: &[Conj]) -> Vec<Conj> {
    let mut out = Vec::new();
    for x in a {
        for y in b {
            let mut c = x.clone();
            for e in y {
                if !c.contains(e) {
                    c.push(e.clone());
                }
            }
            out.push(c);
        }
    }
    out
}

/// Most rules one deflect rule may become.
const MAX_RULES: usize = 32;

/// What the actions ask of a host-local filter.
#[derive(Debug, Default)]
struct HostActions {
    discard: bool,
    rate_bytes: Option<f32>,
    rate_packets: Option<f32>,
    mark: Option<u8>,
    sample: bool,
    notes: Vec<String>,
}

fn host_actions(route: &FlowRoute, gaps: &mut Gaps) -> HostActions {
    let mut h = HostActions::default();
    for a in &route.actions {
        match *a {
            Action::TrafficRateBytes { rate: 0.0, .. } => h.discard = true,
            Action::TrafficRateBytes { rate, .. } => h.rate_bytes = Some(rate),
            Action::TrafficRatePackets { rate: 0.0, .. } => h.discard = true,
            Action::TrafficRatePackets { rate, .. } => h.rate_packets = Some(rate),
            Action::TrafficAction { sample, .. } => {
                h.sample |= sample;
                h.notes.push(format!(
                    "# {a}: the terminal bit orders FlowSpec rules on a router; a host filter evaluates its own rule order"
                ));
            }
            Action::RedirectAs2 { .. }
            | Action::RedirectIpv4 { .. }
            | Action::RedirectAs4 { .. } => {
                gaps.add(format!(
                    "{a} (a redirect to a VRF is a router's forwarding decision)"
                ));
            }
            Action::TrafficMarking { dscp } => h.mark = Some(dscp),
        }
    }
    if h.discard {
        h.rate_bytes = None;
        h.rate_packets = None;
    }
    if h.rate_bytes.is_some() && h.rate_packets.is_some() {
        gaps.add("rate-bytes and rate-packets together (one rule drops over one rate)");
    }
    h
}

// ---------------------------------------------------------------------------------------------
// nftables

/// An nft value, range or anonymous set, its numbers spelled by `num`.
fn nft_set(r: &[(u64, u64)], num: impl Fn(u64) -> String) -> String {
    nft_items(r, &num, &num)
}

/// Protocols: single values by name, ranges by number.
fn nft_proto_set(r: &[(u64, u64)]) -> String {
    nft_items(r, &nft_protocol, &|v: u64| v.to_string())
}

fn nft_items(
    r: &[(u64, u64)],
    single: &dyn Fn(u64) -> String,
    bound: &dyn Fn(u64) -> String,
) -> String {
    let items: Vec<String> = r
        .iter()
        .map(|&(a, b)| {
            if a == b {
                single(a)
            } else {
                format!("{}-{}", bound(a), bound(b))
            }
        })
        .collect();
    if items.len() == 1 {
        items[0].clone()
    } else {
        format!("{{ {} }}", items.join(", "))
    }
}

fn nft_protocol(v: u64) -> String {
    match v {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "ipv6-icmp".into(),
        132 => "sctp".into(),
        _ => v.to_string(),
    }
}

const NFT_TCP: [(u64, &str); 8] = [
    (0x01, "fin"),
    (0x02, "syn"),
    (0x04, "rst"),
    (0x08, "psh"),
    (0x10, "ack"),
    (0x20, "urg"),
    (0x40, "ecn"),
    (0x80, "cwr"),
];

fn nft_flags(value: u64) -> String {
    let (names, _) = flag_names(value, &NFT_TCP);
    if names.len() == 1 {
        names[0].to_string()
    } else {
        format!("({})", names.join(" | "))
    }
}

/// TCP flags: one AND-term as direct tests, several as the set of flag values they admit under
/// the mask of every flag they test.
fn nft_tcp_flags(ops: &[BitmaskOp], gaps: &mut Gaps) -> Conj {
    if let Some(o) = ops.iter().find(|o| o.value > 0xff) {
        gaps.add(format!(
            "tcp-flags value {:#x} (nft names the 8 flags fin to cwr)",
            o.value
        ));
        return Vec::new();
    }
    if bitmask_always(ops) {
        return Vec::new();
    }
    let terms = bitmask_terms(ops);
    if terms.len() == 1 {
        return terms[0]
            .iter()
            .filter(|o| o.value != 0)
            .map(|o| {
                let f = nft_flags(o.value);
                match test_of(o) {
                    Test::All => format!("tcp flags & {f} == {f}"),
                    Test::None => format!("tcp flags & {f} == 0"),
                    Test::Any => format!("tcp flags & {f} != 0"),
                    Test::NotAll => format!("tcp flags & {f} != {f}"),
                }
            })
            .collect();
    }
    let mask = ops.iter().fold(0, |m, o| m | o.value);
    let values: Vec<String> = (0..=0xffu64)
        .filter(|v| v & !mask == 0 && bitmask_matches(ops, *v))
        .map(|v| {
            if v == 0 {
                "0x0".to_string()
            } else {
                flag_names(v, &NFT_TCP).0.join(" | ")
            }
        })
        .collect();
    vec![format!(
        "tcp flags & {} {{ {} }}",
        nft_flags(mask),
        values.join(", ")
    )]
}

fn nft_fragment(afi: Afi, ops: &[BitmaskOp], gaps: &mut Gaps) -> Vec<Conj> {
    match afi {
        Afi::Ipv4 => {
            let r = frag4_ranges(ops);
            if r == [(0, 0x7fff)] {
                vec![vec![]]
            } else if r.is_empty() {
                gaps.add("fragment (no IPv4 packet has these fragment bits)");
                vec![vec![]]
            } else {
                vec![vec![format!(
                    "ip frag-off & 0x7fff {}",
                    nft_set(&r, |v| format!("{v:#x}"))
                )]]
            }
        }
        Afi::Ipv6 => {
            let states = frag6_states(ops);
            let headers: Vec<(bool, bool)> = states
                .iter()
                .filter_map(|s| match *s {
                    Frag6::Header { mf, offset_zero } => Some((mf, offset_zero)),
                    Frag6::Missing => None,
                })
                .collect();
            let missing = states.contains(&Frag6::Missing);
            if missing && headers.len() == 4 {
                return vec![vec![]];
            }
            let mut alts: Vec<Conj> = Vec::new();
            if missing {
                alts.push(vec!["exthdr frag missing".into()]);
            }
            alts.extend(frag6_header_alts(
                &headers,
                |mf| format!("frag more-fragments {}", u8::from(mf)),
                |zero| {
                    if zero {
                        "frag frag-off 0"
                    } else {
                        "frag frag-off != 0"
                    }
                    .to_string()
                },
                "exthdr frag exists",
            ));
            if alts.is_empty() {
                gaps.add("fragment (no IPv6 packet has these fragment bits)");
                alts.push(vec![]);
            }
            alts
        }
    }
}

/// Alternatives for the fragment-header states `(mf, offset_zero)` present: a test of MF and of
/// the offset each, merged where both values of one of them are present.
fn frag6_header_alts(
    headers: &[(bool, bool)],
    mf_test: impl Fn(bool) -> String,
    offset_test: impl Fn(bool) -> String,
    exists: &str,
) -> Vec<Conj> {
    if headers.len() == 4 {
        return vec![vec![exists.to_string()]];
    }
    let mut alts = Vec::new();
    let mut done: Vec<(bool, bool)> = Vec::new();
    for &(mf, zero) in headers {
        if done.contains(&(mf, zero)) {
            continue;
        }
        if headers.contains(&(!mf, zero)) {
            alts.push(vec![offset_test(zero)]);
            done.extend([(mf, zero), (!mf, zero)]);
        } else if headers.contains(&(mf, !zero)) {
            alts.push(vec![mf_test(mf)]);
            done.extend([(mf, zero), (mf, !zero)]);
        } else {
            alts.push(vec![offset_test(zero), mf_test(mf)]);
            done.push((mf, zero));
        }
    }
    alts
}

fn ipv6_offset_mask(p: &Prefix) -> (Ipv6Addr, Ipv6Addr) {
    let len = u32::from(p.net.prefix_len());
    let off = u32::from(p.offset);
    let ones = |n: u32| {
        if n == 0 {
            0u128
        } else {
            u128::MAX << (128 - n)
        }
    };
    let mask = ones(len) & !ones(off);
    let addr = match p.net.addr() {
        std::net::IpAddr::V6(a) => u128::from(a) & mask,
        std::net::IpAddr::V4(_) => 0,
    };
    (Ipv6Addr::from(addr), Ipv6Addr::from(mask))
}

/// `nft 'add rule inet filter input ...'` lines for a host-local drop or rate limit (table
/// `inet filter`, chain `input`).
pub fn to_nftables(route: &FlowRoute, name: &str) -> Result<String, Unsupported> {
    let mut gaps = Gaps::new("nftables");
    let afi = route.rule.afi();
    let ip = if afi == Afi::Ipv4 { "ip" } else { "ip6" };
    let comps = route.rule.components();
    let mut notes: Vec<String> = Vec::new();
    let mut alts: Vec<Conj> = vec![vec![]];
    let add = |alts: &mut Vec<Conj>, more: Vec<Conj>| *alts = product(alts, &more);
    // Addresses first, then the family and protocol, then the rest in type order.
    let mut any_prefix = false;
    for c in comps {
        if let Component::DestinationPrefix(p) | Component::SourcePrefix(p) = c {
            any_prefix = true;
            let dir = if matches!(c, Component::DestinationPrefix(_)) {
                "daddr"
            } else {
                "saddr"
            };
            let e = if p.offset == 0 {
                format!("{ip} {dir} {}", p.net)
            } else {
                let (addr, mask) = ipv6_offset_mask(p);
                format!("ip6 {dir} & {mask} == {addr}")
            };
            add(&mut alts, vec![vec![e]]);
        }
    }
    if !any_prefix {
        let fam = if afi == Afi::Ipv4 { "ipv4" } else { "ipv6" };
        add(&mut alts, vec![vec![format!("meta nfproto {fam}")]]);
    }
    match protocol_ranges(route) {
        Ok(Some(r)) => add(
            &mut alts,
            vec![vec![format!("meta l4proto {}", nft_proto_set(&r))]],
        ),
        Ok(None) => {}
        Err(e) => gaps.add(e),
    }
    for c in comps {
        let set = |c: &Component| {
            nft_set(
                &ranges_of(c.numeric().unwrap_or_default(), c.field_max()),
                |v| v.to_string(),
            )
        };
        let more: Vec<Conj> = match c {
            Component::DestinationPrefix(_)
            | Component::SourcePrefix(_)
            | Component::Protocol(_) => continue,
            Component::TcpFlags(ops) | Component::Fragment(ops) if bitmask_always(ops) => continue,
            Component::Port(_) => {
                let s = set(c);
                notes.push(
                    "# port (source or destination) needs two rules, one per direction".into(),
                );
                vec![vec![format!("th sport {s}")], vec![format!("th dport {s}")]]
            }
            Component::DestinationPort(_) => vec![vec![format!("th dport {}", set(c))]],
            Component::SourcePort(_) => vec![vec![format!("th sport {}", set(c))]],
            Component::IcmpType(_) | Component::IcmpCode(_) => {
                let proto = if afi == Afi::Ipv4 { "icmp" } else { "icmpv6" };
                let field = if matches!(c, Component::IcmpType(_)) {
                    "type"
                } else {
                    "code"
                };
                vec![vec![format!("{proto} {field} {}", set(c))]]
            }
            Component::TcpFlags(ops) => vec![nft_tcp_flags(ops, &mut gaps)],
            Component::PacketLength(_) => {
                notes.push("# approximate: meta length is the packet as this host sees it (GRO can merge TCP segments into one longer packet)".into());
                vec![vec![format!("meta length {}", set(c))]]
            }
            Component::Dscp(_) => vec![vec![format!("{ip} dscp {}", set(c))]],
            Component::Fragment(ops) => {
                notes.push("# approximate: with conntrack loaded the kernel reassembles fragments before the input hook".into());
                nft_fragment(afi, ops, &mut gaps)
            }
            Component::FlowLabel(_) => vec![vec![format!("ip6 flowlabel {}", set(c))]],
        };
        add(&mut alts, more);
    }
    if alts.len() > MAX_RULES {
        gaps.add(format!("the rule would need {} nft rules", alts.len()));
    }
    let h = host_actions(route, &mut gaps);
    notes.extend(h.notes.iter().cloned());
    let mut stmts = Vec::new();
    if let Some(d) = h.mark {
        stmts.push(format!("{ip} dscp set {d}"));
    }
    if h.sample {
        notes.push("# approximate: sampling becomes logging every matching packet".into());
        stmts.push(format!("log prefix \"{name}: \""));
    }
    let limited = h.rate_bytes.is_some() || h.rate_packets.is_some();
    if h.discard {
        stmts.push("drop".into());
    } else if let Some(r) = h.rate_bytes {
        let n = (r.round() as u64).max(1);
        if whole(r).is_none() {
            notes.push(format!(
                "# approximate: {r} bytes/s rounded to {n} (nft limits take whole numbers)"
            ));
        }
        stmts.push(format!("limit rate over {n} bytes/second drop"));
    } else if let Some(r) = h.rate_packets {
        let n = (r.round() as u64).max(1);
        if whole(r).is_none() {
            notes.push(format!(
                "# approximate: {r} packets/s rounded to {n} (nft limits take whole numbers)"
            ));
        }
        stmts.push(format!("limit rate over {n}/second drop"));
    } else {
        notes.push("# no discard or rate action: the rule only counts".into());
        stmts.push("counter".into());
    }
    if limited && alts.len() > 1 {
        notes.push(format!(
            "# approximate: each of the {} rules has its own limiter",
            alts.len()
        ));
    }
    let mut s = String::from(
        "# in table inet filter, chain input: nft add table inet filter; nft add chain inet filter input '{ type filter hook input priority 0; }'\n",
    );
    for n in notes {
        s.push_str(&n);
        s.push('\n');
    }
    for conj in &alts {
        let mut words = conj.clone();
        words.extend(stmts.iter().cloned());
        let _ = writeln!(s, "nft 'add rule inet filter input {}'", words.join(" "));
    }
    gaps.finish(s)
}

// ---------------------------------------------------------------------------------------------
// iptables / ip6tables

fn ipt_protocol(v: u64, afi: Afi) -> String {
    match (v, afi) {
        (1, Afi::Ipv4) => "icmp".into(),
        (6, _) => "tcp".into(),
        (17, _) => "udp".into(),
        (58, Afi::Ipv6) => "ipv6-icmp".into(),
        (132, _) => "sctp".into(),
        _ => v.to_string(),
    }
}

/// A u32 value list (`a:b,c`), at most 10 ranges.
fn u32_values(r: &[(u64, u64)]) -> Option<String> {
    (r.len() <= 10).then(|| {
        r.iter()
            .map(|&(a, b)| {
                if a == b {
                    format!("{a:#x}")
                } else {
                    format!("{a:#x}:{b:#x}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// `--dports`-style lists of at most 15 ports (a range counts 2), several when longer.
fn multiport_chunks(r: &[(u64, u64)]) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut slots = 0;
    for &(a, b) in r {
        let (item, n) = if a == b {
            (a.to_string(), 1)
        } else {
            (format!("{a}:{b}"), 2)
        };
        if slots + n > 15 {
            chunks.push(cur.join(","));
            cur.clear();
            slots = 0;
        }
        cur.push(item);
        slots += n;
    }
    if !cur.is_empty() {
        chunks.push(cur.join(","));
    }
    chunks
}

/// Matches for ports: `--dport 80`, `--dport 1024:65535`, `-m multiport --dports 80,443`.
fn ipt_ports(kind: &str, r: &[(u64, u64)]) -> Vec<Conj> {
    if !kind.is_empty() && r.len() == 1 {
        let (a, b) = r[0];
        let v = if a == b {
            a.to_string()
        } else {
            format!("{a}:{b}")
        };
        return vec![vec![format!("--{kind}port {v}")]];
    }
    multiport_chunks(r)
        .into_iter()
        .map(|list| vec![format!("-m multiport --{kind}ports {list}")])
        .collect()
}

const IPT_TCP: [(u64, &str); 6] = [
    (0x01, "FIN"),
    (0x02, "SYN"),
    (0x04, "RST"),
    (0x08, "PSH"),
    (0x10, "ACK"),
    (0x20, "URG"),
];

fn ipt_flags(v: u64) -> String {
    if v == 0 {
        "NONE".into()
    } else {
        flag_names(v, &IPT_TCP).0.join(",")
    }
}

/// `--tcp-flags MASK COMP` alternatives: each AND-term as (required, forbidden) bits, with "any"
/// and "not all" tests split into disjoint cases (bit 1 set; bit 1 clear and bit 2 set; ...).
fn ipt_tcp_flags(ops: &[BitmaskOp], gaps: &mut Gaps) -> Vec<Conj> {
    if let Some(o) = ops.iter().find(|o| o.value > 0x3f) {
        gaps.add(format!(
            "tcp-flags value {:#x} (iptables names FIN SYN RST PSH ACK URG only)",
            o.value
        ));
        return vec![vec![]];
    }
    if let [o] = ops {
        let f = ipt_flags(o.value);
        let single = match test_of(o) {
            Test::Any if o.value != 0 => Some(format!("! --tcp-flags {f} NONE")),
            Test::NotAll if o.value != 0 => Some(format!("! --tcp-flags {f} {f}")),
            _ => None,
        };
        if let Some(s) = single {
            return vec![vec![s]];
        }
    }
    let mut out: Vec<(u64, u64)> = Vec::new();
    for term in bitmask_terms(ops) {
        let mut cases: Vec<(u64, u64)> = vec![(0, 0)];
        for o in term {
            let mut next = Vec::new();
            for &(req, forb) in &cases {
                match test_of(o) {
                    Test::All => next.push((req | o.value, forb)),
                    Test::None => next.push((req, forb | o.value)),
                    Test::Any | Test::NotAll => {
                        let any = test_of(o) == Test::Any;
                        let mut before = 0;
                        for b in bits_of(o.value) {
                            next.push(if any {
                                (req | b, forb | before)
                            } else {
                                (req | before, forb | b)
                            });
                            before |= b;
                        }
                    }
                }
            }
            cases = next;
        }
        for c in cases {
            if c.0 & c.1 == 0 && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out.into_iter()
        .map(|(req, forb)| {
            if req | forb == 0 {
                vec![]
            } else {
                vec![format!(
                    "--tcp-flags {} {}",
                    ipt_flags(req | forb),
                    ipt_flags(req)
                )]
            }
        })
        .collect()
}

/// `-m length --length a:b`, one rule per range, or `! --length` for all but one range.
fn ipt_length(r: &[(u64, u64)]) -> Vec<Conj> {
    let item = |a: u64, b: u64| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}:{b}")
        }
    };
    if let [(0, a), (b, 0xffff)] = r {
        return vec![vec![format!("-m length ! --length {}", item(a + 1, b - 1))]];
    }
    r.iter()
        .map(|&(a, b)| vec![format!("-m length --length {}", item(a, b))])
        .collect()
}

/// `iptables -A INPUT ...` (or `ip6tables`) lines for a host-local drop or rate limit.
pub fn to_iptables(route: &FlowRoute, name: &str) -> Result<String, Unsupported> {
    let mut gaps = Gaps::new("iptables");
    let afi = route.rule.afi();
    let cmd = if afi == Afi::Ipv4 {
        "iptables"
    } else {
        "ip6tables"
    };
    let comps = route.rule.components();
    let mut notes: Vec<String> = Vec::new();
    let mut alts: Vec<Conj> = vec![vec![]];
    let add = |alts: &mut Vec<Conj>, more: Vec<Conj>| *alts = product(alts, &more);
    let needs_named_protocol = has(comps, |c| {
        matches!(
            c,
            Component::Port(_)
                | Component::DestinationPort(_)
                | Component::SourcePort(_)
                | Component::TcpFlags(_)
                | Component::IcmpType(_)
                | Component::IcmpCode(_)
        )
    });
    // Addresses first, then the protocol, then the rest in type order.
    for c in comps {
        if let Component::DestinationPrefix(p) | Component::SourcePrefix(p) = c {
            prefix_offset_gap(&mut gaps, c, afi, p);
            let flag = if matches!(c, Component::DestinationPrefix(_)) {
                "-d"
            } else {
                "-s"
            };
            add(&mut alts, vec![vec![format!("{flag} {}", p.net)]]);
        }
    }
    match protocol_ranges(route) {
        Ok(Some(r)) => {
            let n = ranges_len(&r);
            // All protocols but one: `! -p N`.
            let all_but = match r.as_slice() {
                [(0, a), (b, 0xff)] if a + 2 == *b && !needs_named_protocol => Some(a + 1),
                _ => None,
            };
            let protos: Vec<Conj> = if let Some(p) = all_but {
                vec![vec![format!("! -p {}", ipt_protocol(p, afi))]]
            } else if n <= 8 {
                r.iter()
                    .flat_map(|&(a, b)| a..=b)
                    .map(|v| vec![format!("-p {}", ipt_protocol(v, afi))])
                    .collect()
            } else if afi == Afi::Ipv4 && !needs_named_protocol {
                match u32_values(&r) {
                    Some(v) => vec![vec![format!("-m u32 --u32 \"8>>16&0xFF={v}\"")]],
                    None => {
                        gaps.add("protocol (too many ranges for one u32 test)");
                        vec![vec![]]
                    }
                }
            } else {
                gaps.add(format!(
                    "{} {} ({n} protocols; ip6tables takes one -p per rule)",
                    comps
                        .iter()
                        .find(|c| matches!(c, Component::Protocol(_)))
                        .map_or("next-header", |c| c.keyword(afi)),
                    nft_set(&r, |v| v.to_string())
                ));
                vec![vec![]]
            };
            add(&mut alts, protos);
        }
        Ok(None) => {}
        Err(e) => gaps.add(e),
    }
    let numeric = |c: &Component| ranges_of(c.numeric().unwrap_or_default(), c.field_max());
    // Whether one packet may match several of the rules (OR-ed TCP flag terms).
    let mut overlap = false;
    let icmp_type = comps.iter().find(|c| matches!(c, Component::IcmpType(_)));
    let icmp_code = comps.iter().find(|c| matches!(c, Component::IcmpCode(_)));
    for c in comps {
        let more: Vec<Conj> = match c {
            Component::DestinationPrefix(_)
            | Component::SourcePrefix(_)
            | Component::Protocol(_)
            | Component::IcmpCode(_) => continue,
            Component::TcpFlags(ops) | Component::Fragment(ops) if bitmask_always(ops) => continue,
            Component::Port(_) => ipt_ports("", &numeric(c)),
            Component::DestinationPort(_) => ipt_ports("d", &numeric(c)),
            Component::SourcePort(_) => ipt_ports("s", &numeric(c)),
            Component::IcmpType(_) => {
                let types = numeric(c);
                let codes = icmp_code.map(numeric);
                let n = ranges_len(&types) * codes.as_ref().map_or(1, |r| ranges_len(r));
                if n > 16 {
                    gaps.add(format!(
                        "icmp-type/icmp-code ({n} combinations; --icmp-type takes one type and code)"
                    ));
                    continue;
                }
                let opt = if afi == Afi::Ipv4 {
                    "--icmp-type"
                } else {
                    "--icmpv6-type"
                };
                let mut out = Vec::new();
                for t in types.iter().flat_map(|&(a, b)| a..=b) {
                    match &codes {
                        None => out.push(vec![format!("{opt} {t}")]),
                        Some(codes) => {
                            for k in codes.iter().flat_map(|&(a, b)| a..=b) {
                                out.push(vec![format!("{opt} {t}/{k}")]);
                            }
                        }
                    }
                }
                out
            }
            Component::TcpFlags(ops) => {
                overlap |= bitmask_terms(ops).len() > 1;
                ipt_tcp_flags(ops, &mut gaps)
            }
            Component::PacketLength(_) => {
                notes.push("# approximate: the length match sees the packet as this host does (GRO can merge TCP segments into one longer packet)".into());
                ipt_length(&numeric(c))
            }
            Component::Dscp(_) => {
                let r = numeric(c);
                let shift = if afi == Afi::Ipv4 { 18 } else { 22 };
                match (r.as_slice(), u32_values(&r)) {
                    ([(a, b)], _) if a == b => vec![vec![format!("-m dscp --dscp {a}")]],
                    (_, Some(v)) => vec![vec![format!("-m u32 --u32 \"0>>{shift}&0x3F={v}\"")]],
                    (_, None) => {
                        gaps.add("dscp (too many ranges for one u32 test)");
                        continue;
                    }
                }
            }
            Component::FlowLabel(_) => match u32_values(&numeric(c)) {
                Some(v) => vec![vec![format!("-m u32 --u32 \"0&0xFFFFF={v}\"")]],
                None => {
                    gaps.add("flow-label (too many ranges for one u32 test)");
                    continue;
                }
            },
            Component::Fragment(ops) => {
                notes.push("# approximate: with conntrack loaded the kernel reassembles fragments before INPUT".into());
                ipt_fragment(afi, ops, &mut gaps)
            }
        };
        add(&mut alts, more);
    }
    if icmp_code.is_some() && icmp_type.is_none() {
        gaps.add("icmp-code without icmp-type (--icmp-type needs the type)");
    }
    if alts.len() > MAX_RULES {
        gaps.add(format!("the rule would need {} iptables rules", alts.len()));
    }
    let h = host_actions(route, &mut gaps);
    notes.extend(h.notes.iter().cloned());
    let limit_name: String = name.chars().take(15).collect();
    let mut targets: Vec<(&str, String)> = Vec::new();
    if h.sample {
        notes.push("# approximate: sampling becomes logging every matching packet (NFLOG)".into());
        targets.push(("", format!("-j NFLOG --nflog-prefix {limit_name}")));
    }
    if let Some(d) = h.mark {
        targets.push(("-t mangle ", format!("-j DSCP --set-dscp {d}")));
    }
    let mut limited = false;
    if h.discard {
        targets.push(("", "-j DROP".into()));
    } else if let Some(r) = h.rate_bytes {
        let n = r.round() as u64;
        if n == 0 || n > 34_359_738_336 {
            gaps.add(format!(
                "rate-bytes {r} (hashlimit takes 1 to 34359738336 bytes/s)"
            ));
        }
        notes.push(format!("# approximate: hashlimit is a token bucket and keeps byte rates in coarse steps (iptables -S shows the rate it kept); rules named {limit_name} share one bucket"));
        targets.push((
            "",
            format!("-m hashlimit --hashlimit-above {n}b/s --hashlimit-name {limit_name} -j DROP"),
        ));
        limited = true;
    } else if let Some(r) = h.rate_packets {
        let n = r.round() as u64;
        if n == 0 || n > 1_000_000 {
            gaps.add(format!(
                "rate-packets {r} (hashlimit takes 1 to 1000000 packets/s)"
            ));
        }
        notes.push(format!("# approximate: hashlimit is a token bucket (burst 5); rules named {limit_name} share one bucket"));
        targets.push((
            "",
            format!("-m hashlimit --hashlimit-above {n}/sec --hashlimit-name {limit_name} -j DROP"),
        ));
        limited = true;
    } else {
        notes.push("# no discard or rate action: the rule only counts".into());
        targets.push(("", String::new()));
    }
    if limited && overlap {
        notes.push(format!(
            "# approximate: a packet matching several of the {} rules counts in each",
            alts.len()
        ));
    }
    let mut s = String::new();
    for n in notes {
        s.push_str(&n);
        s.push('\n');
    }
    for (table, target) in &targets {
        for conj in &alts {
            let mut words: Vec<String> = vec![format!("{cmd} {table}-A INPUT")];
            words.extend(conj.iter().cloned());
            if !target.is_empty() {
                words.push(target.clone());
            }
            s.push_str(&words.join(" "));
            s.push('\n');
        }
    }
    gaps.finish(s)
}

fn ipt_fragment(afi: Afi, ops: &[BitmaskOp], gaps: &mut Gaps) -> Vec<Conj> {
    match afi {
        Afi::Ipv4 => {
            let r = frag4_ranges(ops);
            if r == [(0, 0x7fff)] {
                return vec![vec![]];
            }
            match u32_values(&r) {
                Some(v) if !r.is_empty() => vec![vec![format!("-m u32 --u32 \"4&0x7FFF={v}\"")]],
                _ => {
                    gaps.add("fragment (no IPv4 packet has these fragment bits)");
                    vec![vec![]]
                }
            }
        }
        Afi::Ipv6 => {
            let states = frag6_states(ops);
            let missing = states.contains(&Frag6::Missing);
            let headers: Vec<(bool, bool)> = states
                .iter()
                .filter_map(|s| match *s {
                    Frag6::Header { mf, offset_zero } => Some((mf, offset_zero)),
                    Frag6::Missing => None,
                })
                .collect();
            if missing && headers.len() == 4 {
                return vec![vec![]];
            }
            if headers.len() != 4 && headers.iter().any(|(_, zero)| !zero) {
                let text: Vec<String> = ops.iter().map(fragment_text).collect();
                gaps.add(format!(
                    "fragment {} (ip6tables' frag match cannot test for a non-zero fragment offset)",
                    text.join(",")
                ));
                return vec![vec![]];
            }
            let mut alts: Vec<Conj> = Vec::new();
            if missing {
                alts.push(vec!["-m ipv6header ! --header ipv6-frag --soft".into()]);
            }
            let mut frag = frag6_header_alts(
                &headers,
                |mf| if mf { "--fragmore" } else { "--fraglast" }.to_string(),
                |_| "--fragfirst".to_string(),
                "-m ipv6header --header ipv6-frag --soft",
            );
            for a in &mut frag {
                if a.iter().any(|w| w.starts_with("--frag")) {
                    let joined = a.join(" ");
                    *a = vec![format!("-m frag {joined}")];
                }
            }
            alts.extend(frag);
            alts
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(s: &str) -> FlowRoute {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn check(
        target: &str,
        f: impl Fn(&FlowRoute) -> Result<String, Unsupported>,
        cases: &[(&str, &str)],
    ) {
        for (rule, want) in cases {
            let got = match f(&route(rule)) {
                Ok(s) => s,
                Err(u) => u.to_string(),
            };
            assert_eq!(got, *want, "{target}: {rule}");
        }
    }

    #[test]
    fn hex_shows_nlri_communities_and_the_update() {
        let r = route("dst 203.0.113.7/32 proto udp sport 123 then discard");
        let s = to_hex(&r, 65000);
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "family: ipv4-flowspec (AFI 1, SAFI 133)");
        // 12 octets: dst /32 (01 20 cb007107), proto =17 (03 81 11), sport =123 (06 81 7b)
        assert_eq!(lines[1], "nlri: 0c0120cb00710703811106817b");
        assert_eq!(lines[2], "ext-community: 8006000000000000 (discard)");
        assert!(
            lines[3].starts_with("update: ffffffffffffffffffffffffffffffff"),
            "{s}"
        );
        assert!(lines[3].contains("0c0120cb00710703811106817b"), "{s}");
        assert!(lines[3].contains("8006000000000000"), "{s}");
        let r = route(
            "dst 2001:db8::1/128 next-header tcp dport 80,443 tcp-flags syn&!~ack then rate-bytes 125000",
        );
        let s = to_hex(&r, 65000);
        assert!(s.contains("family: ipv6-flowspec (AFI 2, SAFI 133)"), "{s}");
        // 33 octets: dst (01 80 00 + 16 octets), next-header =6 (03 81 06), dport =80 =443
        // (05 01 50 91 01bb), tcp-flags all of syn AND none of ack (09 01 02 c2 10).
        assert!(
            s.contains(
                "nlri: 2101800020010db80000000000000000000000010381060501509101bb090102c210"
            ),
            "{s}"
        );
        assert!(
            s.contains("ext-community: 8006000047f42400 (rate-bytes 125000)"),
            "{s}"
        );
        let r = route("dst 192.0.2.1/32");
        assert!(to_hex(&r, 65000).contains("ext-communities: none"));
    }

    #[test]
    fn gobgp_commands() {
        check(
            "gobgp",
            to_gobgp,
            &[
                (
                    "dst 203.0.113.7/32 proto udp sport 123 then discard",
                    "gobgp global rib -a ipv4-flowspec add match destination 203.0.113.7/32 protocol '==17' source-port '==123' then discard\n",
                ),
                (
                    "dst 192.0.2.0/24 src 198.51.100.0/24 proto tcp,udp dport 1024..65535,80 pkt-len >=512&<1000 then rate-bytes 65000:1000.5",
                    "gobgp global rib -a ipv4-flowspec add match destination 192.0.2.0/24 source 198.51.100.0/24 protocol '==6' '==17' destination-port '>=1024&<=65535' '==80' packet-length '>=512&<1000' then rate-limit 1000.5 as 65000\n",
                ),
                (
                    "dst 2001:db8::1/128 next-header tcp dport 80,443 tcp-flags syn&!~ack then rate-bytes 125000",
                    "gobgp global rib -a ipv6-flowspec add match destination 2001:db8::1/128 protocol '==6' destination-port '==80' '==443' tcp-flags '=S&!A' then rate-limit 125000\n",
                ),
                (
                    "dst 2001:db8::/32 src 2001:db8:1::/48 flow-label 5..10,70000 dscp !=0 port <1024 then mark 10",
                    "gobgp global rib -a ipv6-flowspec add match destination 2001:db8::/32 source 2001:db8:1::/48 port '<1024' dscp '!=0' label '>=5&<=10' '==70000' then mark 10\n",
                ),
                (
                    "dst 198.51.100.1/32 proto icmp icmp-type 8 icmp-code 0 fragment is-frag+first-frag,!~last-frag then redirect 65000:100",
                    "gobgp global rib -a ipv4-flowspec add match destination 198.51.100.1/32 protocol '==1' icmp-type '==8' icmp-code '==0' fragment '=is-fragment+first-fragment' '!last-fragment' then redirect 65000:100\n",
                ),
                (
                    "dst 198.51.100.2/32 proto tcp tcp-flags ~fin+rst,!=syn+ack fragment ~df then redirect 192.0.2.1:7 redirect-as4 65001:9",
                    "gobgp global rib -a ipv4-flowspec add match destination 198.51.100.2/32 protocol '==6' tcp-flags FR '!=SA' fragment dont-fragment then redirect 192.0.2.1:7 redirect 0.65001:9\n",
                ),
                (
                    "dst 198.51.100.3/32 then traffic-action continue redirect 4200000000:5",
                    "# gobgp names the T bit \"terminal\"; RFC 8955 §7.3: T set means evaluation continues (deflect's `traffic-action continue`)\ngobgp global rib -a ipv4-flowspec add match destination 198.51.100.3/32 then action terminal redirect 64086.59904:5\n",
                ),
                (
                    "dst 198.51.100.4/32 then traffic-action sample+terminal",
                    "# gobgp names the T bit \"terminal\"; RFC 8955 §7.3: T set means evaluation continues (deflect's `traffic-action continue`)\ngobgp global rib -a ipv4-flowspec add match destination 198.51.100.4/32 then action sample\n",
                ),
                (
                    "dst 198.51.100.5/32",
                    "gobgp global rib -a ipv4-flowspec add match destination 198.51.100.5/32\n",
                ),
                (
                    "dst 198.51.100.6/32 then rate-packets 100 traffic-action terminal",
                    "not expressible in gobgp: rate-packets 100 (traffic-rate-packets; the gobgp CLI sets only traffic-rate-bytes)\nnot expressible in gobgp: traffic-action terminal (all traffic-action flags clear; the gobgp CLI's `action` always sets sample or the T bit)\n",
                ),
                (
                    "dst 198.51.100.7/32 proto tcp tcp-flags 0x100",
                    "not expressible in gobgp: tcp-flags value 0x100 (the gobgp CLI names only the flags F S R P A U E C, at least one)\n",
                ),
            ],
        );
    }

    #[test]
    fn exabgp_blocks() {
        check(
            "exabgp",
            |r| to_exabgp(r, "r1"),
            &[
                (
                    "dst 203.0.113.7/32 proto udp sport 123 then discard",
                    "flow {\n    route r1 {\n        match {\n            destination 203.0.113.7/32;\n            protocol =udp;\n            source-port =123;\n        }\n        then {\n            discard;\n        }\n    }\n}\n",
                ),
                (
                    "dst 192.0.2.0/24 src 198.51.100.0/24 proto tcp dport 1024..65535,80 tcp-flags syn&!~ack,~fin+rst pkt-len >=512 dscp 10 fragment is-frag&!=first-frag+last-frag then rate-bytes 125000 mark 10 redirect 65000:100",
                    "flow {\n    route r1 {\n        match {\n            destination 192.0.2.0/24;\n            source 198.51.100.0/24;\n            protocol =tcp;\n            destination-port [ >=1024&<=65535 =80 ];\n            tcp-flags [ =syn&!ack fin+rst ];\n            packet-length >=512;\n            dscp =10;\n            fragment =is-fragment&!=first-fragment+last-fragment;\n        }\n        then {\n            rate-limit 125000;\n            mark 10;\n            redirect 65000:100;\n        }\n    }\n}\n",
                ),
                (
                    "dst 2001:db8::1/128 next-header tcp,58 flow-label 5..10,70000 dscp <8 icmp-type 128 then rate-packets 10 traffic-action sample+continue redirect 192.0.2.1:7 rate-bytes 7:100",
                    "flow {\n    route r1 {\n        match {\n            destination 2001:db8::1/128;\n            next-header [ =tcp =58 ];\n            icmp-type =128;\n            traffic-class <8;\n            flow-label [ >=5&<=10 =70000 ];\n        }\n        then {\n            # rate-packets 10, traffic-action sample+continue, redirect 192.0.2.1:7, rate-bytes 7:100\n            extended-community [ 0x800c000041200000 0x8007000000000003 0x8108c00002010007 0x8006000742c80000 ];\n        }\n    }\n}\n",
                ),
                (
                    "next-header tcp dport 80",
                    "not expressible in exabgp: an IPv6 rule without dst or src (ExaBGP takes a flow's family from its prefixes)\n",
                ),
                (
                    "dst 192.0.2.1/32 then redirect 4200000000:5 redirect-as4 65001:9",
                    "not expressible in exabgp: redirect 4200000000:5 (ExaBGP 4.2 fails on 4-octet AS redirect communities, as `redirect` or as hex: maximum recursion depth exceeded)\nnot expressible in exabgp: redirect-as4 65001:9 (ExaBGP 4.2 fails on 4-octet AS redirect communities, as `redirect` or as hex: maximum recursion depth exceeded)\n",
                ),
            ],
        );
    }

    #[test]
    fn bird_routes() {
        check(
            "bird",
            to_bird,
            &[
                (
                    "dst 203.0.113.7/32 proto udp sport 123 then discard",
                    "# in a static protocol with a flow4 channel\nroute flow4 { dst 203.0.113.7/32; proto 17; sport 123; } {\n\tbgp_ext_community.add((generic, 0x80060000, 0x0));  # discard\n};\n",
                ),
                (
                    "dst 192.0.2.0/24 src 198.51.100.0/24 proto tcp dport 1024..65535,80,>8000&<9000,9999 tcp-flags syn&!~ack,~fin+rst,!=psh pkt-len >=512 dscp 10..20 then rate-bytes 12500",
                    "# in a static protocol with a flow4 channel\nroute flow4 { dst 192.0.2.0/24; src 198.51.100.0/24; proto 6; dport 1024..65535,80 || > 8000 && < 9000 || 9999; tcp flags 0x2/0x2 && 0x0/0x10 || !0x0/0x5 || !0x8/0x8; length >= 512; dscp 10..20; } {\n\tbgp_ext_community.add((generic, 0x80060000, 0x46435000));  # rate-bytes 12500\n};\n",
                ),
                (
                    "dst 203.0.113.9/32 fragment is-frag&!~last-frag,df dscp !=5&!=6",
                    "# in a static protocol with a flow4 channel\nroute flow4 { dst 203.0.113.9/32; dscp != 5 && != 6; fragment is_fragment && !last_fragment || dont_fragment; };\n",
                ),
                (
                    "dst 2001:db8::1/128 next-header tcp dport 80,443 flow-label 5..10,65535 then redirect-as4 65001:9 traffic-action continue",
                    "# in a static protocol with a flow6 channel\nroute flow6 { dst 2001:db8::1/128; next header 6; dport 80,443; label 5..10,65535; } {\n\tbgp_ext_community.add((generic, 0x82080000, 0xfde90009));  # redirect-as4 65001:9\n\tbgp_ext_community.add((generic, 0x80070000, 0x1));  # traffic-action continue\n};\n",
                ),
                (
                    "dst 2001:db8::1/128 flow-label 70000 fragment ~is-frag+first-frag",
                    "not expressible in bird: fragment test ~is-frag+first-frag (BIRD's fragment syntax tests one flag, set or clear: write the flags as separate tests)\nnot expressible in bird: flow-label value 70000 (BIRD 2's config writes at most 2 value octets and would truncate it)\n",
                ),
            ],
        );
    }

    #[test]
    fn junos_set_commands() {
        check(
            "junos",
            |r| to_junos(r, "r1"),
            &[
                (
                    "dst 203.0.113.7/32 proto udp sport 123 then discard",
                    "set routing-options flow route r1 match destination 203.0.113.7/32\nset routing-options flow route r1 match protocol 17\nset routing-options flow route r1 match source-port 123\nset routing-options flow route r1 then discard\n",
                ),
                (
                    "dst 192.0.2.0/24 proto tcp dport 80,1024..65535,!=2000&>=2000 tcp-flags syn&!~ack pkt-len <100 fragment is-frag,!~is-frag then rate-bytes 125000 traffic-action sample+continue mark 10 redirect 65000:100",
                    "set routing-options flow route r1 match destination 192.0.2.0/24\nset routing-options flow route r1 match protocol 6\nset routing-options flow route r1 match destination-port 80\nset routing-options flow route r1 match destination-port 1024-65535\nset routing-options flow route r1 match tcp-flags \"syn & !ack\"\nset routing-options flow route r1 match packet-length 0-99\nset routing-options flow route r1 match fragment is-fragment\nset routing-options flow route r1 match fragment not-a-fragment\nset routing-options flow route r1 then rate-limit 1000000\nset routing-options flow route r1 then sample\nset routing-options flow route r1 then next-term\nset routing-options flow route r1 then mark 10\nset routing-options flow route r1 then routing-instance target:65000:100\n",
                ),
                (
                    "dst 2001:db8::1/128 next-header tcp tcp-flags ~fin+rst,syn+ack then traffic-action terminal redirect-as4 65001:9",
                    "# traffic-action terminal: Junos's default (a flow route is terminal unless it says next-term)\nset routing-options rib inet6.0 flow route r1 match destination 2001:db8::1/128\nset routing-options rib inet6.0 flow route r1 match protocol 6\nset routing-options rib inet6.0 flow route r1 match tcp-flags \"(fin | rst) | (syn & ack)\"\nset routing-options rib inet6.0 flow route r1 then routing-instance target:65001L:9\n",
                ),
                (
                    "dst 2001:db8::1/128 flow-label 5 then rate-packets 10 rate-bytes 1:100",
                    "not expressible in junos: flow-label (Junos flow routes have no flow-label match)\nnot expressible in junos: rate-packets 10 (traffic-rate-packets; Junos flow routes rate-limit in bits per second)\nnot expressible in junos: rate-bytes 1:100 (Junos sets no AS in the traffic-rate community)\n",
                ),
            ],
        );
    }

    #[test]
    fn iosxr_policies() {
        check(
            "iosxr",
            |r| to_iosxr(r, "r1"),
            &[
                (
                    "dst 203.0.113.7/32 proto udp sport 123 then discard",
                    "class-map type traffic match-all r1\n match destination-address ipv4 203.0.113.7/32\n match protocol 17\n match source-port 123\n end-class-map\n!\npolicy-map type pbr r1\n class type traffic r1\n  drop\n !\n class type traffic class-default\n !\n end-policy-map\n!\nflowspec\n address-family ipv4\n  service-policy type pbr r1\n !\n!\n",
                ),
                (
                    "dst 2001:db8::/32 next-header tcp dport 80,443,8000..8080 tcp-flags syn&!~ack+rst pkt-len >=512 dscp 46 fragment first-frag,last-frag then rate-bytes 125000 mark 0",
                    "class-map type traffic match-all r1\n match destination-address ipv6 2001:db8::/32\n match protocol 6\n match destination-port 80 443 8000-8080\n match tcp-flag 0x02 bit-mask 0x16\n match packet length 512-65535\n match dscp 46\n match fragment-type first-fragment last-fragment\n end-class-map\n!\npolicy-map type pbr r1\n class type traffic r1\n  police rate 1000000 bps\n  set dscp 0\n !\n class type traffic class-default\n !\n end-policy-map\n!\nflowspec\n address-family ipv6\n  service-policy type pbr r1\n !\n!\n",
                ),
                (
                    "dst 192.0.2.1/32 proto tcp port 80 tcp-flags ~syn+ack then redirect 65000:1 traffic-action sample+terminal",
                    "not expressible in iosxr: port (source or destination; IOS-XR class-maps match destination-port and source-port only)\nnot expressible in iosxr: tcp-flags (syn | ack) (IOS-XR matches one value under one mask: flags set and clear, AND-ed)\nnot expressible in iosxr: redirect 65000:1 (IOS-XR redirects to a VRF by name, `redirect vrf NAME`, not to a route target)\nnot expressible in iosxr: traffic-action sample+terminal (IOS-XR flowspec policies have no sample or non-terminal action)\n",
                ),
            ],
        );
    }

    #[test]
    fn nftables_rules() {
        check(
            "nftables",
            |r| to_nftables(r, "r1"),
            &[
                (
                    "dst 203.0.113.7/32 proto udp sport 123 then discard",
                    "# in table inet filter, chain input: nft add table inet filter; nft add chain inet filter input '{ type filter hook input priority 0; }'\nnft 'add rule inet filter input ip daddr 203.0.113.7/32 meta l4proto udp th sport 123 drop'\n",
                ),
                (
                    "dst 2001:db8::1/128 next-header tcp dport 80,443 tcp-flags syn&!~ack then rate-bytes 125000",
                    "# in table inet filter, chain input: nft add table inet filter; nft add chain inet filter input '{ type filter hook input priority 0; }'\nnft 'add rule inet filter input ip6 daddr 2001:db8::1/128 meta l4proto tcp th dport { 80, 443 } tcp flags & syn == syn tcp flags & ack == 0 limit rate over 125000 bytes/second drop'\n",
                ),
                (
                    "src 198.51.100.0/24 dport 1024..65535 pkt-len >=512&<1000,<64 dscp !=0 tcp-flags ~fin+rst,syn then rate-packets 1000 mark 8",
                    "# in table inet filter, chain input: nft add table inet filter; nft add chain inet filter input '{ type filter hook input priority 0; }'\n# approximate: meta length is the packet as this host sees it (GRO can merge TCP segments into one longer packet)\nnft 'add rule inet filter input ip saddr 198.51.100.0/24 meta l4proto tcp th dport 1024-65535 tcp flags & (fin | syn | rst) { fin, syn, fin | syn, rst, fin | rst, syn | rst, fin | syn | rst } meta length { 0-63, 512-999 } ip dscp 1-63 ip dscp set 8 limit rate over 1000/second drop'\n",
                ),
                (
                    "proto icmp icmp-type 0,8 icmp-code 0 fragment !~is-frag then traffic-action sample+terminal",
                    "# in table inet filter, chain input: nft add table inet filter; nft add chain inet filter input '{ type filter hook input priority 0; }'\n# approximate: with conntrack loaded the kernel reassembles fragments before the input hook\n# traffic-action sample+terminal: the terminal bit orders FlowSpec rules on a router; a host filter evaluates its own rule order\n# approximate: sampling becomes logging every matching packet\n# no discard or rate action: the rule only counts\nnft 'add rule inet filter input meta nfproto ipv4 meta l4proto icmp icmp type { 0, 8 } icmp code 0 ip frag-off & 0x7fff { 0x0, 0x2000, 0x4000, 0x6000 } log prefix \"r1: \" counter'\n",
                ),
                (
                    "dst 2001:db8::/32 port 53 fragment !~is-frag flow-label 5..10 then discard",
                    "# in table inet filter, chain input: nft add table inet filter; nft add chain inet filter input '{ type filter hook input priority 0; }'\n# port (source or destination) needs two rules, one per direction\n# approximate: with conntrack loaded the kernel reassembles fragments before the input hook\nnft 'add rule inet filter input ip6 daddr 2001:db8::/32 meta l4proto { tcp, udp, sctp } th sport 53 exthdr frag missing ip6 flowlabel 5-10 drop'\nnft 'add rule inet filter input ip6 daddr 2001:db8::/32 meta l4proto { tcp, udp, sctp } th sport 53 frag frag-off 0 ip6 flowlabel 5-10 drop'\nnft 'add rule inet filter input ip6 daddr 2001:db8::/32 meta l4proto { tcp, udp, sctp } th dport 53 exthdr frag missing ip6 flowlabel 5-10 drop'\nnft 'add rule inet filter input ip6 daddr 2001:db8::/32 meta l4proto { tcp, udp, sctp } th dport 53 frag frag-off 0 ip6 flowlabel 5-10 drop'\n",
                ),
                (
                    "next-header 58 icmp-type 128 fragment first-frag,last-frag&!~is-frag then rate-bytes 100.5",
                    "# in table inet filter, chain input: nft add table inet filter; nft add chain inet filter input '{ type filter hook input priority 0; }'\n# approximate: with conntrack loaded the kernel reassembles fragments before the input hook\n# approximate: 100.5 bytes/s rounded to 101 (nft limits take whole numbers)\nnft 'add rule inet filter input meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 128 frag frag-off 0 frag more-fragments 1 limit rate over 101 bytes/second drop'\n",
                ),
                (
                    "dst 192.0.2.0/24 tcp-flags !=syn+ack&~fin+ack fragment ~df+last-frag then rate-packets 3 mark 63",
                    "# in table inet filter, chain input: nft add table inet filter; nft add chain inet filter input '{ type filter hook input priority 0; }'\n# approximate: with conntrack loaded the kernel reassembles fragments before the input hook\nnft 'add rule inet filter input ip daddr 192.0.2.0/24 meta l4proto tcp tcp flags & (syn | ack) != (syn | ack) tcp flags & (fin | ack) != 0 ip frag-off & 0x7fff { 0x1-0x1fff, 0x4000-0x7fff } ip dscp set 63 limit rate over 3/second drop'\n",
                ),
                (
                    "proto !=6&!=17 dscp 10,12..14",
                    "# in table inet filter, chain input: nft add table inet filter; nft add chain inet filter input '{ type filter hook input priority 0; }'\n# no discard or rate action: the rule only counts\nnft 'add rule inet filter input meta nfproto ipv4 meta l4proto { 0-5, 7-16, 18-255 } ip dscp { 10, 12-14 } counter'\n",
                ),
                (
                    "dst 203.0.113.7/32 then redirect 65000:1 rate-bytes 10 rate-packets 10",
                    "not expressible in nftables: redirect 65000:1 (a redirect to a VRF is a router's forwarding decision)\nnot expressible in nftables: rate-bytes and rate-packets together (one rule drops over one rate)\n",
                ),
                (
                    "dst 192.0.2.1/32 tcp-flags 0x100",
                    "not expressible in nftables: tcp-flags value 0x100 (nft names the 8 flags fin to cwr)\n",
                ),
            ],
        );
    }

    #[test]
    fn iptables_rules() {
        check(
            "iptables",
            |r| to_iptables(r, "r1"),
            &[
                (
                    "dst 203.0.113.7/32 proto udp sport 123 then discard",
                    "iptables -A INPUT -d 203.0.113.7/32 -p udp --sport 123 -j DROP\n",
                ),
                (
                    "dst 2001:db8::1/128 next-header tcp dport 80,443 tcp-flags syn&!~ack then rate-bytes 125000",
                    "# approximate: hashlimit is a token bucket and keeps byte rates in coarse steps (iptables -S shows the rate it kept); rules named r1 share one bucket\nip6tables -A INPUT -d 2001:db8::1/128 -p tcp -m multiport --dports 80,443 --tcp-flags SYN,ACK SYN -m hashlimit --hashlimit-above 125000b/s --hashlimit-name r1 -j DROP\n",
                ),
                (
                    "dst 192.0.2.0/24 port 53 pkt-len !=100 dscp 10..12 fragment first-frag then rate-packets 100 mark 8",
                    "# approximate: the length match sees the packet as this host does (GRO can merge TCP segments into one longer packet)\n# approximate: with conntrack loaded the kernel reassembles fragments before INPUT\n# approximate: hashlimit is a token bucket (burst 5); rules named r1 share one bucket\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p tcp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -j DSCP --set-dscp 8\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p udp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -j DSCP --set-dscp 8\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p sctp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -j DSCP --set-dscp 8\niptables -A INPUT -d 192.0.2.0/24 -p tcp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -m hashlimit --hashlimit-above 100/sec --hashlimit-name r1 -j DROP\niptables -A INPUT -d 192.0.2.0/24 -p udp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -m hashlimit --hashlimit-above 100/sec --hashlimit-name r1 -j DROP\niptables -A INPUT -d 192.0.2.0/24 -p sctp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -m hashlimit --hashlimit-above 100/sec --hashlimit-name r1 -j DROP\n",
                ),
                (
                    "proto tcp tcp-flags ~syn+ack,fin",
                    "# no discard or rate action: the rule only counts\niptables -A INPUT -p tcp --tcp-flags SYN SYN\niptables -A INPUT -p tcp --tcp-flags SYN,ACK ACK\niptables -A INPUT -p tcp --tcp-flags FIN FIN\n",
                ),
                (
                    "proto tcp tcp-flags !=syn+ack then discard",
                    "iptables -A INPUT -p tcp ! --tcp-flags SYN,ACK SYN,ACK -j DROP\n",
                ),
                (
                    "dst 2001:db8::1/128 icmp-type 128 icmp-code 0 fragment !~is-frag flow-label <100 then discard",
                    "# approximate: with conntrack loaded the kernel reassembles fragments before INPUT\nip6tables -A INPUT -d 2001:db8::1/128 -p ipv6-icmp --icmpv6-type 128/0 -m ipv6header ! --header ipv6-frag --soft -m u32 --u32 \"0&0xFFFFF=0x0:0x63\" -j DROP\nip6tables -A INPUT -d 2001:db8::1/128 -p ipv6-icmp --icmpv6-type 128/0 -m frag --fragfirst -m u32 --u32 \"0&0xFFFFF=0x0:0x63\" -j DROP\n",
                ),
                (
                    "proto !=6 then discard",
                    "iptables -A INPUT ! -p tcp -j DROP\n",
                ),
                (
                    "next-header 58 icmp-type 128 fragment first-frag,last-frag&!~is-frag then rate-bytes 100.5",
                    "# approximate: with conntrack loaded the kernel reassembles fragments before INPUT\n# approximate: hashlimit is a token bucket and keeps byte rates in coarse steps (iptables -S shows the rate it kept); rules named r1 share one bucket\nip6tables -A INPUT -p ipv6-icmp --icmpv6-type 128 -m frag --fragfirst --fragmore -m hashlimit --hashlimit-above 101b/s --hashlimit-name r1 -j DROP\n",
                ),
                (
                    "dst 192.0.2.0/24 tcp-flags !=syn+ack&~fin+ack fragment ~df+last-frag then rate-packets 3 mark 63 traffic-action sample+continue",
                    "# approximate: with conntrack loaded the kernel reassembles fragments before INPUT\n# traffic-action sample+continue: the terminal bit orders FlowSpec rules on a router; a host filter evaluates its own rule order\n# approximate: sampling becomes logging every matching packet (NFLOG)\n# approximate: hashlimit is a token bucket (burst 5); rules named r1 share one bucket\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN FIN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j NFLOG --nflog-prefix r1\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK ACK -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j NFLOG --nflog-prefix r1\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK FIN,SYN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j NFLOG --nflog-prefix r1\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN FIN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j DSCP --set-dscp 63\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK ACK -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j DSCP --set-dscp 63\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK FIN,SYN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j DSCP --set-dscp 63\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN FIN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -m hashlimit --hashlimit-above 3/sec --hashlimit-name r1 -j DROP\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK ACK -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -m hashlimit --hashlimit-above 3/sec --hashlimit-name r1 -j DROP\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK FIN,SYN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -m hashlimit --hashlimit-above 3/sec --hashlimit-name r1 -j DROP\n",
                ),
                (
                    "proto !=6&!=17 dscp 10,12..14",
                    "# no discard or rate action: the rule only counts\niptables -A INPUT -m u32 --u32 \"8>>16&0xFF=0x0:0x5,0x7:0x10,0x12:0xff\" -m u32 --u32 \"0>>18&0x3F=0xa,0xc:0xe\"\n",
                ),
                (
                    "dst 198.51.100.9/32 tcp-flags ~fin+syn,ack then rate-bytes 1000",
                    "# approximate: hashlimit is a token bucket and keeps byte rates in coarse steps (iptables -S shows the rate it kept); rules named r1 share one bucket\n# approximate: a packet matching several of the 3 rules counts in each\niptables -A INPUT -d 198.51.100.9/32 -p tcp --tcp-flags FIN FIN -m hashlimit --hashlimit-above 1000b/s --hashlimit-name r1 -j DROP\niptables -A INPUT -d 198.51.100.9/32 -p tcp --tcp-flags FIN,SYN SYN -m hashlimit --hashlimit-above 1000b/s --hashlimit-name r1 -j DROP\niptables -A INPUT -d 198.51.100.9/32 -p tcp --tcp-flags ACK ACK -m hashlimit --hashlimit-above 1000b/s --hashlimit-name r1 -j DROP\n",
                ),
                (
                    "dst 2001:db8::1/128 tcp-flags ece fragment is-frag then redirect 192.0.2.1:1",
                    "not expressible in iptables: tcp-flags value 0x40 (iptables names FIN SYN RST PSH ACK URG only)\nnot expressible in iptables: fragment is-frag (ip6tables' frag match cannot test for a non-zero fragment offset)\nnot expressible in iptables: redirect 192.0.2.1:1 (a redirect to a VRF is a router's forwarding decision)\n",
                ),
                (
                    "dst 192.0.2.1/32 icmp-code 3 then discard",
                    "not expressible in iptables: icmp-code without icmp-type (--icmp-type needs the type)\n",
                ),
            ],
        );
    }

    #[test]
    fn ranges_follow_the_operators() {
        let ops = |s: &str| match route(s).rule.components()[1].clone() {
            Component::DestinationPort(v) => v,
            c => panic!("{c:?}"),
        };
        let r = |s: &str| ranges_of(&ops(&format!("dst 192.0.2.1/32 dport {s}")), 0xffff);
        assert_eq!(r("80"), vec![(80, 80)]);
        assert_eq!(r("80,81,1024..65535"), vec![(80, 81), (1024, 65535)]);
        assert_eq!(r("!=80"), vec![(0, 79), (81, 65535)]);
        assert_eq!(r(">=10&<20,<5"), vec![(0, 4), (10, 19)]);
        assert_eq!(r(">65534"), vec![(65535, 65535)]);
        assert_eq!(r("!=5&!=6"), vec![(0, 4), (7, 65535)]);
    }

    #[test]
    fn fragment_states_are_exact() {
        let ops = |s: &str| match route(&format!("dst 192.0.2.1/32 fragment {s}"))
            .rule
            .components()[1]
            .clone()
        {
            Component::Fragment(v) => v,
            c => panic!("{c:?}"),
        };
        // Later fragments: offset != 0, any DF/MF.
        assert_eq!(
            frag4_ranges(&ops("is-frag")),
            vec![
                (0x0001, 0x1fff),
                (0x2001, 0x3fff),
                (0x4001, 0x5fff),
                (0x6001, 0x7fff)
            ]
        );
        // First fragment: MF set, offset 0.
        assert_eq!(
            frag4_ranges(&ops("first-frag")),
            vec![(0x2000, 0x2000), (0x6000, 0x6000)]
        );
        // Last fragment: MF clear, offset != 0.
        assert_eq!(
            frag4_ranges(&ops("last-frag")),
            vec![(0x0001, 0x1fff), (0x4001, 0x5fff)]
        );
        assert_eq!(frag4_ranges(&ops("df")), vec![(0x4000, 0x7fff)]);
        assert_eq!(
            frag6_states(&ops("!~is-frag")),
            vec![
                Frag6::Missing,
                Frag6::Header {
                    mf: false,
                    offset_zero: true
                },
                Frag6::Header {
                    mf: true,
                    offset_zero: true
                }
            ]
        );
    }

    #[test]
    fn flag_tests_of_nothing_match_everything() {
        let r = route("dst 192.0.2.1/32 proto tcp tcp-flags 0x0,syn fragment !~0x0 then discard");
        assert_eq!(
            to_junos(&r, "r1").unwrap(),
            "set routing-options flow route r1 match destination 192.0.2.1/32\nset routing-options flow route r1 match protocol 6\nset routing-options flow route r1 then discard\n"
        );
        assert!(to_nftables(&r, "r1").unwrap().ends_with(
            "nft 'add rule inet filter input ip daddr 192.0.2.1/32 meta l4proto tcp drop'\n"
        ));
        assert!(
            to_iptables(&r, "r1")
                .unwrap()
                .ends_with("iptables -A INPUT -d 192.0.2.1/32 -p tcp -j DROP\n")
        );
        assert!(to_bird(&r).is_err());
        assert!(!to_iosxr(&r, "r1").unwrap().contains("tcp-flag"));
    }

    #[test]
    fn names_and_refusals() {
        assert!(valid_name("deflect-1_a"));
        assert!(!valid_name("-x"));
        assert!(!valid_name("a b"));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(64)));
        let r = route("dst 192.0.2.1/32 then discard");
        assert_eq!(default_name(&r), default_name(&r.clone()));
        assert!(default_name(&r).starts_with("deflect-"));
        assert_ne!(
            default_name(&r),
            default_name(&route("dst 192.0.2.2/32 then discard"))
        );
        let u = Unsupported {
            target: "bird",
            reasons: vec!["a".into(), "b".into()],
        };
        assert_eq!(
            u.to_string(),
            "not expressible in bird: a\nnot expressible in bird: b\n"
        );
        // Ports with ICMP and no protocol component: no packet has both.
        let r = route("dst 192.0.2.1/32 dport 80 icmp-type 8 then discard");
        assert!(
            to_nftables(&r, "x")
                .unwrap_err()
                .to_string()
                .contains("never matches")
        );
        assert!(
            to_iptables(&r, "x")
                .unwrap_err()
                .to_string()
                .contains("never matches")
        );
    }

    #[test]
    fn render_all_shows_every_target_and_refusals_in_place() {
        let r = route("dst 203.0.113.7/32 proto udp sport 123 then rate-packets 100");
        let (s, ok) = render(&r, Format::All, "r1", 65000);
        assert!(ok);
        for t in [
            "hex", "gobgp", "exabgp", "bird", "junos", "iosxr", "nftables", "iptables",
        ] {
            assert!(s.contains(&format!("# --- {t} ---\n")), "{t}: {s}");
        }
        assert!(
            s.starts_with("# rule: dst 203.0.113.7/32 proto udp sport 123 then rate-packets 100\n")
        );
        assert!(
            s.contains("not expressible in gobgp: rate-packets 100"),
            "{s}"
        );
        assert!(
            s.contains("extended-community [ 0x800c000042c80000 ];"),
            "{s}"
        );
        let (s, ok) = render(&r, Format::Gobgp, "r1", 65000);
        assert!(!ok);
        assert!(s.starts_with("not expressible in gobgp"));
        let (s, ok) = render(&r, Format::Bird, "r1", 65000);
        assert!(ok, "{s}");
    }
}
