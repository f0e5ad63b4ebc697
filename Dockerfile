# Sextant in a container: configured entirely by environment variables (ElectrumX's names).
#   docker build -t sextant .          (or: podman build -t sextant .)
#   docker run -v sextant-db:/db -p 50001:50001 -p 50002:50002 \
#     -e COIN=Litecoin -e DAEMON_URL=http://user:pass@host.docker.internal:9332/ sextant
# scripts/image-test.sh builds this image and runs it against a regtest litecoind.

FROM rust:1-bookworm AS build
# librocksdb-sys generates its bindings with bindgen, which needs libclang.
RUN apt-get update && apt-get install -y --no-install-recommends clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The dependencies (RocksDB's C++ is most of a cold build: ~20 minutes on two cores) are built in
# their own layer, from the manifest and lock file alone, so a change to Sextant's sources rebuilds
# only Sextant. Every target the manifest names must exist for cargo to read it, hence the
# placeholders. Sextant's own artifacts and fingerprints are then deleted: COPY keeps the sources'
# modification times, which may be older than the placeholders' outputs, and cargo would take the
# placeholders' builds as up to date.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src/bin bench/chain bench/load \
    && echo 'fn main() {}' > src/main.rs \
    && for f in src/bin/sextant-rpc.rs bench/chain/main.rs bench/load/main.rs bench/query.rs \
         build.rs; do cp src/main.rs "$f"; done \
    && touch src/lib.rs \
    && cargo build --release --locked --bin sextant --bin sextant-rpc \
    && rm -rf src bench build.rs target/release/.fingerprint/sextant-* \
         target/release/build/sextant-* target/release/deps/*sextant* target/release/sextant*
COPY build.rs ./
COPY migrations migrations
COPY coins coins
COPY bench bench
COPY src src
RUN cargo build --release --locked --bin sextant --bin sextant-rpc \
    && strip target/release/sextant target/release/sextant-rpc

FROM debian:bookworm-slim
# No packages added: Sextant links only glibc, libstdc++ and libgcc (all in the slim image), and
# it verifies no certificate against a CA list (peers' certificates are accepted as ElectrumX
# does), so ca-certificates would be dead weight.
RUN useradd --system --uid 10001 --home /db --shell /usr/sbin/nologin sextant \
    && mkdir /db && chown sextant:sextant /db
COPY --from=build /src/target/release/sextant /usr/local/bin/sextant
# The admin RPC's client: docker exec CONTAINER sextant-rpc getinfo (with rpc:// in SERVICES).
COPY --from=build /src/target/release/sextant-rpc /usr/local/bin/sextant-rpc
USER sextant
VOLUME /db
# SERVICES is left to Sextant's default: tcp://:50001 and ssl://:50002. As with the ElectrumX
# image, TLS answers at once: SSL_SELF_SIGNED makes a self-signed certificate on first start into
# the volume (/db/sextant.crt, key /db/sextant.key) and reuses it on every start, since wallets
# pin it on first use. SSL_CERTFILE/SSL_KEYFILE, when set, are served instead. Sextant makes the
# certificate itself rather than an entrypoint script: no openssl in the image, and one code path,
# tested by cargo test, that writes the key 0600 and survives a crash mid-write.
ENV DB_DIRECTORY=/db \
    LOG_LEVEL=info \
    SSL_SELF_SIGNED=1
EXPOSE 50001 50002
# SIGTERM (docker stop) flushes the index; give it time: docker stop -t 600.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sextant"]
