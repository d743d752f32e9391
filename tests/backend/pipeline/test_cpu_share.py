"""Pacing of sessions beyond their CPU share, on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from backend.pipeline.cpu_share import CpuShare, fair_share


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def frames(share: CpuShare, clock: Clock, cpu_s: float, gap_s: float, count: int) -> float:
    """Run `count` frames of `cpu_s` CPU each, `gap_s` apart when not paced; the total pause."""

    async def run() -> None:
        for _ in range(count):
            await share.wait()
            clock.now += cpu_s
            share.charge(cpu_s)
            clock.now += gap_s

    asyncio.run(run())
    return share.delayed_s


def test_a_session_within_its_share_is_never_delayed() -> None:
    clock = Clock()
    share = CpuShare(0.4, clock)
    assert frames(share, clock, cpu_s=0.002, gap_s=0.03, count=100) == 0.0


def test_a_session_beyond_its_share_is_slowed_to_it(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()

    async def sleep(delay: float) -> None:
        clock.now += delay

    monkeypatch.setattr(asyncio, "sleep", sleep)
    share = CpuShare(0.4, clock)
    started = clock.now
    frames(share, clock, cpu_s=0.09, gap_s=0.0, count=50)  # Full HD frames back to back
    used = 50 * 0.09 / (clock.now - started)
    assert used == pytest.approx(0.4, rel=0.05)


def test_every_cpu_stage_of_a_frame_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = Clock()

    async def sleep(delay: float) -> None:
        clock.now += delay

    monkeypatch.setattr(asyncio, "sleep", sleep)
    share = CpuShare(0.5, clock)

    async def two_frames() -> None:
        await share.wait()
        share.charge(0.05)  # decode
        share.charge(0.05)  # motion
        await share.wait()

    asyncio.run(two_frames())
    assert share.delayed_s == pytest.approx(0.2)


def test_the_fair_share_is_a_quarter_of_an_even_split() -> None:
    assert fair_share(4, cpu_count=2) == pytest.approx(0.125)
    assert fair_share(4, cpu_count=4) == pytest.approx(0.25)
