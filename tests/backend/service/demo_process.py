"""`cvstack demo` as a child process on free ports, its output in a file, and its Triton."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from backend.paths import REPO_ROOT
from backend.triton_server.local_server import ServerAddress

READY_WAIT_S = 90.0  # generous: the machine may be loaded


@dataclass
class Demo:
    """A running `cvstack demo`."""

    process: subprocess.Popen[bytes]
    port: int
    output: Path  # its stdout and stderr together

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/ready"

    def text(self) -> str:
        return self.output.read_text(errors="replace")

    def ready_status(self) -> int | None:
        """`/ready`'s HTTP status, or None when nothing answers."""
        try:
            return httpx.get(self.ready_url, timeout=2).status_code
        except httpx.TransportError:
            return None

    def wait_ready(self, timeout_s: float = READY_WAIT_S) -> None:
        """Poll until `/ready` answers 200; fails with the output if the demo exits first."""
        deadline = time.monotonic() + timeout_s
        while self.ready_status() != 200:
            assert self.process.poll() is None, f"the demo exited:\n{self.text()}"
            assert time.monotonic() < deadline, f"the demo did not become ready:\n{self.text()}"
            time.sleep(0.2)

    def triton(self) -> psutil.Process:
        """The demo's tritonserver process."""
        for child in psutil.Process(self.process.pid).children(recursive=True):
            if child.name() == "tritonserver":
                return child
        raise AssertionError(f"the demo runs no tritonserver:\n{self.text()}")

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def start_demo(models_dir: Path, home: Path) -> Demo:
    """`cvstack demo` with `CVSTACK_HOME=home` (its Triton repository and log go there)."""
    triton = ServerAddress.on_free_ports()
    port = ServerAddress.on_free_ports().http_port
    output = home / "demo-output.txt"
    with output.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable, "-m", "backend.cli", "demo", "--port", str(port),
                "--triton-http-port", str(triton.http_port),
                "--triton-grpc-port", str(triton.grpc_port),
                "--triton-metrics-port", str(triton.metrics_port),
            ],
            cwd=REPO_ROOT,
            env={**os.environ, "CVSTACK_HOME": str(home), "CVSTACK_MODELS_DIR": str(models_dir)},
            stdout=sink,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    return Demo(process, port, output)
