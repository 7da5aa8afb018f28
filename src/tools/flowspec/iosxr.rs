//! `--format iosxr`: a class-map, a pbr policy-map and the `flowspec` service-policy (IOS-XR).

use std::fmt::Write as _;

use deflect_bgp::flowspec::{Action, Component, FlowRoute};
use deflect_bgp::iana::Afi;

use super::junos::{fragment_keywords, junos_tcp_flags};
use super::terms::{
    Test, bitmask_always, bitmask_terms, prefix_offset_gap, ranges_of, test_of, value_list, whole,
};
use super::{Gaps, Unsupported};

/// A `class-map type traffic`, a `policy-map type pbr` with the actions, and the `flowspec`
/// service-policy that originates it.
pub fn to_iosxr(route: &FlowRoute, name: &str) -> Result<String, Unsupported> {
    let mut gaps = Gaps::new("iosxr");
    let afi = route.rule.afi();
    let fam = if afi == Afi::Ipv4 { "ipv4" } else { "ipv6" };
    let mut s = format!("class-map type traffic match-all {name}\n");
    for c in &route.rule.components() {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::flowspec::testing::check;

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
}
