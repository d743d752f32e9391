"""Triton down, restarting or slow: the stage reports it, the session goes on and recovers."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx

from backend.triton_server.local_server import LocalTritonServer
from tests.backend.service.conftest import BackendServer, Client, jpeg_frame

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]


def next_result(client: Client, seed: int) -> dict[str, Any]:
    client.connection.send(jpeg_frame(seed=seed))
    data: dict[str, Any] = client.receive_type("inference")["data"]
    return data


def test_triton_down_then_back_the_session_recovers_by_itself(
    start_backend: Callable[..., BackendServer],
    open_client: OpenClient,
    own_triton: LocalTritonServer,
) -> None:
    backend = start_backend(own_triton.address, triton_timeout_s=2.0)
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True, use_yolo_pose=True, use_motion=True)
    assert next_result(client, 0)["errors"] == {}

    own_triton.stop()
    down = next_result(client, 1)
    assert set(down["errors"]) == {"yolo", "pose"}
    assert down["errors"]["yolo"].startswith(("triton_unavailable", "triton_timeout"))
    assert down["yolo"] is None and down["pose"] is None
    assert down["flow"] is not None, "motion does not need Triton and keeps working"
    assert httpx.get(f"{backend.url}/ready").status_code == 503

    own_triton.start(timeout_s=120)
    deadline = time.monotonic() + 30
    seed = 2
    while next_result(client, seed)["errors"]:
        assert time.monotonic() < deadline, "the session did not recover after Triton came back"
        seed += 1
        time.sleep(0.2)
    assert httpx.get(f"{backend.url}/ready").status_code == 200
    metrics = httpx.get(f"{backend.url}/metrics").text
    assert 'cvstack_errors_total{kind="triton_' in metrics


def test_a_slow_triton_times_out_per_call_and_the_session_goes_on(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    backend = start_backend(triton_timeout_s=0.001)
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True, use_motion=True)
    for seed in range(3):
        result = next_result(client, seed)
        assert result["errors"]["yolo"].startswith("triton_timeout")
        assert result["frame_idx"] == seed
