//! `--format nftables`: `nft add rule inet filter input ...` lines.

use std::fmt::Write as _;
use std::net::Ipv6Addr;

use deflect_bgp::flowspec::{BitmaskOp, Component, FlowRoute, Prefix};
use deflect_bgp::iana::Afi;

use super::host::{Conj, MAX_RULES, frag6_header_alts, host_actions, product, protocol_ranges};
use super::terms::{
    Frag6, Test, bitmask_always, bitmask_matches, bitmask_terms, flag_names, frag4_ranges,
    frag6_states, ranges_of, test_of, whole,
};
use super::{Gaps, Unsupported};

/// An nft value, range or anonymous set, its numbers spelled by `num`.
pub(super) fn nft_set(r: &[(u64, u64)], num: impl Fn(u64) -> String) -> String {
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
    let comps = &route.rule.components();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::flowspec::testing::check;

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
}
