"""Property: no sequence of client messages breaks a session or the server."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.backend.service.conftest import BackendServer, Client, jpeg_frame

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]
GOOD_FRAME = jpeg_frame()

params = st.fixed_dictionaries(
    {},
    optional={
        "use_yolo": st.booleans(),
        "use_yolo_pose": st.booleans(),
        "use_motion": st.booleans(),
        "use_ocr": st.booleans(),
        "system_prompt": st.none() | st.text(max_size=50),
    },
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
text_messages = st.one_of(
    params.map(lambda p: json.dumps({"type": "init", "params": p})),
    st.sampled_from(["start", "stop", "ocr", "pong", "dance"]).map(
        lambda kind: json.dumps({"type": kind})
    ),
    st.dictionaries(st.sampled_from(["type", "params", "x"]), json_values).map(json.dumps),
    st.text(max_size=40),
)
binary_messages = st.one_of(
    st.just(GOOD_FRAME),
    st.binary(max_size=64),
    st.integers(1, len(GOOD_FRAME) - 1).map(lambda cut: GOOD_FRAME[:cut]),
)
actions = st.lists(st.one_of(text_messages, binary_messages), max_size=12)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(sequence=actions)
def test_any_message_sequence_leaves_a_working_session(
    backend: BackendServer, open_client: OpenClient, sequence: list[str | bytes]
) -> None:
    client, _ = open_client(backend.ws_url)
    for outgoing in sequence:
        client.connection.send(outgoing)
    client.send_json({"type": "stop"})
    client.send_json({"type": "init", "params": {"use_yolo": True}})
    client.send_json({"type": "start"})
    client.connection.send(GOOD_FRAME)

    seen_running = False
    while True:
        message = client.receive()  # schema-validated; raises if the server closed
        assert not (message["type"] == "error" and message["fatal"]), message
        seen_running |= message["type"] == "queue_status" and message["state"] == "running"
        if message["type"] == "inference" and seen_running:
            break
    client.connection.close()
