//! The command line client, in the style of `gobgp`: `deflect mitigation add|list|show|withdraw|extend`,
//! `deflect peers`, `deflect audit list|verify`, talking to the API; `deflect config check`.
//!
//! The API address and token come from `--api`/`--token` or `DEFLECT_API`/`DEFLECT_TOKEN` (and for
//! an https:// API, `--ca`, `--client-cert`, `--client-key` or `DEFLECT_CA`, ...). Output is a
//! human table, or the API's JSON with `--json`. This module writes to standard output on purpose:
//! it is the user interface, not the daemon.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use crate::api::PeerView;
use crate::config::Config;
use crate::mitigation::Mitigation;

#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The daemon's API.
    #[arg(
        long,
        env = "DEFLECT_API",
        default_value = "http://127.0.0.1:8179",
        global = true
    )]
    pub api: String,
    /// A bearer token of the daemon's configuration.
    #[arg(long, env = "DEFLECT_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// For an https:// API: the CA (PEM) its certificate must chain to. Default: the public web's
    /// roots.
    #[arg(long, env = "DEFLECT_CA", value_name = "FILE", global = true)]
    pub ca: Option<PathBuf>,
    /// For an API that asks clients for a certificate (api.tls.client_ca): this one (PEM).
    #[arg(long, env = "DEFLECT_CLIENT_CERT", value_name = "FILE", global = true)]
    pub client_cert: Option<PathBuf>,
    /// The key of --client-cert (PEM).
    #[arg(long, env = "DEFLECT_CLIENT_KEY", value_name = "FILE", global = true)]
    pub client_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum MitigationCmd {
    /// Announce a FlowSpec rule, an RTBH route, a source to blackhole (S/RTBH) or a diversion.
    #[command(group = clap::ArgGroup::new("what").required(true).args(["flow", "rtbh", "source_rtbh", "divert", "file"]))]
    Add {
        /// A FlowSpec rule with its action: 'dst 203.0.113.7/32 proto udp sport 123 then discard'.
        #[arg(long)]
        flow: Option<String>,
        /// A prefix to blackhole (RFC 7999).
        #[arg(long)]
        rtbh: Option<String>,
        /// A source to blackhole (S/RTBH, RFC 5635): its /32 or /128, to the neighbors that
        /// receive source-rtbh (their routers drop what comes from it with uRPF loose).
        #[arg(long)]
        source_rtbh: Option<String>,
        /// A covering prefix of yours to divert to a scrubbing service (needs --next-hop and
        /// --peer).
        #[arg(long, requires = "next_hop")]
        divert: Option<String>,
        /// The diversion's next hop (the scrubbing service's address).
        #[arg(long, requires = "divert")]
        next_hop: Option<String>,
        /// The diversion's communities (repeatable): ASN:VALUE, no-export...
        #[arg(long = "community", requires = "divert")]
        communities: Vec<String>,
        /// The diversion's large communities (repeatable): GLOBAL:LOCAL1:LOCAL2.
        #[arg(long = "large-community", requires = "divert")]
        large_communities: Vec<String>,
        /// Lifetime: 90s, 10m, 24h (the configured default when absent).
        #[arg(long)]
        ttl: Option<String>,
        #[arg(long)]
        reason: Option<String>,
        /// Only these peers (repeatable); every eligible peer when absent.
        #[arg(long = "peer")]
        peers: Vec<String>,
        /// Many at once, in one transaction: a file (`-`: standard input) of one FlowSpec rule
        /// or RTBH prefix per line (`#` starts a comment); --ttl, --reason and --peer apply to
        /// each.
        #[arg(long)]
        file: Option<String>,
        /// With --file: all of them or none.
        #[arg(long, requires = "file")]
        atomic: bool,
    },
    /// Active mitigations (all ever made with --all).
    List {
        #[arg(long)]
        all: bool,
    },
    Show {
        id: u64,
    },
    /// Withdraw a mitigation now, or every active one that matches the filters given.
    #[command(group = clap::ArgGroup::new("which").required(true).multiple(true).args(["id", "actor", "because", "kind", "prefix"]))]
    Withdraw {
        id: Option<u64>,
        /// Those made by this actor (a token's name, `policy:NAME attack:ID`).
        #[arg(long)]
        actor: Option<String>,
        /// Those whose reason contains this text.
        #[arg(long = "reason-contains")]
        because: Option<String>,
        /// Those of this kind: flowspec, rtbh, source-rtbh, divert.
        #[arg(long)]
        kind: Option<String>,
        /// Those whose destination (S/RTBH: source) lies in this prefix.
        #[arg(long)]
        prefix: Option<String>,
        /// Why, for the audit log.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Give a mitigation a new lifetime from now.
    Extend {
        id: u64,
        #[arg(long)]
        ttl: String,
    },
    /// Change a FlowSpec mitigation's actions in place (one UPDATE, no gap): 'discard',
    /// 'rate-bytes 125000'...
    Amend {
        id: u64,
        /// The new actions, in rule syntax.
        #[arg(long)]
        actions: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCmd {
    /// Entries after a sequence number.
    List {
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Check the hash chain: through the API, or straight from a stopped daemon's state directory.
    Verify {
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Check a configuration file as `deflect run` would, and print every error.
    Check { file: PathBuf },
}

/// A failure the user sees: one line, and the exit code.
struct Failure(String, u8);

fn fail(msg: impl Into<String>) -> Failure {
    Failure(msg.into(), 1)
}

fn finish(r: Result<(), Failure>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(msg, code)) => {
            let _ = writeln!(std::io::stderr(), "deflect: {msg}");
            ExitCode::from(code)
        }
    }
}

fn out(text: &str) {
    let mut o = std::io::stdout().lock();
    let _ = writeln!(o, "{text}");
}

struct Client {
    base: String,
    token: Option<String>,
    agent: ureq::Agent,
    /// Why the TLS files could not be used: every call fails with it.
    tls_error: Option<String>,
}

impl Client {
    fn new(a: &ApiArgs) -> Client {
        let tls = crate::api::tls::ClientTls {
            ca: a.ca.clone(),
            cert: a.client_cert.clone(),
            key: a.client_key.clone(),
        };
        let (tls, tls_error) = match tls.config() {
            Ok(c) => (c, None),
            Err(e) => (ureq::tls::TlsConfig::default(), Some(format!("TLS: {e}"))),
        };
        let agent = ureq::Agent::config_builder()
            .tls_config(tls)
            .http_status_as_error(false)
            .build()
            .new_agent();
        Client {
            base: a.api.trim_end_matches('/').to_string(),
            token: a.token.clone(),
            agent,
            tls_error,
        }
    }

    fn usable(&self) -> Result<(), Failure> {
        match &self.tls_error {
            Some(e) => Err(fail(e.clone())),
            None => Ok(()),
        }
    }

    /// A GET whose answer is bytes (a capture file).
    fn download(&self, path: &str) -> Result<Vec<u8>, Failure> {
        self.usable()?;
        let url = format!("{}{}", self.base, path);
        let mut r = self.agent.get(&url);
        if let Some(t) = &self.token {
            r = r.header("Authorization", &format!("Bearer {t}"));
        }
        let mut resp = r
            .call()
            .map_err(|e| fail(format!("cannot reach {url}: {e}")))?;
        let status = resp.status().as_u16();
        let data = resp
            .body_mut()
            .with_config()
            .limit(1 << 30)
            .read_to_vec()
            .map_err(|e| fail(format!("reading {url}: {e}")))?;
        if status >= 400 {
            let v: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
            let msg = v
                .get("error")
                .and_then(Value::as_str)
                .unwrap_or("no details")
                .to_string();
            return Err(fail(format!("{status}: {msg}")));
        }
        Ok(data)
    }

    fn call(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Failure> {
        self.usable()?;
        let url = format!("{}{}", self.base, path);
        let auth = self.token.as_ref().map(|t| format!("Bearer {t}"));
        let resp = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            ("DELETE", _) => {
                let mut r = self.agent.delete(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            (method, body) => {
                let mut r = if method == "PATCH" {
                    self.agent.patch(&url)
                } else {
                    self.agent.post(&url)
                };
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send_json(body.unwrap_or(Value::Null))
            }
        };
        let mut resp = resp.map_err(|e| fail(format!("cannot reach {url}: {e}")))?;
        let status = resp.status().as_u16();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status >= 400 {
            let msg = v
                .get("error")
                .and_then(Value::as_str)
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string());
            return Err(Failure(
                format!("{status}: {msg}"),
                if status == 422 || status == 409 { 3 } else { 1 },
            ));
        }
        Ok(v)
    }
}

fn time(ms: u64) -> String {
    let now = crate::clock::now_ms();
    if ms > now {
        format!("in {}s", (ms - now) / 1000)
    } else {
        format!("{}s ago", (now - ms) / 1000)
    }
}

fn mitigation_rows(ms: &[Mitigation]) -> String {
    let mut rows = vec![format!(
        "{:<6} {:<11} {:<60} {:<12} {:<14} {}",
        "ID", "KIND", "MATCH / PREFIX", "ACTOR", "EXPIRES", "STATE"
    )];
    for m in ms {
        // A diversion shows its route whole (next hop, communities), as the API takes it.
        let what = m.target().map_or_else(
            |_| {
                m.rule
                    .clone()
                    .or(m.prefix.map(|p| p.to_string()))
                    .unwrap_or_default()
            },
            |t| t.to_string(),
        );
        let state = match (&m.withdraw_reason, m.dry_run) {
            (Some(r), _) => format!("withdrawn ({r})"),
            (None, true) => "dry-run".into(),
            (None, false) => "active".into(),
        };
        rows.push(format!(
            "{:<6} {:<11} {:<60} {:<12} {:<14} {}",
            m.id,
            m.kind,
            what,
            m.actor,
            time(m.expires_ms),
            state
        ));
    }
    rows.join("\n")
}

fn print(json: bool, v: &Value, table: impl FnOnce(&Value) -> Option<String>) {
    if json {
        out(&serde_json::to_string_pretty(v).unwrap_or_default());
    } else {
        out(&table(v).unwrap_or_else(|| v.to_string()));
    }
}

pub fn mitigation(a: &ApiArgs, cmd: MitigationCmd) -> ExitCode {
    let c = Client::new(a);
    finish((|| {
        let as_list = |v: &Value| {
            serde_json::from_value::<Vec<Mitigation>>(v.clone())
                .ok()
                .map(|l| mitigation_rows(&l))
        };
        let as_one = |v: &Value| {
            serde_json::from_value::<Mitigation>(v.clone())
                .ok()
                .map(|m| mitigation_rows(&[m]))
        };
        match cmd {
            MitigationCmd::Add {
                flow,
                rtbh,
                source_rtbh,
                divert,
                next_hop,
                communities,
                large_communities,
                ttl,
                reason,
                peers,
                file,
                atomic,
            } => {
                if let Some(file) = file {
                    let text = if file == "-" {
                        std::io::read_to_string(std::io::stdin())
                    } else {
                        std::fs::read_to_string(&file)
                    }
                    .map_err(|e| fail(format!("{file}: {e}")))?;
                    let (lines, items) = batch_items(&text, &ttl, &reason, &peers);
                    if items.is_empty() {
                        return Err(fail(format!("{file}: no rule or prefix in it")));
                    }
                    let v = c.call(
                        "POST",
                        "/api/v1/mitigations/batch",
                        Some(json!({"mitigations": items, "atomic": atomic})),
                    )?;
                    print(a.json, &v, |v| Some(batch_rows(&file, &lines, v)));
                    let refused = v["refused"].as_u64().unwrap_or(0);
                    return if refused > 0 {
                        Err(Failure(format!("{refused} of them refused"), 3))
                    } else {
                        Ok(())
                    };
                }
                let body = match (flow, rtbh, source_rtbh, divert) {
                    (Some(rule), None, None, None) => {
                        json!({"kind": "flowspec", "rule": rule, "ttl": ttl, "reason": reason, "peers": peers})
                    }
                    (None, Some(prefix), None, None) => {
                        json!({"kind": "rtbh", "prefix": prefix, "ttl": ttl, "reason": reason, "peers": peers})
                    }
                    (None, None, Some(prefix), None) => {
                        json!({"kind": "source-rtbh", "prefix": prefix, "ttl": ttl, "reason": reason, "peers": peers})
                    }
                    (None, None, None, Some(prefix)) => json!({
                        "kind": "divert", "prefix": prefix, "next_hop": next_hop,
                        "communities": communities, "large_communities": large_communities,
                        "ttl": ttl, "reason": reason, "peers": peers,
                    }),
                    _ => {
                        return Err(fail(
                            "give one of --flow RULE, --rtbh PREFIX, --source-rtbh PREFIX or --divert PREFIX",
                        ));
                    }
                };
                let v = c.call("POST", "/api/v1/mitigations", Some(body))?;
                print(a.json, &v, as_one);
            }
            MitigationCmd::List { all } => {
                let v = c.call(
                    "GET",
                    &format!("/api/v1/mitigations{}", if all { "?all=true" } else { "" }),
                    None,
                )?;
                print(a.json, &v, as_list);
            }
            MitigationCmd::Show { id } => {
                let v = c.call("GET", &format!("/api/v1/mitigations/{id}"), None)?;
                print(a.json, &v, as_one);
            }
            MitigationCmd::Withdraw {
                id: Some(id),
                actor: None,
                because: None,
                kind: None,
                prefix: None,
                reason,
            } => {
                let q = reason
                    .map(|r| format!("?reason={}", urlencode(&r)))
                    .unwrap_or_default();
                let v = c.call("DELETE", &format!("/api/v1/mitigations/{id}{q}"), None)?;
                print(a.json, &v, as_one);
            }
            MitigationCmd::Withdraw { id: Some(_), .. } => {
                return Err(fail(
                    "give an id or filters (--actor, --reason-contains, --kind, --prefix), not both",
                ));
            }
            MitigationCmd::Withdraw {
                id: None,
                actor,
                because,
                kind,
                prefix,
                reason,
            } => {
                let body = json!({
                    "filter": {"actor": actor, "reason": because, "kind": kind, "prefix": prefix},
                    "reason": reason,
                });
                let v = c.call("POST", "/api/v1/mitigations/withdraw", Some(body))?;
                print(a.json, &v, |v| {
                    let list: Vec<Mitigation> =
                        serde_json::from_value(v["mitigations"].clone()).ok()?;
                    Some(format!(
                        "{} withdrawn\n{}",
                        list.len(),
                        mitigation_rows(&list)
                    ))
                });
            }
            MitigationCmd::Extend { id, ttl } => {
                let v = c.call(
                    "POST",
                    &format!("/api/v1/mitigations/{id}/extend"),
                    Some(json!({"ttl": ttl})),
                )?;
                print(a.json, &v, as_one);
            }
            MitigationCmd::Amend {
                id,
                actions,
                reason,
            } => {
                let mut body = json!({"actions": actions});
                if let Some(r) = reason {
                    body["reason"] = json!(r);
                }
                let v = c.call("PATCH", &format!("/api/v1/mitigations/{id}"), Some(body))?;
                print(a.json, &v, as_one);
            }
        }
        Ok(())
    })())
}

/// The create bodies of a `--file`: one per line that is not blank or a comment, an RTBH prefix
/// when the line is one (an address alone is its /32 or /128), else a FlowSpec rule; with the line
/// number of each.
fn batch_items(
    text: &str,
    ttl: &Option<String>,
    reason: &Option<String>,
    peers: &[String],
) -> (Vec<usize>, Vec<Value>) {
    let mut lines = Vec::new();
    let mut items = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let prefix = line.parse::<ipnet::IpNet>().ok().or_else(|| {
            line.parse::<std::net::IpAddr>()
                .ok()
                .map(ipnet::IpNet::from)
        });
        let mut body = match prefix {
            Some(p) => json!({"kind": "rtbh", "prefix": p.to_string()}),
            None => json!({"kind": "flowspec", "rule": line}),
        };
        body["ttl"] = json!(ttl);
        body["reason"] = json!(reason);
        body["peers"] = json!(peers);
        lines.push(n + 1);
        items.push(body);
    }
    (lines, items)
}

/// What a batch did, for people: counts, and each refused line with why.
fn batch_rows(file: &str, lines: &[usize], v: &Value) -> String {
    let mut out = format!(
        "{} created, {} refused",
        v["created"].as_u64().unwrap_or(0),
        v["refused"].as_u64().unwrap_or(0)
    );
    for (r, line) in v["results"].as_array().into_iter().flatten().zip(lines) {
        if let Some(e) = r["error"].as_str() {
            out.push_str(&format!("\n{file}:{line}: {e}"));
        }
    }
    out
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

pub fn peers(a: &ApiArgs) -> ExitCode {
    let c = Client::new(a);
    finish((|| {
        let v = c.call("GET", "/api/v1/peers", None)?;
        print(a.json, &v, |v| {
            let peers: Vec<PeerView> = serde_json::from_value(v.clone()).ok()?;
            let mut rows = vec![format!(
                "{:<20} {:<24} {:>10} {:<12} {:>8} {:>7} {}",
                "PEER", "ADDRESS", "AS", "STATE", "UPTIME", "ROUTES", "LAST ERROR"
            )];
            for p in peers {
                rows.push(format!(
                    "{:<20} {:<24} {:>10} {:<12} {:>8} {:>7} {}",
                    p.name,
                    p.address,
                    p.remote_as,
                    p.state,
                    p.uptime_s
                        .map(|s| format!("{s}s"))
                        .unwrap_or_else(|| "-".into()),
                    p.routes_advertised,
                    p.last_error.unwrap_or_default()
                ));
            }
            Some(rows.join("\n"))
        });
        Ok(())
    })())
}

pub fn audit(a: &ApiArgs, cmd: AuditCmd) -> ExitCode {
    finish((|| match cmd {
        AuditCmd::List { after, limit } => {
            let v = Client::new(a).call(
                "GET",
                &format!("/api/v1/audit?after={after}&limit={limit}"),
                None,
            )?;
            print(a.json, &v, |v| {
                let entries = v.get("entries")?.as_array()?;
                Some(
                    entries
                        .iter()
                        .map(|e| {
                            format!(
                                "{:>6} {:<14} {:<22} {}",
                                e["seq"],
                                e["actor"].as_str().unwrap_or(""),
                                e["action"].as_str().unwrap_or(""),
                                e["detail"]
                            )
                        })
                        .collect::<Vec<_>>()
                        .join("\n"),
                )
            });
            Ok(())
        }
        AuditCmd::Verify {
            state_dir: Some(dir),
        } => {
            let store = match crate::mitigation::store::Store::open_existing(&dir) {
                Ok(s) => s,
                Err(e @ crate::mitigation::store::StoreError::Missing(_)) => {
                    return Err(fail(e.to_string()));
                }
                Err(e) => return Err(fail(format!("{e} (is the daemon still running?)"))),
            };
            match store.audit_verify().map_err(|e| fail(e.to_string()))? {
                Ok(v) => {
                    out(&format!("audit log verifies: {v}"));
                    Ok(())
                }
                Err(e) => Err(Failure(format!("audit log does NOT verify: {e}"), 4)),
            }
        }
        AuditCmd::Verify { state_dir: None } => {
            let v = Client::new(a)
                .call("GET", "/api/v1/audit/verify", None)
                .map_err(|Failure(m, _)| Failure(m, 4))?;
            print(a.json, &v, |v| {
                let v: crate::audit::Verified = serde_json::from_value(v.clone()).ok()?;
                Some(format!("audit log verifies: {v}"))
            });
            Ok(())
        }
    })())
}

pub fn config(cmd: ConfigCmd) -> ExitCode {
    match cmd {
        ConfigCmd::Check { file } => {
            match Config::load(&file).and_then(|s| s.load_policies().map(|p| (s, p))) {
                Ok((s, p)) => {
                    out(&format!(
                        "{}: ok ({} neighbors, {} protected groups, {} tokens, {} policies from {})",
                        file.display(),
                        s.neighbors.len(),
                        s.guardrails.protected.len(),
                        s.tokens.len(),
                        p.list.len(),
                        p.dir.as_ref().map_or_else(
                            || "the shipped set".to_string(),
                            |d| d.display().to_string()
                        ),
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    let _ = writeln!(std::io::stderr(), "{e}");
                    ExitCode::from(2)
                }
            }
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AttackCmd {
    /// Attacks under way (every one remembered with --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// One attack: signature, timeline, mitigations.
    Show { id: u64 },
}

fn ms_ago(ms: u64) -> String {
    let now = crate::clock::now_ms();
    format!("{}s ago", now.saturating_sub(ms) / 1000)
}

pub fn attacks(a: &ApiArgs, cmd: AttackCmd) -> ExitCode {
    let c = Client::new(a);
    finish((|| match cmd {
        AttackCmd::List { all } => {
            let v = c.call("GET", &format!("/api/v1/attacks?all={all}"), None)?;
            print(a.json, &v, |v| {
                let mut rows = vec![format!(
                    "{:>14} {:<24} {:<22} {:>12} {:>12} {:<12} {:<10} {}",
                    "ID", "TARGET", "VECTOR", "PPS", "PEAK PPS", "STARTED", "STATE", "MITIGATIONS"
                )];
                for x in v.as_array()? {
                    rows.push(format!(
                        "{:>14} {:<24} {:<22} {:>12} {:>12} {:<12} {:<10} {}",
                        x.get("id")?.as_u64()?,
                        // A prefix attack (carpet bombing) by its prefix.
                        x.get("prefix").or(x.get("target"))?.as_str()?,
                        x.get("vector")?.as_str()?,
                        x.get("pps")?.as_u64()?,
                        x.get("peak_pps")?.as_u64()?,
                        ms_ago(x.get("started_ms")?.as_u64()?),
                        if x.get("ended_ms").is_some() {
                            "ended"
                        } else {
                            "active"
                        },
                        x.get("mitigations")?
                            .as_array()?
                            .iter()
                            .filter_map(|m| m.as_u64().map(|m| m.to_string()))
                            .collect::<Vec<_>>()
                            .join(",")
                    ));
                }
                Some(rows.join("\n"))
            });
            Ok(())
        }
        AttackCmd::Show { id } => {
            let v = c.call("GET", &format!("/api/v1/attacks/{id}"), None)?;
            print(a.json, &v, |x| {
                let mut rows = vec![
                    format!(
                        "attack {} on {} ({})",
                        id,
                        x.get("prefix").or(x.get("target"))?.as_str()?,
                        x.get("group")?.as_str()?
                    ),
                    format!("vector:     {}", x.get("vector")?.as_str()?),
                    format!("signature:  {}", x.get("signature")?),
                    format!(
                        "rate:       {} pps now, peak {} pps / {} bps; threshold {} pps, baseline {} pps",
                        x.get("pps")?,
                        x.get("peak_pps")?,
                        x.get("peak_bps")?,
                        x.get("threshold_pps")?,
                        x.get("baseline_pps")?
                    ),
                    format!(
                        "policy:     {}",
                        x.get("policy").and_then(|p| p.as_str()).unwrap_or("-")
                    ),
                    format!("mitigations: {}", x.get("mitigations")?),
                    "timeline:".to_string(),
                ];
                for m in x.get("timeline")?.as_array()? {
                    rows.push(format!(
                        "  {:>10}  {}",
                        ms_ago(m.get("time_ms")?.as_u64()?),
                        m.get("what")?.as_str()?
                    ));
                }
                Some(rows.join("\n"))
            });
            Ok(())
        }
    })())
}

/// `deflect targets [ADDR]`: current rates, baselines and thresholds.
pub fn targets(a: &ApiArgs, addr: Option<String>, limit: usize) -> ExitCode {
    let c = Client::new(a);
    finish((|| {
        let v = match &addr {
            Some(x) => Value::Array(vec![c.call(
                "GET",
                &format!("/api/v1/targets/{x}"),
                None,
            )?]),
            None => c.call("GET", &format!("/api/v1/targets?limit={limit}"), None)?,
        };
        print(a.json, &v, |v| {
            let mut rows = Vec::new();
            for t in v.as_array()? {
                rows.push(format!(
                    "{} ({}, node {}): {} pps, {} bps, attacks {}",
                    t.get("addr")?.as_str()?,
                    t.get("group")?.as_str()?,
                    t.get("node")?.as_str()?,
                    t.get("pps")?,
                    t.get("bps")?,
                    t.get("attacks")?
                ));
                rows.push(format!(
                    "  {:<10} {:>12} {:>12} {:>12} {}",
                    "CLASS", "BASELINE", "STDDEV", "THRESHOLD", "WARM"
                ));
                for c in t.get("classes")?.as_array()? {
                    rows.push(format!(
                        "  {:<10} {:>12.0} {:>12.0} {:>12.0} {}",
                        c.get("class")?.as_str()?,
                        c.get("baseline_pps")?.as_f64()?,
                        c.get("stddev_pps")?.as_f64()?,
                        c.get("threshold_pps")?.as_f64()?,
                        c.get("warm")?.as_bool()?
                    ));
                }
            }
            Some(rows.join("\n"))
        });
        Ok(())
    })())
}

/// `deflect nodes`: probes and when they last reported.
pub fn nodes(a: &ApiArgs) -> ExitCode {
    let c = Client::new(a);
    finish((|| {
        let v = c.call("GET", "/api/v1/nodes", None)?;
        print(a.json, &v, |v| {
            let mut rows = vec![format!(
                "{:<24} {:<8} {:>12} {:>10} {:>12} {:>14} {:>8}",
                "NODE", "STATE", "LAST", "INTERVAL", "REPORTS", "RX PPS", "1 IN N"
            )];
            for n in v.as_array()? {
                rows.push(format!(
                    "{:<24} {:<8} {:>12} {:>10} {:>12} {:>14} {:>8}",
                    n.get("name")?.as_str()?,
                    if n.get("stale")?.as_bool()? {
                        "stale"
                    } else {
                        "ok"
                    },
                    ms_ago(n.get("last_report_ms")?.as_u64()?),
                    format!("{}ms", n.get("interval_ms")?),
                    n.get("reports")?.as_u64()?,
                    n.get("rx_pps")?.as_u64()?,
                    n.get("one_in")?.as_u64()?
                ));
            }
            Some(rows.join("\n"))
        });
        Ok(())
    })())
}

#[derive(Debug, Subcommand)]
pub enum PcapCmd {
    /// Captures on disk, newest first.
    List,
    /// Download an attack's capture.
    Get {
        /// The attack.
        id: u64,
        /// Where to write it (default attack-ID.pcap).
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
}

pub fn pcap(a: &ApiArgs, cmd: PcapCmd) -> ExitCode {
    let c = Client::new(a);
    finish((|| match cmd {
        PcapCmd::List => {
            let v = c.call("GET", "/api/v1/pcaps", None)?;
            print(a.json, &v, |v| {
                let mut rows = vec![format!(
                    "{:>14} {:<24} {:>12} {:>9} {}",
                    "ATTACK", "FILE", "BYTES", "PACKETS", "STATE"
                )];
                for p in v.as_array()? {
                    rows.push(format!(
                        "{:>14} {:<24} {:>12} {:>9} {}",
                        p.get("attack")?.as_u64()?,
                        p.get("file")?.as_str()?,
                        p.get("bytes")?.as_u64()?,
                        p.get("packets")
                            .and_then(Value::as_u64)
                            .map_or_else(|| "-".to_string(), |n| n.to_string()),
                        if p.get("recording")?.as_bool()? {
                            "recording"
                        } else {
                            "done"
                        }
                    ));
                }
                Some(rows.join("\n"))
            });
            Ok(())
        }
        PcapCmd::Get { id, output } => {
            let data = c.download(&format!("/api/v1/attacks/{id}/pcap"))?;
            let path = output.unwrap_or_else(|| format!("attack-{id}.pcap").into());
            std::fs::write(&path, &data)
                .map_err(|e| fail(format!("writing {}: {e}", path.display())))?;
            out(&format!("{}: {} bytes", path.display(), data.len()));
            Ok(())
        }
    })())
}

/// `deflect sflow`: the collector's agents.
pub fn sflow(a: &ApiArgs) -> ExitCode {
    let c = Client::new(a);
    finish((|| {
        let v = c.call("GET", "/api/v1/sflow", None)?;
        print(a.json, &v, |v| {
            let mut rows = vec![format!(
                "listening on {}; {} datagrams from untrusted addresses",
                v.get("listen")?.as_str().unwrap_or("-"),
                v.get("untrusted")?
            )];
            rows.push(format!(
                "{:<20} {:<24} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {}",
                "AGENT",
                "ADDRESS",
                "DATAGRAMS",
                "SAMPLES",
                "LOST",
                "RESTARTS",
                "ERRORS",
                "REFUSED",
                "1 IN N",
                "LAST SEEN"
            ));
            for x in v.get("agents")?.as_array()? {
                rows.push(format!(
                    "{:<20} {:<24} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {}",
                    x.get("name")?.as_str()?,
                    x.get("address")?.as_str()?,
                    x.get("datagrams")?.as_u64()?,
                    x.get("flow_samples")?.as_u64()?,
                    x.get("lost")?.as_u64()?,
                    x.get("restarts")?.as_u64()?,
                    x.get("decode_errors")?.as_u64()?,
                    // Samples at an unbelievable rate, and intervals beyond the links.
                    x.get("samples_refused")?.as_u64()? + x.get("intervals_refused")?.as_u64()?,
                    x.get("sampling_rate")?.as_u64()?,
                    match x.get("last_seen_ms")?.as_u64()? {
                        0 => "never".to_string(),
                        t => ms_ago(t),
                    }
                ));
            }
            Some(rows.join("\n"))
        });
        Ok(())
    })())
}

/// `deflect netflow`: the NetFlow/IPFIX collector's exporters.
pub fn netflow(a: &ApiArgs) -> ExitCode {
    let c = Client::new(a);
    finish((|| {
        let v = c.call("GET", "/api/v1/netflow", None)?;
        print(a.json, &v, |v| {
            let listen: Vec<&str> = v
                .get("listen")?
                .as_array()?
                .iter()
                .filter_map(|l| l.as_str())
                .collect();
            let mut rows = vec![format!(
                "listening on {}; {} datagrams from untrusted addresses; {} dropped by the kernel, {} truncated",
                listen.join(", "),
                v.get("untrusted")?,
                v.get("socket")?.get("drops")?,
                v.get("socket")?.get("truncated")?
            )];
            rows.push(format!(
                "{:<20} {:<24} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>10} {}",
                "EXPORTER",
                "ADDRESS",
                "DATAGRAMS",
                "RECORDS",
                "LOST",
                "ERRORS",
                "REFUSED",
                "TEMPLATES",
                "1 IN N",
                "DELAY",
                "LATE PKTS",
                "LAST SEEN"
            ));
            for x in v.get("exporters")?.as_array()? {
                rows.push(format!(
                    "{:<20} {:<24} {:>10} {:>10} {:>8} {:>8} {:>8} {:>9} {:>8} {:>7} {:>10} {}",
                    x.get("name")?.as_str()?,
                    x.get("address")?.as_str()?,
                    x.get("datagrams")?.as_u64()?,
                    x.get("records")?.as_u64()?,
                    x.get("lost")?.as_u64()?,
                    x.get("decode_errors")?.as_u64()?,
                    x.get("records_refused")?.as_u64()? + x.get("intervals_refused")?.as_u64()?,
                    x.get("templates")?.as_u64()?,
                    x.get("sampling_rate")?.as_u64()?,
                    format!("{:.1}s", x.get("delay_ms")?.as_u64()? as f64 / 1000.0),
                    x.get("late_packets")?.as_u64()?,
                    match x.get("last_seen_ms")?.as_u64()? {
                        0 => "never".to_string(),
                        t => ms_ago(t),
                    }
                ));
            }
            Some(rows.join("\n"))
        });
        Ok(())
    })())
}
