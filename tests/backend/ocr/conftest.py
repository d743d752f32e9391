"""Fixtures for the OCR tests: real engines on rapidocr's bundled models and text images."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from numpy.typing import NDArray

from backend.model_prep.manifest import Manifest, save_manifest
from backend.model_prep.ocr_models import bundled_ocr_models, stage_ocr_model
from backend.ocr.engine import Box, OcrEngine

Image = NDArray[np.uint8]
# (width, height, {text: bottom-left corner}) -> (image, {text: drawn box})
RenderText = Callable[[int, int, Mapping[str, tuple[int, int]]], tuple[Image, dict[str, Box]]]

FONT = cv2.FONT_HERSHEY_SIMPLEX
FONT_SCALE = 1.2
THICKNESS = 3


@pytest.fixture(scope="session")
def bundled_engine() -> OcrEngine:
    """The engine on the wheel's models, 640 px detection, no angle classifier."""
    return OcrEngine.bundled()


@pytest.fixture(scope="session")
def ocr_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models folder holding only the OCR models and their manifest, as `prepare` writes."""
    models_dir = tmp_path_factory.mktemp("ocr-models")
    entries = [stage_ocr_model(m, models_dir / f"{m.name}.onnx") for m in bundled_ocr_models()]
    save_manifest(Manifest(models={entry.name: entry for entry in entries}), models_dir)
    return models_dir


@pytest.fixture
def ocr_pool() -> Iterator[ThreadPoolExecutor]:
    """A one-worker pool, like the process-wide OCR pool the service shares between sessions."""
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-ocr")
    yield pool
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture
def render_text() -> RenderText:
    """Black text drawn with cv2.putText on a white canvas, with each text's drawn box."""

    def render(
        width: int, height: int, texts: Mapping[str, tuple[int, int]]
    ) -> tuple[Image, dict[str, Box]]:
        image = np.full((height, width, 3), 255, dtype=np.uint8)
        boxes: dict[str, Box] = {}
        for text, (x, y) in texts.items():
            cv2.putText(image, text, (x, y), FONT, FONT_SCALE, (0, 0, 0), THICKNESS)
            (w, h), baseline = cv2.getTextSize(text, FONT, FONT_SCALE, THICKNESS)
            boxes[text] = (x, y - h, x + w, y + baseline)
        return image, boxes

    return render
