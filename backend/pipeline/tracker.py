"""Give detections stable ids across frames: a ByteTrack-style tracker.

Association runs in stages (ByteTrack): confident detections (>= `high_thresh`) first with
the tracks matched in the last update, then the confident ones left with the lost tracks,
then the low-score ones (>= `low_thresh`) with the tracks still unmatched, on a strict plain
IoU, so an object keeps its id through results where the detector is unsure of it; new
tracks start only from unmatched confident detections >= `new_track_thresh`. A track not
matched is kept, lost, for `track_buffer` updates and can be matched again in that time; one
seen only once is dropped at its first miss (mostly a false positive).

Each track predicts where its box will be from its centre velocity, so an object keeps its id
when it moves further than its size between results (at 2 results/s a walker moves a third
of its height). The prediction is capped and, while lost, damped: a lost track is expected
near where it went out of sight, not flung along a noisy velocity. Pairs are scored by a
buffered IoU (boxes widened by a margin that grows while a track is lost, after C-BIoU) and
gated on size, and the best total assignment is taken (Hungarian), so crossing objects keep
their ids and a lost track does not take a neighbour's detection. Detections only match
tracks of their own class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from backend.pipeline.assignment import max_weight_matching
from backend.pipeline.yolo_decode import Detections

_VELOCITY_SMOOTHING = 0.5  # weight of the newest measured velocity in the running estimate
_MAX_SPEED = 1.0  # largest believed centre speed, in box sizes (the larger side) per update
_LOST_DAMPING = 0.7  # a lost track's predicted speed shrinks by this factor every update
_BUFFER = 0.3  # matching margin around a matched track's box, as a share of its size
_LOST_BUFFER_GROWTH = 0.15  # margin added per update lost, up to _MAX_BUFFER
_MAX_BUFFER = 0.9
_LOW_MATCH_IOU = 0.5  # low-score detections need a plain IoU this high (ByteTrack's second stage)
_MAX_SIZE_RATIO = 2.0  # width or height change beyond which a detection is another object

Box = tuple[float, float, float, float]


@dataclass
class _Track:
    """One followed object: its last measured box, centre velocity and how long it is lost."""

    track_id: int
    box: Box  # x1, y1, x2, y2 where it was last seen
    class_id: int
    vx: float = 0.0  # centre velocity, px/update
    vy: float = 0.0
    frames_lost: int = 0  # updates since it was last matched
    hits: int = 1

    def predicted_box(self) -> Box:
        """The box moved on by its velocity, damped for every update it has been lost."""
        updates = sum(_LOST_DAMPING**lost for lost in range(self.frames_lost + 1))
        dx, dy = self.vx * updates, self.vy * updates
        x1, y1, x2, y2 = self.box
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)

    def buffer(self) -> float:
        """The matching margin: widest before a velocity is known, and the longer it is lost."""
        if self.hits == 1:
            return _MAX_BUFFER
        return min(_BUFFER + _LOST_BUFFER_GROWTH * self.frames_lost, _MAX_BUFFER)

    def observe(self, box: Box) -> None:
        """Take a matched detection as the new position and update the velocity."""
        updates = self.frames_lost + 1
        measured_vx = (box[0] + box[2] - self.box[0] - self.box[2]) / 2 / updates
        measured_vy = (box[1] + box[3] - self.box[1] - self.box[3]) / 2 / updates
        weight = 1.0 if self.hits == 1 else _VELOCITY_SMOOTHING
        vx = weight * measured_vx + (1 - weight) * self.vx
        vy = weight * measured_vy + (1 - weight) * self.vy
        limit = _MAX_SPEED * max(box[2] - box[0], box[3] - box[1])
        scale = min(1.0, limit / max(float(np.hypot(vx, vy)), 1e-9))
        self.vx, self.vy = vx * scale, vy * scale
        self.box = box
        self.frames_lost = 0
        self.hits += 1


@dataclass(frozen=True)
class TrackerThresholds:
    """ByteTrack's knobs (CVSTACK_TRACK_* settings); scores are detection confidences."""

    high_thresh: float = 0.4  # first-stage detections; lower ones only continue tracks
    low_thresh: float = 0.1  # below this a detection is ignored
    new_track_thresh: float = 0.4  # an unmatched detection at least this sure starts a track
    match_iou: float = 0.2  # least buffered IoU of a detection with a track's prediction
    track_buffer: int = 30  # updates a lost track is kept before it is dropped

    def __post_init__(self) -> None:
        if not 0 <= self.low_thresh <= self.high_thresh <= self.new_track_thresh <= 1:
            raise ValueError(
                "tracker thresholds must satisfy 0 <= low_thresh "
                f"({self.low_thresh}) <= high_thresh ({self.high_thresh}) <= new_track_thresh "
                f"({self.new_track_thresh}) <= 1"
            )
        if not 0 < self.match_iou <= 1:
            raise ValueError(f"match_iou must be in (0, 1], not {self.match_iou}")
        if self.track_buffer < 0:
            raise ValueError(f"track_buffer must be >= 0 updates, not {self.track_buffer}")


class ByteTracker:
    """Assigns a track id to every detection of successive frames of one stream.

    Not thread-safe: use one tracker per stream, updated with frames in order.
    """

    def __init__(self, thresholds: TrackerThresholds | None = None) -> None:
        self.thresholds = thresholds or TrackerThresholds()
        self._tracks: list[_Track] = []
        self._next_id = 1

    def __len__(self) -> int:
        """Tracks held, followed and lost; bounded by what was seen in the last updates."""
        return len(self._tracks)

    def reset(self) -> None:
        """Forget every track and start ids from 1 again (a new stream)."""
        self._tracks = []
        self._next_id = 1

    def velocities(self) -> dict[int, tuple[float, float]]:
        """Box-centre velocity in px/update of each track matched in the last update."""
        return {t.track_id: (t.vx, t.vy) for t in self._tracks if t.frames_lost == 0}

    def update(self, detections: Detections) -> NDArray[np.int64]:
        """Track ids for this frame's detections, row by row; -1 for an unmatched weak one."""
        limits = self.thresholds
        scores = detections.scores
        high = np.flatnonzero(scores >= limits.high_thresh).tolist()
        weak = (scores >= limits.low_thresh) & (scores < limits.high_thresh)
        low = np.flatnonzero(weak).tolist()
        buffered = self._similarity(detections, buffered=True)

        followed = [i for i, t in enumerate(self._tracks) if t.frames_lost == 0]
        lost = [i for i, t in enumerate(self._tracks) if t.frames_lost > 0]
        matches = _match(buffered, followed, high, limits.match_iou)
        high_left = [d for d in high if d not in matches.values()]
        matches |= _match(buffered, lost, high_left, limits.match_iou)
        unmatched = [t for t in range(len(self._tracks)) if t not in matches]
        strict = self._similarity(detections, buffered=False)
        matches |= _match(strict, unmatched, low, _LOW_MATCH_IOU)

        ids = np.full(len(detections), -1, dtype=np.int64)
        boxes: list[Box] = [(x1, y1, x2, y2) for x1, y1, x2, y2 in detections.boxes.tolist()]
        for index, track in enumerate(self._tracks):
            if index in matches:
                track.observe(boxes[matches[index]])
                ids[matches[index]] = track.track_id
            else:
                track.frames_lost += 1
        self._tracks = [
            t for t in self._tracks if t.frames_lost <= (limits.track_buffer if t.hits > 1 else 0)
        ]  # a track seen once and missed next is dropped: mostly a false positive

        for det in high:
            if ids[det] == -1 and scores[det] >= limits.new_track_thresh:
                self._tracks.append(_Track(self._next_id, boxes[det], int(detections.classes[det])))
                ids[det] = self._next_id
                self._next_id += 1
        return ids

    def _similarity(self, detections: Detections, *, buffered: bool) -> NDArray[np.float64]:
        """(Buffered) IoU of every track's prediction or last box with every detection.

        The larger of the two: the object moved on as predicted, or it turned or stopped
        where it was last seen. 0 where the class differs or the size changed too much.
        """
        if not self._tracks:
            return np.zeros((0, len(detections)))
        predicted = np.array([t.predicted_box() for t in self._tracks], dtype=np.float64)
        last_seen = np.array([t.box for t in self._tracks], dtype=np.float64)
        found = detections.boxes.astype(np.float64)
        margins = np.array([t.buffer() if buffered else 0.0 for t in self._tracks])
        similarity = np.maximum(
            buffered_iou(predicted, found, margins), buffered_iou(last_seen, found, margins)
        )
        track_sizes = predicted[:, 2:] - predicted[:, :2]
        found_sizes = np.maximum(found[:, 2:] - found[:, :2], 1e-9)
        ratio = track_sizes[:, None, :] / found_sizes[None, :, :]
        similar_size = np.all((ratio <= _MAX_SIZE_RATIO) & (ratio >= 1 / _MAX_SIZE_RATIO), axis=2)
        classes = np.array([t.class_id for t in self._tracks], dtype=np.int64)
        same_class = classes[:, None] == detections.classes[None, :]
        return np.where(similar_size & same_class, similarity, 0.0)


def pairwise_iou(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """IoU of every box in `a` (M, 4) with every box in `b` (N, 4), as an (M, N) matrix."""
    ax1, ay1, ax2, ay2 = (a[:, i, None] for i in range(4))
    bx1, by1, bx2, by2 = (b[None, :, i] for i in range(4))
    width = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    height = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = width * height
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return np.asarray(inter / np.maximum(union, 1e-9), dtype=np.float64)


def buffered_iou(
    tracks: NDArray[np.float64], found: NDArray[np.float64], margins: NDArray[np.float64]
) -> NDArray[np.float64]:
    """IoU (M, N) of track boxes with detection boxes, both widened by each track's margin.

    Every box grows by `margins[m]` of its own width and height on each side, so near misses
    of a fast or lost object still overlap while the boxes keep their relative sizes (C-BIoU).
    """
    margin = margins[:, None, None]
    track_sizes = (tracks[:, 2:] - tracks[:, :2])[:, None, :]
    found_sizes = (found[:, 2:] - found[:, :2])[None, :, :]
    track_lo = tracks[:, None, :2] - margin * track_sizes
    track_hi = tracks[:, None, 2:] + margin * track_sizes
    found_lo = found[None, :, :2] - margin * found_sizes
    found_hi = found[None, :, 2:] + margin * found_sizes
    overlap = np.clip(np.minimum(track_hi, found_hi) - np.maximum(track_lo, found_lo), 0, None)
    inter = overlap[..., 0] * overlap[..., 1]
    areas = np.prod(track_hi - track_lo, axis=2) + np.prod(found_hi - found_lo, axis=2)
    return np.asarray(inter / np.maximum(areas - inter, 1e-9), dtype=np.float64)


def _match(
    similarity: NDArray[np.float64], tracks: list[int], detections: list[int], min_iou: float
) -> dict[int, int]:
    """Track -> detection pairs among the given ones, of largest total similarity."""
    if not tracks or not detections:
        return {}
    pairs = max_weight_matching(similarity[np.ix_(tracks, detections)], min_iou)
    return {tracks[t]: detections[d] for t, d in pairs.items()}
