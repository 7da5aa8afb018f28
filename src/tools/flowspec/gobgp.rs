//! `--format gobgp`: a `gobgp global rib ... add` command (GoBGP 3.x CLI).

use deflect_bgp::flowspec::{Action, Component, FlowRoute};

use super::terms::{
    FRAG_DF, FRAG_FIRST, FRAG_IS, FRAG_LAST, Test, bitmask_terms, family_name, flag_names,
    numeric_symbol, numeric_terms, prefix_offset_gap, test_of,
};
use super::{Gaps, Unsupported};

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
pub(super) const GOBGP_FRAG: [(u64, &str); 4] = [
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
    for c in &route.rule.components() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::flowspec::testing::check;

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
}
