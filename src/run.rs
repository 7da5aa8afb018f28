//! `deflect run`: the speaker with neighbors and routes given on the command line.
//!
//! Until the controller's YAML configuration exists, this is how an operator (and the lab) drives the
//! speaker by hand. With no `--peer`, nothing is sent anywhere: the UPDATE messages each route would
//! produce are logged in hex instead.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::str::FromStr;
use std::sync::Arc;

use bytes::BytesMut;
use clap::Args;
use deflect_bgp::community::{Community, LargeCommunity};
use deflect_bgp::flowspec::FlowRoute;
use deflect_bgp::iana::Family;
use deflect_bgp::message::CodecCtx;
use deflect_bgp::rib::{AdjRibOut, RouteAttrs, RouteKey, SessionCtx};
use ipnet::IpNet;
use tracing::{error, info, warn};

use crate::peer::{Mode, PeerConfig};
use crate::speaker::Speaker;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Our AS number.
    #[arg(long, default_value_t = 65000)]
    pub local_as: u32,
    /// Our BGP identifier.
    #[arg(long, default_value = "192.0.2.1")]
    pub router_id: Ipv4Addr,
    /// Address and port to accept connections from passive (and active) peers on; repeatable.
    #[arg(long = "listen")]
    pub listen: Vec<SocketAddr>,
    /// A neighbor: ADDR[:PORT]@AS[,passive|,active][,md5=PASSWORD][,gtsm][,hold=SECONDS]
    /// [,families=ipv4-flowspec+ipv6-flowspec+ipv4-unicast+ipv6-unicast][,long-flowspec][,local=ADDR].
    #[arg(long = "peer")]
    pub peers: Vec<PeerSpec>,
    /// A FlowSpec route in deflect's rule syntax, e.g. 'dst 192.0.2.7/32 proto udp sport 123 then discard'.
    #[arg(long = "flow")]
    pub flows: Vec<String>,
    /// An RTBH route: 'PREFIX next-hop ADDR [community C]... [large-community G:L1:L2]...';
    /// community 65535:666 (blackhole) is added when no community is given.
    #[arg(long = "rtbh")]
    pub rtbh: Vec<String>,
    /// Graceful-restart time advertised to peers (RFC 4724), seconds; 0 disables graceful restart.
    #[arg(long, default_value_t = 120)]
    pub graceful_restart: u16,
}

/// A `--peer` value.
#[derive(Debug, Clone)]
pub struct PeerSpec(pub PeerConfig);

impl FromStr for PeerSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.split(',');
        let head = parts.next().unwrap_or_default();
        let (addr, asn) = head.split_once('@').ok_or("expected ADDR[:PORT]@AS")?;
        let (ip, port) = match addr.parse::<SocketAddr>() {
            Ok(sa) => (sa.ip(), sa.port()),
            Err(_) => (
                addr.parse::<IpAddr>()
                    .map_err(|e| format!("address {addr:?}: {e}"))?,
                179,
            ),
        };
        let remote_as: u32 = asn
            .parse()
            .map_err(|_| format!("AS {asn:?} is not a number"))?;
        let mut cfg = PeerConfig::new(ip, remote_as);
        cfg.port = port;
        if port != 179 {
            cfg.name = SocketAddr::new(ip, port).to_string();
        }
        for p in parts {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            match k {
                "passive" => cfg.mode = Mode::Passive,
                "active" => cfg.mode = Mode::Active,
                "md5" => cfg.socket.md5_password = Some(v.to_string()),
                "gtsm" => cfg.socket.gtsm = true,
                "local" => {
                    cfg.socket.local_addr = Some(v.parse().map_err(|e| format!("local={v}: {e}"))?)
                }
                "hold" => {
                    cfg.hold_time = match v.parse() {
                        Ok(h) if h == 0 || h >= 3 => h,
                        _ => {
                            return Err(format!(
                                "hold={v}: the hold time is 0 or 3..=65535 seconds (RFC 4271 §4.2)"
                            ));
                        }
                    }
                }
                "long-flowspec" => cfg.max_flowspec_nlri_len = 4095,
                "families" => {
                    let mut set = BTreeSet::new();
                    for f in v.split('+') {
                        set.insert(Family::from_name(f).ok_or_else(|| {
                            format!("unknown family {f:?}: use ipv4-flowspec, ipv6-flowspec, ipv4-unicast, ipv6-unicast")
                        })?);
                    }
                    cfg.families = set;
                }
                _ => return Err(format!("unknown peer option {k:?}")),
            }
        }
        Ok(PeerSpec(cfg))
    }
}

/// Parses an `--rtbh` value.
pub fn parse_rtbh(s: &str) -> Result<(RouteKey, RouteAttrs), String> {
    let mut words = s.split_whitespace();
    let prefix: IpNet = words
        .next()
        .ok_or("expected a prefix")?
        .parse()
        .map_err(|e| format!("prefix: {e}"))?;
    if prefix.trunc() != prefix {
        return Err(format!(
            "prefix {prefix} has host bits set; did you mean {}?",
            prefix.trunc()
        ));
    }
    let mut attrs = RouteAttrs::default();
    while let Some(w) = words.next() {
        let v = words.next().ok_or_else(|| format!("{w} needs a value"))?;
        match w {
            "next-hop" => {
                attrs.next_hop = Some(v.parse().map_err(|e| format!("next-hop {v}: {e}"))?)
            }
            "community" => attrs
                .communities
                .push(v.parse::<Community>().map_err(|e| e.to_string())?),
            "large-community" => attrs
                .large_communities
                .push(v.parse::<LargeCommunity>().map_err(|e| e.to_string())?),
            _ => {
                return Err(format!(
                    "unknown word {w:?}: expected next-hop, community or large-community"
                ));
            }
        }
    }
    if attrs.communities.is_empty() {
        attrs.communities.push(Community::BLACKHOLE);
    }
    let key = RouteKey::Unicast(prefix);
    AdjRibOut::check(&key, &attrs).map_err(|e| e.to_string())?;
    Ok((key, attrs))
}

/// Parses a `--flow` value.
pub fn parse_flow(s: &str) -> Result<(RouteKey, RouteAttrs), String> {
    let route = FlowRoute::from_str(s).map_err(|e| e.to_string())?;
    let attrs = RouteAttrs {
        ext_communities: route.actions.iter().map(|a| a.to_ext_community()).collect(),
        ..RouteAttrs::default()
    };
    Ok((RouteKey::FlowSpec(route.rule), attrs))
}

fn routes(args: &RunArgs) -> Result<Vec<(RouteKey, RouteAttrs)>, String> {
    let mut out = Vec::new();
    for f in &args.flows {
        out.push(parse_flow(f).map_err(|e| format!("--flow {f:?}: {e}"))?);
    }
    for r in &args.rtbh {
        out.push(parse_rtbh(r).map_err(|e| format!("--rtbh {r:?}: {e}"))?);
    }
    Ok(out)
}

pub fn main(args: RunArgs) -> ExitCode {
    if args.listen.is_empty() {
        if let Some(p) = args.peers.iter().find(|p| p.0.mode == Mode::Passive) {
            error!(
                "peer {} is passive but deflect listens nowhere: add --listen ADDR:PORT",
                p.0.name
            );
            return ExitCode::from(2);
        }
    }
    let routes = match routes(&args) {
        Ok(r) => r,
        Err(e) => {
            error!("{e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        if args.peers.is_empty() {
            info!("no peers configured: announcements are shown, not sent");
            show_updates(&args, &routes);
        }
        let peers = args
            .peers
            .iter()
            .map(|p| {
                let mut c = p.0.clone();
                c.local_as = args.local_as;
                c.router_id = args.router_id;
                c.graceful_restart = (args.graceful_restart > 0).then_some(args.graceful_restart);
                c
            })
            .collect();
        let speaker = match Speaker::start(peers, &args.listen).await {
            Ok(s) => s,
            Err(e) => {
                error!("cannot start the speaker: {e}");
                return ExitCode::FAILURE;
            }
        };
        for (k, a) in routes {
            speaker.set(k, Arc::new(a)).await;
        }
        wait_for_signal().await;
        info!("shutting down: sending Cease to every peer");
        speaker.shutdown("deflect is shutting down").await;
        ExitCode::SUCCESS
    })
}

/// Logs the UPDATEs an eBGP peer with every family would receive.
fn show_updates(args: &RunArgs, routes: &[(RouteKey, RouteAttrs)]) {
    let mut rib = AdjRibOut::new();
    for (k, a) in routes {
        if let Err(e) = rib.set(k.clone(), Arc::new(a.clone())) {
            warn!("{e}");
        }
    }
    rib.session_up(SessionCtx {
        local_as: args.local_as,
        ebgp: true,
        codec: CodecCtx {
            four_octet_as: true,
            extended_message: false,
        },
        families: Family::ALL.into_iter().collect(),
        max_flowspec_nlri_len: 239,
    });
    let mut out = BytesMut::new();
    while rib.drain(&mut out, 1) > 0 {
        let msg = out.split();
        info!(len = msg.len(), "UPDATE {}", hex_string(&msg));
    }
}

fn hex_string(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers, run until killed.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_specs_parse_with_their_options_and_refuse_nonsense() {
        let p: PeerSpec =
            "192.0.2.1:1179@65001,passive,md5=pw,gtsm,hold=30,families=ipv4-flowspec+ipv6-flowspec"
                .parse()
                .unwrap();
        let c = p.0;
        assert_eq!(
            (c.remote.to_string(), c.port, c.remote_as),
            ("192.0.2.1".into(), 1179, 65001)
        );
        assert_eq!(c.name, "192.0.2.1:1179");
        assert_eq!(c.mode, Mode::Passive);
        assert_eq!(c.socket.md5_password.as_deref(), Some("pw"));
        assert!(c.socket.gtsm);
        assert_eq!(c.hold_time, 30);
        assert_eq!(c.families.len(), 2);
        let v6: PeerSpec = "2001:db8::1@65001".parse().unwrap();
        assert_eq!(v6.0.port, 179);
        for bad in [
            "192.0.2.1",
            "192.0.2.1@x",
            "192.0.2.1@1,hold=2",
            "192.0.2.1@1,families=ipv9",
            "192.0.2.1@1,frob",
        ] {
            assert!(bad.parse::<PeerSpec>().is_err(), "{bad}");
        }
    }

    #[test]
    fn rtbh_routes_default_to_blackhole_and_check_their_next_hop() {
        let (k, a) = parse_rtbh("192.0.2.9/32 next-hop 192.0.2.66").unwrap();
        assert_eq!(k, RouteKey::Unicast("192.0.2.9/32".parse().unwrap()));
        assert_eq!(a.communities, vec![Community::BLACKHOLE]);
        let (_, a) = parse_rtbh(
            "2001:db8::9/128 next-hop 2001:db8::66 community 65000:666 large-community 65000:1:2",
        )
        .unwrap();
        assert_eq!(a.communities, vec![Community::new(65000, 666)]);
        assert_eq!(a.large_communities.len(), 1);
        assert!(parse_rtbh("192.0.2.9/32").unwrap_err().contains("next hop"));
        assert!(
            parse_rtbh("192.0.2.9/24 next-hop 192.0.2.66")
                .unwrap_err()
                .contains("host bits")
        );
        assert!(parse_rtbh("192.0.2.9/32 next-hop 2001:db8::1").is_err());
    }
}
