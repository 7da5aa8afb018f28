//! deflect: a DDoS-mitigation controller.
//!
//! The binary in `main.rs` is a thin command line over this library. Data flows one way:
//!
//! ```text
//!  telemetry ──► detection ──► policy ──► mitigation set ──► BGP peers
//!  (probe, sFlow,  (detect/)    (engine/,   (mitigation/)     (peer/, speaker)
//!   NetFlow/IPFIX)              policy)         ▲    └──► store + audit log
//!                                  manual API ──┘
//! ```
//!
//! Modules sit in four layers. A module imports only from layers below its own, and within a
//! layer only from modules listed after it; nothing imports a command, and only the commands
//! import `config` and `api`. (Tests aside.)
//!
//! 1. Commands, what `main.rs` runs:
//!    - [`run`]: `deflect run`, wiring it all, reloads on SIGHUP, orderly shutdown.
//!    - [`cli`]: the command-line client of the API.
//!    - [`probe`]: `deflect probe`, the node agent (interface counters, sampled packets).
//!    - [`tools`]: `deflect flowspec` (one rule for eight dialects), `deflect replay` (the engine
//!      over recorded traffic, on a manual clock), `deflect store`, `deflect sflow-flood`, and the
//!      hidden `deflect completions` and `deflect manpage` (from the clap definitions, for packages).
//! 2. Edges, where the outside comes in:
//!    - [`config`]: the YAML configuration; it builds every owner's settings type.
//!    - [`api`]: the HTTP API; owns tokens, scopes and its counters; turns JSON bodies into orders;
//!      TLS, the server's and its clients' (the probe's and the CLI's).
//!    - [`collector`]: the sFlow and NetFlow/IPFIX collectors and their batched sockets; owns
//!      their settings.
//! 3. Domain, deflect's own decisions:
//!    - [`engine`]: the task that owns detection and every attack's escalation.
//!    - [`policy`]: the YAML escalation policies, and the FlowSpec rule a step builds.
//!    - [`alert`]: alerts to chat, paging and webhooks.
//!    - [`mitigation`]: the mitigation set, its guardrails and its store (with the audit log).
//!    - [`speaker`] and [`peer`]: the tokio edge around `deflect_bgp`, one task per neighbor.
//!    - [`detect`]: baselines, attacks, classification, per address and per prefix (pure); the
//!      baselines' snapshot that carries them across a restart.
//!    - [`pcap`]: forensic captures of attacks.
//!    - [`ioc`]: indicator lists matched against sampled sources.
//! 4. Vocabulary, shared by all:
//!    - [`route`]: what a mitigation announces (FlowSpec rule, RTBH prefix, S/RTBH source, or a
//!      diversion to a scrubbing service), one parser.
//!    - [`traffic`]: sampled frames parsed and aggregated into per-destination and per-prefix
//!      rates, trusted sources apart.
//!    - [`telemetry`]: what probes report.
//!    - [`audit`]: the hash-chained audit log and the [`audit::AuditSink`] that writes it.
//!    - [`http`]: outgoing HTTP with the one retry loop (alerts, playbooks).
//!    - [`diag`]: positioned configuration errors and the one duration syntax.
//!    - [`clock`]: milliseconds since the epoch; the wall's, or a manual one for replays.
//!    - [`sys`]: the one module allowed `unsafe`: socket options and calls no crate wraps (TCP
//!      MD5, GTSM, packet socket statistics, batched datagram receive, the open-file limit).

// 1. Commands.
pub mod cli;
pub mod probe;
pub mod run;
pub mod tools;
// 2. Edges.
pub mod api;
pub mod collector;
pub mod config;
// 3. Domain.
pub mod alert;
pub mod detect;
pub mod engine;
pub mod ioc;
pub mod mitigation;
pub mod pcap;
pub mod peer;
pub mod policy;
pub mod speaker;
// 4. Vocabulary.
pub mod audit;
pub mod clock;
pub mod diag;
pub mod http;
pub mod route;
pub mod sys;
pub mod telemetry;
pub mod traffic;
