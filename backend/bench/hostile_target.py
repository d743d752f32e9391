"""The stack under attack, as a visitor holding a token from /start sees it, and the
well-behaved session steps (connect, init, start, wait for a slot) that clients share."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Origin

from backend.security.session_token import issue_token

DETECT_ONLY: Mapping[str, bool] = {"use_yolo": True}


@dataclass(frozen=True)
class Target:
    """Where the backend listens, the settings the bench started it with, and how to get a
    token (signed with the backend's secret, as the start-server Lambda does)."""

    host: str
    port: int
    token_secret: str
    origin: str
    max_sessions: int
    send_timeout_s: float
    summary_dir: str | None  # a tmpfs the disk attack may fill; None: that attack cannot run

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def token(self) -> str:
        """A fresh token, as each call to /start returns."""
        return issue_token(self.token_secret, now=time.time(), ttl_s=3600)

    def ws_path(self, token: str) -> str:
        return f"/ws/inference?token={token}"


class RefusedError(Exception):
    """The server refused or ended a session; the message says how (for the tallies)."""


def describe_close(exc: ConnectionClosed) -> str:
    """`close 1008 send_timeout`, or `close none` when no close frame came."""
    frame = exc.rcvd
    if frame is None:
        return "close none"
    return f"close {frame.code} {frame.reason}".rstrip()


async def open_session(target: Target, token: str, open_timeout: float = 10) -> ClientConnection:
    """A library WebSocket client with the token and an allowed origin."""
    return await connect(
        f"ws://{target.host}:{target.port}{target.ws_path(token)}",
        origin=Origin(target.origin),
        compression=None,
        proxy=None,
        max_size=None,
        open_timeout=open_timeout,
    )


async def start_session(ws: ClientConnection, params: Mapping[str, Any]) -> list[str]:
    """Send `init` and `start`, wait until the session runs; returns the codes of the
    non-fatal errors on the way (e.g. `summaries_unavailable`).

    Raises `RefusedError` on a fatal error or a close; `TimeoutError` is the caller's to set.
    """
    await ws.send(json.dumps({"type": "init", "params": dict(params)}))
    await ws.send(json.dumps({"type": "start"}))
    errors: list[str] = []
    while True:
        message = await receive_json(ws)
        if message["type"] == "queue_status" and message["state"] == "running":
            return errors
        if message["type"] == "error":
            if message["fatal"]:
                raise RefusedError(f"error {message['code']}")
            errors.append(message["code"])


async def receive_json(ws: ClientConnection) -> dict[str, Any]:
    """The next text message, parsed; a close becomes `RefusedError`."""
    try:
        raw = await ws.recv()
    except ConnectionClosed as exc:
        raise RefusedError(describe_close(exc)) from exc
    message: dict[str, Any] = json.loads(raw)
    return message


def describe_failure(exc: BaseException) -> str:
    """A short tally key for why a client's connection ended or never started."""
    if isinstance(exc, RefusedError):
        return str(exc)
    if isinstance(exc, ConnectionClosed):
        return describe_close(exc)
    if isinstance(exc, InvalidStatus):
        return f"refused HTTP {exc.response.status_code}"
    if isinstance(exc, ConnectionRefusedError):
        return "refused TCP"
    if isinstance(exc, ConnectionResetError | BrokenPipeError):
        return "reset by server"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return f"client error {type(exc).__name__}"
