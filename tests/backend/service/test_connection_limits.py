"""Limits below the app, attacked as found: stalled readers, fragments, slowloris, token
sharing. Real uvicorn with the limits `cvstack serve` installs, real Triton."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from backend.bench.hostile_ws import OP_BINARY, OP_TEXT, encode_frame
from tests.backend.service.conftest import BackendServer, Client, jpeg_frame
from tests.backend.service.raw_websocket import RawWebSocket, fragmented

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]


@pytest.fixture
def stalled_readers() -> Iterator[Callable[[str], RawWebSocket]]:
    """Clients that start a session, keep sending frames (each answered with a result) and
    never read: the server's writes to them back up."""
    stop = threading.Event()
    threads: list[threading.Thread] = []
    sockets: list[RawWebSocket] = []

    def flood(ws: RawWebSocket) -> None:
        frame = encode_frame(OP_BINARY, jpeg_frame())
        while not stop.wait(0.01):
            try:
                ws.sock.sendall(frame)
            except OSError:
                return

    def open_(url: str) -> RawWebSocket:
        ws = RawWebSocket(url, receive_buffer=4096)
        ws.send_json({"type": "init", "params": {"use_yolo": True}})
        ws.send_json({"type": "start"})
        thread = threading.Thread(target=flood, args=(ws,), daemon=True)
        thread.start()
        threads.append(thread)
        sockets.append(ws)
        return ws

    yield open_
    stop.set()
    for ws in sockets:
        ws.close()
    for thread in threads:
        thread.join(timeout=10)


def test_a_client_that_stops_reading_loses_its_slot_within_seconds(
    start_backend: Callable[..., BackendServer],
    open_client: OpenClient,
    stalled_readers: Callable[[str], RawWebSocket],
) -> None:
    server = start_backend(max_sessions=1, send_timeout_s=1.0, max_wait_s=60)
    stalled = stalled_readers(server.ws_url)
    started = time.monotonic()
    victim, _ = open_client(server.ws_url)
    victim.start(use_yolo=True)  # waits for the slot the stalled reader held
    admitted_after = time.monotonic() - started
    victim.connection.send(jpeg_frame())
    assert victim.receive_type("inference")["data"]["width"] == 320
    # Well before uvicorn's keepalive (40 s) or the admission timeout (60 s) could act.
    assert admitted_after < 30
    assert stalled.close_code(timeout=10) in ((1008, "send_timeout"), None)
    assert server.runtime.gate.active == 1
    assert gauge(server, "cvstack_active_sessions") == 1


def gauge(server: BackendServer, name: str, **labels: str) -> float:
    return server.runtime.metrics.registry.get_sample_value(name, labels) or 0.0


def test_a_message_in_too_many_fragments_is_refused_while_others_are_served(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    server = start_backend(max_message_fragments=64)
    other, _ = open_client(server.ws_url)
    other.start(use_yolo=True)
    allowed = RawWebSocket(server.ws_url)
    allowed.send_json({"type": "init", "params": {"use_yolo": True}})
    allowed.send_json({"type": "start"})
    allowed.sock.sendall(fragmented(jpeg_frame(), pieces=64))
    attacker = RawWebSocket(server.ws_url)
    attacker.sock.sendall(fragmented(b"x" * 200_000, pieces=100_000))  # 2-byte fragments
    assert attacker.close_code(timeout=10) == (1009, "message in over 64 fragments")
    other.connection.send(jpeg_frame(seed=1))
    assert other.receive_type("inference")["data"]["width"] == 320
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    allowed.close()
    attacker.close()


def half_open(server: BackendServer, count: int) -> list[socket.socket]:
    """Connections that send the start of a request and never finish it."""
    sockets = []
    for _ in range(count):
        sock = socket.create_connection((server.settings.host, server.settings.port), timeout=10)
        sock.sendall(b"GET /ws/inference HTTP/1.1\r\nHost: x\r\n")
        sockets.append(sock)
    return sockets


def closed_by_server(sock: socket.socket, timeout: float) -> bool:
    sock.settimeout(timeout)
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_unfinished_requests_are_closed_after_the_handshake_timeout(
    start_backend: Callable[..., BackendServer],
) -> None:
    server = start_backend(handshake_timeout_s=1.0)
    sockets = half_open(server, 20)
    try:
        assert all(closed_by_server(sock, timeout=10) for sock in sockets)
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    finally:
        for sock in sockets:
            sock.close()


def test_at_the_connection_cap_half_open_connections_make_room_for_real_clients(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    server = start_backend(max_connections=16, handshake_timeout_s=120)
    attack = half_open(server, 40)  # each one past the cap evicts the oldest half-open one
    try:
        assert sum(closed_by_server(sock, timeout=2) for sock in attack[:24]) == 24
        assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
        client, _ = open_client(server.ws_url)
        client.start(use_yolo=True)
        client.connection.send(jpeg_frame())
        assert client.receive_type("inference")["data"]["width"] == 320
    finally:
        for sock in attack:
            sock.close()


def test_beyond_the_cap_of_live_connections_new_ones_are_refused(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    server = start_backend(max_connections=8)
    live = [open_client(server.ws_url)[0] for _ in range(8)]
    with pytest.raises(ConnectionError):  # closed at once, or reset
        RawWebSocket(server.ws_url)
    live[0].connection.close()
    deadline = time.monotonic() + 10
    while len(server.server.server_state.connections) >= 8:
        assert time.monotonic() < deadline, "the closed connection was never released"
        time.sleep(0.05)
    RawWebSocket(server.ws_url).close()


def test_text_that_is_not_utf8_closes_with_1007_and_one_log_line(
    start_backend: Callable[..., BackendServer], caplog: pytest.LogCaptureFixture
) -> None:
    server = start_backend()
    for _ in range(20):
        ws = RawWebSocket(server.ws_url)
        ws.sock.sendall(encode_frame(OP_TEXT, b"\xff\xfe not utf-8"))
        assert ws.close_code(timeout=10) == (1007, "text message is not UTF-8")
        ws.close()
    assert httpx.get(f"{server.url}/health", timeout=10).status_code == 200
    lines = [record for record in caplog.records if "UTF-8" in record.getMessage()]
    assert len(lines) == 1, [record.getMessage() for record in lines]
    assert lines[0].exc_info is None


def test_a_flood_of_control_messages_is_closed_and_others_are_served(
    start_backend: Callable[..., BackendServer], open_client: OpenClient
) -> None:
    server = start_backend(max_text_messages_per_s=20)
    other, _ = open_client(server.ws_url)
    other.start(use_yolo=True)
    flood = RawWebSocket(server.ws_url)
    flood.sock.sendall(encode_frame(OP_TEXT, b"[" * 8000) * 500)
    assert flood.close_code(timeout=10) == (1008, "too_many_messages")
    flood.close()
    calm, _ = open_client(server.ws_url)
    for _ in range(30):  # a page's control messages, well within the burst of 40
        calm.send_json({"type": "pong"})
    calm.start(use_yolo=True)
    for client in (other, calm):
        client.connection.send(jpeg_frame())
        assert client.receive_type("inference")["data"]["width"] == 320
    assert gauge(server, "cvstack_errors_total", kind="too_many_messages") == 1
