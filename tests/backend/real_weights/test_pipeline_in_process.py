"""`SessionPipeline` on the real pretrained weights in this process: onnxruntime, no server.

The models `real_models_dir` prepares, the ones the WebSocket tests serve through Triton, run
here through `OnnxDetector`: what the pipeline returns must agree with the reference decode
(`agreement.py`), and the objects of a moving clip keep their track ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from backend.core.config import Settings
from backend.inference.onnx_detector import OnnxDetector
from backend.observability.metrics import BackendMetrics
from backend.pipeline.config import PipelineConfig
from backend.pipeline.multimodal import PipelineParts, SessionPipeline
from backend.protocol.client_messages import InitParams
from backend.protocol.server_messages import FrameOutputs
from tests.backend.real_weights.agreement import (
    assert_agrees,
    assert_tracks_follow_the_clip,
    found_in,
    labels_and_scores,
    moving_clip,
)
from tests.backend.real_weights.reference import (
    CONF_THRESHOLD,
    IOU_THRESHOLD,
    MAX_DETECTIONS,
    ReferenceModel,
)
from tests.backend.service.conftest import bus_photo

pytestmark = pytest.mark.real_weights
PEOPLE = {"bus.jpg": 3, "zidane.jpg": 2}  # people the models see clearly in each photo


@pytest.fixture(scope="module")
def parts(real_models_dir: Path) -> Iterator[PipelineParts]:
    settings = Settings(
        conf_threshold=CONF_THRESHOLD,
        iou_threshold=IOU_THRESHOLD,
        max_detections=MAX_DETECTIONS,
        session_cpu_share=64.0,
    )
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-pipeline") as pool:
        yield PipelineParts(
            detector=OnnxDetector.prepared(real_models_dir, "yolo", threads=2),
            pose=OnnxDetector.prepared(real_models_dir, "yolo_pose", threads=2),
            config=PipelineConfig.from_settings(settings),
            cpu_pool=pool,
            decode_pool=pool,
            metrics=BackendMetrics(),
        )


@pytest.fixture(scope="module")
def reference(real_models_dir: Path) -> dict[str, ReferenceModel]:
    return {
        "yolo": ReferenceModel(real_models_dir / "yolo.onnx"),
        "pose": ReferenceModel(real_models_dir / "yolo_pose.onnx"),
    }


def run_session(parts: PipelineParts, jpegs: list[bytes]) -> list[FrameOutputs]:
    """One detection + pose session's outputs for `jpegs`, in order."""

    async def session() -> list[FrameOutputs]:
        pipeline = SessionPipeline(parts, InitParams(use_yolo=True, use_yolo_pose=True))
        try:
            return [
                await pipeline.process(jpeg, index, ocr_requested=False)
                for index, jpeg in enumerate(jpegs)
            ]
        finally:
            await pipeline.aclose()

    return asyncio.run(session())


def decoded(jpeg: bytes) -> NDArray[np.uint8]:
    """The frame as the backend decodes it (EXIF orientation ignored)."""
    flags = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION
    return np.asarray(cv2.imdecode(np.frombuffer(jpeg, np.uint8), flags), np.uint8)


@pytest.mark.parametrize("photo", list(PEOPLE))
def test_a_photo_agrees_with_the_reference_decode(
    parts: PipelineParts, reference: dict[str, ReferenceModel], photo: str
) -> None:
    jpeg = bus_photo().with_name(photo).read_bytes()
    (outputs,) = run_session(parts, [jpeg])
    image = decoded(jpeg)

    assert outputs["errors"] == {}
    assert (outputs["width"], outputs["height"]) == (image.shape[1], image.shape[0])
    assert_agrees(found_in(outputs["yolo"], False), reference["yolo"](image), "yolo")
    assert_agrees(found_in(outputs["pose"], True), reference["pose"](image), "pose")
    people = [s for label, s in labels_and_scores(outputs["yolo"]) if label == "person"]
    assert sum(score >= 0.4 for score in people) >= PEOPLE[photo], people
    pose = outputs["pose"]
    assert pose is not None and len(pose["boxes"]) >= PEOPLE[photo]


def test_objects_keep_their_track_ids_through_a_moving_clip(
    parts: PipelineParts, reference: dict[str, ReferenceModel]
) -> None:
    clip = moving_clip(bus_photo())
    outputs = run_session(parts, clip)

    for index, (jpeg, frame) in enumerate(zip(clip, outputs, strict=True)):
        assert frame["errors"] == {}
        expected = reference["yolo"](decoded(jpeg))
        assert_agrees(found_in(frame["yolo"], False), expected, f"frame {index}")
    assert_tracks_follow_the_clip([frame["yolo"] for frame in outputs], outputs[0]["width"])
