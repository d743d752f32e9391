"""Runs a session's OCR jobs on a shared worker pool, off the event loop.

Detection results never wait for OCR: a job's outcome is picked up by a later frame. A
session has at most one job at a time, and sessions share one small pool (e.g. one worker),
so OCR cannot take over the CPU however many sessions there are.
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from backend.ocr.engine import OcrText

logger = logging.getLogger(__name__)


class TextReader(Protocol):
    """What the scheduler needs from an engine; `OcrEngine` is the real one."""

    def read(self, image_bgr: NDArray[np.uint8]) -> list[OcrText]: ...


@dataclass(frozen=True)
class OcrOutcome:
    """A finished job: the text found (empty on error), why it ran and on which frame."""

    texts: list[OcrText]
    reason: str
    frame_idx: int
    duration_ms: float  # time in `read`, not waiting for a free worker
    error: str | None


class OcrScheduler:
    """One session's OCR: submit a frame, take the outcome from a later frame.

    Every method is meant for the session's event-loop thread and none of them blocks.
    """

    def __init__(self, engine: TextReader, executor: Executor) -> None:
        """`executor` is the process-wide OCR pool; the scheduler never shuts it down."""
        self._engine = engine
        self._executor = executor
        self._job: Future[OcrOutcome] | None = None
        self._closed = False

    @property
    def busy(self) -> bool:
        """A job is waiting, running, or finished with its outcome not yet taken."""
        return self._job is not None

    def submit(self, image_bgr: NDArray[np.uint8], reason: str, frame_idx: int) -> bool:
        """Start reading a copy of the image; False (and nothing done) if busy or closed."""
        if self._closed or self._job is not None:
            return False
        self._job = self._executor.submit(self._run, image_bgr.copy(), reason, frame_idx)
        return True

    def take_result(self) -> OcrOutcome | None:
        """The finished job's outcome, exactly once; None while running or when idle."""
        if self._job is None or not self._job.done():
            return None
        job, self._job = self._job, None
        return job.result()

    async def aclose(self) -> None:
        """Drop a job still waiting for a worker, or wait for the running one to end.

        The concurrent future is kept rather than `loop.run_in_executor`'s wrapper, because
        cancelling that wrapper abandons a running job instead of letting us await it.
        """
        self._closed = True
        job, self._job = self._job, None
        if job is not None and not job.cancel():
            await asyncio.wrap_future(job)

    def _run(self, image_bgr: NDArray[np.uint8], reason: str, frame_idx: int) -> OcrOutcome:
        started = time.perf_counter()
        try:
            texts, error = self._engine.read(image_bgr), None
        except Exception as exc:
            logger.warning("OCR failed on frame %d", frame_idx, exc_info=True)
            texts, error = [], f"{type(exc).__name__}: {exc}"
        duration_ms = (time.perf_counter() - started) * 1000
        return OcrOutcome(texts, reason, frame_idx, duration_ms, error)
