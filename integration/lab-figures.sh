#!/usr/bin/env bash
# The lab's figures, as the README reports them (as root; bird2, gobgpd, iproute2, nftables, python3 installed):
#   latency from a flood's first packet to the rule in BIRD and GoBGP, 20 attacks at probe intervals of
#   1 s and 100 ms (cargo bench --bench lab, release build), each fault test's figure (the tests
#   in integration/lab.rs assert; their figures are the lines starting with "figure:"), and, with the
#   routers in the path and enforcing, the shipped policies and timers: sustained floods, a pulse wave,
#   an RTBH step and a killed probe (cargo bench --bench enforce; ENFORCE_MINUTES per flood, default 10,
#   so about an hour in all; the routers-in-the-path tests' figures come from integration/enforce.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== latency (release build)"
cargo bench --locked --bench lab 2>&1 | grep -E "^probe interval|skipped"
echo "== faults"
cargo test --locked --test lab -- --nocapture \
  a_router_restarted_mid_attack deflect_killed_mid_attack the_controller_unreachable a_link_flap 2>&1 |
  grep -E "^figure:|test result|FAILED|panicked"
echo "== routers in the path"
cargo test --locked --test enforce -- --test-threads=1 --nocapture 2>&1 | grep -E "figure:|test result|FAILED|panicked"
echo "== enforced (release build, ENFORCE_MINUTES=${ENFORCE_MINUTES:-10})"
cargo bench --locked --bench enforce 2>&1 | grep -vE "^\s+(Compiling|Finished|Running)"
