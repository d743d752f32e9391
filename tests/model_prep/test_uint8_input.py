"""The UINT8 image input computes exactly what the float graph computes on pixels / 255."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from numpy.typing import NDArray
from onnx import TensorProto, helper

from backend.model_prep.uint8_input import accept_uint8_images


def conv_graph(path: Path, elem_type: int = TensorProto.FLOAT) -> Path:
    """images [N,3,8,8] -> Conv(1x1, 2 filters) + Relu, like the first layers of a detector."""
    dtype = np.float16 if elem_type == TensorProto.FLOAT16 else np.float32
    weights = np.random.default_rng(0).normal(size=(2, 3, 1, 1)).astype(dtype)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["images", "w"], ["c"]),
            helper.make_node("Relu", ["c"], ["output0"]),
        ],
        "g",
        [helper.make_tensor_value_info("images", elem_type, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("output0", elem_type, ["batch", 2, 8, 8])],
        [onnx.numpy_helper.from_array(weights, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def run(path: Path, images: NDArray[Any]) -> NDArray[Any]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (output,) = session.run(None, {"images": images})
    return np.asarray(output)


@pytest.mark.parametrize("elem_type", [TensorProto.FLOAT, TensorProto.FLOAT16])
def test_uint8_graph_equals_float_graph_on_scaled_pixels(tmp_path: Path, elem_type: int) -> None:
    original = conv_graph(tmp_path / "float.onnx", elem_type)
    wrapped = tmp_path / "uint8.onnx"
    shutil.copy(original, wrapped)

    assert accept_uint8_images(wrapped) is True
    pixels = np.random.default_rng(1).integers(0, 256, (2, 3, 8, 8), dtype=np.uint8)
    expected = run(
        original,
        (pixels / 255).astype(np.float16 if elem_type == TensorProto.FLOAT16 else np.float32),
    )
    np.testing.assert_allclose(run(wrapped, pixels), expected, rtol=1e-3, atol=1e-3)
    loaded = onnx.load(str(wrapped))
    assert loaded.graph.input[0].type.tensor_type.elem_type == TensorProto.UINT8


def test_a_uint8_graph_is_left_alone(tmp_path: Path) -> None:
    path = conv_graph(tmp_path / "model.onnx")
    accept_uint8_images(path)
    before = path.read_bytes()
    assert accept_uint8_images(path) is False
    assert path.read_bytes() == before


def test_non_image_inputs_are_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "ints.onnx"
    graph = helper.make_graph(
        [helper.make_node("Identity", ["images"], ["output0"])],
        "g",
        [helper.make_tensor_value_info("images", TensorProto.INT64, [1, 3])],
        [helper.make_tensor_value_info("output0", TensorProto.INT64, [1, 3])],
    )
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ValueError, match="has ONNX type INT64; expected FLOAT or FLOAT16"):
        accept_uint8_images(path)
