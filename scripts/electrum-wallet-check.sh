#!/usr/bin/env bash
# A real protocol-1.6 client against Sextant: Electrum 4.7 (from its source, dependencies from
# PyPI) on litecoind -regtest, over TLS, through tests/electrum47/launcher.py (which points
# Electrum's regtest network at Litecoin's constants). Checks that Electrum negotiates 1.6,
# follows the headers, syncs a wallet funded by litecoind, sends payments litecoind accepts,
# and follows two reorgs, ending with the balance litecoind's UTXO set holds for the wallet and
# the history at litecoind's heights. Prints PASS/FAIL per check and exits 1
# if any failed. A manual check, not part of scripts/test.sh.
#
# Environment (all optional):
#   SEXTANT_BIN       the server binary; default: cargo build --release of this tree
#   ELECTRUM_VERSION  a tag of spesmilo/electrum (default 4.7.2)
#   ELECTRUM_GIT      where to get it: a git URL (default GitHub) or a local git directory
#   ELECTRUM_CACHE    source tree and venv (default ~/.cache/sextant-electrum)
#   KEEP=1            keep the work directory (logs, datadirs) instead of deleting it
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

ver="${ELECTRUM_VERSION:-4.7.2}"
cache="${ELECTRUM_CACHE:-$HOME/.cache/sextant-electrum}"
src="$cache/electrum-$ver"
venv="$cache/venv"
launcher="$repo/tests/electrum47/launcher.py"

# ---------------------------------------------------------------- what it needs
apt_need=()
command -v litecoind >/dev/null || apt_need+=(litecoind)
command -v jq >/dev/null || apt_need+=(jq)
command -v git >/dev/null || apt_need+=(git)
python3 -c 'import venv, ensurepip' 2>/dev/null || apt_need+=(python3-venv)
# electrum_ecc (Electrum's secp256k1 binding) is told to use the system's libsecp256k1 rather
# than compile its own copy (which needs autotools and takes minutes).
ldconfig -p 2>/dev/null | grep -q 'libsecp256k1\.so ' || apt_need+=(libsecp256k1-dev)
if [ ${#apt_need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${apt_need[@]}"
fi

if [ -z "${SEXTANT_BIN:-}" ]; then
  bash scripts/deps.sh
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sextant-target}"
  cargo build --release --locked --bin sextant
  SEXTANT_BIN="$CARGO_TARGET_DIR/release/sextant"
fi

mkdir -p "$cache"
if [ ! -f "$src/run_electrum" ]; then
  git_src="${ELECTRUM_GIT:-https://github.com/spesmilo/electrum.git}"
  rm -rf "$src.tmp"
  if [ -d "$git_src" ]; then
    mkdir -p "$src.tmp"
    git --git-dir="$git_src" archive "$ver" | tar -x -C "$src.tmp"
  else
    git -c advice.detachedHead=false clone -q --depth 1 --branch "$ver" "$git_src" "$src.tmp"
  fi
  mv "$src.tmp" "$src"
fi
if [ ! -f "$venv/.electrum-$ver" ]; then
  python3 -m venv "$venv"
  # cryptography: Electrum's fast AES; the rest is Electrum's own list.
  ELECTRUM_ECC_DONT_COMPILE=1 "$venv/bin/pip" install -q --disable-pip-version-check \
    -r "$src/contrib/requirements/requirements.txt" cryptography
  touch "$venv/.electrum-$ver"
fi

# ---------------------------------------------------------------- checks
fails=0
checks=0
pass() { checks=$((checks + 1)); echo "PASS  $1"; }
fail() { checks=$((checks + 1)); fails=$((fails + 1)); echo "FAIL  $1${2:+: $2}"; }
# check NAME EXPECTED ACTUAL
check() { if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "expected $2, got $3"; fi; }
# wait_until SECONDS COMMAND…: polls COMMAND until it succeeds; fails after SECONDS.
wait_until() {
  local end=$((SECONDS + $1))
  shift
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $end ] || return 1
    sleep 0.5
  done
}

wd=$(mktemp -d /tmp/sextant-electrum-check.XXXXXX)
pids=()
cleanup() {
  set +e
  [ -n "${el_ready:-}" ] && el stop >/dev/null 2>&1
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
  lcli stop >/dev/null 2>&1
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null; done
  sleep 1
  if [ "${KEEP:-0}" = 1 ] || [ "$fails" -gt 0 ]; then echo "logs and data kept in $wd"; else rm -rf "$wd"; fi
}
trap cleanup EXIT

read -r rpcport tlsport adminport < <(python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(3)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
)

mkdir -p "$wd/litecoind" "$wd/db" "$wd/electrum"
lcli() { litecoin-cli -regtest -datadir="$wd/litecoind" -rpcport="$rpcport" -rpcuser=sextant -rpcpassword=sextant "$@"; }
lw() { lcli -rpcwallet=main "$@"; }
el() { "$venv/bin/python" "$launcher" "$src" --regtest -D "$wd/electrum" "$@"; }
admin() {
  python3 - "$adminport" "$@" <<'EOF'
import json, socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=10)
s.sendall((json.dumps({"jsonrpc": "2.0", "id": 1, "method": sys.argv[2], "params": sys.argv[3:]}) + "\n").encode())
buf = b""
while not buf.endswith(b"\n"):
    chunk = s.recv(65536)
    if not chunk:
        break
    buf += chunk
print(json.dumps(json.loads(buf)["result"]))
EOF
}
# calc EXPR: decimal arithmetic on LTC amounts, printed as Electrum prints them (no trailing zeros).
calc() {
  python3 - "$1" <<'EOF'
import re, sys
from decimal import Decimal
expr = re.sub(r"[0-9.]+(?:[eE][-+]?[0-9]+)?", lambda m: f"Decimal('{m.group()}')", sys.argv[1])
print(format(eval(expr).normalize(), "f"))
EOF
}
mine() { lw generatetoaddress "$1" "$miner" >/dev/null; }
# A reorg's new branch pays a fresh address: within the same second, mining the same
# transactions to the same address would rebuild the invalidated block itself.
mine_branch() { lw generatetoaddress "$1" "$(lw getnewaddress "" bech32)" >/dev/null; }
height() { lcli getblockcount; }

echo "work directory $wd (litecoind rpc $rpcport, Sextant ssl $tlsport, admin $adminport)"
litecoind -regtest -daemon=0 -txindex=1 -server -listen=0 -datadir="$wd/litecoind" \
  -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 -rpcport="$rpcport" -rpcuser=sextant -rpcpassword=sextant \
  -fallbackfee=0.0001 -printtoconsole=0 &
pids+=($!)
wait_until 60 lcli getblockcount || { echo "litecoind did not start"; exit 1; }
lcli -named createwallet wallet_name=main >/dev/null
lcli -named createwallet wallet_name=mweb >/dev/null
miner=$(lw getnewaddress "" bech32)

# A chain past MWEB activation (block 432 must carry a HogEx, which needs a peg-in), so that
# Electrum checks merkle proofs in blocks with a HogEx. The peg-in comes from a second wallet,
# so the main wallet never spends MWEB coins (that would be a peg-out).
mine 430
lw sendtoaddress "$(lcli -rpcwallet=mweb getnewaddress "" bech32)" 10 >/dev/null
mine 1
lcli -rpcwallet=mweb sendtoaddress "$(lcli -rpcwallet=mweb getnewaddress "" mweb)" 1 >/dev/null
mine 1
mine 8
echo "litecoind at height $(height), MWEB active: $(lcli getblockchaininfo | jq .softforks.mweb.active)"

COIN=Litecoin NET=regtest DB_DIRECTORY="$wd/db" \
  DAEMON_URL="http://sextant:sextant@127.0.0.1:$rpcport/" \
  SERVICES="ssl://127.0.0.1:$tlsport,rpc://127.0.0.1:$adminport" SSL_SELF_SIGNED=1 \
  DAEMON_POLL_INTERVAL_BLOCKS=100 DAEMON_POLL_INTERVAL_MEMPOOL=100 LOG_LEVEL=info \
  "$SEXTANT_BIN" >"$wd/sextant.log" 2>&1 &
pids+=($!)
synced() { [ "$(admin getinfo | jq '."db height"')" = "$(height)" ] && (echo >"/dev/tcp/127.0.0.1/$tlsport") 2>/dev/null; }
wait_until 120 synced || { echo "Sextant did not sync; see $wd/sextant.log"; exit 1; }
echo "Sextant $(admin getinfo | jq -r .version) synced to $(height)"

el -v daemon --oneserver -s "127.0.0.1:$tlsport:s" >"$wd/electrum.log" 2>&1 &
pids+=($!)
wait_until 60 el getinfo || { echo "Electrum daemon did not start; see $wd/electrum.log"; exit 1; }
el_ready=1
el create --seed_type segwit >/dev/null
el load_wallet >/dev/null
echo "Electrum $(el version) daemon up, wallet created"

probe() { el sextant_probe; }
# txinfo TXID: "HEIGHT VERIFIED_BLOCK_HASH" as the wallet holds the transaction (0 null: mempool)
txinfo() { el sextant_txinfo "$1" | jq -r '"\(.height) \(.verified_block)"'; }
conf_in() { [ "$(txinfo "$1")" = "$2" ]; }
connected() { [ "$(probe | jq .connected)" = true ]; }
wait_until 60 connected || fail "Electrum connects to Sextant over TLS" "see $wd/electrum.log"

# 1. Protocol 1.6, seen from both ends.
check "Electrum negotiated protocol" 1.6 "$(probe | jq -r .protocol)"
logged=$(grep -o "connection established. version: .*, handshake" "$wd/electrum.log" | head -1 || true)
check "Electrum's log: server.version answer" "connection established. version: ['$(admin getinfo | jq -r .version)', '1.6'], handshake" "$logged"
check "Sextant's session: client and protocol" "electrum/$ver 1.6" \
  "$(admin sessions | jq -r '.[] | "\(.[3]) \(.[4])"' | head -1)"

# 2. Headers: Electrum's local chain is litecoind's.
at_tip() { [ "$(probe | jq -r .tip_hash)" = "$(lcli getbestblockhash)" ]; }
wait_until 60 at_tip || true
check "Electrum's tip (height $(height))" "$(lcli getbestblockhash)" "$(probe | jq -r .tip_hash)"

# 3. Funding in the mempool: four payments to two addresses, so the server's history of each
# holds several mempool transactions (1.6 clients reject any but the canonical order).
addr_a=$(el getunusedaddress)
addr_b=$(el listaddresses --receiving | jq -r '.[1]')
fund_txids=()
for pay in "$addr_a 1.0" "$addr_a 2.0" "$addr_b 0.5" "$addr_b 0.25"; do
  set -- $pay
  fund_txids+=("$(lw sendtoaddress "$1" "$2")")
done
balance() { el getbalance | jq -r '"\(.confirmed) \(.unconfirmed // "0")"'; }
balance_is() { [ "$(balance)" = "$1" ]; }
wait_until 60 balance_is "0 3.75" || true
check "wallet sees 4 mempool payments (confirmed, unconfirmed)" "0 3.75" "$(balance)"

# 4. Spending unconfirmed coins: Electrum's payment has mempool parents (height -1 in 1.6's
# canonical order, after the height-0 ones).
dest1=$(lw getnewaddress "" bech32)
raw=$(el payto "$dest1" 0.3)
send1=$(el broadcast "$raw")
if lcli getmempoolentry "$send1" >/dev/null 2>&1; then
  pass "Electrum's payment (unconfirmed inputs) is in litecoind's mempool"
else
  fail "Electrum's payment (unconfirmed inputs) is in litecoind's mempool" "$send1"
fi
fee1=$(lcli getmempoolentry "$send1" | jq -r .fees.base)
after1=$(calc "3.75 - 0.3 - $fee1")
wait_until 60 balance_is "0 $after1" || true
check "wallet balance after its unconfirmed spend" "0 $after1" "$(balance)"

# 5. A block confirms all five.
mine 1
wait_until 60 balance_is "$after1 0" || true
check "wallet balance after a block (height $(height))" "$after1 0" "$(balance)"
check "litecoind received Electrum's payment" 0.30000000 "$(lw getreceivedbyaddress "$dest1" 1)"
tip_info="$(height) $(lcli getbestblockhash)"
all=1
for t in "${fund_txids[@]}" "$send1"; do
  wait_until 60 conf_in "$t" "$tip_info" || { all=0; fail "SPV proof of $t" "$(txinfo "$t")"; }
done
[ $all = 1 ] && pass "5 transactions SPV-verified in block $(height)"

# 6. A send of confirmed coins, confirmed.
dest2=$(lw getnewaddress "" bech32)
send2=$(el broadcast "$(el payto "$dest2" 0.7)")
fee2=$(lcli getmempoolentry "$send2" | jq -r .fees.base)
after2=$(calc "$after1 - 0.7 - $fee2")
# (the server's mempool history, not the wallet's own copy: `broadcast` does not add it)
wait_until 60 conf_in "$send2" "0 null" || true
check "wallet sees its second payment in the mempool" "0 null" "$(txinfo "$send2")"
mine 1
wait_until 60 conf_in "$send2" "$(height) $(lcli getbestblockhash)" || true
check "second payment confirmed and verified" "$(height) $(lcli getbestblockhash)" "$(txinfo "$send2")"
check "litecoind received the second payment" 0.70000000 "$(lw getreceivedbyaddress "$dest2" 1)"
wait_until 60 balance_is "$after2 0" || true
check "wallet balance after the second payment" "$after2 0" "$(balance)"

# 7. Reorg, the same transaction re-mined at the same height in another block: no status
# changes, so only the headers tell Electrum to check the proof again.
addr_c=$(el getunusedaddress)
t1=$(lw sendtoaddress "$addr_c" 0.125)
mine 1
fork=$(height)
old=$(lcli getbestblockhash)
wait_until 60 conf_in "$t1" "$fork $old" || true
check "funding tx verified in block $fork before the reorg" "$fork $old" "$(txinfo "$t1")"
lcli invalidateblock "$old"
mine_branch 2 # t1 is back in the mempool and goes into the new block at $fork
new_at_fork=$(lcli getblockhash "$fork")
wait_until 60 at_tip || true
check "Electrum follows the reorg to $(height)" "$(lcli getbestblockhash)" "$(probe | jq -r .tip_hash)"
wait_until 60 conf_in "$t1" "$fork $new_at_fork" || true
check "funding tx re-verified in the new block $fork" "$fork $new_at_fork" "$(txinfo "$t1")"
after3=$(calc "$after2 + 0.125")
check "wallet balance after the reorg" "$after3 0" "$(balance)"

# 8. Reorg that takes a confirmed payment back to the mempool: it is held out of the new
# branch, then mined later at another height.
t2=$(lw sendtoaddress "$addr_c" 0.0625)
mine 1
fork=$(height)
old=$(lcli getbestblockhash)
wait_until 60 conf_in "$t2" "$fork $old" || true
check "payment verified in block $fork before the second reorg" "$fork $old" "$(txinfo "$t2")"
lcli invalidateblock "$old"
lcli prioritisetransaction "$t2" 0 -100000000 >/dev/null
mine_branch 2
wait_until 60 at_tip || true
check "Electrum follows the second reorg to $(height)" "$(lcli getbestblockhash)" "$(probe | jq -r .tip_hash)"
wait_until 60 conf_in "$t2" "0 null" || true
check "reorged-out payment is unconfirmed again" "0 null" "$(txinfo "$t2")"
wait_until 60 balance_is "$after3 0.0625" || true
check "wallet balance with it unconfirmed" "$after3 0.0625" "$(balance)"
lcli prioritisetransaction "$t2" 0 100000000 >/dev/null
mine 1
wait_until 60 conf_in "$t2" "$(height) $(lcli getbestblockhash)" || true
check "payment confirmed again at $(height)" "$(height) $(lcli getbestblockhash)" "$(txinfo "$t2")"
after4=$(calc "$after3 + 0.0625")
wait_until 60 balance_is "$after4 0" || true
check "wallet balance at the end" "$after4 0" "$(balance)"
# The same figure from litecoind's own UTXO set, not from the amounts this script sent.
descs=$(el listaddresses | jq -c 'map("addr(\(.))")')
check "litecoind's UTXO set holds the wallet's balance" "$after4" \
  "$(calc "$(lcli scantxoutset start "$descs" | jq -r .total_amount)")"

# The wallet's history against the chain: every transaction at litecoind's height for it.
hist_ok=1
while read -r txid h; do
  want=$(lw gettransaction "$txid" | jq -r '.blockheight // 0')
  [ "$h" = "$want" ] || { hist_ok=0; echo "      $txid: Electrum $h, litecoind $want"; }
done < <(el onchain_history | jq -r '.[] | "\(.txid) \(.height)"')
n=$(el onchain_history | jq length)
if [ $hist_ok = 1 ] && [ "$n" = 8 ]; then pass "wallet history: 8 transactions at litecoind's heights"; else fail "wallet history" "$n transactions"; fi
check "still on protocol 1.6, one server connection" "1.6 true" "$(probe | jq -r '"\(.protocol) \(.connected)"')"
# Every status the wallet holds is the server's: any notification race is settled.
if out=$(el sextant_statuses | "$venv/bin/python" "$repo/tests/electrum47/statuses.py" 127.0.0.1 "$tlsport"); then
  pass "wallet statuses equal Sextant's (${out})"
else
  fail "wallet statuses equal Sextant's" "$out"
fi
races=$(grep -c "status mismatch" "$wd/electrum.log" || true)
echo "      (Electrum logged $races status-notification race(s): history fetched after it had changed again)"
complaints="RequestCorrupted|GracefulDisconnect|InvalidHeader|verification failed|Traceback|disconnecting due to|unexpected"
if grep -qE "$complaints" "$wd/electrum.log"; then
  fail "Electrum's log is free of protocol complaints" "$(grep -E "$complaints" "$wd/electrum.log" | head -3)"
else
  pass "Electrum's log is free of protocol complaints"
fi

echo "$((checks - fails))/$checks checks passed in ${SECONDS}s"
[ "$fails" = 0 ]
