//! `deflect-netflow`: a pure NetFlow v5, NetFlow v9 (RFC 3954) and IPFIX (RFC 7011, over UDP)
//! decoder, with the per-exporter template state those protocols require, and the encoder that
//! mirrors it.
//!
//! The crate is pure: bytes in, typed values out, and back. It holds no sockets, reads no clock and
//! spawns no tasks; the collector (in the root crate) is the UDP edge around it, keeps one
//! [`Session`] per exporter address, and passes its own clock to [`Session::decode`].
//!
//! [`Session::decode`] takes one UDP payload and returns a [`Packet`]: the header's time, domain and
//! sequence verdict (loss, restart), and every data record as a [`Flow`] of the same shape whatever
//! the version and template. Packet sections (PSAMP) are [`Bytes`] slices of the input.
//!
//! Layout, split by wire object:
//! - [`ie`]: every code point (versions, set ids, information elements), with the RFC that assigns it.
//! - [`v5`]: the fixed v5 header and record.
//! - [`template`]: template and options template records (RFC 3954 §5.2/§6.1, RFC 7011 §3.4), and
//!   the checks a template passes before it is kept.
//! - [`record`]: data records read through a template into a [`Flow`] or into options data
//!   (samplers, timeouts, boot time); reduced-size and variable-length fields; time representations.
//! - [`session`]: [`Session`], the message headers (v9 §5.1, IPFIX §3.1), set walking, template
//!   lifetime and eviction, held sets, sequence tracking, sampling resolution.
//! - [`flow`]: [`Flow`] and [`Section`].
//! - [`error`]: [`DecodeError`], a kind and the set, template, record and field it happened in.
//! - [`encode`]: builders for v5, v9 and IPFIX messages, and the values of a flow for a template.
//!
//! Every length is checked against the bytes that remain before anything is read or allocated: no
//! input makes the decoder panic, loop or hold more than [`Limits`] allow.
//!
//! Known limitations:
//! - IPFIX over UDP only: one message per datagram (bytes after the message length are ignored),
//!   no SCTP streams or TCP framing.
//! - Sequence tracking is a heuristic over an unordered transport: a datagram behind the expected
//!   sequence by at most 64 packets (v9) or 4096 records (v5, IPFIX) is taken as reordered (the gap
//!   counted when its successor arrived is not taken back); further back, or a sysUptime more than
//!   10 s behind, is a restart. After an IPFIX message with a set that could not be counted (a
//!   held or malformed data set), the next message's gap is not assessed.
//! - Enterprise-specific elements are skipped; so are v9 options scope fields (their numbers are
//!   scope types, not field types).
//! - A record with one address only gets the unspecified address of the same family for the other.

#![forbid(unsafe_code)]

pub mod encode;
pub mod error;
pub mod flow;
pub mod ie;
pub mod record;
pub mod session;
pub mod template;
pub mod v5;

pub use bytes::Bytes;
pub use error::{DecodeError, ErrorKind};
pub use flow::{Flow, Section};
pub use session::{Limits, Packet, Session, SessionStats};
pub use template::{FieldSpec, Template};
