//! `deflect-bgp`: everything deflect needs to speak BGP to edge routers as an *originator* of
//! FlowSpec (RFC 8955, RFC 8956) and RTBH (RFC 7999) routes.
//!
//! The crate is pure: bytes in, typed values out, and back. It holds no sockets, reads no clock and
//! spawns no tasks; the daemon's peer tasks (`deflect::peer`) are the IO edge around it.
//!
//! Layout, split by wire object:
//! - [`iana`]: every code point, with the RFC that assigns it.
//! - [`header`]: framing (marker, length, type); "need more bytes" kept apart from "malformed".
//! - [`open`]: OPEN and its capabilities.
//! - [`notification`]: NOTIFICATION codes and subcodes, shutdown communication (RFC 9003).
//! - [`community`]: standard, extended and large communities.
//! - [`attr`]: path attributes.
//! - [`update`]: UPDATE, MP_REACH/MP_UNREACH and RFC 7606 revised error handling.
//! - [`message`]: the message enum, the negotiated codec context, encode and decode.
//! - [`error`]: decode errors, their RFC 7606 verdict and NOTIFICATION mapping, in one place.
//! - [`flowspec`]: validated FlowSpec rules, their NLRI, actions and the operator text syntax.
//! - [`fsm`]: the RFC 4271 §8 session state machine, a pure function of (state, event, now).
//! - [`rib`]: the per-peer Adj-RIB-Out and the UPDATE packer.

pub mod attr;
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
