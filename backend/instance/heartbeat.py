"""The instance's activity heartbeat: the CloudWatch metrics that idle_stop and the alarms read.

Once a minute (a systemd timer) it probes the backend on loopback and publishes, in namespace
`cvstack` with dimension `InstanceId` (docs/infrastructure.md, "Metric contract"):
`ActiveSessions` (always, 0 included: idle_stop's signal), `WaitingSessions` (the most sessions
queued for a slot at once in the last minute: a full fleet instance sends waiting sessions away
after a few seconds, and an instant's count would rarely see them), `BackendReady` (1 when
`/ready` says Triton and the models answer, draining or not), `PipelineFps`,
`InferenceLatencyMs` (the frame-latency histogram's new observations since the previous beat,
as values and counts) and `GpuUtilization` (from Triton's own metrics, when it reports a GPU).
In a fleet (`CVSTACK_FLEET_GROUP_NAME`) it adds `SessionLoad`, active plus waiting, with
dimension `AutoScalingGroupName`: target tracking scales the group on its Average. A backend
that does not answer still yields zero sessions and `BackendReady=0`, so a dead backend is
visible and never keeps the instance running.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client.parser import text_string_to_metric_families

from backend.instance.imds import INSTANCE_ID, imds_base_url, read_metadata

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_cloudwatch.type_defs import MetricDatumTypeDef

NAMESPACE = "cvstack"
DIMENSION = "InstanceId"
FLEET_DIMENSION = "AutoScalingGroupName"
ACTIVE_SESSIONS = "ActiveSessions"
WAITING_SESSIONS = "WaitingSessions"
SESSION_LOAD = "SessionLoad"
BACKEND_READY = "BackendReady"
INFERENCE_LATENCY_MS = "InferenceLatencyMs"
PIPELINE_FPS = "PipelineFps"
GPU_UTILIZATION = "GpuUtilization"
LATENCY_HISTOGRAM = "cvstack_frame_latency_seconds"
ACTIVE_GAUGE = "cvstack_active_sessions"
WAITING_GAUGE = "cvstack_waiting_sessions_peak"


@dataclass
class Probe:
    """What the backend (and Triton) said this minute."""

    ready: bool = False
    active_sessions: float = 0.0
    waiting_sessions: float = 0.0
    pipeline_fps: float | None = None
    latency_buckets: dict[float, float] = field(default_factory=dict)  # le (s) -> cumulative
    gpu_utilization: float | None = None  # percent, mean over GPUs


def probe(backend_url: str, triton_metrics_url: str | None, timeout_s: float = 3.0) -> Probe:
    """Read `/ready` and `/metrics` of the backend and Triton's GPU metrics; never raises."""
    result = Probe(ready=backend_works(backend_url, timeout_s))
    text = get_text(f"{backend_url}/metrics", timeout_s)
    if text is not None:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == ACTIVE_GAUGE:
                    result.active_sessions = sample.value
                elif sample.name == WAITING_GAUGE:
                    result.waiting_sessions = sample.value
                elif sample.name == "cvstack_pipeline_fps":
                    result.pipeline_fps = sample.value
                elif sample.name == f"{LATENCY_HISTOGRAM}_bucket":
                    result.latency_buckets[float(sample.labels["le"])] = sample.value
    triton_text = get_text(triton_metrics_url, timeout_s) if triton_metrics_url else None
    if triton_text is not None:
        values = [
            sample.value
            for family in text_string_to_metric_families(triton_text)
            for sample in family.samples
            if sample.name == "nv_gpu_utilization"
        ]
        if values:
            result.gpu_utilization = 100.0 * sum(values) / len(values)
    return result


def latency_values(
    buckets: dict[float, float], previous: dict[float, float]
) -> tuple[list[float], list[float]]:
    """New observations per histogram bucket since `previous`, as (bucket midpoints in ms, counts).

    A counter that went down means the backend restarted: everything it holds is new.
    """
    if any(buckets.get(le, 0.0) < count for le, count in previous.items()):
        previous = {}
    values: list[float] = []
    counts: list[float] = []
    lower = 0.0
    cumulative_now = cumulative_before = 0.0
    for le in sorted(buckets):
        now, before = buckets[le], previous.get(le, 0.0)
        new = (now - cumulative_now) - (before - cumulative_before)
        cumulative_now, cumulative_before = now, before
        if new > 0:  # the +Inf bucket has no upper bound: report its lower one
            values.append(round(1000 * ((lower + le) / 2 if math.isfinite(le) else lower), 3))
            counts.append(new)
        if math.isfinite(le):
            lower = le
    return values, counts


def metric_data(
    result: Probe,
    instance_id: str,
    previous_buckets: dict[float, float],
    now: datetime,
    group_name: str | None = None,
) -> list[MetricDatumTypeDef]:
    """The CloudWatch datapoints of one beat; `group_name`: the fleet's, when in one."""
    dimensions = [{"Name": DIMENSION, "Value": instance_id}]

    def datum(
        name: str, value: float, unit: str, where: list[dict[str, str]] = dimensions
    ) -> MetricDatumTypeDef:
        return {
            "MetricName": name,
            "Dimensions": where,  # type: ignore[typeddict-item]
            "Timestamp": now,
            "Value": value,
            "Unit": unit,  # type: ignore[typeddict-item]
        }

    data = [
        datum(ACTIVE_SESSIONS, result.active_sessions, "Count"),
        datum(WAITING_SESSIONS, result.waiting_sessions, "Count"),
        datum(BACKEND_READY, 1.0 if result.ready else 0.0, "Count"),
    ]
    if group_name:
        load = result.active_sessions + result.waiting_sessions
        data.append(
            datum(SESSION_LOAD, load, "Count", [{"Name": FLEET_DIMENSION, "Value": group_name}])
        )
    if result.pipeline_fps is not None:
        data.append(datum(PIPELINE_FPS, result.pipeline_fps, "Count/Second"))
    if result.gpu_utilization is not None:
        data.append(datum(GPU_UTILIZATION, result.gpu_utilization, "Percent"))
    values, counts = latency_values(result.latency_buckets, previous_buckets)
    if values:
        data.append(
            {
                "MetricName": INFERENCE_LATENCY_MS,
                "Dimensions": dimensions,  # type: ignore[typeddict-item]
                "Timestamp": now,
                "Values": values,
                "Counts": counts,
                "Unit": "Milliseconds",
            }
        )
    return data


def beat(
    cloudwatch: CloudWatchClient,
    instance_id: str,
    *,
    backend_url: str,
    triton_metrics_url: str | None,
    state_file: Path,
    group_name: str | None = None,
    now: datetime | None = None,
) -> list[MetricDatumTypeDef]:
    """Probe, publish one minute's datapoints, remember the histogram for the next beat."""
    result = probe(backend_url, triton_metrics_url)
    previous = _load_buckets(state_file)
    data = metric_data(result, instance_id, previous, now or datetime.now(UTC), group_name)
    cloudwatch.put_metric_data(Namespace=NAMESPACE, MetricData=data)
    state_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = state_file.with_suffix(".tmp")
    temporary.write_text(json.dumps({str(le): n for le, n in result.latency_buckets.items()}))
    temporary.replace(state_file)
    return data


def instance_id_from_imds(base_url: str | None = None, timeout_s: float = 2.0) -> str:
    """This instance's id through IMDSv2 (backend/instance/imds.py); OSError when IMDS fails."""
    instance_id = read_metadata(imds_base_url(base_url), INSTANCE_ID, timeout_s)
    if not instance_id:
        raise OSError("IMDS has no instance-id")
    return instance_id


def backend_works(backend_url: str, timeout_s: float) -> bool:
    """`/ready`'s `ready`: Triton and the models answer. A draining backend answers 503 but
    works, and its body says so; without a JSON body (a proxy's error page) 503 means not."""
    try:
        with urllib.request.urlopen(f"{backend_url}/ready", timeout=timeout_s) as response:
            return bool(response.status == 200)
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read())
        except (ValueError, OSError):
            return False
        return isinstance(body, dict) and body.get("ready") is True
    except OSError:
        return False


def get_text(url: str | None, timeout_s: float) -> str | None:
    """The body of a GET, or None when it fails (or there is no URL)."""
    if url is None:
        return None
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            body: bytes = response.read()
    except (urllib.error.URLError, OSError):
        return None
    return body.decode(errors="replace")


def _load_buckets(state_file: Path) -> dict[float, float]:
    try:
        raw: dict[str, Any] = json.loads(state_file.read_text())
        return {float(le): float(n) for le, n in raw.items()}
    except (OSError, ValueError, AttributeError):
        return {}
