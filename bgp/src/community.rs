//! Communities: standard (RFC 1997), extended (RFC 4360) and large (RFC 8092).
//!
//! Plain values with their text forms, a wire primitive: the path attributes that carry them
//! (`attr`) and the FlowSpec actions that are extended communities too (`flowspec::action`) build on
//! this module, never the other way round.

use std::fmt;
use std::str::FromStr;

/// A standard community, `ASN:VALUE` (RFC 1997 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Community(pub u32);

impl Community {
    /// RFC 1997 §2: must not be advertised outside a BGP confederation boundary.
    pub const NO_EXPORT: Community = Community(0xFFFF_FF01);
    /// RFC 1997 §2.
    pub const NO_ADVERTISE: Community = Community(0xFFFF_FF02);
    /// RFC 1997 §2.
    pub const NO_EXPORT_SUBCONFED: Community = Community(0xFFFF_FF03);
    /// RFC 7999 §5: BLACKHOLE, 65535:666.
    pub const BLACKHOLE: Community = Community(0xFFFF_029A);

    pub const fn new(asn: u16, value: u16) -> Community {
        Community(((asn as u32) << 16) | value as u32)
    }

    pub const fn asn(self) -> u16 {
        (self.0 >> 16) as u16
    }

    pub const fn value(self) -> u16 {
        self.0 as u16
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Community::NO_EXPORT => f.write_str("no-export"),
            Community::NO_ADVERTISE => f.write_str("no-advertise"),
            Community::NO_EXPORT_SUBCONFED => f.write_str("no-export-subconfed"),
            Community::BLACKHOLE => f.write_str("blackhole"),
            c => write!(f, "{}:{}", c.asn(), c.value()),
        }
    }
}

/// Why a community text did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid community {text:?}: {reason}")]
pub struct CommunityParseError {
    pub text: String,
    pub reason: &'static str,
}

fn parse_err(text: &str, reason: &'static str) -> CommunityParseError {
    CommunityParseError {
        text: text.to_string(),
        reason,
    }
}

impl FromStr for Community {
    type Err = CommunityParseError;

    /// `ASN:VALUE` with both halves 0..=65535, or one of the well-known names
    /// `no-export`, `no-advertise`, `no-export-subconfed`, `blackhole`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "no-export" => return Ok(Community::NO_EXPORT),
            "no-advertise" => return Ok(Community::NO_ADVERTISE),
            "no-export-subconfed" => return Ok(Community::NO_EXPORT_SUBCONFED),
            "blackhole" => return Ok(Community::BLACKHOLE),
            _ => {}
        }
        let (a, v) = s
            .split_once(':')
            .ok_or_else(|| parse_err(s, "expected ASN:VALUE"))?;
        let a: u16 = a
            .parse()
            .map_err(|_| parse_err(s, "ASN must be 0..=65535"))?;
        let v: u16 = v
            .parse()
            .map_err(|_| parse_err(s, "VALUE must be 0..=65535"))?;
        Ok(Community::new(a, v))
    }
}

/// An extended community: 8 octets, type high, type low (sub-type), 6 value octets (RFC 4360 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtCommunity(pub [u8; 8]);

impl ExtCommunity {
    pub const fn type_high(self) -> u8 {
        self.0[0]
    }

    pub const fn sub_type(self) -> u8 {
        self.0[1]
    }

    /// `(type high << 8) | sub-type`, as FlowSpec RFCs write them (0x8006 ...).
    pub const fn kind(self) -> u16 {
        ((self.0[0] as u16) << 8) | self.0[1] as u16
    }

    /// RFC 4360 §2: the T bit (0x40 of the high type octet) clear means transitive.
    pub const fn is_transitive(self) -> bool {
        self.0[0] & 0x40 == 0
    }

    /// Route target, 2-octet AS specific (type 0x00, sub-type 0x02; RFC 4360 §4).
    pub const fn route_target_as2(asn: u16, value: u32) -> ExtCommunity {
        let a = asn.to_be_bytes();
        let v = value.to_be_bytes();
        ExtCommunity([0x00, 0x02, a[0], a[1], v[0], v[1], v[2], v[3]])
    }
}

impl fmt::Display for ExtCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// A large community, `GLOBAL:LOCAL1:LOCAL2`, three 4-octet values (RFC 8092 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LargeCommunity {
    pub global: u32,
    pub local1: u32,
    pub local2: u32,
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.global, self.local1, self.local2)
    }
}

impl FromStr for LargeCommunity {
    type Err = CommunityParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut it = s.split(':');
        let mut next = || -> Result<u32, CommunityParseError> {
            it.next()
                .ok_or_else(|| parse_err(s, "expected GLOBAL:LOCAL1:LOCAL2"))?
                .parse()
                .map_err(|_| parse_err(s, "each part must be 0..=4294967295"))
        };
        let c = LargeCommunity {
            global: next()?,
            local1: next()?,
            local2: next()?,
        };
        if it.next().is_some() {
            return Err(parse_err(s, "expected GLOBAL:LOCAL1:LOCAL2"));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blackhole_is_65535_666() {
        assert_eq!(Community::BLACKHOLE, Community::new(65535, 666));
        assert_eq!(
            "blackhole".parse::<Community>().unwrap(),
            Community::BLACKHOLE
        );
        assert_eq!(
            "65535:666".parse::<Community>().unwrap(),
            Community::BLACKHOLE
        );
        assert_eq!(
            Community::NO_EXPORT.0.to_be_bytes(),
            [0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn community_text_round_trips() {
        for s in ["65000:100", "0:0", "no-export", "blackhole"] {
            assert_eq!(s.parse::<Community>().unwrap().to_string(), s);
        }
        assert!("65536:1".parse::<Community>().is_err());
        assert!("1".parse::<Community>().is_err());
    }

    #[test]
    fn large_community_text_round_trips() {
        let c: LargeCommunity = "4200000000:1:666".parse().unwrap();
        assert_eq!(c.to_string(), "4200000000:1:666");
        assert!("1:2".parse::<LargeCommunity>().is_err());
        assert!("1:2:3:4".parse::<LargeCommunity>().is_err());
    }
}
