#!/usr/bin/env bash
# Real NetFlow v5 / v9 / IPFIX export captures from pmacct, for the deflect-netflow decoder's tests.
#
#   sudo ./integration/netflow/capture.sh [OUTDIR]        # default OUTDIR: netflow/tests/data
#
# What it does (as root; needs pmacct, tshark/dumpcap, python3, iproute2):
#   namespaces  dnf-tx (sender) and dnf-rx (probe), joined by veth dnf-tx0 <-> dnf-rx0
#     dnf-tx0  198.51.100.1/24  2001:db8:1::1/64    routes 203.0.113.0/24 and 2001:db8:2::/64 via dnf-rx
#     dnf-rx0  198.51.100.2/24  2001:db8:1::2/64    lo: 127.0.0.1, 203.0.113.10/32, 2001:db8:2::10/128
#   per capture: a UDP sink on 127.0.0.1:2055 in dnf-rx, dumpcap on dnf-rx's lo (udp port 2055),
#   pmacctd on dnf-rx0 with the nfprobe plugin exporting to 127.0.0.1:2055, then traffic.py in dnf-tx
#   (3,000 UDP datagrams from 8 IPv4 + 2 IPv6 source ports to ports 53/123/443/11211, 40 TCP SYNs to a
#   closed port answered by RSTs, 30 ICMP + 30 ICMPv6 echoes), a wait for the 1 s timeouts to expire
#   everything, then pmacctd, dumpcap and the sink are stopped by PID. Namespaces are removed at exit.
#   Each capture is turned into NAME.expected.json by tshark-expected.py (tshark's own decode).
#
# pmacctd configuration (pmacct 1.7.7, Debian 12), common part:
#     daemonize: false
#     pcap_interface: dnf-rx0
#     pcap_ifindex: sys
#     plugins: nfprobe
#     nfprobe_receiver: 127.0.0.1:2055
#     nfprobe_source_ip: 127.0.0.1
#     nfprobe_timeouts: tcp=1:tcp.rst=1:tcp.fin=1:udp=1:icmp=1:general=1:maxlife=1:expint=1
# and per capture:
#     pmacct-v5              nfprobe_version: 5    nfprobe_engine: 1:7
#     pmacct-v5-sampled      nfprobe_version: 5    nfprobe_engine: 1:7 sampling_rate: 10
#     pmacct-v9              nfprobe_version: 9    nfprobe_engine: 7
#     pmacct-ipfix           nfprobe_version: 10   nfprobe_engine: 7
#     pmacct-v9-sampled      nfprobe_version: 9    nfprobe_engine: 7   sampling_rate: 10
#     pmacct-ipfix-sampled   nfprobe_version: 10   nfprobe_engine: 7   sampling_rate: 10
# (nfprobe_timeouts are seconds; maxlife is the active timeout, expint how often expiry is checked.)
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
OUT=${1:-$HERE/../../netflow/tests/data}
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
WORK=$(mktemp -d /tmp/dnf-capture.XXXXXX)
TX=dnf-tx RX=dnf-rx PORT=2055
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do [ -n "$p" ] && kill "$p" 2>/dev/null || true; done
  ip netns del $TX 2>/dev/null || true
  ip netns del $RX 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

ip netns add $TX; ip netns add $RX
ip link add dnf-tx0 netns $TX type veth peer name dnf-rx0 netns $RX
ip -n $TX link set lo up; ip -n $RX link set lo up
ip -n $TX addr add 198.51.100.1/24 dev dnf-tx0
ip -n $TX addr add 2001:db8:1::1/64 dev dnf-tx0 nodad
ip -n $RX addr add 198.51.100.2/24 dev dnf-rx0
ip -n $RX addr add 2001:db8:1::2/64 dev dnf-rx0 nodad
ip -n $RX addr add 203.0.113.10/32 dev lo
ip -n $RX addr add 2001:db8:2::10/128 dev lo
ip -n $TX link set dnf-tx0 up; ip -n $RX link set dnf-rx0 up
ip -n $TX route add 203.0.113.0/24 via 198.51.100.2
ip -n $TX -6 route add 2001:db8:2::/64 via 2001:db8:1::2

# wait (bounded) until a condition holds
wait_for() { local n=$1; shift; for _ in $(seq "$n"); do "$@" && return 0; sleep 0.1; done; return 1; }

# stop a process by PID and wait (bounded) for it to go
stop_pid() {
  local pid=$1 sig=${2:-TERM}
  kill -"$sig" "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

capture() {
  local name=$1; shift
  local conf=$WORK/$name.conf pcap=$WORK/$name.pcap
  {
    echo "daemonize: false"
    echo "pcap_interface: dnf-rx0"
    echo "pcap_ifindex: sys"
    echo "plugins: nfprobe"
    echo "nfprobe_receiver: 127.0.0.1:$PORT"
    echo "nfprobe_source_ip: 127.0.0.1"
    echo "nfprobe_timeouts: tcp=1:tcp.rst=1:tcp.fin=1:udp=1:icmp=1:general=1:maxlife=1:expint=1"
    echo "logfile: $WORK/$name.log"
    for kv in "$@"; do echo "$kv"; done
  } > "$conf"

  # the collector end: a sink so the exporter gets no ICMP port unreachable (bounded to 60 s)
  ip netns exec $RX timeout 60 python3 -c "
import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(('127.0.0.1', $PORT))
while True: s.recv(65535)" &
  local sink=$!; PIDS+=("$sink")
  ip netns exec $RX dumpcap -q -P -i lo -f "udp dst port $PORT" -a duration:60 -w "$pcap" 2>"$WORK/$name.dumpcap" &
  local cap=$!; PIDS+=("$cap")
  wait_for 50 grep -q "Capturing on" "$WORK/$name.dumpcap" || { echo "dumpcap did not start"; cat "$WORK/$name.dumpcap"; exit 1; }

  ip netns exec $RX pmacctd -f "$conf" >"$WORK/$name.out" 2>&1 &
  local pm=$!; PIDS+=("$pm")
  wait_for 50 grep -q "Exporting flows to" "$WORK/$name.log" 2>/dev/null || { echo "pmacctd did not start"; cat "$WORK/$name.out"; exit 1; }
  sleep 0.5                                # the core opens the capture after the plugin is up

  ip netns exec $TX timeout 30 python3 "$HERE/traffic.py" 203.0.113.10 2001:db8:2::10 3000
  sleep 4                                  # every flow idles past its 1 s timeout; expiry runs each second

  # pmacctd forks one process per plugin; stop the children it made, then the core, by PID
  local kids; kids=$(cat /proc/"$pm"/task/*/children 2>/dev/null || true)
  stop_pid "$pm" INT
  for k in $kids; do stop_pid "$k"; done
  sleep 0.5
  stop_pid "$cap"; stop_pid "$sink"
  cp "$pcap" "$OUT/$name.pcap"; chmod 644 "$OUT/$name.pcap"
  python3 "$HERE/tshark-expected.py" "$OUT/$name.pcap" $PORT > "$OUT/$name.expected.json"
  printf '%-22s %6d bytes, %s datagrams\n' "$name.pcap" "$(stat -c %s "$OUT/$name.pcap")" \
    "$(tshark -r "$OUT/$name.pcap" 2>/dev/null | wc -l)"
  grep -iE "warn|error" "$WORK/$name.log" | grep -v "connection lost to\|no more plugins active" | sed "s/^/  pmacctd: /" || true
}

capture pmacct-v5            "nfprobe_version: 5"  "nfprobe_engine: 1:7"
capture pmacct-v5-sampled    "nfprobe_version: 5"  "nfprobe_engine: 1:7" "sampling_rate: 10"
capture pmacct-v9            "nfprobe_version: 9"  "nfprobe_engine: 7"
capture pmacct-ipfix         "nfprobe_version: 10" "nfprobe_engine: 7"
capture pmacct-v9-sampled    "nfprobe_version: 9"  "nfprobe_engine: 7" "sampling_rate: 10"
capture pmacct-ipfix-sampled "nfprobe_version: 10" "nfprobe_engine: 7" "sampling_rate: 10"
