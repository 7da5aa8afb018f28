//! deflect: a DDoS-mitigation controller.
//!
//! This library holds the daemon's parts; the binary in `main.rs` is a thin command line over it.
//! Data flows one way: telemetry → detection → policy → mitigation set → BGP peers, with the store
//! and audit log beside the mitigation set; manual API calls enter at the mitigation set.
//! - [`config`]: the YAML configuration, checked in two passes with `file:line:col` errors.
//! - [`telemetry`]: what probes report; [`detect`]: baselines, attacks, classification;
//!   [`policy`]: the YAML escalation policies; [`engine`]: the task that owns detection and the
//!   policies' state, and asks the mitigation set for what the policies decide.
//! - [`mitigation`]: the mitigation set, one task that owns what is announced, with its guardrails.
//! - [`store`] and [`audit`]: durable state and the hash-chained audit log.
//! - [`api`] and [`cli`]: the HTTP API and the command line client.
//! - [`peer`] and [`speaker`]: the tokio edge around `deflect_bgp`: one task per BGP neighbor
//!   owning its session state machine and Adj-RIB-Out, with the connection IO in child tasks.
//! - [`run`]: `deflect run`, wiring it all, with reloads on SIGHUP.
//! - [`probe`]: `deflect probe`, the node agent: interface counters and sampled packets, reported
//!   to the controller as [`telemetry`] every interval.
//! - [`sys`]: the one module allowed `unsafe`: socket options no crate wraps (TCP MD5, GTSM,
//!   packet socket statistics).
//! - [`tools`]: `deflect flowspec` and `deflect sflow-flood`, commands beside the daemon; nothing in
//!   the daemon imports them.

pub mod alert;
pub mod api;
pub mod audit;
pub mod cli;
pub mod collector;
pub mod config;
pub mod detect;
pub mod engine;
pub mod ioc;
pub mod mitigation;
pub mod pcap;
pub mod peer;
pub mod policy;
pub mod probe;
pub mod route;
pub mod run;
pub mod speaker;
pub mod store;
pub mod sys;
pub mod telemetry;
pub mod tools;
