//! The controller over real HTTP on loopback, with the real speaker peering with a live GoBGP:
//! mitigations reach the router and leave it (withdraw, expiry), survive restarts, and bad requests
//! get the answer they deserve.

#[path = "routers/mod.rs"]
mod routers;

use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use deflect::config::Config;
use deflect::run::Daemon;
use routers::{Gobgp, Session, free_port, gobgp_attr, wait_for};
use serde_json::{Value, json};

const WRITE: &str = "write-token-0123456789";
const READ: &str = "read-token-0123456789";
const WAIT: Duration = Duration::from_secs(20);

fn config_yaml(state: &Path, api_port: u16, router: Option<&Session>, extra: &str) -> String {
    let neighbors = match router {
        Some(s) => format!(
            "neighbors:\n  - name: gobgp\n    address: {}\n    port: {}\n    remote_as: {}\n    local_address: {}\n    connect_retry: 1s\n    receives: [flowspec, rtbh]\n    rtbh: {{ next_hop_ipv4: 192.0.2.66 }}\n",
            s.router_addr, s.router_port, s.router_as, s.deflect_addr
        ),
        None => String::new(),
    };
    format!(
        "local_as: 65000\nrouter_id: 192.0.2.10\nstate_dir: {}\ngraceful_restart: 0\napi:\n  listen: 127.0.0.1:{api_port}\n  max_body: 4096\n  tokens:\n    - {{ name: noc, token: {WRITE}, scope: write }}\n    - {{ name: viewer, token: {READ}, scope: read }}\n{neighbors}protected:\n  customers: [203.0.113.0/24, 2001:db8:100::/48]\nnever_block: [203.0.113.53/32]\nlimits:\n  default_ttl: 10m\n  max_ttl: 1h\n  max_new_per_minute: 1000\n{extra}",
        state.display()
    )
}

fn temp_dir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "deflect-test-{tag}-{}-{}",
        std::process::id(),
        free_port("127.0.0.1".parse().unwrap())
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    fn new(port: u16) -> Http {
        Http {
            base: format!("http://127.0.0.1:{port}"),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .build()
                .new_agent(),
        }
    }

    /// (status, JSON body) of a request with an optional token and raw body.
    fn req(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
    ) -> (u16, Value) {
        let url = format!("{}{}", self.base, path);
        let auth = token.map(|t| format!("Bearer {t}"));
        let resp = match method {
            "GET" => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            "DELETE" => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            method => {
                let r = if method == "PATCH" {
                    self.agent.patch(&url)
                } else {
                    self.agent.post(&url)
                };
                let mut r = r.header("Content-Type", "application/json");
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send(body.unwrap_or(""))
            }
        };
        let mut resp = resp.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    fn create(&self, body: Value) -> (u16, Value) {
        self.req(
            "POST",
            "/api/v1/mitigations",
            Some(WRITE),
            Some(&body.to_string()),
        )
    }
}

/// A refusal with this status whose JSON error says `why`.
fn refused(status: u16, body: &Value, want: u16, why: &str) {
    assert_eq!(status, want, "{body}");
    assert!(body["error"].as_str().unwrap_or("").contains(why), "{body}");
}

fn gobgp_flow_rules(g: &Gobgp) -> Vec<String> {
    g.rib("ipv4-flowspec")
        .map(|v| v.into_iter().map(|(k, _)| k).collect())
        .unwrap_or_default()
}

fn wait_rules(g: &Gobgp, want: &[&str], what: &str) {
    let mut last = Vec::new();
    let r = wait_for(what, WAIT, || {
        last = gobgp_flow_rules(g);
        let mut w: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        w.sort();
        Ok((last == w).then_some(()))
    });
    if let Err(e) = r {
        panic!("{e}\nGoBGP has {last:#?}\nlog:\n{}", g.log());
    }
}

/// A session with a GoBGP at 127.0.`net`.1, deflect at .2.
fn gobgp_session(net: u8) -> Session {
    let router_addr = IpAddr::from([127, 0, net, 1]);
    Session {
        router_addr,
        router_port: free_port(router_addr),
        router_as: 65001,
        router_id: "192.0.2.254",
        deflect_addr: IpAddr::from([127, 0, net, 2]),
        deflect_as: 65000,
        md5_password: None,
        graceful_restart: false,
    }
}

const RULE: &str = "dst 203.0.113.7/32 proto udp sport 123 then discard";
const GOBGP_RULE: &str = "[destination: 203.0.113.7/32][protocol: ==udp][source-port: ==123]";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mitigation_made_over_http_reaches_gobgp_leaves_it_expires_and_survives_restarts() {
    let s = gobgp_session(51);
    let gobgp = Gobgp::start(s.clone()).unwrap();
    let state = temp_dir("http");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let yaml = config_yaml(&state, api_port, Some(&s), "");
    let settings = Config::parse("test.yaml", &yaml).unwrap().check().unwrap();
    let daemon = Daemon::start(settings.clone(), None).await.unwrap();
    let http = Http::new(api_port);

    // Create: 201, then the rule in GoBGP.
    let (st, m) = tokio::task::spawn_blocking(move || {
        Http::new(api_port)
            .create(json!({"kind": "flowspec", "rule": RULE, "ttl": "10m", "reason": "test"}))
    })
    .await
    .unwrap();
    assert_eq!(st, 201, "{m}");
    let id = m["id"].as_u64().unwrap();
    assert_eq!(m["actor"], "noc");
    let g = std::sync::Arc::new(gobgp);
    let g2 = g.clone();
    tokio::task::spawn_blocking(move || wait_rules(&g2, &[GOBGP_RULE], "the rule in GoBGP"))
        .await
        .unwrap();

    // The same rule again: the same mitigation, extended.
    let (st, again) = tokio::task::spawn_blocking(move || {
        Http::new(api_port).create(json!({"kind": "flowspec", "rule": RULE, "ttl": "20m"}))
    })
    .await
    .unwrap();
    assert_eq!((st, again["id"].as_u64()), (200, Some(id)), "{again}");
    assert!(again["expires_ms"].as_u64() > m["expires_ms"].as_u64());
    // The same rule for other peers is not the same mitigation extended: refused, not silently
    // kept with the old peers.
    let (st, other) = tokio::task::spawn_blocking(move || {
        Http::new(api_port).create(json!({"kind": "flowspec", "rule": RULE, "peers": ["gobgp"]}))
    })
    .await
    .unwrap();
    refused(st, &other, 409, "other peers");
    // An IPv6 blackhole no neighbor can take (GoBGP here has only an IPv4 next hop for RTBH):
    // refused, saying why, rather than reported active and sent nowhere.
    let (st, v6) = tokio::task::spawn_blocking(move || {
        Http::new(api_port).create(json!({"kind": "rtbh", "prefix": "2001:db8:100::9/128"}))
    })
    .await
    .unwrap();
    refused(st, &v6, 422, "rtbh.next_hop_ipv6");

    // New actions, the same rule: changed in place in GoBGP (the same NLRI, now a rate limit),
    // never withdrawn in between; audited. A rule with no action, or an RTBH route, is refused.
    let (st, changed) = tokio::task::spawn_blocking(move || {
        Http::new(api_port).req(
            "PATCH",
            &format!("/api/v1/mitigations/{id}"),
            Some(WRITE),
            Some(&json!({"actions": "rate-bytes 12500", "reason": "let some through"}).to_string()),
        )
    })
    .await
    .unwrap();
    assert_eq!((st, changed["id"].as_u64()), (200, Some(id)), "{changed}");
    assert_eq!(
        changed["rule"],
        "dst 203.0.113.7/32 proto udp sport 123 then rate-bytes 12500"
    );
    let g2 = g.clone();
    tokio::task::spawn_blocking(move || {
        let rate = json!([{"as": 0, "rate": 12500, "subtype": 6, "type": 128}]);
        let mut last = Vec::new();
        wait_for("the new action in GoBGP", WAIT, || {
            last = g2.rib("ipv4-flowspec")?;
            Ok(last
                .iter()
                .any(|(k, attrs)| {
                    k == GOBGP_RULE && gobgp_attr(attrs, 16).is_some_and(|c| c["value"] == rate)
                })
                .then_some(()))
        })
        .unwrap_or_else(|e| panic!("{e}: {last:?}"));
    })
    .await
    .unwrap();
    let (st, bad) = tokio::task::spawn_blocking(move || {
        Http::new(api_port).req(
            "PATCH",
            &format!("/api/v1/mitigations/{id}"),
            Some(WRITE),
            Some(&json!({"actions": "explode"}).to_string()),
        )
    })
    .await
    .unwrap();
    assert_eq!(st, 400, "{bad}");
    let (_, page) = tokio::task::spawn_blocking(move || {
        Http::new(api_port).req("GET", "/api/v1/audit?limit=1000", Some(READ), None)
    })
    .await
    .unwrap();
    let mine: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["detail"]["id"] == id)
        .map(|e| e["action"].as_str().unwrap_or(""))
        .collect();
    assert!(mine.contains(&"mitigation.amend"), "{mine:?}");
    assert!(
        !mine.contains(&"withdraw"),
        "never withdrawn in between: {mine:?}"
    );

    // Delete: gone from GoBGP.
    let (st, w) = tokio::task::spawn_blocking(move || {
        Http::new(api_port).req(
            "DELETE",
            &format!("/api/v1/mitigations/{id}?reason=done"),
            Some(WRITE),
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(st, 200, "{w}");
    assert_eq!(w["withdraw_reason"], "done");
    let g2 = g.clone();
    tokio::task::spawn_blocking(move || wait_rules(&g2, &[], "the rule withdrawn"))
        .await
        .unwrap();

    // A 2-second TTL: announced, then withdrawn by expiry.
    let (st, short) = tokio::task::spawn_blocking(move || {
        Http::new(api_port).create(json!({"kind": "flowspec", "rule": RULE, "ttl": "2s"}))
    })
    .await
    .unwrap();
    assert_eq!(st, 201, "{short}");
    let g2 = g.clone();
    tokio::task::spawn_blocking(move || {
        wait_rules(&g2, &[GOBGP_RULE], "the short-lived rule");
        wait_rules(&g2, &[], "the rule gone at expiry");
    })
    .await
    .unwrap();
    let short_id = short["id"].as_u64().unwrap();
    let (_, m) = tokio::task::spawn_blocking(move || {
        Http::new(api_port).req(
            "GET",
            &format!("/api/v1/mitigations/{short_id}"),
            Some(READ),
            None,
        )
    })
    .await
    .unwrap();
    assert_eq!(m["withdraw_reason"], "expired");

    // One more, then deflect restarts: it comes back from the store and is announced again.
    let (st, _) = tokio::task::spawn_blocking(move || {
        Http::new(api_port).create(json!({"kind": "flowspec", "rule": RULE, "ttl": "10m"}))
    })
    .await
    .unwrap();
    assert_eq!(st, 201);
    let g2 = g.clone();
    tokio::task::spawn_blocking(move || {
        wait_rules(&g2, &[GOBGP_RULE], "the rule before the restart")
    })
    .await
    .unwrap();
    daemon.stop("restart").await;
    let g2 = g.clone();
    tokio::task::spawn_blocking(move || {
        wait_rules(&g2, &[], "the rule flushed when deflect stopped")
    })
    .await
    .unwrap();
    let daemon = Daemon::start(settings, None).await.unwrap();
    let g2 = g.clone();
    tokio::task::spawn_blocking(move || {
        wait_rules(&g2, &[GOBGP_RULE], "the rule restored after the restart")
    })
    .await
    .unwrap();

    // The audit log has it all and verifies.
    let (st, v) = tokio::task::spawn_blocking(move || {
        http.req("GET", "/api/v1/audit/verify", Some(READ), None)
    })
    .await
    .unwrap();
    assert_eq!(st, 200, "{v}");
    let (_, page) = tokio::task::spawn_blocking(move || {
        Http::new(api_port).req("GET", "/api/v1/audit?limit=1000", Some(READ), None)
    })
    .await
    .unwrap();
    let actions: Vec<&str> = page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in [
        "mitigation.create",
        "announce",
        "mitigation.extend",
        "mitigation.withdraw",
        "withdraw",
        "restore",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    daemon.stop("test over").await;
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn a_batch_of_rules_reaches_gobgp_in_one_go_and_a_filter_takes_them_back() {
    let s = gobgp_session(53);
    let g = Gobgp::start(s.clone()).unwrap();
    let state = temp_dir("batch");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let config = state.join("deflect.yaml");
    std::fs::write(
        &config,
        config_yaml(&state.join("db"), api_port, Some(&s), ""),
    )
    .unwrap();
    let mut child = spawn_daemon(&config, &state.join("log"));
    let h = Http::new(api_port);
    wait_api(&h);
    let count = |g: &Gobgp, n: usize, what: &str| {
        let mut last = 0;
        let r = wait_for(what, WAIT, || {
            last = gobgp_flow_rules(g).len();
            Ok((last == n).then_some(()))
        });
        if let Err(e) = r {
            panic!("{e}: GoBGP has {last}\nlog:\n{}", g.log());
        }
    };

    // 200 rules and one that does not read, each on its own: 200 made, one refused.
    let mut items: Vec<Value> = (0..200)
        .map(|i| {
            json!({"kind": "flowspec", "rule": format!("dst 203.0.113.{}/32 proto udp dport {} then discard", 100 + i % 50, 1000 + i), "reason": "feed"})
        })
        .collect();
    items.insert(
        7,
        json!({"kind": "flowspec", "rule": "dst 203.0.113.1/32 then explode"}),
    );
    let body = json!({"mitigations": items}).to_string();
    let (st, v) = h.req(
        "POST",
        "/api/v1/mitigations/batch",
        Some(WRITE),
        Some(&body),
    );
    let errors: Vec<&Value> = v["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["error"].is_string())
        .collect();
    assert_eq!(st, 200, "{}", v["error"]);
    assert_eq!(
        (v["created"].as_u64(), v["refused"].as_u64()),
        (Some(200), Some(1)),
        "{errors:?}"
    );
    assert_eq!(v["results"][7]["status"], 400, "{}", v["results"][7]);
    assert_eq!(v["results"][8]["status"], 201);
    count(&g, 200, "200 rules in GoBGP");

    // Atomic, with one outside every protected prefix: nothing made, the cause named.
    let body = json!({"atomic": true, "mitigations": [
        {"kind": "rtbh", "prefix": "203.0.113.250/32"},
        {"kind": "rtbh", "prefix": "192.0.2.1/32"},
    ]})
    .to_string();
    let (st, v) = h.req(
        "POST",
        "/api/v1/mitigations/batch",
        Some(WRITE),
        Some(&body),
    );
    refused(st, &v, 422, "atomic batch refused, nothing made: item 1:");
    assert_eq!(v["created"], 0, "{v}");
    let (_, list) = h.req("GET", "/api/v1/mitigations", Some(READ), None);
    assert_eq!(list.as_array().unwrap().len(), 200);
    // A read token may not; an empty batch is refused.
    let (st, v) = h.req("POST", "/api/v1/mitigations/batch", Some(READ), Some(&body));
    assert_eq!(st, 403, "{v}");
    let (st, v) = h.req(
        "POST",
        "/api/v1/mitigations/batch",
        Some(WRITE),
        Some(r#"{"mitigations": []}"#),
    );
    refused(st, &v, 400, "mitigations is empty");

    // The CLI's --file: rules and prefixes, comments, a line refused named by its number.
    let file = state.join("rules.txt");
    std::fs::write(
        &file,
        "# a feed\n203.0.113.240/32\n\ndst 203.0.113.241/32 proto tcp dport 22 then discard  # ssh\n198.51.100.9\n",
    )
    .unwrap();
    let (ok, out, err) = cli(
        api_port,
        WRITE,
        &[
            "mitigation",
            "add",
            "--file",
            file.to_str().unwrap(),
            "--reason",
            "from a file",
        ],
    );
    assert!(!ok, "one line refused: {out}");
    assert!(out.contains("2 created, 1 refused"), "{out}");
    assert!(out.contains("rules.txt:5: "), "{out}");
    assert!(err.contains("1 of them refused"), "{err}");
    count(&g, 201, "the file's rule in GoBGP");

    // Withdrawn by filter: the feed's rules, in one transaction; GoBGP keeps the file's.
    let (ok, out, err) = cli(
        api_port,
        WRITE,
        &[
            "mitigation",
            "withdraw",
            "--reason-contains",
            "feed",
            "--kind",
            "flowspec",
            "--reason",
            "feed over",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("200 withdrawn"), "{out}");
    count(&g, 1, "only the file's rule left in GoBGP");
    let (st, v) = h.req(
        "POST",
        "/api/v1/mitigations/withdraw",
        Some(WRITE),
        Some(r#"{"filter": {}}"#),
    );
    refused(st, &v, 400, "names an actor, a reason, a kind or a prefix");
    let (st, v) = h.req(
        "POST",
        "/api/v1/mitigations/withdraw",
        Some(WRITE),
        Some(r#"{"filter": {"prefix": "203.0.113.240/28"}}"#),
    );
    assert_eq!((st, v["withdrawn"].as_u64()), (200, Some(2)), "{v}");
    count(&g, 0, "nothing left in GoBGP");
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_their_status_and_a_json_error() {
    let state = temp_dir("bad");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let settings = Config::parse("test.yaml", &config_yaml(&state, api_port, None, ""))
        .unwrap()
        .check()
        .unwrap();
    let daemon = Daemon::start(settings, None).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let h = Http::new(api_port);
        let ok_rule = json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32 proto tcp then discard"}).to_string();
        // (what, method, token, body, status, words of the error)
        type Case<'a> = (&'a str, &'a str, Option<&'a str>, Option<String>, u16, &'a str);
        let cases: Vec<Case> = vec![
            ("no token", "POST", None, Some(ok_rule.clone()), 401, "missing Authorization"),
            ("unknown token", "POST", Some("nope-nope-nope-nope"), Some(ok_rule.clone()), 401, "unknown token"),
            ("read token writes", "POST", Some(READ), Some(ok_rule.clone()), 403, "may only read"),
            ("read token withdraws", "DELETE", Some(READ), None, 403, "may only read"),
            ("malformed JSON", "POST", Some(WRITE), Some("{\"kind\": ".into()), 400, "request body"),
            ("unknown field", "POST", Some(WRITE), Some(json!({"kind": "rtbh", "prefix": "203.0.113.9/32", "colour": 1}).to_string()), 400, "unknown field `colour`"),
            ("oversized body", "POST", Some(WRITE), Some(format!("{{\"reason\": \"{}\"}}", "x".repeat(5000))), 413, "request body"),
            ("bad rule", "POST", Some(WRITE), Some(json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32 dport 70000 then discard"}).to_string()), 400, "beyond 65535"),
            ("no action", "POST", Some(WRITE), Some(json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32"}).to_string()), 400, "give an action"),
            ("outside protected", "POST", Some(WRITE), Some(json!({"kind": "flowspec", "rule": "dst 198.51.100.9/32 then discard"}).to_string()), 422, "not inside a protected network"),
            ("no destination", "POST", Some(WRITE), Some(json!({"kind": "flowspec", "rule": "proto udp sport 53 then discard"}).to_string()), 422, "no destination"),
            ("never-block", "POST", Some(WRITE), Some(json!({"kind": "flowspec", "rule": "dst 203.0.113.0/24 then discard"}).to_string()), 422, "never-block"),
            ("RTBH too short", "POST", Some(WRITE), Some(json!({"kind": "rtbh", "prefix": "203.0.113.128/25"}).to_string()), 422, "outside /32../32"),
            ("TTL over the maximum", "POST", Some(WRITE), Some(json!({"kind": "rtbh", "prefix": "203.0.113.9/32", "ttl": "2h"}).to_string()), 422, "beyond the maximum"),
            ("TTL not a duration", "POST", Some(WRITE), Some(json!({"kind": "rtbh", "prefix": "203.0.113.9/32", "ttl": "soon"}).to_string()), 400, "not a duration"),
            ("unknown peer", "POST", Some(WRITE), Some(json!({"kind": "rtbh", "prefix": "203.0.113.9/32", "peers": ["nope"]}).to_string()), 400, "no peer named"),
            ("no kind", "POST", Some(WRITE), Some(json!({"prefix": "203.0.113.9/32"}).to_string()), 400, "kind is missing"),
            ("a JSON array", "POST", Some(WRITE), Some(json!(["rtbh", null, "203.0.113.9/32"]).to_string()), 400, "expected a JSON object"),
            ("two traffic rates", "POST", Some(WRITE), Some(json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32 then discard rate-bytes 100"}).to_string()), 400, "conflicts with discard"),
        ];
        for (what, method, token, body, status, text) in cases {
            let path = if method == "DELETE" { "/api/v1/mitigations/1" } else { "/api/v1/mitigations" };
            let (st, v) = h.req(method, path, token, body.as_deref());
            assert_eq!(st, status, "{what}: {v}");
            let err = v["error"].as_str().unwrap_or_else(|| panic!("{what}: no JSON error in {v}"));
            assert!(err.contains(text), "{what}: {err:?} does not say {text:?}");
        }
        // Telemetry comes from node tokens only: an operator's write token is not a node.
        let (st, v) = h.req("POST", "/api/v1/telemetry", Some(WRITE), Some("{}"));
        refused(st, &v, 403, "not a node token");
        let (st, v) = h.req("GET", "/api/v1/mitigations/999", Some(READ), None);
        assert_eq!((st, v["error"].as_str()), (404, Some("no mitigation 999")));
        let (st, _) = h.req("GET", "/api/v1/mitigations/x", Some(READ), None);
        assert_eq!(st, 400);
        let (st, _) = h.req("GET", "/api/v1/nothing", Some(READ), None);
        assert_eq!(st, 404);
        // Refusals are audited.
        let (_, page) = h.req("GET", "/api/v1/audit?limit=1000", Some(READ), None);
        let refused = page["entries"].as_array().unwrap().iter().filter(|e| e["action"] == "mitigation.refused").count();
        assert!(refused >= 10, "{refused} refusals audited");
        // Metrics count requests and errors.
        let (st, m) = h.req("GET", "/metrics", None, None);
        assert_eq!(st, 200);
        let text = m.as_str().unwrap_or_default();
        assert!(text.contains("deflect_api_errors_total") && text.contains("deflect_mitigations_refused_total"), "{text}");
    })
    .await
    .unwrap();
    daemon.stop("test over").await;
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn the_openapi_document_lists_exactly_the_routes_served() {
    let doc: Value = serde_json::from_str(deflect::api::OPENAPI).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.push((method.clone(), path.clone()));
        }
    }
    documented.sort();
    let mut served: Vec<(String, String)> = deflect::api::ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    served.sort();
    assert_eq!(documented, served);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_route_is_served() {
    let state = temp_dir("routes");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let settings = Config::parse("test.yaml", &config_yaml(&state, api_port, None, ""))
        .unwrap()
        .check()
        .unwrap();
    let daemon = Daemon::start(settings, None).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let h = Http::new(api_port);
        for (method, path) in deflect::api::ROUTES {
            let (st, v) = h.req(
                &method.to_uppercase(),
                &path.replace("{id}", "1"),
                Some(WRITE),
                Some("{}"),
            );
            assert!(
                !v.to_string().contains("no such endpoint"),
                "{method} {path}: {st} {v}"
            );
        }
    })
    .await
    .unwrap();
    daemon.stop("test over").await;
    let _ = std::fs::remove_dir_all(&state);
}

// ---------------------------------------------------------------------------------------------
// kill -9

fn spawn_daemon(config: &Path, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(["run", "--config"])
        .arg(config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).unwrap())
        .spawn()
        .unwrap()
}

fn wait_api(h: &Http) {
    wait_for("the API", WAIT, || {
        Ok(h.agent
            .get(format!("{}/api/v1/health", h.base))
            .call()
            .ok()
            .map(|_| ()))
    })
    .unwrap();
}

#[test]
fn sigkill_at_any_moment_loses_no_acknowledged_change() {
    let state = temp_dir("kill");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let config = state.join("deflect.yaml");
    std::fs::write(&config, config_yaml(&state.join("db"), api_port, None, "")).unwrap();
    let h = Http::new(api_port);
    let mut acked: Vec<(u64, bool)> = Vec::new(); // (id, withdrawn)
    for round in 0..3 {
        let mut child = spawn_daemon(&config, &state.join(format!("log{round}")));
        wait_api(&h);
        // Writes until the kill lands at a moment we do not choose.
        let deadline = Instant::now() + Duration::from_millis(300 + 200 * round as u64);
        let mut i = 0u32;
        while Instant::now() < deadline && i < 2000 {
            let prefix = format!("203.0.113.{}/32", 1 + (acked.len() % 50));
            let (st, v) = h.create(json!({"kind": "rtbh", "prefix": prefix, "ttl": "30m", "reason": format!("r{round}-{i}")}));
            match st {
                201 => acked.push((v["id"].as_u64().unwrap(), false)),
                200 => {}
                // Same prefix active: withdraw it, which is a write too.
                _ => panic!("{st} {v}"),
            }
            if i % 3 == 2 {
                if let Some(a) = acked.iter_mut().rev().find(|a| !a.1) {
                    let (st, _) = h.req(
                        "DELETE",
                        &format!("/api/v1/mitigations/{}", a.0),
                        Some(WRITE),
                        None,
                    );
                    if st == 200 {
                        a.1 = true;
                    }
                }
            }
            i += 1;
        }
        // SIGKILL, by PID.
        let _ = Command::new("kill")
            .arg("-9")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
        assert!(!acked.is_empty());
    }
    let mut child = spawn_daemon(&config, &state.join("log-final"));
    wait_api(&h);
    let (st, all) = h.req("GET", "/api/v1/mitigations?all=true", Some(READ), None);
    assert_eq!(st, 200);
    let stored: std::collections::HashMap<u64, Value> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_u64().unwrap(), m.clone()))
        .collect();
    for (id, withdrawn) in &acked {
        let m = stored
            .get(id)
            .unwrap_or_else(|| panic!("acknowledged mitigation {id} lost"));
        if *withdrawn {
            assert!(
                m["withdrawn_ms"].is_u64(),
                "acknowledged withdrawal of {id} lost: {m}"
            );
        }
    }
    let (st, v) = h.req("GET", "/api/v1/audit/verify", Some(READ), None);
    assert_eq!(st, 200, "{v}");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    // With the daemon stopped, the CLI verifies the log straight from the state directory.
    let out = Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(["audit", "verify", "--state-dir"])
        .arg(state.join("db"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("audit log verifies"));
    let _ = std::fs::remove_dir_all(&state);
}

// ---------------------------------------------------------------------------------------------
// Reload, CLI, audit tampering

fn cli(api_port: u16, token: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(args)
        .env("DEFLECT_API", format!("http://127.0.0.1:{api_port}"))
        .env("DEFLECT_TOKEN", token)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sighup_applies_a_good_file_all_at_once_and_a_bad_one_not_at_all() {
    let state = temp_dir("hup");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let config = state.join("deflect.yaml");
    // Two neighbors that never come up (nothing listens there): enough to see which are reset.
    let neighbors = |second_hold: u16| {
        format!(
            "neighbors:\n  - {{ name: a, address: 127.0.61.1, port: 9, remote_as: 65001, connect_retry: 1s }}\n  - {{ name: b, address: 127.0.61.2, port: 9, remote_as: 65002, hold_time: {second_hold}, connect_retry: 1s }}\n"
        )
    };
    std::fs::write(
        &config,
        config_yaml(&state.join("db"), api_port, None, &neighbors(90)),
    )
    .unwrap();
    let mut child = spawn_daemon(&config, &state.join("log"));
    let h = Http::new(api_port);
    wait_api(&h);
    let hup = || {
        let _ = Command::new("kill")
            .arg("-HUP")
            .arg(child.id().to_string())
            .status();
    };
    let reloads = |h: &Http| -> Vec<Value> {
        let (_, page) = h.req("GET", "/api/v1/audit?limit=1000", Some(READ), None);
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| {
                e["action"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("config.reload")
            })
            .cloned()
            .collect()
    };

    // A broken file: refused, audited with its file:line:col, nothing changed.
    std::fs::write(
        &config,
        config_yaml(&state.join("db"), api_port, None, &neighbors(90))
            .replace("local_as: 65000", "local_as: 65000\nbogus: 1"),
    )
    .unwrap();
    hup();
    let r = wait_for("the refused reload", WAIT, || {
        Ok(reloads(&h)
            .into_iter()
            .find(|e| e["action"] == "config.reload.refused"))
    })
    .unwrap();
    let errs = r["detail"]["errors"].as_str().unwrap();
    assert!(
        errs.contains("deflect.yaml:2:1: unknown field `bogus`"),
        "{errs}"
    );
    let (_, peers) = h.req("GET", "/api/v1/peers", Some(READ), None);
    assert_eq!(peers.as_array().unwrap().len(), 2);

    // A good file changing only b: a is kept, b is reset, c is new; the write token still works.
    std::fs::write(
        &config,
        config_yaml(
            &state.join("db"),
            api_port,
            None,
            &format!(
                "{}  - {{ name: c, address: 127.0.61.3, port: 9, remote_as: 65003 }}\n",
                neighbors(30)
            ),
        ),
    )
    .unwrap();
    hup();
    let r = wait_for("the applied reload", WAIT, || {
        Ok(reloads(&h)
            .into_iter()
            .find(|e| e["action"] == "config.reload"))
    })
    .unwrap();
    assert_eq!(r["detail"]["kept"], json!(["a"]), "{r}");
    assert_eq!(r["detail"]["reset"], json!(["b", "c"]), "{r}");
    let (_, peers) = h.req("GET", "/api/v1/peers", Some(READ), None);
    let names: Vec<&str> = peers
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert_eq!(names, ["a", "b", "c"]);
    let (st, _) =
        h.create(json!({"kind": "flowspec", "rule": "dst 203.0.113.9/32 proto udp then discard"}));
    assert_eq!(st, 201);
    // None of them takes RTBH: refused, not reported active and sent nowhere.
    let (st, v) = h.create(json!({"kind": "rtbh", "prefix": "203.0.113.9/32"}));
    refused(st, &v, 422, "no neighbor takes an RTBH route");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn the_cli_adds_lists_shows_and_withdraws_and_reports_refusals() {
    let state = temp_dir("cli");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let config = state.join("deflect.yaml");
    std::fs::write(&config, config_yaml(&state.join("db"), api_port, None, "")).unwrap();
    let mut child = spawn_daemon(&config, &state.join("log"));
    wait_api(&Http::new(api_port));

    let (ok, out, err) = cli(
        api_port,
        WRITE,
        &[
            "mitigation",
            "add",
            "--flow",
            RULE,
            "--ttl",
            "5m",
            "--reason",
            "ntp flood",
        ],
    );
    assert!(ok, "{err}");
    assert!(
        out.contains("dst 203.0.113.7/32 proto udp sport 123 then discard")
            && out.contains("active"),
        "{out}"
    );
    let (ok, out, _) = cli(api_port, READ, &["mitigation", "list", "--json"]);
    assert!(ok);
    let list: Value = serde_json::from_str(&out).unwrap();
    let id = list[0]["id"].as_u64().unwrap();
    let (ok, out, _) = cli(api_port, READ, &["mitigation", "show", &id.to_string()]);
    assert!(ok && out.contains("noc"), "{out}");
    // A refusal: exit code 3 and the reason.
    let (ok, _, err) = cli(
        api_port,
        WRITE,
        &["mitigation", "add", "--rtbh", "198.51.100.1/32"],
    );
    assert!(
        !ok && err.contains("422") && err.contains("not inside a protected network"),
        "{err}"
    );
    // New actions in place: the same mitigation, the same match.
    let (ok, out, err) = cli(
        api_port,
        WRITE,
        &[
            "mitigation",
            "amend",
            &id.to_string(),
            "--actions",
            "rate-bytes 125000",
        ],
    );
    assert!(
        ok && out.contains("dst 203.0.113.7/32 proto udp sport 123 then rate-bytes 125000"),
        "{out}{err}"
    );
    // The read token cannot withdraw; the write token can.
    let (ok, _, err) = cli(api_port, READ, &["mitigation", "withdraw", &id.to_string()]);
    assert!(!ok && err.contains("403"), "{err}");
    let (ok, out, err) = cli(
        api_port,
        WRITE,
        &[
            "mitigation",
            "withdraw",
            &id.to_string(),
            "--reason",
            "over",
        ],
    );
    assert!(ok && out.contains("withdrawn (over)"), "{out}{err}");
    let (ok, out, _) = cli(api_port, READ, &["peers"]);
    assert!(ok && out.starts_with("PEER"), "{out}");
    let (ok, out, _) = cli(api_port, READ, &["audit", "verify"]);
    assert!(ok && out.contains("audit log verifies"), "{out}");
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&state);
}

/// The test configuration over the store in `db`, without a router, and its API port.
fn settings_on(db: &Path) -> (deflect::config::Settings, u16) {
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let settings = Config::parse("test.yaml", &config_yaml(db, api_port, None, ""))
        .unwrap()
        .check()
        .unwrap();
    (settings, api_port)
}

/// A state directory with a few audit entries, the daemon stopped.
fn audited_state(tag: &str) -> std::path::PathBuf {
    let state = temp_dir(tag);
    let db = state.join("db");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (settings, _) = settings_on(&db);
        let d = Daemon::start(settings, None).await.unwrap();
        for i in 1..=4 {
            d.mitigations
                .create(deflect::mitigation::Order {
                    target: deflect::route::Target::Rtbh(
                        format!("203.0.113.{i}/32").parse().unwrap(),
                    ),
                    ttl: None,
                    peers: Vec::new(),
                    reason: String::new(),
                    actor: "noc".into(),
                })
                .await
                .unwrap();
        }
        d.stop("test").await;
    });
    db
}

fn verify_cli(db: &Path) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(["audit", "verify", "--state-dir"])
        .arg(db)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn audit_verify_detects_an_edited_entry() {
    let db = audited_state("edit");
    assert!(verify_cli(&db).0);
    let mut store = deflect::mitigation::store::Store::open(&db).unwrap();
    let mut e = store.audit_page(2, 1).unwrap().remove(0);
    e.actor = "mallory".into();
    store.tamper_audit(e.seq, Some(&e)).unwrap();
    drop(store);
    let (ok, text) = verify_cli(&db);
    assert!(
        !ok && text.contains("entry 3: its content does not match its hash (edited)"),
        "{text}"
    );
}

#[test]
fn audit_verify_of_a_directory_without_a_store_fails_and_creates_nothing() {
    let dir = temp_dir("nostore").join("nowhere");
    let (ok, text) = verify_cli(&dir);
    assert!(!ok && text.contains("no state store at"), "{text}");
    assert!(!dir.exists(), "nothing created");
}

#[test]
fn audit_verify_detects_a_deleted_entry() {
    let db = audited_state("delete");
    let mut store = deflect::mitigation::store::Store::open(&db).unwrap();
    store.tamper_audit(2, None).unwrap();
    drop(store);
    let (ok, text) = verify_cli(&db);
    assert!(
        !ok && text.contains("has sequence number 3, expected 2"),
        "{text}"
    );
}

#[test]
fn audit_verify_detects_reordered_entries() {
    let db = audited_state("reorder");
    let mut store = deflect::mitigation::store::Store::open(&db).unwrap();
    let mut a = store.audit_page(1, 1).unwrap().remove(0);
    let mut b = store.audit_page(2, 1).unwrap().remove(0);
    // Swap their places, renumbered so that the sequence alone looks right.
    std::mem::swap(&mut a.seq, &mut b.seq);
    store.tamper_audit(a.seq, Some(&a)).unwrap();
    store.tamper_audit(b.seq, Some(&b)).unwrap();
    drop(store);
    let (ok, text) = verify_cli(&db);
    assert!(!ok && text.contains("does NOT verify"), "{text}");
}

#[test]
fn retention_prunes_an_old_log_in_batches_and_it_still_verifies() {
    use deflect::audit::AuditDraft;
    let state = temp_dir("retention");
    let db = state.join("db");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let day = 86_400_000;
    // A log 500 days old: 12,000 entries, past the default retention of 400 days.
    let mut store = deflect::mitigation::store::Store::open(&db).unwrap();
    for chunk in 0..12u64 {
        let drafts = (0..1000)
            .map(|i| AuditDraft::new("noc", "mitigation.refused", json!({"n": chunk * 1000 + i})))
            .collect();
        store.commit(&[], &[], drafts, now - 500 * day).unwrap();
    }
    drop(store);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let (settings, api_port) = settings_on(&db);
        let daemon = Daemon::start(settings, None).await.unwrap();
        let h = Http::new(api_port);
        tokio::task::spawn_blocking(move || {
            // A batch at start, the rest a second apart: the API answers all along.
            let first = wait_for("the old log pruned", Duration::from_secs(20), || {
                let (st, page) = h.req("GET", "/api/v1/audit?limit=1", Some(READ), None);
                assert_eq!(st, 200, "{page}");
                let seq = page["entries"][0]["seq"].as_u64().unwrap_or(0);
                Ok((seq > 12_000).then_some(seq))
            })
            .unwrap();
            assert_eq!(first, 12_001);
            let (st, v) = h.req("GET", "/api/v1/audit/verify", Some(READ), None);
            assert_eq!(st, 200, "{v}");
            assert_eq!(v["first_seq"], 12_001, "{v}");
            let (_, page) = h.req("GET", "/api/v1/audit?limit=100", Some(READ), None);
            let prunes: Vec<&Value> = page["entries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|e| e["action"] == "audit.prune")
                .collect();
            assert_eq!(prunes.len(), 3, "{page}");
            assert_eq!(prunes[2]["detail"]["through_seq"], 12_000);
            let (_, m) = h.req("GET", "/metrics", None, None);
            let text = m.as_str().unwrap_or_default();
            assert!(
                text.contains("deflect_store_pruned_audit_entries_total 12000"),
                "{text}"
            );
        })
        .await
        .unwrap();
        daemon.stop("test over").await;
    });
    let (ok, text) = verify_cli(&db);
    assert!(
        ok && text.contains("(1 to 12000 pruned, on record); last hash "),
        "{text}"
    );
    // The first entry kept, removed by hand: no checkpoint says so.
    let mut store = deflect::mitigation::store::Store::open(&db).unwrap();
    store.tamper_audit(12_001, None).unwrap();
    drop(store);
    let (ok, text) = verify_cli(&db);
    assert!(
        !ok && text.contains("entries 1 to 12001 are missing"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&state);
}

// ---------------------------------------------------------------------------------------------
// slow and idle clients

/// Reads from `s` until the server closes it; how long that took, or `None` if it did not within
/// `bound` (whatever arrived before the close is returned too).
fn closed_within(s: &mut std::net::TcpStream, bound: Duration) -> Option<(Duration, String)> {
    use std::io::Read;
    let t = Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while t.elapsed() < bound {
        match s.read(&mut buf) {
            Ok(0) => return Some((t.elapsed(), String::from_utf8_lossy(&got).into_owned())),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return Some((t.elapsed(), String::from_utf8_lossy(&got).into_owned())),
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_slow_and_too_many_connections_cannot_hold_the_api() {
    use std::io::Write;
    use std::net::TcpStream;
    let state = temp_dir("slow");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let text = config_yaml(&state, api_port, None, "").replace(
        "  max_body: 4096\n",
        "  max_body: 4096\n  max_connections: 8\n  header_timeout: 1s\n  request_timeout: 2s\n",
    );
    let settings = Config::parse("test.yaml", &text).unwrap().check().unwrap();
    let daemon = Daemon::start(settings, None).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let addr = format!("127.0.0.1:{api_port}");
        let h = Http::new(api_port);
        // A connection that sends nothing, and one that sends half a header: both cut after
        // the header timeout (1 s), not held for ever.
        let mut idle = TcpStream::connect(&addr).unwrap();
        let mut half = TcpStream::connect(&addr).unwrap();
        half.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            .unwrap();
        for (what, s) in [("idle", &mut idle), ("half a header", &mut half)] {
            let (took, _) = closed_within(s, Duration::from_secs(5))
                .unwrap_or_else(|| panic!("{what}: still open after 5 s"));
            assert!(took < Duration::from_secs(3), "{what}: closed after {took:?}");
        }
        // A kept-alive connection idle after its request goes the same way.
        let mut kept = TcpStream::connect(&addr).unwrap();
        kept.write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let (_, answer) = closed_within(&mut kept, Duration::from_secs(5))
            .expect("a kept-alive idle connection is closed");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // A body sent slowly: the request is cut after 2 s with a JSON 503.
        let mut slow = TcpStream::connect(&addr).unwrap();
        slow.write_all(
            format!(
                "POST /api/v1/mitigations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"kind\""
            )
            .as_bytes(),
        )
        .unwrap();
        let (took, answer) = closed_within(&mut slow, Duration::from_secs(6))
            .expect("a slow body is cut");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.contains("api.request_timeout"), "{answer}");
        assert!(took >= Duration::from_millis(1500), "{took:?}");
        // Past max_connections (8), a new connection takes the place of the one idle the
        // longest: a request on a ninth is answered, and the first held is closed at once.
        let mut held: Vec<TcpStream> = (0..8).map(|_| TcpStream::connect(&addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(200));
        let mut extra = TcpStream::connect(&addr).unwrap();
        extra
            .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let (took, answer) = closed_within(&mut extra, Duration::from_secs(2))
            .expect("the ninth connection is answered");
        assert!(answer.starts_with("HTTP/1.1 200"), "{took:?} {answer}");
        let (took, _) = closed_within(&mut held[0], Duration::from_secs(2))
            .expect("the connection idle the longest is closed");
        assert!(took < Duration::from_millis(900), "evicted after {took:?}");
        drop(held);
        // Every slot busy with a request (a body that never comes, until request_timeout): a new
        // connection is closed at once, unanswered.
        std::thread::sleep(Duration::from_millis(300));
        let busy: Vec<TcpStream> = (0..8)
            .map(|_| {
                let mut s = TcpStream::connect(&addr).unwrap();
                s.write_all(
                    format!(
                        "POST /api/v1/mitigations HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {WRITE}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
                    )
                    .as_bytes(),
                )
                .unwrap();
                s
            })
            .collect();
        std::thread::sleep(Duration::from_millis(300));
        let mut extra = TcpStream::connect(&addr).unwrap();
        extra
            .write_all(b"GET /api/v1/health HTTP/1.1\r\nHost: x\r\n\r\n")
            .ok();
        let (took, answer) = closed_within(&mut extra, Duration::from_secs(2))
            .expect("a connection past 8 busy ones is closed at once");
        assert!(answer.is_empty() && took < Duration::from_secs(1), "{took:?} {answer}");
        wait_for("the API answering again", Duration::from_secs(5), || {
            let up = h
                .agent
                .get(format!("{}/api/v1/health", h.base))
                .call()
                .is_ok_and(|r| r.status() == 200);
            Ok(up.then_some(()))
        })
        .unwrap();
        drop(busy);
        let text = wait_for("/metrics", Duration::from_secs(5), || {
            let h = Http::new(api_port);
            Ok(h.agent
                .get(format!("{}/metrics", h.base))
                .call()
                .ok()
                .and_then(|r| r.into_body().read_to_string().ok()))
        })
        .unwrap();
        let count = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        assert!(
            count("deflect_api_connections_refused_total ").is_some_and(|n| n >= 1),
            "{text}"
        );
        assert!(
            count("deflect_api_connections_evicted_total ").is_some_and(|n| n >= 1),
            "{text}"
        );
    })
    .await
    .unwrap();
    daemon.stop("test").await;
    let _ = std::fs::remove_dir_all(&state);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_past_its_rate_gets_429_and_others_do_not() {
    let state = temp_dir("rate");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    let text = config_yaml(&state, api_port, None, "").replace(
        &format!("{{ name: viewer, token: {READ}, scope: read }}"),
        &format!("{{ name: viewer, token: {READ}, scope: read, rate: 5 }}"),
    );
    let settings = Config::parse("test.yaml", &text).unwrap().check().unwrap();
    let daemon = Daemon::start(settings, None).await.unwrap();
    tokio::task::spawn_blocking(move || {
        let h = Http::new(api_port);
        // A burst of twice the rate, then 429 with a JSON error that says when to retry.
        let statuses: Vec<u16> = (0..15)
            .map(|_| h.req("GET", "/api/v1/mitigations", Some(READ), None).0)
            .collect();
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            10,
            "{statuses:?}"
        );
        let (st, v) = h.req("GET", "/api/v1/mitigations", Some(READ), None);
        refused(st, &v, 429, "over its 5 requests a second");
        // The operator's token has its own budget.
        assert_eq!(
            h.req("GET", "/api/v1/mitigations", Some(WRITE), None).0,
            200
        );
        // A second later, the viewer may read again.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(h.req("GET", "/api/v1/mitigations", Some(READ), None).0, 200);
        let text = h
            .agent
            .get(format!("{}/metrics", h.base))
            .call()
            .unwrap()
            .into_body()
            .read_to_string()
            .unwrap();
        assert!(text.contains("deflect_api_rate_limited_total 6"), "{text}");
    })
    .await
    .unwrap();
    daemon.stop("test").await;
    let _ = std::fs::remove_dir_all(&state);
}

// ---------------------------------------------------------------------------------------------
// a damaged store

fn deflect_cmd(args: &[&str], dir: &Path) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(args)
        .arg("--state-dir")
        .arg(dir)
        .output()
        .unwrap();
    (
        out.status.code(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `deflect run` on the state directory `db` (the daemon's config otherwise as the tests'):
/// its exit status and output, if it stopped within 10 s (else it is killed: it started).
fn run_on(db: &Path, tag: &str) -> (Option<i32>, String) {
    let dir = temp_dir(tag);
    let config = dir.join("deflect.yaml");
    let api_port = free_port("127.0.0.1".parse().unwrap());
    std::fs::write(&config, config_yaml(db, api_port, None, "")).unwrap();
    let log = dir.join("log");
    let mut child = spawn_daemon(&config, &log);
    let t = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s.code();
        }
        if t.elapsed() > Duration::from_secs(10) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    (status, std::fs::read_to_string(&log).unwrap_or_default())
}

/// Flips one bit at `at` in every place `needle` is found in the store file (redb keeps an
/// earlier copy of a page beside the live one).
fn flip_in_file(db: &Path, needle: &[u8], at: usize) {
    let path = db.join("deflect.redb");
    let mut bytes = std::fs::read(&path).unwrap();
    let places: Vec<usize> = bytes
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i)
        .collect();
    assert!(!places.is_empty(), "the record in the file");
    for p in places {
        bytes[p + at] ^= 0x01;
    }
    std::fs::write(&path, bytes).unwrap();
}

#[test]
fn a_changed_record_is_refused_on_restore_then_checked_repaired_and_named_in_the_log() {
    let db = audited_state("flip");
    // 203.0.113.3 becomes 203.0.113.2 in one stored record: valid JSON, a valid prefix, inside
    // the protected network. Only the checksum can tell.
    // (The audit entries name it too, in another field order.)
    let record = b"\"kind\":\"rtbh\",\"prefix\":\"203.0.113.3/32\"";
    flip_in_file(&db, record, record.len() - 5);
    let (code, log) = run_on(&db, "flip-run");
    assert!(code.is_some_and(|c| c != 0 && c != 101), "{code:?} {log}");
    assert!(
        log.contains("checksum mismatch") && log.contains("deflect store check"),
        "{log}"
    );
    let (code, text) = deflect_cmd(&["store", "check"], &db);
    assert_eq!(code, Some(4), "{text}");
    assert!(
        text.contains("damaged: mitigation 3: checksum mismatch"),
        "{text}"
    );
    // Export keeps what is readable; repair rewrites the store without the damaged record.
    let (code, text) = deflect_cmd(&["store", "export"], &db);
    assert_eq!(code, Some(0), "{text}");
    let export: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(export["mitigations"].as_array().map(Vec::len), Some(3));
    let (code, text) = deflect_cmd(&["store", "repair"], &db);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("3 mitigations"), "{text}");
    let (code, text) = deflect_cmd(&["store", "check"], &db);
    assert_eq!(code, Some(0), "{text}");
    assert!(verify_cli(&db).0);
    let kept = std::fs::read_dir(&db)
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("deflect.redb.damaged-")
        });
    assert!(kept, "the damaged file is kept");
    let store = deflect::mitigation::store::Store::open(&db).unwrap();
    let all = store.audit_page(0, 1000).unwrap();
    let repair = all
        .iter()
        .find(|e| e.action == "store.repair")
        .expect("store.repair");
    assert!(
        repair.detail["lost"][0]
            .as_str()
            .unwrap()
            .contains("mitigation 3"),
        "{repair:?}"
    );
    drop(store);
    // The repaired store runs.
    let (code, log) = run_on(&db, "flip-run2");
    assert_eq!(code, None, "deflect ran: {log}");
    // And an export imports into a new directory, the log still verifying.
    let fresh = temp_dir("import").join("db");
    let file = temp_dir("import-file").join("export.json");
    std::fs::write(&file, text_of(&["store", "export"], &db)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_deflect"))
        .args(["store", "import", "--state-dir"])
        .arg(&fresh)
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(verify_cli(&fresh).0);
    let (_, text) = deflect_cmd(&["store", "check"], &fresh);
    assert!(text.contains("mitigations: 3 readable"), "{text}");
}

fn text_of(args: &[&str], dir: &Path) -> String {
    deflect_cmd(args, dir).1
}

#[test]
fn damage_anywhere_in_the_file_never_panics_a_command_or_the_daemon() {
    let db = audited_state("damage");
    let pristine = std::fs::read(db.join("deflect.redb")).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    // A zeroed page, then rounds of 100 random flips: 2,000 in all.
    for round in 0..21 {
        let mut bytes = pristine.clone();
        if round == 0 {
            let page = 4096 * (1 + (bytes.len() / 4096) / 2);
            let end = (page + 4096).min(bytes.len());
            bytes[page.min(end)..end].fill(0);
        } else {
            for _ in 0..100 {
                let i = (next() as usize) % bytes.len();
                bytes[i] ^= 1 << (next() % 8);
            }
        }
        std::fs::write(db.join("deflect.redb"), &bytes).unwrap();
        for cmd in [&["store", "check"][..], &["audit", "verify"][..]] {
            let (code, text) = deflect_cmd(cmd, &db);
            assert!(
                matches!(code, Some(0 | 1 | 4)),
                "round {round}: deflect {cmd:?} exited {code:?}: {text}"
            );
        }
        if round % 5 == 0 {
            let (code, log) = run_on(&db, &format!("damage-run{round}"));
            assert!(
                code.is_none() || code.is_some_and(|c| c != 101),
                "round {round}: deflect run exited {code:?}: {log}"
            );
        }
    }
}
