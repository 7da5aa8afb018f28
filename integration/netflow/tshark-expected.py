#!/usr/bin/env python3
"""tshark's decode of a NetFlow/IPFIX capture, reduced to a compact JSON a Rust test can compare with.

    tshark-expected.py CAPTURE.pcap UDP_PORT > CAPTURE.expected.json

One entry per datagram (pcap frame order): the header, the templates and options templates it defines
(field type, length and enterprise number, in wire order), its flow records and its options records.
Values are tshark 4.0's reading (`tshark -d udp.port==PORT,cflow -T json --no-duplicate-keys`):
  - addresses as text, numbers as integers, tos/tcp_flags as integers;
  - v9/IPFIX absolute times (IEs 152/153) as Unix milliseconds (start_ms, end_ms);
  - v5 times (First/Last, relative to the exporter's uptime) as uptime milliseconds (first_uptime_ms,
    last_uptime_ms), next to the header's sys_uptime_ms, unix_secs and unix_nsecs;
  - records of a template tshark did not know (data before its template) are counted in
    "undecoded_flowsets", not guessed.
"""
import calendar, json, re, subprocess, sys, time
from decimal import Decimal

pcap, port = sys.argv[1], sys.argv[2]
raw = subprocess.run(["tshark", "-r", pcap, "-d", f"udp.port=={port},cflow", "-T", "json",
                      "--no-duplicate-keys", "-J", "frame udp cflow"],
                     capture_output=True, text=True, check=True).stdout
version = subprocess.run(["tshark", "-v"], capture_output=True, text=True).stdout.splitlines()[0]

def abs_ms(s):
    # "Dec  7, 2026 07:35:35.070000000 UTC" -> Unix milliseconds
    m = re.match(r"(\w+)\s+(\d+), (\d+) (\d+):(\d+):(\d+)\.(\d+) UTC", s)
    mon, day, year, hh, mm, ss, frac = m.groups()
    t = time.strptime(f"{mon} {day} {year} {hh}:{mm}:{ss}", "%b %d %Y %H:%M:%S")
    return calendar.timegm(t) * 1000 + int(frac[:3].ljust(3, "0"))

def secs_ms(s):
    return int(Decimal(s) * 1000)

def num(v):
    if isinstance(v, list):
        return [num(x) for x in v]
    return int(v, 16) if v.startswith("0x") else int(v)

RECORD_FIELDS = {   # tshark field -> our key
    "cflow.srcaddr": "src", "cflow.srcaddr_v6": "src", "cflow.srcaddrv6": "src", "cflow.dstaddr": "dst", "cflow.dstaddr_v6": "dst", "cflow.dstaddrv6": "dst",
    "cflow.protocol": "proto", "cflow.srcport": "src_port", "cflow.dstport": "dst_port",
    "cflow.packets": "packets", "cflow.octets": "octets", "cflow.packets64": "packets", "cflow.octets64": "octets",
    "cflow.tos": "tos", "cflow.tcpflags": "tcp_flags", "cflow.inputint": "input_if", "cflow.outputint": "output_if",
    "cflow.direction": "direction", "cflow.ip_version": "ip_version", "cflow.sampler_id": "sampler_id",
    "cflow.nexthop": "next_hop", "cflow.srcas": "src_as", "cflow.dstas": "dst_as",
    "cflow.srcmask": "src_mask", "cflow.dstmask": "dst_mask",
    # options records
    "cflow.sampler_mode": "sampler_mode", "cflow.sampler_random_interval": "sampler_random_interval",
    "cflow.scope_system": "scope_system", "cflow.flow_exporter": "scope_exporting_process_id",
    "cflow.exporter_addr": "exporter_ipv4", "cflow.exporter_addr_v6": "exporter_ipv6",
    "cflow.sampling_interval": "sampling_interval", "cflow.sampling_algorithm": "sampling_algorithm",
}
TEXT = {"src", "dst", "next_hop", "exporter_ipv4", "exporter_ipv6", "scope_system"}

def record(flow):
    r = {}
    for k, v in flow.items():
        if k == "cflow.timedelta_tree":
            if "cflow.abstimestart" in v:
                r["start_ms"] = abs_ms(v["cflow.abstimestart"]); r["end_ms"] = abs_ms(v["cflow.abstimeend"])
            else:
                r["first_uptime_ms"] = secs_ms(v["cflow.timestart"]); r["last_uptime_ms"] = secs_ms(v["cflow.timeend"])
        elif k in RECORD_FIELDS:
            key = RECORD_FIELDS[k]
            r[key] = v if key in TEXT else num(v)
        elif k.startswith("cflow.") and not k.endswith("_tree") and k not in ("cflow.timedelta", "cflow.padding"):
            r.setdefault("other", {})[k[6:]] = v
    return r

def template_fields(t):
    out = []
    for k, f in t.items():
        if not k.startswith("Field ("):
            continue
        ftype = f.get("cflow.template_field_type") or f.get("cflow.template_ipfix_field_type") \
            or f.get("cflow.scope_field_type")
        ent = {"type": int(ftype), "len": int(f["cflow.template_field_length"])}
        if f.get("cflow.template_ipfix_pen_provided") == "1":
            ent["pen"] = int(f["cflow.template_ipfix_field_pen"])
        if "[Scope]" in k:
            ent["scope"] = True
        out.append(ent)
    return out

datagrams = []
for pkt in json.loads(raw):
    L = pkt["_source"]["layers"]
    c = L["cflow"]
    d = {"frame": int(L["frame"]["frame.number"]), "udp_src_port": int(L["udp"]["udp.srcport"]),
         "version": int(c["cflow.version"])}
    for k, key in (("cflow.count", "count"), ("cflow.len", "length"), ("cflow.sequence", "sequence"),
                   ("cflow.source_id", "source_id"), ("cflow.od_id", "observation_domain_id"),
                   ("cflow.engine_type", "engine_type"), ("cflow.engine_id", "engine_id"),
                   ("cflow.samplingmode", "sampling_mode"), ("cflow.samplerate", "sampling_interval")):
        if k in c:
            d[key] = int(c[k])
    if "cflow.sysuptime" in c:
        d["sys_uptime_ms"] = secs_ms(c["cflow.sysuptime"])
    ts = c.get("cflow.timestamp_tree", {})
    for k, key in (("cflow.unix_secs", "unix_secs"), ("cflow.unix_nsecs", "unix_nsecs"), ("cflow.exporttime", "export_time")):
        if k in ts:
            d[key] = int(ts[k])
    d["templates"], d["options_templates"], d["records"], d["options"] = [], [], [], []
    d["undecoded_flowsets"] = 0
    for k, fs in c.items():
        if k.startswith("pdu "):                       # v5 record
            d["records"].append(record(fs))
            continue
        if not (k.startswith("FlowSet ") or k.startswith("Set ")):
            continue
        fsid = int(fs["cflow.flowset_id"])
        for tk, t in fs.items():
            if tk.startswith("Template (Id"):
                d["templates"].append({"id": int(t["cflow.template_id"]), "fields": template_fields(t)})
            elif tk.startswith("Options Template (Id"):
                d["options_templates"].append({"id": int(t["cflow.template_id"]), "fields": template_fields(t)})
        if fsid >= 256:
            flows = [v for fk, v in fs.items() if fk.startswith("Flow ")]
            if not flows:
                d["undecoded_flowsets"] += 1
            opts = fsid in {t["id"] for dd in datagrams + [d] for t in dd["options_templates"]}
            for f in flows:
                r = record(f); r["template"] = fsid
                (d["options"] if opts else d["records"]).append(r)
    if not d["undecoded_flowsets"]:
        del d["undecoded_flowsets"]
    datagrams.append(d)

json.dump({"decoded_by": version, "capture": pcap.rsplit("/", 1)[-1], "udp_port": int(port),
           "datagrams": datagrams}, sys.stdout, separators=(",", ":"))
sys.stdout.write("\n")
