"""The page's YOLO decoding (frontend/js/yolo_decode.js) against the backend's
(backend/pipeline/yolo_decode.py) on the same outputs of a real model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from numpy.typing import NDArray

from backend.pipeline.letterbox import letterbox
from backend.pipeline.yolo_decode import decode_yolo
from tests.backend.service.conftest import bus_photo
from tests.frontend.page_modules import run_page_module


def _js_decode(
    output: NDArray[np.float32], *, size: int, width: int, height: int, fmt: str, classes: int
) -> dict[str, Any]:
    body = f"""
const values = Float32Array.from({json.dumps(output.ravel().tolist())});
const letterbox = letterboxPlacement({width}, {height}, {size});
const found = decodeYolo(values, {json.dumps(list(output.shape))}, {{
  outputFormat: "{fmt}", numClasses: {classes}, letterbox, confThreshold: 0.25, iouThreshold: 0.45,
}});
console.log(JSON.stringify({{ letterbox, ...found }}));
"""
    result: dict[str, Any] = run_page_module(
        {"yolo_decode.js": "decodeYolo, letterboxPlacement"}, body
    )
    return result


def test_the_pages_decode_matches_the_backends_on_real_yolov10n_output(
    real_models_dir: Path,
) -> None:
    image = np.asarray(cv2.imread(str(bus_photo())), dtype=np.uint8)
    tensor, box = letterbox(image, 320)
    session = ort.InferenceSession(str(real_models_dir / "browser_detect.onnx"))
    output = session.run(None, {session.get_inputs()[0].name: tensor})[0][0]
    expected = decode_yolo(output, output_format="yolo_raw", num_classes=80, letterbox=box)
    got = _js_decode(
        output, size=320, width=image.shape[1], height=image.shape[0], fmt="yolo_raw", classes=80
    )
    assert (got["letterbox"]["padX"], got["letterbox"]["padY"]) == (box.pad_x, box.pad_y)
    assert len(expected) >= 4, "the bus and the people are found"
    assert got["classes"] == expected.classes.tolist()
    np.testing.assert_allclose(got["scores"], expected.scores, rtol=1e-6)
    np.testing.assert_allclose(got["boxes"], expected.boxes, atol=1e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_end2end_rows_and_class_aware_nms_match_on_synthetic_outputs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    letter = letterbox(np.zeros((240, 320, 3), np.uint8), 160)[1]
    rows = np.zeros((30, 6), np.float32)
    rows[:, :2] = rng.uniform(0, 100, (30, 2))
    rows[:, 2:4] = rows[:, :2] + rng.uniform(5, 60, (30, 2))
    rows[:, 4] = rng.uniform(0, 1, 30)
    rows[:, 5] = rng.integers(0, 3, 30)
    expected = decode_yolo(rows, output_format="yolo_end2end", num_classes=3, letterbox=letter)
    got = _js_decode(rows, size=160, width=320, height=240, fmt="yolo_end2end", classes=3)
    assert got["classes"] == expected.classes.tolist()
    np.testing.assert_allclose(got["boxes"], expected.boxes, atol=1e-3)
    raw = np.zeros((4 + 3, 50), np.float32)  # overlapping boxes of three classes: NMS decides
    raw[:2] = rng.uniform(40, 120, (2, 50))
    raw[2:4] = rng.uniform(20, 60, (2, 50))
    raw[4:] = rng.uniform(0, 1, (3, 50))
    expected = decode_yolo(raw, output_format="yolo_raw", num_classes=3, letterbox=letter)
    got = _js_decode(raw, size=160, width=320, height=240, fmt="yolo_raw", classes=3)
    assert got["classes"] == expected.classes.tolist()
    np.testing.assert_allclose(got["scores"], expected.scores, rtol=1e-6)
    np.testing.assert_allclose(got["boxes"], expected.boxes, atol=1e-3)
