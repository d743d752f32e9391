"""The per-frame multimodal pipeline of one session: decode, detect, pose, motion, OCR.

Detection, pose and motion run concurrently (Triton over async gRPC, motion in a worker
thread); CPU work never runs on the event loop. OCR is event-triggered and runs beside the
pipeline: its result arrives with a later frame and never delays this one.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from backend.core.config import Settings
from backend.inference.triton_models import StageError, TritonModels
from backend.model_prep.manifest import ModelEntry
from backend.observability.metrics import BackendMetrics
from backend.ocr.engine import OcrEngine
from backend.ocr.scheduler import OcrScheduler
from backend.ocr.trigger import OcrTrigger, OcrTriggerConfig
from backend.pipeline.cpu_share import CpuShare, fair_share
from backend.pipeline.jpeg import FrameLimits, decode_jpeg
from backend.pipeline.letterbox import Letterbox, letterbox
from backend.pipeline.motion import FlowField, MotionEstimator
from backend.pipeline.tracker import ByteTracker
from backend.pipeline.yolo_decode import Detections, decode_yolo
from backend.protocol.client_messages import InitParams
from backend.protocol.error_codes import ErrorCode
from backend.protocol.server_messages import (
    FlowResult,
    OcrInfo,
    OcrItem,
    PoseResult,
    YoloResult,
)

log = logging.getLogger(__name__)
T = TypeVar("T")


class PipelineRuntime(Protocol):
    """What the pipeline uses of the process's shared resources (the session's `Runtime`)."""

    @property
    def settings(self) -> Settings: ...
    @property
    def triton(self) -> TritonModels: ...
    @property
    def cpu_pool(self) -> Executor: ...
    @property
    def decode_pool(self) -> Executor: ...
    @property
    def ocr_pool(self) -> Executor: ...
    @property
    def metrics(self) -> BackendMetrics: ...
    def ocr(self) -> OcrEngine | None: ...
    def ocr_problem(self) -> str | None: ...


@dataclass(frozen=True)
class FrameResult:
    """What one frame produced; the session adds fps, latency and drop counts."""

    width: int
    height: int
    yolo: YoloResult | None
    pose: PoseResult | None
    ocr: list[OcrItem] | None
    ocr_info: OcrInfo | None
    flow: FlowResult | None
    stage_ms: dict[str, float]
    errors: dict[str, str]


class SessionPipeline:
    """Per-session state (tracker, motion history, OCR trigger) around the shared runtime."""

    def __init__(self, runtime: PipelineRuntime, params: InitParams) -> None:
        settings = runtime.settings
        self.runtime = runtime
        self.params = params
        self.detector = runtime.triton.models[settings.detector_model]
        self.pose_model = runtime.triton.models[settings.pose_model]
        self.limits = FrameLimits(settings.max_frame_bytes, settings.max_frame_pixels)
        self.tracker = ByteTracker()
        self.cpu_share = CpuShare(settings.session_cpu_share or fair_share(settings.max_sessions))
        self.motion = (
            MotionEstimator(settings.motion_method, step=settings.flow_step)
            if params.use_motion
            else None
        )
        self.ocr_trigger = OcrTrigger(OcrTriggerConfig(min_interval_s=settings.ocr_min_interval_s))
        engine = runtime.ocr()
        self.ocr = OcrScheduler(engine, runtime.ocr_pool) if params.use_ocr and engine else None

    async def process(self, jpeg: bytes, frame_idx: int, *, ocr_requested: bool) -> FrameResult:
        """Run every enabled stage on one frame; a failed stage is reported, not raised.

        Raises `FrameRejectedError` when the bytes are not an acceptable JPEG.
        """
        stage_ms: dict[str, float] = {}
        await self.cpu_share.wait()
        # Each session has at most one frame in flight and the decode pool one worker per
        # session slot, so a session's costly frames never queue another session's decode.
        started = time.perf_counter()
        try:
            image, prepared = await self._timed(
                "decode", stage_ms, self._prepare, jpeg, pool=self.runtime.decode_pool
            )
        finally:
            self.cpu_share.charge(time.perf_counter() - started)
        height, width = image.shape[:2]
        jobs: dict[str, Coroutine[Any, Any, Any]] = {}
        if self.params.use_yolo:
            jobs["yolo"] = self._detect(prepared[self._size(self.detector)], stage_ms)
        if self.params.use_yolo_pose:
            jobs["pose"] = self._pose(prepared[self._size(self.pose_model)], stage_ms)
        if self.motion is not None:
            jobs["motion"] = self._timed("motion", stage_ms, self.motion.update, image)
        outcomes = dict(
            zip(jobs, await asyncio.gather(*jobs.values(), return_exceptions=True), strict=True)
        )
        errors: dict[str, str] = {}
        for stage, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                errors[stage] = _describe(stage, outcome)
                self.runtime.metrics.errors.labels(_error_kind(outcome)).inc()
            else:
                self.runtime.metrics.frames.labels(stage).inc()
        self.cpu_share.charge(stage_ms.get("motion", 0.0) / 1000)
        yolo = _ok(outcomes.get("yolo"))
        flow: FlowField | None = _ok(outcomes.get("motion"))
        ocr, ocr_info = self._ocr_step(
            image, frame_idx, yolo=yolo, flow=flow, requested=ocr_requested, errors=errors
        )
        return FrameResult(
            width=width,
            height=height,
            yolo=yolo,
            pose=_ok(outcomes.get("pose")),
            ocr=ocr,
            ocr_info=ocr_info,
            flow=_flow_json(flow) if flow is not None else None,
            stage_ms=stage_ms,
            errors=errors,
        )

    def _prepare(
        self, jpeg: bytes
    ) -> tuple[NDArray[np.uint8], dict[int, tuple[NDArray[np.uint8], Letterbox]]]:
        """Decode and letterbox in one worker-thread hop (one per distinct model input size)."""
        image = decode_jpeg(jpeg, self.limits)
        sizes = set()
        if self.params.use_yolo:
            sizes.add(self._size(self.detector))
        if self.params.use_yolo_pose:
            sizes.add(self._size(self.pose_model))
        return image, {size: letterbox(image, size) for size in sizes}

    async def aclose(self) -> None:
        if self.ocr is not None:
            await self.ocr.aclose()

    async def _detect(
        self, prepared: tuple[NDArray[np.uint8], Letterbox], stage_ms: dict[str, float]
    ) -> YoloResult | None:
        tensor, box = prepared
        started = time.perf_counter()
        output = await self.runtime.triton.infer(self.detector.name, tensor)
        detections, track_ids, velocities = await self._run(self._decode_and_track, output, box)
        self._record("yolo", stage_ms, started)
        if not len(detections):
            return None
        names = self.detector.class_names
        return {
            "boxes": _round(detections.boxes, 1),
            "scores": _round(detections.scores, 3),
            "classes": detections.classes.tolist(),
            "labels": [names[c] if 0 <= c < len(names) else str(c) for c in detections.classes],
            "track_ids": track_ids,
            "velocities": velocities,
        }

    def _decode_and_track(
        self, output: NDArray[np.float32], box: Letterbox
    ) -> tuple[Detections, list[int], list[list[float]]]:
        detections = self._decode(self.detector, output, box)
        ids = self.tracker.update(detections)
        speeds = self.tracker.velocities()
        velocities = [[round(v, 2) for v in speeds.get(int(i), (0.0, 0.0))] for i in ids]
        return detections, ids.tolist(), velocities

    async def _pose(
        self, prepared: tuple[NDArray[np.uint8], Letterbox], stage_ms: dict[str, float]
    ) -> PoseResult | None:
        tensor, box = prepared
        started = time.perf_counter()
        output = await self.runtime.triton.infer(self.pose_model.name, tensor)
        people = await self._run(self._decode, self.pose_model, output, box)
        self._record("pose", stage_ms, started)
        if not len(people) or people.keypoints is None:
            return None
        return {
            "boxes": _round(people.boxes, 1),
            "scores": _round(people.scores, 3),
            "keypoints": np.round(people.keypoints, 2).tolist(),
        }

    def _decode(self, entry: ModelEntry, output: NDArray[np.float32], box: Letterbox) -> Detections:
        settings = self.runtime.settings
        return decode_yolo(
            output,
            output_format=entry.output_format,
            num_classes=len(entry.class_names),
            letterbox=box,
            conf_threshold=settings.conf_threshold,
            iou_threshold=settings.iou_threshold,
            max_detections=settings.max_detections,
            keypoints=entry.keypoints,
        )

    def _ocr_step(
        self,
        image: NDArray[np.uint8],
        frame_idx: int,
        *,
        yolo: YoloResult | None,
        flow: FlowField | None,
        requested: bool,
        errors: dict[str, str],
    ) -> tuple[list[OcrItem] | None, OcrInfo | None]:
        if not self.params.use_ocr:
            return None, None
        if self.ocr is None:
            errors["ocr"] = f"ocr_unavailable: {self.runtime.ocr_problem() or 'not started'}"
            return None, None
        labels = (
            {t: label for t, label in zip(yolo["track_ids"], yolo["labels"], strict=True) if t >= 0}
            if yolo
            else {}
        )
        outcome = self.ocr.take_result()
        reason = self.ocr_trigger.observe(
            now=time.monotonic(),
            labels_by_track=labels,
            motion_magnitude=flow.mean_magnitude if flow else None,
            client_requested=requested,
            ocr_busy=self.ocr.busy,
        )
        if reason is not None:
            self.ocr.submit(image, reason, frame_idx)
        if outcome is None:
            return None, None
        self.runtime.metrics.frames.labels("ocr").inc()
        self.runtime.metrics.stage_latency.labels("ocr").observe(outcome.duration_ms / 1000)
        if outcome.error:
            errors["ocr"] = f"ocr_failed: {outcome.error}"
            self.runtime.metrics.errors.labels("ocr_failed").inc()
        info: OcrInfo = {
            "reason": outcome.reason,
            "frame_idx": outcome.frame_idx,
            "duration_ms": round(outcome.duration_ms, 1),
        }
        texts: list[OcrItem] = [
            {"box": [round(v, 1) for v in t.box], "text": t.text, "score": round(t.score, 3)}
            for t in outcome.texts
        ]
        return texts or None, info

    async def _timed(
        self,
        stage: str,
        stage_ms: dict[str, float],
        function: Callable[..., T],
        *args: Any,
        pool: Executor | None = None,
    ) -> T:
        started = time.perf_counter()
        result = await self._run(function, *args, pool=pool)
        self._record(stage, stage_ms, started)
        return result

    def _record(self, stage: str, stage_ms: dict[str, float], started: float) -> None:
        """The stage's time since `started`, in the result and in the latency histogram."""
        stage_ms[stage] = _ms_since(started)
        self.runtime.metrics.stage_latency.labels(stage).observe(stage_ms[stage] / 1000)

    async def _run(self, function: Callable[..., T], *args: Any, pool: Executor | None = None) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            pool or self.runtime.cpu_pool, function, *args
        )

    @staticmethod
    def _size(entry: ModelEntry) -> int:
        if entry.input_size is None:
            raise StageError("model_config", f"model '{entry.name}' has no square input size")
        return entry.input_size


def _ok(outcome: object) -> Any:
    return None if isinstance(outcome, BaseException) else outcome


def _describe(stage: str, error: BaseException) -> str:
    if isinstance(error, StageError):
        return f"{error.code}: {error}"
    log.exception("stage %s failed", stage, exc_info=error)
    return f"internal_error: {type(error).__name__}"


def _error_kind(error: BaseException) -> str:
    return error.code if isinstance(error, StageError) else ErrorCode.INTERNAL_ERROR


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _round(values: NDArray[Any], digits: int) -> Any:
    return np.round(values.astype(np.float64), digits).tolist()


def _flow_json(flow: FlowField) -> FlowResult:
    return cast(FlowResult, dataclasses.asdict(flow))
