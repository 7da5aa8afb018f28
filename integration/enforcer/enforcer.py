#!/usr/bin/env python3
"""Emulates an edge router's data plane in the router's network namespace: what the router holds
is what the traffic gets.

deflect's lab puts BIRD and GoBGP in the path between the attacker and the victim; neither
programs a Linux data plane for FlowSpec, so this program does it for them. It is deliberately
independent of deflect (no `deflect flowspec --format nftables`, no bgp crate): it reads the
router's *own* view, through the router's own CLI, so a router that holds something deflect no
longer says (or the other way round) is enforced as the router holds it.

Reads (every --interval, default 0.2 s):
  --bird SOCKET     birdc -s SOCKET show route table ft4|ft6 all         (FlowSpec)
                    birdc -s SOCKET show route table master4|master6 all (RTBH: community (65535,666))
  --gobgp HOST:PORT gobgp -u HOST -p PORT global rib -a ipv4-flowspec|ipv6-flowspec -j
                    gobgp ... global rib -a ipv4|ipv6 -j                  (RTBH: community 65535:666)

Programs:
  nftables: one table, `inet deflect_enforcer`, hooked on forward, replaced in one transaction
  (`nft -f -`: add, delete, add) each time the view changes. One rule per route (two or more when
  the route is an OR the rule syntax cannot say in one: a `port` component is "source or
  destination port", a bitmask with `||`), each with a counter and a comment naming the route; the
  counters are carried over when the table is replaced. Rules follow RFC 8955 §5.1 order, and a
  matched packet leaves the chain (accept, drop, or the rate-limit chain's verdict): first match
  wins, as on a router.
  routes: `ip route replace blackhole PREFIX proto 199` per RTBH route while it is present, deleted
  when it goes (proto 199 marks ours: leftovers of a killed enforcer are flushed at start).

Components: dst/src prefix, protocol / next header, port, dport, sport, icmp type/code, tcp flags,
packet length (IPv4 total length; IPv6 payload length, RFC 8956), DSCP, fragment, IPv6 flow label.
Numeric operators (==, <, >, <=, >=, !=, ranges, AND/OR lists with AND binding tighter, RFC 8955
§4.2.1.1) become exact nft interval sets.
Actions: traffic-rate-bytes (0x8006) 0 -> drop, N -> `limit rate over N bytes/second drop`;
traffic-rate-packets (0x800c) 0 -> drop, N -> `limit rate over N/second drop`; anything else
(redirect, traffic-marking, traffic-action alone, unknown) -> accept, logged.

Does not support (the route is skipped and logged, never replaced by a wider rule): an IPv6
prefix with a non-zero offset, an IPv6 fragment term BIRD/GoBGP would print as "not first/last
fragment", a route that expands into more than 16 rules. It does not: apply redirect or
traffic-marking, honour the traffic-action T bit (every rule is terminal), validate routes
(RFC 8955 §6; the router already did), or read other tables than those above.

When the router's CLI does not answer (the daemon restarting), the last view stays programmed and
the failure is logged once. On SIGTERM, SIGINT or --max-runtime, the table and the blackhole
routes are removed.

Output: one line per change, `TIME added|removed|skipped: why ROUTE`, on stdout.
  --dump      print the ruleset (and blackhole routes as comments) for the current view and exit.
  --selftest  run the unit tests beside this file (test_enforcer.py) and exit.
"""

import argparse
import base64
import datetime
import functools
import hashlib
import ipaddress
import json
import re
import signal
import struct
import subprocess
import sys
import time

TABLE = "deflect_enforcer"
RT_PROTO = "199"
BLACKHOLE_BIRD = "(65535,666)"
BLACKHOLE_GOBGP = 65535 << 16 | 666
MAX_RULES_PER_ROUTE = 16

# Component types (RFC 8955 §4.2.2, RFC 8956 §3).
DST, SRC, PROTO, PORT, DPORT, SPORT, ICMP_TYPE, ICMP_CODE, TCP_FLAGS, LENGTH, DSCP, FRAGMENT, LABEL = range(1, 14)
MAXIMUM = {PROTO: 255, PORT: 65535, DPORT: 65535, SPORT: 65535, ICMP_TYPE: 255, ICMP_CODE: 255,
           LENGTH: 65535, DSCP: 63, LABEL: 0xFFFFF}
BIRD_NAMES = {"dst": DST, "src": SRC, "proto": PROTO, "next header": PROTO, "port": PORT,
              "dport": DPORT, "sport": SPORT, "icmp type": ICMP_TYPE, "icmp code": ICMP_CODE,
              "tcp flags": TCP_FLAGS, "length": LENGTH, "dscp": DSCP, "fragment": FRAGMENT,
              "label": LABEL}
BIRD_FRAGMENT = {"dont_fragment": 1, "is_fragment": 2, "first_fragment": 4, "last_fragment": 8}
# Numeric operator bits (lt, gt, eq) and bitmask bits (not, match), RFC 8955 §4.2.1.
LT, GT, EQ = 4, 2, 1
NOT, MATCH = 2, 1
AND = 0x40


def log(what):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    print(f"{now} {what}", flush=True)


class Skip(Exception):
    """A route the enforcer cannot express exactly: it is not programmed."""


class Route:
    """A FlowSpec route as the router holds it.

    name: the router's own text of the NLRI (names the rule). family: 4 or 6.
    comps: {type: value}: a prefix (ipaddress network) for DST/SRC, otherwise a list of
    (and, op bits, value) terms as on the wire. actions: [(type, subtype, 6 bytes)] of the
    FlowSpec extended communities.
    """

    def __init__(self, name, family, comps, actions):
        self.name, self.family, self.comps, self.actions = name, family, comps, actions

    def encoded(self, t):
        """The component's bytes after its type, as RFC 8955 encodes them (for §5.1 ordering)."""
        v = self.comps[t]
        if t in (DST, SRC):
            return v.network_address.packed[: (v.prefixlen + 7) // 8]
        out = b""
        for i, (and_, bits, value) in enumerate(v):
            size = 1 if value < 256 else 2 if value < 65536 else 4
            op = (0x80 if i == len(v) - 1 else 0) | (AND if and_ else 0) | {1: 0, 2: 0x10, 4: 0x20}[size] | bits
            out += bytes([op]) + value.to_bytes(size, "big")
        return out


def rfc8955_cmp(a, b):
    """RFC 8955 §5.1: negative when `a` has precedence."""
    ta, tb = sorted(a.comps), sorted(b.comps)
    for i in range(max(len(ta), len(tb))):
        x = ta[i] if i < len(ta) else 99
        y = tb[i] if i < len(tb) else 99
        if x != y:
            return -1 if x < y else 1
        if x in (DST, SRC):
            pa, pb = a.comps[x], b.comps[x]
            common = min(pa.prefixlen, pb.prefixlen)
            na = int(pa.network_address) >> (pa.max_prefixlen - common) if common else 0
            nb = int(pb.network_address) >> (pb.max_prefixlen - common) if common else 0
            if na != nb:
                return -1 if na < nb else 1
            if pa.prefixlen != pb.prefixlen:
                return -1 if pa.prefixlen > pb.prefixlen else 1
        else:
            ea, eb = a.encoded(x), b.encoded(x)
            n = min(len(ea), len(eb))
            if ea[:n] != eb[:n]:
                return -1 if ea[:n] < eb[:n] else 1
            if len(ea) != len(eb):
                return -1 if len(ea) > len(eb) else 1
    return -1 if a.name < b.name else (1 if a.name > b.name else 0)


# ---------------------------------------------------------------------------------------------
# Reading BIRD


def bird_blocks(text):
    """`show route ... all` output as [(first line, [attribute lines])]."""
    blocks = []
    for line in text.splitlines():
        if not line.strip() or line.startswith("BIRD ") or line.startswith("Table "):
            continue
        if line.startswith("\t"):
            if blocks:
                blocks[-1][1].append(line.strip())
        else:
            blocks.append((line, []))
    return blocks


def bird_ext_communities(attrs):
    out = []
    for a in attrs:
        if a.startswith("BGP.ext_community:"):
            for hi, lo in re.findall(r"\(generic, (0x[0-9a-f]+), (0x[0-9a-f]+)\)", a):
                hi, lo = int(hi, 16), int(lo, 16)
                out.append((hi >> 24, (hi >> 16) & 0xFF, struct.pack(">HI", hi & 0xFFFF, lo)))
    return out


NUM_OPS = {"=": EQ, ">": GT, ">=": GT | EQ, "<": LT, "<=": LT | EQ, "!=": LT | GT, "true": LT | GT | EQ, "false": 0}


def bird_numeric(text):
    """BIRD's text of a numeric component (`53,123,1000..2000,>= 60000`, `!= 80 && < 1024`)."""
    terms = []
    for group in re.split(r"\s*(?:,|\|\|)\s*", text.strip()):
        for j, term in enumerate(re.split(r"\s*&&\s*", group)):
            and_ = j > 0
            m = re.fullmatch(r"(\d+)\.\.(\d+)", term)
            if m:
                terms.append((and_, GT | EQ, int(m[1])))
                terms.append((True, LT | EQ, int(m[2])))
                continue
            m = re.fullmatch(r"(?:(!=|>=|<=|=|>|<|true|false)\s*)?(\d+)", term)
            if not m:
                raise Skip(f"unreadable numeric term {term!r}")
            terms.append((and_, NUM_OPS[m[1]] if m[1] else EQ, int(m[2])))
    return terms


def bird_bitmask(text, t):
    """BIRD's `[!]0xV/0xM` terms (match (data & M) == V, negated by `!`) or fragment names."""
    terms = []
    for group_i, group in enumerate(re.split(r"\s*\|\|\s*", text.strip())):
        for j, term in enumerate(re.split(r"\s*&&\s*", group)):
            and_ = j > 0
            bangs = len(term) - len(term.lstrip("!"))
            body = term.lstrip("!")
            if t == FRAGMENT and body in BIRD_FRAGMENT:
                # One bit: "any" and "all" are the same; an odd number of `!` means "clear".
                terms.append((and_, (NOT if bangs % 2 else 0) | MATCH, BIRD_FRAGMENT[body]))
                continue
            m = re.fullmatch(r"0x([0-9a-f]+)/0x([0-9a-f]+)", body)
            if not m:
                raise Skip(f"unreadable bitmask term {term!r}")
            val, mask = int(m[1], 16), int(m[2], 16)
            neg = bangs % 2 == 1
            if val == mask:  # all of mask set (or, negated, not all)
                terms.append((and_, (NOT if neg else 0) | MATCH, mask))
            elif val == 0:  # none set (or, negated, any set)
                terms.append((and_, 0 if neg else NOT, mask))
            else:
                raise Skip(f"bitmask {term!r}: neither all nor none of its bits")
    return terms


def parse_bird_flow(line, attrs):
    m = re.match(r"(flow[46]) \{ (.*?) ?\}", line)
    if not m:
        raise Skip(f"unreadable route line {line!r}")
    name = f"{m[1]} {{ {m[2]} }}"
    family = 4 if m[1] == "flow4" else 6
    comps = {}
    for part in [p.strip() for p in m[2].split(";") if p.strip()]:
        key = next((k for k in sorted(BIRD_NAMES, key=len, reverse=True) if part.startswith(k + " ")), None)
        if key is None:
            raise Skip(f"unknown component {part!r}")
        t, value = BIRD_NAMES[key], part[len(key) + 1:]
        if t in (DST, SRC):
            pm = re.fullmatch(r"(\S+)(?: offset (\d+))?", value)
            if pm[2] and int(pm[2]) != 0:
                raise Skip(f"{key} {value}: a prefix offset")
            comps[t] = ipaddress.ip_network(pm[1], strict=False)
        elif t in (TCP_FLAGS, FRAGMENT):
            comps[t] = bird_bitmask(value, t)
        else:
            comps[t] = bird_numeric(value)
    return Route(name, family, comps, bird_ext_communities(attrs))


def bird_view(run, socket):
    routes, skipped, blackholes = [], [], set()
    for table in ("ft4", "ft6"):
        for line, attrs in bird_blocks(run(["birdc", "-s", socket, "show", "route", "table", table, "all"])):
            if not line.startswith("flow"):
                continue  # another path to the same route: the best (first) one is enforced
            try:
                routes.append(parse_bird_flow(line, attrs))
            except Skip as e:
                skipped.append((line.split("}")[0] + "}", str(e)))
    for table in ("master4", "master6"):
        prefix = None
        for line, attrs in bird_blocks(run(["birdc", "-s", socket, "show", "route", "table", table, "all"])):
            if not line[0].isspace():
                prefix = line.split()[0]
            if prefix and any(a.startswith("BGP.community:") and BLACKHOLE_BIRD in a for a in attrs):
                blackholes.add(str(ipaddress.ip_network(prefix, strict=False)))
    return routes, skipped, blackholes


# ---------------------------------------------------------------------------------------------
# Reading GoBGP


def gobgp_actions(attrs):
    out = []
    for a in attrs:
        if a.get("type") != 16:
            continue
        for c in a.get("value", []):
            t, s = c.get("type", 0), c.get("subtype", 0)
            if (t, s) == (0x80, 6):
                out.append((t, s, struct.pack(">Hf", c.get("as", 0), c.get("rate", 0.0))))
            elif (t, s) == (0x80, 0x0C) and isinstance(c.get("value"), str):
                # traffic-rate-packets is unknown to GoBGP 3: it shows the raw bytes after the type.
                raw = base64.b64decode(c["value"])
                out.append((t, s, raw[1:7]))
            else:
                out.append((t, s, b""))
    return out


def parse_gobgp_flow(name, path, family):
    comps = {}
    for c in path["nlri"]["value"]:
        t, v = c["type"], c["value"]
        if t in (DST, SRC):
            if c.get("offset", 0):
                raise Skip(f"prefix {v['prefix']} with offset {c['offset']}")
            comps[t] = ipaddress.ip_network(v["prefix"], strict=False)
        else:
            terms = []
            for i, item in enumerate(v):
                op = item["op"]
                bits = op & (LT | GT | EQ) if t not in (TCP_FLAGS, FRAGMENT) else op & (NOT | MATCH)
                terms.append((i > 0 and bool(op & AND), bits, int(item["value"])))
            comps[t] = terms
    return Route(name, family, comps, gobgp_actions(path.get("attrs", [])))


def gobgp_view(run, host, port):
    base = ["gobgp", "-u", host, "-p", port, "global", "rib", "-a"]
    routes, skipped, blackholes = [], [], set()
    for family, afi in ((4, "ipv4-flowspec"), (6, "ipv6-flowspec")):
        rib = json.loads(run(base + [afi, "-j"]) or "{}") or {}
        for name, paths in rib.items():
            best = next((p for p in paths if p.get("best")), paths[0] if paths else None)
            if best is None:
                continue
            try:
                routes.append(parse_gobgp_flow(name, best, family))
            except Skip as e:
                skipped.append((name, str(e)))
    for afi in ("ipv4", "ipv6"):
        rib = json.loads(run(base + [afi, "-j"]) or "{}") or {}
        for prefix, paths in rib.items():
            for p in paths:
                if any(BLACKHOLE_GOBGP in a.get("communities", []) for a in p.get("attrs", []) if a.get("type") == 8):
                    blackholes.add(str(ipaddress.ip_network(prefix, strict=False)))
    return routes, skipped, blackholes


# ---------------------------------------------------------------------------------------------
# nftables


def intervals_of(terms, maximum):
    """Numeric terms -> sorted disjoint [lo, hi] intervals (AND binds tighter than OR)."""

    def term(bits, v):
        out = []
        if bits & LT and v > 0:
            out.append((0, v - 1))
        if bits & EQ and v <= maximum:
            out.append((v, v))
        if bits & GT and v < maximum:
            out.append((v + 1, maximum))
        return out

    def intersect(a, b):
        return [(max(x[0], y[0]), min(x[1], y[1])) for x in a for y in b if max(x[0], y[0]) <= min(x[1], y[1])]

    groups = []
    for and_, bits, v in terms:
        if and_ and groups:
            groups[-1] = intersect(groups[-1], term(bits, v))
        else:
            groups.append(term(bits, v))
    merged = []
    for lo, hi in sorted(i for g in groups for i in g):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return merged


def nft_set(intervals):
    items = [f"{lo}" if lo == hi else f"{lo}-{hi}" for lo, hi in intervals]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def bit_dnf(t, family, bit):
    """(set, clear) of one bitmask bit, each as alternatives of conjunctions of nft expressions."""
    if t == TCP_FLAGS:
        return [[f"tcp flags & 0x{bit:x} == 0x{bit:x}"]], [[f"tcp flags & 0x{bit:x} == 0x0"]]
    if family == 4:
        return {
            1: ([["ip frag-off & 0x4000 != 0"]], [["ip frag-off & 0x4000 == 0"]]),
            2: ([["ip frag-off & 0x3fff != 0"]], [["ip frag-off & 0x3fff == 0"]]),
            4: ([["ip frag-off & 0x3fff == 0x2000"]], [["ip frag-off & 0x3fff != 0x2000"]]),
            8: ([["ip frag-off & 0x2000 == 0", "ip frag-off & 0x1fff != 0"]],
                [["ip frag-off & 0x2000 != 0"], ["ip frag-off & 0x1fff == 0"]]),
        }.get(bit) or skip(f"fragment bit 0x{bit:x}")
    return {
        2: ([["exthdr frag exists"]], [["exthdr frag missing"]]),
        4: ([["frag frag-off 0", "frag more-fragments 1"]], None),
        8: ([["frag frag-off != 0", "frag more-fragments 0"]], None),
    }.get(bit) or skip(f"IPv6 fragment bit 0x{bit:x}")


def skip(why):
    raise Skip(why)


def and_dnf(a, b):
    return [x + y for x in a for y in b]


def bitmask_dnf(t, family, terms):
    """A bitmask component -> alternatives (OR) of conjunctions (AND) of nft expressions."""
    out, group = [], None
    for and_, bits, value in terms:
        parts = [b for b in range(32) if value >> b & 1]
        if t == TCP_FLAGS and len(parts) > 1:
            # Whole-mask forms keep a multi-bit TCP term one expression.
            dnf = {MATCH: [[f"tcp flags & 0x{value:x} == 0x{value:x}"]],
                   0: [[f"tcp flags & 0x{value:x} != 0x0"]],
                   NOT | MATCH: [[f"tcp flags & 0x{value:x} != 0x{value:x}"]],
                   NOT: [[f"tcp flags & 0x{value:x} == 0x0"]]}[bits]
        else:
            per_bit = [bit_dnf(t, family, 1 << b) for b in parts]
            want_set = not bits & NOT
            pieces = [s if want_set else c for s, c in per_bit]
            if any(p is None for p in pieces):
                raise Skip("a negated IPv6 first/last-fragment term")
            all_ = bool(bits & MATCH) == want_set  # all set, or none set (negated any)
            dnf = [[]]
            if all_:
                for p in pieces:
                    dnf = and_dnf(dnf, p)
            else:
                dnf = [alt for p in pieces for alt in p]
        if and_ and group is not None:
            group = and_dnf(group, dnf)
        else:
            if group is not None:
                out.extend(group)
            group = dnf
    out.extend(group or [])
    return out


def matches(route):
    """The route's match as alternatives of conjunctions of nft expressions."""
    fam = route.family
    ip = "ip" if fam == 4 else "ip6"
    dnf = [[f"meta nfproto ipv{fam}"]]
    protos = intervals_of(route.comps[PROTO], 255) if PROTO in route.comps else None
    if any(t in route.comps for t in (PORT, DPORT, SPORT)) and TCP_FLAGS not in route.comps:
        # Ports exist in TCP and UDP only (RFC 8955 §4.2.2.4); tcp flags already imply TCP.
        protos = [(6, 6), (17, 17)]
        if PROTO in route.comps:
            wanted = intervals_of(route.comps[PROTO], 255)
            protos = [(p, p) for p in (6, 17) if any(lo <= p <= hi for lo, hi in wanted)]
    if protos is not None:
        if not protos:
            raise Skip("a protocol component that matches nothing (or no TCP/UDP for ports)")
        dnf = and_dnf(dnf, [[f"meta l4proto {nft_set(protos)}"]])
    for t in sorted(route.comps):
        if t == PROTO:
            continue
        v = route.comps[t]
        if t in (DST, SRC):
            dnf = and_dnf(dnf, [[f"{ip} {'daddr' if t == DST else 'saddr'} {v}"]])
            continue
        if t in (TCP_FLAGS, FRAGMENT):
            dnf = and_dnf(dnf, bitmask_dnf(t, fam, v))
            continue
        if t == LABEL and fam == 4:
            raise Skip("a flow label on IPv4")
        iv = intervals_of(v, MAXIMUM[t])
        if not iv:
            raise Skip("a component that matches nothing")
        full = iv == [(0, MAXIMUM[t])]
        if t in (PORT, DPORT, SPORT):
            if full:
                continue
            s = nft_set(iv)
            alts = [[f"th sport {s}"], [f"th dport {s}"]] if t == PORT else [[f"th {'dport' if t == DPORT else 'sport'} {s}"]]
            dnf = and_dnf(dnf, alts)
            continue
        if full:
            continue
        field = {
            ICMP_TYPE: "icmp type" if fam == 4 else "icmpv6 type",
            ICMP_CODE: "icmp code" if fam == 4 else "icmpv6 code",
            LENGTH: f"{ip} length",
            DSCP: f"{ip} dscp",
            LABEL: "ip6 flowlabel",
        }[t]
        dnf = and_dnf(dnf, [[f"{field} {nft_set(iv)}"]])
    if len(dnf) > MAX_RULES_PER_ROUTE:
        raise Skip(f"{len(dnf)} rules for one route")
    return dnf


def verdict(route):
    """(nft statement, needs its own chain, what was ignored) for the route's actions."""
    rate = None
    ignored = []
    for t, s, raw in route.actions:
        if t == 0x80 and s in (0x06, 0x0C) and len(raw) == 6:
            value = struct.unpack(">f", raw[2:6])[0]
            if rate is None:  # RFC 8955 §7.6: the first traffic-rate applies
                rate = (s, value)
        else:
            ignored.append(f"0x{t:02x}{s:02x}")
    if rate is None:
        return "accept", False, ignored
    s, value = rate
    n = int(value)
    if n <= 0:
        return "drop", False, ignored
    return (f"limit rate over {n} bytes/second drop" if s == 0x06 else f"limit rate over {n}/second drop"), True, ignored


def comment_of(name):
    text = name.replace('"', "'")
    if len(text) > 110:
        text = text[:100] + " ~" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return text


def ruleset(routes, counters=None):
    """The table's text for these routes: (nft text without the table header lines, per-route
    notes [(name, note)] for the log)."""
    counters = counters or {}
    chains, rules, notes = [], [], []
    for n, r in enumerate(sorted(routes, key=functools.cmp_to_key(rfc8955_cmp))):
        try:
            alts = matches(r)
        except Skip as e:
            notes.append((r.name, f"skipped: {e}"))
            continue
        stmt, own_chain, ignored = verdict(r)
        if ignored:
            notes.append((r.name, f"actions {', '.join(ignored)} not enforced ({'accepted' if stmt == 'accept' else 'kept ' + stmt})"))
        if own_chain:
            chain = f"rate_{len(chains)}"
            chains.append(f"  chain {chain} {{\n    {stmt}\n    accept\n  }}")
            stmt = f"jump {chain}"
        base = comment_of(r.name)
        for i, alt in enumerate(alts):
            comment = base if len(alts) == 1 else f"{base} [{i + 1}/{len(alts)}]"
            packets, octets = counters.get(comment, (0, 0))
            counter = f"counter packets {packets} bytes {octets}" if packets or octets else "counter"
            rules.append(f"    {' '.join(alt)} {counter} {stmt} comment \"{comment}\"")
    if not rules:
        return "", notes
    text = f"table inet {TABLE} {{\n"
    text += "".join(c + "\n" for c in chains)
    text += "  chain forward {\n    type filter hook forward priority filter; policy accept;\n"
    text += "".join(r + "\n" for r in rules)
    text += "  }\n}\n"
    return text, notes


def without_counters(text):
    return re.sub(r"counter packets \d+ bytes \d+", "counter", text)


# ---------------------------------------------------------------------------------------------
# The loop


def run_cmd(args):
    out = subprocess.run(args, capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args[:3])}...: {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


def current_counters():
    """{comment: (packets, bytes)} of the programmed table (empty when there is none)."""
    out = subprocess.run(["nft", "-j", "list", "table", "inet", TABLE], capture_output=True, text=True)
    if out.returncode != 0:
        return {}
    counters = {}
    for item in json.loads(out.stdout).get("nftables", []):
        rule = item.get("rule")
        if not rule or "comment" not in rule:
            continue
        for e in rule.get("expr", []):
            if "counter" in e:
                counters[rule["comment"]] = (e["counter"]["packets"], e["counter"]["bytes"])
    return counters


def program(text):
    script = f"add table inet {TABLE}\ndelete table inet {TABLE}\n" + text
    out = subprocess.run(["nft", "-f", "-"], input=script, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"nft: {out.stderr.strip()}")


def blackhole(prefix, on):
    verb = "replace" if on else "del"
    subprocess.run(["ip", "route", verb, "blackhole", prefix, "proto", RT_PROTO], capture_output=True)


def cleanup():
    subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True)
    for fam in ("-4", "-6"):
        subprocess.run(["ip", fam, "route", "flush", "proto", RT_PROTO], capture_output=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--bird", metavar="SOCKET")
    src.add_argument("--gobgp", metavar="HOST:PORT")
    src.add_argument("--selftest", action="store_true")
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--max-runtime", type=float, default=None, help="seconds, then clean up and exit")
    p.add_argument("--dump", action="store_true")
    a = p.parse_args()

    if a.selftest:
        import os
        import unittest

        here = os.path.dirname(os.path.abspath(__file__))
        suite = unittest.defaultTestLoader.discover(here, pattern="test_*.py", top_level_dir=here)
        sys.exit(0 if unittest.TextTestRunner(verbosity=1).run(suite).wasSuccessful() else 1)

    if a.bird:
        read = lambda: bird_view(run_cmd, a.bird)  # noqa: E731
        source = f"BIRD {a.bird}"
    else:
        host, _, port = a.gobgp.rpartition(":")
        read = lambda: gobgp_view(run_cmd, host or "127.0.0.1", port)  # noqa: E731
        source = f"GoBGP {a.gobgp}"

    if a.dump:
        routes, skipped, holes = read()
        text, notes = ruleset(routes)
        for name, why in skipped:
            print(f"# skipped: {why}: {name}")
        for name, note in notes:
            print(f"# {note}: {name}")
        for h in sorted(holes):
            print(f"# ip route replace blackhole {h} proto {RT_PROTO}")
        print(text, end="")
        return

    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    signal.signal(signal.SIGINT, lambda *_: stop.append(1))
    cleanup()
    log(f"enforcing what {source} holds, every {a.interval}s")
    start = time.monotonic()
    shown_text, shown_names, shown_skips, holes_now, failing, nft_error = "", set(), {}, set(), None, None
    while not stop and (a.max_runtime is None or time.monotonic() - start < a.max_runtime):
        tick = time.monotonic()
        try:
            routes, skipped, holes = read()
            if failing:
                log(f"{source} answers again")
            failing = None
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
            # The router's CLI is away (restarting): keep enforcing the last view.
            if failing != str(e):
                log(f"cannot read {source} (keeping the last view): {e}")
            failing = str(e)
            time.sleep(a.interval)
            continue
        text, notes = ruleset(routes)
        names = {r.name for r in routes}
        skips = dict(skipped)
        skips.update({n: w[len("skipped: "):] for n, w in notes if w.startswith("skipped: ")})
        if text != without_counters(shown_text) or names != shown_names:
            try:
                if text:
                    text, _ = ruleset(routes, current_counters())
                    program(text)
                else:
                    subprocess.run(["nft", "delete", "table", "inet", TABLE], capture_output=True)
            except RuntimeError as e:
                if nft_error != str(e):
                    log(f"error (keeping the last table): {e}")
                nft_error = str(e)
                time.sleep(a.interval)
                continue
            nft_error = None
            for n in sorted(names - shown_names):
                if n in skips:
                    log(f"skipped: {skips[n]}: {n}")
                else:
                    log(f"added: {n}")
                    for nn, note in notes:
                        if nn == n and not note.startswith("skipped"):
                            log(f"note: {note}: {n}")
            for n in sorted(shown_names - names):
                log(f"removed: {n}")
            shown_text, shown_names = without_counters(text), names
        for n in sorted(set(skips) - set(shown_skips) - names):
            log(f"skipped: {skips[n]}: {n}")
        shown_skips = skips
        for h in sorted(holes - holes_now):
            blackhole(h, True)
            log(f"added: blackhole {h}")
        for h in sorted(holes_now - holes):
            blackhole(h, False)
            log(f"removed: blackhole {h}")
        holes_now = holes
        time.sleep(max(0.0, a.interval - (time.monotonic() - tick)))
    cleanup()
    log("stopped; table and blackhole routes removed")


if __name__ == "__main__":
    main()
