//! The RFC 7606 verdict: what an error does to the session. A plain value, kept apart so that the
//! UPDATE decoder that assigns it and the error mapping that reads it both sit above it.

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
}
