"""OcrScheduler: OCR off the event loop, one job per session, outcomes delivered once."""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from backend.ocr.engine import OcrEngine, OcrText
from backend.ocr.scheduler import OcrOutcome, OcrScheduler
from tests.backend.ocr.conftest import RenderText

FOUND = OcrText(box=(1.0, 2.0, 3.0, 4.0), text="FOUND", score=0.9)


class SlowReader:
    """An engine double whose read sleeps like a real OCR run, then returns FOUND or raises."""

    def __init__(self, delay_s: float = 0.0, error: Exception | None = None) -> None:
        self.delay_s = delay_s
        self.error = error
        self.started = threading.Event()
        self.finished = threading.Event()
        self.pixel_sums: list[int] = []

    def read(self, image_bgr: NDArray[np.uint8]) -> list[OcrText]:
        self.started.set()
        time.sleep(self.delay_s)
        self.pixel_sums.append(int(image_bgr.sum()))
        self.finished.set()
        if self.error is not None:
            raise self.error
        return [FOUND]


def frame(value: int = 0) -> NDArray[np.uint8]:
    return np.full((240, 320, 3), value, dtype=np.uint8)


async def wait_for_outcome(scheduler: OcrScheduler, timeout_s: float = 5.0) -> OcrOutcome:
    deadline = time.perf_counter() + timeout_s
    while (outcome := scheduler.take_result()) is None:
        assert time.perf_counter() < deadline, "no OCR outcome in time"
        await asyncio.sleep(0.005)
    return outcome


def test_event_loop_keeps_ticking_while_ocr_runs(ocr_pool: ThreadPoolExecutor) -> None:
    scheduler = OcrScheduler(SlowReader(delay_s=0.5), ocr_pool)

    async def main() -> tuple[float, list[float], OcrOutcome]:
        started = time.perf_counter()
        assert scheduler.submit(frame(), "client_request", 7)
        submit_s = time.perf_counter() - started
        ticks = [time.perf_counter()]
        while (outcome := scheduler.take_result()) is None:
            await asyncio.sleep(0.01)
            ticks.append(time.perf_counter())
        return submit_s, ticks, outcome

    submit_s, ticks, outcome = asyncio.run(main())

    assert submit_s < 0.05
    assert len(ticks) >= 20
    assert max(b - a for a, b in itertools.pairwise(ticks)) < 0.1
    assert outcome.texts == [FOUND]
    assert (outcome.reason, outcome.frame_idx, outcome.error) == ("client_request", 7, None)
    assert outcome.duration_ms >= 450


def test_real_engine_through_the_scheduler(
    bundled_engine: OcrEngine, ocr_pool: ThreadPoolExecutor, render_text: RenderText
) -> None:
    scheduler = OcrScheduler(bundled_engine, ocr_pool)
    image, _ = render_text(320, 240, {"CVSTACK 42": (20, 130)})

    async def main() -> OcrOutcome:
        assert scheduler.submit(image, "motion_settled", 3)
        return await wait_for_outcome(scheduler)

    outcome = asyncio.run(main())

    assert [t.text.replace(" ", "").upper() for t in outcome.texts] == ["CVSTACK42"]
    assert (outcome.reason, outcome.frame_idx, outcome.error) == ("motion_settled", 3, None)


def test_busy_session_coalesces_and_each_outcome_comes_once(
    ocr_pool: ThreadPoolExecutor,
) -> None:
    reader = SlowReader(delay_s=0.2)
    scheduler = OcrScheduler(reader, ocr_pool)

    async def main() -> None:
        assert scheduler.submit(frame(), "client_request", 1)
        assert scheduler.busy
        assert not scheduler.submit(frame(), "new_object:book", 2)
        assert scheduler.take_result() is None
        await asyncio.to_thread(reader.finished.wait, 5.0)
        await asyncio.sleep(0.05)
        assert scheduler.busy  # finished but not taken: still one job's worth of state
        assert not scheduler.submit(frame(), "new_object:book", 3)

        outcome = scheduler.take_result()
        assert outcome is not None and outcome.frame_idx == 1
        assert scheduler.take_result() is None
        assert not scheduler.busy

        assert scheduler.submit(frame(), "motion_settled", 4)
        assert (await wait_for_outcome(scheduler)).frame_idx == 4
        assert scheduler.take_result() is None

    asyncio.run(main())
    assert len(reader.pixel_sums) == 2


def test_engine_errors_become_outcomes(ocr_pool: ThreadPoolExecutor) -> None:
    scheduler = OcrScheduler(SlowReader(error=RuntimeError("model exploded")), ocr_pool)

    async def main() -> OcrOutcome:
        assert scheduler.submit(frame(), "client_request", 5)
        return await wait_for_outcome(scheduler)

    outcome = asyncio.run(main())

    assert outcome.error == "RuntimeError: model exploded"
    assert (outcome.texts, outcome.frame_idx) == ([], 5)
    assert scheduler.submit(frame(), "client_request", 6)


def test_the_job_reads_a_copy_of_the_frame(ocr_pool: ThreadPoolExecutor) -> None:
    reader = SlowReader(delay_s=0.1)
    scheduler = OcrScheduler(reader, ocr_pool)
    image = frame(0)

    async def main() -> None:
        assert scheduler.submit(image, "client_request", 1)
        image[:] = 255  # the caller reuses its buffer for the next frame
        await wait_for_outcome(scheduler)

    asyncio.run(main())
    assert reader.pixel_sums == [0]


def test_aclose_waits_for_the_running_job(ocr_pool: ThreadPoolExecutor) -> None:
    reader = SlowReader(delay_s=0.3)
    scheduler = OcrScheduler(reader, ocr_pool)

    async def main() -> None:
        assert scheduler.submit(frame(), "client_request", 1)
        await asyncio.to_thread(reader.started.wait, 5.0)
        await scheduler.aclose()

    asyncio.run(main())

    assert reader.finished.is_set()
    assert ocr_pool.submit(lambda: "idle").result(timeout=0.05) == "idle"
    assert not scheduler.submit(frame(), "client_request", 2)
    assert scheduler.take_result() is None


def test_aclose_drops_a_job_still_waiting_for_the_pool(ocr_pool: ThreadPoolExecutor) -> None:
    reader = SlowReader()
    scheduler = OcrScheduler(reader, ocr_pool)
    other_session = threading.Event()
    ocr_pool.submit(other_session.wait, 5.0)

    async def main() -> float:
        assert scheduler.submit(frame(), "client_request", 1)
        started = time.perf_counter()
        await scheduler.aclose()
        return time.perf_counter() - started

    close_s = asyncio.run(main())
    other_session.set()

    assert close_s < 0.05
    assert ocr_pool.submit(lambda: "idle").result(timeout=1.0) == "idle"
    assert not reader.started.is_set()
