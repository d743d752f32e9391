"""The admission gate: a slot limit, first come first served, nothing lost on cancel."""

from __future__ import annotations

import asyncio

import pytest

from backend.session.admission import AdmissionGate, AdmissionTimeoutError
from backend.session.frame_queue import LatestFrameQueue, QueuedFrame


async def no_update(position: int) -> None:
    return None


def test_waiters_are_admitted_in_arrival_order() -> None:
    async def scenario() -> list[str]:
        gate = AdmissionGate(1)
        await gate.acquire(no_update, max_wait_s=1, update_s=0.05)
        admitted: list[str] = []

        async def session(name: str) -> None:
            await gate.acquire(no_update, max_wait_s=5, update_s=0.05)
            admitted.append(name)

        waiters = [asyncio.create_task(session(name)) for name in "abc"]
        await asyncio.sleep(0.05)
        assert gate.waiting == 3
        for _ in "abc":
            gate.release()
            await asyncio.sleep(0.01)
        await asyncio.gather(*waiters)
        assert gate.active == 1 and gate.waiting == 0
        return admitted

    assert asyncio.run(scenario()) == ["a", "b", "c"]


def test_positions_are_reported_and_the_wait_is_bounded() -> None:
    async def scenario() -> list[int]:
        gate = AdmissionGate(1)
        await gate.acquire(no_update, max_wait_s=1, update_s=0.05)
        positions: list[int] = []

        async def record(position: int) -> None:
            positions.append(position)

        with pytest.raises(AdmissionTimeoutError):
            await gate.acquire(record, max_wait_s=0.2, update_s=0.05)
        assert gate.waiting == 0 and gate.active == 1
        return positions

    positions = asyncio.run(scenario())
    assert len(positions) >= 3 and set(positions) == {1}


def test_a_cancelled_waiter_never_holds_a_slot() -> None:
    async def scenario() -> AdmissionGate:
        gate = AdmissionGate(1)
        await gate.acquire(no_update, max_wait_s=1, update_s=0.05)
        waiter = asyncio.create_task(gate.acquire(no_update, max_wait_s=5, update_s=0.05))
        await asyncio.sleep(0.02)
        gate.release()  # hands the slot to the waiter...
        waiter.cancel()  # ...which leaves before it runs again
        with pytest.raises(asyncio.CancelledError):
            await waiter
        return gate

    gate = asyncio.run(scenario())
    assert gate.active == 0 and gate.waiting == 0


def test_latest_frame_queue_drops_the_oldest() -> None:
    async def scenario() -> tuple[bytes, int, int]:
        queue = LatestFrameQueue(maxsize=1)
        assert queue.put(QueuedFrame(b"1", 0.0)) is False
        assert queue.put(QueuedFrame(b"2", 0.1)) is True
        assert queue.put(QueuedFrame(b"3", 0.2)) is True
        frame = await queue.get()
        queue.put(QueuedFrame(b"4", 0.3))
        return frame.data, queue.dropped, queue.clear()

    assert asyncio.run(scenario()) == (b"3", 2, 1)
