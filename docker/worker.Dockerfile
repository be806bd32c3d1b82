# Shardline's workers: shardline-event-worker (default), shardline-command-worker and
# the operator CLI shardline in one image; the task definition picks one with its
# command (an operator runs `shardline status`, `dlq`, ... as a one-off task).
# Build from the repository root:
#   docker build -f docker/worker.Dockerfile -t shardline-worker .
# Multi-stage: a Rust builder, then distroless (no shell, no package manager) as a
# non-root user. The healthcheck binary asks /healthz on METRICS_ADDR.

FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p shardline-worker -p shardline-cli \
    --bin shardline-event-worker --bin shardline-command-worker \
    --bin shardline --bin shardline-healthcheck

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/shardline-event-worker /usr/local/bin/shardline-event-worker
COPY --from=build /src/target/release/shardline-command-worker /usr/local/bin/shardline-command-worker
COPY --from=build /src/target/release/shardline /usr/local/bin/shardline
COPY --from=build /src/target/release/shardline-healthcheck /usr/local/bin/shardline-healthcheck
USER 65532:65532
ENV METRICS_ADDR=0.0.0.0:9100
EXPOSE 9100
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
    CMD ["/usr/local/bin/shardline-healthcheck"]
CMD ["/usr/local/bin/shardline-event-worker"]
