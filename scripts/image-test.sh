#!/usr/bin/env bash
# Builds the container image from the Dockerfile with podman and runs it against a real
# `litecoind -regtest -txindex=1`:
#   1. the image builds (its size is printed, and must stay under MAX_IMAGE_MB);
#   2. the container syncs and answers `server.version` over TCP and over TLS, with no
#      certificate given: the self-signed one it made in its volume (SSL_SELF_SIGNED, set by the
#      image), whose fingerprint it logged, key mode 0600;
#   3. `podman exec … sextant-rpc getinfo` reaches the admin RPC inside it;
#   4. `podman stop` (SIGTERM) flushes the index and the container exits with status 0;
#   5. started again, it continues from the index in its volume (not from genesis), follows
#      the blocks mined while it was stopped and serves the same certificate;
#   6. deploy/compose.yaml's ltc service runs, serving the certificate given by SSL_CERTFILE.
# Run as root on Debian (installs podman, runc, debootstrap, litecoind, openssl if missing).
# The first build compiles RocksDB: ~20-30 minutes on two cores; later builds that change only
# Sextant's sources reuse the dependency layer. Without access to a container registry the base
# images are made locally by scripts/image-bases.sh.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-localhost/sextant:test}
MAX_IMAGE_MB=${MAX_IMAGE_MB:-200}
NAME=sextant-image-test-$$
VOLUME=$NAME-db

need=()
for tool in podman:podman runc:runc debootstrap:debootstrap litecoind:litecoind openssl:openssl; do
  command -v "${tool%%:*}" >/dev/null || need+=("${tool#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

# podman's defaults fail on some hosts, so adapt to this one:
# - crun refuses hosts with hybrid cgroups ("cgroups in hybrid mode not supported, drop all
#   controllers from cgroupv2"): use runc there, and build with chroot isolation;
# - without CAP_SYS_RESOURCE a container cannot get more open files than the host's hard limit
#   ("setrlimit RLIMIT_NOFILE: Operation not permitted"), and podman lowers its own RLIMIT_NPROC
#   to 32768 before starting the runtime: ask for what the host can give.
PODMAN=(podman)
BUILD_FLAGS=()
if [ -d /sys/fs/cgroup/unified ] && [ "$(stat -fc %T /sys/fs/cgroup)" = tmpfs ]; then
  PODMAN+=(--runtime runc)
  BUILD_FLAGS+=(--isolation chroot)
fi
nofile=$(ulimit -Hn); [ "$nofile" = unlimited ] || [ "$nofile" -gt 65536 ] && nofile=65536
nproc=$(ulimit -Hu); [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
RUN_FLAGS=(--ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc")
export PODMAN_CMD="${PODMAN[*]}" PODMAN_BUILD_FLAGS="${BUILD_FLAGS[*]}"

work=$(mktemp -d)
ltc_pid=
compose=()
cleanup() {
  status=$?
  [ ${#compose[@]} -eq 0 ] || "${compose[@]}" down -v >/dev/null 2>&1 || true
  "${PODMAN[@]}" rm -f "$NAME" >/dev/null 2>&1 || true
  "${PODMAN[@]}" volume rm -f "$VOLUME" >/dev/null 2>&1 || true
  [ -n "$ltc_pid" ] && kill "$ltc_pid" 2>/dev/null && wait "$ltc_pid" 2>/dev/null
  if [ $status -ne 0 ]; then
    echo "FAILED; litecoind's log: $work/regtest/debug.log" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT

step() { echo "== $*" >&2; }
fail() { echo "FAIL: $*" >&2; exit 1; }
wait_for() { # seconds, description, command…
  local deadline=$((SECONDS + $1)) what=$2; shift 2
  until "$@"; do
    [ $SECONDS -lt $deadline ] || fail "timed out waiting for $what"
    sleep 1
  done
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

step "base images"
bash scripts/image-bases.sh

step "building $IMAGE"
start=$SECONDS
nice -n 15 "${PODMAN[@]}" build --pull=never "${BUILD_FLAGS[@]}" -t "$IMAGE" . >"$work/build.log" 2>&1 \
  || { tail -30 "$work/build.log" >&2; fail "the image did not build"; }
size=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
echo "built in $((SECONDS - start)) s; image size $((size / 1000000)) MB" >&2
[ $((size / 1000000)) -le "$MAX_IMAGE_MB" ] || fail "image is $((size / 1000000)) MB, over $MAX_IMAGE_MB MB"

step "litecoind -regtest -txindex=1"
rpc_port=$(free_port); p2p_port=$(free_port)
mkdir -p "$work/regtest"
litecoind -regtest -txindex=1 -server=1 -listen=0 -datadir="$work/regtest" -rpcuser=u -rpcpassword=p \
  -rpcport="$rpc_port" -port="$p2p_port" -rpcbind=127.0.0.1 -rpcallowip=127.0.0.1 -fallbackfee=0.0001 \
  -printtoconsole=0 &
ltc_pid=$!
cli() { litecoin-cli -regtest -datadir="$work/regtest" -rpcuser=u -rpcpassword=p -rpcport="$rpc_port" "$@"; }
wait_for 60 "litecoind" cli -rpcwait getblockcount >/dev/null
cli createwallet w >/dev/null
address=$(cli getnewaddress)
mine() { cli generatetoaddress "$1" "$address" >/dev/null; }
mine 110

tcp=$(free_port); ssl=$(free_port); admin=$(free_port)
# For the compose service, which is given a certificate.
mkdir -p "$work/tls"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/tls/privkey.pem" -out "$work/tls/fullchain.pem" 2>/dev/null
chmod 644 "$work/tls/privkey.pem"  # the image runs as uid 10001

# No SSL_CERTFILE: the image's SSL_SELF_SIGNED serves TLS.
run() {
  "${PODMAN[@]}" run -d --name "$NAME" --network host "${RUN_FLAGS[@]}" \
    -v "$VOLUME:/db" \
    -e COIN=Litecoin -e NET=regtest -e "DAEMON_URL=http://u:p@127.0.0.1:$rpc_port/" \
    -e "SERVICES=tcp://127.0.0.1:$tcp,ssl://127.0.0.1:$ssl,rpc://127.0.0.1:$admin" \
    -e DAEMON_POLL_INTERVAL_BLOCKS=200 \
    "$IMAGE" >/dev/null
}
version_line='{"id":1,"method":"server.version","params":["image-test","1.4"]}'
tcp_answers() {
  local reply
  reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$tcp" && printf '%s\n' "$version_line" >&3 \
    && timeout 5 head -1 <&3) 2>/dev/null) || return 1
  [[ $reply == *'"Sextant '* ]]
}
tls_answers() {
  # s_client -quiet waits for the server to close, so timeout ends it (status 124) once the
  # reply is read.
  local reply
  reply=$(printf '%s\n' "$version_line" | timeout 5 openssl s_client -quiet -connect "127.0.0.1:$ssl" \
    2>/dev/null | head -1) || true
  [[ $reply == *'"Sextant '* ]]
}
# The SHA-256 fingerprint of the certificate served on a port, and of a PEM file, in the form
# Sextant logs.
served_fingerprint() {
  openssl s_client -connect "127.0.0.1:$1" </dev/null 2>/dev/null \
    | openssl x509 -noout -fingerprint -sha256 | sed 's/^.*=//'
}
file_fingerprint() { openssl x509 -in "$1" -noout -fingerprint -sha256 | sed 's/^.*=//'; }
getinfo() { "${PODMAN[@]}" exec "$NAME" sextant-rpc -p "$admin" getinfo; }
db_height() { getinfo 2>/dev/null | python3 -c 'import json,sys; print(json.load(sys.stdin)["db height"])'; }
at_height() { [ "$(db_height)" = "$1" ]; }

step "run: sync, TCP, TLS with the self-signed certificate, sextant-rpc through exec"
run
wait_for 120 "server.version over TCP" tcp_answers
wait_for 30 "server.version over TLS" tls_answers
fingerprint=$(served_fingerprint "$ssl")
[ -n "$fingerprint" ] || fail "no certificate served on $ssl"
"${PODMAN[@]}" logs "$NAME" 2>&1 | grep -q "made a self-signed certificate /db/sextant.crt .*fingerprint $fingerprint" \
  || fail "the certificate served ($fingerprint) is not the one logged as made"
[ "$("${PODMAN[@]}" exec "$NAME" stat -c %a /db/sextant.key)" = 600 ] || fail "the key is not mode 0600"
getinfo >"$work/getinfo.json" || fail "sextant-rpc getinfo through podman exec"
wait_for 60 "getinfo at height 110" at_height 110
mine 5
wait_for 60 "the new blocks" at_height 115

step "podman stop: SIGTERM flushes and exits 0"
"${PODMAN[@]}" stop -t 600 "$NAME" >/dev/null
code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$NAME")
"${PODMAN[@]}" logs "$NAME" >"$work/run1.log" 2>&1
[ "$code" = 0 ] || { tail -20 "$work/run1.log" >&2; fail "exit status $code"; }
grep -q "flushing the index and exiting" "$work/run1.log" || fail "no flush in the log"

step "restart: continues from the volume"
mine 5
"${PODMAN[@]}" rm "$NAME" >/dev/null
run
wait_for 120 "server.version after the restart" tcp_answers
wait_for 60 "the blocks mined while stopped" at_height 120
[ "$(served_fingerprint "$ssl")" = "$fingerprint" ] || fail "a new certificate after the restart"
"${PODMAN[@]}" logs "$NAME" >"$work/run2.log" 2>&1
grep -q "index tip: height 115" "$work/run2.log" || { head -20 "$work/run2.log" >&2; fail "did not resume at 115"; }
"${PODMAN[@]}" stop -t 600 "$NAME" >/dev/null
[ "$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$NAME")" = 0 ] || fail "second stop"
"${PODMAN[@]}" rm "$NAME" >/dev/null

# deploy/compose.yaml's ltc service, as written, with its .env and TLS directory beside it, and
# an override for what must differ here: regtest, the image just built, the open-file limit this
# host allows. Debian 12's podman-compose (1.0.3) cannot run host-network services, so a current
# one comes from PyPI.
step "compose: deploy/compose.yaml's ltc service"
compose_bin=$(command -v podman-compose || true)
if [ -z "$compose_bin" ] || ! "$compose_bin" --version 2>/dev/null | grep -qE 'version (1\.([1-9]|[0-9]{2})|[2-9])'; then
  python3 -m venv "$work/venv" && "$work/venv/bin/pip" install -q podman-compose
  compose_bin=$work/venv/bin/podman-compose
fi
mkdir -p "$work/deploy"
cp deploy/compose.yaml "$work/deploy/"
cp -r "$work/tls" "$work/deploy/tls"
sed "s|^LTC_DAEMON_URL=.*|LTC_DAEMON_URL=http://u:p@127.0.0.1:$rpc_port/|" deploy/chains.env.example >"$work/deploy/.env"
cat >"$work/deploy/override.yaml" <<EOF
services:
  ltc:
    image: $IMAGE
    environment:
      NET: regtest
    ulimits:
      nofile: $nofile
      nproc: $nproc
EOF
compose=("$compose_bin" -p "$NAME" -f "$work/deploy/compose.yaml" -f "$work/deploy/override.yaml")
[ ${#PODMAN[@]} -gt 1 ] && compose=("$compose_bin" --podman-args="${PODMAN[*]:1}" "${compose[@]:1}")
ltc_tcp=$(sed -n 's|.*SERVICES: tcp://:\([0-9]*\),.*|\1|p' deploy/compose.yaml | tail -1)
ltc_ssl=$(sed -n 's|.*SERVICES: tcp://:[0-9]*,ssl://:\([0-9]*\),.*|\1|p' deploy/compose.yaml | tail -1)
ltc_admin=$(sed -n 's|.*rpc://127.0.0.1:\([0-9]*\)$|\1|p' deploy/compose.yaml | tail -1)
"${compose[@]}" up -d ltc >"$work/compose.log" 2>&1 || { tail -20 "$work/compose.log" >&2; fail "compose up"; }
tcp=$ltc_tcp
wait_for 120 "the compose service over TCP on $ltc_tcp" tcp_answers
ssl=$ltc_ssl
wait_for 30 "the compose service over TLS on $ltc_ssl" tls_answers
[ "$(served_fingerprint "$ssl")" = "$(file_fingerprint "$work/tls/fullchain.pem")" ] \
  || fail "compose: SSL_CERTFILE is not the certificate served"
"${compose[@]}" exec ltc sextant-rpc -p "$ltc_admin" getinfo >"$work/compose-getinfo.json" \
  || fail "compose exec sextant-rpc getinfo"
grep -q '"db height": 120' "$work/compose-getinfo.json" || fail "compose getinfo: $(cat "$work/compose-getinfo.json")"
"${compose[@]}" stop ltc >>"$work/compose.log" 2>&1
container=$("${PODMAN[@]}" ps -a --filter "label=com.docker.compose.project=$NAME" --format '{{.Names}}' | head -1)
[ "$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$container")" = 0 ] || fail "compose stop: exit status"

echo "image-test: passed (image $((size / 1000000)) MB)" >&2
