"""The heartbeat against moto's CloudWatch, probing the real backend (and a dead one)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import boto3
import pytest

from backend.cli import main
from backend.instance.heartbeat import (
    ACTIVE_SESSIONS,
    BACKEND_READY,
    DIMENSION,
    FLEET_DIMENSION,
    INFERENCE_LATENCY_MS,
    NAMESPACE,
    SESSION_LOAD,
    WAITING_SESSIONS,
    beat,
    latency_values,
)
from backend.instance.imds import IMDS_ENDPOINT_VARIABLE
from backend.triton_server.local_server import ServerAddress
from lambdas.shared import metrics as contract
from tests.backend.service.conftest import BackendServer, Client, jpeg_frame

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

INSTANCE = "i-0123456789abcdef0"
GROUP = "CvStack-gpu-fleet"


@pytest.fixture
def cloudwatch(fake_aws: None) -> Iterator[CloudWatchClient]:
    yield boto3.client("cloudwatch", region_name="us-east-1")


class ImdsV2(BaseHTTPRequestHandler):
    """EC2's instance metadata service with tokens required (`http_tokens = required`)."""

    TOKEN = "imds-session-token"
    # Instance-metadata tags (key -> value), served under TAGS when the instance has them on.
    TAGS = "/latest/meta-data/tags/instance/"
    tags: ClassVar[dict[str, str]] = {}

    def do_PUT(self) -> None:
        if (
            self.path == "/latest/api/token"
            and self.headers["X-aws-ec2-metadata-token-ttl-seconds"]
        ):
            self._reply(200, self.TOKEN)
        else:
            self._reply(400, "")

    def do_GET(self) -> None:
        if self.headers["X-aws-ec2-metadata-token"] != self.TOKEN:
            self._reply(401, "")  # IMDSv1 is refused
        elif self.path == "/latest/meta-data/instance-id":
            self._reply(200, INSTANCE)
        elif self.path.removeprefix(self.TAGS) in self.tags:
            self._reply(200, self.tags[self.path.removeprefix(self.TAGS)])
        else:
            self._reply(404, "")

    def _reply(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def imds() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), ImdsV2)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


def maximum(
    cloudwatch: CloudWatchClient, name: str, dimension: tuple[str, str] = (DIMENSION, INSTANCE)
) -> float | None:
    """What idle_stop reads: the per-minute Maximum over the last few minutes."""
    now = datetime.now(UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": dimension[0], "Value": dimension[1]}],
        StartTime=now - timedelta(minutes=5),
        EndTime=now + timedelta(minutes=1),
        Period=60,
        Statistics=["Maximum"],
    )["Datapoints"]
    return max(p["Maximum"] for p in points) if points else None


def test_names_match_the_contract_idle_stop_reads() -> None:
    assert (NAMESPACE, DIMENSION, ACTIVE_SESSIONS) == (
        contract.NAMESPACE,
        contract.DIMENSION,
        contract.ACTIVE_SESSIONS,
    )


def test_fleet_names_match_the_contract_the_scaling_policy_reads() -> None:
    assert (WAITING_SESSIONS, SESSION_LOAD, FLEET_DIMENSION) == (
        contract.WAITING_SESSIONS,
        contract.SESSION_LOAD,
        contract.FLEET_DIMENSION,
    )


def test_a_fleet_instance_publishes_waiting_sessions_and_its_load_and_stays_ready_draining(
    cloudwatch: CloudWatchClient,
    start_backend: Callable[..., BackendServer],
    open_client: Callable[..., tuple[Client, dict[str, Any]]],
    tmp_path: Path,
) -> None:
    """One slot, one session running and one waiting: WaitingSessions=1 per instance and
    SessionLoad=2 for the group. A draining backend answers /ready 503 but works:
    BackendReady stays 1 (the alarm is for broken backends)."""
    drain_file = tmp_path / "drain"
    backend = start_backend(
        max_sessions=1, max_wait_s=120, queue_status_interval_s=0.2, drain_file=drain_file
    )
    running, _ = open_client(backend.ws_url)
    running.start()
    waiting, _ = open_client(backend.ws_url)
    waiting.send_json({"type": "init", "params": {}})
    waiting.send_json({"type": "start"})
    assert waiting.receive_type("queue_status")["state"] == "waiting"
    state = tmp_path / "heartbeat.json"

    data = beat(
        cloudwatch,
        INSTANCE,
        backend_url=backend.url,
        triton_metrics_url=None,
        state_file=state,
        group_name=GROUP,
    )
    load = next(d for d in data if d["MetricName"] == SESSION_LOAD)
    assert load["Dimensions"] == [{"Name": FLEET_DIMENSION, "Value": GROUP}]
    assert maximum(cloudwatch, WAITING_SESSIONS) == 1
    assert maximum(cloudwatch, SESSION_LOAD, (FLEET_DIMENSION, GROUP)) == 2

    drain_file.touch()
    assert waiting.receive_type("error")["code"] == "draining"
    data = beat(
        cloudwatch, INSTANCE, backend_url=backend.url, triton_metrics_url=None, state_file=state
    )
    values = {d["MetricName"]: d.get("Value") for d in data}
    assert values[BACKEND_READY] == 1 and values[ACTIVE_SESSIONS] == 1
    assert SESSION_LOAD not in values, "outside a fleet: no group metric"


def test_an_open_session_is_published_and_keeps_the_instance_up(
    cloudwatch: CloudWatchClient,
    start_backend: Callable[..., BackendServer],
    open_client: Callable[..., tuple[Client, dict[str, Any]]],
    tmp_path: Path,
) -> None:
    backend = start_backend()
    state = tmp_path / "heartbeat.json"
    idle = beat(
        cloudwatch, INSTANCE, backend_url=backend.url, triton_metrics_url=None, state_file=state
    )
    assert {d["MetricName"]: d.get("Value") for d in idle}[ACTIVE_SESSIONS] == 0
    assert maximum(cloudwatch, BACKEND_READY) == 1

    client, _ = open_client(backend.ws_url)
    client.start()
    client.connection.send(jpeg_frame())
    client.receive_type("inference")
    busy = beat(
        cloudwatch, INSTANCE, backend_url=backend.url, triton_metrics_url=None, state_file=state
    )
    assert maximum(cloudwatch, ACTIVE_SESSIONS) == 1
    latency = next(d for d in busy if d["MetricName"] == INFERENCE_LATENCY_MS)
    assert sum(latency["Counts"]) == 1 and latency["Unit"] == "Milliseconds"


def test_a_dead_backend_reports_zero_sessions_and_not_ready(
    cloudwatch: CloudWatchClient, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    closed = f"http://127.0.0.1:{ServerAddress.on_free_ports().http_port}"
    code = main(
        [
            "instance",
            "heartbeat",
            "--backend-url",
            closed,
            "--triton-metrics-url",
            f"{closed}/metrics",
            "--instance-id",
            INSTANCE,
            "--state-file",
            str(tmp_path / "state.json"),
            "--region",
            "us-east-1",
            "--fleet-group-name",
            GROUP,
        ]
    )
    assert code == 0 and "BackendReady=0.0" in capsys.readouterr().out
    assert maximum(cloudwatch, ACTIVE_SESSIONS) == 0
    assert maximum(cloudwatch, WAITING_SESSIONS) == 0
    assert maximum(cloudwatch, BACKEND_READY) == 0
    assert maximum(cloudwatch, SESSION_LOAD, (FLEET_DIMENSION, GROUP)) == 0


def test_latency_counts_only_new_observations_and_survive_a_restart() -> None:
    before = {0.01: 2.0, 0.05: 5.0, float("inf"): 6.0}
    now = {0.01: 2.0, 0.05: 8.0, float("inf"): 10.0}
    assert latency_values(now, before) == ([30.0, 50.0], [3.0, 1.0])
    restarted = {0.01: 1.0, 0.05: 1.0, float("inf"): 1.0}
    assert latency_values(restarted, before) == ([5.0], [1.0])
    assert latency_values(now, now) == ([], [])


def test_the_unit_s_command_takes_its_id_from_imdsv2_and_its_region_from_user_data(
    fake_aws: None, imds: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As cvstack-heartbeat.service runs it: no --instance-id, no --region; instance.env gives
    CVSTACK_AWS_REGION and IMDS (tokens required) the id, at botocore's endpoint variable."""
    monkeypatch.setenv("CVSTACK_AWS_REGION", "eu-west-1")
    monkeypatch.setenv(IMDS_ENDPOINT_VARIABLE, imds)
    closed = f"http://127.0.0.1:{ServerAddress.on_free_ports().http_port}"
    code = main(
        [
            "instance",
            "heartbeat",
            "--backend-url",
            closed,
            "--triton-metrics-url",
            f"{closed}/metrics",
            "--state-file",
            str(tmp_path / "state.json"),
        ]
    )
    assert code == 0
    assert maximum(boto3.client("cloudwatch", region_name="eu-west-1"), BACKEND_READY) == 0
    assert maximum(boto3.client("cloudwatch", region_name="us-east-1"), BACKEND_READY) is None
