"""The waiting-sessions peak the heartbeat publishes: the most sessions waiting at once in the
last minute, so sessions a full fleet instance sent away after a few seconds still count."""

from __future__ import annotations

import time

import pytest

from backend.observability.metrics import WAITING_PEAK_WINDOW_S, BackendMetrics


def sample(metrics: BackendMetrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


def test_the_peak_outlives_the_waiting_sessions_for_the_window(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    metrics = BackendMetrics()
    assert sample(metrics, "cvstack_waiting_sessions_peak") == 0
    for _ in range(3):
        metrics.waiting_changed(+1)
    clock[0] += 5
    for _ in range(3):
        metrics.waiting_changed(-1)
    assert sample(metrics, "cvstack_waiting_sessions") == 0
    assert sample(metrics, "cvstack_waiting_sessions_peak") == 3
    clock[0] += WAITING_PEAK_WINDOW_S - 1
    assert sample(metrics, "cvstack_waiting_sessions_peak") == 3
    clock[0] += 2
    assert sample(metrics, "cvstack_waiting_sessions_peak") == 0


def test_a_session_still_waiting_counts_however_old_its_arrival() -> None:
    metrics = BackendMetrics()
    metrics.waiting_changed(+1)
    metrics._waiting_changes.clear()  # as if it arrived more than a window ago
    assert sample(metrics, "cvstack_waiting_sessions_peak") == 1
