#!/usr/bin/env bash
# The bake's proof that the image serves on the GPU it is built for (ami/provision.sh): trtexec
# in the pinned Triton image builds a TensorRT plan for a tiny ONNX model (ami/smoke: y = x + 1),
# tritonserver serves it with `--gpus all`, and one inference must answer x + 1. Any failure
# fails the bake, with the tool's own last lines.
#
#   gpu-smoke.sh TRITON_IMAGE
set -euo pipefail

IMAGE="${1:?usage: gpu-smoke.sh TRITON_IMAGE}"
SMOKE_DIR="${CVSTACK_SMOKE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../smoke" && pwd)}"
PORT="${CVSTACK_SMOKE_PORT:-18000}"
READY_TIMEOUT_S="${CVSTACK_SMOKE_READY_TIMEOUT_S:-180}"
TRTEXEC=/usr/src/tensorrt/bin/trtexec
CONTAINER=cvstack-gpu-smoke
REQUEST='{"inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[0,1,2,3]}]}'
EXPECTED='[1.0, 2.0, 3.0, 4.0]'

die() {
  echo "gpu-smoke: $*" >&2
  exit 1
}

work="$(mktemp -d)"
cleanup() {
  docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/repository/smoke/1"
cp "$SMOKE_DIR/config.pbtxt" "$work/repository/smoke/config.pbtxt"
cp "$SMOKE_DIR/model.onnx" "$work/model.onnx"

echo "gpu-smoke: building a TensorRT plan on this GPU"
if ! docker run --rm --gpus all -v "$work:/work" "$IMAGE" "$TRTEXEC" --onnx=/work/model.onnx \
  --saveEngine=/work/repository/smoke/1/model.plan >"$work/trtexec.log" 2>&1; then
  tail -n 40 "$work/trtexec.log" >&2
  die "trtexec could not build a plan on this GPU with $IMAGE"
fi
[[ -s "$work/repository/smoke/1/model.plan" ]] || die "trtexec succeeded but wrote no plan"

echo "gpu-smoke: serving it with Triton on 127.0.0.1:$PORT"
docker rm -f "$CONTAINER" >/dev/null 2>&1 || true
docker run --detach --name "$CONTAINER" --gpus all --network host \
  -v "$work/repository:/models:ro" "$IMAGE" \
  tritonserver --model-repository=/models --strict-readiness=true --exit-on-error=true \
  --http-address=127.0.0.1 --http-port="$PORT" --allow-grpc=false --allow-metrics=false \
  >/dev/null

deadline=$((SECONDS + READY_TIMEOUT_S))
until curl -fsS -o /dev/null "http://127.0.0.1:$PORT/v2/health/ready" 2>/dev/null; do
  if [[ "$(docker inspect --format '{{.State.Running}}' "$CONTAINER" 2>/dev/null)" != true ]]; then
    docker logs --tail 40 "$CONTAINER" >&2 || true
    die "Triton exited before it was ready"
  fi
  if ((SECONDS >= deadline)); then
    docker logs --tail 40 "$CONTAINER" >&2 || true
    die "Triton not ready after ${READY_TIMEOUT_S}s"
  fi
  sleep 1
done

answer="$(curl -fsS -X POST -H 'Content-Type: application/json' -d "$REQUEST" \
  "http://127.0.0.1:$PORT/v2/models/smoke/infer")" || die "the inference request failed"
got="$(printf '%s' "$answer" | python3 -c \
  'import json, sys; print([float(v) for v in json.load(sys.stdin)["outputs"][0]["data"]])')" \
  || die "unreadable inference answer: $answer"
[[ "$got" == "$EXPECTED" ]] || die "Triton answered $got for x + 1, expected $EXPECTED"
echo "gpu-smoke: Triton served a TensorRT plan on this GPU: y = $got"
