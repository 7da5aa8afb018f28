#!/bin/bash
# The router containers' entry point in the docker-compose lab: the router daemon in the foreground and
# the enforcer (integration/enforcer/enforcer.py) beside it, in the same network namespace, so that the
# FlowSpec rules this router holds are enforced in its own forward path with nftables (table
# inet deflect_enforcer). The container needs CAP_NET_ADMIN for that (`cap_add: [NET_ADMIN]`).
#
#   with-enforcer ENFORCER-ARGS... -- DAEMON [ARGS...]
#   with-enforcer --bird /run/bird/bird.ctl -- bird -f -c /etc/bird/bird.conf -s /run/bird/bird.ctl
#
# When either process exits, the other is stopped and the container exits with the first one's status
# (the restart policy brings both back): a router whose rules are not enforced is not left running
# silently. SIGTERM (docker stop) is passed to both.
set -u

enforcer_args=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do
  enforcer_args+=("$1")
  shift
done
if [ $# -lt 2 ]; then
  echo "usage: with-enforcer ENFORCER-ARGS... -- DAEMON [ARGS...]" >&2
  exit 2
fi
shift

"$@" &
daemon=$!
python3 /usr/local/lib/deflect/enforcer.py "${enforcer_args[@]}" &
enforcer=$!
trap 'kill -TERM "$daemon" "$enforcer" 2>/dev/null' TERM INT

wait -n "$daemon" "$enforcer"
status=$?
if kill -0 "$daemon" 2>/dev/null; then
  echo "with-enforcer: the enforcer exited ($status); stopping $1" >&2
else
  echo "with-enforcer: $1 exited ($status); stopping the enforcer" >&2
fi
kill -TERM "$daemon" "$enforcer" 2>/dev/null
wait
exit "$status"
