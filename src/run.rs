//! `deflect run`: the daemon.
//!
//! Start-up: configuration (a file, or the embedded defaults), the store, the BGP speaker, the
//! mitigation set (which restores and re-announces what is still active), then the API. SIGHUP
//! reloads the configuration: everything is checked first, then applied all at once, resetting only
//! the neighbors whose settings changed; a bad file changes nothing. SIGTERM and SIGINT stop: every
//! peer gets a Cease, and the store holds the state for the next start.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use clap::Args;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::alert::{self, Alerter};
use crate::api::{self, ApiState};
use crate::collector::Collector;
use crate::config::{Config, Settings};
use crate::diag::ConfigErrors;
use crate::engine::{self, EngineHandle};
use crate::mitigation::store::Store;
use crate::mitigation::{self, MitigationHandle};
use crate::pcap;
use crate::peer::{Neighbor, PeerHandle};
use crate::speaker::Speaker;

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// The configuration file (YAML; see examples/deflect.yaml). Without it deflect runs on embedded
    /// defaults: API on 127.0.0.1:8179, state in ./deflect-state, no peers.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
}

/// How long shutdown waits for alert deliveries and playbook calls in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn load(path: Option<&PathBuf>) -> Result<Settings, ConfigErrors> {
    match path {
        Some(p) => Config::load(p),
        None => Config::embedded(),
    }
}

/// Alerts when a peer leaves Established (until the peer is gone or deflect stops).
fn watch_peer(p: &PeerHandle, alerts: Alerter, tasks: &TaskTracker, stop: &CancellationToken) {
    let mut w = p.watch();
    let name = p.config().name.clone();
    let stop = stop.clone();
    tasks.spawn(async move {
        let mut was_up = w.borrow().state == deflect_bgp::fsm::State::Established;
        while let Some(Ok(())) = stop.run_until_cancelled(w.changed()).await {
            let (up, why) = {
                let s = w.borrow_and_update();
                (
                    s.state == deflect_bgp::fsm::State::Established,
                    s.last_error.clone().unwrap_or_else(|| s.state.to_string()),
                )
            };
            if was_up && !up {
                alerts.send(alert::Event::peer_down(&name, &why));
            }
            was_up = up;
        }
    });
}

/// A running daemon (also used by tests, in-process).
#[derive(Debug)]
pub struct Daemon {
    pub settings: Settings,
    pub speaker: Speaker,
    pub mitigations: MitigationHandle,
    pub api: Arc<ApiState>,
    pub api_addr: SocketAddr,
    /// The API's TLS configuration, re-read at each reload (a renewed certificate).
    api_tls: Option<Arc<api::tls::Acceptor>>,
    config_path: Option<PathBuf>,
    api_stop: CancellationToken,
    api_task: tokio::task::JoinHandle<()>,
    set_task: tokio::task::JoinHandle<()>,
    pub engine: EngineHandle,
    engine_task: tokio::task::JoinHandle<()>,
    pub collector: Option<Collector>,
    pub netflow: Option<crate::collector::netflow::Collector>,
    /// Cancelled first at shutdown: detection, alerts and playbook retries stop.
    stop: CancellationToken,
    /// Cancelled last, once nothing else can ask it for anything: the mitigation set.
    set_stop: CancellationToken,
    /// Every task spawned on the daemon's behalf that is not one of the above (alert deliveries,
    /// playbook calls, peer watchers): waited for at shutdown, none detached.
    tasks: TaskTracker,
}

/// Descriptors the daemon needs besides the API's connections: BGP sessions and listeners, the
/// store, collectors' sockets, alert and playbook connections, logs.
const RESERVED_FILES: u64 = 256;

/// Raises the limit of open files to its hard limit, and says when even that is too few for
/// `api.max_connections`: past it, the API could not accept a connection, nor the store open a file.
fn open_files(settings: &Settings) {
    let need = settings.api_limits.max_connections as u64
        + settings.neighbors.len() as u64
        + RESERVED_FILES;
    match crate::sys::raise_open_files() {
        Ok((soft, _)) if soft < need => warn!(
            open_files = soft,
            need,
            "the limit of open files (RLIMIT_NOFILE, its hard limit) is below api.max_connections and \
             the daemon's own needs: raise it (systemd: LimitNOFILE=) or lower api.max_connections"
        ),
        Ok((soft, hard)) => debug!(soft, hard, "limit of open files"),
        Err(e) => warn!("cannot read the limit of open files: {e}"),
    }
}

fn pairs(settings: &Settings, handles: &[PeerHandle]) -> Vec<(Neighbor, PeerHandle)> {
    settings
        .neighbors
        .iter()
        .cloned()
        .zip(handles.iter().cloned())
        .collect()
}

impl Daemon {
    pub async fn start(settings: Settings, config_path: Option<PathBuf>) -> Result<Daemon, String> {
        open_files(&settings);
        let policies = settings.load_policies().map_err(|e| e.to_string())?;
        match &policies.dir {
            Some(d) => info!(dir = %d.display(), policies = policies.list.len(), "policies loaded"),
            None => info!(
                policies = policies.list.len(),
                "no policy directory: running the shipped policies"
            ),
        }
        let store = Store::open(&settings.state_dir).map_err(|e| e.to_string())?;
        info!(path = %store.path().display(), "state store open");
        let peers: Vec<_> = settings.neighbors.iter().map(|n| n.peer.clone()).collect();
        let speaker = Speaker::start(peers, &settings.listen)
            .await
            .map_err(|e| format!("BGP listener: {e}"))?;
        let stop = CancellationToken::new();
        let set_stop = CancellationToken::new();
        let tasks = TaskTracker::new();
        let (mitigations, set_task) = mitigation::start(
            store,
            settings.guardrails.clone(),
            pairs(&settings, speaker.peers()),
            settings.local_as,
            crate::clock::Clock::wall(),
            set_stop.clone(),
        )
        .await
        .map_err(|e| e.to_string())?;
        let recorder = pcap::start(
            settings.state_dir.join("pcap"),
            settings.pcap.clone(),
            &tasks,
            stop.clone(),
        )
        .map_err(|e| format!("capture directory: {e}"))?;
        let alerts = alert::start(
            settings.alerts.clone(),
            Some(mitigations.audit_sink()),
            &tasks,
            stop.clone(),
        );
        for p in speaker.peers() {
            watch_peer(p, alerts.clone(), &tasks, &stop);
        }
        let (engine, engine_task) = engine::start(
            engine::Setup {
                settings: settings.detection.clone(),
                policies,
                known: settings.known(),
                ioc: crate::ioc::Lists::load(&settings.ioc),
            },
            engine::Outlets {
                mitigations: mitigations.clone(),
                recorder: Some(recorder.clone()),
                alerts: Some(alerts.clone()),
                tasks: tasks.clone(),
                baselines: Some(settings.state_dir.join("baselines.bin")),
            },
            stop.clone(),
        );
        let collector = match &settings.sflow {
            Some(c) => Some(
                Collector::start(c, engine.clone(), Some(recorder.clone()))
                    .await
                    .map_err(|e| format!("sFlow listen {}: {e}", c.listen))?,
            ),
            None => None,
        };
        let netflow = match &settings.netflow {
            Some(c) => Some(
                crate::collector::netflow::Collector::start(c, engine.clone())
                    .await
                    .map_err(|e| format!("NetFlow/IPFIX listen {:?}: {e}", c.listen))?,
            ),
            None => None,
        };
        let api = Arc::new(ApiState {
            sflow: collector.as_ref().map(|c| c.stats.clone()),
            netflow: netflow.as_ref().map(|c| c.stats.clone()),
            mitigations: mitigations.clone(),
            engine: engine.clone(),
            recorder: recorder.clone(),
            alerts: alerts.clone(),
            tokens: RwLock::new(api::TokenTable::new(&settings.tokens)),
            peers: RwLock::new(speaker.peers().to_vec()),
            started: Instant::now(),
            metrics: api::ApiMetrics::default(),
            server: Arc::default(),
            limits: api::RateLimits::default(),
            turns: Arc::default(),
            top_targets: settings.metrics_top_targets.into(),
        });
        let api_tls = match &settings.api_tls {
            Some(files) => {
                Some(api::tls::Acceptor::new(files).map_err(|e| format!("api.tls: {e}"))?)
            }
            None => None,
        };
        let listener = tokio::net::TcpListener::bind(settings.api_listen)
            .await
            .map_err(|e| format!("API listen {}: {e}", settings.api_listen))?;
        let api_addr = listener.local_addr().map_err(|e| e.to_string())?;
        let app = api::router(api.clone(), settings.api_max_body);
        let api_stop = CancellationToken::new();
        let api_task = tokio::spawn(api::serve(
            listener,
            app,
            settings.api_limits,
            api.server.clone(),
            api_tls.clone(),
            api_stop.clone(),
        ));
        info!(%api_addr, tls = api_tls.is_some(), peers = settings.neighbors.len(), dry_run = settings.guardrails.dry_run, "deflect is running");
        if settings.tokens.is_empty() {
            warn!(
                "no API token is set: the API answers only /health, /metrics, /api/v1/openapi.json and the dashboard's sign-in page (set DEFLECT_TOKEN or configure api.tokens)"
            );
        }
        Ok(Daemon {
            settings,
            speaker,
            mitigations,
            api,
            api_addr,
            api_tls,
            config_path,
            api_stop,
            api_task,
            set_task,
            engine,
            engine_task,
            collector,
            netflow,
            stop,
            set_stop,
            tasks,
        })
    }

    /// Audits a refused reload; returns why.
    async fn refuse(&self, text: String) -> String {
        self.mitigations
            .record(
                "config",
                "config.reload.refused",
                serde_json::json!({"errors": text}),
            )
            .await;
        text
    }

    /// Re-reads the configuration and applies it all, or nothing.
    pub async fn reload(&mut self) -> Result<(), String> {
        let next = match load(self.config_path.as_ref()) {
            Ok(s) => s,
            Err(e) => return Err(self.refuse(e.to_string()).await),
        };
        // Policies are part of the configuration: checked with it, applied with it.
        let policies = match next.load_policies() {
            Ok(p) => p,
            Err(e) => return Err(self.refuse(e.to_string()).await),
        };
        let cur = &self.settings;
        let mut refused = Vec::new();
        if next.listen != cur.listen {
            refused.push("listen addresses change only at restart");
        }
        if next.api_listen != cur.api_listen {
            refused.push("api.listen changes only at restart");
        }
        if next.api_tls.is_some() != cur.api_tls.is_some() {
            refused.push("api.tls is turned on or off only at restart");
        }
        if next.api_limits != cur.api_limits {
            refused.push(
                "api.max_connections, header_timeout and request_timeout change only at restart",
            );
        }
        if next.state_dir != cur.state_dir {
            refused.push("state_dir changes only at restart");
        }
        if next.sflow.as_ref().map(|s| s.listen) != cur.sflow.as_ref().map(|s| s.listen) {
            refused
                .push("sflow.listen (and turning the collector on or off) changes only at restart");
        }
        if next.sflow.as_ref().map(|s| s.interval) != cur.sflow.as_ref().map(|s| s.interval) {
            refused.push("sflow.interval changes only at restart");
        }
        let timing = |s: &Settings| {
            s.netflow
                .as_ref()
                .map(|n| (n.listen.clone(), n.interval, n.max_delay))
        };
        if timing(&next) != timing(cur) {
            refused.push(
                "netflow.listen, interval and max_delay (and turning the collector on or off) change only at restart",
            );
        }
        if !refused.is_empty() {
            let text = format!("{}: {}", next.source, refused.join("; "));
            return Err(self.refuse(text).await);
        }
        // The certificate is read first (its files were read when the configuration was checked,
        // but may have changed since), and installed only once nothing else can fail.
        let certificate = match (&self.api_tls, &next.api_tls) {
            (Some(_), Some(files)) => match api::tls::Acceptor::load(files) {
                Ok(c) => Some(c),
                Err(e) => {
                    let text = format!("{}: api.tls: {e}", next.source);
                    return Err(self.refuse(text).await);
                }
            },
            _ => None,
        };
        let keep: BTreeSet<String> = next
            .neighbors
            .iter()
            .filter(|n| cur.neighbors.iter().any(|o| o == *n))
            .map(|n| n.peer.name.clone())
            .collect();
        let changed: Vec<String> = next
            .neighbors
            .iter()
            .filter(|n| !keep.contains(&n.peer.name))
            .map(|n| n.peer.name.clone())
            .collect();
        let removed: Vec<String> = cur
            .neighbors
            .iter()
            .filter(|o| !next.neighbors.iter().any(|n| n.peer.name == o.peer.name))
            .map(|o| o.peer.name.clone())
            .collect();
        // On record before anything changes: with a log that cannot be written, nothing is applied.
        let detail = serde_json::json!({"source": next.source, "reset": changed, "removed": removed, "kept": keep});
        self.mitigations
            .try_record("config", "config.reload", detail)
            .await
            .map_err(|e| format!("the audit log cannot be written: {e}"))?;
        // The speaker changes nothing when it cannot apply the neighbors (see `reconcile`).
        let handles = match self
            .speaker
            .reconcile(
                next.neighbors.iter().map(|n| n.peer.clone()).collect(),
                &keep,
                "configuration changed",
            )
            .await
        {
            Ok(h) => h,
            Err(e) => {
                let text = format!("{}: applying neighbors: {e}", next.source);
                return Err(self.refuse(text).await);
            }
        };
        if let (Some(acceptor), Some(c)) = (&self.api_tls, certificate) {
            acceptor.install(c);
        }
        if let Ok(mut t) = self.api.tokens.write() {
            *t = api::TokenTable::new(&next.tokens);
        }
        let names: Vec<&str> = next.tokens.iter().map(|t| t.name.as_str()).collect();
        self.api.limits.keep(&names);
        self.api.turns.keep(&names);
        self.api.top_targets.store(
            next.metrics_top_targets,
            std::sync::atomic::Ordering::Relaxed,
        );
        if let Ok(mut p) = self.api.peers.write() {
            *p = handles.clone();
        }
        for (h, n) in handles.iter().zip(&next.neighbors) {
            if !keep.contains(&n.peer.name) {
                watch_peer(h, self.api.alerts.clone(), &self.tasks, &self.stop);
            }
        }
        self.mitigations
            .reload(next.guardrails.clone(), pairs(&next, &handles))
            .await
            .map_err(|e| e.to_string())?;
        self.engine
            .reconfigure(engine::Setup {
                settings: next.detection.clone(),
                policies,
                known: next.known(),
                ioc: crate::ioc::Lists::load(&next.ioc),
            })
            .await?;
        if let (Some(c), Some(s)) = (&self.collector, &next.sflow) {
            c.set_agents(s.agents.clone());
        }
        if let (Some(c), Some(n)) = (&self.netflow, &next.netflow) {
            c.set_exporters(n.exporters.clone());
        }
        // Blocks already given go back to whichever allocator gave them: safe to change at any time.
        crate::sys::Allocator::set_mimalloc(next.mimalloc);
        info!(reset = ?changed, removed = ?removed, "configuration reloaded");
        self.settings = next;
        Ok(())
    }

    /// Stops, in the order data flows: the API and the collector (nothing new comes in), then
    /// detection and alerts (their tasks finish or give up their retries), then the mitigation set
    /// (once it has made durable what it was given), then every peer with a Cease.
    pub async fn stop(self, reason: &str) {
        self.api_stop.cancel();
        let _ = self.api_task.await;
        if let Some(c) = &self.collector {
            c.stop();
        }
        if let Some(c) = &self.netflow {
            c.stop();
        }
        self.stop.cancel();
        let _ = self.engine_task.await;
        self.tasks.close();
        if tokio::time::timeout(SHUTDOWN_GRACE, self.tasks.wait())
            .await
            .is_err()
        {
            warn!(
                tasks = self.tasks.len(),
                "tasks still running after {} s: stopping anyway",
                SHUTDOWN_GRACE.as_secs()
            );
        }
        self.set_stop.cancel();
        let _ = self.set_task.await;
        self.speaker.shutdown(reason).await;
    }
}

pub fn main(args: RunArgs) -> ExitCode {
    let settings = match load(args.config.as_ref()) {
        Ok(s) => s,
        Err(e) => {
            for err in &e.0 {
                error!("{err}");
            }
            return ExitCode::from(2);
        }
    };
    // Before the runtime's threads start, so that their buffers come from the chosen allocator.
    crate::sys::Allocator::set_mimalloc(settings.mimalloc);
    if args.config.is_none() {
        info!(
            "no --config: running on embedded defaults (API on 127.0.0.1:8179, state in ./deflect-state, no peers: announcements are shown, not sent)"
        );
    }
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
        let mut daemon = match Daemon::start(settings, args.config.clone()).await {
            Ok(d) => d,
            Err(e) => {
                error!("{e}");
                return ExitCode::FAILURE;
            }
        };
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) else {
            error!("cannot install signal handlers");
            return ExitCode::FAILURE;
        };
        loop {
            tokio::select! {
                _ = term.recv() => break,
                _ = int.recv() => break,
                _ = hup.recv() => match daemon.reload().await {
                    Ok(()) => {}
                    Err(e) => error!("configuration not reloaded, nothing changed: {e}"),
                },
            }
        }
        info!("shutting down: sending Cease to every peer");
        daemon.stop("deflect is shutting down").await;
        ExitCode::SUCCESS
    })
}
