# syntax=docker/dockerfile:1
#
# pollhook as a container: one static binary on a distroless base, running as non-root.
#
#   docker build -t pollhook .
#   docker run --rm -v "$PWD/deploy/pollhook.toml:/etc/pollhook/pollhook.toml:ro" \
#     -v pollhook-data:/var/lib/pollhook -e SHOP_TOKEN -e APP_WEBHOOK_SECRET pollhook
#
# .ci/static-build runs this file's build stage without Docker (its ENV, WORKDIR, COPY and RUN
# lines on the context .dockerignore lets through) and checks the binary it makes.

# Keep in step with the toolchain .ci/static-build runs on (it warns on a mismatch).
ARG RUST_VERSION=1.95

# ---- build: a static x86_64 musl binary -------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS builder
# A failing command inside a pipe fails the RUN.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# rusqlite (feature "bundled") compiles SQLite's C code and rustls' `ring` has C and assembly:
# both need a C compiler for the musl target, which Debian's musl-tools provides as musl-gcc.
# Not pinned to an exact version (hadolint DL3008): bookworm fixes it at 1.2.3, and an exact pin
# would break the build the day Debian ships a security update.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
# No debug info in the image's binary: the release profile's line tables (and the C code's and
# std's debug info) would make it 86 MiB instead of 19 MiB. Symbols stay, so a panic's
# backtrace still names its functions.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_PROFILE_RELEASE_DEBUG=false

WORKDIR /build

# Dependencies first, in their own layer: rebuilt only when Cargo.toml or Cargo.lock change.
# Throwaway files stand in for the crate: src/lib.rs and src/bin/pollhook/main.rs, and one per
# [[bench]], [[test]] or [[example]] the manifest declares (cargo refuses a manifest whose targets
# are missing). `cargo build` never compiles those, so their stand-ins stay for the real build and
# benches/, tests/ and examples/ stay out of the build context.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin/pollhook \
 && echo 'fn main() {}' > src/bin/pollhook/main.rs \
 && touch src/lib.rs \
 && awk 'function emit() { if (kind != "") print (path != "" ? path : dir[kind] "/" name ".rs"); kind = "" } \
         BEGIN { dir["bench"] = "benches"; dir["test"] = "tests"; dir["example"] = "examples" } \
         /^\[/ { emit() } \
         /^\[\[(bench|test|example)\]\]/ { kind = $0; gsub(/[][ ]/, "", kind); name = ""; path = "" } \
         kind != "" && /^name *=/ { name = $0; sub(/^name *= *"/, "", name); sub(/".*/, "", name) } \
         kind != "" && /^path *=/ { path = $0; sub(/^path *= *"/, "", path); sub(/".*/, "", path) } \
         END { emit() }' Cargo.toml \
    | while read -r stub; do mkdir -p "$(dirname "$stub")" && echo 'fn main() {}' > "$stub"; done \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && rm -rf src

# The crate itself: build.rs embeds every adapters/*.toml. The touch makes the real sources
# newer than the placeholder build, whatever mtimes COPY gave them, so cargo rebuilds the crate.
COPY build.rs ./
COPY src ./src
COPY adapters ./adapters
RUN touch src/bin/pollhook/main.rs src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && install -D -m 0755 target/x86_64-unknown-linux-musl/release/pollhook /out/pollhook \
 && mkdir -p /out/data

# ---- run: distroless/static has CA certificates, tzdata and a `nonroot` user (65532), no shell -
FROM gcr.io/distroless/static-debian12:nonroot

LABEL org.opencontainers.image.title="pollhook" \
      org.opencontainers.image.description="Polls REST APIs, detects changes, delivers signed webhooks." \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=builder /out/pollhook /usr/local/bin/pollhook
# The database directory, owned by the runtime user: a new named volume mounted here starts
# with this owner (Kubernetes: set fsGroup 65532 on the pod instead).
COPY --from=builder --chown=65532:65532 /out/data /var/lib/pollhook

# The container contract: config mounted read-only at /etc/pollhook/pollhook.toml, the SQLite
# database on the volume, /livez, /healthz, /readyz and /metrics on 8788 on all interfaces with no
# token (nothing else is served there), so probes and Prometheus reach them. The admin API asks for
# all interfaces on 8787; without POLLHOOK_ADMIN_TOKEN pollhook keeps it on loopback.
ENV POLLHOOK_CONFIG=/etc/pollhook/pollhook.toml \
    POLLHOOK_STORAGE_PATH=/var/lib/pollhook/pollhook.db \
    POLLHOOK_LISTEN=0.0.0.0:8787 \
    POLLHOOK_HEALTH_LISTEN=0.0.0.0:8788

USER 65532:65532
VOLUME ["/var/lib/pollhook"]
EXPOSE 8787 8788

# No curl in this image: the binary checks itself (GET /healthz on the config's health_listen,
# here POLLHOOK_HEALTH_LISTEN; exit 0 on 200).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/pollhook", "healthcheck"]

# pollhook stops scheduling on SIGTERM and finishes in-flight work within ~10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pollhook"]
CMD ["run"]
