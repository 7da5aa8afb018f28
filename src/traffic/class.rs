//! Traffic classes: what a flow is. Every flow falls in exactly one [`Class`]; baselines are learned
//! per class (detection), and flows are only ever folded together within their class (aggregation),
//! so a class's rate is whole whatever a report had to leave out.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::telemetry::Flow;

/// TCP flag bits.
pub mod tcp {
    pub const FIN: u8 = 0x01;
    pub const SYN: u8 = 0x02;
    pub const RST: u8 = 0x04;
    pub const PSH: u8 = 0x08;
    pub const ACK: u8 = 0x10;
}

/// Well-known UDP reflection and amplification services, by source port.
pub const AMPLIFIERS: &[(u16, &str)] = &[
    (17, "qotd"),
    (19, "chargen"),
    (53, "dns"),
    (69, "tftp"),
    (111, "portmap"),
    (123, "ntp"),
    (137, "netbios"),
    (161, "snmp"),
    (389, "cldap"),
    (427, "slp"),
    (520, "rip"),
    (1434, "mssql"),
    (1900, "ssdp"),
    (3283, "ard"),
    (3478, "stun"),
    (3702, "ws-discovery"),
    (5353, "mdns"),
    (5683, "coap"),
    (10001, "ubiquiti"),
    (11211, "memcached"),
    (27015, "steam"),
    (32414, "plex"),
    (33848, "jenkins"),
    (37810, "dvr"),
];

/// The amplification service behind a UDP source port.
pub fn amplifier(port: u16) -> Option<&'static str> {
    AMPLIFIERS
        .iter()
        .find(|(p, _)| *p == port)
        .map(|(_, name)| *name)
}

/// What a flow is, for baselines. Each flow falls in exactly one class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// TCP with SYN and no ACK: connection attempts.
    TcpSyn,
    /// TCP with RST.
    TcpRst,
    /// TCP with ACK and no SYN, RST or FIN: established traffic (and ACK floods).
    TcpAck,
    /// Any other TCP flag combination (SYN-ACK, FIN, XMAS, null...).
    TcpOther,
    /// UDP from a well-known amplifier port.
    UdpAmp,
    Udp,
    /// ICMP and ICMPv6.
    Icmp,
    /// Non-first IP fragments.
    Fragment,
    Gre,
    Other,
}

impl Class {
    pub const ALL: [Class; 10] = [
        Class::TcpSyn,
        Class::TcpRst,
        Class::TcpAck,
        Class::TcpOther,
        Class::UdpAmp,
        Class::Udp,
        Class::Icmp,
        Class::Fragment,
        Class::Gre,
        Class::Other,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Class::TcpSyn => "tcp-syn",
            Class::TcpRst => "tcp-rst",
            Class::TcpAck => "tcp-ack",
            Class::TcpOther => "tcp-other",
            Class::UdpAmp => "udp-amp",
            Class::Udp => "udp",
            Class::Icmp => "icmp",
            Class::Fragment => "fragment",
            Class::Gre => "gre",
            Class::Other => "other",
        }
    }

    /// The class of a flow.
    pub fn of(f: &Flow) -> Class {
        Class::of_parts(f.proto, f.sport, f.tcp_flags, f.fragment)
    }

    /// The class of traffic with these fields: what decides it is the protocol, TCP flags,
    /// whether a UDP source port is a known amplifier, and non-first fragments.
    pub fn of_parts(proto: u8, sport: Option<u16>, tcp_flags: Option<u8>, fragment: bool) -> Class {
        if fragment {
            return Class::Fragment;
        }
        match proto {
            6 => match tcp_flags {
                Some(fl) if fl & tcp::RST != 0 => Class::TcpRst,
                Some(fl) if fl & tcp::SYN != 0 && fl & tcp::ACK == 0 => Class::TcpSyn,
                Some(fl) if fl & tcp::ACK != 0 && fl & (tcp::SYN | tcp::FIN) == 0 => Class::TcpAck,
                // A folded TCP flow (flags unknown) counts as established traffic.
                None => Class::TcpAck,
                Some(_) => Class::TcpOther,
            },
            17 => match sport.and_then(amplifier) {
                Some(_) => Class::UdpAmp,
                None => Class::Udp,
            },
            1 | 58 => Class::Icmp,
            47 => Class::Gre,
            _ => Class::Other,
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
