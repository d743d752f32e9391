#!/usr/bin/env bash
# Link a TensorRT plan per model into the gpu model repository (systemd/cvstack-engines.service,
# after the model sync, which renders the repository for the image's Triton flavour).
#
#   TRITON_FLAVOUR=gpu|cpu TRITON_IMAGE=... engines.sh
#
# The variables come from ami/versions.env. cpu: the repository the CPU tests run (Python
# backend + onnxruntime), nothing to build. gpu: a normal boot links the cached plans on the
# host (build-engines.sh with CACHED_ONLY, no container start); only when a plan is missing
# (the first boot, a new model, GPU or Triton image) does build-engines.sh run in the Triton
# image, which has trtexec and sees the GPU, and build it once.
set -euo pipefail

STATE="${CVSTACK_STATE_DIR:-/var/lib/cvstack}"
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
  echo "engines: $*" >&2
  exit 1
}

flavour="${TRITON_FLAVOUR:?set TRITON_FLAVOUR (ami/versions.env): cpu or gpu}"
[[ "$flavour" == cpu || "$flavour" == gpu ]] || die "TRITON_FLAVOUR must be cpu or gpu, not '$flavour'"
[[ -d "$STATE/repository" ]] || die "no $STATE/repository: cvstack-model-sync renders it (sync-models --repository)"
if [[ "$flavour" == cpu ]]; then
  echo "engines: cpu flavour: Triton runs the ONNX models with onnxruntime, no plans to build"
  exit 0
fi

image="${TRITON_IMAGE:?set TRITON_IMAGE (ami/versions.env)}"
# The TensorRT version of this Triton image, recorded by the build that ran in it (the image
# is pinned in ami/versions.env and only changes with a new bake).
version_file="engines/tensorrt-version-$(printf '%s' "$image" | tr -c 'A-Za-z0-9._-' '_')"
if [[ -s "$STATE/$version_file" ]] \
  && TRT_VERSION="$(cat "$STATE/$version_file")" CACHED_ONLY=1 \
    "$SCRIPTS/build-engines.sh" "$STATE/repository" "$STATE/engines"; then
  echo "engines: every plan cached, linked without a container"
  exit 0
fi
docker run --rm --network none --gpus all -v "$STATE:/var/lib/cvstack" \
  -e TRT_VERSION_FILE="/var/lib/cvstack/$version_file" \
  -v "$SCRIPTS/build-engines.sh:/usr/local/bin/build-engines.sh:ro" \
  "$image" build-engines.sh /var/lib/cvstack/repository /var/lib/cvstack/engines
