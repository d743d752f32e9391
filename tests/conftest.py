"""Fixtures shared by every test package: a private state folder, prepared models, Triton."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.model_prep.manifest import Manifest, load_manifest
from backend.model_prep.prepare import prepare_models
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
