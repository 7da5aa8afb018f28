# deflect in a container: the controller (`deflect run`), the node probe (`deflect probe`) and the CLI.
#
#   docker build -t deflect .
#   docker run --rm -v $PWD/deflect.yaml:/etc/deflect/deflect.yaml:ro -v deflect-state:/var/lib/deflect \
#       -e DEFLECT_TOKEN=... -p 127.0.0.1:8179:8179 deflect
#   docker run --rm --network host --cap-add NET_RAW deflect probe --controller http://10.0.0.1:8179 --token ...
#
# docker-compose.yml at the repository root runs a whole lab (deflect, BIRD, GoBGP, a victim with the probe,
# an attacker) from this image.
#
# Plain Dockerfile syntax only (no BuildKit cache mounts), so it builds with BuildKit, the legacy builder,
# Podman/Buildah and Debian's docker-compose 1.29 alike.

# ---------------------------------------------------------------------------------------------------------
# Build: the official Rust image on Debian 12, the same glibc as the runtime stage below.
FROM rust:1-bookworm AS build
WORKDIR /src

# Dependencies first, in their own layer, so that editing deflect's sources does not rebuild ~200 crates.
# Cargo reads every manifest of the workspace and refuses one whose explicit [[test]]/[[bench]] files are
# missing, so the directories holding those targets are copied now; the crates' own sources are stubs.
COPY Cargo.toml Cargo.lock ./
COPY bgp/Cargo.toml bgp/
COPY sflow/Cargo.toml sflow/
COPY benches/ benches/
COPY integration/ integration/
COPY tests/ tests/
COPY bgp/benches/ bgp/benches/
COPY sflow/benches/ sflow/benches/
RUN mkdir -p src bgp/src sflow/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs bgp/src/lib.rs sflow/src/lib.rs \
 && cargo build --release --locked -p deflect \
 && rm -rf src bgp/src sflow/src

# The real sources. COPY keeps the files' modification times, which can be older than the stub build above:
# touch them so that cargo rebuilds the three workspace crates (and only them).
COPY . .
RUN find src bgp/src sflow/src -name '*.rs' -exec touch {} + \
 && cargo build --release --locked -p deflect \
 && install -D -m 0755 target/release/deflect /out/deflect \
 && /out/deflect --version

# ---------------------------------------------------------------------------------------------------------
# Runtime: Debian 12 slim. ca-certificates for HTTPS controllers, iproute2 to look at interfaces and
# routes when debugging the probe, libcap2-bin for setcap/getcap.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates iproute2 libcap2-bin \
 && rm -rf /var/lib/apt/lists/*

RUN groupadd --system deflect \
 && useradd --system --gid deflect --home-dir /var/lib/deflect --no-create-home \
      --shell /usr/sbin/nologin deflect

COPY --from=build /out/deflect /usr/local/bin/deflect
# `deflect probe` opens an AF_PACKET socket: CAP_NET_RAW as a file capability lets it run as the
# unprivileged user. The controller and the CLI need no capability at all (deflect connects out to its
# BGP neighbors; a `listen` below port 1024 works in Docker, whose containers allow unprivileged ports
# from 0, but may need CAP_NET_BIND_SERVICE elsewhere).
# Caveat: a binary with a file capability in its effective set refuses to start ("operation not
# permitted") in a container whose bounding set lacks that capability (`cap_drop: [ALL]`, Kubernetes'
# restricted profile): keep NET_RAW (in Docker's default set), or `cap_add: [NET_RAW]` after dropping all.
RUN setcap cap_net_raw+ep /usr/local/bin/deflect \
 && getcap /usr/local/bin/deflect

# The shipped policies (the configuration's `policies: /etc/deflect/policies`), and the annotated example
# configuration as a reference: mount your own at /etc/deflect/deflect.yaml.
COPY policies/ /etc/deflect/policies/
COPY examples/deflect.yaml /etc/deflect/deflect.yaml.example

# The store (redb) and attack captures: point `state_dir` here and mount a volume on it.
RUN install -d -o deflect -g deflect -m 0750 /var/lib/deflect

USER deflect
WORKDIR /var/lib/deflect
# BGP (only if the configuration listens), the HTTP API, the sFlow collector.
EXPOSE 179/tcp 8179/tcp 6343/udp
# SIGTERM (docker stop) makes deflect send a Cease to each peer; SIGHUP (docker kill -s HUP) reloads.
ENTRYPOINT ["deflect"]
CMD ["run", "--config", "/etc/deflect/deflect.yaml"]
