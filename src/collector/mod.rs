//! The flow collectors: datagrams from trusted switches and routers become the same per-interval
//! [`Report`](crate::telemetry::Report)s a probe sends, so detection and policies do not care
//! where the data came from.
//!
//! - [`recv`]: the receive path every datagram collector shares (batched `recvmmsg`, the
//!   socket's drop and truncation counters).
//! - [`sflow`]: sFlow v5 agents (packet samples).

pub mod recv;
pub mod sflow;

pub use recv::{Batch, DatagramSocket, SocketStats, shard_of};

pub use sflow::{
    AgentStats, Agents, Collector, CollectorStats, DEFAULT_MAX_PPS, DEFAULT_MAX_SAMPLING_RATE,
    Settings, SharedStats, TrustedAgent,
};
