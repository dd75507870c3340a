# syntax=docker/dockerfile:1
#
# pollhook as a container: one static binary on a distroless base, running as non-root.
#
#   docker build -t pollhook .
#   docker run --rm -v "$PWD/deploy/pollhook.toml:/etc/pollhook/pollhook.toml:ro" \
#     -v pollhook-data:/var/lib/pollhook -e SHOP_TOKEN -e APP_WEBHOOK_SECRET pollhook
#
# The build stage is reproduced without Docker by .ci/static-build (same toolchain, target,
# C compiler and cargo command); that script checks that this file still says the same.

# Keep in step with the toolchain .ci/static-build runs on (it warns on a mismatch).
ARG RUST_VERSION=1.95

# ---- build: a static x86_64 musl binary -------------------------------------------------
FROM rust:${RUST_VERSION}-slim-bookworm AS builder

# rusqlite (feature "bundled") compiles SQLite's C code and rustls' `ring` has C and assembly:
# both need a C compiler for the musl target, which Debian's musl-tools provides as musl-gcc.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl
ENV CC_x86_64_unknown_linux_musl=musl-gcc

WORKDIR /build

# Dependencies first, in their own layer: rebuilt only when Cargo.toml or Cargo.lock change.
# The throwaway lib.rs/main.rs stand in for the crate so cargo can build everything else.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs \
 && cargo build --release --locked --target x86_64-unknown-linux-musl \
 && rm -rf src

# The crate itself. adapters/ is compiled in (include_str!). The touch makes the real sources
# newer than the placeholder build, whatever mtimes COPY gave them, so cargo rebuilds the crate.
COPY src ./src
COPY adapters ./adapters
RUN touch src/main.rs src/lib.rs \
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
# database on the volume, the admin API / health endpoints on all interfaces so probes reach
# them (set POLLHOOK_ADMIN_TOKEN: the admin routes are then reachable from the network).
ENV POLLHOOK_CONFIG=/etc/pollhook/pollhook.toml \
    POLLHOOK_STORAGE_PATH=/var/lib/pollhook/pollhook.db \
    POLLHOOK_LISTEN=0.0.0.0:8787

USER 65532:65532
VOLUME ["/var/lib/pollhook"]
EXPOSE 8787

# No curl in this image: the binary checks itself (GET /healthz on POLLHOOK_LISTEN, exit 0 on 200).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/pollhook", "healthcheck"]

# pollhook stops scheduling on SIGTERM and finishes in-flight work within ~10 s.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pollhook"]
CMD ["run"]
