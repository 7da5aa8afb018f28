//! `--format exabgp`: a `flow { route ... }` block (ExaBGP 4.x).

use std::fmt::Write as _;

use deflect_bgp::flowspec::{Action, Component, FlowRoute};
use deflect_bgp::iana::Afi;

use super::gobgp::GOBGP_FRAG;
use super::terms::{
    Test, bitmask_terms, ext_hex, flag_names, has, numeric_symbol, numeric_terms,
    prefix_offset_gap, test_of, whole,
};
use super::{Gaps, Unsupported};

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
    let comps = &route.rule.components();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::flowspec::testing::check;

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
}
