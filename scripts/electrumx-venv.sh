#!/usr/bin/env bash
# Installs ElectrumX (PyPI `e-x`, the reference implementation Sextant is compared against) with
# LevelDB bindings into a virtualenv, once, and prints the venv's path. Used by the differential
# tests and the benchmarks; override the location with ELECTRUMX_VENV.
set -euo pipefail
venv="${ELECTRUMX_VENV:-$HOME/.cache/sextant-electrumx}"
if [ ! -x "$venv/bin/electrumx_server" ]; then
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install -q --disable-pip-version-check "e-x==2.0.0" plyvel >&2
fi
echo "$venv"
