"""`SessionPipeline` end to end without a server: real JPEGs, models run by onnxruntime.

The models are small ONNX graphs built here whose heads emit known detections, so every box,
class, keypoint and track id the pipeline returns is computed by hand below. A 128x96 frame
letterboxed into a 64 px input is scaled by 0.5 and padded 8 px at the top, so an input
pixel (x, y) is the frame pixel (2x, 2(y - 8)).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import onnx
import pytest
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

from backend.core.config import Settings
from backend.inference.onnx_detector import OnnxDetector
from backend.inference.yolo_contract import YoloContract
from backend.model_prep.manifest import (
    COCO_KEYPOINTS,
    COCO_SKELETON,
    KeypointLayout,
    ModelEntry,
    ModelSource,
    TensorSpec,
)
from backend.observability.metrics import BackendMetrics
from backend.ocr.engine import OcrText
from backend.ocr.scheduler import TextReader
from backend.ocr.service import OcrService
from backend.pipeline.config import PipelineConfig
from backend.pipeline.jpeg import FrameRejectedError
from backend.pipeline.multimodal import PipelineParts, SessionPipeline
from backend.protocol.client_messages import InitParams
from backend.protocol.error_codes import ErrorCode, StageError
from backend.protocol.server_messages import FrameOutputs

SIZE = 64  # the models' square input
FRAME_W, FRAME_H = 128, 96
CLASSES = ("person", "car")
KEYPOINTS = KeypointLayout(17, 3, COCO_KEYPOINTS, COCO_SKELETON)


def raw_head(*anchors: tuple[float, ...]) -> NDArray[np.float32]:
    """A raw YOLO head `[values, anchors]` from one tuple of values per anchor."""
    return np.array(anchors, dtype=np.float32).T.copy()


# cx, cy, w, h in input pixels, then one score per class.
DETECTOR_HEAD = raw_head(
    (20, 30, 16, 24, 0.9, 0.0),  # a person at input (12, 18, 28, 42)
    (21, 30, 16, 24, 0.6, 0.0),  # the same person, weaker: NMS removes it
    (48, 40, 10, 10, 0.0, 0.8),  # a car at input (43, 35, 53, 45)
    (10, 10, 4, 4, 0.1, 0.2),  # under the 0.25 threshold
)
PERSON_BOX = [24.0, 20.0, 56.0, 68.0]  # in frame pixels
CAR_BOX = [86.0, 54.0, 106.0, 74.0]
# A person at input (22, 12, 42, 52) whose keypoint i is at input (20 + i, 20 + i), conf 0.5.
POSE_POINTS = tuple(v for i in range(17) for v in (20.0 + i, 20.0 + i, 0.5))
POSE_HEAD = raw_head((32, 32, 20, 40, 0.7, *POSE_POINTS), (5, 5, 2, 2, 0.1, *POSE_POINTS))


def model_entry(name: str, head: NDArray[np.float32], *, pose: bool = False) -> ModelEntry:
    """The manifest entry `cvstack models prepare` would write for a model with this head."""
    return ModelEntry(
        name=name,
        task="pose" if pose else "detect",
        file=f"{name}.onnx",
        sha256="0" * 64,
        source=ModelSource("user", "built by the test", meaningful=True),
        inputs=(TensorSpec("images", "TYPE_UINT8", (3, SIZE, SIZE)),),
        outputs=(TensorSpec("output0", "TYPE_FP32", head.shape),),
        output_format="yolo_raw",
        input_size=SIZE,
        class_names=("person",) if pose else CLASSES,
        keypoints=KEYPOINTS if pose else None,
    )


def constant_head_onnx(path: Path, head: NDArray[np.float32]) -> Path:
    """images uint8 [1, 3, SIZE, SIZE] -> output0 = `head` with a batch axis, whatever the image."""
    node = helper.make_node(
        "Constant", [], ["output0"], value=numpy_helper.from_array(head[None], "head")
    )
    graph = helper.make_graph(
        [node],
        "constant_head",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, *head.shape])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def onnx_detector(
    tmp_path: Path, name: str, head: NDArray[np.float32], *, pose: bool = False
) -> OnnxDetector:
    path = constant_head_onnx(tmp_path / f"{name}.onnx", head)
    return OnnxDetector(path, model_entry(name, head, pose=pose), threads=1)


class FailingDetector:
    """A detector whose every call fails the way an unreachable Triton does."""

    def __init__(self, entry: ModelEntry, error: Exception) -> None:
        self.entry = entry
        self.contract = YoloContract.of(entry)
        self.error = error

    async def infer(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        raise self.error


class ScriptedDetector:
    """A detector that answers its calls with the given heads in turn."""

    def __init__(self, entry: ModelEntry, heads: list[NDArray[np.float32]]) -> None:
        self.entry = entry
        self.contract = YoloContract.of(entry)
        self.heads = iter(heads)

    async def infer(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        return next(self.heads)


class FixedReader:
    """An OCR engine that reads the same line in every image."""

    def read(self, image_bgr: NDArray[np.uint8]) -> list[OcrText]:
        return [OcrText((10.0, 20.0, 60.0, 30.0), "EXIT", 0.91234)]


@pytest.fixture(scope="module")
def frame_jpeg() -> bytes:
    """A real 128x96 JPEG of smooth noise."""
    noise = np.random.default_rng(3).integers(0, 256, (FRAME_H, FRAME_W, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", cv2.GaussianBlur(noise, (0, 0), 2.0))
    assert ok
    return encoded.tobytes()


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="test-pipeline") as executor:
        yield executor


@pytest.fixture
def parts(tmp_path: Path, pool: ThreadPoolExecutor) -> PipelineParts:
    """The pipeline's collaborators over the two constant-head ONNX models."""
    settings = Settings(session_cpu_share=64.0, conf_threshold=0.25, iou_threshold=0.45)
    return PipelineParts(
        detector=onnx_detector(tmp_path, "yolo", DETECTOR_HEAD),
        pose=onnx_detector(tmp_path, "yolo_pose", POSE_HEAD, pose=True),
        config=PipelineConfig.from_settings(settings),
        cpu_pool=pool,
        decode_pool=pool,
        metrics=BackendMetrics(),
    )


def run_frames(
    parts: PipelineParts, params: InitParams, jpegs: list[bytes], *, ocr_requested: bool = False
) -> list[FrameOutputs]:
    """One session's outputs for `jpegs`, in order."""

    async def session() -> list[FrameOutputs]:
        pipeline = SessionPipeline(parts, params)
        try:
            return [
                await pipeline.process(jpeg, index, ocr_requested=ocr_requested)
                for index, jpeg in enumerate(jpegs)
            ]
        finally:
            await pipeline.aclose()

    return asyncio.run(session())


def sample(parts: PipelineParts, name: str, **labels: str) -> float:
    value = parts.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


def test_detections_and_poses_come_back_in_frame_pixels(
    parts: PipelineParts, frame_jpeg: bytes
) -> None:
    (outputs,) = run_frames(parts, InitParams(use_yolo=True, use_yolo_pose=True), [frame_jpeg])

    assert (outputs["width"], outputs["height"]) == (FRAME_W, FRAME_H)
    assert outputs["errors"] == {}
    assert outputs["yolo"] == {
        "boxes": [PERSON_BOX, CAR_BOX],
        "scores": [0.9, 0.8],
        "classes": [0, 1],
        "labels": ["person", "car"],
        "track_ids": [1, 2],
        "velocities": [[0.0, 0.0], [0.0, 0.0]],
    }
    pose = outputs["pose"]
    assert pose is not None
    assert (pose["boxes"], pose["scores"]) == ([[44.0, 8.0, 84.0, 88.0]], [0.7])
    assert pose["keypoints"] == [[[40.0 + 2 * i, 24.0 + 2 * i, 0.5] for i in range(17)]]
    assert (outputs["ocr"], outputs["ocr_info"], outputs["flow"]) == (None, None, None)
    assert set(outputs["stage_ms"]) == {"decode", "yolo", "pose"}
    assert all(ms > 0 for ms in outputs["stage_ms"].values())


def test_every_stage_is_counted_in_the_metrics(parts: PipelineParts, frame_jpeg: bytes) -> None:
    params = InitParams(use_yolo=True, use_yolo_pose=True, use_motion=True)
    run_frames(parts, params, [frame_jpeg] * 3)

    for stage in ("yolo", "pose", "motion"):
        assert sample(parts, "cvstack_frames_total", stage=stage) == 3
    for stage in ("decode", "yolo", "pose", "motion"):
        assert sample(parts, "cvstack_stage_latency_seconds_count", stage=stage) == 3
    assert sample(parts, "cvstack_errors_total", kind=ErrorCode.INTERNAL_ERROR) == 0


def test_only_the_enabled_stages_run(parts: PipelineParts, frame_jpeg: bytes) -> None:
    (outputs,) = run_frames(parts, InitParams(use_yolo=False, use_yolo_pose=True), [frame_jpeg])

    assert outputs["yolo"] is None and outputs["pose"] is not None
    assert set(outputs["stage_ms"]) == {"decode", "pose"}
    assert sample(parts, "cvstack_frames_total", stage="yolo") == 0


def test_a_steady_object_keeps_its_track_and_a_moving_one_gets_its_velocity(
    parts: PipelineParts, frame_jpeg: bytes
) -> None:
    steady = run_frames(parts, InitParams(use_yolo=True), [frame_jpeg] * 3)
    assert [o["yolo"]["track_ids"] for o in steady if o["yolo"]] == [[1, 2]] * 3

    # The person moves 3 input px (6 frame px) right per frame; the car stands still.
    heads = [DETECTOR_HEAD.copy() for _ in range(4)]
    for step, head in enumerate(heads):
        head[0, :2] += 3 * step
    moving = dataclasses.replace(parts, detector=ScriptedDetector(parts.detector.entry, heads))
    results = [o["yolo"] for o in run_frames(moving, InitParams(use_yolo=True), [frame_jpeg] * 4)]

    assert all(r is not None for r in results)
    assert [r["track_ids"] for r in results if r] == [[1, 2]] * 4
    assert [r["boxes"][0][0] for r in results if r] == [24.0, 30.0, 36.0, 42.0]
    last = results[-1]
    assert last is not None and last["velocities"] == [[6.0, 0.0], [0.0, 0.0]]


def test_a_failing_detector_is_reported_and_the_other_stages_still_run(
    parts: PipelineParts, frame_jpeg: bytes
) -> None:
    down = StageError(
        ErrorCode.TRITON_UNAVAILABLE, "yolo: Triton is not reachable at /srv/cvstack/triton.sock"
    )
    failing = dataclasses.replace(parts, detector=FailingDetector(parts.detector.entry, down))
    params = InitParams(use_yolo=True, use_yolo_pose=True)
    first, second = run_frames(failing, params, [frame_jpeg] * 2)

    assert first["yolo"] is None
    assert first["errors"] == {
        "yolo": "triton_unavailable: yolo: Triton is not reachable at <server path>"
    }
    assert second["errors"] == first["errors"]  # the session goes on, frame after frame
    assert first["pose"] is not None and len(first["pose"]["boxes"]) == 1
    assert sample(parts, "cvstack_errors_total", kind=ErrorCode.TRITON_UNAVAILABLE) == 2
    assert sample(parts, "cvstack_frames_total", stage="yolo") == 0
    assert sample(parts, "cvstack_frames_total", stage="pose") == 2


def test_a_model_that_is_not_what_its_manifest_says_is_an_internal_error(
    tmp_path: Path, parts: PipelineParts, frame_jpeg: bytes
) -> None:
    """The graph scores 3 classes where the entry promises 2: decoding refuses its output."""
    three_classes = np.vstack([DETECTOR_HEAD, np.zeros((1, 4), np.float32)])
    path = constant_head_onnx(tmp_path / "other.onnx", three_classes)
    other = OnnxDetector(path, model_entry("yolo", DETECTOR_HEAD), threads=1)
    (outputs,) = run_frames(
        dataclasses.replace(parts, detector=other), InitParams(use_yolo=True), [frame_jpeg]
    )

    assert outputs["yolo"] is None
    assert outputs["errors"] == {"yolo": "internal_error: ValueError"}
    assert sample(parts, "cvstack_errors_total", kind=ErrorCode.INTERNAL_ERROR) == 1


def test_bytes_that_are_not_a_jpeg_are_rejected_before_any_model_runs(
    parts: PipelineParts,
) -> None:
    with pytest.raises(FrameRejectedError) as rejected:
        run_frames(parts, InitParams(use_yolo=True), [b"GIF89a not a jpeg"])
    assert rejected.value.code == ErrorCode.NOT_JPEG
    assert sample(parts, "cvstack_stage_latency_seconds_count", stage="yolo") == 0


def test_ocr_runs_on_request_and_its_text_arrives_with_a_later_frame(
    parts: PipelineParts, pool: ThreadPoolExecutor, frame_jpeg: bytes
) -> None:
    engine: Future[TextReader] = Future()
    engine.set_result(FixedReader())
    with_ocr = dataclasses.replace(parts, ocr=OcrService(pool, engine))

    async def session() -> list[FrameOutputs]:
        pipeline = SessionPipeline(with_ocr, InitParams(use_yolo=False, use_ocr=True))
        outputs = [await pipeline.process(frame_jpeg, 0, ocr_requested=True)]
        for frame_idx in range(1, 200):  # the job runs on the pool while frames go on
            outputs.append(await pipeline.process(frame_jpeg, frame_idx, ocr_requested=False))
            if outputs[-1]["ocr_info"] is not None:
                break
            await asyncio.sleep(0.01)
        await pipeline.aclose()
        return outputs

    outputs = asyncio.run(session())

    assert outputs[0]["ocr"] is None and outputs[0]["errors"] == {}
    found = outputs[-1]
    assert found["ocr"] == [{"box": [10.0, 20.0, 60.0, 30.0], "text": "EXIT", "score": 0.912}]
    info = found["ocr_info"]
    assert info is not None and (info["reason"], info["frame_idx"]) == ("client_request", 0)
    assert sample(parts, "cvstack_frames_total", stage="ocr") == 1


@pytest.mark.parametrize(
    ("engine", "problem"),
    [
        ("none", "this server runs no OCR"),
        ("loading", "the OCR engine is still loading"),
        ("unprepared", "OCR models are not prepared; run `cvstack models prepare`"),
    ],
)
def test_ocr_asked_for_but_unavailable_says_why(
    parts: PipelineParts, pool: ThreadPoolExecutor, frame_jpeg: bytes, engine: str, problem: str
) -> None:
    services = {
        "none": None,
        "loading": OcrService(pool, Future()),
        "unprepared": OcrService(pool, None),
    }
    unavailable = dataclasses.replace(parts, ocr=services[engine])
    (outputs,) = run_frames(unavailable, InitParams(use_yolo=True, use_ocr=True), [frame_jpeg])

    assert outputs["errors"] == {"ocr": f"ocr_unavailable: {problem}"}
    assert outputs["yolo"] is not None  # the other stages run as asked
