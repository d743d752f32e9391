"""OCR on request through a live session, and the access checks at connect."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed

from backend.security.session_token import issue_token
from tests.backend.service.conftest import BackendServer, Client, jpeg_frame

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]
SECRET = "s" * 40


def text_frame() -> bytes:
    canvas = np.full((240, 320, 3), 255, np.uint8)
    cv2.putText(canvas, "CVSTACK 42", (20, 130), cv2.FONT_HERSHEY_SIMPLEX, 1.4, (0, 0, 0), 3)
    ok, encoded = cv2.imencode(".jpg", canvas)
    assert ok
    return encoded.tobytes()


def test_ocr_runs_on_request_and_arrives_with_a_later_frame(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    backend = start_backend(ocr_min_interval_s=0.0)
    deadline = time.monotonic() + 30
    while backend.runtime.ocr.problem() == "the OCR engine is still loading":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True, use_ocr=True)
    client.send_json({"type": "ocr"})

    results: list[dict[str, Any]] = []
    while not results or results[-1]["ocr_info"] is None:
        client.connection.send(text_frame())
        results.append(client.receive_type("inference")["data"])
        assert len(results) < 100, "OCR never delivered a result"

    done = results[-1]
    assert done["ocr_info"]["reason"] == "client_request"
    assert done["ocr_info"]["frame_idx"] < done["frame_idx"], "OCR must not hold up its frame"
    assert [item["text"].replace(" ", "").upper() for item in done["ocr"]] == ["CVSTACK42"]
    x1, y1, x2, y2 = done["ocr"][0]["box"]
    assert x1 < 40 and x2 > 200 and y1 < 130 < y2
    assert all(r["errors"] == {} for r in results)


def test_token_is_required_when_a_secret_is_set(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    backend = start_backend(session_token_secret=SECRET)
    for query, code in [
        ("", "token_missing"),
        ("?token=v1.1.abc.def", "token_invalid"),
        (f"?token={issue_token(SECRET, now=time.time() - 3600, ttl_s=60)}", "token_expired"),
        (f"?token={issue_token('another secret' * 3, now=time.time())}", "token_invalid"),
    ]:
        client, first = open_client(backend.ws_url + query)
        assert (first["type"], first["code"], first["fatal"]) == ("error", code, True)
        with pytest.raises(ConnectionClosed) as closed:
            client.receive()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008

    client, first = open_client(f"{backend.ws_url}?token={issue_token(SECRET, now=time.time())}")
    assert first["type"] == "queue_status"
    client.start(use_yolo=True)
    client.connection.send(jpeg_frame())
    assert client.receive_type("inference")["data"]["errors"] == {}


def test_a_token_serves_one_live_session_the_newest_connection_wins(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    backend = start_backend(session_token_secret=SECRET, max_sessions=4)
    shared = f"{backend.ws_url}?token={issue_token(SECRET, now=time.time())}"
    older, _ = open_client(shared)
    older.start(use_yolo=True)
    other, _ = open_client(f"{backend.ws_url}?token={issue_token(SECRET, now=time.time())}")
    other.start(use_yolo=True)
    newer, _ = open_client(shared)
    replaced = older.receive_type("error")
    assert (replaced["code"], replaced["fatal"]) == ("session_replaced", True)
    with pytest.raises(ConnectionClosed) as closed:
        older.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
    for client in (newer, other):  # a different token is not affected
        if client is newer:
            client.start(use_yolo=True)
        client.connection.send(jpeg_frame())
        assert client.receive_type("inference")["data"]["errors"] == {}
    deadline = time.monotonic() + 10
    while backend.runtime.gate.active != 2:  # the replaced session's slot is free again
        assert time.monotonic() < deadline, f"{backend.runtime.gate.active} slots held"
        time.sleep(0.05)


def test_origins_outside_the_allowlist_are_refused(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    backend = start_backend(allowed_origins=["https://app.example.com"])
    _, first = open_client(backend.ws_url, Origin="https://evil.example.com")
    assert (first["code"], first["fatal"]) == ("origin_not_allowed", True)
    _, first = open_client(backend.ws_url, Origin="https://app.example.com")
    assert first["type"] == "queue_status"


def test_self_allows_pages_served_by_the_backends_own_host(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    backend = start_backend(allowed_origins=["self"])
    _, first = open_client(backend.ws_url, Origin="https://d111.cloudfront.net")
    assert (first["code"], first["fatal"]) == ("origin_not_allowed", True)
    assert '"self"' in first["message"]
    _, first = open_client(backend.ws_url, Origin=backend.url)  # Host: 127.0.0.1:<port>
    assert first["type"] == "queue_status"
