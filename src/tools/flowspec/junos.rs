//! `--format junos`: `set routing-options flow route ...` commands.

use deflect_bgp::flowspec::{Action, BitmaskOp, Component, FlowRoute};
use deflect_bgp::iana::Afi;

use super::terms::{
    FRAG_DF, FRAG_FIRST, FRAG_IS, FRAG_LAST, Test, bitmask_always, bitmask_terms, bits_of,
    fragment_text, prefix_offset_gap, ranges_of, test_of, value_list, whole,
};
use super::{Gaps, Unsupported};

const JUNOS_TCP: [(u64, &str); 6] = [
    (0x01, "fin"),
    (0x02, "syn"),
    (0x04, "rst"),
    (0x08, "push"),
    (0x10, "ack"),
    (0x20, "urgent"),
];

/// A Junos bit-field expression for TCP flags: `syn & !ack`, `(syn | ack)`.
pub(super) fn junos_tcp_flags(ops: &[BitmaskOp], gaps: &mut Gaps) -> String {
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
pub(super) fn fragment_keywords(
    ops: &[BitmaskOp],
    gaps: &mut Gaps,
    target: &str,
) -> Vec<&'static str> {
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
    for c in &route.rule.components() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::flowspec::testing::check;

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
}
