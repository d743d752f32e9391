"""Drain mode on the real backend under uvicorn: a live session keeps its results, a waiting one
is sent away with `draining` (1013), a new handshake gets HTTP 503 with a JSON body, and
`/ready` and `/metrics` follow the drain file both ways."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests.backend.service.conftest import BackendServer, Client, jpeg_frame

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]


def next_result(client: Client, seed: int) -> dict[str, Any]:
    client.connection.send(jpeg_frame(seed=seed))
    data: dict[str, Any] = client.receive_type("inference")["data"]
    return data


def metric(backend: BackendServer, line_start: str) -> str:
    text = httpx.get(f"{backend.url}/metrics").text
    return next(line for line in text.splitlines() if line.startswith(line_start))


def test_drain_keeps_live_sessions_and_sends_new_and_waiting_ones_elsewhere(
    start_backend: Callable[..., BackendServer], open_client: OpenClient, tmp_path: Path
) -> None:
    drain_file = tmp_path / "drain"
    backend = start_backend(
        max_sessions=1, max_wait_s=120, queue_status_interval_s=0.2, drain_file=drain_file
    )
    live, _ = open_client(backend.ws_url)
    live.start(use_yolo=True)
    assert next_result(live, 0)["errors"] == {}
    waiting, _ = open_client(backend.ws_url)
    waiting.send_json({"type": "init", "params": {"use_yolo": True}})
    waiting.send_json({"type": "start"})
    assert waiting.receive_type("queue_status")["state"] == "waiting"
    assert httpx.get(f"{backend.url}/ready").json()["draining"] is False
    assert metric(backend, "cvstack_draining ") == "cvstack_draining 0.0"

    drain_file.touch()

    error = waiting.receive_type("error", timeout=30)
    assert (error["code"], error["fatal"]) == ("draining", True)
    assert "reconnect" in error["message"] and "another instance" in error["message"]
    with pytest.raises(ConnectionClosed) as closed:
        waiting.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013

    with pytest.raises(InvalidStatus) as refused:
        connect(backend.ws_url, open_timeout=30)
    response = refused.value.response
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/json"
    body = json.loads(response.body or b"")
    assert body["error"]["code"] == "draining"
    assert "another instance" in body["error"]["message"]

    ready = httpx.get(f"{backend.url}/ready")
    assert ready.status_code == 503
    assert ready.json()["draining"] is True and ready.json()["ready"] is True
    assert metric(backend, "cvstack_draining ") == "cvstack_draining 1.0"
    assert metric(backend, 'cvstack_errors_total{kind="draining"}').endswith(" 2.0")
    for seed in range(1, 4):  # the live session is untouched
        assert next_result(live, seed)["errors"] == {}

    drain_file.unlink()

    ready = httpx.get(f"{backend.url}/ready")
    assert ready.status_code == 200 and ready.json()["draining"] is False
    assert metric(backend, "cvstack_draining ") == "cvstack_draining 0.0"
    live.send_json({"type": "stop"})
    assert live.receive_type("queue_status")["state"] == "finished"
    again, first = open_client(backend.ws_url)
    assert first["state"] == "waiting"
    again.start(use_yolo=True)
    assert next_result(again, 5)["errors"] == {}


def test_a_session_that_starts_while_draining_runs_if_a_slot_is_free_but_never_waits(
    start_backend: Callable[..., BackendServer], open_client: OpenClient, tmp_path: Path
) -> None:
    """A connection opened before the drain may restart its stream (the page's stage toggles
    send stop and start): with a free slot it runs; it is never queued while draining."""
    drain_file = tmp_path / "drain"
    backend = start_backend(
        max_sessions=1, max_wait_s=120, queue_status_interval_s=0.2, drain_file=drain_file
    )
    first, _ = open_client(backend.ws_url)
    second, _ = open_client(backend.ws_url)
    drain_file.touch()
    first.start(use_yolo=True)
    assert next_result(first, 0)["errors"] == {}
    second.send_json({"type": "init", "params": {"use_yolo": True}})
    second.send_json({"type": "start"})
    error = second.receive_type("error", timeout=30)
    assert error["code"] == "draining"
    assert backend.runtime.gate.waiting == 0
