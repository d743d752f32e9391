"""Optical flow: known shifts come back in original-frame pixels, on a documented grid."""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict

import numpy as np
import pytest
from numpy.typing import NDArray

from backend.pipeline.motion import (
    MIN_FLOW_SIDE,
    FlowField,
    FlowMethod,
    MotionEstimator,
    MotionSkippedError,
)

METHODS: list[FlowMethod] = ["dis", "farneback"]


def shifted_pair(
    texture: NDArray[np.uint8], width: int, height: int, dx: int, dy: int
) -> tuple[NDArray[np.uint8], NDArray[np.uint8]]:
    """Two frames of the texture; in the second the content has moved by (dx, dy) pixels."""
    top, left = 50, 50
    first = texture[top : top + height, left : left + width]
    second = texture[top - dy : top - dy + height, left - dx : left - dx + width]
    return np.ascontiguousarray(first), np.ascontiguousarray(second)


def interior(values: list[list[float]]) -> NDArray[np.float64]:
    """Grid values away from the borders, where content enters or leaves the frame."""
    return np.array(values)[2:-2, 2:-2]


def flow_between(
    estimator: MotionEstimator, first: NDArray[np.uint8], second: NDArray[np.uint8]
) -> FlowField:
    assert estimator.update(first) is None
    field = estimator.update(second)
    assert field is not None
    return field


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("size", "shift"),
    [((320, 240), (4, 0)), ((640, 480), (4, 0)), ((640, 480), (8, 0)), ((360, 480), (0, -6))],
)
def test_known_shift_comes_back_in_original_pixels(
    method: FlowMethod, size: tuple[int, int], shift: tuple[int, int], texture: NDArray[np.uint8]
) -> None:
    (width, height), (dx, dy) = size, shift
    first, second = shifted_pair(texture, width, height, dx, dy)
    field = flow_between(MotionEstimator(method), first, second)
    assert interior(field.fx).mean() == pytest.approx(dx, abs=0.15)
    assert interior(field.fy).mean() == pytest.approx(dy, abs=0.15)
    assert field.mean_magnitude == pytest.approx(math.hypot(dx, dy), abs=0.2)


@pytest.mark.parametrize(("width", "height", "step"), [(650, 490, 16), (320, 240, 16), (33, 17, 8)])
def test_grid_has_one_vector_per_started_cell(
    width: int, height: int, step: int, texture: NDArray[np.uint8]
) -> None:
    first, second = shifted_pair(texture, width, height, 2, 0)
    field = flow_between(MotionEstimator(step=step), first, second)
    rows, cols = math.ceil(height / step), math.ceil(width / step)
    assert (field.step, field.orig_w, field.orig_h) == (step, width, height)
    assert len(field.fx) == len(field.fy) == rows
    assert all(len(row) == cols for row in field.fx + field.fy)


def test_output_is_json_with_two_decimals(texture: NDArray[np.uint8]) -> None:
    first, second = shifted_pair(texture, 320, 240, 3, 1)
    field = flow_between(MotionEstimator("farneback"), first, second)
    decoded = json.loads(json.dumps(asdict(field)))
    values = [v for grid in (decoded["fx"], decoded["fy"]) for row in grid for v in row]
    assert all(isinstance(v, float) and v == round(v, 2) for v in values)
    assert all(len(json.dumps(v)) <= 6 for v in values)  # short decimals, e.g. 2.97
    assert decoded["mean_magnitude"] == field.mean_magnitude


def test_still_scene_has_no_motion(texture: NDArray[np.uint8]) -> None:
    frame = np.ascontiguousarray(texture[:240, :320])
    field = flow_between(MotionEstimator(), frame, frame.copy())
    assert field.mean_magnitude < 0.05


def test_size_change_and_reset_restart_the_sequence(texture: NDArray[np.uint8]) -> None:
    estimator = MotionEstimator()
    small, large = texture[:240, :320], texture[:480, :640]
    assert estimator.update(small) is None
    assert estimator.update(small) is not None
    assert estimator.update(large) is None
    assert estimator.update(large) is not None
    estimator.reset()
    assert estimator.update(large) is None


def test_rejects_unknown_method() -> None:
    with pytest.raises(ValueError, match="unknown optical flow method"):
        MotionEstimator("lucas-kanade")  # type: ignore[arg-type]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("width", "height"), [(1, 1), (8, 8), (15, 200), (1920, 9)])
def test_tiny_frames_are_skipped_with_a_reason_and_one_log_line(
    method: FlowMethod,
    width: int,
    height: int,
    texture: NDArray[np.uint8],
    caplog: pytest.LogCaptureFixture,
) -> None:
    estimator = MotionEstimator(method)
    tiny = np.zeros((height, width, 3), dtype=np.uint8)
    caplog.set_level(logging.INFO, logger="backend.pipeline.motion")
    for _ in range(2):  # the first frame and a following one
        with pytest.raises(MotionSkippedError) as caught:
            estimator.update(tiny)
        assert caught.value.code == "frame_too_small"
        assert f"{width}x{height}" in str(caught.value)
    records = [r for r in caplog.records if r.name == "backend.pipeline.motion"]
    assert len(records) == 2
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in records)
    frame = np.ascontiguousarray(texture[:240, :320])  # normal frames start a new sequence
    assert estimator.update(frame) is None
    assert estimator.update(frame) is not None


@pytest.mark.parametrize("method", METHODS)
def test_smallest_frame_with_motion(method: FlowMethod, texture: NDArray[np.uint8]) -> None:
    side = MIN_FLOW_SIDE
    first, second = shifted_pair(texture, side, side, 1, 0)
    field = flow_between(MotionEstimator(method), first, second)
    assert (field.orig_w, field.orig_h) == (side, side)
