#!/usr/bin/env bash
# The whole test suite, as CI runs it (.ci/run calls exactly this script).
# Installs what the interop and lab tests need (Debian: bird2, gobgpd, iproute2, tshark, nftables,
# chromium, iptables, python3 for the lab's enforcer, pmacct for NetFlow, systemd for the package's
# test; the Docker lab installs docker.io, debootstrap and
# docker-compose itself) with apt-get when missing; run as root (the probe and lab tests make network
# namespaces, the Docker lab runs a Docker daemon of its own).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v bird >/dev/null || need+=(bird2)
command -v gobgpd >/dev/null || need+=(gobgpd)
command -v ip >/dev/null || need+=(iproute2)
command -v tshark >/dev/null || need+=(tshark)
command -v nft >/dev/null || need+=(nftables)
command -v chromium >/dev/null || need+=(chromium)
command -v iptables >/dev/null || need+=(iptables)
command -v python3 >/dev/null || need+=(python3)
# pmacct: the real NetFlow/IPFIX exporter (pmacctd's nfprobe) and the ingest benchmark's peers.
command -v pmacctd >/dev/null || [ -x /usr/sbin/pmacctd ] || need+=(pmacct)
# systemd: systemd-analyze and systemd-sysusers for the Debian package's test (integration/deb.sh).
command -v systemd-analyze >/dev/null || need+=(systemd)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing ${need[*]} with apt-get"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
# The fuzz targets build against the same crate; check they still compile (running them needs cargo-fuzz).
cargo check --manifest-path bgp/fuzz/Cargo.toml --bins --quiet
cargo check --manifest-path sflow/fuzz/Cargo.toml --bins --quiet
cargo check --manifest-path netflow/fuzz/Cargo.toml --bins --quiet
# The API's bodies and the telemetry reports (fuzz/) build against the whole deflect crate: share its
# target directory so its dependencies are not built twice.
CARGO_TARGET_DIR=target cargo check --manifest-path fuzz/Cargo.toml --bins --quiet
# The Docker lab, validated without an engine (docker-compose config, referenced files, router configs).
./integration/check-compose.sh
cargo test --workspace --locked
# The Docker lab for real: its walk-through as a test on a Docker engine of its own, with the debug binary
# the tests above just built (see the script's header).
./integration/docker-lab.sh
# The Debian package: built (a release build, in the default target directory like the benches'),
# listed, its units verified, installed with dpkg -i, checked, purged, nothing left (see the script).
./integration/deb.sh
