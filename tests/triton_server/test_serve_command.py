"""`cvstack triton serve` end to end: ready, then stopped by a signal with nothing left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from backend.paths import REPO_ROOT
from backend.triton_server.local_server import ServerAddress
from backend.triton_server.metrics import read_model_counters
from tests.triton_server.shm import shm_regions, triton_shm_prefix


def start_serve(models_dir: Path, home: Path) -> tuple[subprocess.Popen[str], str]:
    address = ServerAddress.on_free_ports()
    process = subprocess.Popen(
        [
            sys.executable, "-m", "backend.cli", "triton", "serve",
            "--models-dir", str(models_dir),
            "--http-port", str(address.http_port),
            "--grpc-port", str(address.grpc_port),
            "--metrics-port", str(address.metrics_port),
        ],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CVSTACK_HOME": str(home)},
    )  # fmt: skip
    assert process.stdout is not None
    first_line = process.stdout.readline()
    if not first_line.startswith("Triton ready in "):
        process.kill()
        _, errors = process.communicate()
        pytest.fail(f"serve did not get ready: {errors}")
    return process, address.metrics_url


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_stops_the_server_and_cleans_shared_memory(
    yolo_models_dir: Path, tmp_path: Path, signum: int
) -> None:
    process, metrics_url = start_serve(yolo_models_dir, tmp_path)
    children = psutil.Process(process.pid).children(recursive=True)
    prefix = triton_shm_prefix(children)
    assert read_model_counters(metrics_url, "yolo").requests == 0
    assert shm_regions(prefix), "the Python backend stubs should hold shm regions"

    process.send_signal(signum)
    assert process.wait(timeout=30) == 0
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []
    assert shm_regions(prefix) == set()


def test_killing_the_launcher_takes_the_server_down_too(
    yolo_models_dir: Path, tmp_path: Path
) -> None:
    process, _ = start_serve(yolo_models_dir, tmp_path)
    server = next(
        child
        for child in psutil.Process(process.pid).children(recursive=True)
        if child.name() == "tritonserver"
    )
    prefix = triton_shm_prefix([server])
    process.kill()
    process.wait(timeout=10)
    deadline = time.monotonic() + 20
    while server.is_running() and server.status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "tritonserver outlived its launcher"
        time.sleep(0.1)
    assert shm_regions(prefix) == set(), "the server's graceful exit frees its shm"
