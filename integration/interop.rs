//! Interop: deflect's speaker against live BIRD 2 and GoBGP, started as processes on loopback.
//!
//! deflect announces an IPv4 FlowSpec discard, an IPv4 rate-limit with TCP flags and packet length,
//! an IPv6 FlowSpec rule and an RTBH /32 with BLACKHOLE and a next hop; each must arrive with exactly
//! its components and action, as the router's own CLI shows them, and disappear on withdraw. Then the
//! router is restarted and everything must come back. What each router prints is asserted verbatim.

#[path = "routers/mod.rs"]
mod routers;

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deflect::peer::{PeerConfig, PeerHandle};
use deflect::route::{parse_flow, parse_rtbh};
use deflect::speaker::Speaker;
use deflect_bgp::fsm::State;
use deflect_bgp::rib::{RouteAttrs, RouteKey};
use routers::{Bird, Gobgp, Session, free_port, gobgp_attr, wait_for};

const WAIT: Duration = Duration::from_secs(20);

/// The four routes of the issue, in deflect's syntax.
const FLOW_DISCARD: &str = "dst 192.0.2.7/32 proto udp sport 123 then discard";
const FLOW_RATE: &str =
    "dst 192.0.2.8/32 proto tcp tcp-flags syn pkt-len 40..60 then rate-bytes 12500";
const FLOW_V6: &str = "dst 2001:db8::1/128 next-header tcp dport 80 then discard";
const RTBH: &str = "192.0.2.9/32 next-hop 192.0.2.66";

fn routes() -> Vec<(RouteKey, RouteAttrs)> {
    let mut v: Vec<_> = [FLOW_DISCARD, FLOW_RATE, FLOW_V6]
        .iter()
        .map(|f| parse_flow(f).unwrap())
        .collect();
    v.push(parse_rtbh(RTBH).unwrap());
    v
}

fn session(router: &str, deflect: &str) -> Session {
    let router_addr: IpAddr = router.parse().unwrap();
    Session {
        router_addr,
        router_port: free_port(router_addr),
        router_as: 65001,
        router_id: "192.0.2.254",
        deflect_addr: deflect.parse().unwrap(),
        deflect_as: 65000,
        md5_password: None,
        graceful_restart: true,
    }
}

async fn start_speaker(s: &Session) -> Speaker {
    let mut c = PeerConfig::new(s.router_addr, s.router_as);
    c.port = s.router_port;
    c.local_as = s.deflect_as;
    c.router_id = "192.0.2.10".parse().unwrap();
    c.socket.local_addr = Some(s.deflect_addr);
    c.socket.md5_password = s.md5_password.clone();
    c.connect_retry = Duration::from_millis(500);
    let speaker = Speaker::start(vec![c], &[]).await.unwrap();
    // Driven route by route, no store behind it: its table is complete as it stands.
    speaker.table_complete().await;
    speaker
}

async fn wait_established(p: &PeerHandle) {
    let mut w = p.watch();
    let ok = tokio::time::timeout(WAIT, async {
        loop {
            if w.borrow_and_update().state == State::Established {
                return;
            }
            if w.changed().await.is_err() {
                return;
            }
        }
    })
    .await;
    assert!(ok.is_ok(), "no session: {:#?}", p.status());
}

/// Runs a blocking router query off the runtime's threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.unwrap()
}

// ----------------------------------------------------------------------------------------------
// What each router shows, as comparable lines.

/// A live router as the tests see it.
trait Router: Sized + Send + 'static {
    fn start(s: Session) -> routers::Result<Self>;
    /// What it holds from deflect, one sorted line per route.
    fn view(&self) -> routers::Result<Vec<String>>;
    /// The lines for the routes of [`routes`] that are `on`.
    fn expected(on: &[bool; 4]) -> Vec<String>;
    fn restart(&mut self) -> routers::Result<()>;
    fn log(&self) -> String;
}

const BIRD_DISCARD: (&str, &str) = (
    "flow4 { dst 192.0.2.7/32; proto 17; sport 123; }",
    "generic, 0x80060000, 0x0",
);
const BIRD_RATE: (&str, &str) = (
    "flow4 { dst 192.0.2.8/32; proto 6; tcp flags 0x2/0x2; length 40..60; }",
    "generic, 0x80060000, 0x46435000",
);
const BIRD_V6: (&str, &str) = (
    "flow6 { dst 2001:db8::1/128; next header 6; dport 80; }",
    "generic, 0x80060000, 0x0",
);

/// What BIRD holds from deflect: flow4, flow6 and unicast, as comparable text.
fn bird_view(b: &Bird) -> routers::Result<Vec<String>> {
    let mut v = Vec::new();
    for t in ["ft4", "ft6"] {
        for (rule, ec) in b.flow_routes(t)? {
            v.push(format!("{rule} => {}", ec.join(" | ")));
        }
    }
    for (p, nh, c) in b.unicast_routes("master4")? {
        v.push(format!("{p} via {nh} community {c}"));
    }
    v.sort();
    Ok(v)
}

fn bird_expected(which: &[bool; 4]) -> Vec<String> {
    let mut v = Vec::new();
    for (on, (rule, ec)) in which.iter().zip([BIRD_DISCARD, BIRD_RATE, BIRD_V6]) {
        if *on {
            v.push(format!("{rule} => {ec}"));
        }
    }
    if which[3] {
        v.push("192.0.2.9/32 via 192.0.2.66 community (65535,666)".to_string());
    }
    v.sort();
    v
}

impl Router for Bird {
    fn start(s: Session) -> routers::Result<Self> {
        Bird::start(s)
    }
    fn view(&self) -> routers::Result<Vec<String>> {
        bird_view(self)
    }
    fn expected(on: &[bool; 4]) -> Vec<String> {
        bird_expected(on)
    }
    fn restart(&mut self) -> routers::Result<()> {
        Bird::restart(self)
    }
    fn log(&self) -> String {
        Bird::log(self)
    }
}

fn gobgp_view(g: &Gobgp) -> routers::Result<Vec<String>> {
    let mut v = Vec::new();
    for fam in ["ipv4-flowspec", "ipv6-flowspec"] {
        for (nlri, attrs) in g.rib(fam)? {
            let ec = gobgp_attr(&attrs, 16)
                .map(|a| a["value"].to_string())
                .unwrap_or_default();
            v.push(format!("{nlri} => {ec}"));
        }
    }
    for (nlri, attrs) in g.rib("ipv4")? {
        let nh = gobgp_attr(&attrs, 3)
            .map(|a| a["nexthop"].to_string())
            .unwrap_or_default();
        let c = gobgp_attr(&attrs, 8)
            .map(|a| a["communities"].to_string())
            .unwrap_or_default();
        v.push(format!("{nlri} via {nh} communities {c}"));
    }
    v.sort();
    Ok(v)
}

fn gobgp_expected(which: &[bool; 4]) -> Vec<String> {
    let discard = r#"[{"as":0,"rate":0,"subtype":6,"type":128}]"#;
    let rate = r#"[{"as":0,"rate":12500,"subtype":6,"type":128}]"#;
    let all = [
        format!("[destination: 192.0.2.7/32][protocol: ==udp][source-port: ==123] => {discard}"),
        format!(
            "[destination: 192.0.2.8/32][protocol: ==tcp][tcp-flags: =S][packet-length: >=40&<=60] => {rate}"
        ),
        format!(
            "[destination: 2001:db8::1/128/0][protocol: ==tcp][destination-port: ==80] => {discard}"
        ),
        // 4294902426 is 65535:666, BLACKHOLE.
        r#"192.0.2.9/32 via "192.0.2.66" communities [4294902426]"#.to_string(),
    ];
    let mut v: Vec<String> = which
        .iter()
        .zip(all)
        .filter(|(on, _)| **on)
        .map(|(_, s)| s)
        .collect();
    v.sort();
    v
}

impl Router for Gobgp {
    fn start(s: Session) -> routers::Result<Self> {
        Gobgp::start(s)
    }
    fn view(&self) -> routers::Result<Vec<String>> {
        gobgp_view(self)
    }
    fn expected(on: &[bool; 4]) -> Vec<String> {
        gobgp_expected(on)
    }
    fn restart(&mut self) -> routers::Result<()> {
        Gobgp::restart(self)
    }
    fn log(&self) -> String {
        Gobgp::log(self)
    }
}

/// Polls the router until it holds exactly the routes that are `on`.
fn wait_sync<R: Router>(r: &R, on: [bool; 4], what: &str) -> Result<(), String> {
    let want = R::expected(&on);
    let mut last = Vec::new();
    wait_for(what, WAIT, || {
        last = r.view()?;
        Ok((last == want).then_some(()))
    })
    .map_err(|e| {
        format!(
            "{e}\nwanted: {want:#?}\nthe router has: {last:#?}\nits log:\n{}",
            r.log()
        )
    })
}

async fn wait<R: Router>(r: &Arc<Mutex<R>>, on: [bool; 4], what: &'static str) {
    let r = r.clone();
    if let Err(e) = blocking(move || wait_sync(&*r.lock().unwrap(), on, what)).await {
        panic!("{e}");
    }
}

/// The issue's scenario: announce the four routes, withdraw them one by one, announce them again,
/// restart the router and see everything come back.
async fn announce_withdraw_restart<R: Router>(router_addr: &str, deflect_addr: &str) {
    let s = session(router_addr, deflect_addr);
    let router = Arc::new(Mutex::new(R::start(s.clone()).unwrap()));
    let speaker = start_speaker(&s).await;
    let peer = speaker.peers()[0].clone();
    wait_established(&peer).await;

    let routes = routes();
    for (k, a) in &routes {
        speaker.set(k.clone(), Arc::new(a.clone())).await;
    }
    wait(&router, [true; 4], "all four routes").await;

    // Withdraw one at a time: exactly that one disappears.
    let mut on = [true; 4];
    for (i, (k, _)) in routes.iter().enumerate() {
        speaker.remove(k.clone()).await;
        on[i] = false;
        wait(&router, on, "a withdrawal").await;
    }

    // Announce again, restart the router: the new session gets the whole table.
    for (k, a) in &routes {
        speaker.set(k.clone(), Arc::new(a.clone())).await;
    }
    wait(&router, [true; 4], "routes before the restart").await;
    let before = peer.status().established_count;
    let r = router.clone();
    blocking(move || r.lock().unwrap().restart()).await.unwrap();
    wait(&router, [true; 4], "routes after the router restarted").await;
    assert!(peer.status().established_count > before);
    speaker.shutdown("test over").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_receives_flowspec_and_rtbh_exactly_and_loses_them_on_withdraw() {
    announce_withdraw_restart::<Bird>("127.0.41.1", "127.0.41.2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gobgp_receives_flowspec_and_rtbh_exactly_and_loses_them_on_withdraw() {
    announce_withdraw_restart::<Gobgp>("127.0.42.1", "127.0.42.2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn md5_session_with_bird_comes_up_and_carries_routes() {
    let mut s = session("127.0.43.1", "127.0.43.2");
    s.md5_password = Some("deflect-md5".into());
    let bird = Arc::new(Mutex::new(Bird::start(s.clone()).unwrap()));
    let speaker = start_speaker(&s).await;
    wait_established(&speaker.peers()[0]).await;
    let (k, a) = parse_flow(FLOW_DISCARD).unwrap();
    speaker.set(k, Arc::new(a)).await;
    wait(
        &bird,
        [true, false, false, false],
        "the rule over an MD5 session",
    )
    .await;
    speaker.shutdown("test over").await;
}

#[test]
fn routers_keep_the_rules_through_graceful_restart_when_deflect_dies() {
    // deflect vanishes without a NOTIFICATION (as after SIGKILL): with graceful restart both
    // routers keep its rules as stale; deflect's End-of-RIB after reconnecting refreshes them.
    let sb = session("127.0.44.1", "127.0.44.2");
    let sg = session("127.0.44.3", "127.0.44.4");
    let bird = Bird::start(sb.clone()).unwrap();
    let gobgp = Gobgp::start(sg.clone()).unwrap();
    let rule = || parse_flow(FLOW_DISCARD).unwrap();
    let first = [true, false, false, false];

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        for s in [&sb, &sg] {
            let sp = start_speaker(s).await;
            wait_established(&sp.peers()[0]).await;
            let (k, a) = rule();
            sp.set(k, Arc::new(a)).await;
            // No shutdown: the speaker dies with the runtime, without a Cease.
            std::mem::forget(sp);
        }
    });
    wait_sync(&bird, first, "the rule in BIRD").unwrap();
    wait_sync(&gobgp, first, "the rule in GoBGP").unwrap();
    // Dropping the runtime aborts every task and closes the sockets with no NOTIFICATION.
    drop(rt);
    std::thread::sleep(Duration::from_secs(3));
    wait_sync(&bird, first, "the rule kept by BIRD after deflect died").unwrap();
    wait_sync(&gobgp, first, "the rule kept by GoBGP after deflect died").unwrap();
    assert!(
        !bird.established().unwrap(),
        "BIRD must have noticed the session loss"
    );

    // deflect comes back with an empty table: the stale rule is flushed after End-of-RIB.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let a = start_speaker(&sb).await;
        let b = start_speaker(&sg).await;
        wait_established(&a.peers()[0]).await;
        wait_established(&b.peers()[0]).await;
        wait_sync(
            &bird,
            [false; 4],
            "BIRD flushing the stale rule after End-of-RIB",
        )
        .unwrap();
        wait_sync(
            &gobgp,
            [false; 4],
            "GoBGP flushing the stale rule after End-of-RIB",
        )
        .unwrap();
        a.shutdown("test over").await;
        b.shutdown("test over").await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_reload_in_gets_the_routes_sent_again_by_route_refresh() {
    let s = session("127.0.45.1", "127.0.45.2");
    let bird = Arc::new(Mutex::new(Bird::start(s.clone()).unwrap()));
    let speaker = start_speaker(&s).await;
    let peer = speaker.peers()[0].clone();
    wait_established(&peer).await;
    for (k, a) in routes() {
        speaker.set(k, Arc::new(a)).await;
    }
    wait(&bird, [true; 4], "all four routes").await;
    let before = peer.status().rib.announced;
    let b = bird.clone();
    // BIRD asks for every channel again with ROUTE-REFRESH (RFC 2918).
    blocking(move || b.lock().unwrap().birdc("reload in deflect"))
        .await
        .unwrap();
    let mut w = peer.watch();
    let after = tokio::time::timeout(WAIT, async {
        loop {
            let n = w.borrow_and_update().rib.announced;
            if n >= before + 4 || w.changed().await.is_err() {
                return n;
            }
        }
    })
    .await
    .unwrap_or(before);
    assert_eq!(
        after,
        before + 4,
        "every route sent once more: {:#?}",
        peer.status()
    );
    assert_eq!(
        peer.status().established_count,
        1,
        "a refresh, not a session reset"
    );
    wait(&bird, [true; 4], "all four routes after the refresh").await;
    speaker.shutdown("test over").await;
}
