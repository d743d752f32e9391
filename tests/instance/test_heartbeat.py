"""The heartbeat against moto's CloudWatch, probing the real backend (and a dead one)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest

from backend.cli import main
from backend.instance.heartbeat import (
    ACTIVE_SESSIONS,
    BACKEND_READY,
    DIMENSION,
    IMDS_ENDPOINT_VARIABLE,
    INFERENCE_LATENCY_MS,
    NAMESPACE,
    beat,
    latency_values,
)
from backend.triton_server.local_server import ServerAddress
from lambdas.shared import metrics as contract
from tests.backend.service.conftest import BackendServer, Client, jpeg_frame

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

INSTANCE = "i-0123456789abcdef0"


@pytest.fixture
def cloudwatch(fake_aws: None) -> Iterator[CloudWatchClient]:
    yield boto3.client("cloudwatch", region_name="us-east-1")


class ImdsV2(BaseHTTPRequestHandler):
    """EC2's instance metadata service with tokens required (`http_tokens = required`)."""

    TOKEN = "imds-session-token"

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


def maximum(cloudwatch: CloudWatchClient, name: str) -> float | None:
    """What idle_stop reads: the per-minute Maximum over the last few minutes."""
    now = datetime.now(UTC)
    points = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=name,
        Dimensions=[{"Name": DIMENSION, "Value": INSTANCE}],
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
        ]
    )
    assert code == 0 and "BackendReady=0.0" in capsys.readouterr().out
    assert maximum(cloudwatch, ACTIVE_SESSIONS) == 0
    assert maximum(cloudwatch, BACKEND_READY) == 0


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
