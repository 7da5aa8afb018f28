//! The negotiated codec context: what a session agreed on (RFC 6793, RFC 8654) that changes the
//! bytes of the messages it carries. Passed explicitly to every encode and decode, never global.

use crate::header;

/// What the session negotiated that changes the bytes: passed explicitly, never global.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CodecCtx {
    /// RFC 6793: AS numbers in AS_PATH and AGGREGATOR take 4 octets.
    pub four_octet_as: bool,
    /// RFC 8654: messages other than OPEN and KEEPALIVE may reach 65535 octets.
    pub extended_message: bool,
}

impl CodecCtx {
    pub fn max_len(&self) -> usize {
        if self.extended_message {
            header::MAX_EXTENDED_LEN
        } else {
            header::MAX_LEN
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_message_raises_the_maximum_length_to_65535() {
        assert_eq!(CodecCtx::default().max_len(), 4096);
        let ctx = CodecCtx {
            extended_message: true,
            ..CodecCtx::default()
        };
        assert_eq!(ctx.max_len(), 65535);
    }
}
