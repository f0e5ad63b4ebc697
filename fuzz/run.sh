#!/usr/bin/env bash
# Builds the fuzz targets once, then runs them one at a time at nice 19, FUZZ_SECONDS each (600),
# seeding the corpora first if there are none. Fork mode with -ignore_crashes keeps a target
# running after a crash (each one lands in artifacts/<target>/); one fuzzing process at a time
# all the same. Runs the built binaries directly, so editing the sources meanwhile is safe.
# Usage: fuzz/run.sh [target…]   Logs: $FUZZ_LOGS (/tmp/sextant-fuzz-logs), one per target.
# FUZZ_NO_BUILD=1 runs what is already built.
set -euo pipefail
cd "$(dirname "$0")"
seconds=${FUZZ_SECONDS:-600}
logs=${FUZZ_LOGS:-/tmp/sextant-fuzz-logs}
bin=${CARGO_TARGET_DIR:-target}/x86_64-unknown-linux-gnu/release
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
[ -n "${FUZZ_NO_BUILD:-}" ] || nice -n 19 cargo +nightly fuzz build -s none -a
mkdir -p "$logs"
[ -d corpus ] || python3 seed.py
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t" "artifacts/$t"
    started=$(date +%s)
    nice -n 19 "$bin/$t" -artifact_prefix="artifacts/$t/" -max_total_time="$seconds" \
        -fork=1 -ignore_crashes=1 -timeout=10 -max_len=100000 -rss_limit_mb=2048 \
        -print_final_stats=1 "corpus/$t" >"$logs/$t.log" 2>&1 || true
    last=$(grep -E '^#[0-9]+: cov:' "$logs/$t.log" | tail -1)
    echo "$t: $(($(date +%s) - started)) s; ${last:-no stats}; artifacts: $(ls "artifacts/$t" | wc -l)"
done
