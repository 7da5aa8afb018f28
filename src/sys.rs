//! Socket options and calls that no crate wraps: TCP MD5 signatures (RFC 2385), the minimum-TTL half
//! of GTSM (RFC 5082), the counters of a packet socket (`PACKET_STATISTICS`, for the probe's
//! sampler), and batched datagram receive (`recvmmsg(2)` with the `SO_RXQ_OVFL` drop count, the
//! socket's drop counter from `SO_MEMINFO`, and `SO_REUSEPORT` shards steered by source address,
//! for the flow collectors), the process's limit of open files (`RLIMIT_NOFILE`), and the global
//! allocator that switches to mimalloc for the controller ([`Allocator`]).
//!
//! This is the only module of the workspace allowed to use `unsafe`: each block is one system call on
//! a file descriptor we own, with buffers whose layout is the kernel's (or the reading of what the
//! kernel wrote there), or one call into an allocator under `GlobalAlloc`'s contract. Everything
//! else about sockets goes through `socket2`.
#![allow(unsafe_code)]

use std::io;
use std::mem::{self, MaybeUninit};
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

/// `SO_ATTACH_REUSEPORT_CBPF` from `<asm-generic/socket.h>` (not in `libc` for Linux; 51 on every
/// architecture but sparc and mips).
const SO_ATTACH_REUSEPORT_CBPF: libc::c_int = 51;

/// Classic BPF opcodes from `<linux/filter.h>` (class | size or operation | source).
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD (0) | BPF_W (0) | BPF_ABS
const BPF_LD_B_ABS: u16 = 0x10 | 0x20; // BPF_LD | BPF_B | BPF_ABS
const BPF_ALU_RSH_K: u16 = 0x04 | 0x70; // BPF_ALU | BPF_RSH | BPF_K (0)
const BPF_ALU_MOD_K: u16 = 0x04 | 0x90; // BPF_ALU | BPF_MOD | BPF_K (0)
const BPF_JMP_JEQ_K: u16 = 0x05 | 0x10; // BPF_JMP | BPF_JEQ | BPF_K (0)
const BPF_JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA (0)
const BPF_RET_A: u16 = 0x06 | 0x10; // BPF_RET | BPF_A

/// Steers each datagram reaching the `SO_REUSEPORT` group of `socket` to the socket whose index
/// (in the order they were bound) is the last 32 bits of its source address modulo `shards`: one
/// sender always reaches the same socket, whatever its source port (the kernel's own choice
/// hashes the port too). A classic BPF program attached to the group (`SO_ATTACH_REUSEPORT_CBPF`,
/// Linux 4.5), reading the IP version from the network header (so IPv4 datagrams on a
/// dual-stack socket are steered by their address too); an index past the group's sockets falls
/// back to the kernel's hash.
pub fn steer_by_source<S: AsRawFd>(socket: &S, shards: u32) -> io::Result<()> {
    let net = |offset: i32| (libc::SKF_NET_OFF + offset) as u32;
    let insn = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    let mut program = [
        // a = version (the high nibble of the network header's first octet)
        insn(BPF_LD_B_ABS, 0, 0, net(0)),
        insn(BPF_ALU_RSH_K, 0, 0, 4),
        // IPv4: a = source address (octets 12..16); else IPv6: its last word (octets 20..24)
        insn(BPF_JMP_JEQ_K, 0, 2, 4),
        insn(BPF_LD_W_ABS, 0, 0, net(12)),
        insn(BPF_JMP_JA, 0, 0, 1),
        insn(BPF_LD_W_ABS, 0, 0, net(20)),
        insn(BPF_ALU_MOD_K, 0, 0, shards.max(1)),
        insn(BPF_RET_A, 0, 0, 0),
    ];
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `fprog` points to `program`, a live array of exactly `len` instructions, for the
    // duration of the call (the kernel copies it); the length passed is the struct's size; the fd
    // is borrowed from a live socket.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_ATTACH_REUSEPORT_CBPF,
            (&fprog as *const libc::sock_fprog).cast(),
            mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// What the kernel told of one datagram of a [`recv_batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Received {
    /// Octets written into the datagram's slot.
    pub len: usize,
    /// The sender (`None` for an address family other than IPv4 and IPv6).
    pub from: Option<SocketAddr>,
    /// The datagram was longer than its slot (`MSG_TRUNC`): what is in the slot is cut.
    pub truncated: bool,
    /// The socket's drop counter when the datagram was queued (`SO_RXQ_OVFL`), if the kernel gave
    /// it: it does once the counter is not zero and the option is on ([`set_rxq_ovfl`]).
    pub drops: Option<u32>,
}

/// Most datagrams one [`recv_batch`] takes: its headers live on the stack.
pub const MAX_BATCH: usize = 256;

/// Room for one `SO_RXQ_OVFL` control message (`CMSG_SPACE(sizeof(u32))` is 16 on 64-bit Linux, 12
/// on 32-bit), with margin; `u64`s for the alignment `cmsghdr` needs.
const CONTROL_WORDS: usize = 4;

/// Asks the kernel to attach the socket's drop counter to each datagram received (`SO_RXQ_OVFL`).
pub fn set_rxq_ovfl<S: AsRawFd>(socket: &S) -> io::Result<()> {
    let on: libc::c_int = 1;
    // SAFETY: `on` is a live c_int and the length passed is its size; the fd is borrowed from a live
    // socket.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            (&on as *const libc::c_int).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The socket's drop counter now (`SK_MEMINFO_DROPS` of `SO_MEMINFO`): datagrams the kernel dropped
/// on it, mostly because its receive queue was full. A `u32` in the kernel: it wraps.
pub fn socket_drops<S: AsRawFd>(socket: &S) -> io::Result<u32> {
    // SK_MEMINFO_VARS is 9 today; room for more, the kernel writes at most `len` octets.
    let mut info = [0u32; 16];
    let mut len = mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is a live, writable array of `len` octets, so the kernel writes at most that
    // many; the fd is borrowed from a live socket.
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let i = libc::SK_MEMINFO_DROPS as usize;
    if (len as usize) < (i + 1) * mem::size_of::<u32>() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "SO_MEMINFO without a drop counter",
        ));
    }
    Ok(info[i])
}

/// The address in a `sockaddr_storage` of which the kernel filled `len` octets.
fn socket_addr_of(storage: &libc::sockaddr_storage, len: usize) -> Option<SocketAddr> {
    match libc::c_int::from(storage.ss_family) {
        libc::AF_INET if len >= mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the kernel wrote a `sockaddr_in`, which is smaller than and
            // aligned within a `sockaddr_storage`.
            let sin =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            Some(SocketAddr::from((
                u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                u16::from_be(sin.sin_port),
            )))
        }
        libc::AF_INET6 if len >= mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for a `sockaddr_in6`.
            let sin6 = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                sin6.sin6_addr.s6_addr.into(),
                u16::from_be(sin6.sin6_port),
                u32::from_be(sin6.sin6_flowinfo),
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// The `SO_RXQ_OVFL` counter among a received message's control messages.
fn rxq_ovfl_of(hdr: &libc::msghdr) -> Option<u32> {
    let mut found = None;
    // SAFETY: `hdr` is a header `recvmmsg` filled: `msg_control` points to our control buffer and
    // `msg_controllen` is what the kernel wrote in it, so CMSG_FIRSTHDR/CMSG_NXTHDR stay inside it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(hdr) };
    // Bounded: a control buffer of CONTROL_WORDS words holds at most a few messages.
    for _ in 0..8 {
        if cmsg.is_null() {
            break;
        }
        // SAFETY: non-null, so it points to a whole `cmsghdr` inside the control buffer.
        let c = unsafe { &*cmsg };
        if c.cmsg_level == libc::SOL_SOCKET
            && c.cmsg_type == libc::SO_RXQ_OVFL
            // SAFETY: CMSG_LEN only computes a length.
            && c.cmsg_len as usize >= unsafe { libc::CMSG_LEN(4) } as usize
        {
            // SAFETY: the message is SO_RXQ_OVFL and long enough for its u32, which may be unaligned.
            found = Some(unsafe { std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast::<u32>()) });
        }
        // SAFETY: as for CMSG_FIRSTHDR; it returns null past the end.
        cmsg = unsafe { libc::CMSG_NXTHDR(hdr, cmsg) };
    }
    found
}

/// Receives, without waiting (`MSG_DONTWAIT`), up to `out.len()` datagrams (at most [`MAX_BATCH`])
/// with one `recvmmsg(2)`: the i-th into `buf[i * slot_size..][..slot_size]`, what the kernel said
/// of it into `out[i]`. Returns how many were received; `WouldBlock` when none was queued.
pub fn recv_batch<S: AsRawFd>(
    socket: &S,
    buf: &mut [u8],
    slot_size: usize,
    out: &mut [Received],
) -> io::Result<usize> {
    let slots = out
        .len()
        .min(MAX_BATCH)
        .min(buf.len().checked_div(slot_size).unwrap_or(0));
    if slots == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "recv_batch: no slot to receive into",
        ));
    }
    // Only the first `slots` entries are written (and only those are read back), so that a small
    // batch does not pay for zeroing MAX_BATCH headers.
    let mut hdrs = [const { MaybeUninit::<libc::mmsghdr>::uninit() }; MAX_BATCH];
    let mut addrs = [const { MaybeUninit::<libc::sockaddr_storage>::uninit() }; MAX_BATCH];
    let mut iovs = [const { MaybeUninit::<libc::iovec>::uninit() }; MAX_BATCH];
    let mut controls = [[0u64; CONTROL_WORDS]; MAX_BATCH];
    for (i, slot) in buf.chunks_exact_mut(slot_size).take(slots).enumerate() {
        let iov = iovs[i].write(libc::iovec {
            iov_base: slot.as_mut_ptr().cast(),
            iov_len: slot_size,
        });
        // SAFETY: `mmsghdr` and `sockaddr_storage` are plain old data, valid when all zero.
        let hdr = hdrs[i].write(unsafe { mem::zeroed() });
        // SAFETY: as above.
        addrs[i].write(unsafe { mem::zeroed() });
        let h = &mut hdr.msg_hdr;
        h.msg_name = addrs[i].as_mut_ptr().cast();
        h.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        h.msg_iov = iov;
        h.msg_iovlen = 1;
        h.msg_control = controls[i].as_mut_ptr().cast();
        h.msg_controllen = mem::size_of_val(&controls[i]) as _;
    }
    // SAFETY: the first `slots` headers are initialised and point to live, distinct buffers of the
    // lengths they give (a slot of `buf`, an address, a control buffer), all outliving the call; the
    // kernel writes only within those lengths and reads only `slots` headers. No timeout:
    // MSG_DONTWAIT returns at once.
    let n = unsafe {
        libc::recvmmsg(
            socket.as_raw_fd(),
            hdrs.as_mut_ptr().cast::<libc::mmsghdr>(),
            slots as libc::c_uint,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let n = (n as usize).min(slots);
    for (i, r) in out.iter_mut().take(n).enumerate() {
        // SAFETY: header i < n <= slots was initialised above and updated by the kernel.
        let h = unsafe { hdrs[i].assume_init_ref() };
        let from = if (h.msg_hdr.msg_namelen as usize) >= mem::size_of::<libc::sa_family_t>() {
            // SAFETY: address i < n was initialised (zeroed) above, then written by the kernel.
            socket_addr_of(
                unsafe { addrs[i].assume_init_ref() },
                h.msg_hdr.msg_namelen as usize,
            )
        } else {
            None
        };
        *r = Received {
            len: (h.msg_len as usize).min(slot_size),
            from,
            truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
            drops: rxq_ovfl_of(&h.msg_hdr),
        };
    }
    Ok(n)
}

/// Raises this process's soft limit of open files (`RLIMIT_NOFILE`) to its hard limit, as Go's
/// runtime and most servers do: a service manager's default soft limit (1024 under systemd) is
/// less than the API's `max_connections` and the rest of the daemon's descriptors together, and a
/// daemon out of descriptors cannot accept, open its store or answer a health check. Returns the
/// (soft, hard) limits in force after.
pub fn raise_open_files() -> io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into `lim`, which outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // An unlimited hard limit still stops at the kernel's `fs.nr_open` (2^20 by default).
    let target = if lim.rlim_max == libc::RLIM_INFINITY {
        1 << 20
    } else {
        lim.rlim_max
    };
    if lim.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit reads one `rlimit` from `raised`, which outlives the call.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = target;
        }
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// The process's allocator: the system's (glibc's malloc), or mimalloc for every new block while
/// [`Allocator::set_mimalloc`] says so, as the controller's `allocator: mimalloc` does. mimalloc
/// takes a fifth off the controller's CPU per probe report at fleet size, where glibc's locks and
/// free lists were the largest single cost, for about 1 MiB more resident (`benches/fleet.rs`,
/// `benches/api.rs`); the probe, the same binary, always stays on the system's (its 10 MB budget).
/// A block goes back to the allocator that gave it, whichever is in force: mimalloc's page map
/// tells its own blocks from any other address (`mi_is_in_heap_region`, the test its own `malloc`
/// override makes for the same reason), so the choice may change at any time.
#[derive(Debug)]
pub struct Allocator;

static MIMALLOC: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl Allocator {
    /// New blocks come from mimalloc (`true`) or the system's allocator from now on; blocks given
    /// before go back to whichever gave them.
    pub fn set_mimalloc(on: bool) {
        MIMALLOC.store(on, std::sync::atomic::Ordering::Relaxed);
    }

    fn mimalloc() -> bool {
        MIMALLOC.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Whether `p` is a block of mimalloc's.
fn mimalloc_owns(p: *mut u8) -> bool {
    // SAFETY: `mi_is_in_heap_region` only looks the address up in mimalloc's page map (false when
    // mimalloc has not been used); any address may be asked about, and nothing is dereferenced.
    unsafe { libmimalloc_sys::mi_is_in_heap_region(p.cast()) }
}

// SAFETY: every block is given back to (or resized by) the allocator that gave it, decided by the
// owner's own page map, never by the switch (which only says where new blocks come from); each
// allocator is called under the contract `GlobalAlloc` states, passed on unchanged, and the one
// move between them (a system block resized once mimalloc is in force) copies the smaller of the
// two sizes into a fresh mimalloc block before the old one is given back.
unsafe impl std::alloc::GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if Allocator::mimalloc() {
            // SAFETY: the caller's layout (non-zero size), passed on.
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        } else {
            // SAFETY: as above.
            unsafe { std::alloc::System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: std::alloc::Layout) -> *mut u8 {
        if Allocator::mimalloc() {
            // SAFETY: the caller's layout (non-zero size), passed on.
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        } else {
            // SAFETY: as above.
            unsafe { std::alloc::System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        if mimalloc_owns(ptr) {
            // SAFETY: a block mimalloc gave, with the layout it was given for.
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        } else {
            // SAFETY: not mimalloc's, so the system's (the only other source), same layout.
            unsafe { std::alloc::System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, new_size: usize) -> *mut u8 {
        if mimalloc_owns(ptr) {
            // SAFETY: a block mimalloc gave; the caller's layout and new size, passed on.
            return unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) };
        }
        if !Allocator::mimalloc() {
            // SAFETY: the system's block; the caller's layout and new size, passed on.
            return unsafe { std::alloc::System.realloc(ptr, layout, new_size) };
        }
        // A block from before the switch: moved to mimalloc.
        // SAFETY: `realloc`'s contract makes `new_size`, rounded up to `layout.align()`, fit in an
        // `isize`, which is what a `Layout` asks.
        let to = unsafe { std::alloc::Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a non-zero size (`realloc`'s contract).
        let new = unsafe { mimalloc::MiMalloc.alloc(to) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size, and distinct (one is live).
            unsafe { std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size)) };
            // SAFETY: the system's block, with its layout, no longer used.
            unsafe { std::alloc::System.dealloc(ptr, layout) };
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The switch both ways, with blocks of both sides alive across it: each goes back to the
    /// allocator that gave it (a system block given to mimalloc, or the reverse, corrupts or
    /// crashes the process), and a system block resized under mimalloc moves with its bytes.
    /// Only this test uses `Allocator` (the tests' own global allocator is the system's).
    #[test]
    fn the_allocator_gives_each_block_back_to_the_one_that_gave_it() {
        use std::alloc::{GlobalAlloc, Layout};
        let a = Allocator;
        let small = Layout::from_size_align(100, 8).unwrap();
        let paged = Layout::from_size_align(8192, 4096).unwrap();
        let fill = |p: *mut u8, n: usize, v: u8| unsafe { std::ptr::write_bytes(p, v, n) };
        let holds = |p: *mut u8, n: usize, v: u8| unsafe {
            std::slice::from_raw_parts(p, n).iter().all(|b| *b == v)
        };
        unsafe {
            // Before the switch: the system's.
            let kept = a.alloc(small);
            let moved = a.alloc(small);
            let aligned = a.alloc(paged);
            for (p, n) in [(kept, 100), (moved, 100), (aligned, 8192)] {
                assert!(!p.is_null() && !mimalloc_owns(p));
                fill(p, n, 0xA5);
            }
            assert_eq!(aligned as usize % 4096, 0);

            Allocator::set_mimalloc(true);
            let fresh = a.alloc(small);
            let zeroed = a.alloc_zeroed(paged);
            assert!(mimalloc_owns(fresh) && mimalloc_owns(zeroed));
            assert_eq!(zeroed as usize % 4096, 0);
            assert!(holds(zeroed, 8192, 0));
            fill(fresh, 100, 0x3C);

            // A system block resized now moves to mimalloc with its bytes.
            let grown = a.realloc(moved, small, 100_000);
            assert!(mimalloc_owns(grown) && holds(grown, 100, 0xA5));
            let shrunk = a.realloc(aligned, paged, 16);
            assert!(mimalloc_owns(shrunk) && holds(shrunk, 16, 0xA5));
            assert_eq!(shrunk as usize % 4096, 0);
            // mimalloc's blocks stay mimalloc's.
            let regrown = a.realloc(fresh, small, 5000);
            assert!(mimalloc_owns(regrown) && holds(regrown, 100, 0x3C));

            // Each given back to its own: the system's block kept across the switch as well.
            assert!(holds(kept, 100, 0xA5));
            a.dealloc(kept, small);
            a.dealloc(grown, Layout::from_size_align(100_000, 8).unwrap());
            a.dealloc(shrunk, Layout::from_size_align(16, 4096).unwrap());
            a.dealloc(regrown, Layout::from_size_align(5000, 8).unwrap());

            // Back to the system's: a mimalloc block resized stays mimalloc's.
            Allocator::set_mimalloc(false);
            let system = a.alloc(small);
            assert!(!mimalloc_owns(system));
            let zeroed = a.realloc(zeroed, paged, 20_000);
            assert!(mimalloc_owns(zeroed) && holds(zeroed, 8192, 0));
            a.dealloc(zeroed, Layout::from_size_align(20_000, 4096).unwrap());
            a.dealloc(system, small);
        }
    }

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
