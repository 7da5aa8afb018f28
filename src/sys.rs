//! Socket options that no crate wraps: TCP MD5 signatures (RFC 2385), the minimum-TTL half of GTSM
//! (RFC 5082), and the counters of a packet socket (`PACKET_STATISTICS`, for the probe's sampler).
//!
//! This is the only module of the workspace allowed to use `unsafe`: each block is one `setsockopt(2)`
//! call on a file descriptor we own, with a buffer whose layout is the kernel's. Everything else about
//! sockets goes through `socket2`.
#![allow(unsafe_code)]

use std::io;
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

/// `TCP_MD5SIG_MAXKEYLEN` from `<linux/tcp.h>`.
pub const MD5_MAX_KEY_LEN: usize = 80;

/// `struct tcp_md5sig` from `<linux/tcp.h>` (`libc` does not define it).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

fn sockaddr_storage_of(addr: IpAddr) -> libc::sockaddr_storage {
    let sa = socket2::SockAddr::from(SocketAddr::new(addr, 0));
    let len = (sa.len() as usize).min(mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `sockaddr_storage` is plain old data, valid when all zero.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    // SAFETY: `sa.as_ptr()` points to at least `sa.len()` initialised bytes of a sockaddr, `len` is
    // clamped to the destination's size, and the two buffers are distinct locals.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr().cast::<u8>(),
            (&mut storage as *mut libc::sockaddr_storage).cast::<u8>(),
            len,
        );
    }
    storage
}

/// Sets (or, with `None`, removes) the RFC 2385 MD5 key used for segments to and from `peer`.
///
/// On a listening socket this installs the key for connections accepted from `peer`; on a socket
/// about to connect it must be set before `connect(2)`.
pub fn set_tcp_md5<S: AsRawFd>(socket: &S, peer: IpAddr, key: Option<&[u8]>) -> io::Result<()> {
    let key = key.unwrap_or(&[]);
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "TCP MD5 password is {} bytes; the kernel takes at most {MD5_MAX_KEY_LEN}",
                key.len()
            ),
        ));
    }
    let mut sig = TcpMd5Sig {
        addr: sockaddr_storage_of(peer),
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; MD5_MAX_KEY_LEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    // SAFETY: `sig` is a fully initialised `struct tcp_md5sig` that lives across the call; the length
    // passed is its exact size; the fd is borrowed from a live socket.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MD5SIG,
            (&sig as *const TcpMd5Sig).cast(),
            mem::size_of::<TcpMd5Sig>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// GTSM receive side (RFC 5082 §3): drop segments whose TTL (hop limit) is below `min_ttl`.
/// The send side (TTL 255) is set through `socket2`.
pub fn set_min_ttl<S: AsRawFd>(socket: &S, ipv6: bool, min_ttl: u8) -> io::Result<()> {
    let value: libc::c_int = min_ttl.into();
    let (level, name) = if ipv6 {
        (libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT)
    } else {
        (libc::IPPROTO_IP, libc::IP_MINTTL)
    };
    // SAFETY: `value` is a live c_int and the length passed is its size; the fd is borrowed from a
    // live socket.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `SOL_PACKET` option `PACKET_STATISTICS`, from `<linux/if_packet.h>`.
const PACKET_STATISTICS: libc::c_int = 6;

/// `struct tpacket_stats` from `<linux/if_packet.h>`.
#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}

/// Reads and resets the counters of an `AF_PACKET` socket: packets that passed its filter since the
/// last call, and how many of those were dropped because the receive queue was full.
pub fn packet_statistics<S: AsRawFd>(socket: &S) -> io::Result<(u32, u32)> {
    let mut stats = TpacketStats::default();
    let mut len = mem::size_of::<TpacketStats>() as libc::socklen_t;
    // SAFETY: `stats` is a live, writable `struct tpacket_stats` and `len` holds its exact size, so the
    // kernel writes at most that many bytes; the fd is borrowed from a live socket.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_PACKET,
            PACKET_STATISTICS,
            (&mut stats as *mut TpacketStats).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok((stats.tp_packets, stats.tp_drops))
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_md5sig_has_the_kernel_layout() {
        // 128 (sockaddr_storage) + 1 + 1 + 2 + 4 + 80.
        assert_eq!(mem::size_of::<TcpMd5Sig>(), 216);
    }

    #[test]
    fn md5_key_is_set_on_a_tcp_socket_and_too_long_a_key_is_refused() {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        set_tcp_md5(&s, "127.0.0.1".parse().unwrap(), Some(b"secret")).unwrap();
        set_tcp_md5(&s, "127.0.0.1".parse().unwrap(), None).unwrap();
        let err = set_tcp_md5(&s, "127.0.0.1".parse().unwrap(), Some(&[b'x'; 81])).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn min_ttl_is_set_for_both_families() {
        let s4 = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        set_min_ttl(&s4, false, 254).unwrap();
        let s6 = socket2::Socket::new(socket2::Domain::IPV6, socket2::Type::STREAM, None).unwrap();
        set_min_ttl(&s6, true, 254).unwrap();
    }

    #[test]
    fn packet_statistics_reads_a_packet_socket() {
        let proto = socket2::Protocol::from(i32::from((libc::ETH_P_ALL as u16).to_be()));
        let s = match socket2::Socket::new(socket2::Domain::PACKET, socket2::Type::RAW, Some(proto))
        {
            Ok(s) => s,
            Err(e) if e.kind() == io::ErrorKind::PermissionDenied => return, // no CAP_NET_RAW
            Err(e) => panic!("{e}"),
        };
        packet_statistics(&s).unwrap();
        let tcp = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        assert!(packet_statistics(&tcp).is_err());
    }
}
