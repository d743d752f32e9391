"""What "the backend agrees with the reference" means, for results over the WebSocket or in process.

A result is the `yolo` or `pose` dict of an `inference` message (`FrameOutputs`). Detections
agree with the reference decode (`reference.py`) when each clear one has a twin of the same
class with IoU >= 0.9 and a score within 0.02; on a clip of the bus photo moving sideways,
confident objects keep their track ids and get the clip's velocity.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from tests.backend.real_weights.reference import CONF_THRESHOLD, Found, iou

MIN_IOU = 0.9
SCORE_TOLERANCE = 0.02
KEYPOINT_PX = 1.5  # original-frame pixels; the backend rounds to 0.01
CLIP_SHIFT_PX = 8  # per frame, to the left
CLIP_FRAMES = 6
Result = Mapping[str, Any]


def found_in(result: Result | None, pose: bool) -> list[Found]:
    """The detections of a `yolo` (or, with `pose`, a `pose`) result."""
    if result is None:
        return []
    classes = [0] * len(result["boxes"]) if pose else result["classes"]
    keypoints = result["keypoints"] if pose else [None] * len(result["boxes"])
    return [
        Found(tuple(box), score, class_id, None if kps is None else np.asarray(kps, np.float32))
        for box, score, class_id, kps in zip(
            result["boxes"], result["scores"], classes, keypoints, strict=True
        )
    ]


def twin(found: Found, among: list[Found]) -> tuple[Found | None, float]:
    """The detection of the same class in `among` that overlaps `found` most, and the IoU."""
    candidates = [(iou(other.box, found.box), other) for other in among]
    same_class = [
        (overlap, other) for overlap, other in candidates if other.class_id == found.class_id
    ]
    if not same_class:
        return None, 0.0
    overlap, other = max(same_class, key=lambda pair: pair[0])
    return other, overlap


def assert_agrees(sent: list[Found], expected: list[Found], what: str) -> None:
    """Both ways: every detection clearly above the threshold in one has its twin in the other.

    Detections within the score tolerance of the threshold may be on one side only.
    """
    clear = CONF_THRESHOLD + SCORE_TOLERANCE
    for ours in (f for f in expected if f.score >= clear):
        theirs, overlap = twin(ours, sent)
        assert theirs is not None and overlap >= MIN_IOU, f"{what}: backend misses {ours}"
        assert abs(theirs.score - ours.score) <= SCORE_TOLERANCE, f"{what}: {theirs} vs {ours}"
        if ours.keypoints is not None:
            assert theirs.keypoints is not None and theirs.keypoints.shape == (17, 3)
            np.testing.assert_allclose(
                theirs.keypoints[:, :2], ours.keypoints[:, :2], atol=KEYPOINT_PX
            )
            np.testing.assert_allclose(
                theirs.keypoints[:, 2], ours.keypoints[:, 2], atol=SCORE_TOLERANCE
            )
    for theirs in (f for f in sent if f.score >= clear):
        ours_twin, overlap = twin(theirs, expected)
        assert ours_twin is not None and overlap >= MIN_IOU, f"{what}: backend invents {theirs}"


def labels_and_scores(result: Result | None) -> list[tuple[str, float]]:
    return [] if result is None else list(zip(result["labels"], result["scores"], strict=True))


def assert_people_are_upright(pose: Result | None, at_least: int) -> None:
    """Enough people with 17 keypoints, and the well-seen ones have the nose above the shoulders."""
    assert pose is not None
    people = np.asarray(pose["keypoints"], np.float32)
    assert people.shape[1:] == (17, 3)
    assert len(people) >= at_least
    well_seen = [p for p in people if (p[:, 2] > 0.5).sum() >= 15]
    assert len(well_seen) >= 2
    for person in well_seen:
        nose, left_shoulder, right_shoulder = person[0], person[5], person[6]
        assert nose[1] < min(left_shoulder[1], right_shoulder[1])


def moving_clip(photo: Path) -> list[bytes]:
    """The photo seen through a window moving right: the scene moves left, px by px."""
    image = cv2.imread(str(photo))
    width = image.shape[1] - CLIP_SHIFT_PX * CLIP_FRAMES
    frames = []
    for index in range(CLIP_FRAMES):
        left = index * CLIP_SHIFT_PX
        ok, encoded = cv2.imencode(
            ".jpg", image[:, left : left + width], [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
        assert ok
        frames.append(encoded.tobytes())
    return frames


def assert_tracks_follow_the_clip(results: Sequence[Result | None], width: int) -> None:
    """The `yolo` results of `moving_clip`'s frames (`width` px wide) keep confident objects'
    track ids, and the last frame gives them the clip's velocity."""
    first = results[0]
    assert first is not None
    followed = [  # confident detections get a track id at once
        (Found(tuple(box), score, class_id), track_id)
        for box, score, class_id, track_id in zip(
            first["boxes"], first["scores"], first["classes"], first["track_ids"], strict=True
        )
        if score >= 0.5 and _stays_whole_in_view(box, width)
    ]
    assert len(followed) >= 2, first
    ids = [track_id for _, track_id in followed]
    assert min(ids) >= 1 and len(set(ids)) == len(ids)
    for index, yolo in enumerate(results[1:], start=1):
        assert yolo is not None
        sent = found_in(yolo, False)
        for found, track_id in followed:
            x1, y1, x2, y2 = found.box
            moved = Found(
                (x1 - index * CLIP_SHIFT_PX, y1, x2 - index * CLIP_SHIFT_PX, y2),
                found.score,
                found.class_id,
            )
            match, overlap = twin(moved, sent)
            assert match is not None and overlap >= 0.7, f"frame {index}: lost {found}"
            assert yolo["track_ids"][sent.index(match)] == track_id, f"frame {index}: {found}"

    last = results[-1]
    assert last is not None
    for _, track_id in followed:
        vx, vy = last["velocities"][last["track_ids"].index(track_id)]
        assert abs(vx + CLIP_SHIFT_PX) <= 4 and abs(vy) <= 4, (vx, vy)


def _stays_whole_in_view(box: list[float], width: int) -> bool:
    """Whether an object of the first frame is still whole in the last (no edge cuts it)."""
    x1, _, x2, _ = box
    return x1 - CLIP_SHIFT_PX * CLIP_FRAMES > 0 and x2 < width - 1
