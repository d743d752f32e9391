"""`CVSTACK_MAX_RESULTS_PER_S` on the real backend: results no faster than the cap, and the
frame processed after a wait is the newest one."""

from __future__ import annotations

import itertools
import statistics
import time
from collections.abc import Callable
from typing import Any

from tests.backend.service.conftest import BackendServer, Client, jpeg_frame

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]


def test_results_come_no_faster_than_the_cap(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    backend = start_backend(max_results_per_s=2)
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True)
    arrivals = []
    for _ in range(8):
        client.connection.send(jpeg_frame())  # the next frame as soon as a result arrives
        client.receive_type("inference")
        arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals[1:])]  # the first may be slow
    assert statistics.median(gaps) >= 0.45, f"results came faster than 2/s: gaps {gaps}"


def test_the_newest_frame_is_processed_after_the_wait(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    backend = start_backend(max_results_per_s=1)
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True)
    client.connection.send(jpeg_frame(320, 240))
    assert client.receive_type("inference")["data"]["width"] == 320
    for width in (336, 352, 368):  # all arrive while the session waits out its second
        client.connection.send(jpeg_frame(width, 240))
    result = client.receive_type("inference")["data"]
    assert result["width"] == 368, "the session must take the newest frame after waiting"
    assert result["dropped_frames"] == 2
