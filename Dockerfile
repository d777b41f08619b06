# syntax=docker/dockerfile:1
# Ferry's image: the `ferry` binary alone on distroless, run as uid 65532. The operator, and the
# precheck, worker, release and compare pods it starts, all run this image.
#
#   docker build -t ghcr.io/ferry-dev/ferry:0.1.0 .
#
# Checked statically by tests/chart.rs (stages, user, entrypoint).

FROM rust:1-bookworm AS builder
WORKDIR /src

# Dependencies first, in a layer of their own: the real manifest and lockfile with a stub crate,
# so that only a change of Cargo.toml or Cargo.lock rebuilds them.
COPY Cargo.toml Cargo.lock ./
# mysql_async with Ferry's patch (vendor/mysql_async/FERRY-PATCH.md).
COPY vendor ./vendor
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked --bin ferry \
    && rm -rf src

# Then Ferry itself. The touch makes the sources newer than the stub's build, so cargo rebuilds
# the crate whatever times the copy gives them.
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin ferry \
    && install -D -m 0755 target/release/ferry /out/ferry

# glibc and libgcc only: no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="ferry" \
      org.opencontainers.image.description="Kubernetes operator for database migration, continuous sync and data verification" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="gcr.io/distroless/cc-debian12:nonroot"
COPY --from=builder /out/ferry /usr/local/bin/ferry
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/ferry"]
