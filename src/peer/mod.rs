//! BGP peers: the tokio edge around `deflect_bgp`.
//!
//! One task per neighbor owns everything about it: the session state machine ([`Fsm`]), the
//! Adj-RIB-Out ([`AdjRibOut`]), the timers and the current connection. Children only do IO (connect,
//! read, write; see [`conn`]) and send typed events in. Nobody else touches a peer's state: the
//! speaker sends [`Command`]s through a bounded channel and reads [`PeerStatus`] from a watch.
//!
//! ```text
//!  commands (bounded 1024) ──► peer task ──► Fsm::handle(event, now) ──► outputs
//!  connect task ── result ──►     │              (Send, Connect, Disconnect, timers, Established, Down)
//!  reader task ── frames ───►     │
//!  timers (sleep_until) ────►     └──► AdjRibOut::drain ──► writer queue (bounded) ──► socket
//! ```
//!
//! Full channels: a full command channel makes the sender wait (the mitigation set is never lost, only
//! delayed); a full write queue leaves routes pending in the Adj-RIB-Out, where later changes to the
//! same route replace earlier ones. [`CONTROL_RESERVE`] slots of the write queue are kept for
//! KEEPALIVE and NOTIFICATION, so a slow peer never misses a keepalive because of a large table.
//!
//! Connection collisions (RFC 4271 §6.8): a connection accepted while our own is in OpenSent waits
//! until the remote's BGP identifier is known; then the connection initiated by the speaker with the
//! higher identifier is kept and the other one is closed with Cease 6/7.

pub mod conn;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use deflect_bgp::codec::CodecCtx;
use deflect_bgp::community::{Community, LargeCommunity};
use deflect_bgp::fsm::{self, Event, Fsm, FsmConfig, Output, State, Timer};
use deflect_bgp::header;
use deflect_bgp::iana::Family;
use deflect_bgp::message::Message;
use deflect_bgp::notification::Notification;
use deflect_bgp::rib::{AdjRibOut, RibStats, RouteAttrs, RouteKey, SessionCtx};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

use self::conn::{ConnEvent, Connection, SocketOptions, WRITE_QUEUE};
use crate::route::Kind;

/// Write-queue slots the Adj-RIB-Out leaves free for KEEPALIVE and NOTIFICATION.
pub const CONTROL_RESERVE: usize = 8;

/// Whether we open connections ourselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Connect, and accept connections too.
    Active,
    /// Only accept connections (the router connects to us).
    Passive,
}

/// One neighbor's session configuration. Every field is part of the session: two configurations
/// that differ in any of them (derived `PartialEq`) mean the session is reset on reload.
#[derive(Debug, Clone, PartialEq)]
pub struct PeerConfig {
    /// For logs and the API; the remote address unless set.
    pub name: String,
    pub remote: IpAddr,
    pub port: u16,
    pub remote_as: u32,
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    pub mode: Mode,
    /// Proposed hold time, seconds (0, or at least 3).
    pub hold_time: u16,
    pub connect_retry: Duration,
    /// Families offered and sent to this peer; also what route kinds it receives (FlowSpec, RTBH).
    pub families: BTreeSet<Family>,
    /// Graceful-restart time (RFC 4724) advertised with forwarding state for every family; `None`
    /// leaves the capability out.
    pub graceful_restart: Option<u16>,
    /// Longest FlowSpec NLRI sent to this peer (239 by default; 4095 enables the 2-octet form).
    pub max_flowspec_nlri_len: usize,
    pub socket: SocketOptions,
    /// RFC 9687 send hold time; by default max(8 minutes, 2 × hold time).
    pub send_hold_time: Option<Duration>,
}

/// A neighbor as configured: its session, and what the mitigation set sends it.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbor {
    pub peer: PeerConfig,
    /// Mitigation kinds it receives.
    pub receives: BTreeSet<Kind>,
    pub rtbh: Rtbh,
}

/// How a neighbor takes RTBH routes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rtbh {
    pub next_hop_ipv4: Option<IpAddr>,
    pub next_hop_ipv6: Option<IpAddr>,
    pub communities: Vec<Community>,
    pub large_communities: Vec<LargeCommunity>,
}

impl PeerConfig {
    /// Defaults for a neighbor: active, port 179, hold time 90 s, connect retry 10 s, FlowSpec and RTBH
    /// for both address families, graceful restart 120 s.
    pub fn new(remote: IpAddr, remote_as: u32) -> PeerConfig {
        PeerConfig {
            name: remote.to_string(),
            remote,
            port: 179,
            remote_as,
            local_as: 65000,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            mode: Mode::Active,
            hold_time: 90,
            connect_retry: Duration::from_secs(10),
            families: Family::ALL.into_iter().collect(),
            graceful_restart: Some(120),
            max_flowspec_nlri_len: 239,
            socket: SocketOptions::default(),
            send_hold_time: None,
        }
    }

    fn fsm_config(&self) -> FsmConfig {
        FsmConfig {
            local_as: self.local_as,
            remote_as: self.remote_as,
            router_id: self.router_id,
            hold_time: self.hold_time,
            connect_retry_time: self.connect_retry,
            passive: self.mode == Mode::Passive,
            families: self.families.iter().copied().collect(),
            graceful_restart: self.graceful_restart,
            ..FsmConfig::default()
        }
    }

    fn send_hold_time(&self) -> Duration {
        self.send_hold_time.unwrap_or_else(|| {
            Duration::from_secs(480).max(Duration::from_secs(2 * u64::from(self.hold_time)))
        })
    }
}

/// What a peer task shows the outside world.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerStatus {
    pub state: State,
    /// When the current session reached Established.
    pub established_at: Option<std::time::SystemTime>,
    pub established_count: u64,
    /// Families in use in the current session.
    pub families: Vec<Family>,
    pub remote_router_id: Option<Ipv4Addr>,
    pub rib: RibStats,
    pub desired: usize,
    pub advertised: usize,
    pub held_back: usize,
    /// Routes received are counted and otherwise ignored: deflect only originates.
    pub updates_received: u64,
    /// NLRI announced to us, classic and multiprotocol.
    pub nlri_received: u64,
    /// NLRI withdrawn by the peer (treat-as-withdraw included).
    pub withdrawals_received: u64,
    pub last_error: Option<String>,
    /// True when everything desired has been written, End-of-RIB included.
    pub synced: bool,
}

/// One change to what a peer is sent.
#[derive(Debug)]
pub enum RouteChange {
    Set(RouteKey, Arc<RouteAttrs>),
    Remove(RouteKey),
}

/// Commands to a peer task.
#[derive(Debug)]
pub enum Command {
    Set(RouteKey, Arc<RouteAttrs>),
    Remove(RouteKey),
    /// Changes made together (a group commit), applied in order before anything is written, so
    /// they leave packed into as few UPDATEs as the session allows.
    Routes(Vec<RouteChange>),
    /// Every route the owner has is in: End-of-RIB may follow the initial table.
    TableComplete,
    Incoming(TcpStream),
    Shutdown(String),
}

/// Commands already queued that the task takes before writing: what arrived together leaves
/// together, and one busy sender cannot hold the session's timers back for long.
const COMMANDS_PER_WAKE: usize = 256;

/// A handle to a peer task; cheap to clone.
#[derive(Debug, Clone)]
pub struct PeerHandle {
    config: Arc<PeerConfig>,
    tx: mpsc::Sender<Command>,
    status: watch::Receiver<PeerStatus>,
    task: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl PeerHandle {
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }

    pub fn status(&self) -> PeerStatus {
        self.status.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<PeerStatus> {
        self.status.clone()
    }

    pub async fn set(&self, key: RouteKey, attrs: Arc<RouteAttrs>) {
        let _ = self.tx.send(Command::Set(key, attrs)).await;
    }

    pub async fn remove(&self, key: RouteKey) {
        let _ = self.tx.send(Command::Remove(key)).await;
    }

    /// Applies `changes` in order, as one command.
    pub async fn apply(&self, changes: Vec<RouteChange>) {
        if !changes.is_empty() {
            let _ = self.tx.send(Command::Routes(changes)).await;
        }
    }

    /// Says that every route is in. Until then a session that comes up gets what there is but
    /// no End-of-RIB (see [`AdjRibOut::hold_end_of_rib`]): at start, the set restores the store
    /// and gives each peer its table only after the speaker is up.
    pub async fn table_complete(&self) {
        let _ = self.tx.send(Command::TableComplete).await;
    }

    pub async fn incoming(&self, stream: TcpStream) {
        let _ = self.tx.send(Command::Incoming(stream)).await;
    }

    pub async fn shutdown(&self, reason: &str) {
        let _ = self.tx.send(Command::Shutdown(reason.to_string())).await;
    }

    /// Waits for the task to end (after [`Self::shutdown`]), at most 5 seconds, then aborts it.
    pub async fn join(&self) {
        if let Some(t) = self.task.lock().await.take() {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

/// Starts a peer task.
pub fn spawn(config: PeerConfig) -> PeerHandle {
    let config = Arc::new(config);
    let (tx, rx) = mpsc::channel(1024);
    let (status_tx, status_rx) = watch::channel(PeerStatus::default());
    let span = info_span!("peer", peer = %config.name, remote_as = config.remote_as);
    let task = PeerTask::new(config.clone(), rx, status_tx);
    let join = tokio::spawn(task.run().instrument(span));
    PeerHandle {
        config,
        tx,
        status: status_rx,
        task: Arc::new(Mutex::new(Some(join))),
    }
}

/// A second connection, accepted while ours was in OpenSent or OpenConfirm. Its reader runs, so
/// the peer's OPEN on it is read; nothing is sent on it until it wins the collision.
#[derive(Debug)]
struct Pending {
    conn: Connection,
    open: Option<deflect_bgp::open::Open>,
}

/// What woke the peer task up.
enum Wake {
    Command(Option<Command>),
    Conn(ConnEvent),
    Connected(std::io::Result<TcpStream>),
    Timer,
    Room,
}

struct PeerTask {
    config: Arc<PeerConfig>,
    commands: mpsc::Receiver<Command>,
    status: watch::Sender<PeerStatus>,
    fsm: Fsm,
    rib: AdjRibOut,
    /// Codec context of the current session (pre-OPEN defaults until Established).
    codec: CodecCtx,
    conn: Option<Connection>,
    /// An accepted connection waiting for collision resolution (RFC 4271 §6.8).
    pending: Option<Pending>,
    connecting: Option<oneshot::Receiver<std::io::Result<TcpStream>>>,
    events_tx: mpsc::Sender<ConnEvent>,
    events: mpsc::Receiver<ConnEvent>,
    timers: HashMap<Timer, Instant>,
    next_conn_id: u64,
    updates_received: u64,
    nlri_received: u64,
    withdrawals_received: u64,
    last_error: Option<String>,
    established_count: u64,
    established_at: Option<std::time::SystemTime>,
    families: Vec<Family>,
    remote_router_id: Option<Ipv4Addr>,
    out: BytesMut,
}

impl PeerTask {
    fn new(
        config: Arc<PeerConfig>,
        commands: mpsc::Receiver<Command>,
        status: watch::Sender<PeerStatus>,
    ) -> Self {
        let (events_tx, events) = mpsc::channel(WRITE_QUEUE);
        let seed = rand::random::<u64>();
        let mut rib = AdjRibOut::new();
        rib.hold_end_of_rib(true);
        PeerTask {
            fsm: Fsm::new(config.fsm_config(), seed),
            config,
            commands,
            status,
            rib,
            codec: CodecCtx::default(),
            conn: None,
            pending: None,
            connecting: None,
            events_tx,
            events,
            timers: HashMap::new(),
            next_conn_id: 0,
            updates_received: 0,
            nlri_received: 0,
            withdrawals_received: 0,
            last_error: None,
            established_count: 0,
            established_at: None,
            families: Vec::new(),
            remote_router_id: None,
            out: BytesMut::new(),
        }
    }

    async fn run(mut self) {
        let start = if self.config.mode == Mode::Passive {
            Event::AutomaticStartWithPassiveTcpEstablishment
        } else {
            Event::AutomaticStart
        };
        self.handle(start);
        loop {
            let deadline = self.timers.values().min().copied();
            let wants_room =
                self.rib.is_established() && self.rib.has_work() && self.conn.is_some();
            let wake = {
                let connecting = &mut self.connecting;
                let conn = &self.conn;
                tokio::select! {
                    cmd = self.commands.recv() => Wake::Command(cmd),
                    Some(ev) = self.events.recv() => Wake::Conn(ev),
                    res = async { connecting.as_mut().expect("guarded").await }, if connecting.is_some() => {
                        Wake::Connected(res.unwrap_or_else(|_| Err(std::io::ErrorKind::Interrupted.into())))
                    }
                    _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => Wake::Timer,
                    _ = async { conn.as_ref().expect("guarded").reserve().await }, if wants_room => Wake::Room,
                }
            };
            match wake {
                Wake::Command(None) => {
                    self.stop("the speaker went away").await;
                    return;
                }
                Wake::Command(Some(Command::Shutdown(reason))) => {
                    self.stop(&reason).await;
                    return;
                }
                Wake::Command(Some(c)) => {
                    self.on_command(c);
                    // What else is queued, up to a bound, before anything is written; a
                    // shutdown among it stops the task as it would have alone.
                    for _ in 0..COMMANDS_PER_WAKE {
                        match self.commands.try_recv() {
                            Ok(Command::Shutdown(reason)) => {
                                self.stop(&reason).await;
                                return;
                            }
                            Ok(c) => self.on_command(c),
                            Err(_) => break,
                        }
                    }
                }
                Wake::Conn(ev) => self.on_conn_event(ev),
                Wake::Connected(res) => {
                    self.connecting = None;
                    self.on_connected(res);
                }
                Wake::Timer => self.on_timers(),
                Wake::Room => {}
            }
            self.flush_rib();
            self.publish();
        }
    }

    fn now(&self) -> std::time::Instant {
        Instant::now().into_std()
    }

    fn handle(&mut self, event: Event) {
        let now = self.now();
        let outputs = self.fsm.handle(event, now);
        for o in outputs {
            self.apply(o);
        }
        // Our connection is gone and a collided one is waiting: it carries the session now. Done
        // after the whole batch of outputs, so the old session's timer stops cannot hit the new one.
        if self.conn.is_none() && self.fsm.state() == State::Idle {
            if let Some(p) = self.pending.take() {
                self.take_over(p);
            }
        }
    }

    fn apply(&mut self, output: Output) {
        match output {
            Output::Connect => self.start_connect(),
            Output::Disconnect => self.drop_connection(),
            Output::Send(msg) => self.send(&msg),
            Output::ArmTimer(t, d) => {
                self.timers.insert(t, Instant::now() + d);
            }
            Output::StopTimer(t) => {
                self.timers.remove(&t);
            }
            Output::Established(neg) => {
                self.codec = CodecCtx {
                    four_octet_as: neg.four_octet_as,
                    extended_message: neg.extended_message,
                };
                let families: BTreeSet<Family> = neg
                    .families
                    .iter()
                    .copied()
                    .filter(|f| self.config.families.contains(f))
                    .collect();
                self.families = families.iter().copied().collect();
                self.remote_router_id = Some(neg.remote_router_id);
                self.established_count += 1;
                self.established_at = Some(std::time::SystemTime::now());
                self.last_error = None;
                info!(families = ?self.families, remote_id = %neg.remote_router_id, "session established");
                self.rib.session_up(SessionCtx {
                    local_as: self.config.local_as,
                    ebgp: neg.ebgp,
                    codec: self.codec,
                    families,
                    max_flowspec_nlri_len: self.config.max_flowspec_nlri_len,
                });
            }
            Output::Down(reason) => {
                warn!(%reason, "session down");
                self.last_error = Some(reason.to_string());
                self.rib.session_down();
                self.codec = CodecCtx::default();
                self.families.clear();
                self.established_at = None;
            }
        }
    }

    fn send(&mut self, msg: &Message) {
        let Some(conn) = &self.conn else { return };
        let mut buf = BytesMut::new();
        if let Err(e) = msg.encode(&self.codec, &mut buf) {
            warn!("cannot encode {msg:?}: {e}");
            return;
        }
        if !conn.try_send(buf.freeze()) {
            warn!("write queue full or closed: message dropped");
        }
    }

    fn start_connect(&mut self) {
        if self.conn.is_some() || self.connecting.is_some() {
            return;
        }
        let remote = SocketAddr::new(self.config.remote, self.config.port);
        let opts = self.config.socket.clone();
        let timeout = self.config.connect_retry;
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let _ = tx.send(conn::connect(remote, &opts, timeout).await);
        });
        self.connecting = Some(rx);
        debug!(%remote, "connecting");
    }

    fn on_connected(&mut self, res: std::io::Result<TcpStream>) {
        match res {
            Ok(stream) if self.conn.is_none() => match self.adopt(stream, true) {
                Ok(()) => self.handle(Event::TcpCrAcked),
                Err(e) => {
                    self.last_error = Some(format!("connection setup: {e}"));
                    self.handle(Event::TcpConnectionFails);
                }
            },
            Ok(_) => debug!("outgoing connection not needed any more"),
            Err(e) => {
                debug!("connect failed: {e}");
                self.last_error = Some(format!("connect: {e}"));
                self.handle(Event::TcpConnectionFails);
            }
        }
    }

    fn adopt(&mut self, stream: TcpStream, outbound: bool) -> std::io::Result<()> {
        if self.config.socket.gtsm && !outbound {
            conn::set_gtsm(&stream, self.config.remote.is_ipv6())?;
        }
        self.next_conn_id += 1;
        let c = Connection::start(
            self.next_conn_id,
            stream,
            outbound,
            self.events_tx.clone(),
            self.config.send_hold_time(),
        )?;
        debug!(local = %c.local, remote = %c.remote, outbound, "connection up");
        self.conn = Some(c);
        Ok(())
    }

    /// Closes the connection (after what is queued is written) and abandons a connect in flight.
    fn drop_connection(&mut self) {
        self.connecting = None;
        if let Some(c) = self.conn.take() {
            tokio::spawn(c.close_with(None, Duration::from_secs(1)));
        }
    }

    fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Set(k, a) => self.change(RouteChange::Set(k, a)),
            Command::Remove(k) => self.change(RouteChange::Remove(k)),
            Command::Routes(changes) => {
                for c in changes {
                    self.change(c);
                }
            }
            Command::TableComplete => self.rib.hold_end_of_rib(false),
            Command::Incoming(stream) => self.accept(stream),
            Command::Shutdown(_) => {}
        }
    }

    fn change(&mut self, c: RouteChange) {
        match c {
            RouteChange::Set(k, a) => {
                if let Err(e) = self.rib.set(k, a) {
                    warn!("route refused: {e}");
                }
            }
            RouteChange::Remove(k) => {
                self.rib.remove(&k);
            }
        }
    }

    /// Leaves Idle at once for a connection the peer opened, instead of refusing it until the
    /// automatic restart's back-off ends (RFC 4271 §8.1.1, passive TCP establishment).
    fn start_for_incoming(&mut self) {
        if self.fsm.state() == State::Idle {
            self.timers.remove(&Timer::IdleHold);
            self.handle(Event::AutomaticStartWithPassiveTcpEstablishment);
        }
    }

    /// An accepted connection: take it, hold it for collision resolution, or refuse it.
    fn accept(&mut self, stream: TcpStream) {
        self.start_for_incoming();
        match self.fsm.state() {
            State::Established => {
                debug!("connection while established: closed (RFC 4271 §6.8)");
                drop(stream);
            }
            State::OpenSent | State::OpenConfirm if self.conn.is_some() => {
                if let Some(old) = self.pending.take() {
                    tokio::spawn(old.conn.close_with(None, Duration::from_secs(1)));
                }
                self.next_conn_id += 1;
                match Connection::start(
                    self.next_conn_id,
                    stream,
                    false,
                    self.events_tx.clone(),
                    self.config.send_hold_time(),
                ) {
                    Ok(conn) => {
                        debug!(
                            "connection collision: holding the new connection until the remote identifier is known"
                        );
                        self.pending = Some(Pending { conn, open: None });
                        self.resolve_collision();
                    }
                    Err(e) => warn!("accepted connection unusable: {e}"),
                }
            }
            _ => {
                self.conn = None;
                self.connecting = None;
                match self.adopt(stream, false) {
                    Ok(()) => self.handle(Event::TcpConnectionConfirmed),
                    Err(e) => warn!("accepted connection unusable: {e}"),
                }
            }
        }
    }

    /// With two connections and the remote identifier known (from either one's OPEN), keep the one
    /// initiated by the higher identifier (RFC 4271 §6.8) and close the other with Cease 6/7.
    fn resolve_collision(&mut self) {
        let (Some(p), Some(conn)) = (&self.pending, &self.conn) else {
            return;
        };
        let Some(remote_id) = self
            .fsm
            .remote_router_id()
            .or(p.open.as_ref().map(|o| o.router_id))
        else {
            return; // wait for an OPEN
        };
        let winner = fsm::resolve_collision(self.config.router_id, remote_id);
        // The pending connection was opened by the peer; ours wins only if it is outbound.
        if conn.outbound && winner == fsm::CollisionWinner::Remote {
            debug!("connection collision: the peer's connection wins");
            // Cease 6/7 on ours; `handle` then hands the session to the pending connection.
            self.handle(Event::OpenCollisionDump);
        } else if let Some(p) = self.pending.take() {
            debug!("connection collision: keeping the existing connection");
            let mut buf = BytesMut::new();
            let n = Message::Notification(Notification::cease_collision());
            let last = n
                .encode(&CodecCtx::default(), &mut buf)
                .ok()
                .map(|_| buf.freeze());
            tokio::spawn(p.conn.close_with(last, Duration::from_secs(1)));
        }
    }

    /// The collided connection becomes the session's: OPEN on it, and its peer OPEN if already read.
    fn take_over(&mut self, p: Pending) {
        self.start_for_incoming();
        self.connecting = None;
        debug!(remote = %p.conn.remote, "the collided connection carries the session");
        self.conn = Some(p.conn);
        self.handle(Event::TcpConnectionConfirmed);
        if let Some(open) = p.open {
            self.handle(Event::BgpOpen(open));
        }
    }

    /// Events of the pending connection: its OPEN, or its end.
    fn on_pending_event(&mut self, ev: ConnEvent) {
        match ev {
            ConnEvent::Frame(_, frame) => match Message::decode(&CodecCtx::default(), &frame) {
                Ok(Message::Open(o)) => {
                    if let Some(p) = self.pending.as_mut() {
                        p.open = Some(o);
                    }
                    self.resolve_collision();
                }
                other => {
                    debug!(
                        ?other,
                        "unexpected message on the collided connection: closed"
                    );
                    self.pending = None;
                }
            },
            _ => self.pending = None,
        }
    }

    fn on_conn_event(&mut self, ev: ConnEvent) {
        let current = self.conn.as_ref().map(|c| c.id);
        let id = match &ev {
            ConnEvent::Frame(id, _)
            | ConnEvent::BadHeader(id, _)
            | ConnEvent::Closed(id, _)
            | ConnEvent::WriteFailed(id, _)
            | ConnEvent::SendHoldExpired(id) => *id,
        };
        if self.pending.as_ref().is_some_and(|p| p.conn.id == id) {
            return self.on_pending_event(ev);
        }
        if Some(id) != current {
            return; // from a connection already given up
        }
        match ev {
            ConnEvent::Frame(_, frame) => self.on_frame(frame),
            ConnEvent::BadHeader(_, e) => {
                self.last_error = Some(format!("bad message header: {e}"));
                self.handle(Event::BgpHeaderErr(e.notification()));
            }
            ConnEvent::Closed(_, e) => {
                self.last_error = Some(match e {
                    Some(e) => format!("connection lost: {e}"),
                    None => "connection closed by the peer".into(),
                });
                self.handle(Event::TcpConnectionFails);
            }
            ConnEvent::WriteFailed(_, e) => {
                self.last_error = Some(format!("write failed: {e}"));
                self.handle(Event::TcpConnectionFails);
            }
            ConnEvent::SendHoldExpired(_) => self.handle(Event::SendHoldTimerExpires),
        }
    }

    fn on_frame(&mut self, frame: Bytes) {
        let max = if self.codec.extended_message {
            header::MAX_EXTENDED_LEN
        } else {
            header::MAX_LEN
        };
        if frame.len() > max {
            let e = header::HeaderError::BadLength(frame.len() as u16);
            self.handle(Event::BgpHeaderErr(e.notification()));
            return;
        }
        match Message::decode(&self.codec, &frame) {
            Ok(Message::Open(o)) => {
                self.handle(Event::BgpOpen(o));
                if self.fsm.state() == State::OpenConfirm {
                    self.resolve_collision();
                }
            }
            Ok(Message::Keepalive) => self.handle(Event::KeepAliveMsg),
            Ok(Message::Notification(n)) => {
                warn!(notification = %n, "NOTIFICATION received");
                self.last_error = Some(format!("NOTIFICATION received: {n}"));
                self.handle(Event::NotifMsg(n));
            }
            Ok(Message::Update(u)) => {
                self.updates_received += 1;
                let a = &u.attributes;
                self.nlri_received +=
                    (u.nlri.len() + a.mp_reach.as_ref().map_or(0, |m| m.nlri.len())) as u64;
                self.withdrawals_received += (u.withdrawn.len()
                    + a.mp_unreach.as_ref().map_or(0, |m| m.withdrawn.len()))
                    as u64;
                if let Some(v) = u.worst_verdict() {
                    warn!(verdict = ?v, problems = ?u.problems, "UPDATE with errors (RFC 7606)");
                }
                if let Some(family) = u.end_of_rib_family() {
                    debug!(%family, "End-of-RIB received");
                }
                self.handle(Event::UpdateMsg);
            }
            Ok(Message::RouteRefresh(rr)) => {
                // Subtype 0 is a request; 1 and 2 mark the peer's own re-advertisement (RFC 7313).
                match Family::from_codes(rr.afi, rr.safi) {
                    Some(f) if self.rib.is_established() && rr.subtype == 0 => {
                        info!(family = %f, "ROUTE-REFRESH: re-sending");
                        self.rib.route_refresh(f);
                    }
                    _ => debug!(
                        afi = rr.afi,
                        safi = rr.safi,
                        subtype = rr.subtype,
                        "ROUTE-REFRESH that asks nothing of us"
                    ),
                }
                self.handle(Event::RouteRefreshMsg);
            }
            Err(e) => {
                warn!("malformed message: {e}");
                self.last_error = Some(format!("malformed message: {e}"));
                self.handle(Event::decode_error(&e));
            }
        }
    }

    fn on_timers(&mut self) {
        let now = Instant::now();
        let due: Vec<Timer> = self
            .timers
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(t, _)| *t)
            .collect();
        for t in due {
            self.timers.remove(&t);
            self.handle(Event::timer_expired(t));
        }
    }

    /// Moves pending routes into the write queue while it has room beyond the control reserve.
    fn flush_rib(&mut self) {
        let Some(conn) = &self.conn else { return };
        if !self.rib.is_established() {
            return;
        }
        loop {
            let room = conn.capacity().saturating_sub(CONTROL_RESERVE);
            if room == 0 || !self.rib.has_work() {
                return;
            }
            let n = self.rib.drain(&mut self.out, room);
            if n == 0 {
                return;
            }
            for _ in 0..n {
                let len = usize::from(u16::from_be_bytes([self.out[16], self.out[17]]));
                let msg = self.out.split_to(len).freeze();
                if !conn.try_send(msg) {
                    // Cannot happen with the room checked above; the session would be inconsistent.
                    warn!("write queue refused an UPDATE: resetting the session");
                    self.out.clear();
                    self.handle(Event::TcpConnectionFails);
                    return;
                }
            }
        }
    }

    fn publish(&self) {
        let s = PeerStatus {
            state: self.fsm.state(),
            established_at: self.established_at,
            established_count: self.established_count,
            families: self.families.clone(),
            remote_router_id: self.remote_router_id,
            rib: self.rib.stats(),
            desired: self.rib.desired_len(),
            advertised: self.rib.advertised_len(),
            held_back: self.rib.held_back().len(),
            updates_received: self.updates_received,
            nlri_received: self.nlri_received,
            withdrawals_received: self.withdrawals_received,
            last_error: self.last_error.clone(),
            synced: self.rib.is_established() && self.rib.is_synced(),
        };
        self.status.send_if_modified(|old| {
            let changed = *old != s;
            *old = s;
            changed
        });
    }

    /// Cease (administrative shutdown, with `reason` as the RFC 9003 message) and end.
    async fn stop(&mut self, reason: &str) {
        let outputs = self.fsm.handle(Event::ManualStop, self.now());
        for o in outputs {
            match o {
                Output::Send(Message::Notification(n))
                    if n.code == deflect_bgp::notification::code::CEASE =>
                {
                    self.send(&Message::Notification(Notification::cease_admin_shutdown(
                        reason,
                    )));
                }
                Output::Disconnect => {
                    if let Some(c) = self.conn.take() {
                        c.close_with(None, Duration::from_secs(2)).await;
                    }
                }
                other => self.apply(other),
            }
        }
        self.rib.session_down();
        self.connecting = None;
        info!(%reason, "peer stopped");
        self.publish();
    }
}
