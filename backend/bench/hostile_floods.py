"""Attacks on the connection layer: tiny fragments, slowloris, connect/reset churn, and
malformed JSON that each message should answer with a non-fatal error."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import resource

from backend.bench.hostile_context import AttackContext
from backend.bench.hostile_target import DETECT_ONLY, RefusedError
from backend.bench.hostile_ws import (
    OP_BINARY,
    OP_CONTINUATION,
    OP_TEXT,
    RawWebSocket,
    encode_frame,
)

FRAGMENTS_PER_WRITE = 512
MAX_FRAGMENTS = 4_000_000  # 2-byte fragments: 8 MB, the backend's whole message limit
TRICKLE_S = 2.0  # slowloris: one more header line this often
CONNECTS_IN_FLIGHT = 100
FD_RESERVE = 200  # descriptors the bench keeps for itself
MALFORMED = [
    b"[" * 8000 + b"]" * 8000,  # nesting deeper than any parser's recursion
    b'{"type":"init","params":{"use_yolo":' + b"7" * 5000 + b"}}",  # a 5000-digit integer
    b'{"type":"\\ud800"}',  # a lone surrogate: valid JSON, not valid Unicode
    b'{"type":"init","params":{"use_yolo":"yes"}}',  # a string where a boolean belongs
]
INVALID_UTF8 = b'{"type":"\xff\xfe"}'
MALFORMED_ROUNDS = 50  # per connection, before the invalid UTF-8 frame that ends it


async def fragments(ctx: AttackContext) -> None:
    """Binary messages of millions of 2-byte fragments, on `workers` connections."""
    await ctx.swarm([functools.partial(_fragmented_message, ctx)] * ctx.options.workers)


async def _fragmented_message(ctx: AttackContext) -> None:
    ws = await RawWebSocket.connect(ctx.target, ctx.target.token())
    ctx.count("connections")
    closed = asyncio.create_task(_read_until_closed(ws))
    batch = encode_frame(OP_CONTINUATION, b"ab", fin=False) * FRAGMENTS_PER_WRITE
    try:
        with contextlib.suppress(OSError):
            await ws.send(encode_frame(OP_BINARY, b"ab", fin=False))
            sent = 1
            while sent < MAX_FRAGMENTS and not closed.done():
                await ws.send(batch)
                sent += FRAGMENTS_PER_WRITE
                ctx.count("fragments", FRAGMENTS_PER_WRITE)
                await asyncio.sleep(0)  # let the reader see a close as soon as it comes
            await ws.send(encode_frame(OP_CONTINUATION, b"ab"))  # the end of the message
        async with asyncio.timeout(30):
            await closed  # raises how the server ended it
    finally:
        closed.cancel()
        ws.close()


async def _read_until_closed(ws: RawWebSocket) -> None:
    while True:
        await ws.receive()


async def slowloris(ctx: AttackContext) -> None:
    """Half-open HTTP requests, one header line every few seconds, as many as descriptors
    allow up to `slowloris`; each one the server ends is opened again."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    held = max(1, min(ctx.options.slowloris, soft - FD_RESERVE))
    ctx.count("descriptor budget", held)
    connects = asyncio.Semaphore(CONNECTS_IN_FLIGHT)
    await ctx.swarm([functools.partial(_slow_request, ctx, connects)] * held, pause_s=0.5)


async def _slow_request(ctx: AttackContext, connects: asyncio.Semaphore) -> None:
    target = ctx.target
    async with connects, asyncio.timeout(10):
        reader, writer = await asyncio.open_connection(target.host, target.port)
    ctx.count("connections")
    try:
        request = f"GET {target.ws_path(target.token())} HTTP/1.1\r\nHost: {target.host}\r\n"
        writer.write(request.encode())
        while True:
            try:
                answer = await asyncio.wait_for(reader.read(4096), TRICKLE_S)
            except TimeoutError:
                writer.write(b"X-Slow: 1\r\n")
                await writer.drain()
                continue
            if not answer:
                raise RefusedError("closed by server")
            status = answer.split(b"\r\n", 1)[0].decode(errors="replace").split(" ")
            raise RefusedError(f"answered HTTP {' '.join(status[1:2])}")
    finally:
        writer.close()


async def churn(ctx: AttackContext) -> None:
    """Open, init with summaries, start, reset; half the workers wait for a slot first."""
    attempts = [
        functools.partial(_connect_and_reset, ctx, wait_for_slot=index % 2 == 1)
        for index in range(ctx.options.workers)
    ]
    await ctx.swarm(attempts, pause_s=0.01)


async def _connect_and_reset(ctx: AttackContext, *, wait_for_slot: bool) -> None:
    ws = await RawWebSocket.connect(ctx.target, ctx.target.token())
    ctx.count("connections")
    try:
        await ws.send_json({"type": "init", "params": {**DETECT_ONLY, "use_langchain": True}})
        await ws.send_json({"type": "start"})
        if wait_for_slot:
            async with asyncio.timeout(10):
                while (await ws.receive_json()).get("state") != "running":
                    pass
            ctx.count("admitted")
    finally:
        ws.close(reset=True)
        ctx.count("resets")


async def malformed_json(ctx: AttackContext) -> None:
    """Deep nesting, huge integers, lone surrogates and non-boolean switches on `workers`
    connections, each answer awaited; each connection ends with invalid UTF-8."""
    await ctx.swarm([functools.partial(_malformed, ctx)] * ctx.options.workers)


async def _malformed(ctx: AttackContext) -> None:
    ws = await RawWebSocket.connect(ctx.target, ctx.target.token())
    ctx.count("connections")
    burst = b"".join(encode_frame(OP_TEXT, text) for text in MALFORMED)
    try:
        for _ in range(MALFORMED_ROUNDS):
            await ws.send(burst)
            ctx.count("messages", len(MALFORMED))
            for _ in MALFORMED:
                async with asyncio.timeout(10):
                    await _tally_answer(ctx, ws)
        # RFC 6455 has the server fail a connection whose text is not UTF-8 (close 1007);
        # a close is tallied by `repeat`, an error answer here.
        await ws.send(encode_frame(OP_TEXT, INVALID_UTF8))
        ctx.count("invalid utf-8 frames")
        async with asyncio.timeout(10):
            await _tally_answer(ctx, ws)
    finally:
        ws.close()


async def _tally_answer(ctx: AttackContext, ws: RawWebSocket) -> None:
    message = await ws.receive_json()
    while message["type"] != "error":
        message = await ws.receive_json()
    ctx.count(f"{'fatal ' if message['fatal'] else ''}error {message['code']}")
