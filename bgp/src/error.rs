//! Decode errors of every message, their RFC 7606 verdict, and the NOTIFICATION each one sends: the
//! one place where wire errors meet the session. Each module defines its error type; the mapping of
//! every error to its (code, subcode, data) lives here, next to the others.

use bytes::Bytes;

use crate::header::HeaderError;
use crate::iana::BGP_VERSION;
use crate::notification::{
    Notification, NotificationError, code, header_sub, open_sub, route_refresh_sub, update_sub,
};
use crate::open::OpenError;
use crate::update::{UpdateError, UpdateErrorKind};
use crate::verdict::Verdict;

/// A message that could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("header: {0}")]
    Header(#[from] HeaderError),
    #[error("OPEN: {0}")]
    Open(#[from] OpenError),
    #[error("UPDATE: {0}")]
    Update(#[from] UpdateError),
    #[error("NOTIFICATION: {0}")]
    Notification(#[from] NotificationError),
    #[error("ROUTE-REFRESH is {0} octets long; it must be 23")]
    RouteRefreshLength(usize),
    #[error("KEEPALIVE is {0} octets long; it must be 19")]
    KeepaliveLength(usize),
}

impl DecodeError {
    /// The NOTIFICATION to send (RFC 4271 §6, RFC 7313 §5).
    pub fn notification(&self) -> Notification {
        match self {
            DecodeError::Header(e) => e.notification(),
            DecodeError::Open(e) => e.notification(),
            DecodeError::Update(e) => e.notification(),
            DecodeError::Notification(_) => Notification::new(code::MESSAGE_HEADER, 2, &[][..]),
            DecodeError::RouteRefreshLength(l) => Notification::new(
                code::ROUTE_REFRESH,
                route_refresh_sub::INVALID_MESSAGE_LENGTH,
                (*l as u16).to_be_bytes().to_vec(),
            ),
            DecodeError::KeepaliveLength(l) => HeaderError::BadLength(*l as u16).notification(),
        }
    }

    pub fn verdict(&self) -> Verdict {
        match self {
            DecodeError::Update(e) => e.verdict,
            _ => Verdict::SessionReset,
        }
    }
}

impl HeaderError {
    /// RFC 4271 §6.1: 1/1; 1/2 with the erroneous length field; 1/3 with the type.
    pub fn notification(&self) -> Notification {
        match *self {
            HeaderError::NotSynchronized => Notification::new(
                code::MESSAGE_HEADER,
                header_sub::CONNECTION_NOT_SYNCHRONIZED,
                &[][..],
            ),
            HeaderError::BadLength(l) => Notification::new(
                code::MESSAGE_HEADER,
                header_sub::BAD_MESSAGE_LENGTH,
                l.to_be_bytes().to_vec(),
            ),
            HeaderError::BadType(t) => {
                Notification::new(code::MESSAGE_HEADER, header_sub::BAD_MESSAGE_TYPE, vec![t])
            }
        }
    }
}

impl OpenError {
    /// RFC 4271 §6.2.
    pub fn notification(&self) -> Notification {
        let (sub, data): (u8, Vec<u8>) = match self {
            OpenError::Truncated
            | OpenError::BadParameterLength
            | OpenError::BadCapability { .. } => (0, vec![]),
            OpenError::UnsupportedVersion(_) => (
                open_sub::UNSUPPORTED_VERSION,
                u16::from(BGP_VERSION).to_be_bytes().to_vec(),
            ),
            OpenError::BadPeerAs => (open_sub::BAD_PEER_AS, vec![]),
            OpenError::BadHoldTime(_) => (open_sub::UNACCEPTABLE_HOLD_TIME, vec![]),
            OpenError::BadIdentifier(_) => (open_sub::BAD_BGP_IDENTIFIER, vec![]),
            OpenError::UnsupportedParameter(_) => {
                (open_sub::UNSUPPORTED_OPTIONAL_PARAMETER, vec![])
            }
        };
        Notification::new(code::OPEN_MESSAGE, sub, data)
    }
}

impl UpdateError {
    /// Code 3 and the subcode of RFC 4271 §6.3.
    pub fn notification(&self) -> Notification {
        use UpdateErrorKind::*;
        let sub = match &self.kind {
            WithdrawnLength | AttributeListLength | AttributeOverrun(_) | Duplicate(_) => {
                update_sub::MALFORMED_ATTRIBUTE_LIST
            }
            AttributeFlags { .. } => update_sub::ATTRIBUTE_FLAGS_ERROR,
            AttributeLength { .. } => update_sub::ATTRIBUTE_LENGTH_ERROR,
            InvalidOrigin(_) => update_sub::INVALID_ORIGIN_ATTRIBUTE,
            MalformedAsPath => update_sub::MALFORMED_AS_PATH,
            MissingWellKnown(_) => update_sub::MISSING_WELL_KNOWN_ATTRIBUTE,
            UnrecognizedWellKnown(_) => update_sub::UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
            MalformedMp(_) | FlowSpec(_) => update_sub::OPTIONAL_ATTRIBUTE_ERROR,
            InvalidNetworkField(_) => update_sub::INVALID_NETWORK_FIELD,
        };
        let data = match &self.kind {
            MissingWellKnown(t) => Bytes::from(vec![*t]),
            _ => self.data.clone(),
        };
        Notification::new(code::UPDATE_MESSAGE, sub, data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_errors_map_to_code_1() {
        let n = DecodeError::from(HeaderError::BadType(7)).notification();
        assert_eq!((n.code, n.subcode, n.data.as_ref()), (1, 3, &[7u8][..]));
    }
}
