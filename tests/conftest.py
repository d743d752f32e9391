"""Fixtures shared by every test package: a private state folder and prepared models."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.model_prep.prepare import prepare_models


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
    """Random-weight YOLOv8n detection and pose models exported at 320 px, with a manifest."""
    models_dir = tmp_path_factory.mktemp("models")
    prepare_models(models_dir, random_weights=True, imgsz=320, include_ocr=False)
    return models_dir
