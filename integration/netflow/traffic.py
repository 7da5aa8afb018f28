#!/usr/bin/env python3
"""Bounded test traffic for integration/netflow/capture.sh (run inside the sender namespace).

UDP from 8 source ports to 4 destination ports on two addresses (IPv4 and IPv6), TCP SYNs to a closed
port (each answered by a RST), ICMP echo requests (IPv4 and IPv6). Everything is bounded: at most
PACKETS UDP datagrams, 40 SYNs, 60 echoes, and DEADLINE seconds in total.
"""
import socket, struct, sys, time

V4_DST = sys.argv[1]          # e.g. 203.0.113.10
V6_DST = sys.argv[2]          # e.g. 2001:db8:2::10
PACKETS = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
DEADLINE = time.monotonic() + 15.0

def checksum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xFFFF)
    s += s >> 16
    return ~s & 0xFFFF

# UDP: 8 source ports x 4 destination ports, payload sizes vary by destination port.
socks = []
for i in range(8):
    s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s4.bind(("0.0.0.0", 40000 + i))
    socks.append((s4, V4_DST))
for i in range(2):
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s6.bind(("::", 41000 + i))
    socks.append((s6, V6_DST))
dports = [53, 123, 443, 11211]
sent = 0
while sent < PACKETS and time.monotonic() < DEADLINE:
    s, dst = socks[sent % len(socks)]
    dport = dports[(sent // len(socks)) % len(dports)]
    try:
        s.sendto(b"x" * (40 + 100 * dports.index(dport)), (dst, dport))
    except OSError:
        pass                       # ICMP port unreachable comes back on these sockets; ignore it
    sent += 1
    if sent % 200 == 0:
        time.sleep(0.05)           # spread over about 1 s so flows expire mid-run too

# TCP SYNs to a closed port: connect() gets RST at once.
syns = 0
for i in range(40):
    if time.monotonic() > DEADLINE:
        break
    c = socket.socket(socket.AF_INET, socket.SOCK_STREAM); c.settimeout(0.5)
    try:
        c.connect((V4_DST, 8080))
    except OSError:
        pass
    c.close(); syns += 1

# ICMP echo (v4 and v6) through raw sockets (no ping binary needed).
echoes = 0
r4 = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
r6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_ICMPV6)
for seq in range(30):
    if time.monotonic() > DEADLINE:
        break
    hdr = struct.pack("!BBHHH", 8, 0, 0, 0x4242, seq) + b"deflect-netflow"
    pkt = struct.pack("!BBHHH", 8, 0, checksum(hdr), 0x4242, seq) + b"deflect-netflow"
    r4.sendto(pkt, (V4_DST, 0))
    r6.sendto(struct.pack("!BBHHH", 128, 0, 0, 0x4243, seq) + b"deflect-netflow", (V6_DST, 0))  # kernel fills the v6 checksum
    echoes += 2
    time.sleep(0.01)
print(f"traffic: {sent} udp, {syns} tcp syn, {echoes} icmp echo", file=sys.stderr)
