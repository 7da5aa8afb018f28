//! Two deflect speakers peering with each other over loopback TCP.
//!
//! Speaker A originates routes; speaker B (which, like every deflect speaker, only counts what it
//! receives) shows what arrived through its peer status. Each test uses its own 127.0.x.y addresses,
//! and every wait is a bounded poll of a status watch.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use deflect::peer::{Mode, PeerConfig, PeerHandle, PeerStatus};
use deflect::route::{parse_flow, parse_rtbh};
use deflect::speaker::Speaker;
use deflect_bgp::flowspec::text::parse_flow_route;
use deflect_bgp::flowspec::{FlowRoute, RuleOptions};
use deflect_bgp::fsm::State;
use deflect_bgp::iana::Family;
use deflect_bgp::rib::{RouteAttrs, RouteKey};

const WAIT: Duration = Duration::from_secs(10);

/// A speaker driven route by route (no mitigation set, no store behind it): its table is complete
/// as it stands, so End-of-RIB follows the routes at once.
async fn start(peers: Vec<PeerConfig>, listen: &[SocketAddr]) -> Speaker {
    let s = Speaker::start(peers, listen).await.unwrap();
    s.table_complete().await;
    s
}

fn ip(s: &str) -> IpAddr {
    IpAddr::from_str(s).unwrap()
}

/// Waits until `pred` holds for the peer's status, or fails with the last status seen.
async fn wait_until(
    peer: &PeerHandle,
    what: &str,
    pred: impl Fn(&PeerStatus) -> bool,
) -> PeerStatus {
    let mut w = peer.watch();
    let res = tokio::time::timeout(WAIT, async {
        loop {
            let s = w.borrow_and_update().clone();
            if pred(&s) {
                return s;
            }
            if w.changed().await.is_err() {
                return w.borrow().clone();
            }
        }
    })
    .await;
    match res {
        Ok(s) if pred(&s) => s,
        _ => panic!(
            "timed out waiting for {what}; last status: {:#?}",
            peer.status()
        ),
    }
}

fn config(local: &str, remote: &str, local_as: u32, remote_as: u32, router_id: &str) -> PeerConfig {
    let mut c = PeerConfig::new(ip(remote), remote_as);
    c.local_as = local_as;
    c.router_id = router_id.parse().unwrap();
    c.socket.local_addr = Some(ip(local));
    c.connect_retry = Duration::from_millis(300);
    c.hold_time = 9;
    c
}

/// A (active, originating) and B (passive), on `a` and `b`.
async fn pair(
    a: &str,
    b: &str,
    tweak_a: impl FnOnce(&mut PeerConfig),
    tweak_b: impl FnOnce(&mut PeerConfig),
) -> (Speaker, Speaker) {
    let mut cb = config(b, a, 65001, 65000, "192.0.2.2");
    cb.mode = Mode::Passive;
    tweak_b(&mut cb);
    let speaker_b = start(vec![cb], &[SocketAddr::new(ip(b), 0)]).await;
    let port = speaker_b.local_addrs()[0].port();
    let mut ca = config(a, b, 65000, 65001, "192.0.2.1");
    ca.port = port;
    tweak_a(&mut ca);
    let speaker_a = start(vec![ca], &[]).await;
    (speaker_a, speaker_b)
}

#[tokio::test]
async fn two_speakers_establish_and_routes_flow_from_a_to_b() {
    let (a, b) = pair("127.0.31.1", "127.0.31.2", |_| {}, |_| {}).await;
    let pa = a.peers()[0].clone();
    let pb = b.peers()[0].clone();
    wait_until(&pa, "A established", |s| s.state == State::Established).await;
    let sb = wait_until(&pb, "B established", |s| s.state == State::Established).await;
    assert_eq!(
        sb.families.iter().copied().collect::<BTreeSet<_>>(),
        Family::ALL.into_iter().collect()
    );

    for f in [
        "dst 192.0.2.7/32 proto udp sport 123 then discard",
        "dst 192.0.2.8/32 proto tcp tcp-flags syn pkt-len 40..60 then rate-bytes 12500",
        "dst 2001:db8::1/128 next-header tcp dport 80 then discard",
    ] {
        let (k, at) = parse_flow(f).unwrap();
        a.set(k, Arc::new(at)).await;
    }
    let (k, at) = parse_rtbh("192.0.2.9/32 next-hop 192.0.2.66").unwrap();
    a.set(k.clone(), Arc::new(at)).await;

    let sa = wait_until(&pa, "A synced with 4 routes", |s| {
        s.synced && s.advertised == 4
    })
    .await;
    assert_eq!(sa.rib.announced, 4);
    // Four End-of-RIB markers, and at least one UPDATE per family carrying routes.
    let sb = wait_until(&pb, "B received 8 updates", |s| s.updates_received >= 8).await;
    assert!(sb.last_error.is_none(), "{sb:?}");

    a.remove(k).await;
    let sa = wait_until(&pa, "A withdrew the RTBH route", |s| {
        s.synced && s.advertised == 3
    })
    .await;
    assert_eq!(sa.rib.withdrawn, 1);

    a.shutdown("maintenance window").await;
    let sb = wait_until(&pb, "B sees the Cease", |s| s.state != State::Established).await;
    let err = sb.last_error.unwrap_or_default();
    assert!(
        err.contains("6/2") && err.contains("maintenance window"),
        "{err}"
    );
    b.shutdown("test over").await;
}

#[tokio::test]
async fn routes_set_before_the_session_are_sent_when_it_comes_up_and_again_after_a_reset() {
    let (a, b) = pair("127.0.32.1", "127.0.32.2", |_| {}, |_| {}).await;
    let pa = a.peers()[0].clone();
    let (k, at) = parse_flow("dst 192.0.2.7/32 proto udp sport 53 then discard").unwrap();
    a.set(k, Arc::new(at)).await;
    let first = wait_until(&pa, "A synced", |s| s.synced && s.advertised == 1).await;
    assert_eq!(first.established_count, 1);

    // B goes away and comes back: A re-sends its whole table in the new session.
    let port = b.local_addrs()[0].port();
    b.shutdown("restart").await;
    wait_until(&pa, "A notices", |s| s.state != State::Established).await;
    let mut cb = config("127.0.32.2", "127.0.32.1", 65001, 65000, "192.0.2.2");
    cb.mode = Mode::Passive;
    let b2 = start(vec![cb], &[SocketAddr::new(ip("127.0.32.2"), port)]).await;
    let again = wait_until(&pa, "A re-established and synced", |s| {
        s.established_count == 2 && s.synced
    })
    .await;
    assert_eq!(again.advertised, 1);
    assert_eq!(again.rib.announced, 2);
    a.shutdown("test over").await;
    b2.shutdown("test over").await;
}

#[tokio::test]
async fn a_peer_with_the_wrong_as_is_refused_with_open_error_2_2() {
    let (a, b) = pair("127.0.33.1", "127.0.33.2", |c| c.remote_as = 65099, |_| {}).await;
    let pa = a.peers()[0].clone();
    let s = wait_until(&pa, "A refuses B's OPEN", |s| {
        s.last_error.as_deref().is_some_and(|e| e.contains("2/2"))
    })
    .await;
    assert_ne!(s.state, State::Established);
    a.shutdown("test over").await;
    b.shutdown("test over").await;
}

#[tokio::test]
async fn md5_protected_session_comes_up_only_with_the_same_password() {
    let (a, b) = pair(
        "127.0.34.1",
        "127.0.34.2",
        |c| c.socket.md5_password = Some("s3cret".into()),
        |c| c.socket.md5_password = Some("s3cret".into()),
    )
    .await;
    wait_until(&a.peers()[0], "A established with MD5", |s| {
        s.state == State::Established
    })
    .await;
    a.shutdown("test over").await;
    b.shutdown("test over").await;

    let (a, b) = pair(
        "127.0.35.1",
        "127.0.35.2",
        |c| c.socket.md5_password = Some("s3cret".into()),
        |c| c.socket.md5_password = Some("other".into()),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_ne!(
        a.peers()[0].status().state,
        State::Established,
        "MD5 mismatch must not establish"
    );
    assert_eq!(a.peers()[0].status().established_count, 0);
    a.shutdown("test over").await;
    b.shutdown("test over").await;
}

#[tokio::test]
async fn both_sides_active_resolve_the_collision_to_one_session() {
    // Both connect to each other and both listen: RFC 4271 §6.8 keeps exactly one connection.
    let la = SocketAddr::new(ip("127.0.36.1"), 0);
    let lb = SocketAddr::new(ip("127.0.36.2"), 0);
    // Ports must be known before the peers start: take two free ones.
    let pa_port = std::net::TcpListener::bind(la)
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let pb_port = std::net::TcpListener::bind(lb)
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut ca = config("127.0.36.1", "127.0.36.2", 65000, 65001, "192.0.2.1");
    ca.port = pb_port;
    let mut cb = config("127.0.36.2", "127.0.36.1", 65001, 65000, "192.0.2.2");
    cb.port = pa_port;
    let a = start(vec![ca], &[SocketAddr::new(la.ip(), pa_port)]).await;
    let b = start(vec![cb], &[SocketAddr::new(lb.ip(), pb_port)]).await;
    let sa = wait_until(&a.peers()[0], "A established", |s| {
        s.state == State::Established
    })
    .await;
    let sb = wait_until(&b.peers()[0], "B established", |s| {
        s.state == State::Established
    })
    .await;
    // Held for a few keepalive intervals: the session stays up, no flap.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(a.peers()[0].status().state, State::Established);
    assert_eq!(
        a.peers()[0].status().established_count,
        sa.established_count
    );
    assert_eq!(
        b.peers()[0].status().established_count,
        sb.established_count
    );
    a.shutdown("test over").await;
    b.shutdown("test over").await;
}

#[tokio::test]
async fn a_rule_too_long_for_the_peer_is_held_back_unless_it_takes_the_long_form() {
    let ports: Vec<String> = (1000..1100u32).map(|p| (p * 3).to_string()).collect();
    let text = format!(
        "dst 192.0.2.7/32 proto udp dport {} then discard",
        ports.join(",")
    );
    assert!(
        FlowRoute::from_str(&text).is_err(),
        "the default options refuse a rule over 239 octets"
    );
    let long = parse_flow_route(&text, &RuleOptions::LONG_FORM).unwrap();
    let key = RouteKey::FlowSpec(long.rule.clone());
    let attrs = Arc::new(RouteAttrs {
        ext_communities: long.ext_communities(),
        ..RouteAttrs::default()
    });

    let (a, b) = pair("127.0.37.1", "127.0.37.2", |_| {}, |_| {}).await;
    let pa = a.peers()[0].clone();
    wait_until(&pa, "A established", |s| s.state == State::Established).await;
    a.set(key.clone(), attrs.clone()).await;
    let s = wait_until(&pa, "the rule held back", |s| s.held_back == 1 && s.synced).await;
    assert_eq!(s.advertised, 0);
    a.shutdown("test over").await;
    b.shutdown("test over").await;

    let (a, b) = pair(
        "127.0.38.1",
        "127.0.38.2",
        |c| c.max_flowspec_nlri_len = 4095,
        |_| {},
    )
    .await;
    let pa = a.peers()[0].clone();
    a.set(key, attrs).await;
    let s = wait_until(&pa, "the rule sent in the long form", |s| {
        s.advertised == 1 && s.synced
    })
    .await;
    assert_eq!(s.held_back, 0);
    a.shutdown("test over").await;
    b.shutdown("test over").await;
}

#[tokio::test]
async fn gtsm_sessions_come_up_between_directly_connected_speakers_only_when_both_use_it() {
    // On loopback nothing decrements the TTL: both sides sending 255 pass each other's minimum 254.
    let (a, b) = pair(
        "127.0.39.1",
        "127.0.39.2",
        |c| c.socket.gtsm = true,
        |c| c.socket.gtsm = true,
    )
    .await;
    wait_until(&a.peers()[0], "A established with GTSM", |s| {
        s.state == State::Established
    })
    .await;
    a.shutdown("test over").await;
    b.shutdown("test over").await;

    // Only B checks: A sends with the default TTL (64), below B's minimum, so nothing arrives.
    let (a, b) = pair("127.0.40.1", "127.0.40.2", |_| {}, |c| c.socket.gtsm = true).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(a.peers()[0].status().established_count, 0);
    assert_eq!(b.peers()[0].status().established_count, 0);
    a.shutdown("test over").await;
    b.shutdown("test over").await;
}
