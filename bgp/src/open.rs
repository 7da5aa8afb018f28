//! OPEN (RFC 4271 §4.2) and capabilities (RFC 5492).
//!
//! ```text
//! +-+-+-+-+-+-+-+-+
//! |    Version    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     My Autonomous System      |   AS_TRANS when the real AS needs 4 octets (RFC 6793 §4.2.2)
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Hold Time           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         BGP Identifier                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Opt Parm Len  |  Optional Parameters (type 2 = capabilities)  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Capabilities deflect speaks: multiprotocol (RFC 4760 §8), route refresh (RFC 2918), extended
//! message (RFC 8654), graceful restart (RFC 4724 §3), 4-octet AS (RFC 6793). Others are kept raw.

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};

use crate::iana::{AS_TRANS, BGP_VERSION, Family, capability};

/// Optional parameter type for capabilities (RFC 5492 §4).
const PARAM_CAPABILITIES: u8 = 2;
/// RFC 9072 §2: an Opt Parm Len of 255 and a first parameter type of 255 mean extended lengths.
const PARAM_EXTENDED: u8 = 255;

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The real AS number; written as AS_TRANS in the 2-octet field when above 65535.
    pub asn: u32,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

/// One capability (RFC 5492 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Capability {
    /// RFC 4760 §8: AFI (2), reserved (1), SAFI (1).
    Multiprotocol {
        afi: u16,
        safi: u8,
    },
    /// RFC 2918 §2.
    RouteRefresh,
    /// RFC 7313 §3.
    EnhancedRouteRefresh,
    /// RFC 8654 §3.
    ExtendedMessage,
    GracefulRestart(GracefulRestart),
    /// RFC 6793 §3.
    FourOctetAs(u32),
    Unknown {
        code: u8,
        value: Bytes,
    },
}

/// RFC 4724 §3.
///
/// ```text
/// +--------------------------------------------------+
/// | Restart Flags (4 bits) | Restart Time (12 bits)  |
/// +--------------------------------------------------+
/// | AFI (16 bits) | SAFI (8) | Flags for AFI/SAFI (8)|  repeated
/// +--------------------------------------------------+
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GracefulRestart {
    /// R bit (0x8): the sender has restarted.
    pub restart_state: bool,
    /// N bit (0x4, RFC 8538 §2): the sender supports graceful NOTIFICATION.
    pub notification: bool,
    /// Seconds, 12 bits.
    pub restart_time: u16,
    /// (AFI, SAFI, forwarding state preserved).
    pub families: Vec<(u16, u8, bool)>,
}

/// Why an OPEN was refused; each maps to a NOTIFICATION in [`OpenError::notification`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("OPEN is truncated")]
    Truncated,
    #[error("BGP version {0} is not supported (only 4)")]
    UnsupportedVersion(u8),
    #[error("peer AS 0 is invalid")]
    BadPeerAs,
    #[error("hold time {0} is unacceptable (0 or at least 3)")]
    BadHoldTime(u16),
    #[error("BGP identifier {0} is invalid")]
    BadIdentifier(Ipv4Addr),
    #[error("optional parameter type {0} is not supported")]
    UnsupportedParameter(u8),
    #[error("optional parameters overrun the message")]
    BadParameterLength,
    #[error("capability {code} has a malformed value of {len} octets")]
    BadCapability { code: u8, len: usize },
}

impl Capability {
    fn code(&self) -> u8 {
        match self {
            Capability::Multiprotocol { .. } => capability::MULTIPROTOCOL,
            Capability::RouteRefresh => capability::ROUTE_REFRESH,
            Capability::EnhancedRouteRefresh => capability::ENHANCED_ROUTE_REFRESH,
            Capability::ExtendedMessage => capability::EXTENDED_MESSAGE,
            Capability::GracefulRestart(_) => capability::GRACEFUL_RESTART,
            Capability::FourOctetAs(_) => capability::FOUR_OCTET_AS,
            Capability::Unknown { code, .. } => *code,
        }
    }

    fn encode_value(&self, out: &mut BytesMut) {
        match self {
            Capability::Multiprotocol { afi, safi } => {
                out.put_u16(*afi);
                out.put_u8(0);
                out.put_u8(*safi);
            }
            Capability::RouteRefresh
            | Capability::EnhancedRouteRefresh
            | Capability::ExtendedMessage => {}
            Capability::GracefulRestart(gr) => {
                let mut flags = 0u16;
                if gr.restart_state {
                    flags |= 0x8000;
                }
                if gr.notification {
                    flags |= 0x4000;
                }
                out.put_u16(flags | (gr.restart_time & 0x0fff));
                for &(afi, safi, fwd) in &gr.families {
                    out.put_u16(afi);
                    out.put_u8(safi);
                    out.put_u8(if fwd { 0x80 } else { 0 });
                }
            }
            Capability::FourOctetAs(asn) => out.put_u32(*asn),
            Capability::Unknown { value, .. } => out.extend_from_slice(value),
        }
    }

    fn decode(code: u8, v: &[u8]) -> Result<Capability, OpenError> {
        let bad = || OpenError::BadCapability { code, len: v.len() };
        Ok(match code {
            capability::MULTIPROTOCOL => match v {
                [a0, a1, _, safi] => Capability::Multiprotocol {
                    afi: u16::from_be_bytes([*a0, *a1]),
                    safi: *safi,
                },
                _ => return Err(bad()),
            },
            capability::ROUTE_REFRESH | capability::ROUTE_REFRESH_CISCO if v.is_empty() => {
                Capability::RouteRefresh
            }
            capability::ENHANCED_ROUTE_REFRESH if v.is_empty() => Capability::EnhancedRouteRefresh,
            capability::EXTENDED_MESSAGE if v.is_empty() => Capability::ExtendedMessage,
            capability::FOUR_OCTET_AS => match v {
                [a, b, c, d] => Capability::FourOctetAs(u32::from_be_bytes([*a, *b, *c, *d])),
                _ => return Err(bad()),
            },
            capability::GRACEFUL_RESTART => {
                if v.len() < 2 || (v.len() - 2) % 4 != 0 {
                    return Err(bad());
                }
                let head = u16::from_be_bytes([v[0], v[1]]);
                let families = v[2..]
                    .chunks_exact(4)
                    .map(|c| (u16::from_be_bytes([c[0], c[1]]), c[2], c[3] & 0x80 != 0))
                    .collect();
                Capability::GracefulRestart(GracefulRestart {
                    restart_state: head & 0x8000 != 0,
                    notification: head & 0x4000 != 0,
                    restart_time: head & 0x0fff,
                    families,
                })
            }
            _ => Capability::Unknown {
                code,
                value: Bytes::copy_from_slice(v),
            },
        })
    }
}

impl Open {
    /// Families announced with the multiprotocol capability that deflect knows.
    pub fn families(&self) -> Vec<Family> {
        self.capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol { afi, safi } => Family::from_codes(*afi, *safi),
                _ => None,
            })
            .collect()
    }

    /// Whether any multiprotocol capability is present (RFC 4760 §8: without one, IPv4 unicast only).
    pub fn has_multiprotocol(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| matches!(c, Capability::Multiprotocol { .. }))
    }

    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(a) => Some(*a),
            _ => None,
        })
    }

    pub fn has(&self, code: u8) -> bool {
        self.capabilities.iter().any(|c| c.code() == code)
    }

    pub fn graceful_restart(&self) -> Option<&GracefulRestart> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(g) => Some(g),
            _ => None,
        })
    }

    /// Writes the body. Each capability goes in its own optional parameter, as most speakers do.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u8(BGP_VERSION);
        out.put_u16(u16::try_from(self.asn).unwrap_or(AS_TRANS));
        out.put_u16(self.hold_time);
        out.extend_from_slice(&self.router_id.octets());
        let len_at = out.len();
        out.put_u8(0);
        let start = out.len();
        for c in &self.capabilities {
            let mut v = BytesMut::new();
            c.encode_value(&mut v);
            out.put_u8(PARAM_CAPABILITIES);
            out.put_u8((v.len() + 2) as u8);
            out.put_u8(c.code());
            out.put_u8(v.len() as u8);
            out.extend_from_slice(&v);
        }
        out[len_at] = (out.len() - start) as u8;
    }

    /// Decodes a body. The real AS is taken from the 4-octet AS capability when present.
    pub fn decode(body: &[u8]) -> Result<Open, OpenError> {
        if body.len() < 10 {
            return Err(OpenError::Truncated);
        }
        if body[0] != BGP_VERSION {
            return Err(OpenError::UnsupportedVersion(body[0]));
        }
        let my_as = u16::from_be_bytes([body[1], body[2]]);
        let hold_time = u16::from_be_bytes([body[3], body[4]]);
        let router_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
        let mut opt_len = usize::from(body[9]);
        let mut params = &body[10..];
        let mut extended = false;
        if opt_len == 255 && params.first() == Some(&PARAM_EXTENDED) {
            // RFC 9072: non-ext type 255, then a 2-octet length; parameters then have 2-octet lengths.
            if params.len() < 3 {
                return Err(OpenError::BadParameterLength);
            }
            opt_len = usize::from(u16::from_be_bytes([params[1], params[2]]));
            params = &params[3..];
            extended = true;
        }
        if params.len() != opt_len {
            return Err(OpenError::BadParameterLength);
        }
        let mut capabilities = Vec::new();
        while !params.is_empty() {
            let (ptype, plen, hdr) = if extended {
                if params.len() < 3 {
                    return Err(OpenError::BadParameterLength);
                }
                (
                    params[0],
                    usize::from(u16::from_be_bytes([params[1], params[2]])),
                    3,
                )
            } else {
                if params.len() < 2 {
                    return Err(OpenError::BadParameterLength);
                }
                (params[0], usize::from(params[1]), 2)
            };
            let value = params
                .get(hdr..hdr + plen)
                .ok_or(OpenError::BadParameterLength)?;
            params = &params[hdr + plen..];
            if ptype != PARAM_CAPABILITIES {
                return Err(OpenError::UnsupportedParameter(ptype));
            }
            let mut caps = value;
            while !caps.is_empty() {
                if caps.len() < 2 {
                    return Err(OpenError::BadParameterLength);
                }
                let (code, len) = (caps[0], usize::from(caps[1]));
                let v = caps.get(2..2 + len).ok_or(OpenError::BadParameterLength)?;
                capabilities.push(Capability::decode(code, v)?);
                caps = &caps[2 + len..];
            }
        }
        let mut open = Open {
            asn: u32::from(my_as),
            hold_time,
            router_id,
            capabilities,
        };
        if let Some(a) = open.four_octet_as() {
            open.asn = a;
        }
        if open.asn == 0 {
            return Err(OpenError::BadPeerAs);
        }
        if hold_time == 1 || hold_time == 2 {
            return Err(OpenError::BadHoldTime(hold_time));
        }
        if router_id.is_unspecified() {
            return Err(OpenError::BadIdentifier(router_id));
        }
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    fn sample() -> Open {
        Open {
            asn: 4_200_000_000,
            hold_time: 90,
            router_id: Ipv4Addr::new(192, 0, 2, 1),
            capabilities: vec![
                Capability::Multiprotocol { afi: 1, safi: 133 },
                Capability::RouteRefresh,
                Capability::ExtendedMessage,
                Capability::GracefulRestart(GracefulRestart {
                    restart_state: true,
                    notification: false,
                    restart_time: 120,
                    families: vec![(1, 133, true)],
                }),
                Capability::FourOctetAs(4_200_000_000),
            ],
        }
    }

    #[test]
    fn open_with_every_capability_has_the_expected_bytes() {
        let mut b = BytesMut::new();
        sample().encode(&mut b);
        let expected = concat!(
            "04", "5ba0", "005a", "c0000201", "22", "0206", "0104", "00010085", "0202", "0200",
            "0202", "0600", "0208", "4006", "8078", "00018580", "0206", "4104", "fa56ea00",
        );
        assert_eq!(hex(&b), expected);
        assert_eq!(Open::decode(&b).unwrap(), sample());
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let mut b = BytesMut::new();
        sample().encode(&mut b);
        for n in 0..b.len() {
            assert!(Open::decode(&b[..n]).is_err(), "prefix of {n} accepted");
        }
    }

    #[test]
    fn bad_values_map_to_their_notifications() {
        let mut b = BytesMut::new();
        sample().encode(&mut b);
        let mut v = b.to_vec();
        v[0] = 3;
        let e = Open::decode(&v).unwrap_err();
        assert_eq!((e.notification().code, e.notification().subcode), (2, 1));
        assert_eq!(e.notification().data.as_ref(), &[0, 4]);
        let mut v = b.to_vec();
        v[3..5].copy_from_slice(&[0, 2]);
        assert_eq!(Open::decode(&v).unwrap_err().notification().subcode, 6);
        let mut v = b.to_vec();
        v[5..9].copy_from_slice(&[0, 0, 0, 0]);
        assert_eq!(Open::decode(&v).unwrap_err().notification().subcode, 3);
        let mut v = b.to_vec();
        v[10] = 1; // parameter type 1 (authentication, deprecated)
        assert_eq!(Open::decode(&v).unwrap_err().notification().subcode, 4);
    }

    #[test]
    fn rfc9072_extended_optional_parameters_decode() {
        let mut caps = BytesMut::new();
        caps.extend_from_slice(&[0x41, 4, 0, 0, 0xfd, 0xe8]);
        let mut v = vec![4, 0xfd, 0xe8, 0, 90, 192, 0, 2, 1, 255, 255];
        v.extend_from_slice(&((caps.len() + 3) as u16).to_be_bytes());
        v.push(2);
        v.extend_from_slice(&(caps.len() as u16).to_be_bytes());
        v.extend_from_slice(&caps);
        let o = Open::decode(&v).unwrap();
        assert_eq!(o.asn, 65000);
    }
}
