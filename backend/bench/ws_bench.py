"""End-to-end WebSocket benchmark: sessions streaming real JPEGs through the whole stack.

Scenarios, all in one run against one stack:
- single vs direct: one session (one frame in flight, client-measured round trip) alternated
  call by call with the detector called directly through Triton; onnxruntime in-process too;
- overload: one session sending faster than the stack can serve (latest frame wins);
- concurrent: N sessions at once, total throughput and Triton's average batch.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
import tritonclient.grpc.aio as grpcclient
from websockets.asyncio.client import ClientConnection, connect

from backend.bench.bench_models import BenchModels
from backend.bench.latency import LatencyStats, time_calls
from backend.bench.machine import describe_machine
from backend.bench.sample_frames import sample_frames
from backend.bench.stack import LocalStack, local_stack
from backend.model_prep.manifest import load_manifest
from backend.pipeline.letterbox import letterbox
from backend.triton_server.metrics import read_model_counters

DETECT_ONLY = {"use_yolo": True}
FULL_PIPELINE = {"use_yolo": True, "use_yolo_pose": True, "use_motion": True}


@dataclass
class SessionRun:
    """What one benchmark session saw."""

    round_trips_ms: list[float] = field(default_factory=list)
    server_latencies_ms: list[tuple[float, float]] = field(default_factory=list)  # (t, ms)
    sent: int = 0
    results: int = 0
    dropped: int = 0
    seconds: float = 0.0


@dataclass(frozen=True)
class WsBenchResult:
    machine: str
    models: BenchModels
    detector_size: int
    direct_triton: LatencyStats
    direct_onnxruntime: LatencyStats
    single: LatencyStats
    single_full: LatencyStats
    overload_fps: float
    overload: LatencyStats
    overload_windows: list[LatencyStats]
    overload_drop_rate: float
    overload_results_per_s: float
    sessions: int
    one_session_per_s: float
    concurrent_per_s: float
    concurrent_batch: float


def run_ws_bench(
    models: BenchModels,
    *,
    frames: int = 100,
    overload_s: float = 30.0,
    overload_fps: float = 30.0,
    sessions: int = 8,
    concurrent_s: float = 20.0,
) -> WsBenchResult:
    """Start a local stack and run every scenario against it."""
    models_dir = models.models_dir
    jpegs = sample_frames()
    with local_stack(models_dir) as stack:
        direct_triton, single, direct_ort = asyncio.run(
            _single_vs_direct(stack, models_dir, jpegs, frames)
        )
        full = asyncio.run(_closed_loop(stack.ws_url, jpegs, FULL_PIPELINE, count=frames))
        overload = asyncio.run(_open_loop(stack.ws_url, jpegs, overload_fps, overload_s))
        one = asyncio.run(_concurrent(stack, jpegs, 1, concurrent_s))
        many = asyncio.run(_concurrent(stack, jpegs, sessions, concurrent_s))
    latencies = [ms for _, ms in overload.server_latencies_ms]
    return WsBenchResult(
        machine=describe_machine(),
        models=models,
        detector_size=load_manifest(models_dir).entry("yolo").input_size or 320,
        direct_triton=direct_triton,
        direct_onnxruntime=direct_ort,
        single=single,
        single_full=_stats_ms(full.round_trips_ms),
        overload_fps=overload_fps,
        overload=_stats_ms(latencies),
        overload_windows=_windows(overload.server_latencies_ms, overload.seconds),
        overload_drop_rate=overload.dropped / max(1, overload.sent),
        overload_results_per_s=overload.results / overload.seconds,
        sessions=sessions,
        one_session_per_s=one[0],
        concurrent_per_s=many[0],
        concurrent_batch=many[1],
    )


async def _single_vs_direct(
    stack: LocalStack, models_dir: Path, jpegs: list[bytes], count: int, warmup: int = 5
) -> tuple[LatencyStats, LatencyStats, LatencyStats]:
    """Direct Triton calls and session round trips, alternated so both see the same machine."""
    entry = load_manifest(models_dir).entry("yolo")
    image = np.asarray(cv2.imdecode(np.frombuffer(jpegs[0], np.uint8), cv2.IMREAD_COLOR), np.uint8)
    tensor, _ = letterbox(image, entry.input_size or 320)
    client = grpcclient.InferenceServerClient(stack.triton.address.grpc_url)
    direct: list[float] = []
    session: list[float] = []
    try:
        async with connect(stack.ws_url, max_size=None) as ws:
            await _start(ws, DETECT_ONLY)
            for index in range(warmup + count):
                started = time.perf_counter()
                request = grpcclient.InferInput("images", list(tensor.shape), "UINT8")
                request.set_data_from_numpy(tensor)
                await client.infer("yolo", [request])
                middle = time.perf_counter()
                await ws.send(jpegs[index % len(jpegs)])
                await _next_result(ws)
                if index >= warmup:
                    direct.append(middle - started)
                    session.append(time.perf_counter() - middle)
    finally:
        await client.close()
    onnx = ort.InferenceSession(str(models_dir / entry.file), providers=["CPUExecutionProvider"])
    local = time_calls(lambda: onnx.run(None, {"images": tensor}), count, warmup)
    return LatencyStats.of(direct), LatencyStats.of(session), local


async def _start(ws: ClientConnection, params: dict[str, Any]) -> None:
    await ws.send(json.dumps({"type": "init", "params": params}))
    await ws.send(json.dumps({"type": "start"}))
    while True:
        message = json.loads(await ws.recv())
        if message["type"] == "queue_status" and message["state"] == "running":
            return
        if message["type"] == "error" and message["fatal"]:
            raise RuntimeError(f"the server refused the session: {message['message']}")


async def _next_result(ws: ClientConnection) -> dict[str, Any]:
    while True:
        message: dict[str, Any] = json.loads(await ws.recv())
        if message["type"] == "inference":
            return message
        if message["type"] == "error":
            raise RuntimeError(f"benchmark frame rejected: {message['message']}")


async def _closed_loop(
    url: str, jpegs: list[bytes], params: dict[str, Any], *, count: int, warmup: int = 5
) -> SessionRun:
    run = SessionRun()
    async with connect(url, max_size=None) as ws:
        await _start(ws, params)
        started = time.perf_counter()
        for index in range(warmup + count):
            sent_at = time.perf_counter()
            await ws.send(jpegs[index % len(jpegs)])
            await _next_result(ws)
            if index >= warmup:
                run.round_trips_ms.append((time.perf_counter() - sent_at) * 1000)
        run.seconds = time.perf_counter() - started
        run.results = run.sent = warmup + count
    return run


async def _open_loop(url: str, jpegs: list[bytes], fps: float, seconds: float) -> SessionRun:
    run = SessionRun()
    async with connect(url, max_size=None) as ws:
        await _start(ws, DETECT_ONLY)
        started = time.perf_counter()

        async def send() -> None:
            while (elapsed := time.perf_counter() - started) < seconds:
                await ws.send(jpegs[run.sent % len(jpegs)])
                run.sent += 1
                await asyncio.sleep(max(0.0, run.sent / fps - elapsed - 1 / fps))

        sender = asyncio.create_task(send())
        while not sender.done() or run.results == 0:
            try:
                message = await asyncio.wait_for(_next_result(ws), timeout=1.0)
            except TimeoutError:
                continue
            data = message["data"]
            run.results += 1
            run.dropped = data["dropped_frames"]
            run.server_latencies_ms.append((time.perf_counter() - started, data["latency_ms"]))
        await sender
        run.seconds = time.perf_counter() - started
    return run


async def _concurrent(
    stack: LocalStack, jpegs: list[bytes], sessions: int, seconds: float
) -> tuple[float, float]:
    """Total results/s of `sessions` closed-loop sessions, and Triton's average batch."""
    metrics_url = stack.triton.address.metrics_url
    before = read_model_counters(metrics_url, "yolo")
    counts = [0] * sessions

    async def one(index: int) -> None:
        async with connect(stack.ws_url, max_size=None) as ws:
            await _start(ws, DETECT_ONLY)
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                await ws.send(jpegs[(index + counts[index]) % len(jpegs)])
                await _next_result(ws)
                counts[index] += 1

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(sessions)))
    elapsed = time.perf_counter() - started
    batch = read_model_counters(metrics_url, "yolo").since(before).average_batch
    return sum(counts) / elapsed, batch


def _stats_ms(values_ms: list[float]) -> LatencyStats:
    return LatencyStats.of([v / 1000 for v in values_ms])


def _windows(
    samples: list[tuple[float, float]], seconds: float, count: int = 5
) -> list[LatencyStats]:
    width = seconds / count
    buckets: list[list[float]] = [[] for _ in range(count)]
    for at, ms in samples:
        buckets[min(count - 1, int(at / width))].append(ms)
    return [_stats_ms(bucket) for bucket in buckets if bucket]


def render_markdown(result: WsBenchResult) -> str:
    """The benchmark as a markdown section for docs/benchmarks.md."""
    r = result
    single_ratio = r.single.p50_ms / r.direct_triton.p50_ms
    overload_ratio = r.overload.p95_ms / r.single.p50_ms
    window_p95 = ", ".join(f"{w.p95_ms:.0f}" for w in r.overload_windows)
    lines = [
        f"### End to end over WebSocket (detector at {r.detector_size} px)",
        "",
        f"Machine: {r.machine}.",
        "",
        r.models.describe(),
        "",
        *([warning, ""] if (warning := r.models.warning()) else []),
        "| scenario | p50 ms | p95 ms | p99 ms | note |",
        "|---|---|---|---|---|",
        f"| direct: Triton gRPC, batch 1 | {_row(r.direct_triton)} | the floor |",
        f"| direct: onnxruntime in-process, batch 1 | {_row(r.direct_onnxruntime)} | no server |",
        f"| 1 session, detection, 1 frame in flight (round trip) | {_row(r.single)} "
        f"| {single_ratio:.2f}x direct Triton p50 (target <= 1.15x) |",
        f"| 1 session, detection + pose + motion (round trip) | {_row(r.single_full)} | |",
        f"| 1 session sending {r.overload_fps:.0f} fps (server latency) | {_row(r.overload)} "
        f"| p95 {overload_ratio:.2f}x the one-frame p50 (target <= 2.5x); "
        f"{r.overload_results_per_s:.1f} results/s, {r.overload_drop_rate:.0%} dropped |",
        "",
        f"Overload p95 per fifth of the run (ms): {window_p95}.",
        "",
        f"Throughput: 1 session {r.one_session_per_s:.1f} results/s; {r.sessions} sessions "
        f"{r.concurrent_per_s:.1f} results/s in total "
        f"({r.concurrent_per_s / r.one_session_per_s:.2f}x), Triton average batch "
        f"{r.concurrent_batch:.1f} (target >= 2).",
    ]
    return "\n".join(lines) + "\n"


def _row(stats: LatencyStats) -> str:
    return f"{stats.p50_ms:.1f} | {stats.p95_ms:.1f} | {stats.p99_ms:.1f}"
