//! Decode errors: what went wrong ([`ErrorKind`]) and where ([`DecodeError::context`]).
//!
//! The inner layers return a bare [`ErrorKind`]; the set, template and record loops attach their
//! position only when something fails, so the happy path builds no strings.
//!
//! Two levels, kept apart on purpose: a header that cannot be read (too short, unknown version, an
//! IPFIX message length the datagram does not hold) is the `Err` of [`crate::Session::decode`]; an
//! error inside one set (a truncated template, a record whose field runs past the set) only loses
//! that set, and is listed in [`crate::Packet::errors`] while the other sets are decoded.

use std::fmt;

use crate::ie;

/// Something that could not be decoded: what was wrong, and the set, template or record it was in.
///
/// Displays as `"{context}: {kind}"`, e.g.
/// `set 2 (data, template 260), record 3, field 27 (sourceIPv6Address): field of 16 octets runs past the set, 9 left`.
/// Set and record numbers count from 1, in wire order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{context}: {kind}")]
pub struct DecodeError {
    /// Where: `header`, `set N (...)`, `set N (...), template T` or `set N (...), record M, field F`.
    pub context: String,
    pub kind: ErrorKind,
}

/// What was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// A fixed-size part (a header, a template header, a field specifier) runs past the end of the
    /// data that holds it.
    #[error("truncated: need {need} octets, {have} left")]
    Truncated { need: usize, have: usize },
    /// Only 5, 9 and 10 (IPFIX) are decoded.
    #[error("unsupported version {0} (5, 9 and 10 are decoded)")]
    Version(u16),
    /// The IPFIX message length is below the header's 16 octets or above the datagram's length
    /// (RFC 7011 §3.1).
    #[error("message length {len} does not fit the {have} octets of the datagram")]
    MessageLength { len: u16, have: usize },
    /// A set length is below its 4-octet header or runs past the end of the message (RFC 7011
    /// §3.3.2, RFC 3954 §5.2); the sets after it cannot be found.
    #[error("set length {len} does not fit the {have} octets left")]
    SetLength { len: u16, have: usize },
    /// A template id below 256 (RFC 7011 §3.4.1, RFC 3954 §5.2).
    #[error("template id {0} is below 256")]
    TemplateId(u16),
    /// More fields than [`crate::Limits::max_template_fields`].
    #[error("{n} fields, more than the {max} allowed")]
    TooManyFields { n: usize, max: usize },
    /// A v9 template with no field, or a template whose records would be empty: nothing to decode,
    /// and a data set of it would never end.
    #[error("a template without a field of non-zero length")]
    NoFields,
    /// The fields' lengths add up to more than 65535 octets, which no set can hold.
    #[error("records of {0} octets or more cannot fit in a set")]
    RecordTooLong(usize),
    /// An options template whose scope is empty or larger than its fields (RFC 7011 §3.4.2.2), or
    /// a v9 scope or option length that is not a multiple of 4 (RFC 3954 §6.1).
    #[error("invalid options scope: {0}")]
    Scope(&'static str),
    /// A data record's field runs past the end of its set.
    #[error("field of {len} octets runs past the set, {have} left")]
    FieldOverrun { len: usize, have: usize },
}

/// Where an error happened, turned into [`DecodeError::context`] only on failure.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Place {
    Header,
    /// 0-based set index, set id.
    Set(usize, u16),
    /// Set (index, id), template id.
    Template(usize, u16, u16),
    /// Set (index, id), 0-based record index, field id once known.
    Record {
        set: usize,
        set_id: u16,
        record: usize,
        field: Option<u16>,
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

fn set_name(id: u16) -> &'static str {
    match id {
        ie::set::V9_TEMPLATE | ie::set::IPFIX_TEMPLATE => "template",
        ie::set::V9_OPTIONS_TEMPLATE | ie::set::IPFIX_OPTIONS_TEMPLATE => "options template",
        0..=255 => "reserved",
        _ => "data",
    }
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set = |f: &mut fmt::Formatter<'_>, i: usize, id: u16| {
            write!(f, "set {} ({}", i.saturating_add(1), set_name(id))?;
            if id >= ie::set::FIRST_DATA {
                write!(f, ", template {id}")?;
            }
            f.write_str(")")
        };
        match *self {
            Place::Header => f.write_str("header"),
            Place::Set(i, id) => set(f, i, id),
            Place::Template(i, id, t) => {
                set(f, i, id)?;
                write!(f, ", template {t}")
            }
            Place::Record {
                set: i,
                set_id,
                record,
                field,
            } => {
                set(f, i, set_id)?;
                write!(f, ", record {}", record.saturating_add(1))?;
                if let Some(id) = field {
                    write!(f, ", field {id}")?;
                    if let Some(n) = ie::name(id) {
                        write!(f, " ({n})")?;
                    }
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
        assert_eq!(Place::Header.to_string(), "header");
        assert_eq!(Place::Set(0, 2).to_string(), "set 1 (template)");
        assert_eq!(
            Place::Template(1, 1, 300).to_string(),
            "set 2 (options template), template 300"
        );
        let p = Place::Record {
            set: 1,
            set_id: 260,
            record: 2,
            field: Some(27),
        };
        assert_eq!(
            p.error(ErrorKind::FieldOverrun { len: 16, have: 9 })
                .to_string(),
            "set 2 (data, template 260), record 3, field 27 (sourceIPv6Address): \
             field of 16 octets runs past the set, 9 left"
        );
        assert_eq!(Place::Set(4, 7).to_string(), "set 5 (reserved)");
    }
}
