#!/usr/bin/env bash
# Initial-sync benchmark: the floor (raw block download), ElectrumX and Sextant, one after the
# other against the same cached regtest chain and the same litecoind.
#
#   bench/sync.sh                      # medium preset (100k transactions)
#   bench/sync.sh --preset large       # 300k transactions: the numbers in bench/README.md
#   bench/sync.sh --preset tiny        # CI smoke run
#   bench/sync.sh --txs 50000 --blocks 300 --payees 10000
#   ONLY="floor sextant" bench/sync.sh # skip ElectrumX
#   SEXTANT_BIN=/path/to/sextant bench/sync.sh # time another build (e.g. an older commit)
#   FULCRUM=/path/to/Fulcrum bench/sync.sh # Fulcrum too (bench/README.md: building Fulcrum)
#
# Arguments go to `bench-chain build` (bench/chain/main.rs), which builds the chain once and
# caches it in ${SEXTANT_BENCH_DIR:-~/.cache/sextant-bench}/chain-<params-hash>/. Results are
# printed as a table and kept in that directory's results/ folder.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sextant-target}"
ONLY="${ONLY:-floor electrumx fulcrum sextant}"
[ $# -eq 0 ] && set -- --preset medium

command -v litecoind >/dev/null || { apt-get update -qq && apt-get install -y -qq litecoind; }
[ -x /usr/bin/time ] || { apt-get update -qq && apt-get install -y -qq time; }

cargo build --release --locked --bin sextant --example bench-chain >&2
gen="$CARGO_TARGET_DIR/release/examples/bench-chain"
sextant="${SEXTANT_BIN:-$CARGO_TARGET_DIR/release/sextant}"
chain=$("$gen" build "$@" | tail -n 1)
blocks=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["blocks"])' "$chain/chain.json")
txs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["txs"])' "$chain/chain.json")
echo "chain: $chain ($blocks blocks, $txs transactions)" >&2

work=$(mktemp -d /tmp/sextant-sync.XXXXXX)
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
rpcport=$(free_port)
p2pport=$(free_port)
daemon_pid=""
bench_pid=""
cleanup() {
  [ -n "$bench_pid" ] && kill "$bench_pid" 2>/dev/null || true
  if [ -n "$daemon_pid" ]; then
    kill -TERM "$daemon_pid" 2>/dev/null || true
    wait "$daemon_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

litecoind -regtest -datadir="$chain/litecoind" -txindex=1 -server=1 -rest=1 -listen=0 -connect=0 \
  -dnsseed=0 -listenonion=0 -upnp=0 -discover=0 -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 \
  -rpcport="$rpcport" -port="$p2pport" -rpcuser=bench -rpcpassword=bench -rpcthreads=8 \
  -rpcworkqueue=512 -printtoconsole=0 >/dev/null 2>"$work/litecoind.err" &
daemon_pid=$!
cli=(litecoin-cli -regtest -rpcport="$rpcport" -rpcuser=bench -rpcpassword=bench)
for _ in $(seq 600); do "${cli[@]}" getblockcount >/dev/null 2>&1 && break; sleep 0.2; done
[ "$("${cli[@]}" getblockcount)" -eq $((blocks - 1)) ] || { echo "daemon not at the chain tip" >&2; exit 1; }
url="http://bench:bench@127.0.0.1:$rpcport/"

now() { date +%s.%N; }
# field NAME FILE: a value from /usr/bin/time -v output
field() { grep -F "$1" "$2" | head -n1 | awk -F': ' '{print $2}'; }

# run_server NAME LOGLINE SIGNAL -- CMD...: starts CMD under /usr/bin/time -v with an empty DB,
# waits until its log has LOGLINE, stops it with SIGNAL, records wall/RSS/CPU/DB size.
run_server() {
  local name=$1 line=$2 sig=$3
  shift 4
  local db="$work/$name-db" log="$work/$name.log" tv="$work/$name.time"
  rm -rf "$db"
  mkdir -p "$db"
  echo "== $name: syncing (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  local t0 t1
  t0=$(now)
  DB_DIRECTORY="$db" /usr/bin/time -v -o "$tv" "$@" >"$log" 2>&1 &
  bench_pid=$!
  until grep -qF "$line" "$log"; do
    if ! kill -0 "$bench_pid" 2>/dev/null; then
      echo "$name exited before its log said \"$line\":" >&2
      tail -n 30 "$log" >&2
      exit 1
    fi
    sleep 0.05
  done
  t1=$(now)
  local child
  child=$(pgrep -P "$bench_pid" | head -n1 || true)
  [ -n "$child" ] && kill "-$sig" "$child"
  wait "$bench_pid" || true
  bench_pid=""
  local secs rss user sys size
  secs=$(python3 -c "print(round($t1 - $t0, 2))")
  rss=$(field "Maximum resident set size" "$tv")
  user=$(field "User time (seconds)" "$tv")
  sys=$(field "System time (seconds)" "$tv")
  size=$(du -sb "$db" | cut -f1)
  echo "$name $secs $rss $user $sys $size" >>"$work/results"
  cp "$log" "$work/$name.log.keep"
  echo "== $name: $secs s, peak RSS $((rss / 1024)) MiB, DB $((size / 1000000)) MB" >&2
}

if [[ " $ONLY " == *" floor "* ]]; then
  # Warm the page cache with the block files first, then measure both ways of pulling blocks.
  "$gen" floor --port "$rpcport" --mode rpc --inflight 4 >/dev/null
  best=""
  # REST serves one block per request, and on loopback a reply's last segment often waits
  # ~40 ms for a delayed ACK: it needs many requests in flight (Sextant keeps 16).
  for run in "rpc 2" "rpc 4" "rest 4" "rest 8" "rest 16"; do
    read -r mode inflight <<<"$run"
    r=$("$gen" floor --port "$rpcport" --mode "$mode" --inflight "$inflight")
    echo "floor: $r" >&2
    echo "$r" >>"$work/floor.jsonl"
  done
  best=$(python3 -c '
import json,sys
rows=[json.loads(l) for l in open(sys.argv[1])]
b=min(rows,key=lambda r:r["seconds"])
print(b["seconds"], b["mode"], b["inflight"])' "$work/floor.jsonl")
  read -r fsecs fmode finflight <<<"$best"
  echo "floor $fsecs 0 0 0 0 $fmode/$finflight" >>"$work/results"
fi

if [[ " $ONLY " == *" electrumx "* ]]; then
  venv=$(bash scripts/electrumx-venv.sh)
  # "caught up to height N" comes before ElectrumX's final flush, "synced to height N" after it
  # (Sextant's "caught up with the daemon" is also logged after its flush).
  COIN=Litecoin NET=regtest DB_ENGINE=leveldb ALLOW_ROOT=1 PEER_DISCOVERY=off PEER_ANNOUNCE= \
    DAEMON_URL="$url" SERVICES="tcp://127.0.0.1:$(free_port)" \
    run_server electrumx "synced to height" INT -- "$venv/bin/electrumx_server"
fi

if [[ " $ONLY " == *" fulcrum "* ]] && [ -n "${FULCRUM:-}" ]; then
  # Fulcrum takes a config file, not environment variables; it logs "up-to-date" once synced
  # (its writes are durable as it goes). db_mem matches Sextant's default CACHE_MB.
  cat >"$work/fulcrum.conf" <<CONF
datadir = $work/fulcrum-db
bitcoind = 127.0.0.1:$rpcport
rpcuser = bench
rpcpassword = bench
tcp = 127.0.0.1:$(free_port)
peering = false
announce = false
db_mem = 1200
db_max_open_files = -1
CONF
  run_server fulcrum "up-to-date" INT -- "$FULCRUM" "$work/fulcrum.conf"
fi

if [[ " $ONLY " == *" sextant "* ]]; then
  COIN=Litecoin NET=regtest DAEMON_URL="$url" SERVICES="tcp://127.0.0.1:$(free_port)" \
    run_server sextant "caught up with the daemon" TERM -- "$sextant"
fi

mkdir -p "$chain/results"
stamp=$(date -u +%Y%m%dT%H%M%SZ)
python3 - "$work/results" "$blocks" "$txs" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" \
  >"$chain/results/$stamp.md" <<'EOF'
import sys
path, blocks, txs, cores, load = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
rows = {}
for line in open(path):
    f = line.split()
    rows[f[0]] = f
print(f"chain: {blocks:,} blocks, {txs:,} transactions; {cores} cores; load after run {load}\n")
print("| run | wall s | blocks/s | tx/s | peak RSS MiB | CPU s (user+sys) | DB MB |")
print("|---|---:|---:|---:|---:|---:|---:|")
for name in ("floor", "electrumx", "fulcrum", "sextant"):
    if name not in rows:
        continue
    f = rows[name]
    secs = float(f[1])
    if name == "floor":
        label = f"floor ({f[6]})"
        print(f"| {label} | {secs:.2f} | {blocks/secs:,.0f} | {txs/secs:,.0f} | – | – | – |")
        continue
    rss, cpu, size = int(f[2]) / 1024, float(f[3]) + float(f[4]), int(f[5]) / 1e6
    print(f"| {name} | {secs:.2f} | {blocks/secs:,.0f} | {txs/secs:,.0f} | {rss:,.0f} | {cpu:.1f} | {size:,.1f} |")
print()
if "electrumx" in rows and "sextant" in rows:
    e, s = float(rows["electrumx"][1]), float(rows["sextant"][1])
    print(f"ElectrumX / Sextant wall time: {e/s:.2f}x")
    es, ss = int(rows["electrumx"][5]), int(rows["sextant"][5])
    print(f"Sextant DB / ElectrumX DB: {ss/es:.2f}")
if "fulcrum" in rows and "sextant" in rows:
    f, s = float(rows["fulcrum"][1]), float(rows["sextant"][1])
    print(f"Fulcrum / Sextant wall time: {f/s:.2f}x")
    fs, ss = int(rows["fulcrum"][5]), int(rows["sextant"][5])
    print(f"Sextant DB / Fulcrum DB: {ss/fs:.2f}")
if "sextant" in rows and "floor" in rows:
    s, fl = float(rows["sextant"][1]), float(rows["floor"][1])
    print(f"Sextant / floor wall time: {s/fl:.2f}x")
EOF
cat "$chain/results/$stamp.md"
for f in "$work"/*.log.keep; do cp "$f" "$chain/results/$stamp-$(basename "$f" .log.keep).log"; done
echo "(kept in $chain/results/$stamp.md)" >&2
