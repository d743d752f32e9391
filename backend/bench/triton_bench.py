"""Triton on CPU next to onnxruntime in-process: start-up, latency and batching throughput.

Everything is measured in one run on one machine, one side at a time (the server idles while
onnxruntime runs), so the ratios compare like with like.
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort
import tritonclient.grpc.aio as grpcclient
from numpy.typing import NDArray

from backend.bench.latency import LatencyStats, time_async_calls, time_calls
from backend.bench.machine import describe_machine
from backend.model_prep.manifest import Manifest, load_manifest
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from backend.triton_server.metrics import read_model_counters
from backend.triton_server.repository import render_repository


@dataclass(frozen=True)
class LatencyRow:
    model: str
    batch: int
    triton: LatencyStats
    onnxruntime: LatencyStats

    @property
    def ratio(self) -> float:
        return self.triton.p50_ms / self.onnxruntime.p50_ms


@dataclass(frozen=True)
class ThroughputRow:
    model: str
    concurrency: int
    triton_per_s: float
    onnxruntime_per_s: float
    average_batch: float


@dataclass(frozen=True)
class TritonBenchResult:
    machine: str
    models: list[str]
    ready_s: list[float]
    latency: list[LatencyRow]
    throughput: list[ThroughputRow]


def run_triton_bench(
    models_dir: Path, *, repeats: int = 50, starts: int = 3, concurrency: int = 8
) -> TritonBenchResult:
    """Measure start-to-ready `starts` times, then latency and throughput per model."""
    manifest = load_manifest(models_dir)
    with tempfile.TemporaryDirectory(prefix="cvstack-bench-") as tmp:
        repository = Path(tmp) / "repository"
        names = render_repository(manifest, models_dir, repository, "cpu")
        ready_s: list[float] = []
        for attempt in range(starts):
            server = LocalTritonServer(
                repository, names, Path(tmp) / "work", ServerAddress.on_free_ports()
            )
            ready_s.append(server.start())
            if attempt < starts - 1:
                server.stop()
        try:
            latency, throughput = asyncio.run(
                _measure(
                    server,
                    manifest,
                    models_dir=models_dir,
                    names=names,
                    repeats=repeats,
                    concurrency=concurrency,
                )
            )
        finally:
            server.stop()
    return TritonBenchResult(describe_machine(), names, ready_s, latency, throughput)


async def _measure(
    server: LocalTritonServer,
    manifest: Manifest,
    *,
    models_dir: Path,
    names: list[str],
    repeats: int,
    concurrency: int,
) -> tuple[list[LatencyRow], list[ThroughputRow]]:
    client = grpcclient.InferenceServerClient(server.address.grpc_url)
    latency: list[LatencyRow] = []
    throughput: list[ThroughputRow] = []
    try:
        for name in names:
            entry = manifest.entry(name)
            session = ort.InferenceSession(
                str(models_dir / entry.file), providers=["CPUExecutionProvider"]
            )
            side = entry.input_size or entry.inputs[0].dims[-1]
            for batch in (1, 8):
                images = np.random.default_rng(batch).integers(
                    0, 256, (batch, 3, side, side), np.uint8
                )
                runs = max(5, repeats // batch)
                triton = await time_async_calls(partial(_infer, client, name, images), runs, 3)
                local = time_calls(partial(session.run, None, {"images": images}), runs, 3)
                latency.append(LatencyRow(name, batch, triton, local))
            single = np.random.default_rng(0).integers(0, 256, (1, 3, side, side), np.uint8)
            throughput.append(
                await _throughput(
                    client,
                    server,
                    session=session,
                    name=name,
                    image=single,
                    repeats=repeats,
                    concurrency=concurrency,
                )
            )
    finally:
        await client.close()
    return latency, throughput


async def _throughput(
    client: grpcclient.InferenceServerClient,
    server: LocalTritonServer,
    *,
    session: ort.InferenceSession,
    name: str,
    image: NDArray[np.uint8],
    repeats: int,
    concurrency: int,
) -> ThroughputRow:
    per_worker = max(2, repeats // concurrency)

    async def worker() -> None:
        for _ in range(per_worker):
            await _infer(client, name, image)

    before = read_model_counters(server.address.metrics_url, name)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    triton_per_s = concurrency * per_worker / (time.perf_counter() - started)
    counters = read_model_counters(server.address.metrics_url, name).since(before)
    local = time_calls(partial(session.run, None, {"images": image}), repeats, 3)
    return ThroughputRow(
        name, concurrency, triton_per_s, 1000.0 / local.p50_ms, counters.average_batch
    )


async def _infer(
    client: grpcclient.InferenceServerClient, name: str, images: NDArray[np.uint8]
) -> None:
    request = grpcclient.InferInput("images", list(images.shape), "UINT8")
    request.set_data_from_numpy(images)
    await client.infer(name, [request])


def render_markdown(result: TritonBenchResult) -> str:
    """The benchmark as a markdown section for docs/benchmarks.md."""
    ready = result.ready_s
    lines = [
        "### Triton on CPU vs onnxruntime in-process",
        "",
        f"Machine: {result.machine}.",
        "",
        f"Start to ready with {', '.join(result.models)}: median {statistics.median(ready):.2f} s, "
        f"max {max(ready):.2f} s over {len(ready)} starts.",
        "",
        "| model | batch | Triton p50 ms | Triton p99 ms | onnxruntime p50 ms "
        "| onnxruntime p99 ms | Triton / onnxruntime (p50) |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.model} | {r.batch} | {r.triton.p50_ms:.1f} | {r.triton.p99_ms:.1f} "
        f"| {r.onnxruntime.p50_ms:.1f} | {r.onnxruntime.p99_ms:.1f} | {r.ratio:.2f} |"
        for r in result.latency
    ]
    lines += [
        "",
        "| model | concurrent batch-1 clients | Triton images/s | onnxruntime images/s "
        "(sequential batch 1) | ratio | Triton average batch |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {t.model} | {t.concurrency} | {t.triton_per_s:.1f} | {t.onnxruntime_per_s:.1f} "
        f"| {t.triton_per_s / t.onnxruntime_per_s:.2f} | {t.average_batch:.1f} |"
        for t in result.throughput
    ]
    return "\n".join(lines) + "\n"
