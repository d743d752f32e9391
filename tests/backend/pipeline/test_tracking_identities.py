"""Identities through what broke them: weak scores, crossings, occlusion, the frame edge."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from backend.bench.tracking_bench import RATES, TrackingRow, run_tracking_bench
from backend.bench.tracking_scenes import SCENE_OBJECTS, at_rate, tracking_scene
from backend.core.config import Settings
from backend.pipeline.config import PipelineConfig
from backend.pipeline.tracker import ByteTracker, TrackerThresholds
from backend.pipeline.yolo_decode import Detections

Box = tuple[float, float, float, float]


def dets(boxes: Sequence[Box], scores: Sequence[float] = ()) -> Detections:
    return Detections(
        boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.array(scores or [0.9] * len(boxes), dtype=np.float32),
        classes=np.zeros(len(boxes), dtype=np.int64),
    )


def person(cx: float, cy: float, width: float = 44, height: float = 110) -> Box:
    return (cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2)


def test_a_person_detected_at_0_42_is_tracked_by_default() -> None:
    tracker = ByteTracker()
    for frame in range(5):
        assert tracker.update(dets([person(300 + frame, 200)], [0.42])).tolist() == [1]


def test_low_score_detections_continue_a_track_and_start_none() -> None:
    tracker = ByteTracker()
    assert tracker.update(dets([person(100, 200)], [0.8])).tolist() == [1]
    for step in range(1, 6):  # a stretch of 0.3: the track goes on, the stranger gets no id
        ids = tracker.update(dets([person(100 + 2 * step, 200), person(400, 200)], [0.3, 0.3]))
        assert ids.tolist() == [1, -1]
    assert len(tracker) == 1


def test_crossing_walkers_keep_their_ids_at_two_results_per_second() -> None:
    tracker = ByteTracker()
    step = 40  # 2.7 px/frame at 2 results/s: further than a box is wide
    for update in range(14):
        right = person(60 + step * update, 200)
        left = person(580 - step * update, 215)
        overlap = abs(right[0] - left[0]) < 30  # NMS keeps only the front walker
        ids = tracker.update(dets([right] if overlap else [right, left]))
        assert ids.tolist() == ([1] if overlap else [1, 2])


def test_an_occluded_walker_comes_back_with_its_id_beside_a_standing_neighbour() -> None:
    tracker = ByteTracker()
    neighbour = person(330, 100)
    for update in range(30):
        x = 100 + 6 * update
        hidden = 190 <= x <= 250  # 11 updates behind a pillar
        boxes = [neighbour] if hidden else [neighbour, person(x, 100)]
        ids = tracker.update(dets(boxes)).tolist()
        assert ids == ([1] if hidden else [1, 2])


def test_a_person_at_the_edge_keeps_one_id() -> None:
    tracker = ByteTracker()
    rng = np.random.default_rng(3)
    ids: set[int] = set()
    for update in range(200):
        cx = 8 + 8 * np.sin(update * 0.06)
        box = person(cx, 300, width=70, height=120)
        clipped = (max(0.0, box[0]), box[1], box[2], box[3])
        score = 0.45 + 0.12 * np.sin(update * 0.11) + rng.uniform(-0.06, 0.06)
        if rng.random() < 0.12:
            tracker.update(Detections.empty())
            continue
        ids.update(i for i in tracker.update(dets([clipped], [score])).tolist() if i >= 0)
    assert ids == {1}


@pytest.fixture(scope="module")
def bench_rows() -> list[TrackingRow]:
    return run_tracking_bench()[1]


def test_the_bench_counts_fewer_id_switches_than_the_baseline(
    bench_rows: list[TrackingRow],
) -> None:
    assert [row.results_per_s for row in bench_rows] == list(RATES)
    for row in bench_rows:
        assert row.current.id_switches < row.baseline.id_switches
        assert row.current.tracked_share > row.baseline.tracked_share
    at_five, at_fifteen = bench_rows[1].current, bench_rows[2].current
    assert at_five.id_switches == at_fifteen.id_switches == 0
    assert at_fifteen.ids_per_object == (1,) * len(SCENE_OBJECTS)


def test_the_sequence_is_the_same_every_time() -> None:
    first, second = at_rate(tracking_scene(), 5), at_rate(tracking_scene(), 5)
    for a, b in zip(first, second, strict=True):
        assert np.array_equal(a.detections.boxes, b.detections.boxes)
        assert np.array_equal(a.truth, b.truth)


def test_thresholds_come_from_the_settings() -> None:
    settings = Settings(track_high_thresh=0.5, new_track_thresh=0.6, track_buffer=12)
    thresholds = PipelineConfig.from_settings(settings).tracker
    assert (thresholds.high_thresh, thresholds.new_track_thresh) == (0.5, 0.6)
    assert thresholds.track_buffer == 12


def test_disordered_thresholds_are_refused_with_the_variable_names() -> None:
    with pytest.raises(ValueError, match=r"CVSTACK_TRACK_LOW_THRESH .* <= CVSTACK_TRACK_HIGH"):
        Settings(track_low_thresh=0.5, track_high_thresh=0.4)
    with pytest.raises(ValueError, match="new_track_thresh"):
        TrackerThresholds(high_thresh=0.6, new_track_thresh=0.5)
