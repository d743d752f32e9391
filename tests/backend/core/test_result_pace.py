"""The per-session results-per-second cap, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest
from pydantic import ValidationError

from backend.core.config import Settings
from backend.session.result_pace import ResultPace


class Clock:
    """A clock that only moves when the pace sleeps on it."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_starts_are_spaced_by_the_interval_and_the_first_is_immediate() -> None:
    clock = Clock()
    pace = ResultPace(5, clock=clock, sleep=clock.sleep)

    async def run() -> list[float]:
        starts = []
        for work_s in (0.05, 0.3, 0.0):
            await pace.wait()
            pace.started()
            starts.append(clock.now)
            clock.now += work_s  # processing the frame
        return starts

    starts = asyncio.run(run())
    assert starts == pytest.approx([0.0, 0.2, 0.5])
    assert clock.slept == pytest.approx([0.15]), "no wait after work longer than the interval"


def test_zero_means_no_cap() -> None:
    clock = Clock()
    pace = ResultPace(0, clock=clock, sleep=clock.sleep)

    async def run() -> None:
        for _ in range(3):
            await pace.wait()
            pace.started()

    asyncio.run(run())
    assert clock.slept == []


def test_the_setting_is_validated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVSTACK_MAX_RESULTS_PER_S", "15")
    assert Settings().max_results_per_s == 15
    monkeypatch.setenv("CVSTACK_MAX_RESULTS_PER_S", "-1")
    with pytest.raises(ValidationError, match="max_results_per_s"):
        Settings()
    with pytest.raises(ValueError, match="0 \\(no cap\\) or positive"):
        ResultPace(-1)
