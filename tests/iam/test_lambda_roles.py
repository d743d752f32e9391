"""The lifecycle Lambdas' real code under their template roles: every call they make is
allowed (the calls outside their roles: test_lambda_denials.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from lambdas.idle_stop import handler as idle_handler
from lambdas.idle_stop.logic import check_idle
from lambdas.idle_stop.policy import IdlePolicy
from lambdas.shared.instance import BOOT_REQUESTED_TAG, LAST_START_TAG
from lambdas.start_server import handler as start_handler
from lambdas.status import handler as status_handler
from tests.iam.conftest import Cloud
from tests.iam.helpers import as_lambda, assert_denied_but_admin_allowed

ORIGIN = "https://app.example.com"
SCHEDULED = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


def api_event(method: str, path: str) -> dict[str, object]:
    return {"httpMethod": method, "resource": path, "path": path, "headers": {}, "body": None}


def body_of(response: dict[str, object]) -> dict[str, object]:
    body: dict[str, object] = json.loads(str(response["body"]))
    return body


@pytest.mark.parametrize("initial", ["stopped", "running"])
def test_start_server_starts_or_reports_the_instance(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch, initial: str
) -> None:
    """DescribeInstances, GetMetricStatistics (budget), CreateTags (last start),
    StartInstances and GetSecretValue (token) are all allowed."""
    cloud.set_instance_state(initial)
    as_lambda(monkeypatch, cloud, "start_server")
    start_handler._session_secret.cache_clear()
    response = start_handler.handler(api_event("POST", "/start"), None)
    start_handler._session_secret.cache_clear()
    assert response["statusCode"] == 200, response
    assert body_of(response)["state"] in {"pending", "running"}
    assert cloud.instance_state() == "running"
    assert LAST_START_TAG in cloud.instance_tags()
    booted = initial == "stopped"
    assert (BOOT_REQUESTED_TAG in cloud.instance_tags()) == booted, "tagged only when it boots"


@pytest.mark.parametrize("initial", ["stopped", "running"])
def test_status_reports_the_instance(
    cloud: Cloud, monkeypatch: pytest.MonkeyPatch, initial: str
) -> None:
    cloud.set_instance_state(initial)
    as_lambda(monkeypatch, cloud, "status")
    response = status_handler.handler(api_event("GET", "/status"), None)
    assert response["statusCode"] == 200, response
    body = body_of(response)
    assert body["state"] == initial
    assert "boot_estimate_problem" not in body, "GetMetricData (boot history) is allowed"
    assert (body["boot_estimate_s"], body["boot_samples"]) == (
        int(cloud.lambda_environment("status")["BOOT_ESTIMATE_S"]),
        0,
    )


def test_idle_stop_stops_the_idle_instance(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduled check publishes its flag, reads activity and stops an idle instance."""
    as_lambda(monkeypatch, cloud, "idle_stop")
    assert idle_handler.handler(SCHEDULED, None)["reason"] == "boot_grace"  # just launched
    role = cloud.lambda_session("idle_stop")
    policy = IdlePolicy(
        idle_minutes=float(cloud.lambda_environment("idle_stop")["IDLE_MINUTES"]),
        boot_grace_minutes=float(cloud.lambda_environment("idle_stop")["BOOT_GRACE_MINUTES"]),
    )
    report = check_idle(
        role.client("ec2"),
        role.client("cloudwatch"),
        cloud.lambda_environment("idle_stop")["INSTANCE_ID"],
        policy,
        now=datetime.now(UTC) + timedelta(hours=2),
    )
    assert report["action"] == "stop", report
    assert cloud.instance_state() == "stopped"
    assert idle_handler.handler(SCHEDULED, None)["reason"] == "not_running"


@pytest.mark.parametrize("module", ["start_server", "status", "idle_stop"])
def test_each_function_writes_its_own_log_group_only(cloud: Cloud, module: str) -> None:
    """The Lambda runtime writes logs with the function's role: its group, no other."""
    own = cloud.lambda_log_group(module)
    other = cloud.lambda_log_group("status" if module != "status" else "idle_stop")
    logs = cloud.lambda_session(module).client("logs")
    logs.create_log_stream(logGroupName=own, logStreamName="s")
    logs.put_log_events(
        logGroupName=own,
        logStreamName="s",
        logEvents=[{"timestamp": int(datetime.now(UTC).timestamp() * 1000), "message": "hi"}],
    )
    assert_denied_but_admin_allowed(
        cloud.lambda_session(module),
        cloud.admin,
        lambda s: s.client("logs").create_log_stream(logGroupName=other, logStreamName=module),
    )
