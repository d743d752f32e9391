"""Post-processing under real load: scenes of about 1, 10 and 50 people, real model outputs.

The detector and pose model run once per scene with onnxruntime; their outputs are then
replayed into the backend's own `SessionPipeline` through detectors that answer at once, so
what is timed is the backend's path after the model: `decode_yolo` (confidence filter, NMS,
mapping back to the frame), the tracker, the result dicts and the JSON text the session
sends. The pipeline hands decoding to its worker pool as in production; only the model's
answer is instant. Detection alone and detection + pose are measured side by side in one run.
"""

from __future__ import annotations

import asyncio
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np
from numpy.typing import NDArray

from backend.bench.bench_models import BenchModels
from backend.bench.crowd_scenes import FRAME_SIZE, ModelRun, OnnxYolo, crowd_scene, person_crops
from backend.bench.latency import LatencyStats, time_async_calls
from backend.bench.machine import describe_machine
from backend.core.config import Settings
from backend.inference.yolo_contract import YoloContract
from backend.model_prep.manifest import ModelEntry, load_manifest
from backend.observability.metrics import BackendMetrics
from backend.pipeline.config import PipelineConfig
from backend.pipeline.multimodal import PipelineParts, PreparedFrame, SessionPipeline
from backend.protocol.client_messages import InitParams
from backend.protocol.server_messages import inference_message

NOMINAL_COUNTS = (1, 10, 50)
POSTPROCESS_IMGSZ = 640  # at 320 px a nano model sees only a few of 50 people in one frame
SEPARATORS = (",", ":")  # as the session serialises its messages
FRAME_IDX = 1000  # what the session adds to the outputs: typical values of a running session
DECODE_MS = 1.23
FPS = 29.97
LATENCY_MS = 33.33


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


class ReplayedDetector:
    """A `Detector` that answers every `infer` at once with one recorded output."""

    def __init__(self, entry: ModelEntry, output: NDArray[np.float32]) -> None:
        self.entry = entry
        self.contract = YoloContract.of(entry)
        self.output = output

    async def infer(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        return self.output


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
    rows = asyncio.run(_time_scenes(entries, scenes, runs, repeats, warmup))
    return PostprocessResult(
        machine=describe_machine(),
        models=models,
        input_sizes={name: model.size for name, model in onnx.items()},
        output_formats={name: entry.output_format for name, entry in entries.items()},
        rows=rows,
    )


async def _time_scenes(
    entries: dict[str, ModelEntry],
    scenes: list[NDArray[np.uint8]],
    runs: list[dict[str, ModelRun]],
    repeats: int,
    warmup: int,
) -> list[PostprocessRow]:
    config = PipelineConfig.from_settings(Settings())
    rows = []
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bench-cpu") as pool:
        for nominal, scene, run in zip(NOMINAL_COUNTS, scenes, runs, strict=True):
            parts = PipelineParts(
                detector=ReplayedDetector(entries["yolo"], run["yolo"].output),
                pose=ReplayedDetector(entries["yolo_pose"], run["yolo_pose"].output),
                config=config,
                cpu_pool=pool,
                decode_pool=pool,
                metrics=BackendMetrics(),
            )
            frame = PreparedFrame(scene, {r.prepared[1].size: r.prepared for r in run.values()})
            detect, detect_text = await _time_frames(parts, frame, False, repeats, warmup)
            full, full_text = await _time_frames(parts, frame, True, repeats, warmup)
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
    return rows


async def _time_frames(
    parts: PipelineParts, frame: PreparedFrame, with_pose: bool, repeats: int, warmup: int
) -> tuple[LatencyStats, str]:
    """Time one session's frames on the same scene (its tracker keeps every track)."""
    pipeline = SessionPipeline(parts, InitParams(use_yolo=True, use_yolo_pose=with_pose))
    sent: list[str] = []
    stats = await time_async_calls(partial(_frame, pipeline, frame, sent), repeats, warmup)
    return stats, sent[-1]


async def _frame(pipeline: SessionPipeline, frame: PreparedFrame, sent: list[str]) -> None:
    """Everything after the model for one prepared frame, up to the text the session sends."""
    outputs = await pipeline.process_prepared(frame, FRAME_IDX, stage_ms={"decode": DECODE_MS})
    message = inference_message(
        outputs, frame_idx=FRAME_IDX, fps=FPS, latency_ms=LATENCY_MS, dropped_frames=0
    )
    sent.append(json.dumps(message, separators=SEPARATORS))


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
