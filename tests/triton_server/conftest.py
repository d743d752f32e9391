"""A real tritonserver on CPU over the session's random-weight models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.model_prep.manifest import Manifest, load_manifest
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from backend.triton_server.repository import render_repository


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
