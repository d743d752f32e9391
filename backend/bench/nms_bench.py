"""Class-aware NMS (OpenCV's `NMSBoxesBatched`) on 1 to 300 candidates of a YOLO head."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
from numpy.typing import NDArray

from backend.bench.latency import LatencyStats, time_calls
from backend.bench.machine import describe_machine
from backend.pipeline.yolo_decode import nms

CANDIDATES = (1, 10, 50, 300)
ANCHORS_PER_OBJECT = 5  # a YOLO head sees each object from several neighbouring anchors
CLASSES = 80
IOU_THRESHOLD = 0.45
MAX_DETECTIONS = 100


@dataclass(frozen=True)
class NmsRow:
    candidates: int
    kept: int
    latency: LatencyStats


def run_nms_bench(repeats: int = 2000) -> tuple[str, list[NmsRow]]:
    """Time `nms` on each candidate count after 50 untimed calls."""
    rows = []
    for count in CANDIDATES:
        boxes, scores, classes = candidates(np.random.default_rng(count), count)
        call = partial(nms, boxes, scores, classes, IOU_THRESHOLD, MAX_DETECTIONS)
        rows.append(NmsRow(count, len(call()), time_calls(call, repeats, 50)))
    return describe_machine(), rows


def candidates(
    rng: np.random.Generator, count: int
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    """`count` boxes above the confidence threshold in a 640 input: clusters of jittered anchors."""
    objects = max(1, count // ANCHORS_PER_OBJECT)
    corners = rng.uniform(0, 560, (objects, 2))
    centres = np.concatenate([corners, corners + rng.uniform(20, 200, (objects, 2))], axis=1)
    owner = np.arange(count) % objects
    boxes = centres[owner] + rng.normal(0, 4, (count, 4))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    scores = rng.uniform(0.25, 1.0, count).astype(np.float32)
    return boxes.astype(np.float32), scores, rng.integers(0, CLASSES, objects)[owner]


def render_markdown(machine: str, rows: list[NmsRow]) -> str:
    lines = [
        "### Class-aware NMS (OpenCV NMSBoxesBatched)",
        "",
        f"Machine: {machine}, OpenCV {cv2.__version__}. IoU {IOU_THRESHOLD}, at most "
        f"{MAX_DETECTIONS} kept, {CLASSES} classes, {ANCHORS_PER_OBJECT} jittered anchors "
        "per object.",
        "",
        "| candidates | kept | p50 µs | p95 µs |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {r.candidates} | {r.kept} | {r.latency.p50_ms * 1000:.0f} "
        f"| {r.latency.p95_ms * 1000:.0f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"
