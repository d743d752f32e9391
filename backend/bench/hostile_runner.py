"""The attacks by name, and their runner in a worker process of their own, so the victim's
measurements in the bench process do not pay for the attackers' CPU."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from multiprocessing.synchronize import Event

from backend.bench import hostile_attacks, hostile_floods
from backend.bench.hostile_context import AttackContext, AttackOptions
from backend.bench.hostile_target import Target


@dataclass(frozen=True)
class Attack:
    title: str
    run: Callable[[AttackContext], Awaitable[None]]
    takes_slots: bool = False  # the victim starts once the attack holds every slot


ATTACKS: dict[str, Attack] = {
    "control": Attack("control: every slot in normal use", hostile_attacks.normal_load),
    "non-reading": Attack("non-reading clients", hostile_attacks.non_reading, takes_slots=True),
    "jpegs": Attack("expensive JPEGs", hostile_attacks.expensive_jpegs),
    "fragments": Attack("fragmented messages", hostile_floods.fragments),
    "slowloris": Attack("slowloris", hostile_floods.slowloris),
    "churn": Attack("connect/reset churn", hostile_floods.churn),
    "json": Attack("malformed JSON flood", hostile_floods.malformed_json),
    "token-reuse": Attack("token reuse", hostile_attacks.token_reuse),
    "disk": Attack("failing backlog disk", hostile_attacks.failing_disk),
}


@dataclass(frozen=True)
class AttackReport:
    name: str
    counts: dict[str, int]
    cpu_s: float  # the attack process's CPU time: what the attackers took from the machine


_stop: Event | None = None


def init_worker(stop: Event) -> None:
    """Process-pool initializer: the event the bench sets to end the running attack."""
    global _stop  # noqa: PLW0603 - set once per worker process
    _stop = stop


def prepare() -> None:
    """Build the attack material ahead of time, off the measured phases."""
    hostile_attacks.normal_frames()
    hostile_attacks.expensive_frames()


def run_attack(name: str, target: Target, options: AttackOptions, max_s: float) -> AttackReport:
    """Run one attack until the bench sets the stop event (or `max_s` passes)."""
    context = AttackContext(target, options)
    cpu_before = time.process_time()
    asyncio.run(_until_stopped(ATTACKS[name].run(context), max_s))
    return AttackReport(name, dict(context.counts), time.process_time() - cpu_before)


async def _until_stopped(attack: Awaitable[None], max_s: float) -> None:
    task = asyncio.ensure_future(attack)
    deadline = time.monotonic() + max_s
    while not task.done() and time.monotonic() < deadline:
        if _stop is not None and _stop.is_set():
            break
        await asyncio.sleep(0.1)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
