# syntax=docker/dockerfile:1
#
# portcullis: multi-stage build.
#   docker build -t portcullis .
#   docker run -v "$PWD/deploy:/etc/portcullis:ro" -p 8443:8443 \
#     -e PORTCULLIS_HTTPS=0.0.0.0:8443 -e PORTCULLIS_ADMIN=0.0.0.0:9901 portcullis
# See README.md, section "Docker".

# ---- build ------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src

# 1. Dependencies only, so this layer is cached until Cargo.toml or
#    Cargo.lock change. The manifest declares two [[bench]] targets and
#    src/demo.rs embeds config/demo.yaml, so stand-ins for those must exist.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches config \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs config/demo.yaml \
 && echo 'fn main() {}' > benches/oauth1.rs \
 && echo 'fn main() {}' > benches/replay.rs \
 && cargo build --release --locked \
 && rm -rf src benches config \
      target/release/portcullis target/release/portcullis.d \
      target/release/deps/portcullis-* target/release/deps/libportcullis-* \
      target/release/.fingerprint/portcullis-*

# 2. The gateway itself.
COPY src ./src
COPY benches ./benches
COPY config/demo.yaml ./config/demo.yaml
RUN cargo build --release --locked \
 && install -D -m 0755 target/release/portcullis /out/portcullis

# ---- runtime ----------------------------------------------------------------
# distroless/cc: glibc and libgcc only; no shell, no package manager, no curl.
# The :nonroot tag runs as uid/gid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/portcullis /usr/local/bin/portcullis

# Mount the configuration here: gateway.yaml, certs/, keys.d/ (read-only is
# fine). Relative tls/secret_file paths resolve against this folder; include
# globs resolve against the config file's folder (the same one).
WORKDIR /etc/portcullis
VOLUME ["/etc/portcullis"]
USER 65532:65532

# 8443: the gateway (TLS). 9901: /healthz /readyz /metrics (no auth; do not
# publish it beyond the orchestrator). Listen on 0.0.0.0 inside the
# container: the example config reads PORTCULLIS_HTTPS and PORTCULLIS_ADMIN.
EXPOSE 8443 9901

# No HEALTHCHECK: distroless has no shell or curl. Orchestrators should probe
# GET /readyz (readiness) and GET /healthz (liveness) on
# port 9901.

# SIGTERM drains in-flight requests for limits.shutdown_grace (default 30s):
# give `docker stop -t` / terminationGracePeriodSeconds more than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["portcullis"]
CMD ["serve", "-c", "/etc/portcullis/gateway.yaml"]
