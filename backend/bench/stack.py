"""A throwaway local stack for benchmarks: Triton on CPU plus `cvstack serve` in a subprocess."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from backend.model_prep.manifest import load_manifest
from backend.paths import REPO_ROOT
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from backend.triton_server.repository import render_repository


@dataclass(frozen=True)
class LocalStack:
    triton: LocalTritonServer
    backend_url: str

    @property
    def ws_url(self) -> str:
        return self.backend_url.replace("http://", "ws://") + "/ws/inference"


@contextlib.contextmanager
def triton_on_cpu(models_dir: Path) -> Iterator[LocalTritonServer]:
    """The real Triton on free ports with the prepared models; stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="cvstack-stack-") as tmp:
        repository = Path(tmp) / "repository"
        names = render_repository(load_manifest(models_dir), models_dir, repository, "cpu")
        triton = LocalTritonServer(repository, names, Path(tmp), ServerAddress.on_free_ports())
        triton.start()
        try:
            yield triton
        finally:
            triton.stop()


@contextlib.contextmanager
def local_stack(models_dir: Path) -> Iterator[LocalStack]:
    """Start Triton and the backend on free ports; stop both on exit."""
    with (
        triton_on_cpu(models_dir) as triton,
        backend_process(models_dir, triton.address) as backend,
    ):
        yield LocalStack(triton, backend.url)


@dataclass(frozen=True)
class BackendProcess:
    """A running `cvstack serve`."""

    port: int
    process: subprocess.Popen[bytes]
    ready_s: float  # from start to /ready answering 200

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@contextlib.contextmanager
def backend_process(
    models_dir: Path,
    triton: ServerAddress,
    timeout_s: float = 120,
    *,
    settings: Mapping[str, str] | None = None,
    log: IO[bytes] | None = None,
) -> Iterator[BackendProcess]:
    """`cvstack serve` on a free port, with `settings` (CVSTACK_* variables) on top of the
    port, models and Triton; its output goes to `log` (or nowhere)."""
    port = ServerAddress.on_free_ports().http_port
    env = {
        **os.environ,
        "CVSTACK_PORT": str(port),
        "CVSTACK_MODELS_DIR": str(models_dir),
        "CVSTACK_TRITON_GRPC_URL": triton.grpc_url,
        "CVSTACK_TRITON_METRICS_URL": triton.metrics_url,
        **(settings or {}),
    }
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log else subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, process, started + timeout_s)
        yield BackendProcess(port, process, time.monotonic() - started)
    finally:
        process.terminate()
        process.wait(30)


def _wait_ready(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the backend exited with code {process.returncode}")
        with (
            contextlib.suppress(urllib.error.URLError, ConnectionError),
            urllib.request.urlopen(f"{url}/ready", timeout=1) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.05)
    raise RuntimeError("the backend did not become ready in time")
