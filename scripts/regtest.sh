#!/usr/bin/env bash
# Runs Sextant against a throw-away litecoind -regtest that this script starts and feeds with
# blocks (past MWEB activation), so the server can be tried on a fresh machine with no setup.
# Ctrl-C stops both. Data lives in ${REGTEST_DIR:-/tmp/sextant-regtest}.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sextant-target}"
cargo build --release --locked --bin sextant

dir="${REGTEST_DIR:-/tmp/sextant-regtest}"
mkdir -p "$dir/litecoind" "$dir/db"
rpcport="${RPC_PORT_REGTEST:-19443}"
cli=(litecoin-cli -regtest -datadir="$dir/litecoind" -rpcport="$rpcport" -rpcuser=sextant -rpcpassword=sextant)
litecoind -regtest -daemon -txindex=1 -server -listen=0 -datadir="$dir/litecoind" \
  -rpcport="$rpcport" -rpcuser=sextant -rpcpassword=sextant -fallbackfee=0.0001 -printtoconsole=0
trap '"${cli[@]}" stop >/dev/null 2>&1 || true' EXIT
for _ in $(seq 60); do "${cli[@]}" getblockcount >/dev/null 2>&1 && break; sleep 0.5; done
"${cli[@]}" createwallet demo >/dev/null 2>&1 || "${cli[@]}" loadwallet demo >/dev/null 2>&1 || true
height=$("${cli[@]}" getblockcount)
if [ "$height" -lt 440 ]; then
  addr=$("${cli[@]}" getnewaddress)
  "${cli[@]}" generatetoaddress 431 "$addr" >/dev/null
  # Litecoin needs a peg-in to an MWEB address before block 432 can be mined.
  "${cli[@]}" sendtoaddress "$("${cli[@]}" getnewaddress "" mweb)" 1 >/dev/null
  "${cli[@]}" generatetoaddress 10 "$addr" >/dev/null
fi
echo "litecoind regtest at height $("${cli[@]}" getblockcount); starting Sextant (Ctrl-C to stop)"
COIN=Litecoin NET=regtest DB_DIRECTORY="$dir/db" \
  DAEMON_URL="http://sextant:sextant@127.0.0.1:$rpcport/" \
  "$CARGO_TARGET_DIR/release/sextant"
