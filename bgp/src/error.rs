//! Decode errors of every message, their RFC 7606 verdict, and the NOTIFICATION each one sends: the
//! one place where wire errors meet the session.

use crate::header::HeaderError;
use crate::notification::{Notification, NotificationError, code, route_refresh_sub};
use crate::open::OpenError;
use crate::update::UpdateError;

/// What an error does to the session, ordered from mildest to worst (RFC 7606 §2): the worst
/// verdict among an UPDATE's problems is the one applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Verdict {
    /// Attribute discard: drop the attribute, keep the routes.
    Discard,
    /// Treat-as-withdraw: the UPDATE's routes are withdrawn instead of announced.
    TreatAsWithdraw,
    /// AFI/SAFI disable (RFC 4760 §7): the family stops for this session.
    AfiSafiDisable,
    /// Session reset: NOTIFICATION and close.
    SessionReset,
}

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_are_ordered_mildest_first() {
        assert!(Verdict::Discard < Verdict::TreatAsWithdraw);
        assert!(Verdict::TreatAsWithdraw < Verdict::AfiSafiDisable);
        assert!(Verdict::AfiSafiDisable < Verdict::SessionReset);
        assert_eq!(
            [Verdict::TreatAsWithdraw, Verdict::Discard]
                .into_iter()
                .max(),
            Some(Verdict::TreatAsWithdraw)
        );
    }

    #[test]
    fn header_errors_map_to_code_1() {
        let n = DecodeError::from(HeaderError::BadType(7)).notification();
        assert_eq!((n.code, n.subcode, n.data.as_ref()), (1, 3, &[7u8][..]));
    }
}
