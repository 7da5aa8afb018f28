//! Traffic as deflect sees it before detection: one sampled frame parsed to the fields that matter
//! ([`packet`]), the [`class`] of a flow, and samples aggregated into per-destination rates for one
//! interval ([`aggregate`]). Shared by the probe, the sFlow collector, the API's packet upload and
//! detection; pure.

pub mod aggregate;
pub mod class;
pub mod packet;
