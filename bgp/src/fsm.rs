//! The BGP session state machine (RFC 4271 §8), as a pure function of (state, event, now).
//!
//! [`Fsm::handle`] takes one [`Event`] (named as in RFC 4271 §8.1) and returns the [`Output`]s the IO
//! edge must carry out: open or drop the connection, send a message, arm or stop a timer, report the
//! session up or down. The FSM never reads a clock, never touches a socket and never draws random
//! numbers from the system: jitter (§10) comes from a PRNG seeded by the caller, so a test replays
//! exactly.
//!
//! One FSM runs one connection at a time. Connection collisions (§6.8) are resolved by the edge,
//! which holds a second, accepted connection aside until the remote BGP identifier is known and then
//! asks [`resolve_collision`] which one stays; the loser is closed with Cease 6/7
//! ([`Event::OpenCollisionDump`] when the FSM's own connection loses).
//!
//! Timers: ConnectRetry, Hold, Keepalive and IdleHold (the automatic restart after an error, with
//! exponential back-off: the peer oscillation damping of §8.1.1). The send hold timer of RFC 9687 is
//! watched by the edge's writer, which reports [`Event::SendHoldTimerExpires`].

use std::fmt;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::error::DecodeError;
use crate::iana::{Family, capability};
use crate::message::Message;
use crate::notification::{Notification, cease_sub, code, fsm_sub, open_sub};
use crate::open::{Capability, GracefulRestart, Open};

/// Session states (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum State {
    #[default]
    Idle,
    Connect,
    Active,
    OpenSent,
    OpenConfirm,
    Established,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// Timers the edge keeps for the FSM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Timer {
    ConnectRetry,
    Hold,
    Keepalive,
    /// Automatic restart after the session fell to Idle on an error.
    IdleHold,
}

/// Events (RFC 4271 §8.1; names kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    ManualStart,
    ManualStop,
    AutomaticStart,
    ManualStartWithPassiveTcpEstablishment,
    AutomaticStartWithPassiveTcpEstablishment,
    ConnectRetryTimerExpires,
    HoldTimerExpires,
    KeepaliveTimerExpires,
    /// Not in RFC 4271: the IdleHold timer of the automatic restart.
    IdleHoldTimerExpires,
    /// RFC 9687.
    SendHoldTimerExpires,
    TcpCrAcked,
    TcpConnectionConfirmed,
    TcpConnectionFails,
    BgpOpen(Open),
    BgpHeaderErr(Notification),
    BgpOpenMsgErr(Notification),
    OpenCollisionDump,
    NotifMsgVerErr,
    NotifMsg(Notification),
    KeepAliveMsg,
    UpdateMsg,
    UpdateMsgErr(Notification),
    /// RFC 2918.
    RouteRefreshMsg,
}

impl Event {
    pub fn timer_expired(t: Timer) -> Event {
        match t {
            Timer::ConnectRetry => Event::ConnectRetryTimerExpires,
            Timer::Hold => Event::HoldTimerExpires,
            Timer::Keepalive => Event::KeepaliveTimerExpires,
            Timer::IdleHold => Event::IdleHoldTimerExpires,
        }
    }

    /// The event for a message that failed to decode (only session-reset errors reach the FSM).
    pub fn decode_error(e: &DecodeError) -> Event {
        match e {
            DecodeError::Header(_) | DecodeError::KeepaliveLength(_) => {
                Event::BgpHeaderErr(e.notification())
            }
            DecodeError::Open(_) => Event::BgpOpenMsgErr(e.notification()),
            DecodeError::Notification(_) => Event::NotifMsgVerErr,
            DecodeError::Update(_) | DecodeError::RouteRefreshLength(_) => {
                Event::UpdateMsgErr(e.notification())
            }
        }
    }
}

/// What the edge must do.
// Outputs live for one call of `handle`; boxing the negotiation would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Open a TCP connection to the peer.
    Connect,
    /// Close the connection (after writing what is queued).
    Disconnect,
    Send(Message),
    ArmTimer(Timer, Duration),
    StopTimer(Timer),
    Established(Negotiated),
    /// The session left OpenSent, OpenConfirm or Established.
    Down(DownReason),
}

/// Why a session went down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DownReason {
    NotificationSent(Notification),
    NotificationReceived(Notification),
    ConnectionLost,
    Stopped,
    /// The connection lost a collision (§6.8); another one carries the session.
    Collision,
}

impl fmt::Display for DownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DownReason::NotificationSent(n) => write!(f, "NOTIFICATION sent: {n}"),
            DownReason::NotificationReceived(n) => write!(f, "NOTIFICATION received: {n}"),
            DownReason::ConnectionLost => f.write_str("connection lost"),
            DownReason::Stopped => f.write_str("stopped"),
            DownReason::Collision => f.write_str("connection collision"),
        }
    }
}

/// What both sides agreed on (RFC 4271 §4.2, RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// Seconds; 0 means no keepalives and no hold timer.
    pub hold_time: u16,
    pub keepalive: Duration,
    /// Families both sides announced (IPv4 unicast alone when the peer sent no multiprotocol
    /// capability, RFC 4760 §8).
    pub families: Vec<Family>,
    pub four_octet_as: bool,
    pub extended_message: bool,
    pub route_refresh: bool,
    pub remote_asn: u32,
    pub remote_router_id: Ipv4Addr,
    pub ebgp: bool,
    pub remote_graceful_restart: Option<GracefulRestart>,
}

/// Session parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsmConfig {
    pub local_as: u32,
    pub remote_as: u32,
    pub router_id: Ipv4Addr,
    /// Proposed hold time, seconds: 0, or at least 3.
    pub hold_time: u16,
    pub connect_retry_time: Duration,
    /// Wait for the peer to connect (no active connects).
    pub passive: bool,
    /// Families offered (multiprotocol capability each).
    pub families: Vec<Family>,
    /// Graceful restart time (RFC 4724), offered with forwarding state for every family.
    pub graceful_restart: Option<u16>,
    /// Set the Restart State bit: this speaker has just restarted.
    pub restarting: bool,
    pub extended_message: bool,
    /// Longest automatic-restart back-off.
    pub max_idle_hold: Duration,
}

impl Default for FsmConfig {
    fn default() -> Self {
        FsmConfig {
            local_as: 65000,
            remote_as: 65001,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            hold_time: 90,
            connect_retry_time: Duration::from_secs(30),
            passive: false,
            families: Family::ALL.to_vec(),
            graceful_restart: Some(120),
            restarting: false,
            extended_message: true,
            max_idle_hold: Duration::from_secs(120),
        }
    }
}

/// Hold timer in OpenSent (RFC 4271 §8.2.2: "a large value", 4 minutes suggested).
pub const OPEN_SENT_HOLD: Duration = Duration::from_secs(240);

/// Which connection of a collision stays (RFC 4271 §6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollisionWinner {
    /// The connection we initiated.
    Local,
    /// The connection the peer initiated.
    Remote,
}

/// §6.8: the connection initiated by the speaker with the higher BGP identifier stays.
pub fn resolve_collision(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> CollisionWinner {
    if u32::from(local_id) > u32::from(remote_id) {
        CollisionWinner::Local
    } else {
        CollisionWinner::Remote
    }
}

/// Checks the peer's OPEN against ours and the configuration; the NOTIFICATION on refusal.
pub fn negotiate(
    local: &Open,
    remote: &Open,
    expected_as: u32,
) -> Result<Negotiated, Notification> {
    if remote.asn != expected_as {
        let data = u16::try_from(remote.asn)
            .unwrap_or(crate::iana::AS_TRANS)
            .to_be_bytes()
            .to_vec();
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            open_sub::BAD_PEER_AS,
            data,
        ));
    }
    if remote.hold_time == 1 || remote.hold_time == 2 {
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            open_sub::UNACCEPTABLE_HOLD_TIME,
            &[][..],
        ));
    }
    let ebgp = remote.asn != local.asn;
    if remote.router_id.is_unspecified() || (!ebgp && remote.router_id == local.router_id) {
        return Err(Notification::new(
            code::OPEN_MESSAGE,
            open_sub::BAD_BGP_IDENTIFIER,
            &[][..],
        ));
    }
    let hold_time = local.hold_time.min(remote.hold_time);
    let remote_families = if remote.has_multiprotocol() {
        remote.families()
    } else {
        vec![Family::Ipv4Unicast]
    };
    let families = local
        .families()
        .into_iter()
        .filter(|f| remote_families.contains(f))
        .collect();
    Ok(Negotiated {
        hold_time,
        keepalive: Duration::from_secs(u64::from(hold_time / 3)),
        families,
        four_octet_as: remote.four_octet_as().is_some() && local.four_octet_as().is_some(),
        extended_message: remote.has(capability::EXTENDED_MESSAGE)
            && local.has(capability::EXTENDED_MESSAGE),
        route_refresh: remote.has(capability::ROUTE_REFRESH),
        remote_asn: remote.asn,
        remote_router_id: remote.router_id,
        ebgp,
        remote_graceful_restart: remote.graceful_restart().cloned(),
    })
}

/// The state machine of one peer.
#[derive(Debug, Clone)]
pub struct Fsm {
    config: FsmConfig,
    state: State,
    /// splitmix64 state for jitter.
    rng: u64,
    local_open: Open,
    negotiated: Option<Negotiated>,
    /// The peer's identifier once its OPEN is read (for collision resolution).
    remote_router_id: Option<Ipv4Addr>,
    /// Consecutive sessions that failed before Established: drives the IdleHold back-off.
    failures: u32,
    established_at: Option<Instant>,
    stopped: bool,
}

impl Fsm {
    pub fn new(config: FsmConfig, seed: u64) -> Fsm {
        let local_open = build_open(&config);
        Fsm {
            config,
            state: State::Idle,
            rng: seed,
            local_open,
            negotiated: None,
            remote_router_id: None,
            failures: 0,
            established_at: None,
            stopped: false,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn config(&self) -> &FsmConfig {
        &self.config
    }

    pub fn local_open(&self) -> &Open {
        &self.local_open
    }

    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    pub fn remote_router_id(&self) -> Option<Ipv4Addr> {
        self.remote_router_id
    }

    /// When the current session reached Established.
    pub fn established_at(&self) -> Option<Instant> {
        self.established_at
    }

    /// A duration scaled by a factor in [0.75, 1.0) (RFC 4271 §10 jitter).
    fn jitter(&mut self, d: Duration) -> Duration {
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        let f = 0.75 + (z >> 11) as f64 / (1u64 << 53) as f64 * 0.25;
        d.mul_f64(f)
    }

    fn connect_retry(&mut self) -> Output {
        let d = self.jitter(self.config.connect_retry_time);
        Output::ArmTimer(Timer::ConnectRetry, d)
    }

    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Output> {
        use Event::*;
        use State::*;
        let mut out = Vec::new();
        match (self.state, event) {
            // Starting.
            (Idle, ManualStart | AutomaticStart) => {
                self.stopped = false;
                out.push(self.connect_retry());
                if self.config.passive {
                    self.state = Active;
                } else {
                    out.push(Output::Connect);
                    self.state = Connect;
                }
            }
            (
                Idle,
                ManualStartWithPassiveTcpEstablishment | AutomaticStartWithPassiveTcpEstablishment,
            ) => {
                self.stopped = false;
                out.push(self.connect_retry());
                self.state = Active;
            }
            (Idle, IdleHoldTimerExpires) if !self.stopped => {
                let ev = if self.config.passive {
                    AutomaticStartWithPassiveTcpEstablishment
                } else {
                    AutomaticStart
                };
                return self.handle(ev, now);
            }
            (Idle, ManualStop) => {
                self.stopped = true;
                out.push(Output::StopTimer(Timer::IdleHold));
            }
            (Idle, _) => {}

            (_, ManualStop) => {
                if matches!(self.state, OpenSent | OpenConfirm | Established) {
                    let n =
                        Notification::new(code::CEASE, cease_sub::ADMINISTRATIVE_SHUTDOWN, &[][..]);
                    out.push(Output::Send(Message::Notification(n)));
                    out.push(Output::Down(DownReason::Stopped));
                }
                out.push(Output::Disconnect);
                self.stopped = true;
                self.enter_idle(&mut out, false);
            }

            // Waiting for TCP.
            (Connect | Active, ConnectRetryTimerExpires) => {
                out.push(self.connect_retry());
                if !self.config.passive {
                    out.push(Output::Disconnect);
                    out.push(Output::Connect);
                    self.state = Connect;
                }
            }
            (Connect | Active, TcpCrAcked | TcpConnectionConfirmed) => {
                out.push(Output::StopTimer(Timer::ConnectRetry));
                out.push(Output::Send(Message::Open(self.local_open.clone())));
                out.push(Output::ArmTimer(Timer::Hold, OPEN_SENT_HOLD));
                self.state = OpenSent;
            }
            (Connect | Active, TcpConnectionFails) => {
                out.push(self.connect_retry());
                self.state = Active;
            }
            (Connect | Active, _) => {
                // Anything else without a BGP connection: start over (RFC 4271 §8.2.2).
                out.push(Output::Disconnect);
                self.failures += 1;
                self.enter_idle(&mut out, true);
            }

            // OPEN exchanged.
            (OpenSent, BgpOpen(remote)) => {
                self.remote_router_id = Some(remote.router_id);
                match negotiate(&self.local_open, &remote, self.config.remote_as) {
                    Ok(neg) => {
                        out.push(Output::Send(Message::Keepalive));
                        if neg.hold_time > 0 {
                            out.push(Output::ArmTimer(
                                Timer::Hold,
                                Duration::from_secs(u64::from(neg.hold_time)),
                            ));
                            let k = self.jitter(neg.keepalive);
                            out.push(Output::ArmTimer(Timer::Keepalive, k));
                        } else {
                            out.push(Output::StopTimer(Timer::Hold));
                        }
                        self.negotiated = Some(neg);
                        self.state = OpenConfirm;
                    }
                    Err(n) => self.fail_with(&mut out, n),
                }
            }
            (OpenConfirm | Established, KeepaliveTimerExpires) => {
                out.push(Output::Send(Message::Keepalive));
                if let Some(k) = self.negotiated.as_ref().map(|n| n.keepalive) {
                    let k = self.jitter(k);
                    out.push(Output::ArmTimer(Timer::Keepalive, k));
                }
            }
            (OpenConfirm, KeepAliveMsg) => {
                let neg = self
                    .negotiated
                    .clone()
                    .unwrap_or_else(|| unreachable_negotiation(&self.local_open));
                self.restart_hold(&mut out);
                self.failures = 0;
                self.established_at = Some(now);
                self.state = Established;
                out.push(Output::Established(neg));
            }
            (Established, KeepAliveMsg | UpdateMsg | RouteRefreshMsg) => {
                self.restart_hold(&mut out)
            }

            // Errors and the end of a session.
            (OpenSent | OpenConfirm | Established, HoldTimerExpires) => {
                self.fail_with(&mut out, Notification::hold_timer_expired())
            }
            (OpenSent | OpenConfirm | Established, SendHoldTimerExpires) => {
                self.fail_with(&mut out, Notification::send_hold_timer_expired())
            }
            (
                OpenSent | OpenConfirm | Established,
                BgpHeaderErr(n) | BgpOpenMsgErr(n) | UpdateMsgErr(n),
            ) => self.fail_with(&mut out, n),
            (OpenSent | OpenConfirm | Established, NotifMsg(n)) => {
                out.push(Output::Disconnect);
                out.push(Output::Down(DownReason::NotificationReceived(n)));
                self.failures += 1;
                self.enter_idle(&mut out, true);
            }
            (OpenSent | OpenConfirm | Established, NotifMsgVerErr | TcpConnectionFails) => {
                out.push(Output::Disconnect);
                out.push(Output::Down(DownReason::ConnectionLost));
                self.failures += 1;
                self.enter_idle(&mut out, true);
            }
            (OpenSent | OpenConfirm, OpenCollisionDump) => {
                let n = Notification::cease_collision();
                out.push(Output::Send(Message::Notification(n)));
                out.push(Output::Disconnect);
                out.push(Output::Down(DownReason::Collision));
                self.enter_idle(&mut out, true);
            }
            (OpenSent, _) => self.fail_with(
                &mut out,
                Notification::fsm_error(fsm_sub::UNEXPECTED_IN_OPEN_SENT),
            ),
            (OpenConfirm, _) => self.fail_with(
                &mut out,
                Notification::fsm_error(fsm_sub::UNEXPECTED_IN_OPEN_CONFIRM),
            ),
            (Established, _) => self.fail_with(
                &mut out,
                Notification::fsm_error(fsm_sub::UNEXPECTED_IN_ESTABLISHED),
            ),
        }
        out
    }

    fn restart_hold(&mut self, out: &mut Vec<Output>) {
        if let Some(h) = self
            .negotiated
            .as_ref()
            .map(|n| n.hold_time)
            .filter(|h| *h > 0)
        {
            out.push(Output::ArmTimer(
                Timer::Hold,
                Duration::from_secs(u64::from(h)),
            ));
        }
    }

    /// Sends `n`, drops the connection and falls to Idle with an automatic restart.
    fn fail_with(&mut self, out: &mut Vec<Output>, n: Notification) {
        out.push(Output::Send(Message::Notification(n.clone())));
        out.push(Output::Disconnect);
        out.push(Output::Down(DownReason::NotificationSent(n)));
        self.failures += 1;
        self.enter_idle(out, true);
    }

    fn enter_idle(&mut self, out: &mut Vec<Output>, restart: bool) {
        for t in [
            Timer::ConnectRetry,
            Timer::Hold,
            Timer::Keepalive,
            Timer::IdleHold,
        ] {
            out.push(Output::StopTimer(t));
        }
        self.state = State::Idle;
        self.negotiated = None;
        self.remote_router_id = None;
        self.established_at = None;
        if restart && !self.stopped {
            // Back-off: connect-retry time × 2^(failures-1), capped (damping of peer oscillations).
            let exp = self.failures.saturating_sub(1).min(8);
            let base = self
                .config
                .connect_retry_time
                .saturating_mul(1 << exp)
                .min(self.config.max_idle_hold);
            let d = self.jitter(base);
            out.push(Output::ArmTimer(Timer::IdleHold, d));
        }
    }
}

/// OpenConfirm always has a negotiation; this keeps the FSM total without a panic.
fn unreachable_negotiation(local: &Open) -> Negotiated {
    Negotiated {
        hold_time: local.hold_time,
        keepalive: Duration::from_secs(u64::from(local.hold_time / 3)),
        families: Vec::new(),
        four_octet_as: false,
        extended_message: false,
        route_refresh: false,
        remote_asn: 0,
        remote_router_id: Ipv4Addr::UNSPECIFIED,
        ebgp: true,
        remote_graceful_restart: None,
    }
}

fn build_open(c: &FsmConfig) -> Open {
    let mut caps: Vec<Capability> = c
        .families
        .iter()
        .map(|f| Capability::Multiprotocol {
            afi: f.afi().code(),
            safi: f.safi().code(),
        })
        .collect();
    caps.push(Capability::RouteRefresh);
    if c.extended_message {
        caps.push(Capability::ExtendedMessage);
    }
    if let Some(t) = c.graceful_restart {
        caps.push(Capability::GracefulRestart(GracefulRestart {
            restart_state: c.restarting,
            notification: false,
            restart_time: t.min(0x0fff),
            families: c
                .families
                .iter()
                .map(|f| (f.afi().code(), f.safi().code(), true))
                .collect(),
        }));
    }
    caps.push(Capability::FourOctetAs(c.local_as));
    Open {
        asn: c.local_as,
        hold_time: c.hold_time,
        router_id: c.router_id,
        capabilities: caps,
    }
}
