"""An OpenAI chat-completions server on loopback (uvicorn in a thread) and summary fixtures.

The stub answers like a well-behaved model by echoing the facts of the prompt in reverse
order (so an LLM answer is told apart from the template), streaming (SSE) when asked to,
and can be switched to be slow, fail with 500, hang, or answer in prose; `fail_next`
makes its next answers HTTP errors (a transient blip, or a permanent refusal).
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any, Literal

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from backend.protocol.server_messages import FrameOutputs

Mode = Literal["echo", "slow", "error", "hang", "prose", "inflate"]
SLOW_S = 0.3


class OpenAIStub:
    """`POST /v1/chat/completions`; `mode` may change while it runs."""

    def __init__(self) -> None:
        self.mode: Mode = "echo"
        self.requests: list[dict[str, Any]] = []
        self.request_times: list[float] = []  # time.monotonic() of each request
        self.failures: list[int] = []  # HTTP statuses of the next answers, before `mode`
        self.in_flight = 0
        app = Starlette(routes=[Route("/v1/chat/completions", self._complete, methods=["POST"])])
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OpenAIStub:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline, "the OpenAI stub did not start"
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.mode = "echo"  # releases hanging requests
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def fail_next(self, *statuses: int) -> None:
        self.failures.extend(statuses)

    async def _complete(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(body)
        self.request_times.append(time.monotonic())
        self.in_flight += 1
        try:
            if self.failures:
                status = self.failures.pop(0)
                return JSONResponse({"error": {"message": f"stub {status}"}}, status_code=status)
            if self.mode == "error":
                return JSONResponse({"error": {"message": "stub failure"}}, status_code=500)
            if self.mode == "slow":
                await asyncio.sleep(SLOW_S)
            while self.mode == "hang":
                await asyncio.sleep(0.02)
            answer = self._answer(body["messages"][-1]["content"])
        finally:
            self.in_flight -= 1
        if body.get("stream"):
            return StreamingResponse(_sse(answer, body["model"]), media_type="text/event-stream")
        return JSONResponse(
            {
                "id": "stub",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        )

    def _answer(self, question: str) -> str:
        facts = question.split("Facts:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        if self.mode == "prose":
            return "Sure! Here is a summary: the scene was busy with lots of people."
        if self.mode == "inflate":
            return "A person was detected at least 999 times."
        return "\n".join(reversed(facts))


async def _sse(answer: str, model: str) -> AsyncIterator[str]:
    pieces = [line + "\n" for line in answer.split("\n")]
    for delta in [{"role": "assistant", "content": ""}, *({"content": p} for p in pieces), {}]:
        chunk = {
            "id": "stub",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": None if delta else "stop"}],
        }
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    stub = OpenAIStub().start()
    yield stub
    stub.stop()


def frame_outputs(
    labels: tuple[str, ...] = ("person",),
    texts: tuple[str, ...] = (),
    poses: int = 0,
    motion: float | None = None,
) -> FrameOutputs:
    """A frame's `FrameOutputs` with just the fields the summaries read."""
    return {
        "width": 320,
        "height": 240,
        "yolo": {
            "boxes": [[0, 0, 1, 1]] * len(labels),
            "scores": [0.9] * len(labels),
            "classes": [0] * len(labels),
            "labels": list(labels),
            "track_ids": [-1] * len(labels),
            "velocities": [[0, 0]] * len(labels),
        },
        "pose": {"boxes": [[0, 0, 1, 1]] * poses, "scores": [0.9] * poses, "keypoints": []},
        "ocr": [{"box": [0, 0, 1, 1], "text": text, "score": 0.9} for text in texts] or None,
        "ocr_info": None,
        "flow": (
            None
            if motion is None
            else {
                "fx": [],
                "fy": [],
                "step": 16,
                "orig_w": 320,
                "orig_h": 240,
                "mean_magnitude": motion,
            }
        ),
        "stage_ms": {},
        "errors": {},
    }
