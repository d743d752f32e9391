"""The tracker as it was at commit a5305c2, before issue 15: the tracking bench's baseline.

Kept unchanged (only this docstring differs from `backend/pipeline/tracker.py` at that
commit) so that `cvstack bench tracking` measures today's tracker and the current one on the
same sequences. Its behaviour: tracks start only at `high_threshold` (0.5), weak detections
continue only tracks matched in the previous update, and a lost track is predicted on by its
full, undamped velocity for every update it has been lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from backend.pipeline.yolo_decode import Detections

_VELOCITY_SMOOTHING = 0.5  # weight of the newest measured velocity in the running estimate

Box = tuple[float, float, float, float]


@dataclass
class _Track:
    """One followed object: its last measured box, centre velocity and how long it is lost."""

    track_id: int
    box: Box  # x1, y1, x2, y2 where it was last seen
    class_id: int
    vx: float = 0.0  # centre velocity, px/frame
    vy: float = 0.0
    frames_lost: int = 0
    hits: int = 1

    def predicted_box(self) -> Box:
        """The box moved on by its velocity for every frame since it was last seen."""
        frames = self.frames_lost + 1
        dx, dy = self.vx * frames, self.vy * frames
        x1, y1, x2, y2 = self.box
        return (x1 + dx, y1 + dy, x2 + dx, y2 + dy)

    def observe(self, box: Box) -> None:
        """Take a matched detection as the new position and update the velocity."""
        frames = self.frames_lost + 1
        measured_vx = (box[0] + box[2] - self.box[0] - self.box[2]) / 2 / frames
        measured_vy = (box[1] + box[3] - self.box[1] - self.box[3]) / 2 / frames
        weight = 1.0 if self.hits == 1 else _VELOCITY_SMOOTHING
        self.vx = weight * measured_vx + (1 - weight) * self.vx
        self.vy = weight * measured_vy + (1 - weight) * self.vy
        self.box = box
        self.frames_lost = 0
        self.hits += 1


class ByteTracker:
    """Assigns a track id to every detection of successive frames of one stream.

    Not thread-safe: use one tracker per stream, updated with frames in order.
    """

    def __init__(
        self,
        high_threshold: float = 0.5,
        low_threshold: float = 0.1,
        match_iou: float = 0.3,
        max_lost_frames: int = 30,
    ) -> None:
        if not 0 <= low_threshold <= high_threshold:
            raise ValueError(
                f"thresholds must satisfy 0 <= low ({low_threshold}) <= high ({high_threshold})"
            )
        self.high_threshold = high_threshold
        self.low_threshold = low_threshold
        self.match_iou = match_iou
        self.max_lost_frames = max_lost_frames
        self._tracks: list[_Track] = []
        self._next_id = 1

    def __len__(self) -> int:
        """Tracks held, followed and lost; bounded by what was seen in the last frames."""
        return len(self._tracks)

    def reset(self) -> None:
        """Forget every track and start ids from 1 again (a new stream)."""
        self._tracks = []
        self._next_id = 1

    def velocities(self) -> dict[int, tuple[float, float]]:
        """Box-centre velocity in px/frame of each track matched in the last update."""
        return {t.track_id: (t.vx, t.vy) for t in self._tracks if t.frames_lost == 0}

    def update(self, detections: Detections) -> NDArray[np.int64]:
        """Track ids for this frame's detections, row by row; -1 for an unmatched weak one."""
        scores = detections.scores
        high = np.flatnonzero(scores >= self.high_threshold).tolist()
        weak = (scores >= self.low_threshold) & (scores < self.high_threshold)
        low = np.flatnonzero(weak).tolist()
        iou = pairwise_iou(
            np.array([t.predicted_box() for t in self._tracks], dtype=np.float64).reshape(-1, 4),
            detections.boxes.astype(np.float64),
        )
        track_classes = np.array([t.class_id for t in self._tracks], dtype=np.int64)
        iou[track_classes[:, None] != detections.classes[None, :]] = 0.0  # same class only

        all_tracks = list(range(len(self._tracks)))
        first = _greedy_match(iou, all_tracks, high, self.match_iou)
        left = [t for t in all_tracks if t not in first]
        followed = [t for t in left if self._tracks[t].frames_lost == 0]
        second = _greedy_match(iou, followed, low, self.match_iou)

        ids = np.full(len(detections), -1, dtype=np.int64)
        boxes: list[Box] = [(x1, y1, x2, y2) for x1, y1, x2, y2 in detections.boxes.tolist()]
        for track_index, det in (first | second).items():
            track = self._tracks[track_index]
            track.observe(boxes[det])
            ids[det] = track.track_id
        for track_index in left:
            if track_index not in second:
                self._tracks[track_index].frames_lost += 1
        self._tracks = [t for t in self._tracks if t.frames_lost <= self.max_lost_frames]

        for det in high:
            if ids[det] == -1:
                self._tracks.append(_Track(self._next_id, boxes[det], int(detections.classes[det])))
                ids[det] = self._next_id
                self._next_id += 1
        return ids


def pairwise_iou(a: NDArray[np.float64], b: NDArray[np.float64]) -> NDArray[np.float64]:
    """IoU of every box in `a` (M, 4) with every box in `b` (N, 4), as an (M, N) matrix."""
    ax1, ay1, ax2, ay2 = (a[:, i, None] for i in range(4))
    bx1, by1, bx2, by2 = (b[None, :, i] for i in range(4))
    width = np.clip(np.minimum(ax2, bx2) - np.maximum(ax1, bx1), 0, None)
    height = np.clip(np.minimum(ay2, by2) - np.maximum(ay1, by1), 0, None)
    inter = width * height
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return np.asarray(inter / np.maximum(union, 1e-9), dtype=np.float64)


def _greedy_match(
    iou: NDArray[np.float64], rows: list[int], columns: list[int], min_iou: float
) -> dict[int, int]:
    """Row -> column matches among the given rows and columns of `iou`, best IoU first.

    Each row and column is used at most once, and only pairs with IoU >= `min_iou` match.
    """
    if not rows or not columns:
        return {}
    scores = iou[np.ix_(rows, columns)]
    candidates = np.argwhere(scores >= min_iou)
    order = np.argsort(-scores[candidates[:, 0], candidates[:, 1]], kind="stable")
    matches: dict[int, int] = {}
    used_columns: set[int] = set()
    for r, c in candidates[order].tolist():
        row, column = rows[r], columns[c]
        if row not in matches and column not in used_columns:
            matches[row] = column
            used_columns.add(column)
    return matches
