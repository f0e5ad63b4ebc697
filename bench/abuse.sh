#!/usr/bin/env bash
# Burst benchmark (issue 15): Sextant on litecoind and the bench chain, then
#   - 500 clients making a TLS handshake (and a server.version) at the same instant, ROUNDS times;
#   - 500 sessions each sending a batch just under MAX_RECV (1 MB) at once, with an honest session
#     beside them, for a batch of pings and a batch of block headers.
#
#   bench/abuse.sh                       # large preset chain (as bench/load.sh --preset large)
#   SESSIONS=200 ROUNDS=5 bench/abuse.sh --preset tiny
#   SEXTANT_BIN=/path/to/sextant bench/abuse.sh
#
# Each run starts a fresh Sextant on the synced database, so each peak RSS is its own. Every
# limit is at its default (loopback clients are exempt from CONNECTION_RATE_LIMIT, as a real
# storm's many addresses would each be within it). One JSON line per run (bench/abuse/main.rs says what is in it).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sextant-target}"
SESSIONS="${SESSIONS:-500}"
ROUNDS="${ROUNDS:-3}"
[ $# -eq 0 ] && set -- --preset large

command -v litecoind >/dev/null || { apt-get update -qq && apt-get install -y -qq litecoind; }
cargo build --release --locked --bin sextant --example bench-chain --example bench-abuse >&2
rel="$CARGO_TARGET_DIR/release"
chain=$("$rel/examples/bench-chain" build "$@" | tail -n 1)

work=$(mktemp -d /tmp/sextant-abuse.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

cp -a "$chain/litecoind" "$work/litecoind"
rpcport=$(free_port)
litecoind -regtest -datadir="$work/litecoind" -txindex=1 -server=1 -listen=0 -connect=0 \
  -dnsseed=0 -listenonion=0 -upnp=0 -discover=0 -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 \
  -rpcport="$rpcport" -port="$(free_port)" -rpcuser=bench -rpcpassword=bench -rpcthreads=8 \
  -printtoconsole=0 >/dev/null 2>"$work/litecoind.err" &
pids+=($!)
for _ in $(seq 600); do
  litecoin-cli -regtest -rpcport="$rpcport" -rpcuser=bench -rpcpassword=bench getblockcount \
    >/dev/null 2>&1 && break
  sleep 0.2
done

tcp=$(free_port)
ssl=$(free_port)
export COIN=Litecoin NET=regtest DAEMON_URL="http://bench:bench@127.0.0.1:$rpcport/" \
  PEER_DISCOVERY=off PEER_ANNOUNCE= DB_DIRECTORY="$work/db" SSL_SELF_SIGNED=1 \
  SERVICES="tcp://127.0.0.1:$tcp,ssl://127.0.0.1:$ssl"
mkdir -p "$work/db"

# start: Sextant in the background until its TCP port answers; its pid in $pid.
start() {
  "${SEXTANT_BIN:-$rel/sextant}" >>"$work/sextant.log" 2>&1 &
  pid=$!
  pids+=("$pid")
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $tcp), 1)" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || { tail -n 30 "$work/sextant.log" >&2; exit 1; }
    sleep 0.2
  done
}
stop() {
  kill -TERM "$pid"
  wait "$pid" || true
}

echo "== syncing $chain" >&2
start
stop
run() {
  start
  sleep 1
  local r
  r=$("$rel/examples/bench-abuse" "$@" --pid "$pid")
  kill -0 "$pid" || { echo "Sextant died:" >&2; tail -n 30 "$work/sextant.log" >&2; exit 1; }
  stop
  echo "$r"
}
for _ in $(seq "$ROUNDS"); do
  run handshakes --port "$ssl" --count "$SESSIONS"
done
for method in ping header; do
  run batches --port "$tcp" --sessions "$SESSIONS" --method "$method"
done
if grep -E ' (WARN|ERROR) ' "$work/sextant.log" >&2; then
  echo "(the warnings and errors above were logged)" >&2
fi
