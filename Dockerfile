# syntax=docker/dockerfile:1
# cartflow: one image, every stage. `cartflow` is the entrypoint, so each service of
# deploy/compose/compose.yaml is this image with another command.
#
#   docker build -t cartflow .            (or: podman build --format docker -t cartflow .:
#                                          OCI's format, podman's default, drops the HEALTHCHECK)
#   docker run --rm cartflow --help
#
# The base images are arguments, so a build can name a mirror's copies.
#
# The podman test (crates/cartflow/tests/compose.rs) puts the binary its run already
# built in the builder stage's place, `--build-context builder=DIR`, which skips the
# stage and a second, half-hour build; the rest of this file is built as it is.
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=docker.io/library/debian:bookworm-slim

FROM ${RUST_IMAGE} AS builder
# librdkafka (bundled by rdkafka-sys) builds with its own configure (which asks for a C++
# compiler), and make; zlib for its compression. rust:slim has gcc alone.
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make perl pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# No debug line tables and no symbols in the image's binary: the workspace's release
# profile keeps line tables for profiling (818 MB unstripped, 147 MB stripped).
ENV CARGO_PROFILE_RELEASE_DEBUG=false \
    CARGO_PROFILE_RELEASE_STRIP=symbols
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p cartflow \
 && install -m 0755 target/release/cartflow /usr/local/bin/cartflow

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="cartflow" \
      org.opencontainers.image.description="Predicts, when a shopper adds an item to the cart, whether they will buy it: from a live clickstream, end to end, in one binary" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="docker.io/library/debian:bookworm-slim"
# CA certificates for TLS to S3, Kafka, PostgreSQL and Redis; nothing else.
# `apt-get clean` too: a base without the official image's docker-clean hook keeps apt's ~90 MB
# package caches in this layer.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && apt-get clean && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/cartflow --create-home --shell /usr/sbin/nologin cartflow
COPY --from=builder /usr/local/bin/cartflow /usr/local/bin/cartflow
USER 10001:10001
WORKDIR /var/lib/cartflow
# State (the embedded log, lake, registry, online snapshot, locks, tokens) lives here.
ENV CARTFLOW_DATA_DIR=/var/lib/cartflow/data
RUN mkdir -p /var/lib/cartflow/data
VOLUME ["/var/lib/cartflow/data"]
# `cartflow health` asks the process's /health (no token needed) at CARTFLOW_HEALTH_URL
# (default 127.0.0.1:9464): each compose service sets it to its --metrics-addr or server address.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["cartflow", "health", "--timeout-ms", "2500"]
ENTRYPOINT ["cartflow"]
CMD ["--help"]
