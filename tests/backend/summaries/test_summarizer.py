"""The per-session summariser against the loopback OpenAI server: outages, retries, the cap,
fallbacks."""

from __future__ import annotations

import asyncio
import itertools
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.core.config import Settings
from backend.observability.metrics import BackendMetrics
from backend.summaries.backlog import Backlog, PushOutcome, backlog_path
from backend.summaries.chat_model import build_chat_model
from backend.summaries.observations import Observation
from backend.summaries.retry_policy import RetryPolicy
from backend.summaries.summarizer import Summarizer, SummaryOutlet
from tests.backend.summaries.conftest import OpenAIStub, frame_outputs
from tests.backend.summaries.test_chat_model import llm_settings

BACKOFF_S = 0.02
TEXT = re.compile(r'The text "(W\d+)" was read\.')


@dataclass
class Client:
    """What the session would have sent: summaries and drop notices."""

    summaries: list[str] = field(default_factory=list)
    drop_notices: list[int] = field(default_factory=list)
    delay_notices: list[str] = field(default_factory=list)

    async def deliver(self, text: str) -> None:
        self.summaries.append(text)

    async def dropped(self, count: int) -> None:
        self.drop_notices.append(count)

    async def delayed(self, message: str) -> None:
        self.delay_notices.append(message)

    def texts(self) -> list[str]:
        """The window texts, summary by summary (the stub reverses the lines within one)."""
        return [text for summary in self.summaries for text in sorted(TEXT.findall(summary))]


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def io_pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


Scenario = Callable[[Summarizer, Client, Clock], Awaitable[None]]


def run(
    settings: Settings,
    io_pool: ThreadPoolExecutor,
    scenario: Scenario,
    metrics: BackendMetrics,
    *,
    system_prompt: str | None = None,
    attempts: int | None = None,
) -> Client:
    """Run `scenario` on a started summariser (real LangChain client when configured)."""
    client, clock = Client(), Clock()

    async def main() -> None:
        async with httpx.AsyncClient() as http_client:
            summarizer = Summarizer(
                settings=settings,
                backlog=Backlog(
                    backlog_path(settings.summary_dir, "session"),
                    ram_items=settings.summary_ram_items,
                    max_items=settings.summary_max_items,
                ),
                io_pool=io_pool,
                model=build_chat_model(settings, http_client),
                outlet=SummaryOutlet(client.deliver, client.dropped, client.delayed),
                metrics=metrics,
                system_prompt=system_prompt,
                clock=clock,
                retry=RetryPolicy(
                    backoff_initial_s=BACKOFF_S,
                    backoff_max_s=settings.llm_backoff_max_s,
                    attempts=attempts,
                ),
            )
            summarizer.start()
            try:
                await scenario(summarizer, client, clock)
            finally:
                await summarizer.aclose()

    asyncio.run(main())
    return client


async def push_windows(summarizer: Summarizer, clock: Clock, indexes: range) -> None:
    """One 10 s window per index, simulated: its frame reads the text W<index>."""
    for index in indexes:
        summarizer.observe(frame_outputs(("person",), texts=(f"W{index:02d}",)))
        clock.now += 10
        await summarizer.close_window()


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def sample(metrics: BackendMetrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(name, labels) or 0.0


def outage_settings(stub: OpenAIStub, tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "summary_window_s": 3600,  # the test closes the windows itself
        "summary_ram_items": 8,
        "summary_max_items": 100,
        "llm_backoff_max_s": 0.2,
    }
    values.update(overrides)
    return llm_settings(stub, tmp_path, **values)


def test_a_ten_minute_outage_spills_to_disk_and_drains_in_order(
    openai_stub: OpenAIStub, tmp_path: Path, io_pool: ThreadPoolExecutor
) -> None:
    metrics = BackendMetrics()
    openai_stub.mode = "error"

    async def scenario(summarizer: Summarizer, client: Client, clock: Clock) -> None:
        await push_windows(summarizer, clock, range(60))  # 60 x 10 s, provider down
        await asyncio.sleep(0.3)
        backlog = summarizer.backlog
        assert (len(backlog), backlog.in_ram, client.summaries) == (60, 8, [])
        with sqlite3.connect(backlog.path) as db:
            assert db.execute("SELECT COUNT(*) FROM windows").fetchone() == (60,)
        failed = len(openai_stub.requests)
        assert 2 <= failed <= 15, "backs off exponentially while the provider fails"
        openai_stub.mode = "echo"
        await until(lambda: len(backlog) == 0)
        assert len(openai_stub.requests) - failed < 20, "merges windows while behind"

    client = run(outage_settings(openai_stub, tmp_path), io_pool, scenario, metrics)
    assert client.texts() == [f"W{i:02d}" for i in range(60)]
    assert client.summaries[0].startswith("From 22:13:20 to ")
    assert sample(metrics, "cvstack_summary_spilled_windows_total") == 52
    assert sample(metrics, "cvstack_summary_backlog_windows") == 0
    assert sample(metrics, "cvstack_llm_errors_total", kind="provider_error") >= 2
    assert sample(metrics, "cvstack_summaries_total", source="llm") == len(client.summaries)
    assert sample(metrics, "cvstack_llm_latency_seconds_count") == len(client.summaries)
    assert list(tmp_path.iterdir()) == [], "the backlog file goes with the session"


def test_a_transient_failure_is_retried_exactly_by_the_policy(
    openai_stub: OpenAIStub, tmp_path: Path, io_pool: ThreadPoolExecutor
) -> None:
    """Two 503s then an answer: three requests in all, spaced by the policy's backoff, and
    the LLM's summary; the client never retries on its own (one request per attempt)."""
    metrics = BackendMetrics()
    openai_stub.fail_next(503, 429)

    async def scenario(summarizer: Summarizer, client: Client, clock: Clock) -> None:
        await push_windows(summarizer, clock, range(1))
        await until(lambda: len(client.summaries) == 1)
        await asyncio.sleep(0.2)

    settings = outage_settings(openai_stub, tmp_path)
    client = run(settings, io_pool, scenario, metrics, attempts=3)
    assert len(openai_stub.requests) == 3
    times = openai_stub.request_times
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert gaps[0] >= BACKOFF_S and gaps[1] >= 2 * BACKOFF_S, gaps
    assert client.texts() == ["W00"]
    assert sample(metrics, "cvstack_summaries_total", source="llm") == 1
    assert sample(metrics, "cvstack_llm_errors_total", kind="provider_error") == 2


def test_a_transient_failure_past_the_attempts_falls_back_to_the_template(
    openai_stub: OpenAIStub, tmp_path: Path, io_pool: ThreadPoolExecutor
) -> None:
    metrics = BackendMetrics()
    openai_stub.mode = "error"

    async def scenario(summarizer: Summarizer, client: Client, clock: Clock) -> None:
        await push_windows(summarizer, clock, range(1))
        await until(lambda: len(client.summaries) == 1)
        await asyncio.sleep(0.2)

    client = run(outage_settings(openai_stub, tmp_path), io_pool, scenario, metrics, attempts=3)
    assert len(openai_stub.requests) == 3
    assert client.texts() == ["W00"], "the template summarises the windows: none is lost"
    assert sample(metrics, "cvstack_summaries_total", source="template") == 1


@pytest.mark.parametrize("status", [400, 401, 404])
def test_a_permanent_failure_is_not_retried_and_loses_nothing(
    openai_stub: OpenAIStub, tmp_path: Path, io_pool: ThreadPoolExecutor, status: int
) -> None:
    """A refusal that would repeat itself (bad request, bad key, unknown model) is tried once;
    the template summarises those windows, and the next windows ask the LLM again."""
    metrics = BackendMetrics()
    openai_stub.fail_next(status)

    async def scenario(summarizer: Summarizer, client: Client, clock: Clock) -> None:
        await push_windows(summarizer, clock, range(1))
        await until(lambda: len(client.summaries) == 1)
        await asyncio.sleep(0.2)
        assert len(openai_stub.requests) == 1, "not retried"
        await push_windows(summarizer, clock, range(1, 2))
        await until(lambda: len(client.summaries) == 2)

    client = run(outage_settings(openai_stub, tmp_path), io_pool, scenario, metrics)
    assert len(openai_stub.requests) == 2
    assert client.texts() == ["W00", "W01"]
    assert sample(metrics, "cvstack_summaries_total", source="template") == 1
    assert sample(metrics, "cvstack_summaries_total", source="llm") == 1
    assert sample(metrics, "cvstack_llm_errors_total", kind="provider_error") == 1
    assert list(tmp_path.iterdir()) == []


def test_windows_wait_in_ram_while_the_disk_is_full_and_none_is_lost(
    openai_stub: OpenAIStub, tmp_path: Path, io_pool: ThreadPoolExecutor
) -> None:
    """Fault injection: the backlog's writes fail as SQLite fails on a full disk."""
    metrics = BackendMetrics()
    openai_stub.mode = "error"

    async def scenario(summarizer: Summarizer, client: Client, clock: Clock) -> None:
        backlog = summarizer.backlog
        push = backlog.push
        full = True

        def push_or_fail(observation: Observation) -> PushOutcome:
            if full:
                raise sqlite3.OperationalError("database or disk is full")
            return push(observation)

        backlog.push = push_or_fail  # type: ignore[method-assign]
        await push_windows(summarizer, clock, range(5))
        assert (len(backlog), summarizer.dropped) == (0, 0)
        assert len(client.delay_notices) == 1, "told once, not once per window"
        assert "database or disk is full" in client.delay_notices[0]
        assert "now 1, at most 8" in client.delay_notices[0]
        full = False
        openai_stub.mode = "echo"
        await push_windows(summarizer, clock, range(5, 7))
        await until(lambda: len(backlog) == 0 and len(client.texts()) == 7)

    client = run(outage_settings(openai_stub, tmp_path), io_pool, scenario, metrics)
    assert client.texts() == [f"W{i:02d}" for i in range(7)]
    assert list(tmp_path.iterdir()) == []


def test_beyond_the_cap_the_oldest_are_dropped_counted_and_told(
    openai_stub: OpenAIStub, tmp_path: Path, io_pool: ThreadPoolExecutor
) -> None:
    metrics = BackendMetrics()
    openai_stub.mode = "error"

    async def scenario(summarizer: Summarizer, client: Client, clock: Clock) -> None:
        await push_windows(summarizer, clock, range(30))
        assert (summarizer.dropped, len(summarizer.backlog)) == (10, 20)
        openai_stub.mode = "echo"
        await until(lambda: len(summarizer.backlog) == 0)

    settings = outage_settings(openai_stub, tmp_path, summary_max_items=20)
    client = run(settings, io_pool, scenario, metrics)
    assert client.texts() == [f"W{i:02d}" for i in range(10, 30)]
    assert client.drop_notices == [1, 7], "at once, then at most once a minute"
    assert sample(metrics, "cvstack_summary_dropped_windows_total") == 10


def test_malformed_answers_are_replaced_by_the_template(
    openai_stub: OpenAIStub, tmp_path: Path, io_pool: ThreadPoolExecutor
) -> None:
    metrics = BackendMetrics()
    openai_stub.mode = "prose"

    async def scenario(summarizer: Summarizer, client: Client, clock: Clock) -> None:
        await push_windows(summarizer, clock, range(1))
        await until(lambda: len(client.summaries) == 1)

    client = run(outage_settings(openai_stub, tmp_path), io_pool, scenario, metrics)
    assert client.summaries[0].splitlines()[1:] == [
        "A person was detected at least 1 time.",
        'The text "W00" was read.',
    ]
    assert sample(metrics, "cvstack_llm_errors_total", kind="malformed") == 1
    assert sample(metrics, "cvstack_summaries_total", source="template") == 1


def test_observing_never_waits_for_a_hanging_provider(
    openai_stub: OpenAIStub, tmp_path: Path, io_pool: ThreadPoolExecutor
) -> None:
    metrics = BackendMetrics()
    openai_stub.mode = "hang"

    async def scenario(summarizer: Summarizer, client: Client, clock: Clock) -> None:
        await push_windows(summarizer, clock, range(1))
        await until(lambda: openai_stub.in_flight == 1)
        frame = frame_outputs(("person", "car"), texts=("A",), poses=1, motion=0.5)
        for _ in range(10_000):
            summarizer.observe(frame)  # synchronous: returning at all means it did not wait
        assert openai_stub.in_flight == 1, "the provider request is still hanging"
        await until(lambda: sample(metrics, "cvstack_llm_errors_total", kind="timeout") >= 1)
        assert client.summaries == [] and len(summarizer.backlog) == 1

    run(outage_settings(openai_stub, tmp_path, llm_timeout_s=0.3), io_pool, scenario, metrics)


def test_without_an_llm_the_template_summarises_each_window(
    tmp_path: Path, io_pool: ThreadPoolExecutor
) -> None:
    metrics = BackendMetrics()
    settings = Settings(summary_dir=tmp_path, summary_window_s=0.05)

    async def scenario(summarizer: Summarizer, client: Client, clock: Clock) -> None:
        summarizer.observe(frame_outputs(("person", "person", "dog"), motion=6.0))
        await until(lambda: len(client.summaries) == 1)
        await asyncio.sleep(0.2)  # empty windows are not summarised

    client = run(settings, io_pool, scenario, metrics)
    assert client.summaries == [
        "From 22:13:20 to 22:13:20 UTC:\n"
        "A person was detected at least 2 times.\n"
        "A dog was detected at least 1 time.\n"
        "Motion was high (about 6.0 px per frame)."
    ]
    assert sample(metrics, "cvstack_summaries_total", source="template") == 1
