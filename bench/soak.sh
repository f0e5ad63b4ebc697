#!/usr/bin/env bash
# Soak benchmark (not CI): SESSIONS TLS wallets for SOAK_MINUTES against Sextant on its own
# litecoind -regtest, with blocks every 10 s, reorgs, a daemon restart, a Sextant kill -9 and
# restart, and abusive sessions; at the end every wallet is checked against the daemon.
# See bench/soak.py for what it does and bench/README.md for the results.
#
#   SEXTANT_BIN=/path/to/sextant nice -n 19 bench/soak.sh
#   SOAK_MINUTES=2 SOAK_SESSIONS=50 SOAK_ABUSERS=10 SEXTANT_BIN=... bench/soak.sh   # a short run
#
# Without SEXTANT_BIN it builds the release binary (cargo build --release --bin sextant).
# Python 3 (stdlib only), litecoind, openssl. Exits non-zero if anything was lost or unexpected.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v litecoind >/dev/null || { apt-get update -qq && apt-get install -y -qq litecoind; }
if [ -z "${SEXTANT_BIN:-}" ]; then
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sextant-target}"
  cargo build --release --locked --bin sextant >&2
  export SEXTANT_BIN="$CARGO_TARGET_DIR/release/sextant"
fi
ulimit -n 65536 2>/dev/null || true
exec python3 bench/soak.py "$@"
