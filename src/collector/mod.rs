//! The flow collectors: datagrams from trusted switches and routers become the same per-interval
//! [`Report`](crate::telemetry::Report)s a probe sends, so detection and policies do not care
//! where the data came from.
//!
//! - [`recv`]: the receive path every datagram collector shares (batched `recvmmsg`, the
//!   socket's drop and truncation counters).
//! - [`sflow`]: sFlow v5 agents (packet samples).
//! - [`netflow`]: NetFlow v5/v9 and IPFIX exporters (flow records), through [`spread`], which
//!   turns records that cover time into per-interval rates.
//! - [`recv`]: the datagram sockets both read from, in batches.
//!
//! Shared here: what a trusted exporter is and may claim ([`TrustedAgent`]), and the check of an
//! interval's estimate against what its links carry.

use std::net::IpAddr;
use std::time::Duration;

use tracing::warn;

use crate::traffic::aggregate::Finished;

pub mod netflow;
pub mod recv;
pub mod sflow;
pub mod spread;

pub use recv::{Batch, DatagramSocket, SocketStats, shard_of};
pub use sflow::{AgentStats, Agents, Collector, CollectorStats, Settings, SharedStats};

/// One trusted exporter of flow telemetry (an sFlow agent, a NetFlow or IPFIX exporter), by the
/// source address of its datagrams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedAgent {
    pub address: IpAddr,
    pub name: String,
    /// Used instead of the sampling rate the exporter announces.
    pub sampling_rate: Option<u32>,
    /// It sees traffic before the edge's filters.
    pub pre_filter: bool,
    /// Sparsest sampling rate believed (1 in this many); samples announcing more are dropped.
    pub max_sampling_rate: u32,
    /// Most packets per second its links can carry: an interval estimated above is refused.
    pub max_pps: u64,
    /// NetFlow/IPFIX: how long after an interval its records are all in (the exporter's active
    /// or idle timeout, whichever is longer); learned when not set.
    pub export_delay: Option<Duration>,
}

/// The default `max_sampling_rate`: the sparsest rate switch vendors recommend for 100 GbE and
/// faster links is around 1:16384 to 1:65536.
pub const DEFAULT_MAX_SAMPLING_RATE: u32 = 65_536;
/// The default `max_pps`: one 100 GbE link at line rate (64-byte frames).
pub const DEFAULT_MAX_PPS: u64 = 150_000_000;

impl TrustedAgent {
    /// The node its sFlow reports come from, for detection.
    pub fn node(&self) -> String {
        format!("sflow:{}", self.name)
    }

    /// An address taken as an exporter with the default bounds, named by itself (replays).
    pub fn adopted(address: IpAddr) -> TrustedAgent {
        TrustedAgent {
            address,
            name: address.to_string(),
            sampling_rate: None,
            pre_filter: false,
            max_sampling_rate: DEFAULT_MAX_SAMPLING_RATE,
            max_pps: DEFAULT_MAX_PPS,
            export_delay: None,
        }
    }
}

/// An interval's estimates, or `None` (counted in `refused`, said in `last_error`) when they are
/// beyond what the exporter's links carry: a lying or spoofed exporter, or `max_pps` too low.
fn refuse_interval(
    finished: Finished,
    max_pps: u64,
    name: &str,
    refused: &mut u64,
    last_error: &mut Option<String>,
) -> Option<Finished> {
    let total: u64 = finished
        .targets
        .iter()
        .map(|t| t.pps)
        .fold(0, u64::saturating_add);
    if total <= max_pps {
        return Some(finished);
    }
    *refused += 1;
    warn!(
        exporter = %name,
        pps = total,
        max = max_pps,
        "interval estimated above max_pps: refused (a lying or spoofed exporter, or max_pps too low)"
    );
    *last_error = Some(format!(
        "interval estimated at {total} pps, above max_pps {max_pps}: refused"
    ));
    None
}

/// An IPv4 exporter seen on a dual-stack socket as itself.
fn unmapped(from: IpAddr) -> IpAddr {
    match from {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(from, IpAddr::V4),
        v4 => v4,
    }
}

/// A name fit for a report's node field.
fn sanitize(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_') {
                c
            } else {
                '-'
            }
        })
        .take(56)
        .collect()
}
