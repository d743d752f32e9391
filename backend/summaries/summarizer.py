"""One session's summariser: windows of observations in, `llm_summary` texts out, off-path.

`observe` only adds a frame's counts to the open window (no I/O, no awaiting), so the frame
pipeline never waits for summaries. Two tasks do the rest: the windower closes a window
every `window_s` and pushes it into the durable `Backlog`; the sender takes the oldest
windows, asks the LLM (or the template) and delivers the text. The request rate adapts to
the backlog: one window per request while it keeps up, more windows merged into one request
as the backlog grows. A failed request is retried here and nowhere else, by the
`RetryPolicy`: a transient failure after exponential backoff (the windows wait, on disk, and
nothing is lost up to the cap), a permanent one not at all (the template summarises them).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from collections import deque
from collections.abc import Awaitable, Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from backend.core.config import Settings
from backend.observability.metrics import BackendMetrics
from backend.protocol.server_messages import FrameOutputs
from backend.summaries.backlog import Backlog, remove_files
from backend.summaries.chat_model import ask, summary_prompt
from backend.summaries.observations import Observation, WindowCounts, merge
from backend.summaries.output_check import summary_problem
from backend.summaries.retry_policy import RetryPolicy, is_timeout
from backend.summaries.template import template_summary, time_range

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

log = logging.getLogger(__name__)
MERGE_DIVISOR = 4  # merge backlog/4 windows per request, up to max_merge
DROP_NOTICE_INTERVAL_S = 60.0
P = ParamSpec("P")
T = TypeVar("T")


@dataclass(frozen=True)
class SummaryOutlet:
    """Where a summariser's results go: the session's `send`, wrapped."""

    deliver: Callable[[str], Awaitable[None]]  # one summary text
    dropped: Callable[[int], Awaitable[None]]  # windows dropped so far, beyond the cap
    delayed: Callable[[str], Awaitable[None]]  # why windows wait in RAM (backlog unwritable)


class Summarizer:
    """Windows, backlog and LLM requests of one session; `start`, `observe`, `aclose`."""

    def __init__(
        self,
        *,
        settings: Settings,
        backlog: Backlog,
        io_pool: Executor,
        model: BaseChatModel | None,
        outlet: SummaryOutlet,
        metrics: BackendMetrics,
        system_prompt: str | None = None,
        clock: Callable[[], float] = time.time,
        retry: RetryPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.backlog = backlog
        self.model = model
        self.outlet = outlet
        self.metrics = metrics
        self.system_prompt = system_prompt
        self.clock = clock
        self.retry = retry or RetryPolicy.from_settings(settings)
        self.dropped = 0
        self._io_pool = io_pool
        self._window = WindowCounts(start=clock())
        self._pending = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._counted_size = len(backlog)
        self._last_drop_notice: float | None = None
        self._last_delay_notice: float | None = None
        self._unsaved: deque[Observation] = deque()  # closed windows the backlog refused
        metrics.summary_backlog.inc(self._counted_size)

    def start(self) -> None:
        self._pending.set()
        self._tasks = [
            asyncio.create_task(self._close_windows_forever()),
            asyncio.create_task(self._send_forever()),
        ]

    def observe(self, outputs: FrameOutputs) -> None:
        """Count one frame's outputs into the open window; never blocks."""
        self._window.add(outputs)

    async def close_window(self) -> None:
        """Push the open window into the backlog (windows without frames are skipped).

        When the backlog cannot be written (a full disk), closed windows wait in RAM, at most
        `summary_ram_items` of them, and are pushed first at the next window's close.
        """
        now = self.clock()
        window, self._window = self._window, WindowCounts(start=now)
        if window.frames:
            self._unsaved.append(window.close(now))
        if len(self._unsaved) > self.settings.summary_ram_items:
            self._unsaved.popleft()
            self._count_drops(1)
            await self._notice_drops(now)
        while self._unsaved:
            try:
                outcome = await self._io(self.backlog.push, self._unsaved[0])
            except (OSError, sqlite3.Error) as exc:
                await self._notice_unwritable(exc, now)
                return
            self._unsaved.popleft()
            self._update_size()
            if outcome.spilled:
                self.metrics.summary_spilled.inc()
            if outcome.dropped:
                self._count_drops(outcome.dropped)
                await self._notice_drops(now)
            self._pending.set()

    async def aclose(self) -> None:
        """Stop both tasks and delete the backlog file (the session is over).

        A task that died of an error is logged here; the file is deleted and the gauge
        released whatever happened.
        """
        for task in self._tasks:
            task.cancel()
        try:
            for task in self._tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    try:
                        await task
                    except Exception:
                        log.exception("a summaries task failed")
        finally:
            self.metrics.summary_backlog.dec(self._counted_size)
            self._counted_size = 0
            try:
                await self._io(self.backlog.close, delete=True)
            except (OSError, sqlite3.Error):
                log.exception("closing the summary backlog failed; deleting its files")
                await self._io(remove_files, self.backlog.path)

    def windows_per_request(self) -> int:
        """More windows per request as the backlog grows: fewer requests, same coverage."""
        return max(1, min(self.settings.summary_max_merge, len(self.backlog) // MERGE_DIVISOR))

    async def _close_windows_forever(self) -> None:
        while True:
            await asyncio.sleep(self.settings.summary_window_s)
            await self.close_window()

    async def _send_forever(self) -> None:
        attempt = 1  # tries since the last summary was delivered (the windows wait meanwhile)
        while True:
            await self._pending.wait()
            self._pending.clear()
            batch = await self._io(self.backlog.peek, self.windows_per_request())
            if not batch:
                continue
            self._pending.set()  # more may be waiting after this batch
            observation = merge([item for _, item in batch])
            text, retry_after = await self._summarise(observation, attempt)
            if retry_after is not None:
                attempt += 1
                await asyncio.sleep(retry_after)
                continue
            attempt = 1
            await self.outlet.deliver(f"{time_range(observation)}\n{text}")
            await self._io(self.backlog.remove_through, batch[-1][0])
            self._update_size()

    async def _summarise(self, observation: Observation, attempt: int) -> tuple[str, float | None]:
        """The text for these windows, or when to try again (the policy's decision).

        The LLM's answer if well-formed, else the template; also the template when the
        provider failed and the policy says not to retry.
        """
        template = template_summary(observation)
        if self.model is None:
            self.metrics.summaries.labels("template").inc()
            return template, None
        started = time.monotonic()
        try:
            answer = await ask(
                self.model, summary_prompt(observation, self.system_prompt), self.settings
            )
        except Exception as exc:  # any provider failure: the policy decides what follows
            kind = "timeout" if is_timeout(exc) else "provider_error"
            self.metrics.llm_errors.labels(kind).inc()
            retry_after = self.retry.retry_after(exc, attempt)
            if retry_after is not None:
                log.warning(
                    "LLM summary failed (%s), retrying in %.1f s: %s", kind, retry_after, exc
                )
                return template, retry_after
            log.warning(
                "LLM summary failed (%s), not retried; the template stands in: %s", kind, exc
            )
            self.metrics.summaries.labels("template").inc()
            return template, None
        self.metrics.llm_latency.observe(time.monotonic() - started)
        problem = summary_problem(answer, observation)
        if problem is not None:
            self.metrics.llm_errors.labels("malformed").inc()
            self.metrics.summaries.labels("template").inc()
            log.info("LLM answer replaced by the template: %s", problem)
            return template, None
        self.metrics.summaries.labels("llm").inc()
        return answer.strip(), None

    def _count_drops(self, count: int) -> None:
        self.dropped += count
        self.metrics.summary_dropped.inc(count)

    async def _notice_unwritable(self, exc: OSError | sqlite3.Error, now: float) -> None:
        log.warning("summary backlog %s not writable: %s", self.backlog.path, exc)
        last = self._last_delay_notice
        if last is None or now - last >= DROP_NOTICE_INTERVAL_S:
            self._last_delay_notice = now
            reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc)
            await self.outlet.delayed(
                f"the server cannot write its summary backlog ({reason}); observation "
                f"windows wait in memory (now {len(self._unsaved)}, at most "
                f"{self.settings.summary_ram_items}) and are saved as soon as it can"
            )

    async def _notice_drops(self, now: float) -> None:
        last = self._last_drop_notice
        if last is None or now - last >= DROP_NOTICE_INTERVAL_S:
            self._last_drop_notice = now
            await self.outlet.dropped(self.dropped)

    def _update_size(self) -> None:
        size = len(self.backlog)
        self.metrics.summary_backlog.inc(size - self._counted_size)
        self._counted_size = size

    async def _io(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Backlog calls run on the shared summaries thread, never on the event loop."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._io_pool, lambda: function(*args, **kwargs))
