"""The victim: one normal session that measures its own admission time and latency.

Closed loop, paced: one frame in flight, the next sent when the answer is in and at most
`fps` a second, so its latency is the stack's, not a queue of its own making.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from backend.bench.hostile_target import (
    DETECT_ONLY,
    RefusedError,
    Target,
    describe_failure,
    open_session,
    receive_json,
    start_session,
)

REPLY_TIMEOUT_S = 5.0
RETRY_S = 0.5


@dataclass
class VictimRun:
    admitted_s: float | None = None  # from the first connection attempt to `running`
    refused: str | None = None  # how the last attempt to get in ended, if none did
    dropped: str | None = None  # how the session ended early, if it did
    round_trips_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def p95_ms(self) -> float | None:
        return float(np.percentile(self.round_trips_ms, 95)) if self.round_trips_ms else None


async def run_victim(
    target: Target,
    frames: Sequence[bytes],
    *,
    seconds: float,
    give_up_s: float = 20.0,
    fps: float = 10.0,
) -> VictimRun:
    """Get a slot (retrying refused connections, for `give_up_s` at most), then stream
    for `seconds`."""
    run = VictimRun()
    started = time.monotonic()
    ws = await _admitted(target, run, started + give_up_s)
    if ws is None:
        return run
    run.admitted_s = time.monotonic() - started
    try:
        await _stream(ws, frames, run, seconds, fps)
    except (RefusedError, ConnectionClosed, OSError) as exc:
        run.dropped = describe_failure(exc)
    finally:
        await ws.close()
    return run


async def _admitted(target: Target, run: VictimRun, give_up_at: float) -> ClientConnection | None:
    while time.monotonic() < give_up_at:
        ws: ClientConnection | None = None
        try:
            async with asyncio.timeout(give_up_at - time.monotonic()):
                ws = await open_session(target, target.token())
                await start_session(ws, DETECT_ONLY)
            return ws
        except Exception as exc:
            queued = ws is not None and isinstance(exc, TimeoutError)
            run.refused = "not running yet" if queued else describe_failure(exc)
            if ws is not None:
                await ws.close()
        await asyncio.sleep(RETRY_S)
    return None


async def _stream(
    ws: ClientConnection, frames: Sequence[bytes], run: VictimRun, seconds: float, fps: float
) -> None:
    started = next_at = time.monotonic()
    index = 0
    while time.monotonic() - started < seconds:
        sent_at = time.perf_counter()
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_S):
                await ws.send(frames[index % len(frames)])
                await _result(ws, run)
            run.round_trips_ms.append((time.perf_counter() - sent_at) * 1000)
        except TimeoutError:  # counted at the timeout: a lower bound, never left out
            run.round_trips_ms.append(REPLY_TIMEOUT_S * 1000)
            run.errors["no answer within 5 s"] += 1
        index += 1
        next_at = max(next_at + 1 / fps, time.monotonic())
        await asyncio.sleep(next_at - time.monotonic())


async def _result(ws: ClientConnection, run: VictimRun) -> None:
    while True:
        message = await receive_json(ws)
        if message["type"] == "inference":
            return
        if message["type"] == "error":
            if message["fatal"]:
                raise RefusedError(f"error {message['code']}")
            run.errors[message["code"]] += 1
            return
