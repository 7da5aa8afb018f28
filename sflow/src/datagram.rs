//! The datagram (`sample_datagram_v5`, sflow_version_5.txt §4) and [`decode`].
//!
//! ```text
//! unsigned int version;         /* 5 */
//! address agent_address;        /* type (1 = IPv4, 2 = IPv6), then 4 or 16 octets */
//! unsigned int sub_agent_id;
//! unsigned int sequence_number; /* per (agent, sub-agent): gaps are lost datagrams */
//! unsigned int uptime;          /* milliseconds since the agent started */
//! sample_record samples<>;      /* each: data_format, length, body */
//! ```

use std::net::IpAddr;

use bytes::Bytes;

use crate::error::{DecodeError, ErrorKind, Place};
use crate::flow::small;
use crate::formats;
use crate::sample::{self, Sample};
use crate::xdr::Reader;

/// One decoded sFlow v5 datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Always 5 once decoded.
    pub version: u32,
    /// The agent that sent it: with `sub_agent`, the key of its sequence numbers.
    pub agent: IpAddr,
    pub sub_agent: u32,
    /// Datagram sequence number, to detect losses between agent and collector.
    pub sequence: u32,
    /// The agent's uptime, in milliseconds, when it sent the datagram.
    pub uptime_ms: u32,
    pub samples: Vec<Sample>,
}

/// The smallest sample: its format and length words.
const MIN_SAMPLE: usize = 8;

/// Decodes one sFlow v5 datagram (one UDP payload). Byte fields of the result are slices of
/// `datagram`, which stays alive as long as any of them does.
///
/// Every sample and record is decoded; the first problem fails the whole datagram with its place
/// (see [`DecodeError`]). Unknown sample and record formats are not problems: they are kept as
/// `Unknown`.
pub fn decode(datagram: Bytes) -> Result<Datagram, DecodeError> {
    let mut r = Reader::new(&datagram);
    let (mut d, n) = header(&mut r);
    if let Some(k) = r.error() {
        return Err(Place::Header.error(k));
    }
    for i in 0..n {
        let index = usize::try_from(i).unwrap_or(usize::MAX);
        let Some(mut f) = r.block::<8>() else {
            return Err(Place::Sample(index, None).error(r.failure()));
        };
        let (format, len) = (f.u32(), f.u32());
        let mut body = r.sub(len, "sample");
        if let Some(k) = r.error() {
            return Err(Place::Sample(index, Some(format)).error(k));
        }
        sample::decode_into(index, format, &mut body, &mut d.samples)?;
    }
    Ok(d)
}

/// The header fields (with room for the samples), and the sample count.
fn header(r: &mut Reader<'_>) -> (Datagram, u32) {
    let version = r.u32();
    if r.error().is_none() && version != formats::VERSION_5 {
        r.fail(ErrorKind::Version(version));
    }
    let agent = r.address(ErrorKind::AgentAddressType);
    let (sub_agent, sequence, uptime_ms, n) = match r.block::<16>() {
        Some(mut f) => (f.u32(), f.u32(), f.u32(), f.u32()),
        None => (0, 0, 0, 0),
    };
    let n = r.fits(n, MIN_SAMPLE, "samples");
    let d = Datagram {
        version,
        agent,
        sub_agent,
        sequence,
        uptime_ms,
        samples: Vec::with_capacity(small(n)),
    };
    (d, n)
}
