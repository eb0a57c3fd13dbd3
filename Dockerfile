# syntax=docker/dockerfile:1
# The aragora image: the one `aragora` binary (up, serve, gateway, control, and the CLI) on a
# small Debian runtime, as a non-root user. Build: `docker build -t aragora .`
# tests/e2e/deploy_image.rs holds this file against the code without building it (libraries,
# programs, user, ports, health check, what the builder copies).

# ---- builder -------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS builder
# What scripts/setup.sh says the build needs beyond the Rust image: cmake (pingora builds
# zlib-ng with it) and pkg-config; the C compiler comes with the image. Versions are the
# release's own (a pinned Debian version disappears at its next security update).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends cmake pkg-config \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /build

# Dependencies first: the manifests, the lock file and the vendored crate, with empty targets,
# so this layer (every crate downloaded) is reused until a dependency changes.
COPY Cargo.toml Cargo.lock ./
COPY vendor/ vendor/
COPY auth/Cargo.toml auth/
COPY chaos/Cargo.toml chaos/
COPY config/Cargo.toml config/
COPY console/Cargo.toml console/
COPY engine/Cargo.toml engine/
COPY fuzzing/Cargo.toml fuzzing/
COPY gateway/Cargo.toml gateway/
COPY gcra/Cargo.toml gcra/
COPY slo/Cargo.toml slo/
COPY telemetry/Cargo.toml telemetry/
RUN mkdir -p src benches \
    && for crate in auth chaos config console engine fuzzing gateway gcra slo telemetry; do \
         mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; \
       done \
    && echo 'fn main() {}' > src/main.rs \
    && touch benches/engine_latency.rs benches/websocket_fanout.rs \
    && cargo fetch --locked

# Then the sources (the empty targets above are replaced), and the build. The target directory
# is a cache mount, so a rebuild after a source change compiles only what changed.
COPY src/ src/
COPY benches/ benches/
COPY migrations/ migrations/
COPY auth/ auth/
COPY chaos/ chaos/
COPY config/ config/
COPY console/ console/
COPY engine/ engine/
COPY fuzzing/ fuzzing/
COPY gateway/ gateway/
COPY gcra/ gcra/
COPY slo/ slo/
COPY telemetry/ telemetry/
RUN --mount=type=cache,target=/build/target,id=aragora-target \
    cargo build --release --locked --offline --bin aragora \
    && install -D -m 0755 target/release/aragora /out/aragora

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
# Only what the binary uses at run time. Its shared libraries (libc6, libgcc-s1) are in the
# base. ca-certificates: the system roots that rediss:// (ARAGORA_REDIS_URL) and pingora trust
# (rustls-native-certs); the provider and PostgreSQL clients carry their own (webpki-roots).
# postgresql-client: pg_dump and pg_restore, which backups, drills and restores run; it must be
# as new as the server (bookworm's is 15). Unpinned, as above.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates postgresql-client \
    && rm -rf /var/lib/apt/lists/*
# A fixed uid/gid, so volumes and Kubernetes' runAsUser/fsGroup can name it.
RUN groupadd --system --gid 10001 aragora \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/aragora --shell /usr/sbin/nologin aragora \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/aragora
COPY --from=builder /out/aragora /usr/local/bin/aragora

# The data directory (SQLite database, backups, generated keys and certificates, up's admin
# key) is the working directory, owned by the user, and a volume.
ENV ARAGORA_DATA_DIR=/var/lib/aragora
WORKDIR /var/lib/aragora
VOLUME ["/var/lib/aragora"]
USER 10001:10001

# The defaults: gateway HTTP 80 and HTTPS 443 (non-root binds them where the runtime sets
# net.ipv4.ip_unprivileged_port_start=0, as Docker 20.10+ and containerd 2 do; else move them
# with ARAGORA_HTTP_PORT/ARAGORA_HTTPS_PORT and map), gateway admin 9091 (loopback unless
# ARAGORA_ADMIN_HOST), engine API 8080 and WebSocket 8765, control 9095 (ARAGORA_CONTROL_LISTEN).
EXPOSE 80 443 9091 8080 8765 9095

# One line for every command: `aragora probe` tries the /healthz of each listener the
# environment configures and succeeds when one answers.
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 CMD ["aragora", "probe"]

ENTRYPOINT ["aragora"]
CMD ["up"]
