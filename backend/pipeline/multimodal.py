"""The per-frame multimodal pipeline of one session: decode, detect, pose, motion, OCR.

Detection, pose and motion run concurrently (the detectors' `infer`, motion in a worker
thread); CPU work never runs on the event loop. OCR is event-triggered and runs beside the
pipeline: its result arrives with a later frame and never delays this one.

The pipeline sees only its collaborators (`PipelineParts`): the two detectors, the worker
pools, the metrics, its config and the OCR service. The service builds them over Triton at
start-up; tests and benchmarks build them over onnxruntime, with no server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np
from numpy.typing import NDArray

from backend.inference.detector import Detector
from backend.observability.metrics import BackendMetrics
from backend.ocr.scheduler import OcrOutcome
from backend.ocr.service import OcrService
from backend.ocr.trigger import OcrTrigger, OcrTriggerConfig
from backend.pipeline.config import PipelineConfig
from backend.pipeline.cpu_share import CpuShare
from backend.pipeline.jpeg import decode_jpeg
from backend.pipeline.letterbox import Letterbox, letterbox
from backend.pipeline.motion import FlowField, MotionEstimator
from backend.pipeline.tracker import ByteTracker
from backend.pipeline.yolo_decode import Detections, decode_yolo
from backend.protocol.client_messages import InitParams
from backend.protocol.error_codes import ErrorCode, StageError
from backend.protocol.server_messages import (
    FlowResult,
    FrameOutputs,
    OcrInfo,
    OcrItem,
    PoseResult,
    YoloResult,
    without_paths,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
Letterboxed = tuple[NDArray[np.uint8], Letterbox]  # a model's input tensor, how the frame fits


@dataclass(frozen=True)
class PipelineParts:
    """What every session's pipeline shares, built once when the backend starts."""

    detector: Detector
    pose: Detector
    config: PipelineConfig
    cpu_pool: Executor  # output decoding, tracking and motion
    decode_pool: Executor  # JPEG decoding: one worker per session slot, so none waits
    metrics: BackendMetrics
    ocr: OcrService | None = None  # None: this process runs no OCR


@dataclass(frozen=True)
class PreparedFrame:
    """A decoded frame and its model inputs, one per distinct model input size."""

    image: NDArray[np.uint8]
    inputs: dict[int, Letterboxed]


class SessionPipeline:
    """Per-session state (tracker, motion history, OCR trigger) around the shared parts."""

    def __init__(self, parts: PipelineParts, params: InitParams) -> None:
        config = parts.config
        self.parts = parts
        self.params = params
        self.tracker = ByteTracker(config.tracker)
        self.cpu_share = CpuShare(config.cpu_share)
        self.motion = (
            MotionEstimator(config.motion_method, step=config.flow_step)
            if params.use_motion
            else None
        )
        self.ocr_trigger = OcrTrigger(OcrTriggerConfig(min_interval_s=config.ocr_min_interval_s))
        self.ocr = parts.ocr.scheduler() if params.use_ocr and parts.ocr else None

    async def process(self, jpeg: bytes, frame_idx: int, *, ocr_requested: bool) -> FrameOutputs:
        """Run every enabled stage on one frame; a failed stage is reported, not raised.

        Raises `FrameRejectedError` when the bytes are not an acceptable JPEG.
        """
        stage_ms: dict[str, float] = {}
        await self.cpu_share.wait()
        # Each session has at most one frame in flight and the decode pool one worker per
        # session slot, so a session's costly frames never queue another session's decode.
        started = time.perf_counter()
        try:
            frame = await self._timed(
                "decode", stage_ms, self.prepare, jpeg, pool=self.parts.decode_pool
            )
        finally:
            self.cpu_share.charge(time.perf_counter() - started)
        outputs = await self.process_prepared(
            frame, frame_idx, ocr_requested=ocr_requested, stage_ms=stage_ms
        )
        self.cpu_share.charge(outputs["stage_ms"].get("motion", 0.0) / 1000)
        return outputs

    def prepare(self, jpeg: bytes) -> PreparedFrame:
        """Decode and letterbox in one worker-thread hop (raises `FrameRejectedError`)."""
        image = decode_jpeg(jpeg, self.parts.config.frame_limits)
        sizes = {model.contract.input_size for model in self._enabled_models()}
        return PreparedFrame(image, {size: letterbox(image, size) for size in sizes})

    async def process_prepared(
        self,
        frame: PreparedFrame,
        frame_idx: int,
        *,
        ocr_requested: bool = False,
        stage_ms: dict[str, float] | None = None,
    ) -> FrameOutputs:
        """The stages after decoding: what `process` runs once the frame is prepared.

        `stage_ms` holds the times of stages already run (decoding); this frame's are added.
        """
        stage_ms = {} if stage_ms is None else stage_ms
        inputs, parts = frame.inputs, self.parts
        jobs: dict[str, Coroutine[Any, Any, Any]] = {}
        if self.params.use_yolo:
            jobs["yolo"] = self._detect(inputs[parts.detector.contract.input_size], stage_ms)
        if self.params.use_yolo_pose:
            jobs["pose"] = self._pose(inputs[parts.pose.contract.input_size], stage_ms)
        if self.motion is not None:
            jobs["motion"] = self._timed("motion", stage_ms, self.motion.update, frame.image)
        outcomes = dict(
            zip(jobs, await asyncio.gather(*jobs.values(), return_exceptions=True), strict=True)
        )
        metrics = parts.metrics
        errors: dict[str, str] = {}
        for stage, outcome in outcomes.items():
            if isinstance(outcome, BaseException):
                code, message = _describe(stage, outcome)
                errors[stage] = _error_text(code, message)
                metrics.errors.labels(code).inc()
            else:
                metrics.frames.labels(stage).inc()
        yolo = _ok(outcomes.get("yolo"))
        flow: FlowField | None = _ok(outcomes.get("motion"))
        ocr, ocr_info = self._ocr_step(
            frame.image, frame_idx, yolo=yolo, flow=flow, requested=ocr_requested, errors=errors
        )
        height, width = frame.image.shape[:2]
        return {
            "width": width,
            "height": height,
            "yolo": yolo,
            "pose": _ok(outcomes.get("pose")),
            "ocr": ocr,
            "ocr_info": ocr_info,
            "flow": _flow_json(flow) if flow is not None else None,
            "stage_ms": stage_ms,
            "errors": errors,
        }

    async def aclose(self) -> None:
        if self.ocr is not None:
            await self.ocr.aclose()

    def _enabled_models(self) -> list[Detector]:
        enabled = [
            (self.params.use_yolo, self.parts.detector),
            (self.params.use_yolo_pose, self.parts.pose),
        ]
        return [model for on, model in enabled if on]

    async def _detect(self, prepared: Letterboxed, stage_ms: dict[str, float]) -> YoloResult | None:
        tensor, box = prepared
        started = time.perf_counter()
        output = await self.parts.detector.infer(tensor)
        detections, track_ids, velocities = await self._run(self._decode_and_track, output, box)
        self._record("yolo", stage_ms, started)
        if not len(detections):
            return None
        names = self.parts.detector.entry.class_names
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
        detections = self._decode(self.parts.detector, output, box)
        ids = self.tracker.update(detections)
        speeds = self.tracker.velocities()
        velocities = [[round(v, 2) for v in speeds.get(int(i), (0.0, 0.0))] for i in ids]
        return detections, ids.tolist(), velocities

    async def _pose(self, prepared: Letterboxed, stage_ms: dict[str, float]) -> PoseResult | None:
        tensor, box = prepared
        started = time.perf_counter()
        model = self.parts.pose
        output = await model.infer(tensor)
        people = await self._run(self._decode, model, output, box)
        self._record("pose", stage_ms, started)
        if not len(people) or people.keypoints is None:
            return None
        return {
            "boxes": _round(people.boxes, 1),
            "scores": _round(people.scores, 3),
            "keypoints": np.round(people.keypoints, 2).tolist(),
        }

    def _decode(self, model: Detector, output: NDArray[np.float32], box: Letterbox) -> Detections:
        contract, config = model.contract, self.parts.config
        return decode_yolo(
            output,
            output_format=contract.output_format,
            num_classes=contract.num_classes,
            letterbox=box,
            conf_threshold=config.conf_threshold,
            iou_threshold=config.iou_threshold,
            max_detections=config.max_detections,
            keypoints=contract.keypoints,
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
            errors["ocr"] = _error_text(ErrorCode.OCR_UNAVAILABLE, self._ocr_problem())
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
        metrics = self.parts.metrics
        metrics.frames.labels("ocr").inc()
        metrics.stage_latency.labels("ocr").observe(outcome.duration_ms / 1000)
        if outcome.error:
            errors["ocr"] = _error_text(ErrorCode.OCR_FAILED, outcome.error)
            metrics.errors.labels(ErrorCode.OCR_FAILED).inc()
        return _ocr_items(outcome) or None, {
            "reason": outcome.reason,
            "frame_idx": outcome.frame_idx,
            "duration_ms": round(outcome.duration_ms, 1),
        }

    def _ocr_problem(self) -> str:
        if self.parts.ocr is None:
            return "this server runs no OCR"
        return self.parts.ocr.problem() or (
            "the OCR engine became ready after this run started; send 'stop' and 'start' to use it"
        )

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
        self.parts.metrics.stage_latency.labels(stage).observe(stage_ms[stage] / 1000)

    async def _run(self, function: Callable[..., T], *args: Any, pool: Executor | None = None) -> T:
        return await asyncio.get_running_loop().run_in_executor(
            pool or self.parts.cpu_pool, function, *args
        )


def _ok(outcome: object) -> Any:
    return None if isinstance(outcome, BaseException) else outcome


def _describe(stage: str, error: BaseException) -> tuple[ErrorCode, str]:
    """The code and message a failed stage reports; anything but a `StageError` is a bug."""
    if isinstance(error, StageError):
        return error.code, str(error)
    log.exception("stage %s failed", stage, exc_info=error)
    return ErrorCode.INTERNAL_ERROR, type(error).__name__


def _error_text(code: ErrorCode, message: str) -> str:
    """A stage's entry in `errors`: "code: message", without server file paths."""
    return without_paths(f"{code}: {message}")


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _round(values: NDArray[Any], digits: int) -> Any:
    return np.round(values.astype(np.float64), digits).tolist()


def _ocr_items(outcome: OcrOutcome) -> list[OcrItem]:
    return [
        {"box": [round(v, 1) for v in t.box], "text": t.text, "score": round(t.score, 3)}
        for t in outcome.texts
    ]


def _flow_json(flow: FlowField) -> FlowResult:
    return cast(FlowResult, dataclasses.asdict(flow))
