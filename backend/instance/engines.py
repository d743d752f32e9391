"""The model repository Triton serves on the instance, and the gpu flavour's TensorRT jobs.

`write_repository` renders the flavour of the image's Triton (`TRITON_FLAVOUR` in
ami/versions.env): `cpu` is exactly the repository the CPU tests run (Python backend +
onnxruntime); `gpu` is config.pbtxt + 1/model.onnx per Triton model plus `engine-jobs.txt`
beside them: one line per model, `<model> <plan id> <trtexec shape flags>`.
`ami/scripts/build-engines.sh` runs inside the pinned Triton image (which has `trtexec`) and
keeps plans under `<engines>/<GPU model>/trt-<TensorRT version>/<plan id>.plan`.
The plan id hashes the ONNX file and the build flags, so a plan is built once per GPU model,
TensorRT version, model and shape profile, and reused on every later boot.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from backend.model_prep.manifest import Manifest
from backend.triton_server.contract import ModelContract, contract_for
from backend.triton_server.repository import Flavour, render_repository

JOBS_FILE = "engine-jobs.txt"
BUILD_FLAGS = ("--fp16",)  # T4 tensor cores; outputs stay FP32 tensors per the contract


def trtexec_flags(contract: ModelContract) -> list[str]:
    """Optimisation profile for a model: batch 1 up to max_batch_size, tuned for the smallest
    preferred batch (a handful of live sessions rarely fill more)."""
    flags = list(BUILD_FLAGS)
    if contract.max_batch_size == 0 or contract.dynamic_batching is None:
        return flags  # static batch 1: the graph's own shapes
    optimal = min(contract.dynamic_batching.preferred_batch_sizes)
    for label, batch in (
        ("min", 1),
        ("opt", optimal),
        ("max", contract.max_batch_size),
    ):
        shapes = ",".join(
            f"{tensor.name}:{'x'.join(str(d) for d in (batch, *tensor.dims))}"
            for tensor in contract.inputs
        )
        flags.append(f"--{label}Shapes={shapes}")
    return flags


def plan_id(model: str, onnx_sha256: str, flags: list[str]) -> str:
    """Names the plan of one model build; changes when the ONNX or the build flags change."""
    digest = hashlib.sha256(" ".join([onnx_sha256, *flags]).encode()).hexdigest()
    return f"{model}-{digest[:16]}"


def write_repository(
    manifest: Manifest, models_dir: Path, repository: Path, flavour: Flavour
) -> list[str]:
    """Render the repository (gpu: with its engine jobs); returns the model names."""
    names = render_repository(manifest, models_dir, repository, flavour)
    if flavour == "gpu":
        (repository / JOBS_FILE).write_text("\n".join(engine_jobs(manifest, names)) + "\n")
    return names


def engine_jobs(manifest: Manifest, names: list[str]) -> list[str]:
    """One `<model> <plan id> <trtexec flags>` line per model."""
    lines = []
    for name in names:
        entry = manifest.entry(name)
        if any(d < 1 for t in entry.inputs for d in t.dims):
            raise ValueError(
                f"model '{name}' has a dynamic spatial input {entry.inputs}; TensorRT needs a "
                "fixed image size: export it with a fixed imgsz"
            )
        flags = trtexec_flags(contract_for(entry, served_as=name))
        lines.append(" ".join([name, plan_id(name, entry.sha256, flags), *flags]))
    return lines
