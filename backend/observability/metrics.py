"""The backend's Prometheus metrics, on a registry of their own (one per app instance)."""

from __future__ import annotations

import time
from collections import deque

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LLM_LATENCY_BUCKETS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0)
STAGES = ("decode", "yolo", "pose", "motion", "ocr")
# The heartbeat reads /metrics once a minute: the peak over that minute shows it the sessions
# that waited and were sent away (a full fleet instance reconnects them within seconds).
WAITING_PEAK_WINDOW_S = 60.0


class BackendMetrics:
    """Counters, gauges and histograms exposed at `/metrics`."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_sessions = Gauge(
            "cvstack_active_sessions", "Sessions holding a processing slot", registry=r
        )
        self.waiting_sessions = Gauge(
            "cvstack_waiting_sessions", "Sessions waiting for a slot", registry=r
        )
        self.waiting_sessions_peak = Gauge(
            "cvstack_waiting_sessions_peak",
            f"Most sessions waiting for a slot at once in the last {WAITING_PEAK_WINDOW_S:.0f} s",
            registry=r,
        )
        self._waiting = 0
        self._waiting_changes: deque[tuple[float, int]] = deque()
        self.waiting_sessions_peak.set_function(self._waiting_peak)
        self.connections = Gauge("cvstack_connections", "Open WebSocket connections", registry=r)
        self.draining = Gauge(
            "cvstack_draining",
            "1 while the drain file exists: no new sessions, live ones run on (fleet scale-in)",
            registry=r,
        )
        self.frames = Counter(
            "cvstack_frames", "Frames processed, by pipeline stage", ["stage"], registry=r
        )
        self.dropped_frames = Counter(
            "cvstack_dropped_frames", "Frames replaced by newer ones before processing", registry=r
        )
        self.errors = Counter("cvstack_errors", "Errors by kind", ["kind"], registry=r)
        self.latency = Histogram(
            "cvstack_frame_latency_seconds",
            "Frame received to result sent",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.stage_latency = Histogram(
            "cvstack_stage_latency_seconds",
            "Time per pipeline stage",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.pipeline_fps = Gauge(
            "cvstack_pipeline_fps", "Results per second over all sessions (last 5 s)", registry=r
        )
        self.triton_batch_size = Gauge(
            "cvstack_triton_average_batch_size",
            "Triton average batch size since the last poll",
            ["model"],
            registry=r,
        )
        self.summary_backlog = Gauge(
            "cvstack_summary_backlog_windows",
            "Observation windows waiting for a summary, all sessions",
            registry=r,
        )
        self.summary_spilled = Counter(
            "cvstack_summary_spilled_windows",
            "Windows kept on disk only because the RAM part of a backlog was full",
            registry=r,
        )
        self.summary_dropped = Counter(
            "cvstack_summary_dropped_windows",
            "Oldest windows deleted because a backlog reached CVSTACK_SUMMARY_MAX_ITEMS",
            registry=r,
        )
        self.summaries = Counter(
            "cvstack_summaries", "Summaries sent, by source (llm, template)", ["source"], registry=r
        )
        self.llm_latency = Histogram(
            "cvstack_llm_latency_seconds",
            "LLM request to answer, successful requests",
            buckets=LLM_LATENCY_BUCKETS,
            registry=r,
        )
        self.llm_errors = Counter(
            "cvstack_llm_errors",
            "Failed or rejected LLM requests (timeout, provider_error, malformed)",
            ["kind"],
            registry=r,
        )
        self._results: deque[float] = deque(maxlen=4096)
        self.pipeline_fps.set_function(self._fps)

    def result_sent(self, latency_s: float) -> None:
        self.latency.observe(latency_s)
        self._results.append(time.monotonic())

    def waiting_changed(self, delta: int) -> None:
        """A session started (+1) or stopped (-1) waiting for a slot."""
        self._waiting += delta
        self.waiting_sessions.set(self._waiting)
        self._waiting_changes.append((time.monotonic(), self._waiting))

    def _waiting_peak(self) -> float:
        horizon = time.monotonic() - WAITING_PEAK_WINDOW_S
        changes = self._waiting_changes
        if changes and changes[0][0] < horizon:
            while changes and changes[0][0] < horizon:
                _, at_horizon = changes.popleft()
            changes.appendleft((horizon, at_horizon))  # the count that held at the horizon
        return float(max([self._waiting, *(count for _, count in self._waiting_changes)]))

    def _fps(self, window_s: float = 5.0) -> float:
        horizon = time.monotonic() - window_s
        while self._results and self._results[0] < horizon:
            self._results.popleft()
        return len(self._results) / window_s
