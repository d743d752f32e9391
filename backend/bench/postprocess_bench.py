"""Post-processing under real load: scenes of about 1, 10 and 50 people, real model outputs.

The detector and pose model run once per scene with onnxruntime; their outputs are then
replayed into the backend's own `SessionPipeline` through a Triton stand-in, so what is timed
is the backend's path after the model: `decode_yolo` (confidence filter, NMS, mapping back
to the frame), the tracker, the result dicts and the JSON text the session sends. The
pipeline hands decoding to its worker pool as in production; only Triton's answer is
instant. Detection alone and detection + pose are measured side by side in one run.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
from numpy.typing import NDArray

from backend.bench.bench_models import BenchModels
from backend.bench.crowd_scenes import FRAME_SIZE, ModelRun, OnnxYolo, crowd_scene, person_crops
from backend.bench.latency import LatencyStats, time_async_calls
from backend.bench.machine import describe_machine
from backend.core.config import Settings
from backend.inference.triton_models import TritonModels
from backend.model_prep.manifest import ModelEntry, load_manifest
from backend.observability.metrics import BackendMetrics
from backend.ocr.engine import OcrEngine
from backend.pipeline.multimodal import SessionPipeline
from backend.protocol.client_messages import InitParams
from backend.protocol.server_messages import Inference, PoseResult, YoloResult

NOMINAL_COUNTS = (1, 10, 50)
POSTPROCESS_IMGSZ = 640  # at 320 px a nano model sees only a few of 50 people in one frame
SEPARATORS = (",", ":")  # as the session serialises its messages


@dataclass(frozen=True)
class PostprocessRow:
    """One scene: what the models found, and the post-processing cost with and without pose."""

    nominal: int
    objects: int  # detections sent in the result
    people: int  # poses sent in the result
    detect: LatencyStats
    detect_bytes: int
    full: LatencyStats  # detection + pose
    full_bytes: int


@dataclass(frozen=True)
class PostprocessResult:
    machine: str
    models: BenchModels
    input_sizes: dict[str, int]
    output_formats: dict[str, str]
    rows: list[PostprocessRow]


class ReplayedTriton(TritonModels):
    """Answers every `infer` at once with the output set for the model: no server behind it."""

    def __init__(self, models: dict[str, ModelEntry]) -> None:
        super().__init__("127.0.0.1:1", 1.0, models)  # the client never connects
        self.outputs: dict[str, NDArray[np.float32]] = {}

    async def infer(self, model: str, images: NDArray[Any]) -> NDArray[np.float32]:
        return self.outputs[model]


@dataclass(frozen=True)
class ReplayRuntime:
    """What `SessionPipeline` needs of the backend's runtime, around a `ReplayedTriton`."""

    settings: Settings
    triton: TritonModels
    cpu_pool: Executor
    decode_pool: Executor
    ocr_pool: Executor
    metrics: BackendMetrics

    def ocr(self) -> OcrEngine | None:
        return None

    def ocr_problem(self) -> str | None:
        return None


def run_postprocess_bench(
    models: BenchModels, repeats: int = 300, warmup: int = 20
) -> PostprocessResult:
    """Build the scenes, run the models on them, time the post-processing of each."""
    manifest = load_manifest(models.models_dir)
    onnx = {name: OnnxYolo(models.models_dir, manifest.entry(name)) for name in models.sources}
    crops = person_crops(onnx["yolo"])
    scenes = [crowd_scene(crops, count) for count in NOMINAL_COUNTS]
    runs = [{name: model.run(scene) for name, model in onnx.items()} for scene in scenes]
    entries = {name: model.entry for name, model in onnx.items()}
    rows = asyncio.run(_time_scenes(entries, runs, repeats, warmup))
    return PostprocessResult(
        machine=describe_machine(),
        models=models,
        input_sizes={name: model.size for name, model in onnx.items()},
        output_formats={name: entry.output_format for name, entry in entries.items()},
        rows=rows,
    )


async def _time_scenes(
    entries: dict[str, ModelEntry],
    runs: list[dict[str, ModelRun]],
    repeats: int,
    warmup: int,
) -> list[PostprocessRow]:
    settings = Settings()
    triton = ReplayedTriton(
        {settings.detector_model: entries["yolo"], settings.pose_model: entries["yolo_pose"]}
    )
    rows = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-cpu") as pool:
        runtime = ReplayRuntime(settings, triton, pool, pool, pool, BackendMetrics())
        try:
            for nominal, run in zip(NOMINAL_COUNTS, runs, strict=True):
                triton.outputs = {
                    settings.detector_model: run["yolo"].output,
                    settings.pose_model: run["yolo_pose"].output,
                }
                detect, detect_text = await _time_frames(runtime, run, False, repeats, warmup)
                full, full_text = await _time_frames(runtime, run, True, repeats, warmup)
                data = json.loads(full_text)["data"]
                rows.append(
                    PostprocessRow(
                        nominal=nominal,
                        objects=len((data["yolo"] or {"boxes": []})["boxes"]),
                        people=len((data["pose"] or {"boxes": []})["boxes"]),
                        detect=detect,
                        detect_bytes=len(detect_text.encode()),
                        full=full,
                        full_bytes=len(full_text.encode()),
                    )
                )
        finally:
            await triton.close()
    return rows


async def _time_frames(
    runtime: ReplayRuntime, run: dict[str, ModelRun], with_pose: bool, repeats: int, warmup: int
) -> tuple[LatencyStats, str]:
    """Time one session's frames on the same scene (its tracker keeps every track)."""
    pipeline = SessionPipeline(runtime, InitParams(use_yolo=True, use_yolo_pose=with_pose))
    sent: list[str] = []
    frame = partial(_frame, pipeline, run, sent)
    stats = await time_async_calls(frame, repeats, warmup)
    return stats, sent[-1]


async def _frame(pipeline: SessionPipeline, run: dict[str, ModelRun], sent: list[str]) -> None:
    """Everything after the model for one frame, up to the text the session sends."""
    stage_ms: dict[str, float] = {}
    # SessionPipeline has no public entry point that starts after the model and skips JPEG
    # decoding; these are the stages `process` runs.
    yolo = await pipeline._detect(run["yolo"].prepared, stage_ms)
    pose = None
    if pipeline.params.use_yolo_pose:
        pose = await pipeline._pose(run["yolo_pose"].prepared, stage_ms)
    sent.append(json.dumps(_message(yolo, pose, stage_ms), separators=SEPARATORS))


def _message(
    yolo: YoloResult | None, pose: PoseResult | None, stage_ms: dict[str, float]
) -> Inference:
    """The session's inference message for a frame with no OCR, motion or errors."""
    width, height = FRAME_SIZE
    return {
        "type": "inference",
        "data": {
            "frame_idx": 1000,
            "width": width,
            "height": height,
            "yolo": yolo,
            "pose": pose,
            "ocr": None,
            "ocr_info": None,
            "flow": None,
            "fps": 29.97,
            "latency_ms": 33.33,
            "stage_ms": {"decode": 1.23, **stage_ms},
            "dropped_frames": 0,
            "errors": {},
        },
    }


def render_markdown(result: PostprocessResult) -> str:
    """The benchmark as a markdown section for docs/benchmarks.md."""
    r = result
    models = ", ".join(
        f"{name} at {r.input_sizes[name]} px ({r.output_formats[name]})" for name in r.input_sizes
    )
    lines = [
        "### Post-processing and result size by number of objects",
        "",
        f"Machine: {r.machine}.",
        "",
        r.models.describe(),
        "",
        *([warning, ""] if (warning := r.models.warning()) else []),
        f"Models: {models}; scenes {FRAME_SIZE[0]}x{FRAME_SIZE[1]}. Time from the model's "
        "output to the JSON text of the result (decode_yolo with NMS, tracker, result dicts, "
        f"json.dumps), {r.rows[0].detect.samples} frames per row.",
        "",
        "| scene (nominal people) | objects found | poses found | detection p50 ms "
        "| detection p95 ms | detection message bytes | detection + pose p50 ms "
        "| detection + pose p95 ms | detection + pose message bytes |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {row.nominal} | {row.objects} | {row.people} | {row.detect.p50_ms:.2f} "
        f"| {row.detect.p95_ms:.2f} | {row.detect_bytes} | {row.full.p50_ms:.2f} "
        f"| {row.full.p95_ms:.2f} | {row.full_bytes} |"
        for row in r.rows
    ]
    return "\n".join(lines) + "\n"
