#!/usr/bin/env bash
# The test command: installs missing system packages, then runs every test (unit, parser
# vectors, and the integration suites against a real litecoind -regtest started by the tests).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/deps.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/sextant-target}"
cargo build --bins --tests --locked
cargo test --locked -- --test-threads 2
