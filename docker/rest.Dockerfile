# The Discord REST proxy, shardline-rest, with the healthcheck binary the gateway and
# worker images use (it asks /healthz on the port of REST_LISTEN).
# Build from the repository root:
#   docker build -f docker/rest.Dockerfile -t shardline-rest .
# Multi-stage: a Rust builder, then distroless (no shell, no package manager) as a
# non-root user.

FROM rust:1.89-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p shardline-rest --bin shardline-rest \
    -p shardline-worker --bin shardline-healthcheck

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/shardline-rest /usr/local/bin/shardline-rest
COPY --from=build /src/target/release/shardline-healthcheck /usr/local/bin/shardline-healthcheck
USER 65532:65532
ENV REST_LISTEN=0.0.0.0:8080
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/shardline-healthcheck"]
CMD ["/usr/local/bin/shardline-rest"]
