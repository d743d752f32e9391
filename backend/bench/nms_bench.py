"""Class-aware NMS: the numpy loop vs OpenCV's `NMSBoxesBatched`, side by side in one run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from backend.bench.latency import LatencyStats, time_calls
from backend.bench.machine import describe_machine
from backend.pipeline.yolo_decode import nms, nms_opencv

CANDIDATES = (1, 10, 50, 300)
ANCHORS_PER_OBJECT = 5  # a YOLO head sees each object from several neighbouring anchors
CLASSES = 80

NmsFunction = Callable[
    [NDArray[np.float32], NDArray[np.float32], NDArray[np.int64], float, int], NDArray[np.intp]
]
IMPLEMENTATIONS: dict[str, NmsFunction] = {"numpy": nms, "opencv": nms_opencv}


@dataclass(frozen=True)
class NmsRow:
    candidates: int
    kept: int
    latency: dict[str, LatencyStats]  # by implementation name


def run_nms_bench(repeats: int = 2000) -> tuple[str, list[NmsRow]]:
    """Time every implementation on the same candidates, one candidate count at a time."""
    rows = []
    for count in CANDIDATES:
        boxes, scores, classes = candidates(np.random.default_rng(count), count)
        calls = {
            name: _bound(function, boxes, scores, classes)
            for name, function in IMPLEMENTATIONS.items()
        }
        kept = {name: call().tolist() for name, call in calls.items()}
        if len({tuple(k) for k in kept.values()}) != 1:
            raise RuntimeError(f"NMS implementations disagree on {count} candidates: {kept}")
        latency = {name: time_calls(call, repeats, 50) for name, call in calls.items()}
        rows.append(NmsRow(count, len(kept["opencv"]), latency))
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


def _bound(
    function: NmsFunction,
    boxes: NDArray[np.float32],
    scores: NDArray[np.float32],
    classes: NDArray[np.int64],
) -> Callable[[], NDArray[np.intp]]:
    return lambda: function(boxes, scores, classes, 0.45, 100)


def render_markdown(machine: str, rows: list[NmsRow]) -> str:
    lines = [
        "### Class-aware NMS: numpy loop vs OpenCV NMSBoxesBatched",
        "",
        f"Machine: {machine}, OpenCV {cv2.__version__}. IoU 0.45, at most 100 kept, "
        f"{CLASSES} classes, {ANCHORS_PER_OBJECT} jittered anchors per object.",
        "",
        "| candidates | kept | numpy p50 µs | numpy p95 µs | opencv p50 µs | opencv p95 µs "
        "| numpy / opencv (p50) |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        numpy_stats, opencv_stats = row.latency["numpy"], row.latency["opencv"]
        lines.append(
            f"| {row.candidates} | {row.kept} | {numpy_stats.p50_ms * 1000:.0f} "
            f"| {numpy_stats.p95_ms * 1000:.0f} | {opencv_stats.p50_ms * 1000:.0f} "
            f"| {opencv_stats.p95_ms * 1000:.0f} "
            f"| {numpy_stats.p50_ms / opencv_stats.p50_ms:.1f}x |"
        )
    return "\n".join(lines) + "\n"
