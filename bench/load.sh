#!/usr/bin/env bash
# Wallet-load benchmark: Sextant and ElectrumX on the same litecoind and chain, in one run.
#
#   bench/load.sh                       # medium preset chain, 500 sessions
#   bench/load.sh --preset large        # the numbers in bench/README.md
#   SESSIONS=200 RATE=1000 bench/load.sh --preset tiny
#   ONLY=sextant bench/load.sh          # skip ElectrumX
#   SEXTANT_BIN=/path/to/sextant bench/load.sh # load another build (e.g. an older commit)
#   POOL_BLOCKS=300 bench/load.sh --preset tiny  # draw wallets' scripts from more blocks
#   FULCRUM=/path/to/Fulcrum bench/load.sh  # Fulcrum too (bench/README.md: building Fulcrum)
#   ZIPF=1 MAX_SEND=20000000 bench/load.sh       # hot-address mode: wallets share Zipf-hot scripts
#   PROFILE=debug bench/load.sh                  # the dev build (no release build needed)
#
# Arguments go to `bench-chain build` (the cached chain of bench/sync.sh). The daemon runs on a
# copy of the cached datadir, because the notification phase sends a transaction and mines a
# block. Both servers sync, then are restarted (so peak RSS is the serving process's, not the
# initial sync's) and measured one after the other with `bench-load` (bench/load/main.rs); the
# server not being measured is paused with SIGSTOP so it takes no CPU. Both poll the daemon
# every 200 ms (DAEMON_POLL_INTERVAL_*), so the notification times are not mostly polling.
# ElectrumX runs with its 1 s TCP write hold set to 0. Both run with cost limits off: a wallet
# whose start-up pulls a Zipf-hot history passes the default soft limit and is then slowed on
# purpose (REQUEST_SLEEP), which would show as latency. SEXTANT_SOFT/SEXTANT_HARD set
# Sextant's (e.g. 1000 and 10000, the defaults) to see the throttle at work.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sextant-target}"
ONLY="${ONLY:-sextant electrumx fulcrum}"
PROFILE="${PROFILE:-release}"
SESSIONS="${SESSIONS:-500}"
RATE="${RATE:-500}"
[ $# -eq 0 ] && set -- --preset medium

command -v litecoind >/dev/null || { apt-get update -qq && apt-get install -y -qq litecoind; }

if [ "$PROFILE" = release ]; then
  cargo build --release --locked --bin sextant --example bench-chain --example bench-load >&2
else
  cargo build --locked --bin sextant --example bench-chain --example bench-load >&2
fi
rel="$CARGO_TARGET_DIR/$PROFILE"
chain=$("$rel/examples/bench-chain" build "$@" | tail -n 1)
echo "chain: $chain" >&2

work=$(mktemp -d /tmp/sextant-load.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pids=()
cleanup() {
  for p in "${pids[@]}"; do
    kill -CONT "$p" 2>/dev/null || true
    kill -TERM "$p" 2>/dev/null || true
  done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

cp -a "$chain/litecoind" "$work/litecoind"
rpcport=$(free_port)
litecoind -regtest -datadir="$work/litecoind" -txindex=1 -server=1 -listen=0 -connect=0 \
  -dnsseed=0 -listenonion=0 -upnp=0 -discover=0 -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 \
  -rpcport="$rpcport" -port="$(free_port)" -rpcuser=bench -rpcpassword=bench -rpcthreads=8 \
  -rpcworkqueue=512 -printtoconsole=0 >/dev/null 2>"$work/litecoind.err" &
pids+=($!)
cli=(litecoin-cli -regtest -rpcport="$rpcport" -rpcuser=bench -rpcpassword=bench)
for _ in $(seq 600); do "${cli[@]}" getblockcount >/dev/null 2>&1 && break; sleep 0.2; done
# Every run draws its wallets' scripthashes from the chain as built, before any mined block.
pool_tip=$("${cli[@]}" getblockcount)

export COIN=Litecoin NET=regtest DAEMON_URL="http://bench:bench@127.0.0.1:$rpcport/" \
  PEER_DISCOVERY=off PEER_ANNOUNCE= DAEMON_POLL_INTERVAL_BLOCKS=200 DAEMON_POLL_INTERVAL_MEMPOOL=200

# start NAME PORT -- CMD...: runs CMD in the background (log in $work/NAME.log) until its
# Electrum port answers; leaves its pid in $server_pid.
start() {
  local name=$1 port=$2
  shift 3
  "$@" >>"$work/$name.log" 2>&1 &
  server_pid=$!
  pids+=("$server_pid")
  until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      echo "$name exited:" >&2
      tail -n 30 "$work/$name.log" >&2
      exit 1
    fi
    sleep 0.5
  done
}

# serve NAME PORT -- CMD...: syncs with CMD, stops it, starts it again to serve.
serve() {
  local name=$1 port=$2
  echo "== $name: syncing" >&2
  start "$@"
  kill -INT "$server_pid"
  wait "$server_pid" || true
  start "$@"
  echo "== $name: serving on $port (pid $server_pid)" >&2
}

declare -A pid_of port_of
if [[ " $ONLY " == *" sextant "* ]]; then
  port_of[sextant]=$(free_port)
  DB_DIRECTORY="$work/sextant-db" SERVICES="tcp://127.0.0.1:${port_of[sextant]}" \
    COST_SOFT_LIMIT="${SEXTANT_SOFT:-0}" COST_HARD_LIMIT="${SEXTANT_HARD:-0}" \
    serve sextant "${port_of[sextant]}" -- "${SEXTANT_BIN:-$rel/sextant}"
  pid_of[sextant]=$server_pid
fi
if [[ " $ONLY " == *" electrumx "* ]]; then
  venv=$(bash scripts/electrumx-venv.sh)
  port_of[electrumx]=$(free_port)
  mkdir -p "$work/electrumx-db"
  DB_DIRECTORY="$work/electrumx-db" DB_ENGINE=leveldb ALLOW_ROOT=1 COST_SOFT_LIMIT=0 \
    COST_HARD_LIMIT=0 SERVICES="tcp://127.0.0.1:${port_of[electrumx]}" \
    serve electrumx "${port_of[electrumx]}" -- "$venv/bin/python3" -c "
import sys
from electrumx.server import transport
transport.PaddedRSTransport.WAIT_FOR_BUFFER_GROWTH_SECONDS = 0.0
from electrumx.cli.electrumx_server import main
sys.exit(main())"
  pid_of[electrumx]=$server_pid
fi

if [[ " $ONLY " == *" fulcrum "* ]] && [ -n "${FULCRUM:-}" ]; then
  port_of[fulcrum]=$(free_port)
  # Fulcrum's limits per IP and on buffered bytes would refuse 500 sessions from one address;
  # it polls every 200 ms like the others.
  cat >"$work/fulcrum.conf" <<CONF
datadir = $work/fulcrum-db
bitcoind = 127.0.0.1:$rpcport
rpcuser = bench
rpcpassword = bench
tcp = 127.0.0.1:${port_of[fulcrum]}
peering = false
announce = false
polltime = 0.2
db_mem = 1200
db_max_open_files = -1
max_clients_per_ip = 0
max_pending_connections = 1000
max_buffer = 20000000
CONF
  serve fulcrum "${port_of[fulcrum]}" -- "$FULCRUM" "$work/fulcrum.conf"
  pid_of[fulcrum]=$server_pid
fi

declare -A labels=([sextant]=Sextant [electrumx]=ElectrumX [fulcrum]=Fulcrum)
for name in sextant electrumx fulcrum; do
  [ -n "${pid_of[$name]:-}" ] || continue
  for other in "${!pid_of[@]}"; do [ "$other" = "$name" ] || kill -STOP "${pid_of[$other]}"; done
  label=${labels[$name]}
  echo "== $label: $SESSIONS sessions (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  "$rel/examples/bench-load" --server "127.0.0.1:${port_of[$name]}" --daemon-port "$rpcport" \
    --pool-tip "$pool_tip" \
    --blocks "${POOL_BLOCKS:-100}" ${ZIPF:+--zipf "$ZIPF"} --sessions "$SESSIONS" --rate "$RATE" --label "$label" --pid "${pid_of[$name]}" \
    | tee -a "$work/results.jsonl"
  for other in "${!pid_of[@]}"; do [ "$other" = "$name" ] || kill -CONT "${pid_of[$other]}"; done
done

mkdir -p "$chain/results"
out="$chain/results/load-$(date -u +%Y%m%dT%H%M%SZ).md"
python3 - "$work/results.jsonl" "$(nproc)" >"$out" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{rows[0]['sessions']} sessions x {rows[0]['subscriptions per session']} subscriptions, "
      f"{sys.argv[2]} cores\n")
print("| server | storm req/s | storm p50 / p99 ms | steady req/s | steady p50 / p99 / max ms "
      "| errors | refused | stuck | mempool tx: last note / fan-out ms | block: last note / fan-out ms "
      "| peak RSS MiB | storm: server / client CPU s |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for r in rows:
    s, t, n = r["start-up storm"], r["steady load"], r.get("notifications", {})
    m, b = n.get("mempool transaction", {}), n.get("block", {})
    errors = s["errors"] + t["errors"] + m.get("sessions missing notifications", 0) \
        + b.get("sessions missing notifications", 0)
    print(f"| {r['label']} | {s['requests/s']:,.0f} | {s['p50 ms']:,.1f} / {s['p99 ms']:,.1f} "
          f"| {t['requests/s']:,.0f} | {t['p50 ms']:.2f} / {t['p99 ms']:.2f} / {t['max ms']:.1f} "
          f"| {errors} | {s['refused (over MAX_SEND)'] + t['refused (over MAX_SEND)']} "
          f"| {s['stuck sessions'] + t['stuck sessions']} "
          f"| {m.get('last note ms')} / {m.get('first to last ms')} "
          f"| {b.get('last note ms')} / {b.get('first to last ms')} | {r['peak RSS MiB']} "
          f"| {s.get('server CPU s')} / {s.get('client CPU s')} |")
by = {r["label"]: r for r in rows}
if "Sextant" in by and "ElectrumX" in by:
    sx, ex = by["Sextant"], by["ElectrumX"]
    ratio = sx["start-up storm"]["requests/s"] / max(ex["start-up storm"]["requests/s"], 1)
    print(f"\nstart-up storm throughput, Sextant / ElectrumX: {ratio:.1f}x")
    per_cpu = [r["start-up storm"].get("requests per server CPU s") for r in (sx, ex)]
    if all(per_cpu):
        print(f"start-up storm requests per server CPU second, Sextant / ElectrumX: "
              f"{per_cpu[0]:,.0f} / {per_cpu[1]:,.0f} = {per_cpu[0] / per_cpu[1]:.1f}x")
if "Sextant" in by and "Fulcrum" in by:
    sx, fu = by["Sextant"], by["Fulcrum"]
    ratio = sx["start-up storm"]["requests/s"] / max(fu["start-up storm"]["requests/s"], 1)
    print(f"start-up storm throughput, Sextant / Fulcrum: {ratio:.1f}x")
EOF
cat "$out"
# The servers' logs beside the table, for what the errors were.
for name in sextant electrumx fulcrum; do
  [ -f "$work/$name.log" ] && cp "$work/$name.log" "${out%.md}-$name.log"
done
echo "(kept in $out, with the servers' logs)" >&2
