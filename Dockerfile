# Sextant in a container: configured entirely by environment variables (ElectrumX's names).
#   docker build -t sextant .
#   docker run -v sextant-db:/db -p 50001:50001 -p 50002:50002 \
#     -e COIN=Litecoin -e DAEMON_URL=http://user:pass@host.docker.internal:9332/ sextant

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends clang libclang-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY src src
COPY migrations migrations
COPY coins coins
COPY bench bench
RUN cargo build --release --locked --bin sextant --bin sextant-rpc \
    && strip target/release/sextant target/release/sextant-rpc

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /db --shell /usr/sbin/nologin sextant \
    && mkdir /db && chown sextant:sextant /db
COPY --from=build /src/target/release/sextant /usr/local/bin/sextant
# The admin RPC's client: docker exec CONTAINER sextant-rpc getinfo (with rpc:// in SERVICES).
COPY --from=build /src/target/release/sextant-rpc /usr/local/bin/sextant-rpc
USER sextant
VOLUME /db
# SERVICES is left to Sextant's default: tcp://:50001, plus ssl://:50002 once SSL_CERTFILE is
# set, so a certificate is all it takes to serve TLS.
ENV DB_DIRECTORY=/db \
    LOG_LEVEL=info
EXPOSE 50001 50002
# SIGTERM (docker stop) flushes the index; give it time: docker stop -t 600.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/sextant"]
