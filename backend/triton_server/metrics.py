"""Read Triton's per-model counters from its Prometheus metrics endpoint."""

from __future__ import annotations

import urllib.request
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families


@dataclass(frozen=True)
class ModelCounters:
    """Cumulative counters of one model since the server started."""

    requests: float  # nv_inference_request_success
    executions: float  # nv_inference_exec_count: model runs; fewer than requests => batching
    inferences: float  # nv_inference_count: batch items

    def since(self, earlier: ModelCounters) -> ModelCounters:
        return ModelCounters(
            self.requests - earlier.requests,
            self.executions - earlier.executions,
            self.inferences - earlier.inferences,
        )

    @property
    def average_batch(self) -> float:
        return self.inferences / self.executions if self.executions else 0.0


def read_model_counters(metrics_url: str, model: str, timeout_s: float = 5.0) -> ModelCounters:
    """Fetch and parse the counters of `model` (0 when Triton has not counted anything yet)."""
    with urllib.request.urlopen(metrics_url, timeout=timeout_s) as response:
        text = response.read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:  # the parser renames counter samples to `<name>_total`
            if sample.labels.get("model") == model:
                values[family.name] = values.get(family.name, 0.0) + sample.value
    return ModelCounters(
        requests=values.get("nv_inference_request_success", 0.0),
        executions=values.get("nv_inference_exec_count", 0.0),
        inferences=values.get("nv_inference_count", 0.0),
    )
