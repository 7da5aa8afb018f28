//! The session state machine, in sentences.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use deflect_bgp::fsm::{
    CollisionWinner, DownReason, Event, Fsm, FsmConfig, OPEN_SENT_HOLD, Output, State, Timer,
    negotiate, resolve_collision,
};
use deflect_bgp::iana::Family;
use deflect_bgp::message::Message;
use deflect_bgp::notification::Notification;
use deflect_bgp::open::{Capability, Open};

fn config() -> FsmConfig {
    FsmConfig {
        local_as: 65000,
        remote_as: 65001,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        hold_time: 90,
        connect_retry_time: Duration::from_secs(30),
        ..FsmConfig::default()
    }
}

fn router_open() -> Open {
    Open {
        asn: 65001,
        hold_time: 30,
        router_id: Ipv4Addr::new(192, 0, 2, 254),
        capabilities: vec![
            Capability::Multiprotocol { afi: 1, safi: 133 },
            Capability::Multiprotocol { afi: 2, safi: 133 },
            Capability::Multiprotocol { afi: 1, safi: 1 },
            Capability::RouteRefresh,
            Capability::FourOctetAs(65001),
        ],
    }
}

struct Peer {
    fsm: Fsm,
    now: Instant,
}

impl Peer {
    fn new(c: FsmConfig) -> Peer {
        Peer {
            fsm: Fsm::new(c, 7),
            now: Instant::now(),
        }
    }

    fn on(&mut self, e: Event) -> Vec<Output> {
        self.fsm.handle(e, self.now)
    }

    fn established(&mut self) -> Vec<Output> {
        self.on(Event::ManualStart);
        self.on(Event::TcpCrAcked);
        self.on(Event::BgpOpen(router_open()));
        self.on(Event::KeepAliveMsg)
    }
}

fn sent(out: &[Output]) -> Vec<&Message> {
    out.iter()
        .filter_map(|o| {
            if let Output::Send(m) = o {
                Some(m)
            } else {
                None
            }
        })
        .collect()
}

fn notification(out: &[Output]) -> Option<(u8, u8)> {
    sent(out).into_iter().find_map(|m| {
        if let Message::Notification(n) = m {
            Some((n.code, n.subcode))
        } else {
            None
        }
    })
}

fn armed(out: &[Output], t: Timer) -> Option<Duration> {
    out.iter().find_map(|o| {
        if let Output::ArmTimer(x, d) = o {
            (*x == t).then_some(*d)
        } else {
            None
        }
    })
}

#[test]
fn an_idle_peer_started_manually_connects_and_arms_connect_retry_with_jitter() {
    let mut p = Peer::new(config());
    let out = p.on(Event::ManualStart);
    assert_eq!(p.fsm.state(), State::Connect);
    assert!(out.contains(&Output::Connect));
    let d = armed(&out, Timer::ConnectRetry).unwrap();
    assert!(
        d >= Duration::from_millis(22_500) && d < Duration::from_secs(30),
        "jitter 0.75..1: {d:?}"
    );
}

#[test]
fn a_passive_peer_waits_in_active_without_connecting() {
    let mut p = Peer::new(FsmConfig {
        passive: true,
        ..config()
    });
    let out = p.on(Event::ManualStartWithPassiveTcpEstablishment);
    assert_eq!(p.fsm.state(), State::Active);
    assert!(!out.contains(&Output::Connect));
    let out = p.on(Event::ConnectRetryTimerExpires);
    assert!(!out.contains(&Output::Connect));
    p.on(Event::TcpConnectionConfirmed);
    assert_eq!(p.fsm.state(), State::OpenSent);
}

#[test]
fn a_failed_connect_goes_to_active_and_the_retry_timer_connects_again() {
    let mut p = Peer::new(config());
    p.on(Event::ManualStart);
    p.on(Event::TcpConnectionFails);
    assert_eq!(p.fsm.state(), State::Active);
    let out = p.on(Event::ConnectRetryTimerExpires);
    assert_eq!(p.fsm.state(), State::Connect);
    assert!(out.contains(&Output::Connect));
}

#[test]
fn once_connected_it_sends_its_open_with_every_capability_and_a_large_hold_timer() {
    let mut p = Peer::new(config());
    p.on(Event::ManualStart);
    let out = p.on(Event::TcpCrAcked);
    assert_eq!(p.fsm.state(), State::OpenSent);
    assert_eq!(armed(&out, Timer::Hold), Some(OPEN_SENT_HOLD));
    let Some(Message::Open(o)) = sent(&out).first().copied() else {
        panic!("no OPEN: {out:?}")
    };
    assert_eq!(o.asn, 65000);
    assert_eq!(o.hold_time, 90);
    assert_eq!(o.families().len(), 4);
    assert_eq!(o.four_octet_as(), Some(65000));
    let gr = o.graceful_restart().expect("graceful restart offered");
    assert_eq!(gr.restart_time, 120);
    assert!(
        gr.families.iter().all(|f| f.2),
        "forwarding state kept for every family"
    );
    assert!(o.has(deflect_bgp::iana::capability::ROUTE_REFRESH));
}

#[test]
fn the_happy_path_reaches_established_with_the_shared_families_and_the_smaller_hold_time() {
    let mut p = Peer::new(config());
    p.on(Event::ManualStart);
    p.on(Event::TcpCrAcked);
    let out = p.on(Event::BgpOpen(router_open()));
    assert_eq!(p.fsm.state(), State::OpenConfirm);
    assert!(matches!(sent(&out)[..], [Message::Keepalive]));
    assert_eq!(armed(&out, Timer::Hold), Some(Duration::from_secs(30)));
    let k = armed(&out, Timer::Keepalive).unwrap();
    assert!(
        k <= Duration::from_secs(10) && k >= Duration::from_millis(7_500),
        "{k:?}"
    );
    let out = p.on(Event::KeepAliveMsg);
    assert_eq!(p.fsm.state(), State::Established);
    let neg = out
        .iter()
        .find_map(|o| {
            if let Output::Established(n) = o {
                Some(n.clone())
            } else {
                None
            }
        })
        .unwrap();
    assert_eq!(neg.hold_time, 30);
    assert_eq!(
        neg.families,
        vec![
            Family::Ipv4Unicast,
            Family::Ipv4FlowSpec,
            Family::Ipv6FlowSpec
        ]
    );
    assert!(neg.four_octet_as && neg.ebgp && neg.route_refresh);
    assert!(!neg.extended_message, "the router did not offer it");
}

#[test]
fn established_sessions_exchange_keepalives_and_restart_the_hold_timer_on_each_message() {
    let mut p = Peer::new(config());
    p.established();
    let out = p.on(Event::KeepaliveTimerExpires);
    assert!(matches!(sent(&out)[..], [Message::Keepalive]));
    assert!(armed(&out, Timer::Keepalive).is_some());
    for e in [
        Event::KeepAliveMsg,
        Event::UpdateMsg,
        Event::RouteRefreshMsg,
    ] {
        let out = p.on(e);
        assert_eq!(armed(&out, Timer::Hold), Some(Duration::from_secs(30)));
        assert_eq!(p.fsm.state(), State::Established);
    }
}

#[test]
fn open_with_the_wrong_as_is_answered_with_2_2_and_goes_idle() {
    let mut p = Peer::new(config());
    p.on(Event::ManualStart);
    p.on(Event::TcpCrAcked);
    let out = p.on(Event::BgpOpen(Open {
        asn: 65099,
        ..router_open()
    }));
    assert_eq!(notification(&out), Some((2, 2)));
    assert!(out.contains(&Output::Disconnect));
    assert_eq!(p.fsm.state(), State::Idle);
    assert!(
        armed(&out, Timer::IdleHold).is_some(),
        "it restarts by itself"
    );
}

#[test]
fn hold_timer_expiry_sends_4_0_and_reports_the_session_down() {
    let mut p = Peer::new(config());
    p.established();
    let out = p.on(Event::HoldTimerExpires);
    assert_eq!(notification(&out), Some((4, 0)));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Down(DownReason::NotificationSent(_))))
    );
    assert_eq!(p.fsm.state(), State::Idle);
}

#[test]
fn send_hold_timer_expiry_sends_8_0() {
    let mut p = Peer::new(config());
    p.established();
    let out = p.on(Event::SendHoldTimerExpires);
    assert_eq!(notification(&out), Some((8, 0)));
    assert_eq!(p.fsm.state(), State::Idle);
}

#[test]
fn manual_stop_sends_cease_6_2_and_does_not_restart() {
    let mut p = Peer::new(config());
    p.established();
    let out = p.on(Event::ManualStop);
    assert_eq!(notification(&out), Some((6, 2)));
    assert!(armed(&out, Timer::IdleHold).is_none());
    assert_eq!(p.fsm.state(), State::Idle);
    assert!(p.on(Event::IdleHoldTimerExpires).is_empty());
}

#[test]
fn unexpected_messages_are_fsm_errors_named_after_the_state() {
    let mut p = Peer::new(config());
    p.on(Event::ManualStart);
    p.on(Event::TcpCrAcked);
    assert_eq!(notification(&p.on(Event::KeepAliveMsg)), Some((5, 1)));

    let mut p = Peer::new(config());
    p.on(Event::ManualStart);
    p.on(Event::TcpCrAcked);
    p.on(Event::BgpOpen(router_open()));
    assert_eq!(notification(&p.on(Event::UpdateMsg)), Some((5, 2)));

    let mut p = Peer::new(config());
    p.established();
    assert_eq!(
        notification(&p.on(Event::BgpOpen(router_open()))),
        Some((5, 3))
    );
}

#[test]
fn a_notification_received_ends_the_session_without_answering() {
    let mut p = Peer::new(config());
    p.established();
    let n = Notification::cease_admin_shutdown("maintenance");
    let out = p.on(Event::NotifMsg(n.clone()));
    assert_eq!(notification(&out), None);
    assert!(out.contains(&Output::Down(DownReason::NotificationReceived(n))));
}

#[test]
fn repeated_failures_back_off_exponentially_up_to_the_cap() {
    let mut p = Peer::new(FsmConfig {
        connect_retry_time: Duration::from_secs(1),
        max_idle_hold: Duration::from_secs(10),
        ..config()
    });
    let mut delays = Vec::new();
    for _ in 0..6 {
        p.on(Event::ManualStart);
        p.on(Event::TcpCrAcked);
        let out = p.on(Event::HoldTimerExpires);
        delays.push(armed(&out, Timer::IdleHold).unwrap());
    }
    assert!(delays[1] > delays[0] && delays[2] > delays[1], "{delays:?}");
    assert!(
        delays.iter().all(|d| *d <= Duration::from_secs(10)),
        "{delays:?}"
    );
    // The automatic restart connects again.
    let out = p.on(Event::IdleHoldTimerExpires);
    assert!(out.contains(&Output::Connect));
}

#[test]
fn negotiation_refuses_bad_hold_times_and_identifiers() {
    let local = Fsm::new(config(), 1).local_open().clone();
    assert_eq!(
        negotiate(
            &local,
            &Open {
                hold_time: 2,
                ..router_open()
            },
            65001
        )
        .unwrap_err()
        .subcode,
        6
    );
    assert_eq!(
        negotiate(
            &local,
            &Open {
                router_id: Ipv4Addr::UNSPECIFIED,
                ..router_open()
            },
            65001
        )
        .unwrap_err()
        .subcode,
        3
    );
    // iBGP with our own identifier.
    let ibgp = Open {
        asn: 65000,
        router_id: Ipv4Addr::new(192, 0, 2, 1),
        ..router_open()
    };
    assert_eq!(negotiate(&local, &ibgp, 65000).unwrap_err().subcode, 3);
    // A peer with no multiprotocol capability speaks IPv4 unicast only (RFC 4760 §8).
    let plain = Open {
        capabilities: vec![Capability::FourOctetAs(65001)],
        ..router_open()
    };
    assert_eq!(
        negotiate(&local, &plain, 65001).unwrap().families,
        vec![Family::Ipv4Unicast]
    );
    // Hold time 0 on either side: no keepalives.
    let zero = negotiate(
        &local,
        &Open {
            hold_time: 0,
            ..router_open()
        },
        65001,
    )
    .unwrap();
    assert_eq!((zero.hold_time, zero.keepalive), (0, Duration::ZERO));
}

#[test]
fn collisions_keep_the_connection_of_the_higher_identifier() {
    let low = Ipv4Addr::new(192, 0, 2, 1);
    let high = Ipv4Addr::new(192, 0, 2, 200);
    assert_eq!(resolve_collision(high, low), CollisionWinner::Local);
    assert_eq!(resolve_collision(low, high), CollisionWinner::Remote);
    let mut p = Peer::new(config());
    p.on(Event::ManualStart);
    p.on(Event::TcpCrAcked);
    let out = p.on(Event::OpenCollisionDump);
    assert_eq!(notification(&out), Some((6, 7)));
}

#[test]
fn the_same_seed_replays_the_same_timers() {
    let run = || {
        let mut f = Fsm::new(config(), 42);
        let now = Instant::now();
        let mut v = f.handle(Event::ManualStart, now);
        v.extend(f.handle(Event::TcpConnectionFails, now));
        v.extend(f.handle(Event::ConnectRetryTimerExpires, now));
        v
    };
    assert_eq!(run(), run());
}
