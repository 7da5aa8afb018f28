//! `--format bird`: a `route flow4 { ... }` (or `flow6`) for a static protocol (BIRD 2).

use std::fmt::Write as _;

use deflect_bgp::flowspec::{BitmaskOp, Component, FlowRoute, NumericOp};
use deflect_bgp::iana::Afi;

use super::terms::{
    FRAG_DF, FRAG_FIRST, FRAG_IS, FRAG_LAST, Test, fragment_text, numeric_symbol, numeric_terms,
    prefix_offset_gap, test_of,
};
use super::{Gaps, Unsupported};

/// A `route flow4 { ... };` (or `flow6`) for a static protocol with a flow4 (flow6) channel, the
/// actions set as the exact extended communities (BIRD 2).
pub fn to_bird(route: &FlowRoute) -> Result<String, Unsupported> {
    let mut gaps = Gaps::new("bird");
    let afi = route.rule.afi();
    let mut parts = Vec::new();
    for c in &route.rule.components() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::flowspec::testing::check;

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
}
