//! The BGP message enum and whole-message encode and decode, under a [`CodecCtx`].

use bytes::{BufMut, BytesMut};

use crate::codec::CodecCtx;
use crate::error::DecodeError;
use crate::header::{self, HEADER_LEN, HeaderError};
use crate::iana::message_type;
use crate::notification::Notification;
use crate::open::Open;
use crate::update::Update;

/// ROUTE-REFRESH (RFC 2918 §3; subtypes of RFC 7313 §3: 0 request, 1 BoRR, 2 EoRR).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteRefresh {
    pub afi: u16,
    pub subtype: u8,
    pub safi: u8,
}

/// One BGP message.
// A message lives from the socket to its handler; an UPDATE is the common case, so it is not boxed.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh(RouteRefresh),
}

/// A message too long for the session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message of {len} octets exceeds the maximum of {max}")]
pub struct EncodeError {
    pub len: usize,
    pub max: usize,
}

impl Message {
    pub fn msg_type(&self) -> u8 {
        match self {
            Message::Open(_) => message_type::OPEN,
            Message::Update(_) => message_type::UPDATE,
            Message::Notification(_) => message_type::NOTIFICATION,
            Message::Keepalive => message_type::KEEPALIVE,
            Message::RouteRefresh(_) => message_type::ROUTE_REFRESH,
        }
    }

    /// Appends the whole message (header included) to `out`; on error `out` is left as it was.
    pub fn encode(&self, ctx: &CodecCtx, out: &mut BytesMut) -> Result<(), EncodeError> {
        let start = header::begin(out, self.msg_type());
        match self {
            Message::Open(o) => o.encode(out),
            Message::Update(u) => u.encode(ctx, out),
            Message::Notification(n) => n.encode(out),
            Message::Keepalive => {}
            Message::RouteRefresh(r) => {
                out.put_u16(r.afi);
                out.put_u8(r.subtype);
                out.put_u8(r.safi);
            }
        }
        let len = out.len() - start;
        let max = match self {
            Message::Open(_) | Message::Keepalive => header::MAX_LEN,
            _ => ctx.max_len(),
        };
        if len > max {
            out.truncate(start);
            return Err(EncodeError { len, max });
        }
        header::finish(out, start);
        Ok(())
    }

    /// Decodes one whole message (header included), as cut by [`header::frame`].
    pub fn decode(ctx: &CodecCtx, frame: &[u8]) -> Result<Message, DecodeError> {
        let f = header::frame(frame, ctx.max_len())?
            .ok_or(HeaderError::BadLength(frame.len() as u16))?;
        if f.len != frame.len() {
            return Err(HeaderError::BadLength(frame.len() as u16).into());
        }
        let body = &frame[HEADER_LEN..];
        Ok(match f.msg_type {
            message_type::OPEN => Message::Open(Open::decode(body)?),
            message_type::UPDATE => Message::Update(Update::decode(ctx, body)?),
            message_type::NOTIFICATION => Message::Notification(Notification::decode(body)?),
            message_type::KEEPALIVE if body.is_empty() => Message::Keepalive,
            message_type::KEEPALIVE => return Err(DecodeError::KeepaliveLength(frame.len())),
            message_type::ROUTE_REFRESH => match body {
                [a, b, st, s] => Message::RouteRefresh(RouteRefresh {
                    afi: u16::from_be_bytes([*a, *b]),
                    subtype: *st,
                    safi: *s,
                }),
                _ => return Err(DecodeError::RouteRefreshLength(frame.len())),
            },
            t => return Err(HeaderError::BadType(t).into()),
        })
    }
}
