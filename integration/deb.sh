#!/usr/bin/env bash
# The Debian package end to end, as a test: build it (packaging/build-deb.sh; cargo-deb is
# installed with `cargo install cargo-deb --locked` when missing), list it, install it with
# `dpkg -i`, check what it installed (files and their modes, the user, the shipped configuration
# with `deflect config check`, the units with `systemd-analyze verify`, the daemon running as the
# unit runs it), then `dpkg --purge` it and check that nothing is left.
#
# Run as root on a machine where the package deflect is not installed (CI, a throwaway VM): it
# installs and purges the package system-wide. Every step is bounded; on any failure it says which
# step failed and why, and still purges what it installed. Takes a release build (shared with
# other release uses through the target directory) and a few seconds more.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '== deb: %s\n' "$*"; }
die() {
  printf 'deb.sh: FAILED: %s\n' "$*" >&2
  exit 1
}

[ "$(id -u)" = 0 ] || die "run as root: it installs and purges the package with dpkg"
for t in dpkg dpkg-deb systemd-analyze setpriv runuser python3 getent timeout; do
  command -v "$t" >/dev/null || die "$t is missing"
done
if dpkg-query -W -f='${db:Status-Status}' deflect 2>/dev/null | grep -qv '^not-installed$'; then
  die "a package deflect is already on this machine (dpkg -l deflect): purge it first, this test installs and purges its own"
fi
for p in /etc/deflect /var/lib/deflect /usr/share/deflect /usr/bin/deflect; do
  [ ! -e "$p" ] || die "$p exists before the package is installed: this test would delete it on purge"
done
getent passwd deflect >/dev/null && die "a user deflect exists before the package is installed"

work=$(mktemp -d /tmp/deflect-deb.XXXXXX)
installed=0
daemon=""
cleanup() {
  local rc=$?
  if [ -n "$daemon" ] && kill -0 "$daemon" 2>/dev/null; then
    kill "$daemon" 2>/dev/null || true
    wait "$daemon" 2>/dev/null || true
  fi
  if [ "$installed" = 1 ]; then
    echo "deb.sh: purging the package after the failure" >&2
    timeout 120 dpkg --purge deflect >/dev/null 2>&1 || echo "deb.sh: dpkg --purge deflect failed too" >&2
  fi
  rm -rf "$work"
  [ "$rc" = 0 ] || echo "deb.sh: FAILED (exit $rc); see the step above" >&2
}
trap cleanup EXIT

step "cargo-deb"
if ! cargo deb --version >/dev/null 2>&1; then
  timeout 1800 cargo install cargo-deb --locked || die "cargo install cargo-deb --locked"
fi
cargo deb --version

step "build (packaging/build-deb.sh)"
timeout 3600 packaging/build-deb.sh >"$work/build.out" || {
  cat "$work/build.out"
  die "packaging/build-deb.sh"
}
deb=$(tail -n 1 "$work/build.out")
[ -f "$deb" ] || die "build-deb.sh's last line is not a package: $deb"
echo "$deb"

step "list (dpkg-deb -I, dpkg-deb -c)"
dpkg-deb -I "$deb" | tee "$work/info"
dpkg-deb -c "$deb" >"$work/contents"
cat "$work/contents"
want=(
  ./usr/bin/deflect
  ./usr/share/deflect/policies/amplification.yaml
  ./etc/deflect/deflect.yaml
  ./etc/deflect/deflect.env
  ./etc/deflect/probe.env
  ./usr/lib/systemd/system/deflect.service
  ./usr/lib/systemd/system/deflect-probe.service
  ./usr/lib/sysusers.d/deflect.conf
  ./usr/share/bash-completion/completions/deflect
  ./usr/share/zsh/vendor-completions/_deflect
  ./usr/share/fish/vendor_completions.d/deflect.fish
  ./usr/share/man/man1/deflect.1.gz
  ./usr/share/man/man1/deflect-run.1.gz
  ./usr/share/man/man1/deflect-probe.1.gz
  ./usr/share/doc/deflect/examples/deflect.yaml
)
for p in "${want[@]}"; do
  grep -q " $p\$" "$work/contents" || die "the package has no $p"
done
npol=$(grep -c ' ./usr/share/deflect/policies/.*\.yaml$' "$work/contents")
[ "$npol" = "$(ls policies/*.yaml | wc -l)" ] || die "the package has $npol policies, policies/ has $(ls policies/*.yaml | wc -l)"
grep -q -- '^-rw-r----- 0/0 .* ./etc/deflect/deflect.yaml$' "$work/contents" || die "deflect.yaml is not 0640 in the package"
grep -q -- '^-rw------- 0/0 .* ./etc/deflect/probe.env$' "$work/contents" || die "probe.env is not 0600 in the package"
grep -q -- '^-rw------- 0/0 .* ./etc/deflect/deflect.env$' "$work/contents" || die "deflect.env is not 0600 in the package"
dpkg-deb --ctrl-tarfile "$deb" | tar -xO ./conffiles >"$work/conffiles"
for c in /etc/deflect/deflect.yaml /etc/deflect/deflect.env /etc/deflect/probe.env; do
  grep -qx "$c" "$work/conffiles" || die "$c is not a conffile"
done
grep -q '^ Section: net$' "$work/info" || die "the package's section is not net"

step "install (dpkg -i)"
installed=1
timeout 300 dpkg -i "$deb" || die "dpkg -i $deb"
dpkg -L deflect >"$work/installed"
getent passwd deflect >/dev/null || die "the postinst made no user deflect"
[ "$(stat -c '%a %U:%G' /etc/deflect/deflect.yaml)" = "640 root:deflect" ] ||
  die "/etc/deflect/deflect.yaml is $(stat -c '%a %U:%G' /etc/deflect/deflect.yaml), not 640 root:deflect"
[ "$(stat -c '%a %U:%G' /etc/deflect/probe.env)" = "600 root:root" ] ||
  die "/etc/deflect/probe.env is $(stat -c '%a %U:%G' /etc/deflect/probe.env), not 600 root:root"
/usr/bin/deflect --version

step "deflect config check /etc/deflect/deflect.yaml (as root, then as the user deflect)"
deflect config check /etc/deflect/deflect.yaml || die "the shipped configuration does not pass its check"
runuser -u deflect -- /usr/bin/deflect config check /etc/deflect/deflect.yaml >/dev/null ||
  die "the user deflect cannot read and check /etc/deflect/deflect.yaml"

step "systemd-analyze verify"
units=(/usr/lib/systemd/system/deflect.service /usr/lib/systemd/system/deflect-probe.service)
# verify also opens the units' Documentation= man pages, with man-db's `man` where there is one.
man=()
command -v man >/dev/null || man=(--man=no)
if ! timeout 60 systemd-analyze verify "${man[@]}" "${units[@]}" >"$work/verify" 2>&1 || [ -s "$work/verify" ]; then
  cat "$work/verify"
  die "systemd-analyze verify ${units[*]} complained (above)"
fi
echo "no complaints"
for u in "${units[@]}"; do
  timeout 60 systemd-analyze security --offline=true "$u" 2>/dev/null | tail -n 1 || true
done

step "completions and man pages"
bash -c 'source /usr/share/bash-completion/completions/deflect && complete -p deflect' ||
  die "the bash completion does not load"
zcat /usr/share/man/man1/deflect.1.gz | grep -q 'deflect\\-probe(1)' || die "deflect.1 does not list deflect-probe(1)"
grep -q 'mitigation' /usr/share/fish/vendor_completions.d/deflect.fish || die "the fish completion names no subcommand"

step "the daemon as deflect.service runs it: user deflect, CAP_NET_BIND_SERVICE only, the shipped configuration"
# No systemd here to start the unit: its StateDirectory= is made by hand, its capabilities set
# with setpriv. The API goes to a free port and the BGP listener to port 179 on a loopback
# address of its own, so that nothing else on this machine is in the way; the rest is the file
# as shipped.
install -d -o deflect -g deflect -m 0750 /var/lib/deflect
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
bgp="127.$((RANDOM % 200 + 20)).$((RANDOM % 250 + 1)).$((RANDOM % 250 + 1))"
sed -e "s/127.0.0.1:8179/127.0.0.1:$port/" -e "s/^# listen: \[0.0.0.0:179\]/listen: ['$bgp:179']/" \
  /etc/deflect/deflect.yaml >"$work/deflect.yaml"
grep -q "^listen: \['$bgp:179'\]" "$work/deflect.yaml" || die "could not add a BGP listener to the copy of the configuration"
chgrp deflect "$work" "$work/deflect.yaml" && chmod 0750 "$work" && chmod 0640 "$work/deflect.yaml"
token=$(python3 -c 'import secrets; print(secrets.token_hex(16))')
DEFLECT_ADMIN_TOKEN=$token setpriv --reuid=deflect --regid=deflect --init-groups \
  --inh-caps=-all,+net_bind_service --ambient-caps=-all,+net_bind_service \
  --bounding-set=-all,+net_bind_service --no-new-privs \
  /usr/bin/deflect run --config "$work/deflect.yaml" >"$work/daemon.log" 2>&1 &
daemon=$!
ok=0
for _ in $(seq 1 100); do
  if deflect mitigation list --api "http://127.0.0.1:$port" --token "$token" >/dev/null 2>&1; then
    ok=1
    break
  fi
  kill -0 "$daemon" 2>/dev/null || break
  sleep 0.1
done
[ "$ok" = 1 ] || {
  cat "$work/daemon.log"
  die "the daemon did not answer on its API within 10 s"
}
ss -ltn | grep -q "$bgp:179 " || {
  cat "$work/daemon.log"
  die "the daemon, with CAP_NET_BIND_SERVICE only, is not listening on $bgp:179"
}
echo "API on 127.0.0.1:$port answers with the token; BGP listening on $bgp:179; process of $(ps -o user= -p "$daemon")"
deflect peers --api "http://127.0.0.1:$port" --token "$token"
kill -TERM "$daemon"
timeout 30 tail --pid="$daemon" -f /dev/null || die "the daemon did not stop within 30 s of SIGTERM"
wait "$daemon" || die "the daemon exited with $? on SIGTERM"
daemon=""
[ "$(stat -c '%U' /var/lib/deflect/deflect.redb)" = deflect ] || die "no store owned by deflect in /var/lib/deflect"
ls -l /var/lib/deflect

step "purge (dpkg --purge deflect)"
timeout 300 dpkg --purge deflect || die "dpkg --purge deflect"
installed=0
left=()
while read -r p; do
  case "$p" in
  # Directories shared with other packages stay.
  / | /etc | /usr | /usr/* | /var | /var/lib) [ -d "$p" ] && [ ! -f "$p" ] && continue ;;
  esac
  [ ! -e "$p" ] || left+=("$p")
done <"$work/installed"
for p in /etc/deflect /var/lib/deflect /usr/share/deflect /usr/share/doc/deflect /usr/bin/deflect \
  /usr/lib/systemd/system/deflect.service /usr/lib/systemd/system/deflect-probe.service \
  /usr/lib/sysusers.d/deflect.conf /usr/share/man/man1/deflect.1.gz; do
  [ ! -e "$p" ] || left+=("$p")
done
while read -r p; do left+=("$p"); done < <(find /var/lib/systemd /var/lib/dpkg/info /etc/systemd -name '*deflect*' 2>/dev/null)
getent passwd deflect >/dev/null && left+=("user deflect")
getent group deflect >/dev/null && left+=("group deflect")
dpkg-query -W -f='${db:Status-Status}' deflect 2>/dev/null | grep -qv '^not-installed$' && left+=("dpkg's record of deflect")
[ ${#left[@]} = 0 ] || die "left after the purge: ${left[*]}"
echo "nothing left: no files of the package, no /etc/deflect, /var/lib/deflect, /usr/share/deflect, user or group"
step "ok"
