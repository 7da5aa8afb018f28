//! The reading of a rule the targets share: a numeric component as sorted value ranges, a
//! bitmask component as OR-terms of the four RFC 8955 tests, the fragment states a fragment
//! component admits, and the spellings and checks several targets use.

use deflect_bgp::flowspec::{Action, BitmaskOp, Component, NumericOp, Prefix};
use deflect_bgp::iana::Afi;

use super::Gaps;

pub(super) fn family_name(afi: Afi) -> &'static str {
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

pub(super) fn numeric_terms(ops: &[NumericOp]) -> Vec<&[NumericOp]> {
    split_terms(ops, |o| o.and)
}

pub(super) fn bitmask_terms(ops: &[BitmaskOp]) -> Vec<&[BitmaskOp]> {
    split_terms(ops, |o| o.and)
}

/// The comparison of a numeric operator, as most tools spell it.
pub(super) fn numeric_symbol(o: &NumericOp) -> &'static str {
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
pub(super) type Ranges = Vec<(u64, u64)>;

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

pub(super) fn intersect(a: &[(u64, u64)], b: &[(u64, u64)]) -> Ranges {
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
pub(super) fn ranges_of(ops: &[NumericOp], max: u64) -> Ranges {
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

pub(super) fn ranges_len(r: &[(u64, u64)]) -> u64 {
    r.iter().map(|(a, b)| b - a + 1).sum()
}

/// The four bitmask tests of RFC 8955 §4.2.1.2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Test {
    /// `F`: all of F set.
    All,
    /// `!~F`: none of F set.
    None,
    /// `~F`: any of F set.
    Any,
    /// `!=F`: not all of F set.
    NotAll,
}

pub(super) fn test_of(o: &BitmaskOp) -> Test {
    match (o.matched, o.not) {
        (true, false) => Test::All,
        (false, true) => Test::None,
        (false, false) => Test::Any,
        (true, true) => Test::NotAll,
    }
}

/// Whether a bitmask component (an OR of AND-terms) matches `data`.
pub(super) fn bitmask_matches(ops: &[BitmaskOp], data: u64) -> bool {
    bitmask_terms(ops)
        .iter()
        .any(|t| t.iter().all(|o| o.matches(data)))
}

/// Whether a bitmask component matches every packet: one of its AND-terms tests nothing (only
/// "all of 0" and "none of 0").
pub(super) fn bitmask_always(ops: &[BitmaskOp]) -> bool {
    bitmask_terms(ops).iter().any(|t| {
        t.iter()
            .all(|o| o.value == 0 && matches!(test_of(o), Test::All | Test::None))
    })
}

/// Bits of `value` named from `table`, and the bits left without a name.
pub(super) fn flag_names<'a>(value: u64, table: &[(u64, &'a str)]) -> (Vec<&'a str>, u64) {
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

pub(super) fn bits_of(value: u64) -> impl Iterator<Item = u64> {
    (0..64).map(|i| 1u64 << i).filter(move |b| value & b != 0)
}

pub(super) const FRAG_DF: u64 = 0x01;
pub(super) const FRAG_IS: u64 = 0x02;
pub(super) const FRAG_FIRST: u64 = 0x04;
pub(super) const FRAG_LAST: u64 = 0x08;

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
pub(super) fn frag4_ranges(ops: &[BitmaskOp]) -> Ranges {
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
pub(super) enum Frag6 {
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

pub(super) fn frag6_states(ops: &[BitmaskOp]) -> Vec<Frag6> {
    Frag6::all()
        .into_iter()
        .filter(|s| bitmask_matches(ops, s.bits()))
        .collect()
}

pub(super) fn has(rule_components: &[Component], f: impl Fn(&Component) -> bool) -> bool {
    rule_components.iter().any(f)
}

pub(super) fn prefix_offset_gap(gaps: &mut Gaps, c: &Component, afi: Afi, p: &Prefix) {
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
pub(super) fn ext_hex(a: &Action) -> String {
    hex::encode(a.to_ext_community().0)
}

/// A rate as a whole number, when it is one.
pub(super) fn whole(rate: f32) -> Option<u64> {
    (rate.fract() == 0.0 && (0.0..1.8e19).contains(&rate)).then_some(rate as u64)
}

pub(super) fn fragment_text(o: &BitmaskOp) -> String {
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

pub(super) fn value_list(r: &[(u64, u64)], sep: &str) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::flowspec::testing::route;

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
}
