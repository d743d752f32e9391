#!/usr/bin/env bash
# Render the model repository Triton serves, for the image's Triton flavour, and for gpu link a
# TensorRT plan into it per model (systemd/cvstack-engines.service, after the model sync).
#
#   TRITON_FLAVOUR=gpu|cpu BACKEND_IMAGE=... TRITON_IMAGE=... engines.sh
#
# The variables come from ami/versions.env. cpu: the repository the CPU tests run (Python
# backend + onnxruntime), nothing to build. gpu: build-engines.sh runs in the Triton image (it
# has trtexec and sees the GPU) and builds each plan once per GPU model and TensorRT version.
set -euo pipefail

STATE="${CVSTACK_STATE_DIR:-/var/lib/cvstack}"
SCRIPTS="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

die() {
  echo "engines: $*" >&2
  exit 1
}

flavour="${TRITON_FLAVOUR:?set TRITON_FLAVOUR (ami/versions.env): cpu or gpu}"
[[ "$flavour" == cpu || "$flavour" == gpu ]] || die "TRITON_FLAVOUR must be cpu or gpu, not '$flavour'"
backend_image="${BACKEND_IMAGE:?set BACKEND_IMAGE (ami/versions.env)}"

docker run --rm --network none --user 0:0 -v "$STATE:/var/lib/cvstack" \
  "$backend_image" cvstack instance repository --flavour "$flavour" \
  --models-dir /var/lib/cvstack/models --out /var/lib/cvstack/repository \
  || die "could not render the $flavour model repository (see the error above)"

if [[ "$flavour" == gpu ]]; then
  docker run --rm --network none --gpus all -v "$STATE:/var/lib/cvstack" \
    -v "$SCRIPTS/build-engines.sh:/usr/local/bin/build-engines.sh:ro" \
    "${TRITON_IMAGE:?set TRITON_IMAGE (ami/versions.env)}" \
    build-engines.sh /var/lib/cvstack/repository /var/lib/cvstack/engines
else
  echo "engines: cpu flavour: Triton runs the ONNX models with onnxruntime, no plans to build"
fi
