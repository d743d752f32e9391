"""Class-aware NMS agrees with greedy NMS written plainly, on random and hostile inputs.

Tie-handling both sides share: equal scores are visited in index order, and a box whose IoU
with a kept box equals the threshold exactly is kept. Boxes of zero area are left out of the
comparison: OpenCV counts two of them as identical (IoU 1), the plain definition as disjoint.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from backend.pipeline.yolo_decode import nms


def greedy_nms(
    boxes: NDArray[np.float32],
    scores: NDArray[np.float32],
    classes: NDArray[np.int64],
    iou_threshold: float,
    max_detections: int,
) -> list[int]:
    """The textbook definition, one pair at a time in float64."""
    order = sorted(range(len(scores)), key=lambda i: (-float(scores[i]), i))
    kept: list[int] = []
    for index in order:
        if len(kept) == max_detections:
            break
        if all(
            classes[k] != classes[index] or iou(boxes[k], boxes[index]) <= iou_threshold
            for k in kept
        ):
            kept.append(index)
    return kept


def iou(a: NDArray[np.float32], b: NDArray[np.float32]) -> float:
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union


def random_boxes(
    rng: np.random.Generator, count: int, classes: int, *, spread: float = 600.0
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    """Boxes of 1-150 px with corners from -40 (past the letterbox edge) to `spread`."""
    corners = rng.uniform(-40, spread, (count, 2))
    boxes = np.concatenate([corners, corners + rng.uniform(1, 150, (count, 2))], axis=1)
    scores = rng.uniform(0.25, 1.0, count)
    return boxes.astype(np.float32), scores.astype(np.float32), rng.integers(0, classes, count)


def clusters(
    rng: np.random.Generator, objects: int, per_object: int, classes: int
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64]]:
    """What a YOLO head gives: each object seen by several anchors with jittered boxes."""
    centres, _, object_classes = random_boxes(rng, objects, classes)
    jitter = rng.normal(0, 4, (objects, per_object, 4))
    boxes = (centres[:, None, :] + jitter).reshape(-1, 4)
    boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
    scores = rng.uniform(0.25, 1.0, objects * per_object).astype(np.float32)
    return boxes.astype(np.float32), scores, np.repeat(object_classes, per_object)


def check_agrees(
    boxes: NDArray[np.float32],
    scores: NDArray[np.float32],
    classes: NDArray[np.int64],
    iou_threshold: float = 0.45,
    max_detections: int = 1000,
) -> list[int]:
    expected = greedy_nms(boxes, scores, classes, iou_threshold, max_detections)
    kept = nms(boxes, scores, classes, iou_threshold, max_detections)
    assert kept.dtype == np.intp
    assert kept.tolist() == expected
    return expected


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("class_count", [1, 3, 80])
def test_random_boxes(seed: int, class_count: int) -> None:
    rng = np.random.default_rng(seed)
    kept = check_agrees(*random_boxes(rng, 300, class_count))
    assert 0 < len(kept) <= 300


@pytest.mark.parametrize("iou_threshold", [0.0, 0.3, 0.45, 0.7, 1.0])
@pytest.mark.parametrize("class_count", [1, 4, 80])
def test_many_overlapping_boxes(iou_threshold: float, class_count: int) -> None:
    boxes, scores, classes = clusters(np.random.default_rng(1), 40, 8, class_count)
    kept = check_agrees(boxes, scores, classes, iou_threshold)
    assert len(kept) < 40 * 8 or iou_threshold == 1.0  # at 1.0 only exact copies go


def test_equal_scores_keep_the_lower_index() -> None:
    rng = np.random.default_rng(2)
    boxes, _, classes = clusters(rng, 20, 5, 2)
    kept = check_agrees(boxes, np.full(len(boxes), 0.5, np.float32), classes)
    assert kept[0] == 0
    assert kept == sorted(kept)


def test_iou_exactly_at_the_threshold_is_kept() -> None:
    # IoU with the first box: 0.5 and 0.4; the last two do not overlap each other.
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 5], [0, 6, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8, 0.7], np.float32)
    assert check_agrees(boxes, scores, np.zeros(3, np.int64), 0.5) == [0, 1, 2]
    assert check_agrees(boxes, scores, np.zeros(3, np.int64), 0.45) == [0, 2]


def test_empty() -> None:
    empty = np.zeros((0, 4), np.float32)
    assert check_agrees(empty, np.zeros(0, np.float32), np.zeros(0, np.int64)) == []


def test_one_box() -> None:
    boxes = np.array([[5, 5, 20, 30]], np.float32)
    assert check_agrees(boxes, np.array([0.3], np.float32), np.array([7])) == [0]


def test_identical_boxes_of_different_classes_never_suppress_each_other() -> None:
    boxes = np.tile(np.array([[100, 100, 200, 200]], np.float32), (80, 1))
    scores = np.linspace(0.9, 0.3, 80).astype(np.float32)
    assert check_agrees(boxes, scores, np.arange(80)) == list(range(80))


def test_classes_stay_apart_past_the_top_left_edge() -> None:
    """OpenCV separates classes by shifting them, which needs non-negative coordinates."""
    boxes = np.array([[560, 560, 640, 640], [-70, -70, 10, 10]], np.float32)
    scores = np.array([0.9, 0.8], np.float32)
    assert check_agrees(boxes, scores, np.array([0, 1])) == [0, 1]


@pytest.mark.parametrize("max_detections", [1, 5, 30])
def test_max_detections_caps_the_result_not_the_candidates(max_detections: int) -> None:
    boxes, scores, classes = clusters(np.random.default_rng(4), 50, 6, 3)
    kept = check_agrees(boxes, scores, classes, max_detections=max_detections)
    assert len(kept) == max_detections
