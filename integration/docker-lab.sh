#!/usr/bin/env bash
# The Docker lab's walk-through (integration/docker/README.md) as a test, on a real Docker engine: the
# lab of docker-compose.yml comes up, and this checks, each with a bounded poll on the routers' own CLIs:
#   1. both BGP sessions are up (`birdc show protocols`, `gobgp neighbor`) and the victim's probe reports;
#   2. a bounded UDP flood from source port 123 (hping3 in the attacker container) reaches the victim
#      through bird, the edge router on the attacker's route;
#   3. the amplification policy's rule (`dst 192.0.2.10/32 proto udp sport 123 then discard`) is in BIRD's
#      ft4 and in GoBGP's ipv4-flowspec RIB;
#   4. it is enforced: the enforcer's nftables counter in the bird container rises and the victim's edge
#      interface stops receiving; with the attacker's route moved to gobgp, the same there;
#   5. after the flood stops, the rule leaves both routers (cooldown, then the policy's withdraw_after),
#      and both enforcers drop it from nftables.
#
# Run as root on Debian 12 (CI runs it from integration/test-all.sh). What it needs and does:
# - apt-get installs docker.io, debootstrap and docker-compose when missing.
# - A Docker daemon of its own, by PID, with its own socket and directories in a temporary directory,
#   never the system's: first in the host's network namespace with no networking of its own
#   (--bridge=none --iptables=false --ip-forward=false) to build the images, whose apt-get needs the host's
#   network (`docker build --network host`); then, on the same directories, in a network namespace of its
#   own to run the lab. The lab's bridges, addresses and routes therefore never touch the host, whose own
#   addresses may well overlap the lab's documentation ranges. The script checks this at the end.
# - No registry is reachable: the base image (debian:bookworm-slim) is made with debootstrap from the
#   Debian mirror apt uses and kept in target/docker-base.tar for the next run (delete it to refresh).
# - Cargo cannot fetch crates inside a build container here, so deflect's image is the runtime stage of the
#   repository's Dockerfile (taken from it as it is) with a binary built on the host. The debug binary,
#   stripped of its debug info: CI's `cargo test` compiles the whole dependency tree in the dev profile
#   anyway, so this costs one link, where `cargo build --release` would compile every crate a second time,
#   optimised, on CI's two cores. The lab's rates (a few thousand packets a second) are within a debug
#   probe's reach. DEFLECT_BIN=PATH uses that binary instead (e.g. target/release/deflect).
# - The routers' images carry the enforcer (integration/enforcer/enforcer.py) beside the daemon.
# Always tears down, also on failure or Ctrl-C: `docker-compose down -v`, the daemon by its PID, the
# network namespace, the temporary directory. Prints each check; on failure, the logs that explain it, and
# exits non-zero. Takes about 10 minutes on two cores: 5 to 6 building the images (the vfs storage
# driver copies every layer whole; debootstrap adds one more without target/docker-base.tar), 2 the
# policy's hold-down before the withdrawal, 1 the teardown.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

started=$SECONDS
# The script's own stdout and stderr, for the teardown: a trap runs with the redirections of the command
# it interrupted (a build's log, /dev/null in a poll).
exec 3>&1 4>&2
say() { printf '%4ss  %s\n' "$((SECONDS - started))" "$*"; }
passed=0
ok() {
  passed=$((passed + 1))
  say "ok    $*"
}
die() {
  say "FAIL  $*" >&2
  exit 1
}

if [ "$(id -u)" != 0 ]; then
  echo "docker-lab: needs root (a Docker daemon of its own, network namespaces, apt-get)" >&2
  exit 2
fi

# --- tools --------------------------------------------------------------------------------------------------
need=()
command -v dockerd >/dev/null && [ -x /usr/bin/docker ] || need+=(docker.io)
command -v debootstrap >/dev/null || need+=(debootstrap)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v ip >/dev/null || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  say "installing ${need[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Debian's docker.io puts its client in /usr/bin; another `docker` earlier on PATH may not be it.
docker=/usr/bin/docker

# --- the binary ---------------------------------------------------------------------------------------------
if [ -n "${DEFLECT_BIN:-}" ]; then
  bin="$DEFLECT_BIN"
else
  say "cargo build --locked -p deflect (debug profile, see the header)"
  cargo build --locked -q -p deflect
  bin=target/debug/deflect
fi
[ -x "$bin" ] || die "no deflect binary at $bin"
[ -f integration/enforcer/enforcer.py ] || die "integration/enforcer/enforcer.py is missing: the routers' images need it"

# --- the daemon's directories, and the teardown -------------------------------------------------------------
work="$(mktemp -d /tmp/deflect-docker-lab.XXXXXX)"
netns="deflect-docker-lab-${work##*.}"
project="deflectlab"
export DOCKER_HOST="unix://$work/docker.sock"
export COMPOSE_PROJECT_NAME="$project"
# Random tokens for this run; exported, they take precedence over a .env a user may have at the root.
DEFLECT_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
DEFLECT_NODE_TOKEN="$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export DEFLECT_TOKEN DEFLECT_NODE_TOKEN
compose=(timeout 300 docker-compose -f "$repo/docker-compose.yml" --project-directory "$repo")
daemon_pid=""
lab_up=0
flooding=0

# What a daemon could change on the host: forwarding, bridges and their routes, firewall rules, mounts.
host_state() {
  sysctl -n net.ipv4.ip_forward net.ipv4.conf.all.forwarding net.ipv6.conf.all.forwarding 2>/dev/null
  ip -o link show | grep -E ': (docker0|br-[0-9a-f]{12}|veth[0-9a-f]{7})[:@]' | cut -d: -f2 || true
  ip -o addr show | grep -E '(docker0|br-[0-9a-f]{12})' || true
  ip route show table all | grep -E 'docker0|br-[0-9a-f]{12}' || true
  { iptables-save 2>/dev/null; nft list ruleset 2>/dev/null; } | grep -i docker || true
  grep -E 'docker|deflect-docker-lab' /proc/self/mountinfo | cut -d' ' -f5 || true
}
host_before="$(host_state)"

# x [-d] SERVICE COMMAND...: a command in a service's container (docker exec: much quicker than
# docker-compose exec, which polls call often; the names are docker-compose 1.29's).
x() {
  local opts=()
  if [ "$1" = -d ]; then opts=(-d); shift; fi
  local service=$1
  shift
  timeout 60 "$docker" exec "${opts[@]}" "${project}_${service}_1" "$@"
}

stop_daemon() {
  [ -n "$daemon_pid" ] || return 0
  kill -TERM "$daemon_pid" 2>/dev/null || true
  for _ in $(seq 1 60); do
    kill -0 "$daemon_pid" 2>/dev/null || break
    sleep 0.5
  done
  if kill -0 "$daemon_pid" 2>/dev/null; then
    say "dockerd $daemon_pid did not stop in 30 s: SIGKILL"
    kill -KILL "$daemon_pid" 2>/dev/null || true
  fi
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=""
}

teardown() {
  status=$?
  set +e
  trap - EXIT INT TERM
  exec 1>&3 2>&4
  stop_flood
  if [ "$status" != 0 ] && [ "$lab_up" = 1 ]; then
    echo "---- docker-compose ps" >&2
    "${compose[@]}" ps >&2
    echo "---- docker-compose logs (last 60 lines of each)" >&2
    "${compose[@]}" logs --no-color --tail=60 >&2
  fi
  if [ "$status" != 0 ] && [ -f "$work/dockerd.log" ]; then
    echo "---- dockerd.log (last 30 lines)" >&2
    tail -n 30 "$work/dockerd.log" >&2
  fi
  if [ "$lab_up" = 1 ]; then
    say "teardown: docker-compose down -v"
    "${compose[@]}" down -v --timeout 10 >"$work/down.log" 2>&1 || cat "$work/down.log" >&2
  fi
  stop_daemon
  ip netns del "$netns" 2>/dev/null
  # dockerd's mounts lived in its own mount namespace; anything under $work here would be a leak.
  grep -F " $work/" /proc/self/mountinfo | cut -d' ' -f5 | sort -r | xargs -r umount -l
  rm -rf "$work"
  # Nothing of this run may be left: processes, mounts, host network changes.
  left=""
  if pgrep -f "$work" >/dev/null; then left+=" processes:$(pgrep -f "$work" | tr '\n' ' ')"; fi
  if grep -q "$work" /proc/self/mountinfo; then left+=" mounts"; fi
  if ip netns list | grep -q "^$netns\b"; then left+=" netns"; fi
  if [ -e "$work" ]; then left+=" $work"; fi
  host_after="$(host_state)"
  if [ "$host_after" != "$host_before" ]; then
    left+=" host-network-changes"
    diff <(echo "$host_before") <(echo "$host_after") >&2
  fi
  if [ -n "$left" ]; then
    say "FAIL  teardown left:$left" >&2
    [ "$status" != 0 ] || status=1
  else
    ok "teardown: no daemon, namespace, mount or temporary directory left; host network unchanged"
  fi
  # The closing line CI reads: checks passed, and the one that failed (a check stops the run).
  if [ "$status" = 0 ]; then
    echo "docker-lab: $passed passed, 0 failed ($((SECONDS - started)) s)"
  else
    echo "docker-lab: $passed passed, 1 failed ($((SECONDS - started)) s)"
  fi
  exit "$status"
}
# The flood, if one is running: stopped inside the attacker's container (a client's end does not end it).
stop_flood() {
  [ "$flooding" = 1 ] || return 0
  x attacker sh -c 'kill $(cat /tmp/flood.pid)' >/dev/null 2>&1 || true
  flooding=0
}
trap teardown EXIT
trap 'say "interrupted (SIGINT)" >&4; exit 130' INT
trap 'say "interrupted (SIGTERM)" >&4; exit 143' TERM

# interruptible COMMAND...: runs COMMAND and waits for it in a way a signal interrupts (bash runs a trap
# only once a foreground command ends, and a build takes minutes); the teardown then stops it.
interruptible() {
  "$@" &
  wait "$!"
}

# start_daemon [nsenter --net=NETNS]: dockerd with this run's directories; no bridge, no firewall, no
# forwarding of its own; in a mount namespace of its own (the host's mounts, /sys/fs/cgroup included,
# copied, but none of dockerd's own mounts seen outside, and all gone with it). Not `ip netns exec`:
# that remounts /sys, and dockerd then finds no cgroup hierarchy.
start_daemon() {
  "$@" unshare --mount --propagation private dockerd -H "$DOCKER_HOST" --data-root "$work/root" --exec-root "$work/exec" \
    --pidfile "$work/docker.pid" --storage-driver=vfs --bridge=none --iptables=false --ip6tables=false \
    --ip-forward=false --ip-masq=false >>"$work/dockerd.log" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 1 120); do
    if "$docker" version >/dev/null 2>&1; then return 0; fi
    kill -0 "$daemon_pid" 2>/dev/null || die "dockerd exited at start (see dockerd.log below)"
    sleep 0.5
  done
  die "dockerd did not answer within 60 s"
}

# --- images -------------------------------------------------------------------------------------------------
say "dockerd (build phase: host network, no bridge) in $work"
start_daemon

base=target/docker-base.tar
if [ ! -s "$base" ]; then
  mirror="${DEBIAN_MIRROR:-}"
  if [ -z "$mirror" ]; then
    mirror="$(grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}' | grep -v security | head -n 1 || true)"
  fi
  if [ -z "$mirror" ]; then
    mirror="$(grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}' | grep -v security | head -n 1 || true)"
  fi
  mirror="${mirror:-http://deb.debian.org/debian}"
  say "base image: debootstrap --variant=minbase bookworm from $mirror (cached in $base)"
  if ! interruptible debootstrap --variant=minbase bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1; then
    tail -n 30 "$work/debootstrap.log" >&2
    die "debootstrap failed"
  fi
  mkdir -p target
  tar -C "$work/rootfs" --numeric-owner -cf "$base.part" .
  mv "$base.part" "$base"
  rm -rf "$work/rootfs"
fi
"$docker" import "$base" debian:bookworm-slim >/dev/null
ok "base image debian:bookworm-slim from $base"

build() { # build TAG CONTEXT [docker build options]
  local tag=$1 ctx=$2
  shift 2
  if ! interruptible "$docker" build --network host -q -t "$tag" "$@" "$ctx" >"$work/build-$tag.log" 2>&1; then
    tail -n 40 "$work/build-$tag.log" >&2
    die "docker build $tag"
  fi
  ok "image $tag"
}

# deflect:lab: the repository's Dockerfile from its runtime stage on, after a build stage that only holds
# the host's binary. The context holds just what the runtime stage copies.
ctx="$work/deflect-image"
mkdir -p "$ctx/examples"
strip --strip-debug -o "$ctx/deflect" "$bin"
cp -r policies "$ctx/"
cp examples/deflect.yaml "$ctx/examples/"
{
  echo "FROM scratch AS build"
  echo "COPY deflect /out/deflect"
  sed -n '/^FROM debian:bookworm-slim AS runtime/,$p' Dockerfile
} >"$ctx/Dockerfile"
grep -q '^FROM debian:bookworm-slim AS runtime' "$ctx/Dockerfile" ||
  die "Dockerfile: no 'FROM debian:bookworm-slim AS runtime' stage to build from"
build deflect:lab "$ctx"
build deflect-lab-bird integration -f integration/docker/bird/Dockerfile
build deflect-lab-gobgp integration -f integration/docker/gobgp/Dockerfile
build deflect-lab-attacker integration/docker/attacker

stop_daemon

# --- the lab ------------------------------------------------------------------------------------------------
ip netns add "$netns"
ip -n "$netns" link set lo up
say "dockerd (run phase: network namespace $netns)"
start_daemon nsenter --net="/run/netns/$netns"

lab_up=1
interruptible "${compose[@]}" up -d --no-build >"$work/up.log" 2>&1 || {
  cat "$work/up.log" >&2
  die "docker-compose up -d --no-build"
}
ok "docker-compose up -d --no-build: $("${compose[@]}" ps --services | tr '\n' ' ')"


# poll SECONDS DESCRIPTION COMMAND...: until COMMAND succeeds, every half second.
poll() {
  local limit=$1 what=$2
  shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || die "$what: not within $limit s"
    sleep 0.5
  done
}

bird_up() { x bird birdc show protocols deflect | grep -q Established; }
gobgp_up() { x gobgp gobgp neighbor 198.51.100.10 | grep -qi 'BGP state = established'; }
poll 120 "BIRD's session with deflect established" bird_up
ok "BIRD: $(x bird birdc show protocols deflect | grep deflect)"
poll 60 "GoBGP's session with deflect established" gobgp_up
ok "GoBGP: $(x gobgp gobgp neighbor | grep 198.51.100.10)"

victim_reports() { x deflect deflect nodes | grep -q victim; }
poll 60 "the victim's probe reporting to deflect" victim_reports
ok "the victim's probe reports: $(x deflect deflect nodes | grep victim | head -n 1)"

# The victim's edge interface (192.0.2.10): its packet counter, read from sysfs in the victim's container.
victim_if="$(x victim ip -o -4 addr show to 192.0.2.10/32 | awk '{print $2}')"
[ -n "$victim_if" ] || die "no interface with 192.0.2.10 in the victim"
victim_rx() { x victim cat "/sys/class/net/$victim_if/statistics/rx_packets" | tr -d '\r'; }
# rx_rise SECONDS: how many packets the victim's edge interface received in that time.
rx_rise() {
  local a b
  a="$(victim_rx)"
  sleep "$1"
  b="$(victim_rx)"
  echo $((b - a))
}

# The rule, in each router's own words (the same strings as integration/lab.rs).
bird_rule='flow4 { dst 192.0.2.10/32; proto 17; sport 123; }'
gobgp_rule='[destination: 192.0.2.10/32][protocol: ==udp][source-port: ==123]'
bird_has_rule() { x bird birdc show route table ft4 all | grep -qF "$bird_rule"; }
gobgp_has_rule() { x gobgp gobgp global rib -a ipv4-flowspec | grep -F "$gobgp_rule" | grep -q discard; }
bird_rule_gone() { ! x bird birdc show route table ft4 all | grep -qF 'dst 192.0.2.10/32'; }
gobgp_rule_gone() { ! x gobgp gobgp global rib -a ipv4-flowspec | grep -qF '192.0.2.10/32'; }

# The enforcer's drops in a router: the packet counts of the counters in its table, added up.
enforcer_drops() {
  x "$1" nft list table inet deflect_enforcer 2>/dev/null |
    awk '/counter packets/ { for (i = 1; i < NF; i++) if ($i == "packets") n += $(i + 1) } END { print n + 0 }'
}
enforcer_rule_gone() { ! x "$1" nft list table inet deflect_enforcer 2>/dev/null | grep -q '192.0.2.10'; }

# --- the flood ------------------------------------------------------------------------------------------------
# NTP-like reflection: UDP from port 123, 400 bytes. hping3's -i u100 (10 000 a second asked) gave only
# 5 000 a second here, just the lab's udp-amp floor, and detection then took a minute: -i u20 asks for
# 50 000 and gets 10 000 to 20 000. Bounded by its count and, inside the container, by `timeout` (which
# also takes our SIGTERM to stop it early).
flood_count=3000000
flood_seconds=240
flood_args=(-n -q --udp -s 123 -k -p 4444 -d 400 -i u20 -c "$flood_count" 192.0.2.10)
rx_before="$(victim_rx)"
x -d attacker sh -c 'echo $$ >/tmp/flood.pid; exec timeout "$0" hping3 "$@"' "$flood_seconds" "${flood_args[@]}"
flooding=1
flood_started=$SECONDS
say "flood: hping3 ${flood_args[*]} (timeout $flood_seconds s), via bird"

# Through bird: the victim's edge interface counts the flood (from before it began: detection can be
# quick enough to stop it within two seconds). Its rate: the attacker's own interface, which a drop in a
# router does not hide.
flood_reached() { [ $(($(victim_rx) - rx_before)) -gt 1000 ]; }
poll 10 "the flood reaching the victim through bird" flood_reached
attacker_tx() { x attacker cat /sys/class/net/eth0/statistics/tx_packets | tr -d '\r'; }
a="$(attacker_tx)"
sleep 1
rate=$(($(attacker_tx) - a))
ok "the flood reaches the victim through bird; the attacker sends $rate packets a second"
# deflect.yaml's udp-amp floor is 5 000 packets a second.
[ "$rate" -gt 7500 ] || say "note  that is little above the lab's detection floor (5 000 a second): a slow machine?"

poll 120 "the rule in BIRD's ft4" bird_has_rule
ok "BIRD, $((SECONDS - flood_started)) s into the flood: $(x bird birdc show route table ft4 all | grep -F "$bird_rule")"
poll 30 "the rule in GoBGP's ipv4-flowspec RIB" gobgp_has_rule
ok "GoBGP: $(x gobgp gobgp global rib -a ipv4-flowspec | grep -F "$gobgp_rule" | tr -s ' ')"

# Enforced in bird: its enforcer's counter rises, the victim hears (almost) nothing more.
bird_drops_rise() { [ "$(enforcer_drops bird)" -gt 1000 ]; }
poll 30 "the enforcer in bird dropping the flood" bird_drops_rise
rise="$(rx_rise 3)"
[ "$rise" -lt 100 ] || die "bird's enforcer counts drops but the victim still received $rise packets in 3 s"
ok "enforced by bird: $(enforcer_drops bird) packets dropped by its enforcer, the victim received $rise in 3 s"

# The same flood through gobgp: move the attacker's route, while the rule is still in place.
x attacker ip route replace 192.0.2.0/24 via 203.0.113.3
say "flood: the attacker's route to 192.0.2.0/24 now via gobgp (203.0.113.3)"
gobgp_drops_rise() { [ "$(enforcer_drops gobgp)" -gt 1000 ]; }
poll 30 "the enforcer in gobgp dropping the flood" gobgp_drops_rise
rise="$(rx_rise 3)"
[ "$rise" -lt 100 ] || die "gobgp's enforcer counts drops but the victim still received $rise packets in 3 s"
ok "enforced by gobgp: $(enforcer_drops gobgp) packets dropped by its enforcer, the victim received $rise in 3 s"

stop_flood
say "flood stopped"
x deflect deflect mitigation list || true

# --- the withdrawal --------------------------------------------------------------------------------------------
# The victim stopped seeing the flood when the routers began to drop it; deflect ends the attack after
# the lab's cooldown (20 s) and withdraws after the amplification policy's withdraw_after (2 min).
poll 240 "the rule withdrawn from BIRD" bird_rule_gone
ok "withdrawn from BIRD's ft4"
poll 30 "the rule withdrawn from GoBGP" gobgp_rule_gone
ok "withdrawn from GoBGP's ipv4-flowspec RIB"
poll 30 "bird's enforcer dropping the rule" enforcer_rule_gone bird
poll 30 "gobgp's enforcer dropping the rule" enforcer_rule_gone gobgp
ok "both enforcers dropped the rule from nftables"

say "all checks passed; tearing down"
