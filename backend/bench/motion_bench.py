"""Farneback (the reference design's method) vs DIS optical flow: time and accuracy."""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from backend.bench.latency import LatencyStats, time_calls
from backend.bench.machine import describe_machine
from backend.pipeline.motion import FlowMethod, MotionEstimator

SHIFT_PX = 4


@dataclass(frozen=True)
class MotionRow:
    method: FlowMethod
    width: int
    latency: LatencyStats
    error_px: float  # |mean fx - true shift| + |mean fy|


def run_motion_bench(repeats: int = 100) -> tuple[str, list[MotionRow]]:
    """Time each method on textured frames shifted by a known amount, and check its answer."""
    rows = []
    for width, height in ((320, 240), (640, 480)):
        texture = np.random.default_rng(0).integers(0, 255, (height // 4, width // 4), np.uint8)
        base = np.repeat(np.repeat(texture, 4, axis=0), 4, axis=1)
        frames = [np.dstack([np.roll(base, k * SHIFT_PX, axis=1)] * 3) for k in range(2)]
        for method in ("farneback", "dis"):
            estimator = MotionEstimator(method)
            estimator.update(frames[0])
            flow = estimator.update(frames[1])
            assert flow is not None
            inner_x = [row[2:-2] for row in flow.fx[2:-2]]
            inner_y = [row[2:-2] for row in flow.fy[2:-2]]
            error = abs(statistics.fmean(np.ravel(inner_x)) - SHIFT_PX) + abs(
                statistics.fmean(np.ravel(inner_y))
            )
            latency = time_calls(_alternating_updates(estimator, frames), repeats, 5)
            rows.append(MotionRow(method, width, latency, error))
    return describe_machine(), rows


def _alternating_updates(
    estimator: MotionEstimator, frames: list[NDArray[np.uint8]]
) -> Callable[[], object]:
    """Feed the two frames in turn, so every call computes real motion."""
    index = itertools.count()
    return lambda: estimator.update(frames[next(index) % 2])


def render_markdown(machine: str, rows: list[MotionRow]) -> str:
    lines = [
        "### Optical flow: Farneback vs DIS",
        "",
        f"Machine: {machine}. Error: distance of the mean flow from a known {SHIFT_PX} px shift.",
        "",
        "| method | frame width | p50 ms | p95 ms | error px |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.method} | {r.width} | {r.latency.p50_ms:.1f} | {r.latency.p95_ms:.1f} "
        f"| {r.error_px:.2f} |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"
