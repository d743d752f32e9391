"""The post-processing bench builds scenes of about 1, 10 and 50 real people and times them."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.bench import bench_models, postprocess_bench
from backend.bench.bench_models import BenchModels, resolve_bench_models
from backend.model_prep.onnx_inspect import YoloTask
from backend.model_prep.prepare import prepare_models


@pytest.fixture(scope="module")
def real_models_640(
    pretrained_checkpoints: dict[YoloTask, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The pretrained detection and pose models at the bench's 640 px, without OCR."""
    models_dir = tmp_path_factory.mktemp("real-models-640")
    prepare_models(
        models_dir,
        detector=pretrained_checkpoints["detect"],
        pose=pretrained_checkpoints["pose"],
        imgsz=postprocess_bench.POSTPROCESS_IMGSZ,
        include_ocr=False,
    )
    return models_dir


@pytest.mark.real_weights
def test_scenes_hold_about_1_10_and_50_real_objects(real_models_640: Path) -> None:
    models = BenchModels.of(real_models_640)
    result = postprocess_bench.run_postprocess_bench(models, repeats=3, warmup=1)

    assert [row.nominal for row in result.rows] == [1, 10, 50]
    one, ten, fifty = result.rows
    assert 1 <= one.objects <= 3 and 1 <= one.people <= 3
    assert 5 <= ten.objects <= 30 and 5 <= ten.people <= 30
    assert 30 <= fifty.objects <= 100 and 25 <= fifty.people <= 100
    assert one.detect_bytes < ten.detect_bytes < fifty.detect_bytes
    assert all(row.full_bytes > row.detect_bytes for row in result.rows)
    assert all(row.detect.samples == 3 and row.full.samples == 3 for row in result.rows)
    assert all(row.detect.p50_ms > 0 and row.full.p50_ms > 0 for row in result.rows)
    table = postprocess_bench.render_markdown(result)
    assert "yolo: user, " in table and "yolov10n.pt" in table and "WARNING" not in table
    assert f"| 50 | {fifty.objects} | {fifty.people} |" in table


@pytest.mark.real_weights
def test_real_prepared_models_at_the_size_are_taken_as_they_are(
    real_models_640: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(bench_models, "default_models_dir", lambda: real_models_640)
    monkeypatch.setattr(bench_models, "prepare_models", _must_not_prepare)
    models = resolve_bench_models(None, postprocess_bench.POSTPROCESS_IMGSZ)
    assert models.models_dir == real_models_640 and models.real


def test_random_prepared_models_give_way_to_real_ones_prepared_for_the_bench(
    yolo_models_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prepared: list[tuple[Path, int]] = []

    def prepare(target: Path, *, imgsz: int, **options: object) -> None:
        assert options["offline_fallback"] is True and options["skip_existing"] is True
        prepared.append((target, imgsz))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(yolo_models_dir)  # stands in for the export

    monkeypatch.setattr(bench_models, "state_dir", lambda: tmp_path)
    monkeypatch.setattr(bench_models, "default_models_dir", lambda: yolo_models_dir)
    monkeypatch.setattr(bench_models, "prepare_models", prepare)
    models = resolve_bench_models(None, 320)

    assert prepared == [(bench_models.bench_models_dir(320), 320)]
    assert models.models_dir == bench_models.bench_models_dir(320)
    assert not models.real  # the stand-in prepared random weights: the report says so
    assert models.sources["yolo"].kind == "random"
    assert "WARNING: random weights" in (models.warning() or "")


def test_an_explicit_models_dir_is_used_whatever_its_weights(yolo_models_dir: Path) -> None:
    models = resolve_bench_models(yolo_models_dir, 640)
    assert models.models_dir == yolo_models_dir
    assert "yolo: random, yolov8n.yaml with random weights" in models.describe()


def _must_not_prepare(*args: object, **kwargs: object) -> None:
    raise AssertionError("real models at the right size were there; nothing to prepare")
