#!/usr/bin/env bash
# Scale benchmark (issue 16): index servers sync mainnet-shaped chains served by the block-file
# stand-in, and report how the sync holds up as the index grows.
#
#   bench/scale.sh                               # the 1M-transaction chain
#   SIZES="1M 10M" bench/scale.sh                # the curve (each chain generated once, cached)
#   ONLY="floor sextant" bench/scale.sh          # skip ElectrumX
#   FULCRUM=/opt/fulcrum/Fulcrum bench/scale.sh  # Fulcrum too (bench/README.md: building Fulcrum)
#   MEMORY_LIMIT=2G SIZES=30M ONLY=sextant bench/scale.sh  # each server in a memory cgroup
#   KEEP_DB=/tmp/keep SIZES=10M ONLY=sextant bench/scale.sh  # keeps /tmp/keep/sextant-db
#   SEXTANT_BIN=/path/to/sextant SIZES=10M ONLY=sextant bench/scale.sh  # another build (e.g.
#                                                # with --features heap-profile and MALLOC_CONF)
#
# For each size: `scale-chain build --txs SIZE` (bench/scale/, cached in
# ${SEXTANT_BENCH_DIR:-~/.cache/sextant-bench}/scale-<params-hash>/), the floor (`bench-chain
# floor` pulling every block from `scale-daemon`), then each server from an empty DB, each
# against a fresh `scale-daemon`, with bench/scale/monitor.py beside it: one JSON line per
# SEGMENT (1M) transactions and one summary line per server (`"summary": true`; db_bytes
# measured after the server stopped, which for Sextant waits up to COMPACTION_WAIT s, 900, for
# the compaction after its sync: `compaction_s`). Once synced, bench/scale/queries.py times get_history,
# listunspent and get_balance of the probe scripts (10 to 1M entries; `"queries": true`, counts
# checked), then bench/scale/fresh.py subscribes to the scripts of the first held-back block,
# has the stand-in reveal it and times the notifications (`"fresh_block": true`). ElectrumX runs on chains of at most 10M transactions. Every line is
# printed and appended to the chain's results/scale-<stamp>.jsonl.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sextant-target}"
SIZES="${SIZES:-1M}"
ONLY="${ONLY:-floor sextant electrumx fulcrum}"
SEGMENT="${SEGMENT:-1000000}"
# Big enough for a 100k-entry history (ElectrumX's limit: (MAX_SEND - 100) // 99 entries), not
# for a 1M one, which must be refused fast.
MAX_SEND="${MAX_SEND:-20000000}"
ELECTRUMX_MAX_TXS=10000000

cargo build --release --locked --bin sextant --example scale-chain --example scale-daemon \
  --example bench-chain >&2
bin="$CARGO_TARGET_DIR/release"
work=$(mktemp -d /tmp/sextant-scale.XXXXXX)
daemon_pid=""
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  [ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
json_field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
emit() { echo "$1"; echo "$1" >>"$results"; }

# start_daemon / stop_daemon: a stand-in on $chain at $port ($url), its held-back blocks hidden.
start_daemon() {
  port=$(free_port)
  "$bin/examples/scale-daemon" --dir "$chain" --port "$port" >"$work/daemon.out" 2>&1 &
  daemon_pid=$!
  for _ in $(seq 300); do grep -q '"url"' "$work/daemon.out" && break; sleep 0.1; done
  url=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$work/daemon.out")
}

stop_daemon() {
  kill "$daemon_pid" 2>/dev/null || true
  wait "$daemon_pid" 2>/dev/null || true
  daemon_pid=""
}

# run_server NAME SIGNAL RPC_PORT TCP_PORT DONE -- CMD...: CMD from an empty DB (DB_DIRECTORY)
# with the monitor beside it until synced (DONE: a log line, or port:N), then the queries on the
# probe scripts (bench/scale/queries.py), then the fresh block, then stopped with SIGNAL. The caller has started a stand-in.
run_server() {
  local name=$1 sig=$2 rpc=$3 tcp=$4 done=$5
  shift 6
  local db="$work/$name-db" log="$work/$name.log"
  rm -rf "$db"
  mkdir -p "$db"
  echo "== $name: syncing $chain (load $(cut -d' ' -f1-3 /proc/loadavg))" >&2
  # MEMORY_LIMIT confines the server to a cgroup (v1 memory controller) whose limit counts the
  # page cache too, as a small VM's RAM would.
  local cg=""
  if [ -n "${MEMORY_LIMIT:-}" ]; then
    cg=/sys/fs/cgroup/memory/sextant-scale-$name-$$
    mkdir -p "$cg"
    echo "$MEMORY_LIMIT" >"$cg/memory.limit_in_bytes"
  fi
  local start done_args
  start=$(date +%s.%N)
  if [ -n "$cg" ]; then
    DB_DIRECTORY="$db" bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$cg" "$@" >"$log" 2>&1 &
  else
    DB_DIRECTORY="$db" "$@" >"$log" 2>&1 &
  fi
  server_pid=$!
  if [[ $done == port:* ]]; then done_args=(--done-port "${done#port:}"); else done_args=(--done "$done"); fi
  : >"$work/$name.jsonl"
  python3 bench/scale/monitor.py --name "$name" --pid "$server_pid" --rpc-port "$rpc" --db "$db" \
    --chain "$chain" --log "$log" "${done_args[@]}" ${LOG_HEIGHT:+--log-height "$LOG_HEIGHT"} --start "$start" --segment "$SEGMENT" \
    >"$work/$name.jsonl" || { tail -n 30 "$log" >&2; exit 1; } &
  local mon=$!
  # grep selects nothing for a server without segments (Fulcrum): that is no failure.
  tail -n +1 -f "$work/$name.jsonl" --pid "$mon" | { grep --line-buffered -v '"summary"' || true; } |
    while read -r l; do emit "$l"; done
  wait "$mon" || { tail -n 30 "$log" >&2; exit 1; }
  emit "$(python3 bench/scale/queries.py --name "$name" --port "$tcp" --chain "$chain")"
  emit "$(python3 bench/scale/fresh.py --name "$name" --port "$tcp" --daemon "$url" --chain "$chain")"
  # Sextant compacts what the sync wrote beside serving; its database's size is the compacted
  # one only once that is done (a stop interrupts it), so it is given up to COMPACTION_WAIT s.
  if [ "$name" = sextant ]; then
    for _ in $(seq "${COMPACTION_WAIT:-900}"); do grep -q "compaction done" "$log" && break; sleep 1; done
  fi
  kill "-$sig" "$server_pid"
  wait "$server_pid" || true
  server_pid=""
  local summary
  summary=$(python3 - "$work/$name.jsonl" "$db" "$cg" "$log" <<'PY'
import json, re, subprocess, sys
s = [json.loads(l) for l in open(sys.argv[1]) if '"summary"' in l][-1]
s["db_bytes"] = int(subprocess.run(["du", "-sb", sys.argv[2]], capture_output=True, text=True).stdout.split()[0])
s["db_bytes_per_tx"] = round(s["db_bytes"] / s["txs"], 1)
done = [l for l in open(sys.argv[4], errors="replace") if "compaction done in" in l]
if done:
    s["compaction_s"] = float(re.search(r"compaction done in ([0-9.]+)s", done[-1]).group(1))
# RocksDB's own log (Sextant's database): lines saying writes were slowed or stopped because
# compactions fell behind (level-0 files or pending bytes), the cost a bench run would hide.
try:
    rocks = open(f"{sys.argv[2]}/LOG", errors="replace").read()
    s["rocksdb_slowdown_lines"] = rocks.count("Stalling writes")
    s["rocksdb_stop_lines"] = rocks.count("Stopping writes")
except FileNotFoundError:
    pass
if sys.argv[3]:
    read = lambda f: int(open(f"{sys.argv[3]}/{f}").read())
    s["cgroup_limit_mb"] = read("memory.limit_in_bytes") >> 20
    s["cgroup_max_usage_mb"] = read("memory.max_usage_in_bytes") >> 20
    s["cgroup_limit_hits"] = read("memory.failcnt")
print(json.dumps(s))
PY
)
  [ -n "$cg" ] && rmdir "$cg" 2>/dev/null || true
  emit "$summary"
  cp "$log" "$chain/results/$stamp-$name.log"
  # RocksDB's own log: every flush and compaction, with its column family, bytes and time.
  [ -f "$db/LOG" ] && cp "$db/LOG" "$chain/results/$stamp-$name-rocksdb.log"
  # KEEP_DB=DIR keeps the synced database (DIR/NAME-db) for queries after the run.
  if [ -n "${KEEP_DB:-}" ]; then
    mkdir -p "$KEEP_DB"
    rm -rf "${KEEP_DB:?}/$name-db"
    mv "$db" "$KEEP_DB/$name-db"
  fi
}

stamp=$(date -u +%Y%m%dT%H%M%SZ)
for size in $SIZES; do
  chain=$("$bin/examples/scale-chain" build --txs "$size" | tail -n 1)
  mkdir -p "$chain/results"
  results="$chain/results/scale-$stamp.jsonl"
  txs=$(json_field "$chain/chain.json" txs)
  echo "chain: $chain ($(json_field "$chain/chain.json" blocks) blocks, $txs transactions, $(json_field "$chain/chain.json" bytes) bytes)" >&2

  if [[ " $ONLY " == *" floor "* ]]; then
    start_daemon
    for run in "rest 16" "rpc 4"; do
      read -r mode inflight <<<"$run"
      r=$("$bin/examples/bench-chain" floor --port "$port" --mode "$mode" --inflight "$inflight")
      emit "$(python3 -c 'import json,sys; r=json.loads(sys.argv[1]); r["server"]="floor"; r["txs"]=int(sys.argv[2]); r["tx_per_s"]=round(r["txs"]/r["seconds"]); print(json.dumps(r))' "$r" "$txs")"
    done
    stop_daemon
  fi

  # Both servers poll the daemon every 100 ms (for the fresh block) and run without cost limits
  # (the fresh block's session holds 1,000 subscriptions).
  if [[ " $ONLY " == *" sextant "* ]]; then
    start_daemon
    rpc=$(free_port)
    tcp=$(free_port)
    COIN=Litecoin NET=regtest DAEMON_URL="$url" PEER_DISCOVERY=off \
      DAEMON_POLL_INTERVAL_BLOCKS=100 COST_SOFT_LIMIT=0 COST_HARD_LIMIT=0 MAX_SEND="$MAX_SEND" \
      SERVICES="tcp://127.0.0.1:$tcp,rpc://127.0.0.1:$rpc" \
      run_server sextant TERM "$rpc" "$tcp" "caught up with the daemon" -- "${SEXTANT_BIN:-$bin/sextant}"
    stop_daemon
  fi

  if [[ " $ONLY " == *" electrumx "* ]] && [ "$txs" -le $((ELECTRUMX_MAX_TXS + 1)) ]; then
    venv=$(bash scripts/electrumx-venv.sh)
    start_daemon
    rpc=$(free_port)
    tcp=$(free_port)
    # "synced to height N" is logged after ElectrumX's final flush. Its getinfo says "db
    # height" -1 until then, so its progress is read from the log.
    LOG_HEIGHT='our height: ([0-9,]+)|Height ([0-9,]+) txs' \
      COIN=Litecoin NET=regtest DB_ENGINE=leveldb ALLOW_ROOT=1 PEER_DISCOVERY=off PEER_ANNOUNCE= \
      DAEMON_URL="$url" DAEMON_POLL_INTERVAL_BLOCKS=100 COST_SOFT_LIMIT=0 COST_HARD_LIMIT=0 MAX_SEND="$MAX_SEND" \
      SERVICES="tcp://127.0.0.1:$tcp,rpc://127.0.0.1:$rpc" \
      run_server electrumx INT "$rpc" "$tcp" "synced to height" -- "$venv/bin/electrumx_server"
    stop_daemon
  fi

  if [[ " $ONLY " == *" fulcrum "* ]] && [ -n "${FULCRUM:-}" ]; then
    start_daemon
    tcp=$(free_port)
    # Fulcrum opens its ports only once synced and has no admin getinfo with a height to
    # follow: it gets a summary line only.
    cat >"$work/fulcrum.conf" <<CONF
datadir = $work/fulcrum-db
bitcoind = 127.0.0.1:$port
rpcuser = bench
rpcpassword = bench
tcp = 127.0.0.1:$tcp
peering = false
announce = false
polltime = 0.5
db_mem = 1200
db_max_open_files = -1
CONF
    run_server fulcrum INT 0 "$tcp" "port:$tcp" -- "$FULCRUM" "$work/fulcrum.conf"
    stop_daemon
  fi
  echo "(kept in $results)" >&2
done
