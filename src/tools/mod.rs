//! The commands beside the daemon: `deflect flowspec` ([`flowspec`]), `deflect sflow-flood`
//! ([`sflow_flood`]) and `deflect store` ([`store`]). They are run by hand, in the lab and by the
//! tests; nothing in the daemon imports them. They use the vocabulary modules, the protocol
//! crates, and (`store`) the mitigation store.

pub mod flowspec;
pub mod sflow_flood;
pub mod store;
