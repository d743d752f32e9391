"""Fixtures for the model preparation tests: one random-weight export and tiny ONNX graphs."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from backend.model_prep.manifest import Manifest
from backend.model_prep.prepare import prepare_models
from backend.model_prep.pretrained import pretrained_cache_dir
from backend.model_prep.yolo_export import github_reachable

OnnxFactory = Callable[..., Path]


@pytest.fixture(scope="session")
def random_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Manifest]:
    """Random-weight YOLOv8n detect and pose at 320 px plus the OCR models, prepared once."""
    models_dir = tmp_path_factory.mktemp("state") / "models"
    return models_dir, prepare_models(models_dir, random_weights=True, imgsz=320)


@pytest.fixture
def no_internet() -> None:
    """Skip tests of the offline paths on a machine that can reach GitHub."""
    if github_reachable():
        pytest.skip("github.com is reachable, so the official weights would download")


@pytest.fixture
def dead_package_index(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """pip sees only a closed local port as its index, and the pretrained cache is empty.

    Returns the (empty) pretrained cache folder of this test's own `CVSTACK_HOME`.
    """
    monkeypatch.setenv("CVSTACK_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)  # no index settings from pip.conf
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")
    for name in ("PIP_EXTRA_INDEX_URL", "PIP_FIND_LINKS", "PIP_NO_INDEX"):
        monkeypatch.delenv(name, raising=False)
    return pretrained_cache_dir()


@pytest.fixture
def yolo_onnx(tmp_path: Path) -> OnnxFactory:
    """Write a tiny runnable graph shaped like a YOLO export; see `write_yolo_like_onnx`."""

    def write(name: str = "model.onnx", **kwargs: Any) -> Path:
        return write_yolo_like_onnx(tmp_path / name, **kwargs)

    return write


def write_yolo_like_onnx(
    path: Path,
    *,
    out_tail: Sequence[int],
    batch: int | str = "batch",
    height: int | str = 320,
    width: int | str = 320,
    channels: int = 3,
    symbolic_out: bool = False,
    second_output: bool = False,
    elem_type: int = TensorProto.FLOAT,
    metadata: Mapping[str, str] | None = None,
) -> Path:
    """images [batch, channels, height, width] -> zeros [N, *out_tail], like a YOLO head.

    The output is built from the input's batch size (Shape, Slice, Concat, ConstantOfShape),
    so onnxruntime runs it; `symbolic_out` declares the non-batch output dims as unknown.
    """
    out_dims = [f"d{i}" for i in range(len(out_tail))] if symbolic_out else list(out_tail)
    zero = np.zeros(1, dtype=helper.tensor_dtype_to_np_dtype(elem_type))
    nodes = [
        helper.make_node("Shape", ["images"], ["shape"]),
        helper.make_node("Slice", ["shape", "start", "end"], ["n"]),
        helper.make_node("Concat", ["n", "tail"], ["out_shape"], axis=0),
        helper.make_node(
            "ConstantOfShape",
            ["out_shape"],
            ["output0"],
            value=onnx.numpy_helper.from_array(zero, "value"),
        ),
    ]
    outputs = [helper.make_tensor_value_info("output0", elem_type, [batch, *out_dims])]
    if second_output:
        nodes.append(helper.make_node("Identity", ["output0"], ["output1"]))
        outputs.append(helper.make_tensor_value_info("output1", elem_type, [batch, *out_dims]))
    graph = helper.make_graph(
        nodes,
        "tiny_yolo",
        [helper.make_tensor_value_info("images", elem_type, [batch, channels, height, width])],
        outputs,
        initializer=[
            helper.make_tensor("start", TensorProto.INT64, [1], [0]),
            helper.make_tensor("end", TensorProto.INT64, [1], [1]),
            helper.make_tensor("tail", TensorProto.INT64, [len(out_tail)], list(out_tail)),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, dict(metadata or {}))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path
