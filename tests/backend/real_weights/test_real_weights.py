"""Real pretrained weights end to end: JPEGs over the WebSocket, through Triton, back as JSON.

Every box, class, score and keypoint the backend sends must agree with the reference decode
(`reference.py`: onnxruntime on the same ONNX file, ultralytics' processing written plainly):
IoU >= 0.9 and score within 0.02 (`agreement.py`). On a clip of the bus photo moving sideways,
the same objects keep the same track ids. Each test runs for every way of serving the weights
(`conftest.py`).
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
from tests.backend.real_weights.agreement import (
    assert_agrees,
    assert_people_are_upright,
    assert_tracks_follow_the_clip,
    found_in,
    labels_and_scores,
    moving_clip,
)
from tests.backend.real_weights.conftest import Served
from tests.backend.service.conftest import Client, bus_photo

pytestmark = pytest.mark.real_weights


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


def test_bus_photo_equals_the_reference_decode(served: Served, client: Client) -> None:
    image, result = _infer(client, _photo("bus.jpg").read_bytes())
    assert_agrees(found_in(result["yolo"], False), served.detector(image), "yolo")
    assert_agrees(found_in(result["pose"], True), served.pose(image), "pose")

    labelled = labels_and_scores(result["yolo"])
    assert any(label == "bus" and score >= 0.75 for label, score in labelled), labelled
    assert sum(label == "person" and score >= 0.4 for label, score in labelled) >= 3, labelled
    assert_people_are_upright(result["pose"], at_least=3)


def test_zidane_photo_equals_the_reference_decode(served: Served, client: Client) -> None:
    image, result = _infer(client, _photo("zidane.jpg").read_bytes())
    assert_agrees(found_in(result["yolo"], False), served.detector(image), "yolo")
    assert_agrees(found_in(result["pose"], True), served.pose(image), "pose")

    labelled = labels_and_scores(result["yolo"])
    assert sum(label == "person" and score >= 0.8 for label, score in labelled) >= 2, labelled
    assert result["pose"] is not None and len(result["pose"]["boxes"]) >= 2


def test_objects_keep_their_track_ids_through_a_moving_clip(served: Served, client: Client) -> None:
    results, widths = [], set()
    for index, jpeg in enumerate(moving_clip(_photo("bus.jpg"))):
        image, result = _infer(client, jpeg)
        assert result["frame_idx"] == index
        assert_agrees(found_in(result["yolo"], False), served.detector(image), f"frame {index}")
        results.append(result["yolo"])
        widths.add(result["width"])
    (width,) = widths
    assert_tracks_follow_the_clip(results, width)
