"""OcrEngine on the real PP-OCR models: text read, boxes placed, regions mapped back."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from backend.model_prep.manifest import (
    MANIFEST_NAME,
    ManifestError,
    load_manifest,
    save_manifest,
)
from backend.ocr.engine import Box, OcrEngine, OcrText
from tests.backend.ocr.conftest import RenderText


def normalised(text: str) -> str:
    return text.replace(" ", "").upper()


def assert_box_near(found: Box, drawn: Box, tolerance: float = 12.0) -> None:
    """Each edge of the found box within `tolerance` px of the drawn text's edge."""
    assert all(abs(f - d) <= tolerance for f, d in zip(found, drawn, strict=True)), (
        found,
        drawn,
    )


def test_reads_text_and_boxes_it(bundled_engine: OcrEngine, render_text: RenderText) -> None:
    image, drawn = render_text(640, 480, {"CVSTACK 42": (150, 260)})

    texts = bundled_engine.read(image)

    assert [normalised(t.text) for t in texts] == ["CVSTACK42"]
    assert texts[0].score > 0.8
    assert_box_near(texts[0].box, drawn["CVSTACK 42"])


def test_region_boxes_are_in_full_image_pixels(
    bundled_engine: OcrEngine, render_text: RenderText
) -> None:
    image, drawn = render_text(640, 480, {"CVSTACK 42": (20, 60), "HELLO 7": (380, 400)})

    texts = bundled_engine.read(image, region=(340, 330, 640, 480))

    assert [normalised(t.text) for t in texts] == ["HELLO7"]
    assert_box_near(texts[0].box, drawn["HELLO 7"])


def test_region_is_clipped_to_the_image(bundled_engine: OcrEngine, render_text: RenderText) -> None:
    image, drawn = render_text(640, 480, {"HELLO 7": (380, 400)})

    texts = bundled_engine.read(image, region=(340, 330, 5000, 5000))

    assert [normalised(t.text) for t in texts] == ["HELLO7"]
    assert_box_near(texts[0].box, drawn["HELLO 7"])
    assert bundled_engine.read(image, region=(700, 0, 900, 480)) == []


def test_blank_image_and_high_min_score_give_nothing(
    bundled_engine: OcrEngine, render_text: RenderText
) -> None:
    blank = np.full((240, 320, 3), 255, dtype=np.uint8)
    image, _ = render_text(320, 240, {"CVSTACK 42": (20, 130)})

    assert bundled_engine.read(blank) == []
    assert bundled_engine.read(image, min_score=1.01) == []


def test_rejects_images_that_are_not_bgr(bundled_engine: OcrEngine) -> None:
    with pytest.raises(ValueError, match="HxWx3"):
        bundled_engine.read(np.zeros((240, 320), dtype=np.uint8))


def test_to_json_rounds_floats() -> None:
    text = OcrText(box=(1.04, 2.0, 30.26, 40.0), text="A1", score=0.98765)

    assert json.loads(json.dumps(text.to_json())) == {
        "box": [1.0, 2.0, 30.3, 40.0],
        "text": "A1",
        "score": 0.988,
    }


def test_from_manifest_reads_with_the_prepared_models(
    ocr_models_dir: Path, render_text: RenderText
) -> None:
    engine = OcrEngine.from_manifest(ocr_models_dir, use_angle_classifier=True, max_side=480)
    image, drawn = render_text(640, 480, {"CVSTACK 42": (150, 260)})

    texts = engine.read(image)

    assert [normalised(t.text) for t in texts] == ["CVSTACK42"]
    assert_box_near(texts[0].box, drawn["CVSTACK 42"])


def test_from_manifest_without_a_manifest_says_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="cvstack models prepare"):
        OcrEngine.from_manifest(tmp_path)


def test_from_manifest_with_a_missing_file_says_how_to_fix(
    ocr_models_dir: Path, tmp_path: Path
) -> None:
    shutil.copy(ocr_models_dir / MANIFEST_NAME, tmp_path / MANIFEST_NAME)

    with pytest.raises(ManifestError, match=r"ocr_det\.onnx.*missing.*cvstack models prepare"):
        OcrEngine.from_manifest(tmp_path)


def test_from_manifest_needs_the_classifier_entry_only_when_used(
    ocr_models_dir: Path, tmp_path: Path
) -> None:
    manifest = load_manifest(ocr_models_dir)
    del manifest.models["ocr_cls"]
    for name in manifest.models:
        shutil.copy(ocr_models_dir / f"{name}.onnx", tmp_path / f"{name}.onnx")
    save_manifest(manifest, tmp_path)

    OcrEngine.from_manifest(tmp_path)
    with pytest.raises(ManifestError, match=r"'ocr_cls' is not in the manifest.*cvstack models"):
        OcrEngine.from_manifest(tmp_path, use_angle_classifier=True)
