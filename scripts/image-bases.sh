#!/usr/bin/env bash
# Makes the two base images the Dockerfile starts from, `debian:bookworm-slim` and
# `rust:1-bookworm`, on a machine that cannot pull them (no access to a container registry, only
# to Debian's archive), so that scripts/image-test.sh can build the real Dockerfile there:
#
# - debian:bookworm-slim: a `debootstrap --variant=minbase bookworm` root without apt's lists,
#   documentation and man pages, imported with `podman import`;
# - rust:1-bookworm: that root plus gcc/g++/make/git, with this machine's Rust toolchain (rustup's
#   default, without its documentation) in /usr/local/rust and on PATH, as in the official image,
#   and this machine's extra CA certificates (/usr/local/share/ca-certificates), so that cargo in
#   the build trusts the same TLS endpoints as cargo on the host.
#
# Both are tagged with the names the Dockerfile uses (docker.io/library/…), so the Dockerfile is
# built unchanged; on a machine that can pull, this script is not needed and does nothing when
# the images are already there. Run as root (debootstrap, podman's storage). Needs podman and
# debootstrap (Debian packages).
set -euo pipefail

# Other names (for trying this script without touching the real ones) through the environment.
SLIM=${BASE_SLIM:-docker.io/library/debian:bookworm-slim}
RUST=${BASE_RUST:-docker.io/library/rust:1-bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=${IMAGE_BASES_DIR:-${TMPDIR:-/tmp}/sextant-image-bases}
mkdir -p "$WORK"
# podman's flags for this machine (runtime, isolation), from scripts/image-test.sh.
PODMAN=(${PODMAN_CMD:-podman})
BUILD_FLAGS=(${PODMAN_BUILD_FLAGS:-})

have() { "${PODMAN[@]}" image exists "$1"; }

if ! have "$SLIM"; then
  echo "== $SLIM: pulling" >&2
  if ! "${PODMAN[@]}" pull -q "$SLIM" >/dev/null 2>"$WORK.pull.log"; then
    echo "   cannot pull ($(tail -1 "$WORK.pull.log")); making it with debootstrap" >&2
    root="$WORK/bookworm-slim"
    rm -rf "$root" && mkdir -p "$root"
    nice -n 15 debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$WORK.debootstrap.log" 2>&1 \
      || { tail -20 "$WORK.debootstrap.log" >&2; exit 1; }
    cat >"$root/etc/apt/sources.list" <<EOF
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
EOF
    # What Debian's slim images leave out.
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb \
      "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/var/log/*.log
    tar --numeric-owner -C "$root" -c . | "${PODMAN[@]}" import --change 'CMD ["bash"]' - "$SLIM" >/dev/null
    rm -rf "$root"
  fi
fi

if ! have "$RUST"; then
  echo "== $RUST: pulling" >&2
  if ! "${PODMAN[@]}" pull -q "$RUST" >/dev/null 2>"$WORK.pull.log"; then
    echo "   cannot pull ($(tail -1 "$WORK.pull.log")); making it from $SLIM and this machine's toolchain" >&2
    toolchain=$(rustc --print sysroot)
    ctx="$WORK/rust"
    rm -rf "$ctx" && mkdir -p "$ctx/rust" "$ctx/ca"
    (cd "$toolchain" && tar -c --exclude ./share/doc --exclude ./lib/rustlib/src --exclude ./lib/rustlib/etc .) \
      | tar -C "$ctx/rust" -x
    cp /usr/local/share/ca-certificates/*.crt "$ctx/ca/" 2>/dev/null || true
    cat >"$ctx/Containerfile" <<EOF
FROM $SLIM
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates gcc g++ libc6-dev \
      make pkg-config git && rm -rf /var/lib/apt/lists/*
COPY ca/ /usr/local/share/ca-certificates/
RUN update-ca-certificates
COPY rust /usr/local/rust
RUN mkdir -p /usr/local/cargo/bin && ln -s /usr/local/rust/bin/* /usr/local/cargo/bin/
ENV CARGO_HOME=/usr/local/cargo \\
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
EOF
    nice -n 15 "${PODMAN[@]}" build -q --pull=never "${BUILD_FLAGS[@]}" -f "$ctx/Containerfile" -t "$RUST" "$ctx" >/dev/null
    rm -rf "$ctx"
  fi
fi
"${PODMAN[@]}" image ls --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -F -e "$SLIM" -e "$RUST" >&2
