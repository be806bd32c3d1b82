# Shardline's HTTP interactions service (shardline-interactions) with the container
# healthcheck. Build from the repository root:
#   docker build -f docker/interactions.Dockerfile -t shardline-interactions .
# Multi-stage: a Rust builder, then distroless (no shell, no package manager) as a
# non-root user. The healthcheck binary asks /healthz on METRICS_ADDR.

FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p shardline-interactions --bin shardline-interactions \
    && cargo build --release --locked -p shardline-worker --bin shardline-healthcheck

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/shardline-interactions /usr/local/bin/shardline-interactions
COPY --from=build /src/target/release/shardline-healthcheck /usr/local/bin/shardline-healthcheck
USER 65532:65532
ENV LISTEN_ADDR=0.0.0.0:8080 METRICS_ADDR=0.0.0.0:9100
EXPOSE 8080 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/shardline-healthcheck"]
CMD ["/usr/local/bin/shardline-interactions"]
