#!/usr/bin/env bash
# Build the boot rehearsal's images with a throwaway Docker daemon whose data root the booted
# instance then mounts as its own /var/lib/docker (the "baked" images, as provision.sh leaves
# them). No registry and no network: every image starts from the instance rootfs, and pip
# installs only from the wheelhouse (wheelhouse.sh).
#
#   images.sh ROOTFS_TAR SOURCE_TREE CACHE_DIR DOCKER_ROOT
#
# ROOTFS_TAR: rootfs.sh's tarball; SOURCE_TREE: the tree baked into /opt/cvstack (the backend
# image's build context, as in provision.sh); CACHE_DIR: holds python-context/wheelhouse and
# receives nginx-site (the rendered site) and docker.tar (the data root, reused by the next run
# with Docker's layer cache); DOCKER_ROOT: the data root to build in (tmpfs: pip's many small
# files are slow on this disk).
set -euo pipefail

ROOTFS="${1:?usage: images.sh ROOTFS_TAR SOURCE_TREE CACHE_DIR DOCKER_ROOT}"
SOURCE="${2:?usage: images.sh ROOTFS_TAR SOURCE_TREE CACHE_DIR DOCKER_ROOT}"
CACHE="${3:?usage: images.sh ROOTFS_TAR SOURCE_TREE CACHE_DIR DOCKER_ROOT}"
DOCKER_ROOT="${4:?usage: images.sh ROOTFS_TAR SOURCE_TREE CACHE_DIR DOCKER_ROOT}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
RUN_DIR=/run/cvstack-rehearsal-dockerd  # short: unix socket paths have a length limit
# Debian docker.io's client: the daemon's own version, with the classic builder.
DOCKER=(/usr/bin/docker -H "unix://$RUN_DIR/docker.sock")
export DOCKER_BUILDKIT=0
# shellcheck source=ami/rehearsal/images.env
source "$HERE/images.env"
BACKEND_IMAGE="$(sed -n 's/^BACKEND_IMAGE=//p' "$SOURCE/ami/versions.env")"

started=$SECONDS
step() { echo "images: [$((SECONDS - started))s] $*" >&2; }
die() {
  echo "images: $*" >&2
  exit 1
}

stop_dockerd() {
  local pid
  pid="$(cat "$RUN_DIR/dockerd.pid" 2>/dev/null)" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 150); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
}

cache_tar="$CACHE/docker.tar"
if [[ ! -d "$DOCKER_ROOT/image" && -s "$cache_tar" ]]; then
  step "data root from $cache_tar"
  mkdir -p "$DOCKER_ROOT"
  # overlay2 keeps opaque directories in trusted.* extended attributes.
  tar --xattrs --xattrs-include='*' -C "$DOCKER_ROOT" -xf "$cache_tar"
fi

step "Docker daemon on $DOCKER_ROOT"
stop_dockerd
mkdir -p "$RUN_DIR" "$DOCKER_ROOT"
/usr/sbin/dockerd --data-root "$DOCKER_ROOT" --exec-root "$RUN_DIR/exec" \
  -H "unix://$RUN_DIR/docker.sock" --pidfile "$RUN_DIR/dockerd.pid" \
  --storage-driver overlay2 --bridge=none --iptables=false --ip-masq=false \
  >"$CACHE/dockerd.log" 2>&1 &
trap stop_dockerd EXIT
for _ in $(seq 200); do
  "${DOCKER[@]}" version >/dev/null 2>&1 && break
  sleep 0.1
done
"${DOCKER[@]}" version >/dev/null || { tail -n 20 "$CACHE/dockerd.log" >&2; die "dockerd did not start"; }
# Whatever an earlier instance left (containers, volumes) is not part of the image.
"${DOCKER[@]}" container prune --force >/dev/null
"${DOCKER[@]}" volume prune --force >/dev/null

rootfs_id="$(basename "$ROOTFS" .tar)"
if [[ "$("${DOCKER[@]}" image inspect --format '{{.Comment}}' "$REHEARSAL_DEBIAN_IMAGE" 2>/dev/null)" \
  != "$rootfs_id" ]]; then
  step "base image $REHEARSAL_DEBIAN_IMAGE from $ROOTFS"
  "${DOCKER[@]}" import --message "$rootfs_id" "$ROOTFS" "$REHEARSAL_DEBIAN_IMAGE" >/dev/null
fi

build() {  # $1: tag, $2: Dockerfile, $3: context, then --build-arg ...
  local tag="$1" file="$2" context="$3"
  shift 3
  step "build $tag"
  "${DOCKER[@]}" build --quiet --network none --tag "$tag" --file "$file" "$@" "$context" \
    >/dev/null || die "docker build of $tag failed"
}

build "$REHEARSAL_PYTHON_IMAGE" "$HERE/python.Dockerfile" "$CACHE/python-context" \
  --build-arg "DEBIAN_BASE=$REHEARSAL_DEBIAN_IMAGE"
# Triton and the backend build side by side: pip is mostly one process each, there are 2 cores.
build "$REHEARSAL_TRITON_IMAGE" "$HERE/triton-cpu.Dockerfile" "$HERE" \
  --build-arg "PYTHON_BASE=$REHEARSAL_PYTHON_IMAGE" &
triton_build=$!
mkdir -p "$CACHE/prometheus-context"
cp -f "$(command -v prometheus || echo /usr/bin/prometheus)" "$CACHE/prometheus-context/prometheus"
build "$REHEARSAL_PROMETHEUS_IMAGE" "$HERE/prometheus.Dockerfile" "$CACHE/prometheus-context" \
  --build-arg "DEBIAN_BASE=$REHEARSAL_DEBIAN_IMAGE"
# As provision.sh builds it, from the baked tree, only FROM the local Python.
build "$BACKEND_IMAGE" "$SOURCE/backend/Dockerfile" "$SOURCE" \
  --build-arg "PYTHON_BASE=$REHEARSAL_PYTHON_IMAGE"
wait "$triton_build" || die "docker build of $REHEARSAL_TRITON_IMAGE failed"
"${DOCKER[@]}" run --rm --network none "$BACKEND_IMAGE" cvstack instance --help >/dev/null

step "nginx site, rendered by the backend image as provision.sh does"
"${DOCKER[@]}" run --rm --network none "$BACKEND_IMAGE" \
  cvstack instance nginx-config --out /dev/stdout >"$CACHE/nginx-site" 2>/dev/null
"${DOCKER[@]}" image prune --force >/dev/null
images="$("${DOCKER[@]}" images --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' | sort)"
stop_dockerd
trap - EXIT
rm -rf "$RUN_DIR"

if [[ "$images" != "$(cat "$CACHE/docker.images" 2>/dev/null)" ]]; then
  step "saving the data root to $cache_tar for the next run"
  tar --xattrs --xattrs-include='*' -C "$DOCKER_ROOT" -cf "$cache_tar.partial" .
  mv -f "$cache_tar.partial" "$cache_tar"
  printf '%s\n' "$images" >"$CACHE/docker.images"
fi
step "done"
