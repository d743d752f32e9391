"""Every rejected input gets an `error` with a code; the session goes on where it makes sense."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosedError

from tests.backend.service.conftest import BackendServer, Client, jpeg_frame

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]


def still_works(client: Client) -> None:
    client.connection.send(jpeg_frame())
    assert client.receive_type("inference")["data"]["errors"] == {}


def pixel_bomb(width: int, height: int) -> bytes:
    """A tiny JPEG whose frame header claims a huge size."""
    frame = bytearray(jpeg_frame())
    sof = frame.index(b"\xff\xc0")
    frame[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(frame)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", "empty_frame"),
        (b"GIF89a not a jpeg at all", "not_jpeg"),
        (jpeg_frame()[:-400], "corrupt_jpeg"),
        (pixel_bomb(20000, 20000), "frame_too_many_pixels"),
    ],
    ids=["empty", "not-jpeg", "truncated", "pixel-bomb"],
)
def test_bad_frames_are_reported_and_the_session_continues(
    backend: BackendServer, open_client: OpenClient, payload: bytes, code: str
) -> None:
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True)
    client.connection.send(payload)
    error = client.receive_type("error")
    assert error["code"] == code
    assert error["fatal"] is False
    assert error["message"]
    still_works(client)


def test_frame_over_the_byte_limit_is_refused(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    backend = start_backend(max_frame_bytes=60_000)
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True)
    client.connection.send(jpeg_frame() + b"\x00" * 60_000)
    error = client.receive_type("error")
    assert error["code"] == "frame_too_large"
    assert "60000 bytes" in error["message"]
    still_works(client)

    client.connection.send(b"\xff\xd8" + b"\x00" * 300_000)  # beyond the hard message limit
    with pytest.raises(ConnectionClosedError) as closed:
        client.receive()
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1009


@pytest.mark.parametrize(
    ("text", "code", "says"),
    [
        ("hello", "invalid_json", "JSON"),
        ("[1, 2]", "invalid_json", "'type'"),
        ('{"type": "dance"}', "unknown_type", "expected one of init, start, stop"),
        ('{"type": "init", "params": {"use_yolo": "maybe"}}', "invalid_params", "use_yolo"),
        ('{"type": "init", "params": {"use_radar": true}}', "invalid_params", "use_radar"),
        ('{"type": "init", "params": {"system_prompt": "' + "x" * 3000 + '"}}', "invalid_params",
         "system_prompt"),
        ('{"type": "start", "extra": 1}', "invalid_message", "extra"),
        (json.dumps({"type": "ocr", "pad": "y" * 20000}), "message_too_large", "16384 bytes"),
    ],
    ids=["not-json", "not-object", "unknown", "bad-bool", "unknown-param", "long-prompt",
         "extra-field", "too-large"],
)  # fmt: skip
def test_bad_text_messages_are_reported_and_the_session_continues(
    backend: BackendServer, open_client: OpenClient, text: str, code: str, says: str
) -> None:
    client, _ = open_client(backend.ws_url)
    client.connection.send(text)
    error = client.receive_type("error")
    assert error["code"] == code
    assert says in error["message"]
    client.start(use_yolo=True)
    still_works(client)


def test_protocol_order_is_enforced(backend: BackendServer, open_client: OpenClient) -> None:
    client, _ = open_client(backend.ws_url)
    client.connection.send(jpeg_frame())
    assert client.receive_type("error")["code"] == "not_started"
    client.send_json({"type": "start"})
    assert client.receive_type("error")["code"] == "init_required"
    client.send_json({"type": "stop"})
    assert client.receive_type("error")["code"] == "not_started"

    client.start(use_yolo=True)
    client.send_json({"type": "start"})
    assert client.receive_type("error")["code"] == "already_started"
    client.send_json({"type": "init", "params": {"use_yolo_pose": True}})
    assert client.receive_type("error")["code"] == "already_started"
    still_works(client)
