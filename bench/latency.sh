#!/usr/bin/env bash
# Notification-latency benchmark: Sextant and ElectrumX on the same litecoind -regtest and chain,
# in one run. litecoind here has no ZMQ, so Sextant learns of blocks by its long-poll
# (waitforblockheight) and of mempool transactions by its mempool poll.
#
#   bench/latency.sh                    # 500 sessions, 1,000 scripthashes, 10 rounds
#   ROUNDS=3 SESSIONS=200 bench/latency.sh
#   ONLY=sextant bench/latency.sh       # skip ElectrumX
#   MEMPOOL_MS=50 bench/latency.sh      # both servers' mempool poll (ms), default 25 (README)
#   SEXTANT_BIN=/path/to/sextant bench/latency.sh
#   PROFILE=dev bench/latency.sh        # the dev profile's binaries (dependencies at -O2)
#
# Each server: SESSIONS sessions subscribe to headers and to two fresh scripthashes each; then
# ROUNDS rounds of one transaction paying all the scripthashes and one block confirming it
# (`bench-load --latency`, bench/load/main.rs). Per round: from `sendrawtransaction` returning
# to the last session's scripthash note, and from `generatetodescriptor` returning to the last
# session's scripthash note and to its header note. The server not being measured is paused
# (SIGSTOP) so it takes no CPU. Sextant runs as the README recommends for a daemon without ZMQ:
# mempool poll MEMPOOL_MS, block poll at its default 5 s (the long-poll does the work).
# ElectrumX, which can only poll, polls both blocks and mempool every MEMPOOL_MS, with its 1 s
# TCP write hold set to 0. Arguments go to `bench-chain build` (default: the tiny preset).
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sextant-target}"
ONLY="${ONLY:-sextant electrumx}"
SESSIONS="${SESSIONS:-500}"
ROUNDS="${ROUNDS:-10}"
MEMPOOL_MS="${MEMPOOL_MS:-25}"
[ $# -eq 0 ] && set -- --preset tiny

command -v litecoind >/dev/null || { apt-get update -qq && apt-get install -y -qq litecoind; }

PROFILE="${PROFILE:-release}"
cargo build --profile "$PROFILE" --locked --bin sextant --example bench-chain --example bench-load >&2
rel="$CARGO_TARGET_DIR/$([ "$PROFILE" = dev ] && echo debug || echo "$PROFILE")"
chain=$("$rel/examples/bench-chain" build "$@" | tail -n 1)
echo "chain: $chain" >&2

work=$(mktemp -d /tmp/sextant-latency.XXXXXX)
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

export COIN=Litecoin NET=regtest DAEMON_URL="http://bench:bench@127.0.0.1:$rpcport/" \
  PEER_DISCOVERY=off PEER_ANNOUNCE= COST_SOFT_LIMIT=0 COST_HARD_LIMIT=0

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

declare -A pid_of port_of
if [[ " $ONLY " == *" sextant "* ]]; then
  port_of[sextant]=$(free_port)
  DB_DIRECTORY="$work/sextant-db" SERVICES="tcp://127.0.0.1:${port_of[sextant]}" \
    DAEMON_POLL_INTERVAL_MEMPOOL="$MEMPOOL_MS" \
    start sextant "${port_of[sextant]}" -- "${SEXTANT_BIN:-$rel/sextant}"
  pid_of[sextant]=$server_pid
fi
if [[ " $ONLY " == *" electrumx "* ]]; then
  venv=$(bash scripts/electrumx-venv.sh)
  port_of[electrumx]=$(free_port)
  mkdir -p "$work/electrumx-db"
  DB_DIRECTORY="$work/electrumx-db" DB_ENGINE=leveldb ALLOW_ROOT=1 \
    DAEMON_POLL_INTERVAL_BLOCKS="$MEMPOOL_MS" DAEMON_POLL_INTERVAL_MEMPOOL="$MEMPOOL_MS" \
    SERVICES="tcp://127.0.0.1:${port_of[electrumx]}" \
    start electrumx "${port_of[electrumx]}" -- "$venv/bin/python3" -c "
import sys
from electrumx.server import transport
transport.PaddedRSTransport.WAIT_FOR_BUFFER_GROWTH_SECONDS = 0.0
from electrumx.cli.electrumx_server import main
sys.exit(main())"
  pid_of[electrumx]=$server_pid
fi

for name in sextant electrumx; do
  [ -n "${pid_of[$name]:-}" ] || continue
  for other in "${!pid_of[@]}"; do [ "$other" = "$name" ] || kill -STOP "${pid_of[$other]}"; done
  label=$([ $name = sextant ] && echo Sextant || echo ElectrumX)
  echo "== $label: $SESSIONS sessions, $ROUNDS rounds (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  "$rel/examples/bench-load" --server "127.0.0.1:${port_of[$name]}" --daemon-port "$rpcport" \
    --sessions "$SESSIONS" --latency "$ROUNDS" --timeout 60 --label "$label" \
    --pid "${pid_of[$name]}" | tee -a "$work/results.jsonl"
  for other in "${!pid_of[@]}"; do [ "$other" = "$name" ] || kill -CONT "${pid_of[$other]}" 2>/dev/null || true; done
done

mkdir -p "$chain/results"
out="$chain/results/latency-$(date -u +%Y%m%dT%H%M%SZ).md"
python3 - "$work/results.jsonl" "$(nproc)" "$MEMPOOL_MS" "$(cut -d' ' -f1-3 /proc/loadavg)" >"$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print(f"{rows[0]['sessions']} sessions, {rows[0]['scripthashes']} scripthashes, "
      f"{len(rows[0]['rounds'])} rounds, {sys.argv[2]} cores, mempool poll {sys.argv[3]} ms, "
      f"load average at the end {sys.argv[4]}\n")
print("ms from the daemon's answer (sendrawtransaction / generatetodescriptor) to the last "
      "session's note\n")
key = lambda r, what, note: r[what][note]
cols = [("tx: last scripthash", "mempool transaction", "last scripthash note ms"),
        ("block: last scripthash", "block", "last scripthash note ms"),
        ("block: last header", "block", "last header note ms")]
labels = [r["label"] for r in rows]
print("| round | " + " | ".join(f"{l} {c[0]}" for c in cols for l in labels) + " |")
print("|---:|" + "---:|" * (len(cols) * len(labels)))
n = len(rows[0]["rounds"])
for i in range(n):
    cells = [key(r["rounds"][i], c[1], c[2]) for c in cols for r in rows]
    print(f"| {i + 1} | " + " | ".join(f"{v:.1f}" if v is not None else "-" for v in cells) + " |")
def mx(r, c):
    vals = [key(x, c[1], c[2]) for x in r["rounds"]]
    return None if any(v is None for v in vals) else max(vals)
cells = [mx(r, c) for c in cols for r in rows]
print("| **max** | " + " | ".join(f"**{v:.1f}**" if v is not None else "-" for v in cells) + " |")
by = {r["label"]: r for r in rows}
if "Sextant" in by and "ElectrumX" in by:
    print()
    for c in cols:
        s, e = mx(by["Sextant"], c), mx(by["ElectrumX"], c)
        if s and e:
            print(f"- {c[0]}, max: ElectrumX / Sextant = {e / s:.1f}x ({e:.1f} / {s:.1f} ms)")
PY
cat "$out"
echo "(kept in $out)" >&2
