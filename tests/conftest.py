"""Fixtures shared by every test package: free ports and once-per-session prepared models."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.model_prep.prepare import prepare_models


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A function returning a TCP port nobody listens on right now (never the same twice)."""
    handed_out: set[int] = set()

    def pick() -> int:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
                probe.bind(("127.0.0.1", 0))
                port = int(probe.getsockname()[1])
            if port not in handed_out:
                handed_out.add(port)
                return port

    return pick


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
