"""Model layouts are checked once when the backend starts, and a wrong one stops the start."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions

from backend.app import create_app
from backend.core.config import Settings
from backend.inference.triton_models import TritonModels, channel_args
from backend.inference.yolo_contract import ModelContractError, YoloContract
from backend.model_prep.manifest import (
    COCO_KEYPOINTS,
    COCO_SKELETON,
    KeypointLayout,
    Manifest,
    ModelEntry,
    ModelSource,
    TensorSpec,
    load_manifest,
    save_manifest,
)

POINTS = KeypointLayout(17, 3, COCO_KEYPOINTS, COCO_SKELETON)


def entry(**changes: Any) -> ModelEntry:
    """A well-formed 320 px raw detector with 3 classes; `changes` break one thing."""
    base = ModelEntry(
        name="yolo",
        task="detect",
        file="yolo.onnx",
        sha256="0" * 64,
        source=ModelSource("random", "test", meaningful=False),
        inputs=(TensorSpec("images", "TYPE_UINT8", (3, 320, 320)),),
        outputs=(TensorSpec("output0", "TYPE_FP32", (7, 2100)),),
        output_format="yolo_raw",
        input_size=320,
        class_names=("person", "car", "dog"),
    )
    return dataclasses.replace(base, **changes)


def pose_entry(**changes: Any) -> ModelEntry:
    pose = {
        "name": "yolo_pose",
        "task": "pose",
        "file": "yolo_pose.onnx",
        "outputs": (TensorSpec("output0", "TYPE_FP32", (56, 2100)),),
        "class_names": ("person",),
        "keypoints": POINTS,
    }
    return entry(**(pose | changes))


def test_a_well_formed_entry_gives_what_each_frame_needs() -> None:
    contract = YoloContract.of(entry())
    assert (contract.input_name, contract.input_type, contract.input_triton_type) == (
        "images",
        np.uint8,
        "UINT8",
    )
    assert (contract.input_size, contract.output_name) == (320, "output0")
    assert (contract.output_format, contract.num_classes, contract.values_per_detection) == (
        "yolo_raw",
        3,
        7,
    )
    assert YoloContract.of(pose_entry()).values_per_detection == 56
    end2end = entry(
        output_format="yolo_end2end", outputs=(TensorSpec("output0", "TYPE_FP32", (300, 6)),)
    )
    assert YoloContract.of(end2end).values_per_detection == 6


@pytest.mark.parametrize(
    ("broken", "found", "expected"),
    [
        (
            entry(outputs=(TensorSpec("output0", "TYPE_FP32", (84, 2100)),)),
            "yolo_raw output 'output0' is [84, 2100]",
            "expected [7, anchors] (4 box values + 3 class scores)",
        ),
        (
            entry(
                output_format="yolo_end2end",
                outputs=(TensorSpec("output0", "TYPE_FP32", (300, 7)),),
            ),
            "yolo_end2end output 'output0' is [300, 7]",
            "expected [detections, 6] (box, score, class)",
        ),
        (
            pose_entry(outputs=(TensorSpec("output0", "TYPE_FP32", (5, 2100)),)),
            "is [5, 2100]",
            "expected [56, anchors] (4 box values + 1 class scores + keypoint values)",
        ),
        (pose_entry(keypoints=None), "keypoint layout is missing", "one for a pose model"),
        (entry(keypoints=POINTS), "keypoint layout is present", "none for a detector"),
        (entry(input_size=None), "(size None) is dims [3, 320, 320]", "[3, size, size]"),
        (
            entry(inputs=(TensorSpec("images", "TYPE_UINT8", (3, 320, 640)),)),
            "is dims [3, 320, 640]",
            "square 3-channel images",
        ),
        (
            entry(inputs=(TensorSpec("images", "TYPE_INT64", (3, 320, 320)),)),
            "type is TYPE_INT64",
            "expected TYPE_UINT8 or TYPE_FP32 or TYPE_FP16",
        ),
        (entry(output_format="ocr_det_map"), "output format is ocr_det_map", "'yolo_raw'"),
        (entry(class_names=()), "class list is empty", "at least one class name"),
        (entry(task="ocr_det"), "task is ocr_det", "'detect' or 'pose'"),
        (
            entry(outputs=entry().outputs * 2),
            "1 inputs and 2 outputs",
            "one image input and one output",
        ),
    ],
)
def test_a_wrong_entry_is_refused_with_what_was_found_and_the_fix(
    broken: ModelEntry, found: str, expected: str
) -> None:
    with pytest.raises(ModelContractError) as refused:
        YoloContract.of(broken)
    message = str(refused.value)
    assert message.startswith(f"model '{broken.name}' ({broken.file}): ")
    assert found in message
    assert expected in message
    assert "run `cvstack models prepare` again" in message


def test_the_triton_client_checks_every_model_when_it_is_built() -> None:
    bad = {"yolo": entry(), "yolo_pose": pose_entry(keypoints=None)}
    with pytest.raises(ModelContractError, match="model 'yolo_pose'"):
        TritonModels("127.0.0.1:1", 1.0, bad)


def test_the_backend_refuses_to_start_with_a_wrong_layout(tmp_path: Path) -> None:
    wrong = entry(outputs=(TensorSpec("output0", "TYPE_FP32", (84, 2100)),))
    save_manifest(Manifest({"yolo": wrong, "yolo_pose": pose_entry()}), tmp_path)
    app = create_app(
        Settings(models_dir=tmp_path, summary_dir=tmp_path / "summaries", triton_metrics_url=None)
    )

    async def start() -> None:
        async with app.router.lifespan_context(app):
            pytest.fail("the backend started with a model its pipeline cannot decode")

    with pytest.raises(ModelContractError, match=r"model 'yolo' \(yolo.onnx\).*\[84, 2100\]"):
        asyncio.run(start())


@pytest.mark.parametrize("model", ["yolo", "yolo_pose"])
def test_prepared_models_fit_their_contract(model: str, yolo_models_dir: Path) -> None:
    """What `cvstack models prepare` writes passes, and the served output has that layout."""
    prepared = load_manifest(yolo_models_dir).entry(model)
    contract = YoloContract.of(prepared)
    session = ort.InferenceSession(
        str(yolo_models_dir / prepared.file), providers=["CPUExecutionProvider"]
    )
    image = np.zeros((1, 3, contract.input_size, contract.input_size), contract.input_type)
    output = session.run([contract.output_name], {contract.input_name: image})[0][0]
    axis = 0 if contract.output_format == "yolo_raw" else 1
    assert output.shape[axis] == contract.values_per_detection


def test_the_triton_client_keeps_tritonclient_s_options_and_retries_within_a_second() -> None:
    """The backend starts beside Triton at boot: gRPC's default reconnect backoff (up to 120 s)
    would leave `/ready` at 503 for seconds after Triton is ready."""
    options = dict(channel_args())
    assert options["grpc.max_receive_message_length"] == MAX_GRPC_MESSAGE_SIZE
    assert options["grpc.keepalive_timeout_ms"] == KeepAliveOptions().keepalive_timeout_ms
    assert options["grpc.initial_reconnect_backoff_ms"] <= options["grpc.max_reconnect_backoff_ms"]
    assert options["grpc.max_reconnect_backoff_ms"] <= 1000
