"""`cvstack demo` restarts a Triton that dies, and stops with a clear message when it cannot."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil

from tests.backend.service.demo_process import Demo, start_demo

WAIT_S = 90.0  # generous: the machine may be loaded


def wait_for(condition_met: Callable[[], bool], demo: Demo, what: str) -> None:
    """Poll `condition_met()` until true; fails with the demo's output after `WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    while not condition_met():
        assert time.monotonic() < deadline, f"{what} within {WAIT_S} s:\n{demo.text()}"
        time.sleep(0.2)


def test_a_killed_triton_is_restarted_and_the_backend_is_ready_again(
    yolo_models_dir: Path, tmp_path: Path
) -> None:
    demo = start_demo(yolo_models_dir, tmp_path)
    try:
        demo.wait_ready()
        first = demo.triton()
        first.kill()
        psutil.wait_procs([first], timeout=30)
        wait_for(lambda: "Triton is ready again" in demo.text(), demo, "no restart")
        demo.wait_ready()
        assert demo.triton().pid != first.pid
        output = demo.text()
        assert "Triton exited (killed by SIGKILL)" in output
        assert "tritonserver.log" in output  # where the log is, and its last lines
        assert "restart 1 of 3" in output
        assert demo.process.poll() is None
    finally:
        demo.kill()


def test_a_triton_that_cannot_start_again_stops_the_demo_with_the_reason(
    yolo_models_dir: Path, tmp_path: Path
) -> None:
    demo = start_demo(yolo_models_dir, tmp_path)
    try:
        demo.wait_ready()
        config = tmp_path / "triton" / "model_repository" / "yolo" / "config.pbtxt"
        config.write_text("this is not a model configuration\n")
        demo.triton().kill()
        code = demo.process.wait(timeout=WAIT_S)
        output = demo.text()
        assert code == 1, output
        assert "restart 3 of 3" in output
        assert "error: Triton kept exiting: 3 restarts in a row did not keep it up" in output
        assert "failed to load all models" in output  # why the last restart failed
        assert "The demo stopped rather than run the backend beside a dead server" in output
        assert f"Triton's log: {tmp_path / 'triton' / 'logs' / 'tritonserver.log'}" in output
        assert "Triton stopped." in output
    finally:
        demo.kill()
