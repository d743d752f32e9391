"""The page's own detector: the GPU detector's weights as a small ONNX that the browser runs
(onnxruntime-web) while the GPU instance boots, and the descriptor the page reads beside it.

Both files sit in the models folder, so they travel with the model store (S3) like the other
models; the backend serves them locally and the front door in production, at `models/<file>`
next to the page (`frontend/js/browser_detector.js`).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import onnxruntime as ort

from backend.model_prep.manifest import Manifest, ModelEntry, ModelSource
from backend.model_prep.onnx_inspect import describe_yolo_onnx
from backend.model_prep.pretrained import PRETRAINED_WEIGHTS
from backend.model_prep.yolo_export import OFFICIAL_LICENCE

BROWSER_DETECTOR = "browser_detect"
BROWSER_FILE = f"{BROWSER_DETECTOR}.onnx"
DESCRIPTOR_FILE = f"{BROWSER_DETECTOR}.json"
# 320 px: yolov10n's first result in Chromium's WASM build within the 3-s bound on 2 cores
# (docs/benchmarks.md, "Cold start in the page"); the GPU detector's default size too.
BROWSER_INPUT_SIZE = 320
RUNS_IN_BROWSER = "browser"
# onnxruntime's graph optimisations, applied here once rather than by the page at every load:
# the extended level's fusions run in onnxruntime-web's CPU (WASM) kernels too, and its outputs
# match the unoptimised graph's (tests/model_prep/test_prepare.py); the page then loads with
# graphOptimizationLevel "disabled".
OFFLINE_OPTIMISATION = "extended"


def weights_licence(source: ModelSource) -> str:
    """The licence of a model's weights, in a few words."""
    if source.kind == "official":
        return OFFICIAL_LICENCE
    if source.kind == "pretrained":
        known = [w.licence for w in PRETRAINED_WEIGHTS.values() if w.describe() == source.detail]
        return known[0] if known else "see its source"
    if source.kind == "user":
        return "that of your weights"
    return "none (random weights)"


def optimise_offline(path: Path) -> None:
    """Rewrite the ONNX file at `path` as onnxruntime optimises it (`OFFLINE_OPTIMISATION`)."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    optimised = path.with_suffix(".optimised.onnx")
    options.optimized_model_filepath = str(optimised)
    ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    optimised.replace(path)


def browser_entry(path: Path, detector: ModelEntry, sha256: str) -> ModelEntry:
    """The manifest entry of the browser detector at `path`, made from `detector`'s weights."""
    graph = describe_yolo_onnx(path, "detect", BROWSER_DETECTOR)
    if graph.class_names != detector.class_names:
        raise ValueError(
            f"{path.name} has other classes than the detector {detector.file}; "
            "run `cvstack models prepare` again"
        )
    entry = graph.to_entry(file=path.name, sha256=sha256, source=detector.source)
    extra = {
        "runs_in": RUNS_IN_BROWSER,
        "detector_sha256": detector.sha256,
        "licence": weights_licence(detector.source),
        "optimised": OFFLINE_OPTIMISATION,
    }
    return replace(entry, extra=extra)


def is_current(entry: ModelEntry | None, detector: ModelEntry) -> bool:
    """Whether an existing browser entry was made from `detector`'s file, optimised as now."""
    return (
        entry is not None
        and entry.extra.get("detector_sha256") == detector.sha256
        and entry.extra.get("optimised") == OFFLINE_OPTIMISATION
    )


def write_descriptor(manifest: Manifest, models_dir: Path) -> Path | None:
    """`browser_detect.json`: what the page needs to run and label the browser detector."""
    entry = manifest.models.get(BROWSER_DETECTOR)
    target = models_dir / DESCRIPTOR_FILE
    if entry is None:
        target.unlink(missing_ok=True)
        return None
    descriptor = {
        "file": entry.file,
        "sha256": entry.sha256,
        "input": {"name": entry.inputs[0].name, "dtype": entry.inputs[0].dtype},
        "input_size": entry.input_size,
        "output_format": entry.output_format,
        "class_names": list(entry.class_names),
        "source": {"kind": entry.source.kind, "detail": entry.source.detail},
        "meaningful": entry.source.meaningful,
        "licence": entry.extra["licence"],
    }
    text = json.dumps(descriptor, indent=2) + "\n"
    if not target.is_file() or target.read_text() != text:  # an unchanged store stays untouched
        tmp = target.with_suffix(".json.tmp")
        tmp.write_text(text)
        tmp.replace(target)
    return target
