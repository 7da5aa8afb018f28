//! `--format iptables`: `iptables -A INPUT ...` (or `ip6tables`) lines.

use deflect_bgp::flowspec::{BitmaskOp, Component, FlowRoute};
use deflect_bgp::iana::Afi;

use super::host::{Conj, MAX_RULES, frag6_header_alts, host_actions, product, protocol_ranges};
use super::nftables::nft_set;
use super::terms::{
    Frag6, Test, bitmask_always, bitmask_terms, bits_of, flag_names, frag4_ranges, frag6_states,
    fragment_text, has, prefix_offset_gap, ranges_len, ranges_of, test_of,
};
use super::{Gaps, Unsupported};

fn ipt_protocol(v: u64, afi: Afi) -> String {
    match (v, afi) {
        (1, Afi::Ipv4) => "icmp".into(),
        (6, _) => "tcp".into(),
        (17, _) => "udp".into(),
        (58, Afi::Ipv6) => "ipv6-icmp".into(),
        (132, _) => "sctp".into(),
        _ => v.to_string(),
    }
}

/// A u32 value list (`a:b,c`), at most 10 ranges.
fn u32_values(r: &[(u64, u64)]) -> Option<String> {
    (r.len() <= 10).then(|| {
        r.iter()
            .map(|&(a, b)| {
                if a == b {
                    format!("{a:#x}")
                } else {
                    format!("{a:#x}:{b:#x}")
                }
            })
            .collect::<Vec<_>>()
            .join(",")
    })
}

/// `--dports`-style lists of at most 15 ports (a range counts 2), several when longer.
fn multiport_chunks(r: &[(u64, u64)]) -> Vec<String> {
    let mut chunks = Vec::new();
    let mut cur: Vec<String> = Vec::new();
    let mut slots = 0;
    for &(a, b) in r {
        let (item, n) = if a == b {
            (a.to_string(), 1)
        } else {
            (format!("{a}:{b}"), 2)
        };
        if slots + n > 15 {
            chunks.push(cur.join(","));
            cur.clear();
            slots = 0;
        }
        cur.push(item);
        slots += n;
    }
    if !cur.is_empty() {
        chunks.push(cur.join(","));
    }
    chunks
}

/// Matches for ports: `--dport 80`, `--dport 1024:65535`, `-m multiport --dports 80,443`.
fn ipt_ports(kind: &str, r: &[(u64, u64)]) -> Vec<Conj> {
    if !kind.is_empty() && r.len() == 1 {
        let (a, b) = r[0];
        let v = if a == b {
            a.to_string()
        } else {
            format!("{a}:{b}")
        };
        return vec![vec![format!("--{kind}port {v}")]];
    }
    multiport_chunks(r)
        .into_iter()
        .map(|list| vec![format!("-m multiport --{kind}ports {list}")])
        .collect()
}

const IPT_TCP: [(u64, &str); 6] = [
    (0x01, "FIN"),
    (0x02, "SYN"),
    (0x04, "RST"),
    (0x08, "PSH"),
    (0x10, "ACK"),
    (0x20, "URG"),
];

fn ipt_flags(v: u64) -> String {
    if v == 0 {
        "NONE".into()
    } else {
        flag_names(v, &IPT_TCP).0.join(",")
    }
}

/// `--tcp-flags MASK COMP` alternatives: each AND-term as (required, forbidden) bits, with "any"
/// and "not all" tests split into disjoint cases (bit 1 set; bit 1 clear and bit 2 set; ...).
fn ipt_tcp_flags(ops: &[BitmaskOp], gaps: &mut Gaps) -> Vec<Conj> {
    if let Some(o) = ops.iter().find(|o| o.value > 0x3f) {
        gaps.add(format!(
            "tcp-flags value {:#x} (iptables names FIN SYN RST PSH ACK URG only)",
            o.value
        ));
        return vec![vec![]];
    }
    if let [o] = ops {
        let f = ipt_flags(o.value);
        let single = match test_of(o) {
            Test::Any if o.value != 0 => Some(format!("! --tcp-flags {f} NONE")),
            Test::NotAll if o.value != 0 => Some(format!("! --tcp-flags {f} {f}")),
            _ => None,
        };
        if let Some(s) = single {
            return vec![vec![s]];
        }
    }
    let mut out: Vec<(u64, u64)> = Vec::new();
    for term in bitmask_terms(ops) {
        let mut cases: Vec<(u64, u64)> = vec![(0, 0)];
        for o in term {
            let mut next = Vec::new();
            for &(req, forb) in &cases {
                match test_of(o) {
                    Test::All => next.push((req | o.value, forb)),
                    Test::None => next.push((req, forb | o.value)),
                    Test::Any | Test::NotAll => {
                        let any = test_of(o) == Test::Any;
                        let mut before = 0;
                        for b in bits_of(o.value) {
                            next.push(if any {
                                (req | b, forb | before)
                            } else {
                                (req | before, forb | b)
                            });
                            before |= b;
                        }
                    }
                }
            }
            cases = next;
        }
        for c in cases {
            if c.0 & c.1 == 0 && !out.contains(&c) {
                out.push(c);
            }
        }
    }
    out.into_iter()
        .map(|(req, forb)| {
            if req | forb == 0 {
                vec![]
            } else {
                vec![format!(
                    "--tcp-flags {} {}",
                    ipt_flags(req | forb),
                    ipt_flags(req)
                )]
            }
        })
        .collect()
}

/// `-m length --length a:b`, one rule per range, or `! --length` for all but one range.
fn ipt_length(r: &[(u64, u64)]) -> Vec<Conj> {
    let item = |a: u64, b: u64| {
        if a == b {
            a.to_string()
        } else {
            format!("{a}:{b}")
        }
    };
    if let [(0, a), (b, 0xffff)] = r {
        return vec![vec![format!("-m length ! --length {}", item(a + 1, b - 1))]];
    }
    r.iter()
        .map(|&(a, b)| vec![format!("-m length --length {}", item(a, b))])
        .collect()
}

/// `iptables -A INPUT ...` (or `ip6tables`) lines for a host-local drop or rate limit.
pub fn to_iptables(route: &FlowRoute, name: &str) -> Result<String, Unsupported> {
    let mut gaps = Gaps::new("iptables");
    let afi = route.rule.afi();
    let cmd = if afi == Afi::Ipv4 {
        "iptables"
    } else {
        "ip6tables"
    };
    let comps = &route.rule.components();
    let mut notes: Vec<String> = Vec::new();
    let mut alts: Vec<Conj> = vec![vec![]];
    let add = |alts: &mut Vec<Conj>, more: Vec<Conj>| *alts = product(alts, &more);
    let needs_named_protocol = has(comps, |c| {
        matches!(
            c,
            Component::Port(_)
                | Component::DestinationPort(_)
                | Component::SourcePort(_)
                | Component::TcpFlags(_)
                | Component::IcmpType(_)
                | Component::IcmpCode(_)
        )
    });
    // Addresses first, then the protocol, then the rest in type order.
    for c in comps {
        if let Component::DestinationPrefix(p) | Component::SourcePrefix(p) = c {
            prefix_offset_gap(&mut gaps, c, afi, p);
            let flag = if matches!(c, Component::DestinationPrefix(_)) {
                "-d"
            } else {
                "-s"
            };
            add(&mut alts, vec![vec![format!("{flag} {}", p.net)]]);
        }
    }
    match protocol_ranges(route) {
        Ok(Some(r)) => {
            let n = ranges_len(&r);
            // All protocols but one: `! -p N`.
            let all_but = match r.as_slice() {
                [(0, a), (b, 0xff)] if a + 2 == *b && !needs_named_protocol => Some(a + 1),
                _ => None,
            };
            let protos: Vec<Conj> = if let Some(p) = all_but {
                vec![vec![format!("! -p {}", ipt_protocol(p, afi))]]
            } else if n <= 8 {
                r.iter()
                    .flat_map(|&(a, b)| a..=b)
                    .map(|v| vec![format!("-p {}", ipt_protocol(v, afi))])
                    .collect()
            } else if afi == Afi::Ipv4 && !needs_named_protocol {
                match u32_values(&r) {
                    Some(v) => vec![vec![format!("-m u32 --u32 \"8>>16&0xFF={v}\"")]],
                    None => {
                        gaps.add("protocol (too many ranges for one u32 test)");
                        vec![vec![]]
                    }
                }
            } else {
                gaps.add(format!(
                    "{} {} ({n} protocols; ip6tables takes one -p per rule)",
                    comps
                        .iter()
                        .find(|c| matches!(c, Component::Protocol(_)))
                        .map_or("next-header", |c| c.keyword(afi)),
                    nft_set(&r, |v| v.to_string())
                ));
                vec![vec![]]
            };
            add(&mut alts, protos);
        }
        Ok(None) => {}
        Err(e) => gaps.add(e),
    }
    let numeric = |c: &Component| ranges_of(c.numeric().unwrap_or_default(), c.field_max());
    // Whether one packet may match several of the rules (OR-ed TCP flag terms).
    let mut overlap = false;
    let icmp_type = comps.iter().find(|c| matches!(c, Component::IcmpType(_)));
    let icmp_code = comps.iter().find(|c| matches!(c, Component::IcmpCode(_)));
    for c in comps {
        let more: Vec<Conj> = match c {
            Component::DestinationPrefix(_)
            | Component::SourcePrefix(_)
            | Component::Protocol(_)
            | Component::IcmpCode(_) => continue,
            Component::TcpFlags(ops) | Component::Fragment(ops) if bitmask_always(ops) => continue,
            Component::Port(_) => ipt_ports("", &numeric(c)),
            Component::DestinationPort(_) => ipt_ports("d", &numeric(c)),
            Component::SourcePort(_) => ipt_ports("s", &numeric(c)),
            Component::IcmpType(_) => {
                let types = numeric(c);
                let codes = icmp_code.map(numeric);
                let n = ranges_len(&types) * codes.as_ref().map_or(1, |r| ranges_len(r));
                if n > 16 {
                    gaps.add(format!(
                        "icmp-type/icmp-code ({n} combinations; --icmp-type takes one type and code)"
                    ));
                    continue;
                }
                let opt = if afi == Afi::Ipv4 {
                    "--icmp-type"
                } else {
                    "--icmpv6-type"
                };
                let mut out = Vec::new();
                for t in types.iter().flat_map(|&(a, b)| a..=b) {
                    match &codes {
                        None => out.push(vec![format!("{opt} {t}")]),
                        Some(codes) => {
                            for k in codes.iter().flat_map(|&(a, b)| a..=b) {
                                out.push(vec![format!("{opt} {t}/{k}")]);
                            }
                        }
                    }
                }
                out
            }
            Component::TcpFlags(ops) => {
                overlap |= bitmask_terms(ops).len() > 1;
                ipt_tcp_flags(ops, &mut gaps)
            }
            Component::PacketLength(_) => {
                notes.push("# approximate: the length match sees the packet as this host does (GRO can merge TCP segments into one longer packet)".into());
                ipt_length(&numeric(c))
            }
            Component::Dscp(_) => {
                let r = numeric(c);
                let shift = if afi == Afi::Ipv4 { 18 } else { 22 };
                match (r.as_slice(), u32_values(&r)) {
                    ([(a, b)], _) if a == b => vec![vec![format!("-m dscp --dscp {a}")]],
                    (_, Some(v)) => vec![vec![format!("-m u32 --u32 \"0>>{shift}&0x3F={v}\"")]],
                    (_, None) => {
                        gaps.add("dscp (too many ranges for one u32 test)");
                        continue;
                    }
                }
            }
            Component::FlowLabel(_) => match u32_values(&numeric(c)) {
                Some(v) => vec![vec![format!("-m u32 --u32 \"0&0xFFFFF={v}\"")]],
                None => {
                    gaps.add("flow-label (too many ranges for one u32 test)");
                    continue;
                }
            },
            Component::Fragment(ops) => {
                notes.push("# approximate: with conntrack loaded the kernel reassembles fragments before INPUT".into());
                ipt_fragment(afi, ops, &mut gaps)
            }
        };
        add(&mut alts, more);
    }
    if icmp_code.is_some() && icmp_type.is_none() {
        gaps.add("icmp-code without icmp-type (--icmp-type needs the type)");
    }
    if alts.len() > MAX_RULES {
        gaps.add(format!("the rule would need {} iptables rules", alts.len()));
    }
    let h = host_actions(route, &mut gaps);
    notes.extend(h.notes.iter().cloned());
    let limit_name: String = name.chars().take(15).collect();
    let mut targets: Vec<(&str, String)> = Vec::new();
    if h.sample {
        notes.push("# approximate: sampling becomes logging every matching packet (NFLOG)".into());
        targets.push(("", format!("-j NFLOG --nflog-prefix {limit_name}")));
    }
    if let Some(d) = h.mark {
        targets.push(("-t mangle ", format!("-j DSCP --set-dscp {d}")));
    }
    let mut limited = false;
    if h.discard {
        targets.push(("", "-j DROP".into()));
    } else if let Some(r) = h.rate_bytes {
        let n = r.round() as u64;
        if n == 0 || n > 34_359_738_336 {
            gaps.add(format!(
                "rate-bytes {r} (hashlimit takes 1 to 34359738336 bytes/s)"
            ));
        }
        notes.push(format!("# approximate: hashlimit is a token bucket and keeps byte rates in coarse steps (iptables -S shows the rate it kept); rules named {limit_name} share one bucket"));
        targets.push((
            "",
            format!("-m hashlimit --hashlimit-above {n}b/s --hashlimit-name {limit_name} -j DROP"),
        ));
        limited = true;
    } else if let Some(r) = h.rate_packets {
        let n = r.round() as u64;
        if n == 0 || n > 1_000_000 {
            gaps.add(format!(
                "rate-packets {r} (hashlimit takes 1 to 1000000 packets/s)"
            ));
        }
        notes.push(format!("# approximate: hashlimit is a token bucket (burst 5); rules named {limit_name} share one bucket"));
        targets.push((
            "",
            format!("-m hashlimit --hashlimit-above {n}/sec --hashlimit-name {limit_name} -j DROP"),
        ));
        limited = true;
    } else {
        notes.push("# no discard or rate action: the rule only counts".into());
        targets.push(("", String::new()));
    }
    if limited && overlap {
        notes.push(format!(
            "# approximate: a packet matching several of the {} rules counts in each",
            alts.len()
        ));
    }
    let mut s = String::new();
    for n in notes {
        s.push_str(&n);
        s.push('\n');
    }
    for (table, target) in &targets {
        for conj in &alts {
            let mut words: Vec<String> = vec![format!("{cmd} {table}-A INPUT")];
            words.extend(conj.iter().cloned());
            if !target.is_empty() {
                words.push(target.clone());
            }
            s.push_str(&words.join(" "));
            s.push('\n');
        }
    }
    gaps.finish(s)
}

fn ipt_fragment(afi: Afi, ops: &[BitmaskOp], gaps: &mut Gaps) -> Vec<Conj> {
    match afi {
        Afi::Ipv4 => {
            let r = frag4_ranges(ops);
            if r == [(0, 0x7fff)] {
                return vec![vec![]];
            }
            match u32_values(&r) {
                Some(v) if !r.is_empty() => vec![vec![format!("-m u32 --u32 \"4&0x7FFF={v}\"")]],
                _ => {
                    gaps.add("fragment (no IPv4 packet has these fragment bits)");
                    vec![vec![]]
                }
            }
        }
        Afi::Ipv6 => {
            let states = frag6_states(ops);
            let missing = states.contains(&Frag6::Missing);
            let headers: Vec<(bool, bool)> = states
                .iter()
                .filter_map(|s| match *s {
                    Frag6::Header { mf, offset_zero } => Some((mf, offset_zero)),
                    Frag6::Missing => None,
                })
                .collect();
            if missing && headers.len() == 4 {
                return vec![vec![]];
            }
            if headers.len() != 4 && headers.iter().any(|(_, zero)| !zero) {
                let text: Vec<String> = ops.iter().map(fragment_text).collect();
                gaps.add(format!(
                    "fragment {} (ip6tables' frag match cannot test for a non-zero fragment offset)",
                    text.join(",")
                ));
                return vec![vec![]];
            }
            let mut alts: Vec<Conj> = Vec::new();
            if missing {
                alts.push(vec!["-m ipv6header ! --header ipv6-frag --soft".into()]);
            }
            let mut frag = frag6_header_alts(
                &headers,
                |mf| if mf { "--fragmore" } else { "--fraglast" }.to_string(),
                |_| "--fragfirst".to_string(),
                "-m ipv6header --header ipv6-frag --soft",
            );
            for a in &mut frag {
                if a.iter().any(|w| w.starts_with("--frag")) {
                    let joined = a.join(" ");
                    *a = vec![format!("-m frag {joined}")];
                }
            }
            alts.extend(frag);
            alts
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tools::flowspec::testing::check;

    #[test]
    fn iptables_rules() {
        check(
            "iptables",
            |r| to_iptables(r, "r1"),
            &[
                (
                    "dst 203.0.113.7/32 proto udp sport 123 then discard",
                    "iptables -A INPUT -d 203.0.113.7/32 -p udp --sport 123 -j DROP\n",
                ),
                (
                    "dst 2001:db8::1/128 next-header tcp dport 80,443 tcp-flags syn&!~ack then rate-bytes 125000",
                    "# approximate: hashlimit is a token bucket and keeps byte rates in coarse steps (iptables -S shows the rate it kept); rules named r1 share one bucket\nip6tables -A INPUT -d 2001:db8::1/128 -p tcp -m multiport --dports 80,443 --tcp-flags SYN,ACK SYN -m hashlimit --hashlimit-above 125000b/s --hashlimit-name r1 -j DROP\n",
                ),
                (
                    "dst 192.0.2.0/24 port 53 pkt-len !=100 dscp 10..12 fragment first-frag then rate-packets 100 mark 8",
                    "# approximate: the length match sees the packet as this host does (GRO can merge TCP segments into one longer packet)\n# approximate: with conntrack loaded the kernel reassembles fragments before INPUT\n# approximate: hashlimit is a token bucket (burst 5); rules named r1 share one bucket\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p tcp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -j DSCP --set-dscp 8\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p udp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -j DSCP --set-dscp 8\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p sctp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -j DSCP --set-dscp 8\niptables -A INPUT -d 192.0.2.0/24 -p tcp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -m hashlimit --hashlimit-above 100/sec --hashlimit-name r1 -j DROP\niptables -A INPUT -d 192.0.2.0/24 -p udp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -m hashlimit --hashlimit-above 100/sec --hashlimit-name r1 -j DROP\niptables -A INPUT -d 192.0.2.0/24 -p sctp -m multiport --ports 53 -m length ! --length 100 -m u32 --u32 \"0>>18&0x3F=0xa:0xc\" -m u32 --u32 \"4&0x7FFF=0x2000,0x6000\" -m hashlimit --hashlimit-above 100/sec --hashlimit-name r1 -j DROP\n",
                ),
                (
                    "proto tcp tcp-flags ~syn+ack,fin",
                    "# no discard or rate action: the rule only counts\niptables -A INPUT -p tcp --tcp-flags SYN SYN\niptables -A INPUT -p tcp --tcp-flags SYN,ACK ACK\niptables -A INPUT -p tcp --tcp-flags FIN FIN\n",
                ),
                (
                    "proto tcp tcp-flags !=syn+ack then discard",
                    "iptables -A INPUT -p tcp ! --tcp-flags SYN,ACK SYN,ACK -j DROP\n",
                ),
                (
                    "dst 2001:db8::1/128 icmp-type 128 icmp-code 0 fragment !~is-frag flow-label <100 then discard",
                    "# approximate: with conntrack loaded the kernel reassembles fragments before INPUT\nip6tables -A INPUT -d 2001:db8::1/128 -p ipv6-icmp --icmpv6-type 128/0 -m ipv6header ! --header ipv6-frag --soft -m u32 --u32 \"0&0xFFFFF=0x0:0x63\" -j DROP\nip6tables -A INPUT -d 2001:db8::1/128 -p ipv6-icmp --icmpv6-type 128/0 -m frag --fragfirst -m u32 --u32 \"0&0xFFFFF=0x0:0x63\" -j DROP\n",
                ),
                (
                    "proto !=6 then discard",
                    "iptables -A INPUT ! -p tcp -j DROP\n",
                ),
                (
                    "next-header 58 icmp-type 128 fragment first-frag,last-frag&!~is-frag then rate-bytes 100.5",
                    "# approximate: with conntrack loaded the kernel reassembles fragments before INPUT\n# approximate: hashlimit is a token bucket and keeps byte rates in coarse steps (iptables -S shows the rate it kept); rules named r1 share one bucket\nip6tables -A INPUT -p ipv6-icmp --icmpv6-type 128 -m frag --fragfirst --fragmore -m hashlimit --hashlimit-above 101b/s --hashlimit-name r1 -j DROP\n",
                ),
                (
                    "dst 192.0.2.0/24 tcp-flags !=syn+ack&~fin+ack fragment ~df+last-frag then rate-packets 3 mark 63 traffic-action sample+continue",
                    "# approximate: with conntrack loaded the kernel reassembles fragments before INPUT\n# traffic-action sample+continue: the terminal bit orders FlowSpec rules on a router; a host filter evaluates its own rule order\n# approximate: sampling becomes logging every matching packet (NFLOG)\n# approximate: hashlimit is a token bucket (burst 5); rules named r1 share one bucket\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN FIN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j NFLOG --nflog-prefix r1\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK ACK -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j NFLOG --nflog-prefix r1\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK FIN,SYN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j NFLOG --nflog-prefix r1\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN FIN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j DSCP --set-dscp 63\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK ACK -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j DSCP --set-dscp 63\niptables -t mangle -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK FIN,SYN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -j DSCP --set-dscp 63\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN FIN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -m hashlimit --hashlimit-above 3/sec --hashlimit-name r1 -j DROP\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK ACK -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -m hashlimit --hashlimit-above 3/sec --hashlimit-name r1 -j DROP\niptables -A INPUT -d 192.0.2.0/24 -p tcp --tcp-flags FIN,SYN,ACK FIN,SYN -m u32 --u32 \"4&0x7FFF=0x1:0x1fff,0x4000:0x7fff\" -m hashlimit --hashlimit-above 3/sec --hashlimit-name r1 -j DROP\n",
                ),
                (
                    "proto !=6&!=17 dscp 10,12..14",
                    "# no discard or rate action: the rule only counts\niptables -A INPUT -m u32 --u32 \"8>>16&0xFF=0x0:0x5,0x7:0x10,0x12:0xff\" -m u32 --u32 \"0>>18&0x3F=0xa,0xc:0xe\"\n",
                ),
                (
                    "dst 198.51.100.9/32 tcp-flags ~fin+syn,ack then rate-bytes 1000",
                    "# approximate: hashlimit is a token bucket and keeps byte rates in coarse steps (iptables -S shows the rate it kept); rules named r1 share one bucket\n# approximate: a packet matching several of the 3 rules counts in each\niptables -A INPUT -d 198.51.100.9/32 -p tcp --tcp-flags FIN FIN -m hashlimit --hashlimit-above 1000b/s --hashlimit-name r1 -j DROP\niptables -A INPUT -d 198.51.100.9/32 -p tcp --tcp-flags FIN,SYN SYN -m hashlimit --hashlimit-above 1000b/s --hashlimit-name r1 -j DROP\niptables -A INPUT -d 198.51.100.9/32 -p tcp --tcp-flags ACK ACK -m hashlimit --hashlimit-above 1000b/s --hashlimit-name r1 -j DROP\n",
                ),
                (
                    "dst 2001:db8::1/128 tcp-flags ece fragment is-frag then redirect 192.0.2.1:1",
                    "not expressible in iptables: tcp-flags value 0x40 (iptables names FIN SYN RST PSH ACK URG only)\nnot expressible in iptables: fragment is-frag (ip6tables' frag match cannot test for a non-zero fragment offset)\nnot expressible in iptables: redirect 192.0.2.1:1 (a redirect to a VRF is a router's forwarding decision)\n",
                ),
                (
                    "dst 192.0.2.1/32 icmp-code 3 then discard",
                    "not expressible in iptables: icmp-code without icmp-type (--icmp-type needs the type)\n",
                ),
            ],
        );
    }
}
