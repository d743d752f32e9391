"""Resources shared by every session of one backend process, created at start-up."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import httpx

from backend.core.config import Settings
from backend.inference.triton_models import TritonModels
from backend.model_prep.manifest import Manifest, ManifestError, load_manifest
from backend.observability.metrics import BackendMetrics
from backend.ocr.service import OcrService
from backend.pipeline.config import PipelineConfig
from backend.pipeline.multimodal import PipelineParts
from backend.protocol.server_messages import ModelsInfo
from backend.security.live_tokens import LiveTokens
from backend.session.admission import AdmissionGate
from backend.session.drain import DrainSignal
from backend.session.model_sources import describe_models
from backend.summaries.backlog import remove_orphans
from backend.summaries.chat_model import build_chat_model
from backend.triton_server.metrics import ModelCounters, read_model_counters

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

log = logging.getLogger(__name__)
BATCH_POLL_S = 5.0


class ReplaceableSession(Protocol):
    """A live session that a newer connection with the same session token takes over from."""

    async def replaced(self) -> None: ...


@dataclass
class Runtime:
    """The shared Triton client, thread pools, OCR, LLM, admission gate, drain and metrics.

    `pipeline` is what each session's `SessionPipeline` is built from: the detectors over
    this Triton client, the pools, the metrics, the pipeline's config and the OCR service.
    """

    settings: Settings
    manifest: Manifest
    models: ModelsInfo  # what the detection and pose models are, for `/ready` and the page
    triton: TritonModels
    cpu_pool: ThreadPoolExecutor
    decode_pool: ThreadPoolExecutor  # one worker per session slot: no session waits for a decoder
    ocr: OcrService
    pipeline: PipelineParts
    gate: AdmissionGate
    drain: DrainSignal
    live_tokens: LiveTokens[ReplaceableSession]
    metrics: BackendMetrics
    chat_model: BaseChatModel | None  # None: summaries come from the template
    llm_http: httpx.AsyncClient  # the OpenAI-compatible provider's connections
    summary_pool: ThreadPoolExecutor  # backlog file I/O of every session, off the event loop
    loop: asyncio.AbstractEventLoop
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def start(cls, settings: Settings) -> Runtime:
        """Build the runtime inside the running event loop; fails with the fix on bad models."""
        manifest = load_manifest(settings.models_dir)
        models = {
            name: manifest.entry(name) for name in (settings.detector_model, settings.pose_model)
        }
        for name, entry in models.items():
            if not entry.served_by_triton:
                raise ManifestError(f"model '{name}' is a {entry.task} model, not detection/pose")
        orphans = remove_orphans(settings.summary_dir)
        if orphans:
            log.info("removed %d summary backlog files left by stopped processes", orphans)
        triton = TritonModels(settings.triton_grpc_url, settings.triton_timeout_s, models)
        cpu_pool = ThreadPoolExecutor(
            max_workers=max(2, os.cpu_count() or 2), thread_name_prefix="cvstack-cpu"
        )
        decode_pool = ThreadPoolExecutor(
            max_workers=settings.max_sessions, thread_name_prefix="cvstack-decode"
        )
        ocr = OcrService.start(manifest, settings.models_dir, max_side=settings.ocr_max_side)
        metrics = BackendMetrics()
        drain = DrainSignal(settings.drain_file)
        metrics.draining.set_function(lambda: float(drain.draining()))
        llm_http = httpx.AsyncClient()
        runtime = cls(
            settings=settings,
            manifest=manifest,
            models=describe_models(manifest, settings.detector_model, settings.pose_model),
            triton=triton,
            cpu_pool=cpu_pool,
            decode_pool=decode_pool,
            ocr=ocr,
            pipeline=PipelineParts(
                detector=triton.detector(settings.detector_model),
                pose=triton.detector(settings.pose_model),
                config=PipelineConfig.from_settings(settings),
                cpu_pool=cpu_pool,
                decode_pool=decode_pool,
                metrics=metrics,
                ocr=ocr,
            ),
            gate=AdmissionGate(settings.max_sessions),
            drain=drain,
            live_tokens=LiveTokens(settings.sessions_per_token),
            metrics=metrics,
            chat_model=build_chat_model(settings, llm_http),
            llm_http=llm_http,
            summary_pool=ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvstack-summaries"),
            loop=asyncio.get_running_loop(),
        )
        if settings.triton_metrics_url:
            runtime._tasks.append(asyncio.create_task(runtime._poll_batch_sizes()))
        return runtime

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.triton.close()
        await self.llm_http.aclose()
        self.cpu_pool.shutdown(wait=True, cancel_futures=True)
        self.decode_pool.shutdown(wait=True, cancel_futures=True)
        self.ocr.close()
        self.summary_pool.shutdown(wait=True)

    async def _poll_batch_sizes(self) -> None:
        """Publish Triton's average batch size per model since the previous poll."""
        url = self.settings.triton_metrics_url
        assert url is not None
        previous: dict[str, ModelCounters] = {}
        while True:
            for model in self.triton.models:
                try:
                    counters = await asyncio.to_thread(read_model_counters, url, model, 2.0)
                except OSError:
                    continue
                if model in previous:
                    delta = counters.since(previous[model])
                    if delta.executions:
                        self.metrics.triton_batch_size.labels(model).set(delta.average_batch)
                previous[model] = counters
            await asyncio.sleep(BATCH_POLL_S)
