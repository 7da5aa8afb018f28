//! Traffic as deflect sees it before detection: one sampled frame parsed to the fields that matter
//! ([`packet`]), and samples aggregated into per-destination rates for one interval
//! ([`aggregate`]). Shared by the probe, the sFlow collector and the API's packet upload; pure.

pub mod aggregate;
pub mod packet;
