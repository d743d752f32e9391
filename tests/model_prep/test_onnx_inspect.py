"""How YOLO ONNX exports are read: shapes, batch, formats, class names and helpful errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from onnx import TensorProto

from backend.model_prep.manifest import COCO_KEYPOINTS, TensorSpec
from backend.model_prep.onnx_inspect import COCO_CLASSES, YoloTask, describe_yolo_onnx
from tests.model_prep.conftest import OnnxFactory

THREE = str({0: "cat", 1: "dog", 2: "bird"})


def test_three_classes_with_dynamic_batch(yolo_onnx: OnnxFactory) -> None:
    graph = describe_yolo_onnx(
        yolo_onnx(out_tail=(7, 2100), metadata={"names": THREE}), "detect", "yolo"
    )
    assert graph.output_format == "yolo_raw"
    assert graph.class_names == ("cat", "dog", "bird")
    assert graph.batch is None
    assert graph.input_size == 320
    assert graph.inputs == (TensorSpec("images", "TYPE_FP32", (3, 320, 320)),)
    assert graph.outputs == (TensorSpec("output0", "TYPE_FP32", (7, 2100)),)
    assert graph.keypoints is None


def test_static_batch_is_recorded(yolo_onnx: OnnxFactory) -> None:
    graph = describe_yolo_onnx(yolo_onnx(out_tail=(84, 2100), batch=1), "detect", "yolo")
    assert graph.batch == 1
    assert graph.class_names == COCO_CLASSES


def test_dynamic_dims_are_resolved_at_the_metadata_size(yolo_onnx: OnnxFactory) -> None:
    path = yolo_onnx(
        out_tail=(84, 8400),
        height="height",
        width="width",
        symbolic_out=True,
        elem_type=TensorProto.FLOAT16,
        metadata={"imgsz": "[640, 640]"},
    )
    graph = describe_yolo_onnx(path, "detect", "yolo")
    assert graph.input_size == 640
    assert graph.inputs == (TensorSpec("images", "TYPE_FP16", (3, 640, 640)),)
    assert graph.outputs == (TensorSpec("output0", "TYPE_FP16", (84, 8400)),)


def test_end_to_end_detection(yolo_onnx: OnnxFactory) -> None:
    path = yolo_onnx(out_tail=(300, 6), metadata={"names": THREE, "end2end": "True"})
    graph = describe_yolo_onnx(path, "detect", "yolo")
    assert graph.output_format == "yolo_end2end"
    assert graph.outputs[0].dims == (300, 6)
    assert graph.class_names == ("cat", "dog", "bird")


def test_end_to_end_pose_without_end2end_flag(yolo_onnx: OnnxFactory) -> None:
    path = yolo_onnx(out_tail=(300, 6 + 17 * 3), metadata={"names": str({0: "person"})})
    graph = describe_yolo_onnx(path, "pose", "yolo_pose")
    assert graph.output_format == "yolo_end2end"
    assert graph.keypoints is not None
    assert graph.keypoints.names == COCO_KEYPOINTS


def test_raw_pose_with_custom_keypoints(yolo_onnx: OnnxFactory) -> None:
    path = yolo_onnx(out_tail=(4 + 2 + 5 * 2, 2100), metadata={"kpt_shape": "[5, 2]"})
    graph = describe_yolo_onnx(path, "pose", "yolo_pose")
    assert graph.class_names == ("class_0", "class_1")
    assert graph.keypoints is not None
    assert (graph.keypoints.count, graph.keypoints.values_per_point) == (5, 2)
    assert graph.keypoints.names == tuple(f"kpt_{i}" for i in range(5))
    assert graph.keypoints.skeleton == ()


def test_numbered_placeholder_names_become_coco(yolo_onnx: OnnxFactory) -> None:
    numbered = str({i: str(i) for i in range(80)})
    path = yolo_onnx(out_tail=(84, 2100), metadata={"names": numbered})
    assert describe_yolo_onnx(path, "detect", "yolo").class_names == COCO_CLASSES


def test_unnamed_classes_are_numbered(yolo_onnx: OnnxFactory) -> None:
    graph = describe_yolo_onnx(yolo_onnx(out_tail=(9, 2100)), "detect", "yolo")
    assert graph.class_names == tuple(f"class_{i}" for i in range(5))


@pytest.mark.parametrize(
    ("graph", "task", "message"),
    [
        pytest.param({"out_tail": (7,)}, "detect", "expected [4 + classes", id="rank"),
        pytest.param(
            {"out_tail": (7, 2100), "metadata": {"names": str({i: "x" for i in range(5)})}},
            "detect",
            "3 class channels but metadata 'names' lists 5",
            id="names-mismatch",
        ),
        pytest.param(
            {"out_tail": (7, 2100), "width": 256}, "detect", "not square", id="non-square"
        ),
        pytest.param(
            {"out_tail": (7, 2100), "height": "h", "width": "w"},
            "detect",
            "export it with a fixed square imgsz",
            id="unknown-size",
        ),
        pytest.param(
            {"out_tail": (7, 2100), "metadata": {"imgsz": "[320, 256]"}, "width": "w"},
            "detect",
            "not square",
            id="non-square-metadata",
        ),
        pytest.param(
            {"out_tail": (56, 2100), "channels": 1}, "detect", "expected 3-channel", id="gray"
        ),
        pytest.param(
            {"out_tail": (7, 2100)},
            "pose",
            "is it a detection model? pass it with --detector",
            id="pose-without-keypoints",
        ),
        pytest.param(
            {"out_tail": (56, 2100), "metadata": {"kpt_shape": "[17, 4]"}},
            "pose",
            "metadata 'kpt_shape' is not [count, 2 or 3]",
            id="kpt-shape",
        ),
        pytest.param(
            {"out_tail": (56, 2100), "metadata": {"task": "pose"}},
            "detect",
            "is a 'pose' model, not 'detect'; pass it with --pose",
            id="task-mismatch",
        ),
        pytest.param(
            {"out_tail": (7, 2100), "second_output": True}, "detect", "2 outputs", id="outputs"
        ),
        pytest.param({"out_tail": (300, 6)}, "detect", "no 'names'", id="end2end-without-names"),
        pytest.param(
            {"out_tail": (300, 7), "metadata": {"end2end": "True", "names": THREE}},
            "detect",
            "end-to-end output rows have 7 values; expected 6",
            id="end2end-width",
        ),
        pytest.param(
            {"out_tail": (7, 2100), "metadata": {"names": "__import__('os').getcwd()"}},
            "detect",
            "metadata 'names' is not a Python literal",
            id="names-not-literal",
        ),
        pytest.param(
            {"out_tail": (7, 2100), "metadata": {"names": "['a', 'b', 'c']"}},
            "detect",
            "{index: name} dict",
            id="names-list",
        ),
    ],
)
def test_bad_graphs_say_what_is_wrong(
    yolo_onnx: OnnxFactory, graph: dict[str, Any], task: YoloTask, message: str
) -> None:
    path = yolo_onnx(**graph)
    with pytest.raises(ValueError) as error:
        describe_yolo_onnx(path, task, "yolo")
    assert f"yolo model {path}" in str(error.value)
    assert message in str(error.value)


def test_a_file_that_is_not_onnx(tmp_path: Path) -> None:
    path = tmp_path / "weights.onnx"
    path.write_bytes(b"\x00not a protobuf\xff" * 10)
    with pytest.raises(ValueError, match="is not a readable ONNX file"):
        describe_yolo_onnx(path, "detect", "yolo")
