"""Real pretrained weights end to end: JPEGs over the WebSocket, through Triton, back as JSON.

Every box, class, score and keypoint the backend sends must agree with the reference decode
(`reference.py`: onnxruntime on the same ONNX file, ultralytics' processing written plainly):
IoU >= 0.9 and score within 0.02. On a clip of the bus photo moving sideways, the same objects
keep the same track ids. Each test runs for every way of serving the weights (`conftest.py`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray
from websockets.sync.client import connect

from backend.model_prep.manifest import load_manifest
from backend.model_prep.onnx_inspect import COCO_CLASSES
from tests.backend.real_weights.conftest import Served
from tests.backend.real_weights.reference import CONF_THRESHOLD, Found, iou
from tests.backend.service.conftest import Client, bus_photo

pytestmark = pytest.mark.real_weights

MIN_IOU = 0.9
SCORE_TOLERANCE = 0.02
KEYPOINT_PX = 1.5  # original-frame pixels; the backend rounds to 0.01
CLIP_SHIFT_PX = 8  # per frame, to the left
CLIP_FRAMES = 6


@pytest.fixture
def client(served: Served) -> Iterator[Client]:
    with connect(served.backend.ws_url, max_size=None) as connection:
        session = Client(connection)
        session.receive()
        session.start(use_yolo=True, use_yolo_pose=True)
        yield session


LAYOUTS = {  # variant: (detector format, output dims, input size, batch) as prepared
    "dynamic-320": ("yolo_raw", (84, 2100), 320, None),
    "static-640": ("yolo_raw", (84, 8400), 640, 1),
    "nms-free": ("yolo_end2end", (300, 6), 320, None),
}


def test_each_variant_serves_what_it_names(served: Served) -> None:
    manifest = load_manifest(served.models_dir)
    detector, pose = manifest.entry("yolo"), manifest.entry("yolo_pose")
    layout = (detector.output_format, detector.outputs[0].dims, detector.input_size, detector.batch)
    assert layout == LAYOUTS[served.variant]
    assert pose.output_format == "yolo_raw"
    assert pose.batch == (1 if served.variant == "static-640" else None)
    assert detector.class_names == COCO_CLASSES
    assert (detector.source.kind, pose.source.kind) == ("user", "user")


def _photo(name: str) -> Path:
    return bus_photo().with_name(name)


def _infer(client: Client, jpeg: bytes) -> tuple[NDArray[np.uint8], dict[str, Any]]:
    """The frame as the backend decodes it, and the backend's result for it."""
    client.connection.send(jpeg)
    result = client.receive_type("inference")["data"]
    assert result["errors"] == {}
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags)
    assert (result["width"], result["height"]) == (image.shape[1], image.shape[0])
    return np.asarray(image, np.uint8), result


def _detections(result: dict[str, Any] | None, pose: bool) -> list[Found]:
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


def _twin(found: Found, among: list[Found]) -> tuple[Found | None, float]:
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
        twin, overlap = _twin(ours, sent)
        assert twin is not None and overlap >= MIN_IOU, f"{what}: backend misses {ours}"
        assert abs(twin.score - ours.score) <= SCORE_TOLERANCE, f"{what}: {twin} vs {ours}"
        if ours.keypoints is not None:
            assert twin.keypoints is not None and twin.keypoints.shape == (17, 3)
            np.testing.assert_allclose(
                twin.keypoints[:, :2], ours.keypoints[:, :2], atol=KEYPOINT_PX
            )
            np.testing.assert_allclose(
                twin.keypoints[:, 2], ours.keypoints[:, 2], atol=SCORE_TOLERANCE
            )
    for theirs in (f for f in sent if f.score >= clear):
        twin, overlap = _twin(theirs, expected)
        assert twin is not None and overlap >= MIN_IOU, f"{what}: backend invents {theirs}"


def _labelled(result: dict[str, Any] | None) -> list[tuple[str, float]]:
    return [] if result is None else list(zip(result["labels"], result["scores"], strict=True))


def _assert_people_are_upright(pose: dict[str, Any] | None, at_least: int) -> None:
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


def test_bus_photo_equals_the_reference_decode(served: Served, client: Client) -> None:
    image, result = _infer(client, _photo("bus.jpg").read_bytes())
    assert_agrees(_detections(result["yolo"], False), served.detector(image), "yolo")
    assert_agrees(_detections(result["pose"], True), served.pose(image), "pose")

    labelled = _labelled(result["yolo"])
    assert any(label == "bus" and score >= 0.75 for label, score in labelled), labelled
    assert sum(label == "person" and score >= 0.4 for label, score in labelled) >= 3, labelled
    _assert_people_are_upright(result["pose"], at_least=3)


def test_zidane_photo_equals_the_reference_decode(served: Served, client: Client) -> None:
    image, result = _infer(client, _photo("zidane.jpg").read_bytes())
    assert_agrees(_detections(result["yolo"], False), served.detector(image), "yolo")
    assert_agrees(_detections(result["pose"], True), served.pose(image), "pose")

    labelled = _labelled(result["yolo"])
    assert sum(label == "person" and score >= 0.8 for label, score in labelled) >= 2, labelled
    assert result["pose"] is not None and len(result["pose"]["boxes"]) >= 2


def _clip() -> list[bytes]:
    """The bus photo seen through a window moving right: the scene moves left, px by px."""
    photo = cv2.imread(str(_photo("bus.jpg")))
    width = photo.shape[1] - CLIP_SHIFT_PX * CLIP_FRAMES
    frames = []
    for index in range(CLIP_FRAMES):
        left = index * CLIP_SHIFT_PX
        ok, encoded = cv2.imencode(
            ".jpg", photo[:, left : left + width], [cv2.IMWRITE_JPEG_QUALITY, 95]
        )
        assert ok
        frames.append(encoded.tobytes())
    return frames


def test_objects_keep_their_track_ids_through_a_moving_clip(served: Served, client: Client) -> None:
    results, widths = [], []
    for index, jpeg in enumerate(_clip()):
        image, result = _infer(client, jpeg)
        assert result["frame_idx"] == index
        assert_agrees(_detections(result["yolo"], False), served.detector(image), f"frame {index}")
        results.append(result["yolo"])
        widths.append(result["width"])

    first = results[0]
    first_width = widths[0]
    followed = [  # confident detections get a track id at once
        (Found(tuple(box), score, class_id), track_id)
        for box, score, class_id, track_id in zip(
            first["boxes"], first["scores"], first["classes"], first["track_ids"], strict=True
        )
        if score >= 0.5 and _stays_whole_in_view(box, first_width)
    ]
    assert len(followed) >= 2, first
    ids = [track_id for _, track_id in followed]
    assert min(ids) >= 1 and len(set(ids)) == len(ids)
    for index, yolo in enumerate(results[1:], start=1):
        sent = _detections(yolo, False)
        for found, track_id in followed:
            x1, y1, x2, y2 = found.box
            moved = Found(
                (x1 - index * CLIP_SHIFT_PX, y1, x2 - index * CLIP_SHIFT_PX, y2),
                found.score,
                found.class_id,
            )
            twin, overlap = _twin(moved, sent)
            assert twin is not None and overlap >= 0.7, f"frame {index}: lost {found}"
            assert yolo["track_ids"][sent.index(twin)] == track_id, f"frame {index}: {found}"

    last = results[-1]
    for _, track_id in followed:
        vx, vy = last["velocities"][last["track_ids"].index(track_id)]
        assert abs(vx + CLIP_SHIFT_PX) <= 4 and abs(vy) <= 4, (vx, vy)


def _stays_whole_in_view(box: list[float], width: int) -> bool:
    """Whether an object of the first frame is still whole in the last (no edge cuts it)."""
    x1, _, x2, _ = box
    return x1 - CLIP_SHIFT_PX * CLIP_FRAMES > 0 and x2 < width - 1
