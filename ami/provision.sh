#!/usr/bin/env bash
# Bake the cvstack instance image (run by ami/cvstack.pkr.hcl as root on the build instance).
#
#   CVSTACK_SOURCE=/tmp/cvstack-src.tar.gz bash provision.sh
#
# Idempotent: every step checks before it changes anything, so a rerun on the same machine
# (or a half-finished bake) converges. Fails loudly: `set -euo pipefail` plus a message naming
# the step that broke. Base: an Ubuntu 22.04 image with the NVIDIA driver (the AWS Deep
# Learning Base OSS Nvidia Driver GPU AMI, which usually has Docker and the NVIDIA container
# toolkit already; they are installed here when missing).
set -euo pipefail

SOURCE="${CVSTACK_SOURCE:?set CVSTACK_SOURCE to the source tarball (git archive of the repository)}"
PREFIX=/opt/cvstack
STATE=/var/lib/cvstack
BACKEND_UID=10001
# cloud-init and unattended-upgrades hold the apt/dpkg locks for a while after a fresh boot.
CLOUD_INIT_TIMEOUT_S="${CVSTACK_CLOUD_INIT_TIMEOUT_S:-900}"
APT_LOCK_TIMEOUT_S="${CVSTACK_APT_LOCK_TIMEOUT_S:-600}"
export DEBIAN_FRONTEND=noninteractive

step() { echo "==> provision: $*"; }
trap 'echo "provision: FAILED at line $LINENO: $BASH_COMMAND" >&2' ERR

[[ "$(id -u)" == 0 ]] || { echo "provision: run as root" >&2; exit 1; }
command -v nvidia-smi >/dev/null \
  || { echo "provision: no NVIDIA driver (nvidia-smi); bake from a GPU base image on a GPU instance" >&2; exit 1; }

apt_get() {  # waits for a lock held by someone else instead of failing on it
  apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT_S" "$@"
}

apt_install() {  # installs only the packages that are missing
  local missing=()
  for package in "$@"; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
  done
  if ((${#missing[@]})); then
    apt_get update -q
    apt_get install -y -q --no-install-recommends "${missing[@]}"
  fi
}

step "wait for cloud-init to finish the first boot (it runs apt itself)"
if command -v cloud-init >/dev/null; then
  cloud_init_rc=0
  timeout "$CLOUD_INIT_TIMEOUT_S" cloud-init status --wait >/dev/null || cloud_init_rc=$?
  case "$cloud_init_rc" in
    0) ;;
    124) echo "provision: cloud-init still running after ${CLOUD_INIT_TIMEOUT_S}s" >&2; exit 1 ;;
    # 1: an error, 2: recoverable errors (cloud-init >= 23.4): the base image's business, not
    # the bake's; shown, then on.
    *) echo "provision: warning: cloud-init finished with status $cloud_init_rc:" >&2
       cloud-init status --long >&2 || true ;;
  esac
fi

step "host packages: nginx, curl, ca-certificates, gnupg, openssl, python3"
apt_install nginx curl ca-certificates gnupg openssl python3

step "Docker engine and the compose plugin"
if ! command -v docker >/dev/null; then
  apt_install docker.io
fi
if ! docker compose version >/dev/null 2>&1; then
  apt_install docker-compose-v2
fi
systemctl enable --now docker.service

step "NVIDIA container toolkit"
if ! command -v nvidia-ctk >/dev/null; then
  # NVIDIA's apt repository, signed by its key (https://docs.nvidia.com/datacenter/cloud-native/).
  curl -fsSL https://nvidia.github.io/libnvidia-container/gpgkey \
    | gpg --batch --yes --dearmor -o /usr/share/keyrings/nvidia-container-toolkit-keyring.gpg
  curl -fsSL https://nvidia.github.io/libnvidia-container/stable/deb/nvidia-container-toolkit.list \
    | sed 's#deb https://#deb [signed-by=/usr/share/keyrings/nvidia-container-toolkit-keyring.gpg] https://#g' \
    >/etc/apt/sources.list.d/nvidia-container-toolkit.list
  apt_install nvidia-container-toolkit
fi
nvidia-ctk runtime configure --runtime=docker  # rewrites daemon.json only when needed
systemctl restart docker.service

step "source tree in $PREFIX"
rm -rf "$PREFIX.new"
install -d "$PREFIX.new"
tar -xzf "$SOURCE" -C "$PREFIX.new"
rm -rf "$PREFIX"
mv "$PREFIX.new" "$PREFIX"
chmod 0755 "$PREFIX"/ami/scripts/*.sh
# shellcheck source=ami/versions.env
source "$PREFIX/ami/versions.env"

step "pinned images: $TRITON_IMAGE, $PROMETHEUS_IMAGE"
docker pull --quiet "$TRITON_IMAGE"
docker pull --quiet "$PROMETHEUS_IMAGE"
docker image inspect --format '{{index .RepoDigests 0}}' "$TRITON_IMAGE" "$PROMETHEUS_IMAGE" \
  >"$PREFIX/ami/image-digests.txt"

[[ "$TRITON_FLAVOUR" == gpu ]] \
  || { echo "provision: the image is baked for TRITON_FLAVOUR=gpu, not '$TRITON_FLAVOUR'" >&2; exit 1; }

step "NVIDIA persistence mode at every boot (nvidia-persistenced): the driver stays initialised"
# Without it the driver initialises the GPU for each client that opens it and tears it down
# when the last one closes: nvidia-smi, the engine step and Triton would each pay it at boot.
if [[ -n "$(systemctl list-unit-files --no-legend nvidia-persistenced.service 2>/dev/null)" ]]; then
  systemctl enable --now nvidia-persistenced.service
else
  echo "provision: no nvidia-persistenced.service in the base image: each boot initialises the GPU per client" >&2
fi
nvidia-smi --query-gpu=name,persistence_mode --format=csv,noheader

step "the Triton image has what the boot needs: the GPU, trtexec, python3"
docker run --rm --gpus all "$TRITON_IMAGE" nvidia-smi --query-gpu=name --format=csv,noheader
docker run --rm "$TRITON_IMAGE" test -x /usr/src/tensorrt/bin/trtexec
docker run --rm "$TRITON_IMAGE" python3 -c 'import urllib.request'

step "Triton on this GPU: a TensorRT plan for a tiny ONNX model, served, one inference"
"$PREFIX/ami/scripts/gpu-smoke.sh" "$TRITON_IMAGE"

step "backend image $BACKEND_IMAGE"
docker build --quiet -f "$PREFIX/backend/Dockerfile" -t "$BACKEND_IMAGE" "$PREFIX"
docker run --rm "$BACKEND_IMAGE" cvstack instance --help >/dev/null

step "state folders in $STATE"
install -d -m 0755 "$STATE" "$STATE/engines"
install -d -m 0750 -o "$BACKEND_UID" -g "$BACKEND_UID" "$STATE/summaries"

step "nginx site (origin listener 80, operator TLS 443, fleet health 8082; rendered from ami/nginx/cvstack.conf.j2)"
docker run --rm "$BACKEND_IMAGE" cvstack instance nginx-config --out /dev/stdout \
  >/etc/nginx/sites-available/cvstack
ln -sfn /etc/nginx/sites-available/cvstack /etc/nginx/sites-enabled/cvstack
rm -f /etc/nginx/sites-enabled/default
# nginx -t needs a certificate: check with a throwaway one, then remove it so that every
# instance generates its own key at first boot (systemd/cvstack-tls.service).
CVSTACK_TLS_DIR=/etc/cvstack/tls "$PREFIX/ami/scripts/tls-setup.sh" self-signed
nginx -t
rm -rf /etc/cvstack/tls

step "systemd units"
install -m 0644 "$PREFIX"/systemd/*.service "$PREFIX"/systemd/*.timer /etc/systemd/system/
systemctl daemon-reload
systemctl enable nginx.service cvstack-settings.service cvstack-tls.service \
  cvstack-model-sync.service cvstack-backend-env.service cvstack-engines.service \
  cvstack-stack.service cvstack-heartbeat.timer cvstack-fleet-agent.service \
  cvstack-boot-report.service cvstack-prewarm.service
# Nothing instance-specific in the image: user data writes instance.env at first boot and
# cvstack-settings reads the rest from SSM at every boot.
rm -f /etc/cvstack/instance.env /etc/cvstack/aws.env /etc/cvstack/stack.env
# Every new root volume reads its hot files once (cvstack-prewarm.service): not this one's stamp.
rm -f "$STATE/prewarmed"
apt-get clean

step "done: image ready; the CDK stack reads its id from SSM after the bake"
