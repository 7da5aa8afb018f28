//! deflect's text syntax for FlowSpec rules and actions: one syntax for the CLI, the API and YAML
//! policies. [`format_rule`] prints what [`parse_rule`] reads back to the identical rule.
//!
//! ```text
//! dst 192.0.2.1/32 src 198.51.100.0/24 proto udp sport 53,123 dport 1024..65535 pkt-len >=512 then discard
//! dst 2001:db8::1/128 next-header tcp dport 80,443 tcp-flags syn&!~ack then rate-bytes 125000
//! ```
//!
//! Matches (in any order; printed in type order), `KEYWORD VALUE`:
//!
//! | keyword | component (RFC 8955/8956 type) | values |
//! |---|---|---|
//! | `dst`, `src` | destination / source prefix (1, 2) | a prefix; IPv6 may add `offset N` |
//! | `proto` (IPv4), `next-header` (IPv6) | 3 | numeric; names `icmp tcp udp gre esp ah icmpv6 sctp` |
//! | `port`, `dport`, `sport` | 4, 5, 6 | numeric, 0..=65535 |
//! | `icmp-type`, `icmp-code` | 7, 8 | numeric, 0..=255 |
//! | `tcp-flags` | 9 | bitmask: `fin syn rst psh ack urg ece cwr`, or `0x..` |
//! | `pkt-len` | 10 | numeric, 0..=65535 |
//! | `dscp` | 11 | numeric, 0..=63 |
//! | `fragment` | 12 | bitmask: `df is-frag first-frag last-frag` (no `df` in IPv6) |
//! | `flow-label` | 13, IPv6 only | numeric, 0..=1048575 |
//!
//! Numeric values: `,` separates alternatives (OR), `&` joins conditions (AND). A condition is `N` or
//! `=N`, `!=N`, `>N`, `>=N`, `<N`, `<=N` or `N..M` (short for `>=N&<=M`).
//! `dport 80,443,8000..8080` matches any of them; `pkt-len >=100&<200` one range.
//!
//! Bitmask values: flags joined by `+`; `F` or `=F` all of F set; `!=F` not all of F set; `~F` any of
//! F set; `!~F` none of F set. `tcp-flags syn&!~ack` is "SYN set and ACK clear".
//!
//! Actions, after `then`, separated by spaces:
//! - `discard` (traffic-rate-bytes 0), `rate-bytes R`, `rate-packets R` (R a decimal number; an AS
//!   for the rate's 2-octet AS field may be given as `ASN:R`);
//! - `traffic-action terminal`, `traffic-action continue`, `traffic-action sample+terminal`,
//!   `traffic-action sample+continue` (terminal: evaluation stops after this rule, the RFC's T bit
//!   clear; continue: later rules apply too, T bit set);
//! - `redirect ASN:V` (2-octet AS type when ASN fits 16 bits, else 4-octet), `redirect A.B.C.D:V`,
//!   `redirect-as4 ASN:V` (4-octet type even for a small ASN);
//! - `mark DSCP` (traffic-marking, 0..=63).

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;
use std::str::FromStr;

use ipnet::IpNet;

use super::action::{Action, FlowRoute};
use super::component::{BitmaskOp, Component, NumericOp, Prefix, component_type};
use super::rule::{Rule, RuleError, RuleOptions, terms_of};
use super::words::{
    FRAGMENT_FLAGS, PROTOCOLS, TCP_FLAGS, format_bitmask_term, format_numeric_term,
};
use crate::iana::Afi;

/// Why a text did not parse: the word at fault and what was wrong, or the rule's own refusal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{word:?}: {reason}")]
    Word { word: String, reason: String },
    #[error("{0}")]
    Rule(#[from] RuleError),
}

fn err<T>(word: &str, reason: impl Into<String>) -> Result<T, ParseError> {
    Err(ParseError::Word {
        word: word.to_string(),
        reason: reason.into(),
    })
}

fn type_of_keyword(kw: &str) -> Option<u8> {
    use component_type::*;
    Some(match kw {
        "dst" => DESTINATION_PREFIX,
        "src" => SOURCE_PREFIX,
        "proto" | "next-header" => PROTOCOL,
        "port" => PORT,
        "dport" => DESTINATION_PORT,
        "sport" => SOURCE_PORT,
        "icmp-type" => ICMP_TYPE,
        "icmp-code" => ICMP_CODE,
        "tcp-flags" => TCP_FLAGS,
        "pkt-len" => PACKET_LENGTH,
        "dscp" => DSCP,
        "fragment" => FRAGMENT,
        "flow-label" => FLOW_LABEL,
        _ => return None,
    })
}

/// Parses a rule (matches only).
pub fn parse_rule(s: &str, opts: &RuleOptions) -> Result<Rule, ParseError> {
    let words: Vec<&str> = s.split_whitespace().collect();
    rule_from_words(&words, opts)
}

/// Parses `MATCHES [then ACTIONS]`.
pub fn parse_flow_route(s: &str, opts: &RuleOptions) -> Result<FlowRoute, ParseError> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let (matches, actions) = match words.iter().position(|w| *w == "then") {
        Some(i) => (&words[..i], &words[i + 1..]),
        None => (&words[..], &[][..]),
    };
    let rule = rule_from_words(matches, opts)?;
    if words.contains(&"then") && actions.is_empty() {
        return err("then", "expected at least one action after `then`");
    }
    let actions = actions_from_words(actions)?;
    Ok(FlowRoute { rule, actions })
}

/// Parses the actions of a rule on their own (what follows `then`), e.g. `rate-bytes 125000` or
/// `traffic-action sample+terminal discard`.
pub fn parse_actions(s: &str) -> Result<Vec<Action>, ParseError> {
    let words: Vec<&str> = s.split_whitespace().collect();
    if words.is_empty() {
        return err(s, "expected at least one action");
    }
    actions_from_words(&words)
}

fn actions_from_words(actions: &[&str]) -> Result<Vec<Action>, ParseError> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < actions.len() {
        let n = match actions[i] {
            "discard" => 1,
            "rate-bytes" | "rate-packets" | "traffic-action" | "redirect" | "redirect-as4"
            | "mark" => 2,
            other => {
                return err(
                    other,
                    "unknown action; expected discard, rate-bytes, rate-packets, traffic-action, redirect, redirect-as4 or mark",
                );
            }
        };
        let Some(chunk) = actions.get(i..i + n) else {
            return err(actions[i], "expected a value after it");
        };
        out.push(parse_action(&chunk.join(" "))?);
        i += n;
    }
    Ok(out)
}

fn rule_from_words(words: &[&str], opts: &RuleOptions) -> Result<Rule, ParseError> {
    if words.is_empty() {
        return Err(RuleError::Empty.into());
    }
    // The family comes from the prefixes, else from `next-header`/`flow-label` (IPv6 only words).
    let afi = words
        .iter()
        .zip(words.iter().skip(1))
        .find_map(|(k, v)| match *k {
            "dst" | "src" => v.parse::<IpNet>().ok().map(|n| {
                if n.addr().is_ipv4() {
                    Afi::Ipv4
                } else {
                    Afi::Ipv6
                }
            }),
            _ => None,
        })
        .or_else(|| {
            words
                .iter()
                .any(|w| *w == "next-header" || *w == "flow-label")
                .then_some(Afi::Ipv6)
        })
        .unwrap_or(Afi::Ipv4);
    if afi == Afi::Ipv4 && words.contains(&"next-header") {
        return err(
            "next-header",
            "an IPv4 rule matches the protocol with `proto` (next-header is IPv6's)",
        );
    }

    let mut components = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let kw = words[i];
        let Some(t) = type_of_keyword(kw) else {
            return err(
                kw,
                "unknown match; expected dst, src, proto, next-header, port, dport, sport, icmp-type, icmp-code, tcp-flags, pkt-len, dscp, fragment or flow-label",
            );
        };
        let Some(&value) = words.get(i + 1) else {
            return err(kw, "expected a value after it");
        };
        i += 2;
        let c = match t {
            component_type::DESTINATION_PREFIX | component_type::SOURCE_PREFIX => {
                let net: IpNet = match value.parse() {
                    Ok(n) => n,
                    Err(_) => return err(value, format!("{kw}: not a prefix (ADDRESS/LENGTH)")),
                };
                let mut offset = 0u8;
                if words.get(i) == Some(&"offset") {
                    let Some(o) = words.get(i + 1) else {
                        return err("offset", "expected a number after it");
                    };
                    offset = match o.parse() {
                        Ok(o) => o,
                        Err(_) => return err(o, "offset: expected 0..=128"),
                    };
                    i += 2;
                }
                let p = Prefix { net, offset };
                if t == component_type::DESTINATION_PREFIX {
                    Component::DestinationPrefix(p)
                } else {
                    Component::SourcePrefix(p)
                }
            }
            component_type::TCP_FLAGS => Component::TcpFlags(parse_bitmask(kw, value, &TCP_FLAGS)?),
            component_type::FRAGMENT => {
                Component::Fragment(parse_bitmask(kw, value, &FRAGMENT_FLAGS)?)
            }
            _ => {
                let names: &[(&str, u64)] = if t == component_type::PROTOCOL {
                    &PROTOCOLS
                } else {
                    &[]
                };
                let ops = parse_numeric(kw, value, names)?;
                Component::from_numeric(t, ops).ok_or_else(|| ParseError::Word {
                    word: kw.to_string(),
                    reason: "not a numeric match".into(),
                })?
            }
        };
        components.push(c);
    }
    Ok(Rule::with_options(afi, components, opts)?)
}

fn parse_number(kw: &str, s: &str, names: &[(&str, u64)]) -> Result<u64, ParseError> {
    if let Some(&(_, v)) = names.iter().find(|(n, _)| *n == s) {
        return Ok(v);
    }
    let parsed = match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse::<u64>(),
    };
    match parsed {
        Ok(v) => Ok(v),
        Err(_) if names.is_empty() => err(s, format!("{kw}: expected a number")),
        Err(_) => err(
            s,
            format!(
                "{kw}: expected a number or one of {}",
                names.iter().map(|n| n.0).collect::<Vec<_>>().join(" ")
            ),
        ),
    }
}

fn parse_numeric(
    kw: &str,
    value: &str,
    names: &[(&str, u64)],
) -> Result<Vec<NumericOp>, ParseError> {
    let mut ops = Vec::new();
    for term in value.split(',') {
        if term.is_empty() {
            return err(value, format!("{kw}: empty alternative"));
        }
        for (j, cond) in term.split('&').enumerate() {
            let and = j > 0;
            let op = |lt, gt, eq, v| NumericOp {
                and,
                lt,
                gt,
                eq,
                value: v,
            };
            if let Some((a, b)) = cond.split_once("..") {
                let (a, b) = (parse_number(kw, a, names)?, parse_number(kw, b, names)?);
                if a > b {
                    return err(cond, format!("{kw}: range {a}..{b} is empty"));
                }
                ops.push(op(false, true, true, a));
                ops.push(NumericOp {
                    and: true,
                    ..op(true, false, true, b)
                });
            } else {
                let (lt, gt, eq, rest) = if let Some(r) = cond.strip_prefix(">=") {
                    (false, true, true, r)
                } else if let Some(r) = cond.strip_prefix("<=") {
                    (true, false, true, r)
                } else if let Some(r) = cond.strip_prefix("!=") {
                    (true, true, false, r)
                } else if let Some(r) = cond.strip_prefix('>') {
                    (false, true, false, r)
                } else if let Some(r) = cond.strip_prefix('<') {
                    (true, false, false, r)
                } else {
                    (false, false, true, cond.strip_prefix('=').unwrap_or(cond))
                };
                ops.push(op(lt, gt, eq, parse_number(kw, rest, names)?));
            }
        }
    }
    Ok(ops)
}

fn parse_bitmask(
    kw: &str,
    value: &str,
    names: &[(&str, u64)],
) -> Result<Vec<BitmaskOp>, ParseError> {
    let mut ops = Vec::new();
    for term in value.split(',') {
        for (j, cond) in term.split('&').enumerate() {
            let (not, matched, flags) = if let Some(r) = cond.strip_prefix("!~") {
                (true, false, r)
            } else if let Some(r) = cond.strip_prefix("!=") {
                (true, true, r)
            } else if let Some(r) = cond.strip_prefix('~') {
                (false, false, r)
            } else {
                (false, true, cond.strip_prefix('=').unwrap_or(cond))
            };
            if flags.is_empty() {
                return err(cond, format!("{kw}: expected flags"));
            }
            let mut v = 0u64;
            for f in flags.split('+') {
                v |= parse_number(kw, f, names)?;
            }
            ops.push(BitmaskOp {
                and: j > 0,
                not,
                matched,
                value: v,
            });
        }
    }
    Ok(ops)
}

/// Parses one action (see the module documentation).
pub fn parse_action(s: &str) -> Result<Action, ParseError> {
    let words: Vec<&str> = s.split_whitespace().collect();
    let (name, value) = match words.as_slice() {
        [n] => (*n, None),
        [n, v] => (*n, Some(*v)),
        _ => return err(s, "expected an action and at most one value"),
    };
    let need = || ParseError::Word {
        word: name.into(),
        reason: "expected a value after it".into(),
    };
    match name {
        "discard" if value.is_none() => Ok(Action::DISCARD),
        "rate-bytes" | "rate-packets" => {
            let v = value.ok_or_else(need)?;
            let (asn, rate) = match v.split_once(':') {
                Some((a, r)) => (
                    a.parse::<u16>()
                        .or_else(|_| err(a, "rate AS must be 0..=65535"))?,
                    r,
                ),
                None => (0, v),
            };
            let rate: f32 = rate
                .parse()
                .or_else(|_| err(rate, "expected a rate (a decimal number)"))?;
            if !Action::valid_rate(rate) {
                return err(v, "the rate must be a finite number, 0 or more");
            }
            Ok(if name == "rate-bytes" {
                Action::TrafficRateBytes { asn, rate }
            } else {
                Action::TrafficRatePackets { asn, rate }
            })
        }
        "traffic-action" => {
            let v = value.ok_or_else(need)?;
            let (sample, rest) = match v.strip_prefix("sample+") {
                Some(r) => (true, r),
                None => (false, v),
            };
            match rest {
                "terminal" => Ok(Action::TrafficAction {
                    sample,
                    terminal: true,
                }),
                "continue" => Ok(Action::TrafficAction {
                    sample,
                    terminal: false,
                }),
                _ => err(
                    v,
                    "expected terminal, continue, sample+terminal or sample+continue",
                ),
            }
        }
        "redirect" | "redirect-as4" => {
            let v = value.ok_or_else(need)?;
            let Some((a, val)) = v.rsplit_once(':') else {
                return err(v, "expected ASN:VALUE or A.B.C.D:VALUE");
            };
            if name == "redirect" {
                if let Ok(ip) = a.parse::<Ipv4Addr>() {
                    let value = val
                        .parse::<u16>()
                        .or_else(|_| err(val, "redirect to an IPv4 address: VALUE is 0..=65535"))?;
                    return Ok(Action::RedirectIpv4 { ip, value });
                }
            }
            let asn: u32 = a.parse().or_else(|_| err(a, "expected an AS number"))?;
            match (name, u16::try_from(asn)) {
                ("redirect", Ok(asn)) => {
                    let value = val
                        .parse::<u32>()
                        .or_else(|_| err(val, "VALUE is 0..=4294967295"))?;
                    Ok(Action::RedirectAs2 { asn, value })
                }
                _ => {
                    let value = val
                        .parse::<u16>()
                        .or_else(|_| err(val, "with a 4-octet AS, VALUE is 0..=65535"))?;
                    Ok(Action::RedirectAs4 { asn, value })
                }
            }
        }
        "mark" => {
            let v = value.ok_or_else(need)?;
            match v.parse::<u8>() {
                Ok(d) if d <= 63 => Ok(Action::TrafficMarking { dscp: d }),
                _ => err(v, "DSCP is 0..=63"),
            }
        }
        _ => err(
            name,
            "unknown action; expected discard, rate-bytes, rate-packets, traffic-action, redirect, redirect-as4 or mark",
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Formatting

/// The text form of a rule, components in type order.
pub fn format_rule(rule: &Rule) -> String {
    let mut s = String::new();
    for c in &rule.components() {
        if !s.is_empty() {
            s.push(' ');
        }
        let _ = write!(s, "{} ", c.keyword(rule.afi()));
        match c {
            Component::DestinationPrefix(p) | Component::SourcePrefix(p) => {
                let _ = write!(s, "{}", p.net);
                if p.offset != 0 {
                    let _ = write!(s, " offset {}", p.offset);
                }
            }
            Component::TcpFlags(ops) | Component::Fragment(ops) => {
                let terms: Vec<String> = terms_of(ops)
                    .iter()
                    .map(|t| format_bitmask_term(c, t))
                    .collect();
                s.push_str(&terms.join(","));
            }
            _ => {
                if let Some(ops) = c.numeric() {
                    let terms: Vec<String> = terms_of(ops)
                        .iter()
                        .map(|t| format_numeric_term(c, rule.afi(), t))
                        .collect();
                    s.push_str(&terms.join(","));
                }
            }
        }
    }
    s
}

/// The text form of an action.
pub fn format_action(a: &Action) -> String {
    match *a {
        Action::TrafficRateBytes { asn: 0, rate } if rate == 0.0 && rate.is_sign_positive() => {
            "discard".into()
        }
        Action::TrafficRateBytes { asn, rate } => format!("rate-bytes {}", rate_text(asn, rate)),
        Action::TrafficRatePackets { asn, rate } => {
            format!("rate-packets {}", rate_text(asn, rate))
        }
        Action::TrafficAction { sample, terminal } => format!(
            "traffic-action {}{}",
            if sample { "sample+" } else { "" },
            if terminal { "terminal" } else { "continue" }
        ),
        Action::RedirectAs2 { asn, value } => format!("redirect {asn}:{value}"),
        Action::RedirectIpv4 { ip, value } => format!("redirect {ip}:{value}"),
        Action::RedirectAs4 { asn, value } if asn > 0xffff => format!("redirect {asn}:{value}"),
        Action::RedirectAs4 { asn, value } => format!("redirect-as4 {asn}:{value}"),
        Action::TrafficMarking { dscp } => format!("mark {dscp}"),
    }
}

fn rate_text(asn: u16, rate: f32) -> String {
    if asn == 0 {
        format!("{rate}")
    } else {
        format!("{asn}:{rate}")
    }
}

// ---------------------------------------------------------------------------------------------
// `Display` and `FromStr`: the text syntax as the standard traits, for rules, actions and routes.

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_rule(self))
    }
}

impl FromStr for Rule {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Rule, Self::Err> {
        parse_rule(s, &RuleOptions::default())
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_action(self))
    }
}

impl FromStr for Action {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<Action, Self::Err> {
        parse_action(s)
    }
}

impl fmt::Display for FlowRoute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.rule)?;
        if !self.actions.is_empty() {
            f.write_str(" then")?;
            for a in &self.actions {
                write!(f, " {a}")?;
            }
        }
        Ok(())
    }
}

impl FromStr for FlowRoute {
    type Err = ParseError;

    fn from_str(s: &str) -> Result<FlowRoute, Self::Err> {
        parse_flow_route(s, &RuleOptions::default())
    }
}
