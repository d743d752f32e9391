"""`cvstack demo`: Triton and the backend come up together and Ctrl-C stops both."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import psutil
from websockets.sync.client import connect

from tests.backend.service.conftest import jpeg_frame
from tests.backend.service.demo_process import start_demo
from tests.triton_server.shm import shm_regions, triton_shm_prefix


def test_demo_serves_frames_then_ctrl_c_leaves_nothing_behind(
    yolo_models_dir: Path, tmp_path: Path
) -> None:
    demo = start_demo(yolo_models_dir, tmp_path)
    try:
        demo.wait_ready()
        with connect(f"ws://127.0.0.1:{demo.port}/ws/inference") as ws:
            ws.send(json.dumps({"type": "init", "params": {"use_yolo": True}}))
            ws.send(json.dumps({"type": "start"}))
            ws.send(jpeg_frame())
            while (message := json.loads(ws.recv(timeout=30)))["type"] != "inference":
                pass
            assert message["data"]["errors"] == {}
        children = psutil.Process(demo.process.pid).children(recursive=True)
        prefix = triton_shm_prefix(children)
        assert shm_regions(prefix), "the Python backend stubs should hold shm regions"

        demo.process.send_signal(signal.SIGINT)
        assert demo.process.wait(timeout=60) == 0, demo.text()
        _, alive = psutil.wait_procs(children, timeout=15)
        assert alive == []
        assert shm_regions(prefix) == set()
    finally:
        demo.kill()
