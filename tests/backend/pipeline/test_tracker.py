"""ByteTrack-style tracking: stable ids, motion prediction, weak detections, bounded memory."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from backend.pipeline.tracker import ByteTracker, TrackerThresholds, pairwise_iou
from backend.pipeline.yolo_decode import Detections

Box = tuple[float, float, float, float]


def dets(
    boxes: Sequence[Box], scores: Sequence[float] = (), classes: Sequence[int] = ()
) -> Detections:
    """Detections of the given boxes; score 0.9 and class 0 unless given."""
    return Detections(
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.array(scores or [0.9] * len(boxes), dtype=np.float32),
        classes=np.array(classes or [0] * len(boxes), dtype=np.int64),
    )


def box_at(x: float, y: float, width: float = 40, height: float = 80) -> Box:
    return (x, y, x + width, y + height)


def test_ids_start_at_one_and_stay_with_moving_objects() -> None:
    tracker = ByteTracker()
    rng = np.random.default_rng(0)
    first = tracker.update(dets([box_at(100, 100), box_at(400, 300)]))
    assert first.tolist() == [1, 2]
    for frame in range(1, 40):
        a, b = box_at(100 + 6 * frame, 100 + 2 * frame), box_at(400 - 5 * frame, 300)
        order = rng.permutation(2)  # row order must not matter
        ids = tracker.update(dets([[a, b][i] for i in order]))
        assert ids[np.argsort(order)].tolist() == [1, 2]


def test_prediction_keeps_a_fast_object_whose_boxes_no_longer_overlap() -> None:
    tracker = ByteTracker()
    x, speed = 0.0, 0.0
    previous = current = box_at(x, 100, width=30)
    assert tracker.update(dets([current])).tolist() == [1]
    for _ in range(12):
        speed += 4  # accelerates to 48 px/frame, more than the box width
        x += speed
        previous, current = current, box_at(x, 100, width=30)
        assert tracker.update(dets([current])).tolist() == [1]
    assert pairwise_iou(np.array([previous]), np.array([current]))[0, 0] == 0


def test_crossing_objects_keep_their_ids() -> None:
    tracker = ByteTracker()
    for frame in range(50):
        left_to_right = box_at(100 + 8 * frame, 200)
        right_to_left = box_at(500 - 8 * frame, 220)
        ids = tracker.update(dets([right_to_left, left_to_right]))
        assert ids.tolist() == [1, 2]


def test_lost_object_keeps_its_id_only_within_the_track_buffer() -> None:
    tracker = ByteTracker(TrackerThresholds(track_buffer=5))
    still = dets([box_at(100, 100)])
    assert tracker.update(still).tolist() == [1]
    assert tracker.update(still).tolist() == [1]
    for _ in range(5):
        tracker.update(Detections.empty())
    assert tracker.update(still).tolist() == [1]
    for _ in range(6):
        tracker.update(Detections.empty())
    assert tracker.update(still).tolist() == [2]
    assert len(tracker) == 1


def test_low_score_detection_continues_a_track_but_starts_none() -> None:
    tracker = ByteTracker(TrackerThresholds(high_thresh=0.5, low_thresh=0.1, new_track_thresh=0.5))
    assert tracker.update(dets([box_at(100, 100)], [0.9])).tolist() == [1]
    weak = dets([box_at(104, 100), box_at(400, 100), box_at(500, 100)], [0.3, 0.3, 0.05])
    assert tracker.update(weak).tolist() == [1, -1, -1]
    assert tracker.update(dets([box_at(108, 100)], [0.8])).tolist() == [1]
    assert len(tracker) == 1


def test_strong_detections_are_matched_before_weak_ones() -> None:
    tracker = ByteTracker()
    tracker.update(dets([box_at(100, 100)]))
    weak_but_closer, strong = box_at(100, 100), box_at(110, 100)
    assert tracker.update(dets([weak_but_closer, strong], [0.3, 0.9])).tolist() == [-1, 1]


def test_weak_detections_continue_lost_tracks_only_where_they_were() -> None:
    tracker = ByteTracker()
    tracker.update(dets([box_at(100, 100)]))
    tracker.update(dets([box_at(100, 100)]))
    tracker.update(Detections.empty())
    assert tracker.update(dets([box_at(130, 100)], [0.3])).tolist() == [-1]  # IoU 0.2
    assert tracker.update(dets([box_at(102, 100)], [0.3])).tolist() == [1]


def test_a_detection_seen_once_leaves_no_lost_track() -> None:
    tracker = ByteTracker()
    assert tracker.update(dets([box_at(300, 300)])).tolist() == [1]
    tracker.update(Detections.empty())
    assert len(tracker) == 0


def test_matching_is_class_consistent() -> None:
    tracker = ByteTracker()
    for _ in range(2):
        assert tracker.update(dets([box_at(100, 100)], classes=[0])).tolist() == [1]
    assert tracker.update(dets([box_at(100, 100)], classes=[3])).tolist() == [2]
    assert tracker.update(dets([box_at(100, 100)], classes=[0])).tolist() == [1]


def test_velocities_of_live_tracks() -> None:
    tracker = ByteTracker()
    for frame in range(10):
        tracker.update(dets([box_at(100 + 5 * frame, 300 - 2 * frame), box_at(600, 50)]))
    velocities = tracker.velocities()
    assert set(velocities) == {1, 2}
    assert velocities[1] == pytest.approx((5.0, -2.0))
    assert velocities[2] == pytest.approx((0.0, 0.0))
    tracker.update(dets([box_at(600, 50)]))
    assert set(tracker.velocities()) == {2}


def test_reset_forgets_tracks_and_restarts_ids() -> None:
    tracker = ByteTracker()
    tracker.update(dets([box_at(100, 100), box_at(300, 100)]))
    tracker.reset()
    assert len(tracker) == 0
    assert tracker.velocities() == {}
    assert tracker.update(dets([box_at(300, 100)])).tolist() == [1]


def test_track_count_stays_bounded_over_many_frames() -> None:
    max_lost, max_objects = 30, 6
    tracker = ByteTracker(TrackerThresholds(track_buffer=max_lost))
    rng = np.random.default_rng(1)
    objects: list[tuple[Box, int]] = []  # box, frames left to live
    held, highest_id = [], 0
    for _ in range(3_000):
        objects = [(box, left - 1) for box, left in objects if left > 1]
        if len(objects) < max_objects and rng.random() < 0.3:
            x, y = rng.uniform(0, 1800), rng.uniform(0, 1000)
            objects.append((box_at(x, y), int(rng.integers(1, 60))))
        ids = tracker.update(dets([box for box, _ in objects]))
        assert len(set(ids.tolist())) == len(objects)
        held.append(len(tracker))
        highest_id = max([highest_id, *ids.tolist()])
    assert highest_id > 300  # many objects came and went
    assert max(held) <= max_objects * (max_lost + 1)
    for _ in range(max_lost + 1):
        tracker.update(Detections.empty())
    assert len(tracker) == 0
