#!/usr/bin/env bash
# Installs what building and testing Sextant needs on Debian: clang for the rocksdb crate's
# bindings, litecoind for the integration tests, and prometheus for the dashboard's test.
# Skips what is already there.
set -euo pipefail
need=()
command -v clang >/dev/null || need+=(clang libclang-dev)
[ -e /usr/lib/llvm-14/lib/libclang.so ] || ls /usr/lib/llvm-*/lib/libclang*.so >/dev/null 2>&1 || need+=(libclang-dev)
command -v litecoind >/dev/null || need+=(litecoind)
command -v openssl >/dev/null || need+=(openssl)  # the TLS tests make their certificates with it
[ -x /usr/bin/prometheus ] || need+=(prometheus)  # tests/grafana_dashboard.rs evaluates the dashboard's queries
if [ ${#need[@]} -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${need[@]}"
fi
