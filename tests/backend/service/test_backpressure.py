"""Latest frame wins, one frame in flight, a global session limit with a fair queue."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed

from tests.backend.service.conftest import BackendServer, Client, jpeg_frame

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]


def test_a_burst_keeps_only_the_latest_frame_and_counts_the_drops(
    backend: BackendServer, open_client: OpenClient
) -> None:
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True, use_yolo_pose=True)
    sizes = [(320 + 16 * i, 240) for i in range(15)]
    for width, height in sizes:
        client.connection.send(jpeg_frame(width, height))

    results: list[dict[str, Any]] = []
    while not results or results[-1]["width"] != sizes[-1][0]:
        results.append(client.receive_type("inference")["data"])

    assert len(results) < len(sizes), "every frame was processed: nothing was dropped"
    assert results[-1]["dropped_frames"] == len(sizes) - len(results)
    assert [r["frame_idx"] for r in results] == list(range(len(results)))
    widths = [r["width"] for r in results]
    assert widths == sorted(widths), "frames must be processed in arrival order"
    metrics = httpx.get(f"{backend.url}/metrics").text
    assert f"cvstack_dropped_frames_total {float(len(sizes) - len(results))}" in metrics


def test_sessions_beyond_the_limit_wait_in_order_then_run(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    backend = start_backend(max_sessions=1, max_wait_s=30, queue_status_interval_s=0.2)
    first, _ = open_client(backend.ws_url)
    first.start(use_yolo=True)
    second, _ = open_client(backend.ws_url)
    second.send_json({"type": "init", "params": {"use_yolo": True}})
    second.send_json({"type": "start"})

    waiting = second.receive_type("queue_status")
    assert waiting["state"] == "waiting"
    assert waiting["position"] == 1
    assert waiting["active_sessions"] == 1
    assert second.receive_type("queue_status")["state"] == "waiting", "updates while waiting"

    first.send_json({"type": "stop"})
    assert first.receive_type("queue_status")["state"] == "finished"
    while (status := second.receive_type("queue_status"))["state"] == "waiting":
        pass
    assert status["state"] == "running"
    second.connection.send(jpeg_frame())
    assert second.receive_type("inference")["data"]["errors"] == {}


def test_a_session_that_waits_too_long_gets_a_clear_error(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    backend = start_backend(max_sessions=1, max_wait_s=0.5, queue_status_interval_s=0.1)
    first, _ = open_client(backend.ws_url)
    first.start(use_yolo=True)
    second, _ = open_client(backend.ws_url)
    second.send_json({"type": "init", "params": {}})
    second.send_json({"type": "start"})

    error = second.receive_type("error")
    assert error["code"] == "server_busy"
    assert error["fatal"] is True
    assert "try again later" in error["message"]
    with pytest.raises(ConnectionClosed) as closed:
        second.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
    first.connection.send(jpeg_frame())
    assert first.receive_type("inference")["data"]["errors"] == {}


def test_disconnects_release_everything_the_session_started(
    backend: BackendServer, open_client: OpenClient
) -> None:
    baseline_tasks = backend.server_tasks()
    for round_ in range(5):
        client, _ = open_client(backend.ws_url)
        client.start(use_yolo=True, use_yolo_pose=True, use_motion=True, use_ocr=True)
        client.connection.send(jpeg_frame(seed=round_))
        client.connection.send(jpeg_frame(seed=round_ + 1))
        client.connection.close()  # mid-stream, a frame possibly in flight

    deadline = time.monotonic() + 10
    while True:
        runtime = backend.runtime
        settled = (
            runtime.gate.active == 0
            and runtime.gate.waiting == 0
            and backend.server_tasks() <= baseline_tasks
        )
        if settled:
            break
        assert time.monotonic() < deadline, (
            f"leaked: active={runtime.gate.active} tasks={backend.server_tasks()} "
            f"(baseline {baseline_tasks})"
        )
        time.sleep(0.1)
    metrics = httpx.get(f"{backend.url}/metrics").text
    assert "cvstack_connections 0.0" in metrics
    assert "cvstack_active_sessions 0.0" in metrics
