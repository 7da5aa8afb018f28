//! `neighbors`: each BGP neighbor, what it receives and how it takes RTBH routes.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use deflect_bgp::community::{Community, LargeCommunity};
use deflect_bgp::iana::Family;
use serde::Deserialize;
use serde_saphyr::{Location, Spanned};

use crate::diag::{positive_duration, unplaced};
use crate::peer::conn::SocketOptions;
use crate::peer::{Mode, Neighbor, PeerConfig, Rtbh};
use crate::route::Kind;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborConfig {
    /// Defaults to the address.
    pub name: Option<Spanned<String>>,
    pub address: Spanned<IpAddr>,
    pub remote_as: Spanned<u32>,
    #[serde(default = "default_port")]
    pub port: u16,
    pub local_address: Option<IpAddr>,
    #[serde(default)]
    pub passive: bool,
    pub md5_password: Option<Spanned<String>>,
    #[serde(default)]
    pub gtsm: bool,
    #[serde(default = "default_hold_time")]
    pub hold_time: Spanned<u16>,
    /// Wait between connection attempts (RFC 4271 ConnectRetryTimer), e.g. `10s`.
    pub connect_retry: Option<Spanned<String>>,
    /// Defaults to the families the `receives` kinds need.
    pub families: Option<Vec<Spanned<String>>>,
    /// Mitigation kinds this neighbor gets.
    #[serde(default = "default_receives")]
    pub receives: Spanned<Vec<Kind>>,
    /// Send FlowSpec NLRI of 240 octets and more (GoBGP 3.10 refuses them).
    #[serde(default)]
    pub long_flowspec: bool,
    pub rtbh: Option<Spanned<RtbhConfig>>,
}

fn default_port() -> u16 {
    179
}

fn default_hold_time() -> Spanned<u16> {
    unplaced(90)
}

fn default_receives() -> Spanned<Vec<Kind>> {
    unplaced(vec![Kind::Flowspec])
}

/// How this neighbor takes RTBH routes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RtbhConfig {
    pub next_hop_ipv4: Option<Spanned<IpAddr>>,
    pub next_hop_ipv6: Option<Spanned<IpAddr>>,
    /// Defaults to `[blackhole]` (RFC 7999).
    #[serde(default)]
    pub communities: Vec<Spanned<String>>,
    #[serde(default)]
    pub large_communities: Vec<Spanned<String>>,
}

/// What every neighbor shares: the speaker's identity and listening addresses.
#[derive(Debug, Clone, Copy)]
pub(super) struct Speaker<'a> {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub graceful_restart: u16,
    pub listen: &'a [Spanned<SocketAddr>],
}

/// Checks the neighbors and builds each one's peer settings.
pub(super) fn neighbors(
    list: &[NeighborConfig],
    speaker: Speaker<'_>,
    err: &mut dyn FnMut(&Location, String),
) -> Vec<Neighbor> {
    let mut neighbors = Vec::new();
    let mut addrs = BTreeSet::new();
    for n in list {
        let addr = n.address.value;
        if !addrs.insert((addr, n.port)) {
            err(
                &n.address.referenced,
                format!("neighbor {addr} port {} is configured twice", n.port),
            );
        }
        if n.remote_as.value == 0 {
            err(&n.remote_as.referenced, "remote_as 0 is reserved".into());
        }
        if n.hold_time.value == 1 || n.hold_time.value == 2 {
            err(
                &n.hold_time.referenced,
                "hold_time is 0 or at least 3 seconds (RFC 4271 §4.2)".into(),
            );
        }
        let receives: BTreeSet<Kind> = n.receives.value.iter().copied().collect();
        let families: BTreeSet<Family> = match &n.families {
                Some(list) => list
                    .iter()
                    .filter_map(|f| {
                        let fam = Family::from_name(&f.value);
                        if fam.is_none() {
                            err(&f.referenced, format!("unknown family {:?}; use ipv4-flowspec, ipv6-flowspec, ipv4-unicast or ipv6-unicast", f.value));
                        }
                        fam
                    })
                    .collect(),
                None => receives
                    .iter()
                    .flat_map(|k| match k {
                        Kind::Flowspec => [Family::Ipv4FlowSpec, Family::Ipv6FlowSpec],
                        Kind::Rtbh | Kind::SourceRtbh | Kind::Divert => {
                            [Family::Ipv4Unicast, Family::Ipv6Unicast]
                        }
                    })
                    .collect(),
            };
        if receives.contains(&Kind::Flowspec)
            && !families
                .iter()
                .any(|f| matches!(f, Family::Ipv4FlowSpec | Family::Ipv6FlowSpec))
        {
            err(&n.receives.referenced, "this neighbor receives flowspec but has no flowspec family; add ipv4-flowspec or ipv6-flowspec".into());
        }
        if receives.contains(&Kind::Divert)
            && !families
                .iter()
                .any(|f| matches!(f, Family::Ipv4Unicast | Family::Ipv6Unicast))
        {
            err(&n.receives.referenced, "this neighbor receives divert but has no unicast family; add ipv4-unicast or ipv6-unicast".into());
        }
        let mut rtbh = Rtbh::default();
        // S/RTBH routes (RFC 5635) go to the same discard next hop as RTBH ones, with the same
        // communities: the routers' uRPF loose check does the rest.
        if let Some(kind) = [Kind::Rtbh, Kind::SourceRtbh]
            .into_iter()
            .find(|k| receives.contains(k))
        {
            match &n.rtbh {
                None => err(
                    &n.address.referenced,
                    format!(
                        "neighbor {addr} receives {kind} but has no rtbh section with a next hop"
                    ),
                ),
                Some(r) => {
                    for (nh, v4) in [
                        (&r.value.next_hop_ipv4, true),
                        (&r.value.next_hop_ipv6, false),
                    ] {
                        if let Some(nh) = nh {
                            if nh.value.is_ipv4() != v4 {
                                err(
                                    &nh.referenced,
                                    format!(
                                        "{} is not an IPv{} address",
                                        nh.value,
                                        if v4 { 4 } else { 6 }
                                    ),
                                );
                            }
                        }
                    }
                    rtbh.next_hop_ipv4 = r.value.next_hop_ipv4.as_ref().map(|s| s.value);
                    rtbh.next_hop_ipv6 = r.value.next_hop_ipv6.as_ref().map(|s| s.value);
                    if rtbh.next_hop_ipv4.is_none() && rtbh.next_hop_ipv6.is_none() {
                        err(&r.referenced, "rtbh needs next_hop_ipv4 or next_hop_ipv6 (the discard next hop the router resolves to a null route)".into());
                    }
                    for c in &r.value.communities {
                        match c.value.parse::<Community>() {
                            Ok(c) => rtbh.communities.push(c),
                            Err(e) => err(
                                &c.referenced,
                                format!("{e}; write ASN:VALUE or blackhole, no-export"),
                            ),
                        }
                    }
                    if rtbh.communities.is_empty() {
                        rtbh.communities.push(Community::BLACKHOLE);
                    }
                    for c in &r.value.large_communities {
                        match c.value.parse::<LargeCommunity>() {
                            Ok(c) => rtbh.large_communities.push(c),
                            Err(e) => err(&c.referenced, e.to_string()),
                        }
                    }
                    if rtbh.next_hop_ipv4.is_some() && !families.contains(&Family::Ipv4Unicast)
                        || rtbh.next_hop_ipv6.is_some() && !families.contains(&Family::Ipv6Unicast)
                    {
                        err(&r.referenced, "an rtbh next hop is set for a family this neighbor does not have; add ipv4-unicast / ipv6-unicast to families".into());
                    }
                }
            }
        } else if let Some(r) = &n.rtbh {
            err(&r.referenced, "rtbh settings on a neighbor that receives neither rtbh nor source-rtbh; add one to receives or remove them".into());
        }
        if n.passive && speaker.listen.is_empty() {
            err(
                &n.address.referenced,
                "passive neighbor but deflect listens nowhere; add a listen address".into(),
            );
        }
        let mut peer = PeerConfig::new(addr, n.remote_as.value);
        peer.name = n
            .name
            .as_ref()
            .map_or_else(|| addr.to_string(), |s| s.value.clone());
        peer.port = n.port;
        peer.local_as = speaker.local_as;
        peer.router_id = speaker.router_id;
        peer.mode = if n.passive {
            Mode::Passive
        } else {
            Mode::Active
        };
        peer.hold_time = n.hold_time.value;
        if let Some(cr) = &n.connect_retry {
            if let Some(d) = positive_duration(cr, "connect_retry", "10s", err) {
                peer.connect_retry = d;
            }
        }
        peer.families = families;
        peer.graceful_restart = (speaker.graceful_restart > 0).then_some(speaker.graceful_restart);
        peer.max_flowspec_nlri_len = if n.long_flowspec { 4095 } else { 239 };
        peer.socket = SocketOptions {
            md5_password: n.md5_password.as_ref().map(|s| s.value.clone()),
            gtsm: n.gtsm,
            local_addr: n.local_address,
        };
        if let Some(pw) = &n.md5_password {
            if pw.value.len() > crate::sys::MD5_MAX_KEY_LEN {
                err(
                    &pw.referenced,
                    format!(
                        "md5_password is longer than {} bytes",
                        crate::sys::MD5_MAX_KEY_LEN
                    ),
                );
            }
        }
        neighbors.push(Neighbor {
            peer,
            receives,
            rtbh,
        });
    }
    let mut names = BTreeSet::new();
    for (n, c) in neighbors.iter().zip(list) {
        if !names.insert(n.peer.name.clone()) {
            let at = c
                .name
                .as_ref()
                .map_or(&c.address.referenced, |s| &s.referenced);
            err(at, format!("neighbor name {:?} is used twice", n.peer.name));
        }
    }
    neighbors
}
