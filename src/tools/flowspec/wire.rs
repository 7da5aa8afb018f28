//! `--format hex`: the bytes deflect would announce.

use std::fmt::Write as _;

use deflect_bgp::flowspec::FlowRoute;
use deflect_bgp::rib::{AdjRibOut, RouteAttrs, RouteKey};

use super::terms::{ext_hex, family_name};
use crate::route::show_update;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::flowspec::testing::route;

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
}
