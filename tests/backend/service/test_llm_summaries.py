"""`use_langchain`: summaries from the template out of the box, or from a real LangChain
client against an OpenAI server on loopback, while frame results keep their full rate."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.backend.service.conftest import BackendServer, Client, jpeg_frame
from tests.backend.summaries.conftest import OpenAIStub

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]


@pytest.fixture
def openai_stub() -> Iterator[OpenAIStub]:
    stub = OpenAIStub().start()
    yield stub
    stub.stop()


def stream_until_summary(client: Client, timeout_s: float = 20.0) -> str:
    """Send frames one at a time (one in flight) until an `llm_summary` arrives."""
    deadline = time.monotonic() + timeout_s
    seed = 0
    while time.monotonic() < deadline:
        client.connection.send(jpeg_frame(seed=seed % 8))
        seed += 1
        while (message := client.receive())["type"] != "inference":
            if message["type"] == "llm_summary":
                text: str = message["data"]
                return text
    raise AssertionError(f"no llm_summary within {timeout_s} s")


def round_trips(client: Client, count: int) -> list[float]:
    """Seconds from sending a frame to its result, ignoring summaries meanwhile."""
    times = []
    for seed in range(count):
        started = time.monotonic()
        client.connection.send(jpeg_frame(seed=seed % 8))
        client.receive_type("inference")
        times.append(time.monotonic() - started)
    return times


def test_without_an_llm_the_template_summarises_out_of_the_box(
    start_backend: Callable[..., BackendServer], open_client: OpenClient, tmp_path: Path
) -> None:
    orphan = tmp_path / "999999999-gone.sqlite3"  # a pid that cannot be running
    orphan.write_bytes(b"")
    backend = start_backend(summary_window_s=0.5, summary_dir=tmp_path)
    assert not orphan.exists(), "orphans are removed at start-up"
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True, use_langchain=True)
    summary = stream_until_summary(client)
    header, *sentences = summary.splitlines()
    assert header.startswith("From ") and header.endswith(" UTC:")
    assert sentences and all(s.endswith(".") for s in sentences)
    assert any(tmp_path.iterdir()), "the backlog file is open"
    client.send_json({"type": "stop"})
    assert client.receive_type("queue_status")["state"] == "finished"
    assert list(tmp_path.iterdir()) == [], "the backlog file goes with the session"
    metrics = httpx.get(f"{backend.url}/metrics").text
    assert 'cvstack_summaries_total{source="template"}' in metrics
    assert "cvstack_summary_backlog_windows 0.0" in metrics


def test_summaries_come_from_langchain_against_the_loopback_server(
    start_backend: Callable[..., BackendServer], open_client: OpenClient, openai_stub: OpenAIStub
) -> None:
    backend = start_backend(
        summary_window_s=0.5,
        llm_provider="openai",
        llm_base_url=openai_stub.base_url,
        llm_model="stub-model",
        llm_streaming=True,
    )
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True, use_langchain=True, system_prompt="Watch the bus stop.")
    summary = stream_until_summary(client)
    request = openai_stub.requests[0]
    assert request["stream"] is True
    question = request["messages"][-1]["content"]
    assert "Watch the bus stop." in question
    facts = question.split("Facts:\n", 1)[1].split("\n\n", 1)[0].splitlines()
    assert summary.splitlines()[1:] == list(reversed(facts)), "the LLM's answer, not the template"


def test_frame_results_keep_their_rate_while_the_provider_hangs(
    start_backend: Callable[..., BackendServer], open_client: OpenClient, openai_stub: OpenAIStub
) -> None:
    openai_stub.mode = "hang"
    backend = start_backend(
        summary_window_s=0.2,
        llm_provider="openai",
        llm_base_url=openai_stub.base_url,
        llm_model="stub-model",
        llm_timeout_s=60,
    )
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True)
    round_trips(client, 3)  # warm-up
    baseline = statistics.median(round_trips(client, 15))
    client.send_json({"type": "stop"})
    client.receive_type("queue_status")
    client.start(use_yolo=True, use_langchain=True)
    deadline = time.monotonic() + 10
    while openai_stub.in_flight == 0:
        assert time.monotonic() < deadline, "the summariser never asked the provider"
        round_trips(client, 1)
    hanging = round_trips(client, 15)
    assert openai_stub.in_flight >= 1, "the request still hangs"
    assert statistics.median(hanging) < 1.5 * baseline + 0.05, (baseline, hanging)


def test_an_unwritable_backlog_turns_summaries_off_with_a_clear_error(
    start_backend: Callable[..., BackendServer], open_client: OpenClient, tmp_path: Path
) -> None:
    not_a_folder = tmp_path / "summaries"
    not_a_folder.write_text("a file where the backlog folder should be")
    backend = start_backend(summary_dir=not_a_folder)
    client, _ = open_client(backend.ws_url)
    client.send_json({"type": "init", "params": {"use_yolo": True, "use_langchain": True}})
    client.send_json({"type": "start"})
    error = client.receive_type("error")
    assert error["code"] == "summaries_unavailable" and "CVSTACK_SUMMARY_DIR" in error["message"]
    # The client learns what to fix, never the server's paths (issue 11).
    assert str(tmp_path) not in error["message"] and "/" not in error["message"], error
    assert client.receive_type("queue_status")["state"] == "running"
    client.connection.send(jpeg_frame())
    assert client.receive_type("inference")["data"]["errors"] == {}
