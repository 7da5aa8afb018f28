#!/usr/bin/env python3
"""The scenario corpus: attack and legitimate traffic shapes as replayable recordings.

    corpus.py OUTDIR [NAME...]

writes one recording per scenario into OUTDIR and OUTDIR/manifest.json with what `deflect replay`
must find in each: the attacks (vector, target, signature) and the mitigations (kind and rule),
or none at all for legitimate traffic. Python 3 standard library only; deterministic (seeded).

Recordings come in the three forms replay reads, so each path that builds reports is exercised:
- "pcap": frames as a probe samples them, one in ONE_IN of the packets (classic pcap, Ethernet);
- "sflow": sFlow v5 datagrams from a switch as tcpdump/tshark capture them (pcapng, UDP to 6343),
  each flow sample carrying the sampled frame's header;
- "reports": JSON lines of the probe's own reports.

Each scenario is a list of components, each a traffic source active over [start, end) seconds
at a rate (packets per second), with its protocol, ports, flags, packet size and source spread.
Frames are cut after the transport header (the IP header keeps the real length), as a probe's
snap length would.
"""

import json
import os
import random
import struct
import sys

ONE_IN = 1000          # probe-view captures: one packet in ONE_IN
SFLOW_RATE = 2000      # sFlow sampling rate
T0 = 1_780_000_000     # the recordings' first second (2026-05-28)

VICTIM4 = "192.0.2.10"
VICTIM6 = "2001:db8::10"


# --- packets -------------------------------------------------------------------------------

def ip4(s):
    return bytes(int(x) for x in s.split("."))


def ip6(s):
    import ipaddress
    return ipaddress.IPv6Address(s).packed


def csum(b):
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def frame(src, dst, proto, sport=None, dport=None, flags=None, size=100, frag=False, icmp_type=8):
    """An Ethernet frame cut after the transport header; the IP header says `size` bytes."""
    v6 = ":" in dst
    if frag:
        l4 = b"\0" * 8  # a non-first fragment: payload bytes, no transport header
    elif proto == 6:
        l4 = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)
    elif proto == 17:
        l4 = struct.pack("!HHHH", sport, dport, max(8, size - (40 if v6 else 20)), 0)
    elif proto in (1, 58):
        l4 = struct.pack("!BBHHH", icmp_type if not v6 else 128, 0, 0, 1, 1)
    else:
        l4 = b"\0" * 8
    if v6:
        nh = proto
        ext = b""
        if frag:
            nh = 44
            ext = struct.pack("!BBHI", proto, 0, (185 << 3), 0x1234)  # offset 185*8, not first
        hdr = struct.pack("!IHBB", 6 << 28, size - 40, nh, 64) + ip6(src) + ip6(dst)
        return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x86\xdd" + hdr + ext + l4
    fo = 185 if frag else 0
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, 0, size, 1, fo, 64, proto, 0, ip4(src), ip4(dst))
    hdr = hdr[:10] + struct.pack("!H", csum(hdr)) + hdr[12:]
    return b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00" + hdr + l4


# --- traffic components --------------------------------------------------------------------

def spread_src(rng, v6, n, base):
    """Source `i` of `n` in a spread of addresses (random public-looking space)."""
    i = rng.randrange(n)
    if v6:
        return "2001:db8:ff00:%x::%x" % (i >> 16, (i & 0xFFFF) + 1)
    return "%d.%d.%d.%d" % (base + (i >> 16) % 50, (i >> 8) & 255, i & 255, 1 + (i % 200))


class C:
    """A traffic component."""

    def __init__(self, start, end, pps, proto, dst=VICTIM4, sport=None, dport=None, flags=None,
                 size=100, sources=1000, frag=False, dsts=None, pulse=None):
        self.start, self.end, self.pps = start, end, pps
        self.proto, self.dst, self.sport, self.dport = proto, dst, sport, dport
        self.flags, self.size, self.sources, self.frag = flags, size, sources, frag
        self.dsts = dsts        # a function rng -> destination, for carpets
        self.pulse = pulse      # (on, off) seconds

    def active(self, t):
        if not (self.start <= t < self.end):
            return False
        if self.pulse:
            on, off = self.pulse
            return (t - self.start) % (on + off) < on
        return True

    def packet(self, rng):
        v6 = ":" in self.dst
        src = self.sources(rng) if callable(self.sources) else spread_src(rng, v6, self.sources, 100)
        dst = self.dsts(rng) if self.dsts else self.dst
        pick = lambda p: p(rng) if callable(p) else p  # noqa: E731
        return frame(src, dst, self.proto, pick(self.sport), pick(self.dport), self.flags,
                     self.size, self.frag)


def eph(rng):
    return rng.randrange(32768, 61000)


def anyport(rng):
    return rng.randrange(1, 65536)


# Normal background to a web server: established HTTPS, a few SYNs, some DNS answers.
def web(dst=VICTIM4, end=None, scale=1.0):
    return [
        C(0, end, int(20000 * scale), 6, dst, eph, 443, 0x10, 80, sources=5000),
        C(0, end, int(8000 * scale), 6, dst, eph, 443, 0x18, 900, sources=5000),
        C(0, end, int(600 * scale), 6, dst, eph, 443, 0x02, 60, sources=5000),
        C(0, end, int(300 * scale), 17, dst, 53, eph, None, 180, sources=4),
    ]


# --- writers -------------------------------------------------------------------------------

def packets(rng, comps, duration, one_in):
    """(time, frame) samples over the scenario, one in `one_in` of each component's packets."""
    out = []
    for t in range(duration):
        for c in comps:
            if not c.active(t):
                continue
            n = c.pps / one_in
            k = int(n) + (1 if rng.random() < n - int(n) else 0)
            for _ in range(k):
                out.append((t + rng.random(), c.packet(rng)))
    out.sort(key=lambda x: x[0])
    return out


def write_pcap(path, samples):
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 256, 1))
        for t, fr in samples:
            ts = T0 + t
            sec, usec = int(ts), int((ts - int(ts)) * 1e6)
            f.write(struct.pack("<IIII", sec, usec, len(fr), len(fr)) + fr)


def sflow_datagrams(rng, samples, agent="10.255.0.1"):
    """sFlow v5 datagrams, up to 8 flow samples each, one per 0.1 s at most; (time, payload)."""
    out, seq, pool, sample_seq = [], 0, 0, 0
    i = 0
    while i < len(samples):
        batch = [samples[i]]
        i += 1
        while i < len(samples) and len(batch) < 8 and samples[i][0] - batch[0][0] < 0.1:
            batch.append(samples[i])
            i += 1
        seq += 1
        body = b""
        for _, fr in batch:
            sample_seq += 1
            pool += SFLOW_RATE
            hdr = fr[:128]
            pad = (4 - len(hdr) % 4) % 4
            ip_len = struct.unpack("!H", fr[16:18])[0] if fr[12:14] == b"\x08\x00" else \
                struct.unpack("!H", fr[18:20])[0] + 40
            rec = struct.pack("!IIII", 1, 14 + ip_len + 4, 4, len(hdr)) + hdr + b"\0" * pad
            rec = struct.pack("!II", 1, len(rec)) + rec
            fs = struct.pack("!IIIIIIII", sample_seq, 3, SFLOW_RATE, pool, 0, 3, 4, 1) + rec
            body += struct.pack("!II", 1, len(fs)) + fs
        uptime = int(batch[-1][0] * 1000) + 60_000
        head = struct.pack("!II4sIIII", 5, 1, ip4(agent), 0, seq, uptime, len(batch))
        out.append((batch[-1][0], head + body, agent))
    return out


def write_pcapng_sflow(path, datagrams, collector="10.255.0.100"):
    def block(t, body):
        pad = (4 - len(body) % 4) % 4
        body += b"\0" * pad
        n = 12 + len(body)
        return struct.pack("<II", t, n) + body + struct.pack("<I", n)

    with open(path, "wb") as f:
        f.write(block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)))
        f.write(block(1, struct.pack("<HHI", 1, 0, 65535)))  # Ethernet, microseconds
        for t, payload, agent in datagrams:
            udp = struct.pack("!HHHH", 40000, 6343, 8 + len(payload), 0) + payload
            iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                              ip4(agent), ip4(collector))
            iph = iph[:10] + struct.pack("!H", csum(iph)) + iph[12:]
            fr = b"\x02\0\0\0\0\x64\x02\0\0\0\0\x01\x08\x00" + iph + udp
            us = int((T0 + t) * 1e6)
            epb = struct.pack("<IIIII", 0, us >> 32, us & 0xFFFFFFFF, len(fr), len(fr)) + fr
            f.write(block(6, epb))


def write_reports(path, rng, flows_at, duration, node="edge-probe"):
    """JSON lines of reports: `flows_at(t)` gives {dst: [flow dicts]} for second t."""
    with open(path, "w") as f:
        for t in range(duration):
            targets = []
            for dst, flows in sorted(flows_at(t, rng).items()):
                pps = sum(x["pps"] for x in flows)
                bps = sum(x["bps"] for x in flows)
                targets.append({"dst": dst, "pps": pps, "bps": bps, "flows": flows,
                                "sources": []})
            f.write(json.dumps({"node": node, "seq": t, "time_ms": (T0 + t + 1) * 1000,
                                "interval_ms": 1000, "one_in": 1, "targets": targets}) + "\n")


# --- scenarios -----------------------------------------------------------------------------

def reflection(port, size, v6=False):
    dst = VICTIM6 if v6 else VICTIM4
    return web(dst, 120) + [C(30, 90, 400_000, 17, dst, port, anyport, None, size, sources=3000)]


def amp_expect(port, service, v6=False, start=30):
    dst = VICTIM6 if v6 else VICTIM4
    plen = 128 if v6 else 32
    proto = "next-header udp" if v6 else "proto udp"
    return {
        "attacks": [{"vector": "amplification", "target": dst, "proto": 17, "sports": [port],
                     "service": service, "start": start}],
        "mitigations": [{"kind": "flowspec",
                         "rule": f"dst {dst}/{plen} {proto} sport {port} then discard"}],
    }


def scenarios():
    s = []

    def add(name, kind, fmt, comps=None, duration=120, expect=None, gen=None, note=""):
        s.append({"name": name, "kind": kind, "format": fmt, "comps": comps,
                  "duration": duration, "expect": expect or {"attacks": [], "mitigations": []},
                  "gen": gen, "note": note})

    for name, port, size, svc, fmt in [
        ("reflection-dns", 53, 1400, "dns", "pcap"),
        ("reflection-ntp", 123, 468, "ntp", "sflow"),
        ("reflection-memcached", 11211, 1400, "memcached", "pcap"),
        ("reflection-ssdp", 1900, 320, "ssdp", "sflow"),
        ("reflection-cldap", 389, 1400, "cldap", "pcap"),
        ("reflection-chargen", 19, 1000, "chargen", "pcap"),
    ]:
        add(name, "attack", fmt, reflection(port, size), expect=amp_expect(port, svc),
            note=f"UDP from port {port} ({svc}) to spread destination ports, 3,000 reflectors")
    add("reflection-ntp-ipv6", "attack", "pcap", reflection(123, 468, v6=True),
        expect=amp_expect(123, "ntp", v6=True), note="NTP reflection over IPv6")

    syn = {"vector": "syn-flood", "target": VICTIM4, "proto": 6, "tcp_flags": [2, 16], "start": 30}
    add("syn-one-port", "attack", "pcap",
        web(VICTIM4, 120) + [C(30, 90, 300_000, 6, VICTIM4, anyport, 443, 0x02, 60, sources=100_000)],
        expect={"attacks": [dict(syn, dports=[443])],
                "mitigations": [{"kind": "flowspec",
                                 "rule": f"dst {VICTIM4}/32 proto tcp dport 443 tcp-flags syn&!~ack "
                                         "then rate-bytes 1250000"}]},
        note="SYN flood to 443 from spoofed sources and ports")
    add("syn-random-ports", "attack", "pcap",
        web(VICTIM4, 120) + [C(30, 90, 300_000, 6, VICTIM4, anyport, anyport, 0x02, 60, sources=100_000)],
        expect={"attacks": [dict(syn, dports=[])],
                "mitigations": [{"kind": "flowspec",
                                 "rule": f"dst {VICTIM4}/32 proto tcp tcp-flags syn&!~ack "
                                         "then rate-bytes 1250000"}]},
        note="SYN flood to random ports")
    add("syn-ipv6", "attack", "sflow",
        web(VICTIM6, 120) + [C(30, 90, 300_000, 6, VICTIM6, anyport, 80, 0x02, 80, sources=100_000)],
        expect={"attacks": [dict(syn, target=VICTIM6, dports=[80])],
                "mitigations": [{"kind": "flowspec",
                                 "rule": f"dst {VICTIM6}/128 next-header tcp dport 80 tcp-flags syn&!~ack "
                                         "then rate-bytes 1250000"}]},
        note="SYN flood over IPv6, seen by sFlow")
    add("ack-flood", "attack", "pcap",
        web(VICTIM4, 120) + [C(30, 90, 1_500_000, 6, VICTIM4, anyport, 443, 0x10, 60, sources=100_000)],
        expect={"attacks": [{"vector": "ack-flood", "start": 30, "target": VICTIM4, "proto": 6, "dports": [443]}],
                "mitigations": [{"kind": "flowspec"}]},
        note="ACK flood to 443, 1.5 Mpps of 60-byte ACKs")
    add("rst-flood", "attack", "pcap",
        web(VICTIM4, 120) + [C(30, 90, 200_000, 6, VICTIM4, anyport, 443, 0x04, 60, sources=100_000)],
        expect={"attacks": [{"vector": "rst-flood", "start": 30, "target": VICTIM4, "proto": 6}],
                "mitigations": [{"kind": "flowspec"}]},
        note="RST flood")
    add("icmp-flood", "attack", "pcap",
        web(VICTIM4, 120) + [C(30, 90, 200_000, 1, VICTIM4, None, None, None, 1000, sources=20_000)],
        expect={"attacks": [{"vector": "icmp-flood", "start": 30, "target": VICTIM4, "proto": 1}],
                "mitigations": [{"kind": "flowspec",
                                 "rule": f"dst {VICTIM4}/32 proto icmp then rate-bytes 125000"}]},
        note="ICMP echo flood")
    add("fragment-flood", "attack", "pcap",
        web(VICTIM4, 120) + [C(30, 90, 200_000, 17, VICTIM4, None, None, None, 1480, sources=5000, frag=True)],
        expect={"attacks": [{"vector": "fragment-flood", "start": 30, "target": VICTIM4, "proto": 17, "fragment": True}],
                "mitigations": [{"kind": "flowspec"}]},
        note="non-first UDP fragments")
    mv = amp_expect(123, "ntp")
    add("multi-vector", "attack", "pcap",
        reflection(123, 468) + [C(40, 90, 300_000, 6, VICTIM4, anyport, 80, 0x02, 60, sources=100_000)],
        expect={"attacks": mv["attacks"] + [dict(syn, dports=[80], start=40)],
                "mitigations": mv["mitigations"] + [{"kind": "flowspec",
                    "rule": f"dst {VICTIM4}/32 proto tcp dport 80 tcp-flags syn&!~ack then rate-bytes 1250000"}]},
        note="NTP reflection, and ten seconds later a SYN flood to 80")
    add("pulse-wave", "attack", "pcap",
        web(VICTIM4, 240) + [C(20, 200, 400_000, 17, VICTIM4, 123, anyport, None, 468,
                                sources=3000, pulse=(20, 40))],
        duration=240, expect=dict(amp_expect(123, "ntp", start=20), last_pulse_end=160),
        note="NTP pulses of 20 s every 60 s: one attack, one rule held through the gaps")
    few = [f"198.18.0.{i}" for i in (7, 8, 9)]
    add("few-sources", "attack", "pcap",
        web(VICTIM4, 120) + [C(30, 90, 400_000, 17, VICTIM4, eph, 27015, None, 1200,
                                sources=lambda r: r.choice(few))],
        expect={"attacks": [{"vector": "udp-flood", "start": 30, "target": VICTIM4, "proto": 17, "dports": [27015],
                             "sources": few}],
                "mitigations": [{"kind": "flowspec", "rule": f"dst {VICTIM4}/32 src {s}/32 proto udp then discard"}
                                for s in few]},
        note="three hosts flooding a game port: a rule per host (few-sources policy), the port untouched")

    # Carpet bombing: every address of a prefix under its own threshold, the prefix far above.
    carpet4 = lambda r: "198.51.100.%d" % r.randrange(256)  # noqa: E731
    add("carpet-ipv4-24", "attack", "pcap",
        web("198.51.100.10", 120) + [C(30, 90, 1_000_000, 17, "198.51.100.1", 123, anyport, None, 468,
                                       sources=3000, dsts=carpet4)],
        expect={"attacks": [{"vector": "amplification", "target": "198.51.100.0",
                             "prefix": "198.51.100.0/24", "proto": 17, "sports": [123],
                             "service": "ntp", "start": 30}],
                "mitigations": [{"kind": "flowspec",
                                 "rule": "dst 198.51.100.0/24 proto udp sport 123 then discard"}]},
        note="NTP reflection spread over a /24: ~3,900 pps to each address (under 20k), 1 Mpps in all")
    carpet6 = lambda r: "2001:db8:0:64:%x:%x:%x:%x" % tuple(r.randrange(65536) for _ in range(4))  # noqa: E731
    add("carpet-ipv6-64", "attack", "sflow",
        web("2001:db8::10", 120) + [C(30, 90, 600_000, 6, "2001:db8:0:64::1", anyport, 80, 0x02, 80,
                                      sources=100_000, dsts=carpet6)],
        expect={"attacks": [{"vector": "syn-flood", "target": "2001:db8:0:64::",
                             "prefix": "2001:db8:0:64::/64", "proto": 6, "dports": [80],
                             "start": 30}],
                "mitigations": [{"kind": "flowspec",
                                 "rule": "dst 2001:db8:0:64::/64 next-header tcp dport 80 "
                                         "tcp-flags syn&!~ack then rate-bytes 125000000"}]},
        note="a SYN flood to random addresses of a /64, each hit about once, 600k pps in all")

    # Legitimate shapes: no mitigation.
    add("legit-download-acks", "legit", "pcap",
        web(VICTIM4, 120) + [C(0, 120, 420_000, 6, VICTIM4, eph, 443, 0x10, 52, sources=40)],
        note="a server sending 10 Gb/s: ~420k ACKs a second back from 40 clients")
    add("legit-dns-resolver", "legit", "sflow",
        [C(0, 480, 70_000, 17, VICTIM4, eph, 53, None, 80, sources=50_000),
         C(360, 480, 60_000, 17, VICTIM4, eph, 53, None, 80, sources=50_000)],
        duration=480,
        note="a resolver's queries, 70k qps for six minutes, then an evening peak of 130k")
    add("legit-flash-crowd", "legit", "pcap",
        web(VICTIM4, 180) + [C(60, 150, 25_000, 6, VICTIM4, eph, 443, 0x02, 60, sources=200_000),
                             C(60, 150, 60_000, 6, VICTIM4, eph, 443, 0x10, 60, sources=200_000),
                             C(60, 150, 25_000, 6, VICTIM4, eph, 443, 0x18, 600, sources=200_000)],
        duration=180, note="a flash crowd: 25k new connections a second, every handshake completed")
    add("legit-backup-stream", "legit", "pcap",
        web(VICTIM4, 120) + [C(0, 120, 330_000, 6, VICTIM4, eph, 873, 0x10, 1500,
                                sources=lambda r: "198.18.5.20")],
        note="rsync replication into the server at 4 Gb/s from one source")
    add("legit-game-server", "legit", "reports", gen="game", duration=180,
        note="a game server's UDP: 60k pps from players to 27015, bursting at map changes")
    return s


def game_flows(t, rng):
    pps = 60_000 + (25_000 if t % 60 < 5 else 0) + rng.randrange(-3000, 3000)
    return {VICTIM4: [{"proto": 17, "dport": 27015, "pps": pps, "bps": pps * 8 * 180},
                      {"proto": 6, "dport": 443, "tcp_flags": 16, "pps": 2000, "bps": 2000 * 640}]}


def main():
    out = sys.argv[1]
    only = set(sys.argv[2:])
    os.makedirs(out, exist_ok=True)
    manifest = []
    for sc in scenarios():
        if only and sc["name"] not in only:
            continue
        rng = random.Random(sc["name"])
        fmt = sc["format"]
        if fmt == "pcap":
            path = sc["name"] + ".pcap"
            write_pcap(os.path.join(out, path), packets(rng, sc["comps"], sc["duration"], ONE_IN))
            args = ["--one-in", str(ONE_IN)]
        elif fmt == "sflow":
            path = sc["name"] + ".pcapng"
            dg = sflow_datagrams(rng, packets(rng, sc["comps"], sc["duration"], SFLOW_RATE))
            write_pcapng_sflow(os.path.join(out, path), dg)
            args = []
        else:
            path = sc["name"] + ".jsonl"
            write_reports(os.path.join(out, path), rng, game_flows, sc["duration"])
            args = []
        manifest.append({"name": sc["name"], "kind": sc["kind"], "file": path, "format": fmt,
                         "t0_ms": T0 * 1000,
                         "args": args, "expect": sc["expect"], "note": sc["note"]})
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)


if __name__ == "__main__":
    main()
