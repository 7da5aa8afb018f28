//! `deflect-sflow`: a pure sFlow version 5 datagram decoder, and the encoder that mirrors it.
//!
//! The crate is pure: bytes in, typed values out, and back. It holds no sockets, reads no clock and
//! spawns no tasks; the collector (`deflect::sflow`, in the root crate) is the UDP edge around it.
//!
//! [`decode`] takes one UDP payload and returns a [`Datagram`]: its header, and every sample with every
//! record decoded. It is zero-copy: each byte field (a sampled packet header, the body of an unknown
//! sample or record) is a [`Bytes`] slice of the input, sharing its buffer.
//!
//! Layout, split by wire object (section numbers are those of `sflow_version_5.txt`):
//! - [`formats`]: every code point (sample, flow and counter data formats, address types, header
//!   protocols), with the section that assigns it.
//! - [`datagram`]: the datagram header (`sample_datagram_v5`) and [`decode`].
//! - [`sample`]: flow and counter samples, compact and expanded (`flow_sample`, `counters_sample`,
//!   `flow_sample_expanded`, `counters_sample_expanded`).
//! - [`flow`]: flow records (sampled header, Ethernet, IPv4, IPv6, extended switch, router, gateway).
//! - [`counters`]: counter records (generic interface, Ethernet).
//! - [`error`]: [`DecodeError`], a kind and the sample and record it happened in.
//! - [`encode`]: the encoder, a datagram builder, and Ethernet frame headers for synthetic samples.
//!
//! Every length and count on the wire is checked against the bytes that remain before anything is
//! read or allocated: no input makes the decoder panic, loop or allocate beyond the datagram's size.
//! Unknown samples and records are skipped by their length and kept as `Unknown`, so a collector
//! sees that they were there.
//!
//! Known limitations, by design of the typed API:
//! - the `input`/`output` interfaces of an expanded flow sample (format and value on the wire) are
//!   folded into the compact form `format << 30 | value`, like a compact flow sample's; a value of
//!   2^30 or more, or a format above 3, does not fit: each part is saturated (value `0x3fff_ffff`,
//!   format 3).
//! - the segment type of an extended gateway's AS path (set or sequence) is not kept; the encoder
//!   writes AS_SEQUENCE.
//! - an address of type 0 (unknown) decodes as `0.0.0.0`, which the encoder writes back as IPv4.
//! - bytes after the last sample a datagram announces, and after the known fields of a known
//!   record, are ignored.

#![forbid(unsafe_code)]

pub mod counters;
pub mod datagram;
pub mod encode;
pub mod error;
pub mod flow;
pub mod formats;
pub mod sample;
mod xdr;

pub use bytes::Bytes;
pub use counters::{CounterRecord, EthernetCounters, GenericInterface};
pub use datagram::{Datagram, decode};
pub use encode::{ethernet_icmp_frame, ethernet_tcp_frame, ethernet_udp_frame};
pub use error::{DecodeError, ErrorKind};
pub use flow::{
    ExtendedGateway, ExtendedRouter, ExtendedSwitch, FlowRecord, RawHeader, SampledEthernet,
    SampledIpv4, SampledIpv6,
};
pub use sample::{CounterSample, FlowSample, Sample};
