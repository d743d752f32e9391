"""The overlay benchmark's exact detector: an ONNX graph with the YOLO detection contract.

It finds the clip's rectangles by colour, so the benchmark's error is the page's overlay
misalignment, not detector error: per colour a mask of pixels within `TOLERANCE` of it (every
channel), the columns and rows holding at least `MIN_RUN` mask pixels, and their extent as the
box. It takes and gives what the prepared YOLOv8 model does (`images` UINT8 [B, 3, S, S],
`output0` FP32 [B, 4 + C, anchors] in `yolo_raw` layout: cx, cy, w, h, then class scores), one
anchor per colour scoring `SCORE` for its own class, so the backend runs its normal pipeline on
it: letterbox, Triton, NMS, tracker. A pose model with the pose contract that finds nobody
completes the models the backend needs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from backend.bench.overlay_clip import OBJECTS
from backend.model_prep.manifest import (
    COCO_KEYPOINTS,
    COCO_SKELETON,
    KeypointLayout,
    Manifest,
    ModelEntry,
    ModelSource,
    Task,
    TensorSpec,
    save_manifest,
    sha256_of,
)

INPUT_SIZE = 640
TOLERANCE = 45.0  # half the clip colours' distance from the grey background
MIN_RUN = 3  # mask pixels a column or row needs to count (JPEG noise has fewer)
SCORE = 0.95
OPSET = 17
POSE_VALUES = 4 + 1 + 17 * 3


def detector_graph(size: int = INPUT_SIZE) -> onnx.ModelProto:
    """The colour-mask detector for the clip's objects, input `size` x `size`."""
    count = len(OBJECTS)
    colours = np.array([obj.rgb for obj in OBJECTS], np.float32).reshape(1, count, 3, 1, 1)
    constants: dict[str, np.ndarray[Any, Any]] = {
        "colours": colours,
        "tolerance": np.array(TOLERANCE, np.float32),
        "min_run": np.array(MIN_RUN - 0.5, np.float32),
        "coords": np.arange(size, dtype=np.float32),
        "far": np.array(1e6, np.float32),
        "before": np.array(-1.0, np.float32),
        "one": np.array(1.0, np.float32),
        "half": np.array(0.5, np.float32),
        "axis1": np.array([1], np.int64),
        "axis2": np.array([2], np.int64),
        "axis3": np.array([3], np.int64),
        "class_scores": (np.eye(count, dtype=np.float32) * SCORE)[None],
    }
    node = helper.make_node
    nodes = [
        node("Cast", ["images"], ["pixels"], to=TensorProto.FLOAT),
        node("Unsqueeze", ["pixels", "axis1"], ["pixels_c"]),  # [B, 1, 3, S, S]
        node("Sub", ["pixels_c", "colours"], ["diff"]),  # [B, C, 3, S, S]
        node("Abs", ["diff"], ["distance"]),
        node("ReduceMax", ["distance"], ["worst"], axes=[2], keepdims=0),  # [B, C, S, S]
        node("Less", ["worst", "tolerance"], ["inside"]),
        node("Cast", ["inside"], ["mask"], to=TensorProto.FLOAT),
        node("ReduceSum", ["mask", "axis2"], ["per_column"], keepdims=0),  # [B, C, S] (x)
        node("ReduceSum", ["mask", "axis3"], ["per_row"], keepdims=0),  # [B, C, S] (y)
    ]
    for axis, counts in (("x", "per_column"), ("y", "per_row")):
        nodes += [
            node("Greater", [counts, "min_run"], [f"{axis}_on"]),
            node("Where", [f"{axis}_on", "coords", "far"], [f"{axis}_low"]),
            node("Where", [f"{axis}_on", "coords", "before"], [f"{axis}_high"]),
            node("ReduceMin", [f"{axis}_low"], [f"{axis}1"], axes=[2], keepdims=0),  # [B, C]
            node("ReduceMax", [f"{axis}_high"], [f"{axis}_last"], axes=[2], keepdims=0),
            node("Add", [f"{axis}_last", "one"], [f"{axis}2"]),  # past the last pixel
            node("Sub", [f"{axis}2", f"{axis}1"], [f"{axis}_extent"]),
            node("Add", [f"{axis}1", f"{axis}2"], [f"{axis}_sum"]),
            node("Mul", [f"{axis}_sum", "half"], [f"{axis}_centre"]),
        ]
    nodes += [
        node("Cast", ["x_on"], ["x_on_f"], to=TensorProto.FLOAT),
        node("ReduceMax", ["x_on_f"], ["present"], axes=[2], keepdims=0),  # [B, C]: 1 or 0
    ]
    box_rows = []
    for value in ("x_centre", "y_centre", "x_extent", "y_extent"):
        nodes += [
            node("Mul", [value, "present"], [f"{value}_kept"]),
            node("Unsqueeze", [f"{value}_kept", "axis1"], [f"{value}_row"]),  # [B, 1, C]
        ]
        box_rows.append(f"{value}_row")
    nodes += [
        node("Concat", box_rows, ["boxes"], axis=1),  # [B, 4, C]
        node("Unsqueeze", ["present", "axis1"], ["present_row"]),  # [B, 1, C]
        node("Mul", ["present_row", "class_scores"], ["scores"]),  # [B, C, C]
        node("Concat", ["boxes", "scores"], ["output0"], axis=1),
    ]
    graph = helper.make_graph(
        nodes,
        "overlay_detector",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", 4 + count, count])],
        [numpy_helper.from_array(value, name) for name, value in constants.items()],
    )
    return _model(graph)


def empty_pose_graph(size: int = INPUT_SIZE) -> onnx.ModelProto:
    """A pose model (17 COCO keypoints, one anchor) that finds nobody."""
    node = helper.make_node
    graph = helper.make_graph(
        [
            node("Shape", ["images"], ["batch"], start=0, end=1),
            node("Concat", ["batch", "rest"], ["shape"], axis=0),
            node(
                "ConstantOfShape",
                ["shape"],
                ["output0"],
                value=numpy_helper.from_array(np.zeros(1, np.float32)),
            ),
        ],
        "overlay_empty_pose",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, ["batch", POSE_VALUES, 1])],
        [numpy_helper.from_array(np.array([POSE_VALUES, 1], np.int64), "rest")],
    )
    return _model(graph)


def write_overlay_models(models_dir: Path, size: int = INPUT_SIZE) -> Path:
    """Write both graphs and their manifest (`yolo`, `yolo_pose`) into `models_dir`."""
    models_dir.mkdir(parents=True, exist_ok=True)
    detector = _save(
        models_dir,
        "yolo",
        detector_graph(size),
        ModelSource(
            kind="user",
            detail="the overlay benchmark's exact detector: the clip's rectangles by colour "
            "(backend/bench/overlay_detector.py)",
            meaningful=True,
        ),
        task="detect",
        class_names=tuple(obj.label for obj in OBJECTS),
    )
    pose = _save(
        models_dir,
        "yolo_pose",
        empty_pose_graph(size),
        ModelSource(
            kind="user",
            detail="the overlay benchmark's empty pose model: finds nobody",
            meaningful=False,
        ),
        task="pose",
        class_names=("person",),
        keypoints=KeypointLayout(17, 3, COCO_KEYPOINTS, COCO_SKELETON),
    )
    return save_manifest(Manifest(models={"yolo": detector, "yolo_pose": pose}), models_dir)


def _save(
    models_dir: Path,
    name: str,
    model: onnx.ModelProto,
    source: ModelSource,
    *,
    task: Task,
    class_names: tuple[str, ...],
    keypoints: KeypointLayout | None = None,
) -> ModelEntry:
    """Write `model` as `<name>.onnx`; its manifest entry."""
    path = models_dir / f"{name}.onnx"
    onnx.save(model, str(path))
    size = model.graph.input[0].type.tensor_type.shape.dim[2].dim_value
    output = model.graph.output[0].type.tensor_type.shape.dim[1:]
    return ModelEntry(
        name=name,
        task=task,
        file=path.name,
        sha256=sha256_of(path),
        source=source,
        inputs=(TensorSpec("images", "TYPE_UINT8", (3, size, size)),),
        outputs=(TensorSpec("output0", "TYPE_FP32", tuple(dim.dim_value for dim in output)),),
        output_format="yolo_raw",
        input_size=size,
        class_names=class_names,
        keypoints=keypoints,
    )


def _model(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8  # what onnxruntime builds of 2023 and later load
    onnx.checker.check_model(model, full_check=True)
    return model
