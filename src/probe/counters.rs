//! Interface counters: an rtnetlink `RTM_GETLINK` dump for each interface's `IFLA_STATS64`, and the
//! pure bookkeeping that turns running totals into per-interval deltas.
//!
//! A counter that goes backwards (driver reset, interface re-created under the same name) gives 0 for
//! that interval and becomes the new baseline; so does an interface seen for the first time.

use std::collections::HashMap;
use std::io;

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::RouteNetlinkMessage;
use netlink_packet_route::link::{LinkAttribute, LinkFlags, LinkLayerType, LinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::telemetry::Interface;

/// The six counters a report carries, as running totals or as deltas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub rx_dropped: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub tx_dropped: u64,
}

impl Counters {
    /// `now - prev` per counter, 0 where a counter went backwards.
    pub fn delta(prev: &Counters, now: &Counters) -> Counters {
        let d = |p: u64, n: u64| n.saturating_sub(p);
        Counters {
            rx_packets: d(prev.rx_packets, now.rx_packets),
            rx_bytes: d(prev.rx_bytes, now.rx_bytes),
            rx_dropped: d(prev.rx_dropped, now.rx_dropped),
            tx_packets: d(prev.tx_packets, now.tx_packets),
            tx_bytes: d(prev.tx_bytes, now.tx_bytes),
            tx_dropped: d(prev.tx_dropped, now.tx_dropped),
        }
    }
}

/// One interface as the kernel lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub index: u32,
    pub name: String,
    pub up: bool,
    pub loopback: bool,
    /// Frames carry an Ethernet header (what the sampler's parser expects).
    pub ethernet: bool,
    pub counters: Counters,
}

/// The interfaces to report: those named, or by default every non-loopback interface that is up.
/// Named ones that are missing are left out (the caller checks names at startup).
pub fn select<'a>(links: &'a [Link], names: &[String]) -> Vec<&'a Link> {
    let mut v: Vec<&Link> = if names.is_empty() {
        links.iter().filter(|l| l.up && !l.loopback).collect()
    } else {
        links.iter().filter(|l| names.contains(&l.name)).collect()
    };
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// Running totals seen at the end of the previous interval, per interface name.
#[derive(Debug, Default)]
pub struct Deltas {
    prev: HashMap<String, (u32, Counters)>,
}

impl Deltas {
    pub fn new() -> Deltas {
        Deltas::default()
    }

    /// The deltas since the previous call for `links`, and the new baseline. An interface seen for
    /// the first time, or whose index changed (re-created), reports zeros.
    pub fn update(&mut self, links: &[&Link]) -> Vec<Interface> {
        let mut next = HashMap::with_capacity(links.len());
        let out = links
            .iter()
            .map(|l| {
                let d = match self.prev.get(&l.name) {
                    Some((index, prev)) if *index == l.index => Counters::delta(prev, &l.counters),
                    _ => Counters::default(),
                };
                next.insert(l.name.clone(), (l.index, l.counters));
                Interface {
                    name: l.name.clone(),
                    rx_packets: d.rx_packets,
                    rx_bytes: d.rx_bytes,
                    rx_dropped: d.rx_dropped,
                    tx_packets: d.tx_packets,
                    tx_bytes: d.tx_bytes,
                    tx_dropped: d.tx_dropped,
                }
            })
            .collect();
        self.prev = next;
        out
    }
}

/// An rtnetlink socket, kept open for the probe's life, with its receive buffer.
pub struct Netlink {
    socket: Socket,
    port: u32,
    seq: u32,
    /// 32 KiB: the most the kernel puts in one dump message batch, so nothing is truncated.
    buf: Vec<u8>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("port", &self.port)
            .finish_non_exhaustive()
    }
}

impl Netlink {
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        let port = socket.bind_auto()?.port_number();
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink {
            socket,
            port,
            seq: 0,
            buf: vec![0; 32 * 1024],
        })
    }

    /// Every interface of the namespace, with its flags and 64-bit counters.
    pub fn links(&mut self) -> io::Result<Vec<Link>> {
        self.seq = self.seq.wrapping_add(1);
        let mut req = NetlinkMessage::new(
            NetlinkHeader::default(),
            NetlinkPayload::from(RouteNetlinkMessage::GetLink(LinkMessage::default())),
        );
        req.header.flags = NLM_F_DUMP | NLM_F_REQUEST;
        req.header.sequence_number = self.seq;
        req.finalize();
        let mut out = vec![0; req.buffer_len()];
        req.serialize(&mut out);
        self.socket.send(&out, 0)?;

        let mut links = Vec::new();
        loop {
            let n = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut at = 0;
            while at < n {
                let msg: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(&self.buf[at..n]).map_err(invalid)?;
                let len = msg.header.length as usize;
                if len == 0 {
                    return Err(invalid("zero-length netlink message"));
                }
                at += len;
                if msg.header.sequence_number != self.seq {
                    continue; // a late answer to an earlier request
                }
                match msg.payload {
                    NetlinkPayload::Done(_) => return Ok(links),
                    NetlinkPayload::Error(e) => {
                        return Err(e.code.map_or_else(
                            || invalid("netlink error without a code"),
                            |c| io::Error::from_raw_os_error(-c.get()),
                        ));
                    }
                    NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(m)) => {
                        if let Some(l) = link_of(&m) {
                            links.push(l);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
}

fn invalid(e: impl ToString) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

fn link_of(m: &LinkMessage) -> Option<Link> {
    let mut name = None;
    let mut counters = Counters::default();
    for a in &m.attributes {
        match a {
            LinkAttribute::IfName(n) => name = Some(n.clone()),
            LinkAttribute::Stats64(s) => {
                counters = Counters {
                    rx_packets: s.rx_packets,
                    rx_bytes: s.rx_bytes,
                    rx_dropped: s.rx_dropped,
                    tx_packets: s.tx_packets,
                    tx_bytes: s.tx_bytes,
                    tx_dropped: s.tx_dropped,
                }
            }
            _ => {}
        }
    }
    let flags = m.header.flags;
    Some(Link {
        index: m.header.index,
        name: name?,
        up: flags.contains(LinkFlags::Up),
        loopback: flags.contains(LinkFlags::Loopback),
        ethernet: m.header.link_layer_type == LinkLayerType::Ether,
        counters,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(rx: u64, tx: u64) -> Counters {
        Counters {
            rx_packets: rx,
            rx_bytes: rx.wrapping_mul(100),
            tx_packets: tx,
            tx_bytes: tx.wrapping_mul(100),
            ..Counters::default()
        }
    }

    fn link(index: u32, name: &str, up: bool, counters: Counters) -> Link {
        Link {
            index,
            name: name.into(),
            up,
            loopback: name == "lo",
            ethernet: name != "lo",
            counters,
        }
    }

    #[test]
    fn delta_is_the_growth_and_zero_when_a_counter_goes_back() {
        assert_eq!(Counters::delta(&c(10, 5), &c(15, 5)), c(5, 0));
        let back = Counters::delta(&c(10, 5), &c(3, 8));
        assert_eq!((back.rx_packets, back.rx_bytes, back.tx_packets), (0, 0, 3));
        assert_eq!(Counters::delta(&c(u64::MAX, 0), &c(0, 0)), c(0, 0));
    }

    #[test]
    fn first_sight_and_recreation_report_zeros_then_deltas() {
        let mut d = Deltas::new();
        let eth = link(2, "eth0", true, c(1000, 10));
        let first = d.update(&[&eth]);
        assert_eq!(first[0].rx_packets, 0);
        let eth = link(2, "eth0", true, c(1500, 30));
        let second = d.update(&[&eth]);
        assert_eq!(
            (
                second[0].rx_packets,
                second[0].tx_packets,
                second[0].rx_bytes
            ),
            (500, 20, 50_000)
        );
        // Deleted and re-created: new index, counters from zero.
        let eth = link(7, "eth0", true, c(5, 1));
        assert_eq!(d.update(&[&eth])[0].rx_packets, 0);
        let eth = link(7, "eth0", true, c(8, 1));
        assert_eq!(d.update(&[&eth])[0].rx_packets, 3);
    }

    #[test]
    fn default_selection_is_up_and_not_loopback() {
        let links = [
            link(1, "lo", true, c(0, 0)),
            link(3, "veth1", true, c(0, 0)),
            link(2, "eth1", false, c(0, 0)),
            link(4, "eth0", true, c(0, 0)),
        ];
        let names: Vec<_> = select(&links, &[])
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["eth0", "veth1"]);
        let names: Vec<_> = select(&links, &["lo".into(), "eth1".into()])
            .iter()
            .map(|l| l.name.as_str())
            .collect();
        assert_eq!(names, ["eth1", "lo"]);
    }

    #[test]
    fn the_kernel_lists_loopback_with_counters() {
        let links = Netlink::open().unwrap().links().unwrap();
        let lo = links.iter().find(|l| l.name == "lo").expect("lo is listed");
        assert!(lo.loopback && !lo.ethernet);
    }
}
