"""Attacks that hold sessions: clients that stop reading, expensive JPEGs, one token on many
connections, and sessions with summaries while their backlog disk is full."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection

from backend.bench.hostile_context import AttackContext
from backend.bench.hostile_jpegs import FULL_HD, heaviest_progressive, largest_scan_bomb, scan_bomb
from backend.bench.hostile_target import (
    DETECT_ONLY,
    RefusedError,
    open_session,
    receive_json,
    start_session,
)
from backend.bench.hostile_ws import OP_BINARY, RawWebSocket, encode_frame
from backend.bench.sample_frames import sample_frames

MAX_FRAME_BYTES = 2_000_000  # the backend's default CVSTACK_MAX_FRAME_BYTES
STALL_S = 2.0  # a write blocked this long means the server stopped reading
BAIT_LIMIT_BYTES = 16 << 20
SUMMARIES = {**DETECT_ONLY, "use_langchain": True}
DISK_FREE_BYTES = 128 << 10  # what the full disk leaves: enough to open a backlog, not to grow it
DISK_SESSION_S = 4.0
DISK_FPS = 2.0  # enough for a summary window a second, little enough not to load the CPU


@functools.cache
def normal_frames() -> list[bytes]:
    return sample_frames()


@functools.cache
def expensive_frames() -> list[bytes]:
    """A scan bomb, the 100-scan Full HD frame, and Full HD noise at the best quality."""
    budget = MAX_FRAME_BYTES - 10_000
    return [largest_scan_bomb(budget), scan_bomb(*FULL_HD, scans=100), heaviest_progressive(budget)]


async def non_reading(ctx: AttackContext) -> None:
    """`max_sessions` clients take every slot, then never read again."""
    await ctx.swarm([functools.partial(_non_reader, ctx)] * ctx.target.max_sessions)


async def _non_reader(ctx: AttackContext) -> None:
    ws = await RawWebSocket.connect(ctx.target, ctx.target.token(), receive_buffer=4096)
    ctx.count("connections")
    try:
        await ws.send_json({"type": "init", "params": dict(DETECT_ONLY)})
        await ws.send_json({"type": "start"})
        while True:  # read while queued, like any client
            message = await ws.receive_json()
            if message["type"] == "error" and message["fatal"]:
                raise RefusedError(f"error {message['code']}")
            if message.get("state") == "running":
                break
        ctx.count("admitted")
        # From here on, never read: send frames (50 a second, each replacing the last one
        # waiting; control messages would meet the rate limit first) until the server's
        # writes back up and it stops taking ours.
        bait = encode_frame(OP_BINARY, normal_frames()[0])
        sent = 0
        try:
            while sent < BAIT_LIMIT_BYTES and not ws.peer_gone():
                async with asyncio.timeout(STALL_S):
                    await ws.send(bait)
                sent += len(bait)
                await asyncio.sleep(0.02)
            ctx.count("writes never stalled")
        except TimeoutError:
            ctx.count("writes stalled")
        while not ws.peer_gone():
            await asyncio.sleep(0.2)
        async with asyncio.timeout(5):  # the server gave up on us: read to its close frame
            while True:
                await ws.receive()
    finally:
        ws.close(reset=True)


async def expensive_jpegs(ctx: AttackContext) -> None:
    """`max_sessions - 1` sessions send scan bombs and the costliest legal frames, each the
    moment the previous one is answered; the victim has the last slot."""
    sessions = max(1, ctx.target.max_sessions - 1)
    attempt = functools.partial(_streamer, ctx, DETECT_ONLY, expensive_frames(), fps=None)
    await ctx.swarm([attempt] * sessions)


async def normal_load(ctx: AttackContext) -> None:
    """The control: `max_sessions - 1` well-behaved sessions at full rate, what the victim's
    p95 becomes when every slot is used as intended."""
    sessions = max(1, ctx.target.max_sessions - 1)
    attempt = functools.partial(_streamer, ctx, DETECT_ONLY, normal_frames(), fps=None)
    await ctx.swarm([attempt] * sessions)


async def token_reuse(ctx: AttackContext) -> None:
    """One token on twice `max_sessions` connections that stream and reconnect."""
    token = ctx.target.token()
    attempt = functools.partial(_streamer, ctx, DETECT_ONLY, normal_frames(), token=token)
    await ctx.swarm([attempt] * (2 * ctx.target.max_sessions), pause_s=0.5)


async def failing_disk(ctx: AttackContext) -> None:
    """`max_sessions` sessions with summaries, 4 s each at 2 fps, while the backlog's disk
    stays full."""
    if ctx.target.summary_dir is None:
        raise RuntimeError("the disk attack needs the bench's tmpfs")
    attempt = functools.partial(
        _streamer, ctx, SUMMARIES, normal_frames(), fps=DISK_FPS, lifetime_s=DISK_SESSION_S
    )
    await asyncio.gather(
        _keep_full(ctx, Path(ctx.target.summary_dir)),
        ctx.swarm([attempt] * ctx.target.max_sessions),
    )


async def _keep_full(ctx: AttackContext, folder: Path) -> None:
    """Keep the folder's file system at `DISK_FREE_BYTES` free with a filler file."""
    filler = folder / "hostile-bench-filler"
    try:
        with filler.open("ab", buffering=0) as file:
            while True:
                stats = os.statvfs(folder)
                spare = stats.f_bavail * stats.f_frsize - DISK_FREE_BYTES
                if spare > 0:
                    with contextlib.suppress(OSError):
                        file.write(bytes(spare))
                    ctx.count("disk refills")
                await asyncio.sleep(0.2)
    finally:
        filler.unlink(missing_ok=True)


async def _streamer(
    ctx: AttackContext,
    params: Mapping[str, Any],
    frames: Sequence[bytes],
    *,
    token: str | None = None,
    fps: float | None = 10.0,
    lifetime_s: float | None = None,
) -> None:
    """A session that reads every answer: one frame in flight, at most `fps` frames a second
    (None: the next frame as soon as the previous is answered), for `lifetime_s` or forever."""
    ws = await open_session(ctx.target, token or ctx.target.token())
    ctx.count("connections")
    try:
        async with asyncio.timeout(60):
            for code in await start_session(ws, params):
                ctx.count(f"error {code}")
        ctx.count("admitted")
        started = time.monotonic()
        index = 0
        while lifetime_s is None or time.monotonic() - started < lifetime_s:
            await ws.send(frames[index % len(frames)])
            ctx.count("frames")
            async with asyncio.timeout(30):
                await _answer(ctx, ws)
            index += 1
            if fps is not None:
                await asyncio.sleep(max(0.0, started + index / fps - time.monotonic()))
    finally:
        await ws.close()


async def _answer(ctx: AttackContext, ws: ClientConnection) -> None:
    """Tally messages up to the answer to a frame (a result or an error)."""
    while True:
        message = await receive_json(ws)
        kind = message["type"]
        if kind == "inference":
            ctx.count("results")
            return
        if kind == "llm_summary":
            ctx.count("summaries")
        elif kind == "error":
            if message["fatal"]:
                raise RefusedError(f"error {message['code']}")
            ctx.count(f"error {message['code']}")
            return
