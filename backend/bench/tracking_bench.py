"""Identity switches of the baseline tracker and the current one on the generated sequence.

Each tracker sees the same frames of `tracking_scenes` at 2, 5 and 15 results/s. Counted per
ground-truth object, over the updates in which it was detected (CLEAR-MOT style):
- an id switch whenever the id its detection gets differs from the id it last got;
- a fragmentation whenever it had an id, then a detection without one (-1), then an id again;
- the distinct ids it was given; the share of its detections that got an id;
and false tracks: ids only ever given to false positives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from backend.bench.machine import describe_machine
from backend.bench.tracking_baseline import ByteTracker as BaselineTracker
from backend.bench.tracking_scenes import (
    FPS,
    SCENE_OBJECTS,
    SceneFrame,
    at_rate,
    tracking_scene,
)
from backend.pipeline.tracker import ByteTracker
from backend.pipeline.yolo_decode import Detections

RATES = (2, 5, 15)  # results per second

TrackerUpdate = Callable[[Detections], NDArray[np.int64]]


@dataclass(frozen=True)
class IdentityScore:
    """How well one tracker kept identities on one sequence."""

    id_switches: int
    fragmentations: int
    ids_per_object: tuple[int, ...]  # in SCENE_OBJECTS order
    tracked_share: float  # of the objects' detections, the share that got an id
    false_tracks: int

    @property
    def ids_text(self) -> str:
        return " ".join(str(n) for n in self.ids_per_object)


@dataclass(frozen=True)
class TrackingRow:
    results_per_s: int
    updates: int
    baseline: IdentityScore
    current: IdentityScore


def score_identities(frames: Sequence[SceneFrame], update: TrackerUpdate) -> IdentityScore:
    """Run a fresh tracker's `update` over `frames` and score the ids it gives."""
    objects = len(SCENE_OBJECTS)
    last_id = [-1] * objects
    lost_since_id = [False] * objects
    ids_seen: list[set[int]] = [set() for _ in range(objects)]
    switches = fragmentations = detected = tracked = 0
    real_ids: set[int] = set()
    false_ids: set[int] = set()
    for frame in frames:
        ids = update(frame.detections).tolist()
        for obj, track_id in zip(frame.truth.tolist(), ids, strict=True):
            if obj < 0:
                if track_id >= 0:
                    false_ids.add(track_id)
                continue
            detected += 1
            if track_id < 0:
                lost_since_id[obj] = last_id[obj] >= 0
                continue
            tracked += 1
            real_ids.add(track_id)
            ids_seen[obj].add(track_id)
            switches += last_id[obj] >= 0 and track_id != last_id[obj]
            fragmentations += lost_since_id[obj]
            last_id[obj], lost_since_id[obj] = track_id, False
    return IdentityScore(
        id_switches=switches,
        fragmentations=fragmentations,
        ids_per_object=tuple(len(seen) for seen in ids_seen),
        tracked_share=tracked / max(detected, 1),
        false_tracks=len(false_ids - real_ids),
    )


def run_tracking_bench(rates: Sequence[int] = RATES) -> tuple[str, list[TrackingRow]]:
    """Both trackers, with their default settings, on the sequence at each rate."""
    scene = tracking_scene()
    rows = []
    for rate in rates:
        frames = at_rate(scene, rate)
        rows.append(
            TrackingRow(
                rate,
                len(frames),
                score_identities(frames, BaselineTracker().update),
                score_identities(frames, ByteTracker().update),
            )
        )
    return describe_machine(), rows


def render_markdown(machine: str, rows: list[TrackingRow]) -> str:
    names = ", ".join(f"{n + 1} {obj.name}" for n, obj in enumerate(SCENE_OBJECTS))
    lines = [
        "### Tracking: identity switches",
        "",
        f"Machine: {machine}. The generated sequence of `backend/bench/tracking_scenes.py` "
        f"({len(SCENE_OBJECTS)} objects, {FPS} fps motion); a rate of r results/s gives the "
        "tracker every (30 / r)-th frame. Objects: " + names + ".",
        "",
        "| results/s | updates | tracker | ID switches | fragmentations | ids per object "
        "| tracked | false tracks |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        for label, score in (("baseline (a5305c2)", row.baseline), ("current", row.current)):
            lines.append(
                f"| {row.results_per_s} | {row.updates} | {label} | {score.id_switches} "
                f"| {score.fragmentations} | {score.ids_text} "
                f"| {score.tracked_share:.0%} | {score.false_tracks} |"
            )
    return "\n".join(lines) + "\n"
