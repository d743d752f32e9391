"""A generated detection sequence with known identities, to count a tracker's id switches.

Detector output is simulated, not rendered: 24 s of motion at 30 fps in a 640x480 frame, with
the object each detection belongs to recorded beside it. The scene holds what broke ids in
practice: two walkers whose paths cross (the one behind is suppressed while they overlap, as
NMS would), an object that turns and changes speed, one that walks behind a pillar for 0.8 s
and comes out beside a standing neighbour, a person at the frame edge (box clipped, scores
around the high threshold, frequent misses), one detected at about 0.42 all along, and one
whose score dips to 0.3-0.45 for long stretches. Boxes jitter, 3 % of detections are missed
and a few false positives appear. Everything comes from one seeded generator, so every run and
every rate sees the same sequence; a rate of r results/s hands the tracker every (30 / r)-th
frame, as a backend that finishes r inferences a second would.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from backend.pipeline.yolo_decode import Detections

FPS = 30
DURATION_S = 24
FRAME_SIZE = (640, 480)  # width, height
CONF_THRESHOLD = 0.25  # the backend's default CVSTACK_CONF_THRESHOLD: lower scores never arrive
SUPPRESS_IOU = 0.45  # the default CVSTACK_IOU_THRESHOLD: the rear of two overlapping boxes goes
MISS_RATE = 0.03
FALSE_POSITIVE_RATE = 0.03  # per frame
JITTER = 0.02  # box edge noise, as a share of the box size
SEED = 15

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class SceneObject:
    """One object: where its true box is at time t, its score, and when it is not seen."""

    name: str
    size: tuple[float, float]  # width, height
    centre: Callable[[float], tuple[float, float]]
    score: Callable[[float, np.random.Generator], float]
    hidden: Callable[[float], bool] = lambda t: False
    miss_rate: float = MISS_RATE


@dataclass(frozen=True)
class SceneFrame:
    """One frame's detections and, row by row, the object each belongs to (-1: false)."""

    detections: Detections
    truth: NDArray[np.int64]


def _ping_pong(start: float, low: float, high: float, speed: float, t: float) -> float:
    """A coordinate moving at `speed` px/frame from `start`, turning back at `low` and `high`."""
    span = high - low
    travelled = (start - low + speed * t * FPS) % (2 * span)
    return low + (travelled if travelled <= span else 2 * span - travelled)


def _steady(score: float, spread: float = 0.05) -> Callable[[float, np.random.Generator], float]:
    return lambda t, rng: score + rng.uniform(-spread, spread)


def _dipping(t: float, rng: np.random.Generator) -> float:
    """0.8, but 0.3-0.45 for 2 s of every 6 s."""
    return rng.uniform(0.3, 0.45) if t % 6 >= 4 else rng.uniform(0.7, 0.9)


def _edge_score(t: float, rng: np.random.Generator) -> float:
    """Around the high threshold, slowly wandering: a half-seen person."""
    return 0.45 + 0.12 * math.sin(t * 1.7) + rng.uniform(-0.06, 0.06)


def _pillar(t: float) -> bool:
    """The occluded walker is behind a pillar while its centre is in x 260-290 (25 frames)."""
    return 260 <= _ping_pong(100, 100, 430, 1.2, t) <= 290


SCENE_OBJECTS = (
    SceneObject(
        "crossing right", (44, 110), lambda t: (_ping_pong(60, 60, 580, 2.5, t), 235), _steady(0.8)
    ),
    SceneObject(
        "crossing left", (46, 116), lambda t: (_ping_pong(580, 60, 580, 3.0, t), 250), _steady(0.75)
    ),
    SceneObject(
        "turning",
        (50, 100),
        lambda t: (
            320 + 170 * math.sin(2 * math.pi * t / 7),
            390 + 40 * math.sin(2 * math.pi * t / 3.1),
        ),
        _steady(0.7),
    ),
    SceneObject(
        "occluded",
        (40, 100),
        lambda t: (_ping_pong(100, 100, 430, 1.2, t), 95),
        _steady(0.75),
        _pillar,
    ),
    SceneObject(
        "standing, dipping",
        (42, 104),
        lambda t: (505 + 4 * math.sin(t), 100 + 3 * math.sin(t * 0.7)),
        _dipping,
    ),
    SceneObject(
        "edge",
        (70, 120),
        lambda t: (8 + 8 * math.sin(t * 0.9), 300 + 5 * math.sin(t * 0.5)),
        _edge_score,
        miss_rate=0.12,
    ),
    SceneObject(
        "weak 0.42", (40, 96), lambda t: (600, 400 + 6 * math.sin(t * 0.4)), _steady(0.42, 0.03)
    ),
)


def true_box(obj: SceneObject, t: float) -> Box:
    cx, cy = obj.centre(t)
    w, h = obj.size
    return (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)


def _iou(a: Box, b: Box) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def _clip(box: Box) -> Box:
    width, height = FRAME_SIZE
    return (max(0.0, box[0]), max(0.0, box[1]), min(width, box[2]), min(height, box[3]))


def tracking_scene(seed: int = SEED) -> list[SceneFrame]:
    """Every frame of the sequence at 30 fps: detections as the backend's decode returns them."""
    rng = np.random.default_rng(seed)
    frames = []
    for index in range(FPS * DURATION_S):
        t = index / FPS
        truths = [true_box(obj, t) for obj in SCENE_OBJECTS]
        rows: list[tuple[Box, float, int]] = []
        for number, (obj, box) in enumerate(zip(SCENE_OBJECTS, truths, strict=True)):
            score = obj.score(t, rng)
            behind = any(
                other < number and _iou(box, truths[other]) > SUPPRESS_IOU
                for other in range(len(truths))
            )  # the earlier object is in front: the rear box is suppressed
            if obj.hidden(t) or behind or rng.random() < obj.miss_rate or score < CONF_THRESHOLD:
                continue
            w, h = obj.size
            x1, y1, x2, y2 = np.add(box, rng.normal(0, JITTER, 4) * (w, h, w, h)).tolist()
            rows.append((_clip((x1, y1, x2, y2)), score, number))
        if rng.random() < FALSE_POSITIVE_RATE:
            x, y = rng.uniform(0, 580), rng.uniform(0, 380)
            w, h = rng.uniform(30, 60), rng.uniform(60, 110)
            rows.append((_clip((x, y, x + w, y + h)), rng.uniform(CONF_THRESHOLD, 0.55), -1))
        frames.append(_frame(rows))
    return frames


def _frame(rows: list[tuple[Box, float, int]]) -> SceneFrame:
    rows = sorted(rows, key=lambda row: -row[1])  # as decode_yolo orders them
    detections = Detections(
        boxes=np.array([box for box, _, _ in rows], dtype=np.float32).reshape(-1, 4),
        scores=np.array([score for _, score, _ in rows], dtype=np.float32),
        classes=np.zeros(len(rows), dtype=np.int64),
    )
    return SceneFrame(detections, np.array([obj for _, _, obj in rows], dtype=np.int64))


def at_rate(frames: list[SceneFrame], results_per_s: int) -> list[SceneFrame]:
    """The frames a tracker sees when `results_per_s` inference results arrive a second."""
    if FPS % results_per_s:
        raise ValueError(f"results per second must divide {FPS}, not {results_per_s}")
    return frames[:: FPS // results_per_s]
