#!/usr/bin/env bash
# Validates the Docker lab without a Docker engine:
#   1. docker-compose.yml with Debian's docker-compose (`config -q`): syntax, schema, interpolation;
#   2. every file it references exists: build contexts and their Dockerfiles, bind-mounted files;
#   3. what those files configure: deflect.yaml with `deflect config check` (against the repository's
#      policies/), bird.conf with `bird -p`, gobgpd.toml with `gobgpd --dry-run`, and the router examples
#      in examples/routers/ that BIRD and GoBGP can parse.
# Installs docker-compose with apt-get when it is missing and this runs as root; a step whose tool is
# missing (bird, gobgpd) is reported as skipped, not failed. Exit status: 0 when every step that ran passed.
set -euo pipefail
cd "$(dirname "$0")/.."

failed=0
ok() { echo "ok    $*"; }
bad() { echo "FAIL  $*" >&2; failed=1; }
skip() { echo "skip  $*"; }

# --- 1. docker-compose config ------------------------------------------------------------------------------
if ! command -v docker-compose >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing docker-compose with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker-compose >/dev/null
  else
    echo "docker-compose is missing: install it (Debian: apt-get install docker-compose) or run as root" >&2
    exit 2
  fi
fi

# The file refuses to start without its two tokens (${VAR:?...}); validate with stand-ins unless they are set.
export DEFLECT_TOKEN="${DEFLECT_TOKEN:-check-compose-operator-token}"
export DEFLECT_NODE_TOKEN="${DEFLECT_NODE_TOKEN:-check-compose-victim-token}"

if docker-compose -f docker-compose.yml config -q; then
  ok "docker-compose.yml: docker-compose $(docker-compose version --short 2>/dev/null) config -q"
else
  bad "docker-compose.yml: docker-compose config -q"
fi

# --- 2. referenced files ------------------------------------------------------------------------------------
# From the resolved configuration (absolute paths, anchors and defaults applied), so nothing is missed.
python=""
for p in python3 /usr/bin/python3; do
  if command -v "$p" >/dev/null && "$p" -c 'import yaml' 2>/dev/null; then python="$p"; break; fi
done
if [ -z "$python" ]; then
  bad "referenced files: no python3 with PyYAML (apt-get install python3-yaml)"
elif resolved="$(docker-compose -f docker-compose.yml config 2>/dev/null)"; then
  if ! printf '%s' "$resolved" | "$python" -c '
import os, sys, yaml
doc = yaml.safe_load(sys.stdin)
missing, checked = [], 0
for name, svc in (doc.get("services") or {}).items():
    build = svc.get("build")
    if build:
        ctx = build["context"] if isinstance(build, dict) else build
        dockerfile = os.path.join(ctx, build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        for path, what in ((ctx, "build context"), (dockerfile, "Dockerfile")):
            checked += 1
            if not os.path.exists(path):
                missing.append(f"{name}: {what} {path}")
    for v in svc.get("volumes") or []:
        if isinstance(v, dict):
            kind, source = v.get("type"), v.get("source")
        else:  # short form SOURCE:TARGET[:MODE]
            source = v.split(":")[0]
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        if kind == "bind":
            checked += 1
            if not os.path.exists(os.path.expanduser(source)):
                missing.append(f"{name}: bind-mounted {source}")
        elif kind == "volume" and source not in (doc.get("volumes") or {}):
            missing.append(f"{name}: named volume {source} is not declared")
for m in missing:
    print(f"FAIL  referenced file missing: {m}", file=sys.stderr)
print(f"ok    referenced files: {checked} build contexts, Dockerfiles and bind mounts exist")
sys.exit(1 if missing else 0)
'; then
    failed=1
  fi
else
  bad "referenced files: docker-compose config did not resolve the file"
fi

# --- 3. the configurations the lab mounts, and the router examples ------------------------------------------
# deflect: the newest built binary if there is one (no rebuild of a tree someone may be editing; set
# DEFLECT_BIN to choose), else one on PATH, else cargo run.
deflect=()
if [ -n "${DEFLECT_BIN:-}" ]; then
  deflect=("$DEFLECT_BIN")
else
  newest="$(ls -t target/release/deflect target/debug/deflect 2>/dev/null | head -n 1 || true)"
  if [ -n "$newest" ] && [ -x "$newest" ]; then deflect=("$newest"); fi
fi
if [ ${#deflect[@]} -eq 0 ]; then
  if command -v deflect >/dev/null; then deflect=(deflect); else deflect=(cargo run -q --locked --); fi
fi
# The lab's file names /etc/deflect/policies (the image's copy of policies/): check it against the
# repository's policies/ directory instead, so that the policies' references are checked too.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
sed "s|^policies: /etc/deflect/policies|policies: $PWD/policies|" integration/docker/deflect.yaml >"$tmp/deflect.yaml"
if out="$("${deflect[@]}" config check "$tmp/deflect.yaml" 2>&1)"; then
  ok "integration/docker/deflect.yaml: ${out#*: }"
else
  bad "integration/docker/deflect.yaml (${deflect[*]} config check):"
  printf '%s\n' "$out" | sed "s|$tmp/deflect.yaml|integration/docker/deflect.yaml|" >&2
fi

if command -v bird >/dev/null; then
  for f in integration/docker/bird/bird.conf examples/routers/bird2.conf; do
    [ -f "$f" ] || { bad "$f: missing"; continue; }
    if out="$(bird -p -c "$f" 2>&1)"; then ok "$f: bird -p"; else bad "$f: bird -p: $out"; fi
  done
else
  skip "BIRD configs: bird is not installed (apt-get install bird2)"
fi

if command -v gobgpd >/dev/null; then
  for f in integration/docker/gobgp/gobgpd.toml examples/routers/gobgpd.toml; do
    [ -f "$f" ] || { bad "$f: missing"; continue; }
    if out="$(gobgpd -f "$f" --dry-run 2>&1)"; then ok "$f: gobgpd --dry-run"; else bad "$f: gobgpd --dry-run: $out"; fi
  done
else
  skip "GoBGP configs: gobgpd is not installed (apt-get install gobgpd)"
fi

if [ "$failed" = 0 ]; then echo "check-compose: all checks passed"; else echo "check-compose: FAILED" >&2; fi
exit "$failed"
