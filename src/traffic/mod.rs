//! Traffic as deflect sees it before detection: one sampled frame parsed to the fields that matter
//! ([`packet`]), the [`class`] of a flow, and samples aggregated into per-destination rates for one
//! interval ([`aggregate`]). Shared by the probe, the sFlow collector, the API's packet upload and
//! detection; pure.

pub mod aggregate;
pub mod class;
pub mod packet;

/// The maps of the per-datagram, per-sample and per-report paths (the collectors, the aggregator,
/// detection): foldhash, seeded at random per map, not SipHash. Every sampled packet costs about
/// six lookups in the aggregator, keyed by addresses and ports the sender chooses: SipHash was most
/// of a collector's work per datagram (`benches/ingest.rs`), and a tenth of detection's work per
/// probe report (`benches/fleet.rs`). foldhash is "minimally DoS-resistant": its seeds, random per
/// process and per map, are never seen by a sender, who can only shape keys blind; every such map
/// is bounded besides.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// The set beside [`FastMap`], for the same paths.
pub type FastSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;
