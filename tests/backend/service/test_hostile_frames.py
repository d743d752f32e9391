"""Hostile but well-formed frames against the real stack: each is answered, none stalls it."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
import pytest

from tests.backend.pipeline.hostile_jpegs import exif_rotated_jpeg, progressive_jpeg, scan_bomb
from tests.backend.service.conftest import BackendServer, Client, jpeg_frame
from tests.backend.service.test_bad_input import still_works

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]


def test_scan_bomb_is_refused_fast_and_the_session_continues(
    backend: BackendServer, open_client: OpenClient
) -> None:
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True)
    client.connection.send(scan_bomb(640, 480, scans=5000))  # 60 KB, ~1 s of CPU unguarded
    error = client.receive_type("error")
    assert error["code"] == "frame_too_complex"
    assert error["fatal"] is False
    assert "scans" in error["message"]
    still_works(client)


def test_standard_progressive_jpeg_is_decoded(
    backend: BackendServer, open_client: OpenClient
) -> None:
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True)
    client.connection.send(progressive_jpeg(320, 240))
    data = client.receive_type("inference")["data"]
    assert (data["width"], data["height"], data["errors"]) == (320, 240, {})


@pytest.mark.parametrize(
    "tail", [b"appended by the camera", b"\xff\xd9\x00\x00"], ids=["text", "second-eoi"]
)
def test_bytes_after_the_end_marker_are_ignored(
    backend: BackendServer, open_client: OpenClient, tail: bytes
) -> None:
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True)
    client.connection.send(jpeg_frame() + tail)
    data = client.receive_type("inference")["data"]
    assert (data["width"], data["height"], data["errors"]) == (320, 240, {})


def test_exif_rotated_frame_reports_its_stored_size(
    backend: BackendServer, open_client: OpenClient
) -> None:
    """EXIF orientation is ignored: width, height and boxes are those of the stored image."""
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True, use_motion=True)
    for _ in range(2):  # the second frame has flow, on the same grid
        client.connection.send(exif_rotated_jpeg(320, 240, orientation=6))
        data = client.receive_type("inference")["data"]
        assert (data["width"], data["height"], data["errors"]) == (320, 240, {})
    assert (data["flow"]["orig_w"], data["flow"]["orig_h"]) == (320, 240)


def test_tiny_frame_skips_motion_with_a_reason_and_logs_one_line(
    backend: BackendServer, open_client: OpenClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True, use_motion=True)
    ok, encoded = cv2.imencode(".jpg", np.full((1, 1, 3), 128, dtype=np.uint8))
    assert ok
    for _ in range(3):
        client.connection.send(encoded.tobytes())
        data = client.receive_type("inference")["data"]
        assert (data["width"], data["height"], data["flow"]) == (1, 1, None)
        assert list(data["errors"]) == ["motion"]
        assert data["errors"]["motion"].startswith("frame_too_small: ")
    backend_records = [r for r in caplog.records if r.name.startswith("backend.")]
    assert not [r for r in backend_records if r.exc_info], "a traceback was logged"
    motion_lines = [r for r in backend_records if r.name == "backend.pipeline.motion"]
    assert len(motion_lines) == 3
    for seed in range(2):  # normal frames after it get motion again
        client.connection.send(jpeg_frame(seed=seed))
        data = client.receive_type("inference")["data"]
    assert data["errors"] == {} and data["flow"] is not None
