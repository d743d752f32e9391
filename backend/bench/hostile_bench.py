"""`cvstack bench hostile`: each attack for a bounded time against a real local stack while a
victim session measures its admission time and latency; the server's memory, descriptors,
sessions and backlog files after each attack.

The backend runs as in production (session tokens, allowed origins); attackers hold tokens
as any visitor gets them from /start. The attacks run in a worker process of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import secrets
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import IO

from backend.api.connection_limits import raise_fd_limit
from backend.bench.hostile_context import AttackOptions
from backend.bench.hostile_runner import ATTACKS, AttackReport, init_worker, prepare, run_attack
from backend.bench.hostile_server import (
    Backend,
    Leftovers,
    Usage,
    backend,
    small_tmpfs,
)
from backend.bench.hostile_target import Target
from backend.bench.hostile_victim import VictimRun, run_victim
from backend.bench.machine import describe_machine
from backend.bench.sample_frames import sample_frames
from backend.bench.stack import triton_on_cpu

ORIGIN = "https://app.hostile-bench.test"
P95_FACTOR = 2.0  # target: victim p95 during an attack <= this x quiet p95
RSS_SLACK = 1.10  # target: RSS after an attack within 10% of before
SLOTS_TIMEOUT_S = 15.0  # how long the victim waits for a slot-taking attack to hold every slot
BACKLOG_GLOB = "*.sqlite3*"


@dataclass(frozen=True)
class HostileConfig:
    seconds: float = 20.0  # the victim's measuring time during each attack, once admitted
    quiet_seconds: float = 8.0  # the victim alone, right before each attack
    warmup_s: float = 2.0  # attack time before the victim starts
    settle_s: float = 20.0  # longest wait for memory, descriptors and sessions to settle
    admit_within_s: float = 10.0  # target: admitted this long after a slot is due
    admission_grace_s: float = 10.0  # how much longer the victim keeps trying to get in
    max_sessions: int = 4
    send_timeout_s: float = 10.0
    attacks: tuple[str, ...] = tuple(ATTACKS)
    options: AttackOptions = field(default_factory=AttackOptions)


@dataclass(frozen=True)
class Phase:
    """What one attack phase measured besides the victim."""

    counts: Mapping[str, int]
    seconds: float  # attack start to stop
    attacker_cpu_s: float
    backend_cpu_s: float


@dataclass(frozen=True)
class Row:
    name: str
    phase: Phase | None  # None: not run
    quiet: VictimRun | None  # the victim alone, right before the attack
    victim: VictimRun | None  # the victim during the attack
    admit_within_s: float
    before: Usage
    after: Usage
    left_before: Leftovers
    left_after: Leftovers | None  # None: /ready did not answer
    not_run: str | None = None
    backend_exit: int | None = None  # the backend's exit code if it died during the attack

    def failures(self) -> list[str]:
        """The targets this row missed."""
        quiet, victim = self.quiet, self.victim
        if quiet is None or victim is None:
            return []
        failed = [] if self.backend_exit is None else [f"backend died ({self.backend_exit})"]
        if victim.admitted_s is None or victim.admitted_s > self.admit_within_s:
            failed.append("admission")
        if victim.dropped is not None:
            failed.append("victim dropped")
        if victim.p95_ms is None or victim.p95_ms > P95_FACTOR * (quiet.p95_ms or 0.0):
            failed.append("p95")
        if self.after.rss_mb > RSS_SLACK * self.before.rss_mb:
            failed.append("RSS")
        if self.after.fds > self.before.fds:
            failed.append("FDs")
        if self.left_after is None or self.left_after.more_than(self.left_before):
            failed.append("left behind")
        return failed


@dataclass(frozen=True)
class HostileResult:
    machine: str
    config: HostileConfig
    baseline: Usage
    rows: list[Row]
    final: Usage
    load: tuple[float, float]  # lowest and highest 1-minute load average seen at phase starts

    def passed(self) -> bool:
        return (
            all(not row.failures() for row in self.rows)
            and self.final.rss_mb <= RSS_SLACK * self.baseline.rss_mb
            and self.final.fds <= self.baseline.fds
        )


def run_hostile_bench(
    models_dir: Path, config: HostileConfig, server_log: IO[bytes] | None = None
) -> HostileResult:
    """Start the stack, measure the victim alone, then under each attack in turn."""
    raise_fd_limit(config.options.slowloris)  # the attackers' descriptors, not the server's
    secret = secrets.token_urlsafe(32)
    with (
        small_tmpfs() as (disk, no_disk),
        triton_on_cpu(models_dir) as triton,
        backend(models_dir, triton.address, _settings(config, secret, disk), server_log) as server,
        _attack_pool() as (pool, stop),
    ):
        pool.submit(prepare).result()
        target = Target(
            "127.0.0.1", server.port, secret, ORIGIN, config.max_sessions,
            config.send_timeout_s, summary_dir=None if no_disk else str(disk),
        )  # fmt: skip
        bench = _Bench(target, config, server, disk, pool, stop)
        asyncio.run(run_victim(target, sample_frames(), seconds=3))  # warm-up, not measured
        baseline, nothing_left = bench.settle(None, None, 2.0)
        rows: list[Row] = []
        loads = [os.getloadavg()[0]]
        for name in config.attacks:
            loads.append(os.getloadavg()[0])
            before = rows[-1].after if rows else baseline
            left = (rows[-1].left_after if rows else nothing_left) or Leftovers(0, 0, 0)
            code = server.exit_code()
            skip = f"the backend exited ({code})" if code is not None else None
            if skip is None and name == "disk":
                skip = no_disk
            if skip is not None:
                title = ATTACKS[name].title
                rows.append(Row(title, None, None, None, 0, before, before, left, left, skip))
            else:
                rows.append(bench.attack_phase(name, before, left))
        load = (min(loads), max(loads))
        return HostileResult(describe_machine(), config, baseline, rows, server.usage(), load)


def _settings(config: HostileConfig, secret: str, disk: Path) -> dict[str, str]:
    return {
        "CVSTACK_ENVIRONMENT": "production",
        "CVSTACK_SESSION_TOKEN_SECRET": secret,
        "CVSTACK_ALLOWED_ORIGINS": f'["{ORIGIN}"]',
        "CVSTACK_MAX_SESSIONS": str(config.max_sessions),
        "CVSTACK_SEND_TIMEOUT_S": str(config.send_timeout_s),
        "CVSTACK_SUMMARY_DIR": str(disk),
        "CVSTACK_SUMMARY_WINDOW_S": "1",  # a backlog write every second per summary session
    }


@contextlib.contextmanager
def _attack_pool() -> Iterator[tuple[ProcessPoolExecutor, Event]]:
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    with ProcessPoolExecutor(1, context, initializer=init_worker, initargs=(stop,)) as pool:
        yield pool, stop


@dataclass(frozen=True)
class _Bench:
    """The running stack and the attack worker, for one phase after another."""

    target: Target
    config: HostileConfig
    server: Backend
    disk: Path
    pool: ProcessPoolExecutor
    stop: Event

    def attack_phase(self, name: str, before: Usage, left_before: Leftovers) -> Row:
        """Measure the victim alone, then start the attack and run the victim beside it,
        stop the attack and let the server settle."""
        attack, config = ATTACKS[name], self.config
        quiet = asyncio.run(run_victim(self.target, sample_frames(), seconds=config.quiet_seconds))
        admit_within = config.admit_within_s + (config.send_timeout_s if attack.takes_slots else 0)
        give_up = admit_within + config.admission_grace_s
        max_s = SLOTS_TIMEOUT_S + give_up + config.seconds + 30
        self.stop.clear()
        started, cpu_started = time.monotonic(), self.server.usage().cpu_s
        future = self.pool.submit(run_attack, name, self.target, config.options, max_s)
        if attack.takes_slots:
            _wait_for_full_slots(self.server, self.target.max_sessions, future)
        else:
            time.sleep(config.warmup_s)
        victim = asyncio.run(
            run_victim(self.target, sample_frames(), seconds=config.seconds, give_up_s=give_up)
        )
        self.stop.set()
        seconds, backend_cpu_s = time.monotonic() - started, self.server.usage().cpu_s - cpu_started
        try:
            report = future.result(timeout=60)
            counts, attacker_cpu_s = report.counts, report.cpu_s
        except Exception as exc:  # the row shows it; the other attacks still run
            counts, attacker_cpu_s = {f"attack failed: {type(exc).__name__}: {exc}": 1}, 0.0
        phase = Phase(counts, seconds, attacker_cpu_s, backend_cpu_s)
        after, left = self.settle(before, left_before, config.settle_s)
        return Row(
            attack.title, phase, quiet, victim, admit_within, before, after, left_before, left,
            backend_exit=self.server.exit_code(),
        )  # fmt: skip

    def settle(
        self, before: Usage | None, left_before: Leftovers | None, seconds: float
    ) -> tuple[Usage, Leftovers | None]:
        """Poll until memory and descriptors are back to `before` and nothing more is left
        (or `seconds` pass); with no `before`, wait `seconds` and measure."""
        deadline = time.monotonic() + seconds
        while True:
            usage, left = self.server.usage(), self.leftovers()
            settled = (
                before is not None
                and usage.fds <= before.fds
                and usage.rss_mb <= RSS_SLACK * before.rss_mb
                and left is not None
                and not (left_before is not None and left.more_than(left_before))
            )
            if settled or time.monotonic() > deadline or self.server.exit_code() is not None:
                return usage, left
            time.sleep(0.5)

    def leftovers(self) -> Leftovers | None:
        sessions = self.server.sessions()
        if sessions is None:
            return None
        return Leftovers(*sessions, len(list(self.disk.glob(BACKLOG_GLOB))))


def _wait_for_full_slots(server: Backend, slots: int, attack: Future[AttackReport]) -> None:
    deadline = time.monotonic() + SLOTS_TIMEOUT_S
    while time.monotonic() < deadline and not attack.done():
        sessions = server.sessions()
        if sessions is not None and sessions[0] >= slots:
            return
        time.sleep(0.2)
