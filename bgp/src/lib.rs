//! `deflect-bgp`: everything deflect needs to speak BGP to edge routers as an *originator* of
//! FlowSpec (RFC 8955, RFC 8956) and RTBH (RFC 7999) routes.
//!
//! The crate is pure: bytes in, typed values out, and back. It holds no sockets, reads no clock and
//! spawns no tasks; the daemon's peer tasks (`deflect::peer`) are the IO edge around it.
//!
//! Layout, split by wire object, in layers from the bottom up. A module imports only from the
//! layers below it (or, within a layer, from the modules listed before it), never upward.
//! - Wire primitives:
//!   - [`iana`]: every code point, with the RFC that assigns it.
//!   - [`header`]: framing (marker, length, type); "need more bytes" kept apart from "malformed".
//!   - [`codec`]: the negotiated codec context (4-octet AS, extended messages), passed explicitly.
//!   - [`community`]: standard, extended and large communities.
//!   - [`verdict`]: the RFC 7606 verdict, what an error does to the session.
//! - Attributes and NLRI:
//!   - [`flowspec`]: validated FlowSpec rules, their NLRI, actions and the operator text syntax.
//!   - [`attr`]: path attributes.
//! - Messages:
//!   - [`open`]: OPEN and its capabilities.
//!   - [`notification`]: NOTIFICATION codes and subcodes, shutdown communication (RFC 9003).
//!   - [`update`]: UPDATE, MP_REACH/MP_UNREACH and RFC 7606 revised error handling.
//! - Whole messages:
//!   - [`error`]: decode errors, their RFC 7606 verdict and NOTIFICATION mapping, in one place.
//!   - [`message`]: the message enum, encode and decode.
//! - Session:
//!   - [`fsm`]: the RFC 4271 §8 session state machine, a pure function of (state, event, now).
//!   - [`rib`]: the per-peer Adj-RIB-Out and the UPDATE packer.

pub mod attr;
pub mod codec;
pub mod community;
pub mod error;
pub mod flowspec;
pub mod fsm;
pub mod header;
pub mod iana;
pub mod message;
pub mod notification;
pub mod open;
pub mod rib;
pub mod update;
pub mod verdict;
