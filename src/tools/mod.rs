//! The commands beside the daemon: `deflect flowspec` ([`flowspec`]), `deflect replay`
//! ([`replay`]), `deflect sflow-flood` ([`sflow_flood`]), `deflect store` ([`store`]), and the
//! hidden `deflect completions` and `deflect manpage` ([`docs`]). They are run by hand, in the
//! lab, by packaging and by the tests; nothing in the daemon imports them. They use the vocabulary
//! modules, the protocol crates, the mitigation store (`store`), and (`replay`) the daemon's own
//! engine and mitigation set on a manual clock.

pub mod docs;
pub mod flowspec;
pub mod replay;
pub mod sflow_flood;
pub mod store;
