//! NOTIFICATION (RFC 4271 §4.5): error codes and subcodes, and the shutdown communication of
//! RFC 9003.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Error code    | Error subcode |   Data (variable)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! [`Notification`] keeps the raw triple (so anything received can be logged and re-encoded); its
//! [`Notification::describe`] names every code and subcode registered with IANA.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

/// Error codes (RFC 4271 §4.5, IANA "BGP Error (Notification) Codes").
pub mod code {
    pub const MESSAGE_HEADER: u8 = 1;
    pub const OPEN_MESSAGE: u8 = 2;
    pub const UPDATE_MESSAGE: u8 = 3;
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    pub const FSM: u8 = 5;
    pub const CEASE: u8 = 6;
    /// RFC 7313 §5.
    pub const ROUTE_REFRESH: u8 = 7;
    /// RFC 9687 §3.
    pub const SEND_HOLD_TIMER_EXPIRED: u8 = 8;
}

/// Message header error subcodes (RFC 4271 §6.1).
pub mod header_sub {
    pub const CONNECTION_NOT_SYNCHRONIZED: u8 = 1;
    pub const BAD_MESSAGE_LENGTH: u8 = 2;
    pub const BAD_MESSAGE_TYPE: u8 = 3;
}

/// OPEN message error subcodes (RFC 4271 §6.2, RFC 5492 §5, RFC 9234 §4.2).
pub mod open_sub {
    pub const UNSUPPORTED_VERSION: u8 = 1;
    pub const BAD_PEER_AS: u8 = 2;
    pub const BAD_BGP_IDENTIFIER: u8 = 3;
    pub const UNSUPPORTED_OPTIONAL_PARAMETER: u8 = 4;
    pub const UNACCEPTABLE_HOLD_TIME: u8 = 6;
    pub const UNSUPPORTED_CAPABILITY: u8 = 7;
    pub const ROLE_MISMATCH: u8 = 11;
}

/// UPDATE message error subcodes (RFC 4271 §6.3).
pub mod update_sub {
    pub const MALFORMED_ATTRIBUTE_LIST: u8 = 1;
    pub const UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE: u8 = 2;
    pub const MISSING_WELL_KNOWN_ATTRIBUTE: u8 = 3;
    pub const ATTRIBUTE_FLAGS_ERROR: u8 = 4;
    pub const ATTRIBUTE_LENGTH_ERROR: u8 = 5;
    pub const INVALID_ORIGIN_ATTRIBUTE: u8 = 6;
    pub const INVALID_NEXT_HOP_ATTRIBUTE: u8 = 8;
    pub const OPTIONAL_ATTRIBUTE_ERROR: u8 = 9;
    pub const INVALID_NETWORK_FIELD: u8 = 10;
    pub const MALFORMED_AS_PATH: u8 = 11;
}

/// FSM error subcodes (RFC 6608 §3).
pub mod fsm_sub {
    pub const UNSPECIFIED: u8 = 0;
    pub const UNEXPECTED_IN_OPEN_SENT: u8 = 1;
    pub const UNEXPECTED_IN_OPEN_CONFIRM: u8 = 2;
    pub const UNEXPECTED_IN_ESTABLISHED: u8 = 3;
}

/// Cease subcodes (RFC 4486 §4, RFC 8538 §5).
pub mod cease_sub {
    pub const MAXIMUM_PREFIXES_REACHED: u8 = 1;
    pub const ADMINISTRATIVE_SHUTDOWN: u8 = 2;
    pub const PEER_DECONFIGURED: u8 = 3;
    pub const ADMINISTRATIVE_RESET: u8 = 4;
    pub const CONNECTION_REJECTED: u8 = 5;
    pub const OTHER_CONFIGURATION_CHANGE: u8 = 6;
    pub const CONNECTION_COLLISION_RESOLUTION: u8 = 7;
    pub const OUT_OF_RESOURCES: u8 = 8;
    pub const HARD_RESET: u8 = 9;
    pub const BFD_DOWN: u8 = 10;
}

/// ROUTE-REFRESH message error subcodes (RFC 7313 §5).
pub mod route_refresh_sub {
    pub const INVALID_MESSAGE_LENGTH: u8 = 1;
}

/// Longest shutdown communication (RFC 9003 §2).
pub const MAX_SHUTDOWN_COMMUNICATION: usize = 255;

/// A NOTIFICATION message body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Bytes,
}

/// Why a NOTIFICATION body did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("NOTIFICATION body is {0} octets; it needs at least 2 (code and subcode)")]
    TooShort(usize),
}

impl Notification {
    pub fn new(code: u8, subcode: u8, data: impl Into<Bytes>) -> Notification {
        Notification {
            code,
            subcode,
            data: data.into(),
        }
    }

    /// 4/0 (RFC 4271 §6.5).
    pub fn hold_timer_expired() -> Notification {
        Notification::new(code::HOLD_TIMER_EXPIRED, 0, Bytes::new())
    }

    /// 8/0 (RFC 9687 §3).
    pub fn send_hold_timer_expired() -> Notification {
        Notification::new(code::SEND_HOLD_TIMER_EXPIRED, 0, Bytes::new())
    }

    /// 5/x: a message that the state `subcode` names did not expect (RFC 6608).
    pub fn fsm_error(subcode: u8) -> Notification {
        Notification::new(code::FSM, subcode, Bytes::new())
    }

    /// 6/2 with an RFC 9003 shutdown communication (truncated to 255 octets on a UTF-8 boundary).
    pub fn cease_admin_shutdown(message: &str) -> Notification {
        Notification::cease_with_message(cease_sub::ADMINISTRATIVE_SHUTDOWN, message)
    }

    /// 6/4 with an RFC 9003 shutdown communication.
    pub fn cease_admin_reset(message: &str) -> Notification {
        Notification::cease_with_message(cease_sub::ADMINISTRATIVE_RESET, message)
    }

    /// 6/7 (RFC 4486 §4): the loser of a connection collision (RFC 4271 §6.8).
    pub fn cease_collision() -> Notification {
        Notification::new(
            code::CEASE,
            cease_sub::CONNECTION_COLLISION_RESOLUTION,
            Bytes::new(),
        )
    }

    fn cease_with_message(subcode: u8, message: &str) -> Notification {
        let mut end = message.len().min(MAX_SHUTDOWN_COMMUNICATION);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let mut data = BytesMut::with_capacity(1 + end);
        if end > 0 {
            data.put_u8(end as u8);
            data.extend_from_slice(&message.as_bytes()[..end]);
        }
        Notification::new(code::CEASE, subcode, data.freeze())
    }

    /// The RFC 9003 shutdown communication of a 6/2 or 6/4, if present and well formed.
    pub fn shutdown_communication(&self) -> Option<&str> {
        if self.code != code::CEASE
            || !(self.subcode == cease_sub::ADMINISTRATIVE_SHUTDOWN
                || self.subcode == cease_sub::ADMINISTRATIVE_RESET)
        {
            return None;
        }
        let (&len, rest) = self.data.split_first()?;
        let text = rest.get(..usize::from(len))?;
        std::str::from_utf8(text).ok().filter(|t| !t.is_empty())
    }

    /// Writes the body (code, subcode, data).
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(self.code);
        out.put_u8(self.subcode);
        out.extend_from_slice(&self.data);
    }

    pub fn decode(body: &[u8]) -> Result<Notification, NotificationError> {
        match body {
            [code, subcode, data @ ..] => Ok(Notification::new(
                *code,
                *subcode,
                Bytes::copy_from_slice(data),
            )),
            _ => Err(NotificationError::TooShort(body.len())),
        }
    }

    /// The registered names of the code and subcode.
    pub fn describe(&self) -> (&'static str, &'static str) {
        let c = match self.code {
            code::MESSAGE_HEADER => "Message Header Error",
            code::OPEN_MESSAGE => "OPEN Message Error",
            code::UPDATE_MESSAGE => "UPDATE Message Error",
            code::HOLD_TIMER_EXPIRED => "Hold Timer Expired",
            code::FSM => "Finite State Machine Error",
            code::CEASE => "Cease",
            code::ROUTE_REFRESH => "ROUTE-REFRESH Message Error",
            code::SEND_HOLD_TIMER_EXPIRED => "Send Hold Timer Expired",
            _ => "unknown error code",
        };
        let s = match (self.code, self.subcode) {
            (code::MESSAGE_HEADER, 1) => "connection not synchronized",
            (code::MESSAGE_HEADER, 2) => "bad message length",
            (code::MESSAGE_HEADER, 3) => "bad message type",
            (code::OPEN_MESSAGE, 1) => "unsupported version number",
            (code::OPEN_MESSAGE, 2) => "bad peer AS",
            (code::OPEN_MESSAGE, 3) => "bad BGP identifier",
            (code::OPEN_MESSAGE, 4) => "unsupported optional parameter",
            (code::OPEN_MESSAGE, 6) => "unacceptable hold time",
            (code::OPEN_MESSAGE, 7) => "unsupported capability",
            (code::OPEN_MESSAGE, 11) => "role mismatch",
            (code::UPDATE_MESSAGE, 1) => "malformed attribute list",
            (code::UPDATE_MESSAGE, 2) => "unrecognized well-known attribute",
            (code::UPDATE_MESSAGE, 3) => "missing well-known attribute",
            (code::UPDATE_MESSAGE, 4) => "attribute flags error",
            (code::UPDATE_MESSAGE, 5) => "attribute length error",
            (code::UPDATE_MESSAGE, 6) => "invalid ORIGIN attribute",
            (code::UPDATE_MESSAGE, 8) => "invalid NEXT_HOP attribute",
            (code::UPDATE_MESSAGE, 9) => "optional attribute error",
            (code::UPDATE_MESSAGE, 10) => "invalid network field",
            (code::UPDATE_MESSAGE, 11) => "malformed AS_PATH",
            (code::FSM, 0) => "unspecified",
            (code::FSM, 1) => "unexpected message in OpenSent",
            (code::FSM, 2) => "unexpected message in OpenConfirm",
            (code::FSM, 3) => "unexpected message in Established",
            (code::CEASE, 1) => "maximum number of prefixes reached",
            (code::CEASE, 2) => "administrative shutdown",
            (code::CEASE, 3) => "peer de-configured",
            (code::CEASE, 4) => "administrative reset",
            (code::CEASE, 5) => "connection rejected",
            (code::CEASE, 6) => "other configuration change",
            (code::CEASE, 7) => "connection collision resolution",
            (code::CEASE, 8) => "out of resources",
            (code::CEASE, 9) => "hard reset",
            (code::CEASE, 10) => "BFD down",
            (code::ROUTE_REFRESH, 1) => "invalid message length",
            (_, 0) => "unspecific",
            _ => "unknown subcode",
        };
        (c, s)
    }
}

impl fmt::Display for Notification {
    /// `6/2 (Cease: administrative shutdown) "maintenance"`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, s) = self.describe();
        write!(f, "{}/{} ({c}: {s})", self.code, self.subcode)?;
        if let Some(text) = self.shutdown_communication() {
            write!(f, " {text:?}")?;
        } else if !self.data.is_empty() {
            write!(f, " data ")?;
            for b in self.data.iter().take(32) {
                write!(f, "{b:02x}")?;
            }
            if self.data.len() > 32 {
                write!(f, "…")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shutdown_communication_round_trips_and_displays() {
        let n = Notification::cease_admin_shutdown("maintenance");
        let mut b = BytesMut::new();
        n.encode(&mut b);
        assert_eq!(&b[..], b"\x06\x02\x0bmaintenance");
        let d = Notification::decode(&b).unwrap();
        assert_eq!(d.shutdown_communication(), Some("maintenance"));
        assert_eq!(
            d.to_string(),
            "6/2 (Cease: administrative shutdown) \"maintenance\""
        );
    }

    #[test]
    fn shutdown_communication_is_cut_at_255_octets_on_a_char_boundary() {
        let long = "é".repeat(200); // 400 octets
        let n = Notification::cease_admin_shutdown(&long);
        assert_eq!(n.data[0], 254);
        assert_eq!(n.shutdown_communication().unwrap().chars().count(), 127);
    }

    #[test]
    fn a_body_shorter_than_two_octets_is_refused() {
        assert_eq!(
            Notification::decode(&[6]),
            Err(NotificationError::TooShort(1))
        );
        assert!(Notification::decode(&[4, 0]).is_ok());
    }

    #[test]
    fn every_code_has_a_name() {
        for (c, s) in [
            (1, 3),
            (2, 6),
            (3, 11),
            (4, 0),
            (5, 3),
            (6, 10),
            (7, 1),
            (8, 0),
        ] {
            let (cn, sn) = Notification::new(c, s, Bytes::new()).describe();
            assert!(
                !cn.starts_with("unknown") && !sn.starts_with("unknown"),
                "{c}/{s}"
            );
        }
    }
}
