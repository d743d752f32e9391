#!/usr/bin/env bash
# Build the TensorRT plans of the gpu model repository; runs inside the pinned Triton image,
# which has trtexec and sees the GPU (ami/scripts/engines.sh, systemd/cvstack-engines.service).
#
#   build-engines.sh REPOSITORY CACHE
#
# REPOSITORY/engine-jobs.txt (written by `cvstack instance repository --flavour gpu`) has one
# line per model: `<model> <plan id> <trtexec flags...>`; the plan id hashes the ONNX and the
# flags.
# A plan only runs on the GPU model and TensorRT version it was built with, so plans live in
# CACHE/<GPU model>/trt-<TensorRT version>/<plan id>.plan on the root volume: the first boot
# builds them (minutes), every later boot links the cached file (milliseconds), and a new
# instance type, Triton image or model builds new ones.
#
# Every later boot runs it on the host instead, with no container (ami/scripts/engines.sh):
#   TRT_VERSION=X.Y.Z CACHED_ONLY=1 build-engines.sh ...   links cached plans; exits 3, building
#                                                           nothing, when one is not cached
#   TRT_VERSION_FILE=F build-engines.sh ...                 writes the image's TensorRT version
#                                                           to F once every plan is in place
set -euo pipefail

REPOSITORY="${1:?usage: build-engines.sh REPOSITORY CACHE}"
CACHE="${2:?usage: build-engines.sh REPOSITORY CACHE}"
TRTEXEC="${TRTEXEC:-/usr/src/tensorrt/bin/trtexec}"
TRT_LIB_DIR="${TRT_LIB_DIR:-/usr/lib/x86_64-linux-gnu}"

die() {
  echo "build-engines: $*" >&2
  exit 1
}

gpu_model() {
  local name
  name="$(nvidia-smi --query-gpu=name --format=csv,noheader | head -n 1)" \
    || die "nvidia-smi failed: is the container started with the GPU (--gpus all)?"
  [[ -n "$name" ]] || die "nvidia-smi reported no GPU"
  # "Tesla T4" -> "Tesla_T4": one safe path component.
  printf '%s' "$name" | tr -c 'A-Za-z0-9._-' '_'
}

tensorrt_version() {
  local library
  library="$(find "$TRT_LIB_DIR" -maxdepth 1 -name 'libnvinfer.so.*.*.*' -printf '%f\n' | sort -V | tail -n 1)"
  [[ -n "$library" ]] || die "no libnvinfer.so.X.Y.Z in $TRT_LIB_DIR: is this the Triton image?"
  printf '%s' "${library#libnvinfer.so.}"
}

jobs_file="$REPOSITORY/engine-jobs.txt"
[[ -f "$jobs_file" ]] || die "no $jobs_file; run \`cvstack instance repository --flavour gpu\` first"
cached_only="${CACHED_ONLY:-}"
[[ -n "$cached_only" || -x "$TRTEXEC" ]] || die "trtexec not found at $TRTEXEC (set TRTEXEC)"

gpu="$(gpu_model)"
trt="${TRT_VERSION:-$(tensorrt_version)}"
plans="$CACHE/$gpu/trt-$trt"
mkdir -p "$plans"

while read -r -a job; do
  [[ ${#job[@]} -ge 2 ]] || continue
  model="${job[0]}"
  plan="$plans/${job[1]}.plan"
  if [[ -s "$plan" ]]; then
    echo "build-engines: $model: cached plan $plan"
  elif [[ -n "$cached_only" ]]; then
    echo "build-engines: $model: no cached plan for $gpu, TensorRT $trt (CACHED_ONLY: not building)" >&2
    exit 3
  else
    echo "build-engines: $model: building for $gpu, TensorRT $trt (once; takes minutes)"
    # Written under a temporary name first: an interrupted build never looks cached.
    if ! "$TRTEXEC" --onnx="$REPOSITORY/$model/1/model.onnx" --saveEngine="$plan.partial" \
      "${job[@]:2}" >"$plan.log" 2>&1; then
      tail -n 40 "$plan.log" >&2
      die "trtexec failed for $model; full log in $plan.log"
    fi
    mv -f "$plan.partial" "$plan"
  fi
  # Same file system: a hard link costs nothing; fall back to a copy.
  ln -f "$plan" "$REPOSITORY/$model/1/model.plan" 2>/dev/null \
    || cp -f "$plan" "$REPOSITORY/$model/1/model.plan"
done <"$jobs_file"
if [[ -n "${TRT_VERSION_FILE:-}" ]]; then
  printf '%s\n' "$trt" >"$TRT_VERSION_FILE.partial"
  mv -f "$TRT_VERSION_FILE.partial" "$TRT_VERSION_FILE"
fi
echo "build-engines: plans ready for $gpu, TensorRT $trt"
