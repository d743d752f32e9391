"""Fault injection at every await of a session's life: whatever fails, the slot, the gauges
and the summary backlog file are released, and the next visitor gets the slot.

Real uvicorn and Triton; one collaborator at a time is made to fail (a bug, a full disk, a
lost socket) while a session with summaries streams frames.
"""

from __future__ import annotations

import ast
import inspect
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.websockets import WebSocket

from backend.pipeline.multimodal import SessionPipeline
from backend.security.session_token import issue_token
from backend.session import inference_session
from backend.session.admission import AdmissionGate
from backend.session.frame_queue import LatestFrameQueue
from backend.session.result_pace import ResultPace
from backend.summaries.backlog import Backlog
from backend.summaries.summarizer import Summarizer
from tests.backend.service.conftest import BackendServer, Client, jpeg_frame

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]
SECRET = "fault-injection-secret-of-32-chars!"


class InjectedError(RuntimeError):
    """The fault this test injected (a stand-in for any bug)."""


def disk_full() -> Exception:
    return sqlite3.OperationalError("database or disk is full")


# What each await of InferenceSession reaches outside the session object, and the fault
# injected there: (class, method, the call that fails (1 = first), the exception).
FAULTS: dict[str, tuple[type, str, int, Callable[[], Exception]]] = {
    "ws.send_text": (WebSocket, "send_text", 3, lambda: InjectedError("send")),
    "ws.receive": (WebSocket, "receive", 4, lambda: InjectedError("receive")),
    "ws.close": (WebSocket, "close", 1, lambda: InjectedError("close")),
    "gate.acquire": (AdmissionGate, "acquire", 1, lambda: InjectedError("acquire")),
    "frames.get": (LatestFrameQueue, "get", 2, lambda: InjectedError("get")),
    "pace.wait": (ResultPace, "wait", 2, lambda: InjectedError("wait")),
    "pipeline.process": (SessionPipeline, "process", 2, lambda: InjectedError("process")),
    "pipeline.aclose": (SessionPipeline, "aclose", 1, lambda: InjectedError("aclose")),
    "backlog open": (Backlog, "__init__", 1, disk_full),
    "backlog.push": (Backlog, "push", 1, disk_full),
    "backlog.peek": (Backlog, "peek", 1, disk_full),
    "backlog.close": (Backlog, "close", 1, lambda: OSError(5, "Input/output error")),
    "summarizer.start": (Summarizer, "start", 1, lambda: InjectedError("start")),
    "summarizer.aclose": (Summarizer, "aclose", 1, lambda: InjectedError("aclose")),
}

# Awaited expressions of the session that stay inside it (its own methods, its tasks) or
# wait on a covered call through a wrapper.
INTERNAL = {
    "self.send", "self.reject", "self._receive_forever", "self._stop_streaming", "pinger",
    "self._on_frame", "self._on_text", "self._error", "self._start_summarizer",
    "self._process", "self._close_quietly", "streamer", "asyncio.wait_for", "asyncio.shield",
    "asyncio.sleep", "aclose", "self._remove_backlog",
}  # fmt: skip
COVERED = {
    "self.ws.send_text": "ws.send_text",
    "self.ws.receive": "ws.receive",
    "self.ws.close": "ws.close",
    "gate.acquire": "gate.acquire",
    "self.frames.get": "frames.get",
    "pace.wait": "pace.wait",
    "pipeline.process": "pipeline.process",
    "self.runtime.loop.run_in_executor": "backlog.close",  # closing or deleting the backlog
}


def awaited_calls() -> set[str]:
    """The callee of every `await` in the session module."""
    tree = ast.parse(Path(inference_session.__file__).read_text())
    callees = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Await):
            target = node.value.func if isinstance(node.value, ast.Call) else node.value
            callees.add(ast.unparse(target))
    return callees


def test_every_await_of_the_session_is_covered_by_a_fault() -> None:
    uncovered = awaited_calls() - INTERNAL - set(COVERED)
    assert uncovered == set(), f"add a fault for {uncovered} to FAULTS"
    assert set(COVERED.values()) <= set(FAULTS)


def inject(monkeypatch: pytest.MonkeyPatch, name: str) -> list[int]:
    """Make the named call fail on its n-th call; returns a one-item list: calls so far."""
    owner, method, nth, fault = FAULTS[name]
    original = getattr(owner, method)
    calls = [0]

    def failing_on_nth(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == nth:
            raise fault()
        return original(*args, **kwargs)

    async def failing_on_nth_async(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == nth:
            raise fault()
        return await original(*args, **kwargs)

    is_async = inspect.iscoroutinefunction(original)
    monkeypatch.setattr(owner, method, failing_on_nth_async if is_async else failing_on_nth)
    return calls


def released(server: BackendServer, summary_dir: Path) -> list[str]:
    """What the ended sessions still hold (empty when everything was released)."""
    runtime = server.runtime
    sample = runtime.metrics.registry.get_sample_value
    held = {
        "slots": runtime.gate.active,
        "waiting": runtime.gate.waiting,
        "cvstack_active_sessions": sample("cvstack_active_sessions"),
        "cvstack_waiting_sessions": sample("cvstack_waiting_sessions"),
        "cvstack_connections": sample("cvstack_connections"),
        "cvstack_summary_backlog_windows": sample("cvstack_summary_backlog_windows"),
        "backlog files": len(list(summary_dir.glob("*.sqlite3*"))),
        "live tokens": len(runtime.live_tokens),
    }
    return [f"{name}={value}" for name, value in held.items() if value]


def stream_until_gone(client: Client, frames: int) -> None:
    """A normal visitor: init with summaries, start, send frames; stops early if the
    server ends the session."""
    try:
        client.send_json({"type": "init", "params": {"use_yolo": True, "use_langchain": True}})
        client.send_json({"type": "start"})
        for seed in range(frames):
            client.connection.send(jpeg_frame(seed=seed))
            time.sleep(0.15)  # several summary windows close meanwhile
        client.connection.close()
    except Exception:  # the injected fault may end the session: that is allowed
        client.connection.close()


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_a_fault_anywhere_releases_the_slot_and_everything_else(
    start_backend: Callable[..., BackendServer],
    open_client: OpenClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fault: str,
) -> None:
    server = start_backend(
        max_sessions=1, summary_window_s=0.2, summary_dir=tmp_path, session_token_secret=SECRET
    )
    calls = inject(monkeypatch, fault)
    token = issue_token(SECRET, now=time.time())
    # Closing is reached when a connection is refused: this one comes without a token.
    client, _ = open_client(
        server.ws_url if fault == "ws.close" else f"{server.ws_url}?token={token}"
    )
    stream_until_gone(client, frames=8)
    deadline = time.monotonic() + 15
    while held := released(server, tmp_path):
        assert time.monotonic() < deadline, f"after a fault in {fault}, still held: {held}"
        time.sleep(0.05)
    assert calls[0] >= FAULTS[fault][2], f"the fault in {fault} was never reached"

    monkeypatch.undo()
    after, _ = open_client(f"{server.ws_url}?token={issue_token(SECRET, now=time.time())}")
    assert after.start(use_yolo=True)["state"] == "running"  # the one slot is free
    after.connection.send(jpeg_frame())
    assert after.receive_type("inference")["data"]["width"] == 320


def test_a_session_gone_while_its_backlog_opens_leaves_no_file(
    start_backend: Callable[..., BackendServer],
    open_client: OpenClient,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A slow disk: the visitor leaves while the backlog file is still being created."""
    server = start_backend(summary_dir=tmp_path)
    original = Backlog.__init__
    opened = threading.Event()

    def slow_open(self: Backlog, *args: Any, **kwargs: Any) -> None:
        time.sleep(1.0)
        original(self, *args, **kwargs)
        opened.set()

    monkeypatch.setattr(Backlog, "__init__", slow_open)
    for _ in range(3):
        opened.clear()
        client, _ = open_client(server.ws_url)
        client.send_json({"type": "init", "params": {"use_yolo": True, "use_langchain": True}})
        client.send_json({"type": "start"})
        time.sleep(0.3)
        client.connection.close()
        assert opened.wait(timeout=10), "the backlog was never opened"
    deadline = time.monotonic() + 15
    while held := released(server, tmp_path):
        assert time.monotonic() < deadline, f"still held: {held}"
        time.sleep(0.05)
