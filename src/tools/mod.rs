//! The commands beside the daemon: `deflect flowspec` ([`flowspec`]), `deflect replay`
//! ([`replay`]), `deflect sflow-flood` ([`sflow_flood`]) and `deflect store` ([`store`]). They
//! are run by hand, in the lab and by the tests; nothing in the daemon imports them. They use the
//! vocabulary modules, the protocol crates, the mitigation store (`store`), and (`replay`) the
//! daemon's own engine and mitigation set on a manual clock.

pub mod flowspec;
pub mod replay;
pub mod sflow_flood;
pub mod store;
