#!/usr/bin/env bash
# The boot rehearsal's instance root file system: Debian bookworm with systemd, cloud-init,
# Docker (20.10, docker-compose v1), nginx and openssl, as mmdebstrap makes it (apt resolves
# the dependencies, no recommends). Cached as a tarball keyed by the package list and this
# script, so only the first run pays (~90 s; the build runs on tmpfs, because dpkg's many small
# writes are slow on this disk: ~3 min there, with debootstrap too).
#
#   rootfs.sh CACHE_DIR      prints the path of CACHE_DIR/rootfs-<key>.tar
#
# The same tarball is the base of the rehearsal's local images (docker import), so the
# backend and Triton images run on the instance's own Python 3.11, with no registry.
set -euo pipefail

CACHE="${1:?usage: rootfs.sh CACHE_DIR}"
MIRROR="${CVSTACK_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=(
  systemd-sysv dbus iproute2 procps
  cloud-init
  docker.io docker-compose
  nginx openssl ca-certificates
  python3 python3.11-venv libpython3.11
)

key="$( (printf '%s\n' "${PACKAGES[@]}" "$MIRROR"; cat "$0") | sha256sum | cut -c1-16)"
tarball="$CACHE/rootfs-$key.tar"
if [[ -s "$tarball" ]]; then
  echo "$tarball"
  exit 0
fi

command -v mmdebstrap >/dev/null || { echo "rootfs: mmdebstrap is not installed (make system-deps)" >&2; exit 1; }
mkdir -p "$CACHE"
log="$CACHE/mmdebstrap.log"
include="$(IFS=,; echo "${PACKAGES[*]}")"
if ! TMPDIR=/dev/shm mmdebstrap --variant=minbase --include="$include" \
  --aptopt='APT::Install-Recommends "false"' --dpkgopt=force-unsafe-io --format=tar \
  bookworm "$tarball.partial" "$MIRROR" >"$log" 2>&1; then
  rm -f "$tarball.partial"
  tail -n 40 "$log" >&2
  echo "rootfs: mmdebstrap failed (full log: $log)" >&2
  exit 1
fi
mv -f "$tarball.partial" "$tarball"
find "$CACHE" -maxdepth 1 -name 'rootfs-*.tar' ! -name "$(basename "$tarball")" -delete
echo "$tarball"
