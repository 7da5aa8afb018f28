//! Operator terms in words: what a rule's errors print (`RuleError::NeverMatches`), and the names
//! the text syntax reads and prints. Below the rule, so that both it and the text syntax use them.

use super::component::{BitmaskOp, Component, NumericOp};
use crate::iana::Afi;

/// Protocol names (component type 3).
pub(super) const PROTOCOLS: [(&str, u64); 8] = [
    ("icmp", 1),
    ("tcp", 6),
    ("udp", 17),
    ("gre", 47),
    ("esp", 50),
    ("ah", 51),
    ("icmpv6", 58),
    ("sctp", 132),
];
/// TCP flag names (component type 9).
pub(super) const TCP_FLAGS: [(&str, u64); 8] = [
    ("fin", 0x01),
    ("syn", 0x02),
    ("rst", 0x04),
    ("psh", 0x08),
    ("ack", 0x10),
    ("urg", 0x20),
    ("ece", 0x40),
    ("cwr", 0x80),
];
/// Fragment flag names (component type 12).
pub(super) const FRAGMENT_FLAGS: [(&str, u64); 4] = [
    ("df", 0x01),
    ("is-frag", 0x02),
    ("first-frag", 0x04),
    ("last-frag", 0x08),
];

/// One AND-term of a numeric component.
pub(super) fn format_numeric_term(c: &Component, _afi: Afi, term: &[NumericOp]) -> String {
    let is_proto = matches!(c, Component::Protocol(_));
    let mut parts = Vec::new();
    let mut i = 0;
    while i < term.len() {
        let o = term[i];
        // `>=a&<=b` prints as `a..b`.
        if let Some(n) = term.get(i + 1) {
            if (o.gt && o.eq && !o.lt) && (n.lt && n.eq && !n.gt) && o.value <= n.value {
                parts.push(format!("{}..{}", o.value, n.value));
                i += 2;
                continue;
            }
        }
        let v = o.value;
        parts.push(match (o.lt, o.gt, o.eq) {
            (false, false, true) if is_proto => match PROTOCOLS.iter().find(|(_, p)| *p == v) {
                Some((n, _)) => (*n).to_string(),
                None => v.to_string(),
            },
            (false, false, true) => v.to_string(),
            (true, true, false) => format!("!={v}"),
            (false, true, true) => format!(">={v}"),
            (true, false, true) => format!("<={v}"),
            (false, true, false) => format!(">{v}"),
            (true, false, false) => format!("<{v}"),
            // Refused by validation, so never printed for a rule; spelled so that it cannot parse.
            (false, false, false) | (true, true, true) => format!("invalid-operator{v}"),
        });
        i += 1;
    }
    parts.join("&")
}

/// One AND-term of a bitmask component.
pub(super) fn format_bitmask_term(c: &Component, term: &[BitmaskOp]) -> String {
    let names: &[(&str, u64)] = if matches!(c, Component::TcpFlags(_)) {
        &TCP_FLAGS
    } else {
        &FRAGMENT_FLAGS
    };
    term.iter()
        .map(|o| {
            let prefix = match (o.not, o.matched) {
                (false, true) => "",
                (true, true) => "!=",
                (false, false) => "~",
                (true, false) => "!~",
            };
            format!("{prefix}{}", flags_text(o.value, names))
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn flags_text(value: u64, names: &[(&str, u64)]) -> String {
    let mut parts = Vec::new();
    let mut rest = value;
    for (n, bit) in names {
        if value & bit != 0 {
            parts.push((*n).to_string());
            rest &= !bit;
        }
    }
    if rest != 0 || parts.is_empty() {
        parts.push(format!("{rest:#x}"));
    }
    parts.join("+")
}
