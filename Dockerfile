# syntax=docker/dockerfile:1
#
# portcullis: multi-stage build.
#   docker build -t portcullis .
#   docker run -v "$PWD/deploy:/etc/portcullis:ro" -p 8443:8443 \
#     -e PORTCULLIS_HTTPS=0.0.0.0:8443 -e PORTCULLIS_ADMIN=0.0.0.0:9901 portcullis
# See README.md, section "Docker".

# ---- build ------------------------------------------------------------------
# aws-lc-sys (the TLS crypto, through rustls) compiles C with the image's gcc;
# on x86_64 glibc it needs no cmake, clang or Go (checked on a machine without
# them). Other targets may want cmake: see the aws-lc-rs build requirements.
FROM rust:1-bookworm AS build
WORKDIR /src

# 1. Dependencies only, so this layer is cached until a manifest or
#    Cargo.lock changes. Cargo reads every target the manifests declare
#    (the [[bench]] files, the workspace member tools/loadgen) and
#    src/demo.rs embeds config/demo.yaml, so stand-ins for those must exist.
COPY Cargo.toml Cargo.lock ./
COPY tools/loadgen/Cargo.toml ./tools/loadgen/Cargo.toml
RUN mkdir -p src benches config tools/loadgen/src \
 && echo 'fn main() {}' > src/main.rs \
 && touch src/lib.rs config/demo.yaml \
 && for b in $(sed -n 's/^name = "\(.*\)"$/\1/p' Cargo.toml | grep -v '^portcullis$'); do \
      echo 'fn main() {}' > "benches/$b.rs"; done \
 && echo 'fn main() {}' > tools/loadgen/src/main.rs \
 && cargo build --release --locked --bin portcullis \
 && rm -rf src benches config tools \
      target/release/portcullis target/release/portcullis.d \
      target/release/deps/portcullis-* target/release/deps/libportcullis-* \
      target/release/.fingerprint/portcullis-*

# 2. The gateway itself (the load generator is not built into the image).
COPY src ./src
COPY benches ./benches
COPY tools ./tools
COPY config/demo.yaml ./config/demo.yaml
RUN cargo build --release --locked --bin portcullis \
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
