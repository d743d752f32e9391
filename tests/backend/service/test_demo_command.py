"""`cvstack demo`: Triton and the backend come up together and Ctrl-C stops both."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
from websockets.sync.client import connect

from backend.paths import REPO_ROOT
from backend.triton_server.local_server import ServerAddress
from tests.backend.service.conftest import jpeg_frame
from tests.triton_server.shm import shm_regions, triton_shm_prefix


def test_demo_serves_frames_then_ctrl_c_leaves_nothing_behind(
    yolo_models_dir: Path, tmp_path: Path
) -> None:
    triton = ServerAddress.on_free_ports()
    port = ServerAddress.on_free_ports().http_port
    demo = subprocess.Popen(
        [
            sys.executable, "-m", "backend.cli", "demo", "--port", str(port),
            "--triton-http-port", str(triton.http_port),
            "--triton-grpc-port", str(triton.grpc_port),
            "--triton-metrics-port", str(triton.metrics_port),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "CVSTACK_HOME": str(tmp_path),
             "CVSTACK_MODELS_DIR": str(yolo_models_dir)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while True:
            assert demo.poll() is None, demo.stdout.read() if demo.stdout else ""
            try:
                if httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the demo stack did not become ready"
            time.sleep(0.2)
        with connect(f"ws://127.0.0.1:{port}/ws/inference") as ws:
            ws.send(json.dumps({"type": "init", "params": {"use_yolo": True}}))
            ws.send(json.dumps({"type": "start"}))
            ws.send(jpeg_frame())
            while (message := json.loads(ws.recv(timeout=30)))["type"] != "inference":
                pass
            assert message["data"]["errors"] == {}
        children = psutil.Process(demo.pid).children(recursive=True)
        prefix = triton_shm_prefix(children)
        assert shm_regions(prefix), "the Python backend stubs should hold shm regions"

        demo.send_signal(signal.SIGINT)
        assert demo.wait(timeout=60) == 0
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
        assert shm_regions(prefix) == set()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
