"""The real backend under uvicorn on loopback, and a small WebSocket client for the tests."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest
import uvicorn
from websockets.sync.client import ClientConnection, connect

from backend.api.connection_limits import uvicorn_config
from backend.app import create_app
from backend.core.config import Settings
from backend.paths import REPO_ROOT
from backend.session.runtime import Runtime
from backend.triton_server.local_server import LocalTritonServer, ServerAddress

SCHEMA = json.loads((REPO_ROOT / "docs" / "protocol.schema.json").read_text())


class BackendServer:
    """uvicorn serving `create_app(settings)` in a thread of the test process."""

    def __init__(self, settings: Settings, log_level: str = "warning") -> None:
        self.settings = settings
        self.app = create_app(settings)
        self.server = uvicorn.Server(uvicorn_config(self.app, settings, log_level=log_level))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.settings.host}:{self.settings.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.settings.host}:{self.settings.port}/ws/inference"

    @property
    def runtime(self) -> Runtime:
        runtime: Runtime = self.app.state.runtime
        return runtime

    def start(self) -> BackendServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive(), "uvicorn exited during start-up"
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)
        assert not self.thread.is_alive(), "uvicorn did not stop"

    def server_tasks(self) -> int:
        """Asyncio tasks alive in the server's event loop (uvicorn's own included)."""
        loop = self.runtime.loop

        async def count() -> int:
            return len(asyncio.all_tasks())

        return asyncio.run_coroutine_threadsafe(count(), loop).result(timeout=5)


def backend_settings(models_dir: Path, triton: ServerAddress, **overrides: Any) -> Settings:
    address = ServerAddress.on_free_ports()
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": address.http_port,
        "models_dir": models_dir,
        "triton_grpc_url": triton.grpc_url,
        "triton_metrics_url": triton.metrics_url,
        "triton_timeout_s": 10.0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def start_backend(
    yolo_models_dir: Path, triton: LocalTritonServer
) -> Iterator[Callable[..., BackendServer]]:
    """Start a backend with settings overrides; every one started is stopped after the test."""
    started: list[BackendServer] = []

    def start(
        triton_address: ServerAddress | None = None, *, log_level: str = "warning", **overrides: Any
    ) -> BackendServer:
        settings = backend_settings(yolo_models_dir, triton_address or triton.address, **overrides)
        server = BackendServer(settings, log_level).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def backend(start_backend: Callable[..., BackendServer]) -> BackendServer:
    return start_backend()


@dataclass
class Client:
    """A WebSocket client that validates every server message against the protocol schema."""

    connection: ClientConnection

    def send_json(self, message: dict[str, Any]) -> None:
        self.connection.send(json.dumps(message))

    def receive(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next message that is not a ping."""
        while True:
            message: dict[str, Any] = json.loads(self.connection.recv(timeout=timeout))
            jsonschema.validate(message, SCHEMA)
            if message["type"] != "ping":
                return message

    def receive_type(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        """Skip messages until one of `kind` arrives."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"no '{kind}' message within {timeout} s"
            message = self.receive(remaining)
            if message["type"] == kind:
                return message

    def start(self, **params: Any) -> dict[str, Any]:
        """init + start; returns the `running` queue_status."""
        self.send_json({"type": "init", "params": params})
        self.send_json({"type": "start"})
        while True:
            status = self.receive_type("queue_status")
            if status["state"] == "running":
                return status


@pytest.fixture
def open_client() -> Iterator[Callable[..., tuple[Client, dict[str, Any]]]]:
    """Connect to a backend; returns the client and the first server message."""
    with contextlib.ExitStack() as stack:

        def open_(url: str, **headers: str) -> tuple[Client, dict[str, Any]]:
            connection = stack.enter_context(
                connect(url, additional_headers=headers or None, max_size=None)
            )
            client = Client(connection)
            return client, client.receive()

        yield open_


def jpeg_frame(width: int = 320, height: int = 240, seed: int = 0) -> bytes:
    """A JPEG of the ultralytics bus photo, resized, shifted a little by `seed`."""
    image = cv2.imread(str(bus_photo()))
    image = np.roll(image, seed * 4, axis=1)
    ok, encoded = cv2.imencode(".jpg", cv2.resize(image, (width, height)))
    assert ok
    return encoded.tobytes()


def bus_photo() -> Path:
    import ultralytics  # noqa: PLC0415 - only for the path of its bundled sample photo

    return Path(ultralytics.__file__).parent / "assets" / "bus.jpg"
