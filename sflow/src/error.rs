//! Decode errors: what went wrong ([`ErrorKind`]) and where ([`DecodeError::context`]).
//!
//! The decoder's inner layers return a bare [`ErrorKind`]; the sample and record loops attach their
//! position when (and only when) something fails, so the happy path builds no strings.

use std::fmt;

use crate::formats;

/// A datagram that could not be decoded: what was wrong, and the sample and record it was in.
///
/// Displays as `"{context}: {kind}"`, e.g.
/// `sample 2 (flow sample), record 1 (raw packet header): truncated: need 4 octets, 2 left`.
/// Sample and record numbers count from 1, in wire order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{context}: {kind}")]
pub struct DecodeError {
    /// Where: `datagram header`, `sample N (name)` or `sample N (name), record M (name)`.
    pub context: String,
    pub kind: ErrorKind,
}

/// What was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// A fixed-size field runs past the end of the datagram, sample or record that holds it.
    #[error("truncated: need {need} octets, {have} left")]
    Truncated { need: usize, have: usize },
    /// Only version 5 is decoded.
    #[error("unsupported sFlow version {0}, only 5 is decoded")]
    Version(u32),
    /// The agent address type is neither 0 (unknown), 1 (IPv4) nor 2 (IPv6).
    #[error("unknown agent address type {0} (1 = IPv4, 2 = IPv6)")]
    AgentAddressType(u32),
    /// A next-hop address type (extended router or gateway) is neither 0, 1 nor 2.
    #[error("unknown address type {0} (1 = IPv4, 2 = IPv6)")]
    AddressType(u32),
    /// A declared length (sample, record, sampled header), padded to 4 octets, runs past the
    /// data that holds it.
    #[error("{what} length {len} runs past the end of the data that holds it")]
    Length { what: &'static str, len: u32 },
    /// A count is larger than the octets left could hold, even if every element were the smallest.
    #[error("{n} {what} cannot fit in the octets left")]
    TooMany { what: &'static str, n: u32 },
}

/// Where an error happened, turned into [`DecodeError::context`] only on failure.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place {
    Header,
    /// 0-based sample index, its format once read.
    Sample(usize, Option<u32>),
    /// Sample (index, format), record (0-based index, format once read).
    Record {
        sample: usize,
        sample_format: u32,
        record: usize,
        format: Option<u32>,
    },
}

impl Place {
    pub(crate) fn error(self, kind: ErrorKind) -> DecodeError {
        DecodeError {
            context: self.to_string(),
            kind,
        }
    }
}

fn name_or_format(
    f: &mut fmt::Formatter<'_>,
    name: Option<&'static str>,
    data_format: u32,
) -> fmt::Result {
    match name {
        Some(n) => f.write_str(n),
        None => {
            let (enterprise, format) = formats::split(data_format);
            write!(f, "format {enterprise}:{format}")
        }
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Place::Header => f.write_str("datagram header"),
            Place::Sample(i, None) => write!(f, "sample {}", i.saturating_add(1)),
            Place::Sample(i, Some(format)) => {
                write!(f, "sample {} (", i.saturating_add(1))?;
                name_or_format(f, formats::sample_name(format), format)?;
                f.write_str(")")
            }
            Place::Record {
                sample,
                sample_format,
                record,
                format,
            } => {
                Place::Sample(sample, Some(sample_format)).fmt(f)?;
                write!(f, ", record {}", record.saturating_add(1))?;
                if let Some(format) = format {
                    let counters = matches!(
                        sample_format,
                        formats::sample::COUNTERS | formats::sample::COUNTERS_EXPANDED
                    );
                    let name = if counters {
                        formats::counter_record_name(format)
                    } else {
                        formats::flow_record_name(format)
                    };
                    f.write_str(" (")?;
                    name_or_format(f, name, format)?;
                    f.write_str(")")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_read_as_positions() {
        assert_eq!(Place::Header.to_string(), "datagram header");
        assert_eq!(Place::Sample(0, None).to_string(), "sample 1");
        assert_eq!(
            Place::Sample(1, Some(1)).to_string(),
            "sample 2 (flow sample)"
        );
        assert_eq!(
            Place::Sample(2, Some(formats::join(4300, 7))).to_string(),
            "sample 3 (format 4300:7)"
        );
        let p = Place::Record {
            sample: 1,
            sample_format: 1,
            record: 0,
            format: Some(1),
        };
        assert_eq!(
            p.to_string(),
            "sample 2 (flow sample), record 1 (raw packet header)"
        );
        let p = Place::Record {
            sample: 0,
            sample_format: 4,
            record: 1,
            format: Some(2),
        };
        assert_eq!(
            p.to_string(),
            "sample 1 (expanded counter sample), record 2 (Ethernet counters)"
        );
        let p = Place::Record {
            sample: 0,
            sample_format: 3,
            record: 4,
            format: None,
        };
        assert_eq!(p.to_string(), "sample 1 (expanded flow sample), record 5");
    }

    #[test]
    fn display_is_context_then_kind() {
        let e = Place::Sample(1, Some(1)).error(ErrorKind::Truncated { need: 4, have: 2 });
        assert_eq!(
            e.to_string(),
            "sample 2 (flow sample): truncated: need 4 octets, 2 left"
        );
    }
}
