//! deflect: a DDoS-mitigation controller.
//!
//! This library holds the daemon's parts; the binary in `main.rs` is a thin command line over it.
//! - [`peer`]: the tokio edge around `deflect_bgp`: one task per BGP neighbor owning its session state
//!   machine and Adj-RIB-Out, with the connection IO in child tasks.
//! - [`speaker`]: all peers and the listeners that hand them accepted connections.
//! - [`run`]: `deflect run`.
//! - [`sys`]: the one module allowed `unsafe`: socket options no crate wraps (TCP MD5, GTSM).

pub mod peer;
pub mod run;
pub mod speaker;
pub mod sys;
