#!/usr/bin/env bash
# Install the instance image into the rehearsal's rootfs, step for step as ami/provision.sh
# does on the build instance, minus what needs the GPU base image or the internet (the NVIDIA
# driver and container toolkit, `docker pull`): those are the rehearsal's known gaps.
#
#   install-image.sh ROOT SOURCE_TREE NGINX_SITE
#
# ROOT: the extracted rootfs (ami/rehearsal/rootfs.sh); SOURCE_TREE: what the bake uploads
# (becomes /opt/cvstack); NGINX_SITE: the site the backend image rendered (images.sh).
# The images themselves are already in the Docker data root the instance mounts.
# The bake is the CPU flavour: versions.env points at the local CPU Triton image.
set -euo pipefail

ROOT="${1:?usage: install-image.sh ROOT SOURCE_TREE NGINX_SITE}"
SOURCE="${2:?usage: install-image.sh ROOT SOURCE_TREE NGINX_SITE}"
SITE="${3:?usage: install-image.sh ROOT SOURCE_TREE NGINX_SITE}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PREFIX=/opt/cvstack
STATE=/var/lib/cvstack
BACKEND_UID=10001
# shellcheck source=ami/rehearsal/images.env
source "$HERE/images.env"

step() { echo "==> install-image: $*" >&2; }
trap 'echo "install-image: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

step "Docker enabled, as provision.sh's 'systemctl enable --now docker.service'"
systemctl --root="$ROOT" --quiet enable docker.service

step "source tree in $PREFIX"
rm -rf "$ROOT$PREFIX"
cp -a "$SOURCE" "$ROOT$PREFIX"
chmod 0755 "$ROOT$PREFIX"/ami/scripts/*.sh

step "the CPU flavour: $REHEARSAL_TRITON_IMAGE, $REHEARSAL_PROMETHEUS_IMAGE"
versions="$ROOT$PREFIX/ami/versions.env"
sed -i -e "s#^TRITON_IMAGE=.*#TRITON_IMAGE=$REHEARSAL_TRITON_IMAGE#" \
  -e "s#^PROMETHEUS_IMAGE=.*#PROMETHEUS_IMAGE=$REHEARSAL_PROMETHEUS_IMAGE#" \
  -e "s#^TRITON_FLAVOUR=.*#TRITON_FLAVOUR=cpu#" "$versions"
grep -q '^TRITON_FLAVOUR=cpu$' "$versions" || echo "TRITON_FLAVOUR=cpu" >>"$versions"

# Triton's container asks for an unlimited RLIMIT_MEMLOCK (NVIDIA's recommendation), which an
# EC2 root may grant. A host without CAP_SYS_RESOURCE (a sandboxed CI runner) cannot: there,
# and only there, the rehearsal's copy asks for the host's hard limit instead, and says so.
if ! prlimit --memlock=unlimited:unlimited true 2>/dev/null; then
  memlock="$(prlimit --memlock --raw --noheadings --output HARD)"
  sed -i "s/^\([[:space:]]*memlock:\) -1$/\1 $memlock/" "$ROOT$PREFIX/ami/compose.yaml"
  grep -q "memlock: $memlock$" "$ROOT$PREFIX/ami/compose.yaml" \
    || { echo "install-image: no 'memlock: -1' in compose.yaml to adapt" >&2; exit 1; }
  echo "DEVIATION: this host cannot raise RLIMIT_MEMLOCK (no CAP_SYS_RESOURCE): Triton's" \
    "memlock ulimit is $memlock bytes here instead of unlimited" >&2
fi

step "state folders in $STATE"
install -d -m 0755 "$ROOT$STATE" "$ROOT$STATE/engines"
install -d -m 0750 -o "$BACKEND_UID" -g "$BACKEND_UID" "$ROOT$STATE/summaries"

step "nginx site, checked with a throwaway certificate"
install -m 0644 "$SITE" "$ROOT/etc/nginx/sites-available/cvstack"
ln -sfn /etc/nginx/sites-available/cvstack "$ROOT/etc/nginx/sites-enabled/cvstack"
rm -f "$ROOT/etc/nginx/sites-enabled/default"
chroot "$ROOT" /bin/bash -c "CVSTACK_TLS_DIR=/etc/cvstack/tls $PREFIX/ami/scripts/tls-setup.sh \
  self-signed >/dev/null && nginx -t -q && rm -rf /etc/cvstack/tls"

step "systemd units, enabled as provision.sh enables them"
install -m 0644 "$SOURCE"/systemd/*.service "$SOURCE"/systemd/*.timer "$ROOT/etc/systemd/system/"
# The unit list of provision.sh's `systemctl enable` (continuation lines joined).
mapfile -t units < <(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$SOURCE/ami/provision.sh" \
  | sed -n 's/^[[:space:]]*systemctl enable \([^-].*\)$/\1/p' | tr -s ' \t' '\n' | sed '/^$/d')
((${#units[@]})) || { echo "install-image: no 'systemctl enable' line in provision.sh" >&2; exit 1; }
systemctl --root="$ROOT" --quiet enable "${units[@]}"
rm -f "$ROOT/etc/cvstack/stack.env"
step "done: ${units[*]}"
