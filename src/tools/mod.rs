//! The commands beside the daemon: `deflect flowspec` ([`flowspec`]) and `deflect sflow-flood`
//! ([`sflow_flood`]). They are run by hand, in the lab and by the tests; nothing in the daemon
//! imports them. They use only the vocabulary module [`crate::route`] and the protocol crates.

pub mod flowspec;
pub mod sflow_flood;
