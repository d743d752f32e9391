"""start_server's logic against moto (every state, the budget guard, tokens) and a botocore
Stubber for what moto cannot produce (pending, stopping, capacity and throttling errors)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from backend.security.session_token import TokenError, verify_token
from lambdas.shared.aws_errors import AwsCallError
from lambdas.shared.instance import LAST_START_TAG
from lambdas.shared.metrics import DIMENSION, INSTANCE_RUNNING, NAMESPACE
from lambdas.start_server.logic import StartConfig, gpu_hours_today, start_server
from tests.lambdas.conftest import REGION

SECRET = "s" * 48
INSTANCE = "i-0123456789abcdef0"


def config(instance_id: str, budget_h: float = 4.0) -> StartConfig:
    return StartConfig(
        instance_id=instance_id,
        endpoint_host="gpu.example.com",
        daily_budget_gpu_hours=budget_h,
        boot_estimate_s=120,
        token_ttl_s=900,
    )


def clients() -> tuple[Any, Any]:
    return boto3.client("ec2", region_name=REGION), boto3.client("cloudwatch", region_name=REGION)


def state_of(instance_id: str) -> str:
    ec2, _ = clients()
    reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    return str(reservations[0]["Instances"][0]["State"]["Name"])


def stop(instance_id: str) -> None:
    clients()[0].stop_instances(InstanceIds=[instance_id])


def put_running_minutes(instance_id: str, at: datetime, minutes: int) -> None:
    _, cloudwatch = clients()
    cloudwatch.put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": INSTANCE_RUNNING,
                "Dimensions": [{"Name": DIMENSION, "Value": instance_id}],
                "Timestamp": at + timedelta(minutes=i),
                "Value": 1,
            }
            for i in range(minutes)
        ],
    )


def test_stopped_instance_is_started_and_a_valid_token_returned(instance_id: str) -> None:
    stop(instance_id)
    ec2, cloudwatch = clients()
    now = datetime.now(UTC)
    outcome = start_server(ec2, cloudwatch, config(instance_id), secret=SECRET, now=now)
    assert outcome.status_code == 200
    assert outcome.body["state"] == "pending"
    assert outcome.body["estimated_wait_s"] == 120
    assert outcome.body["endpoint"] == "wss://gpu.example.com/ws/inference"
    claims = verify_token(str(outcome.body["token"]), SECRET, now=now.timestamp())
    assert claims.expires_at == outcome.body["token_expires_at"] == int(now.timestamp()) + 900
    assert state_of(instance_id) == "running"
    assert last_start_tag(instance_id) == now.isoformat()


def last_start_tag(instance_id: str) -> str | None:
    ec2, _ = clients()
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
    return tags.get(LAST_START_TAG)


def test_token_expires_after_its_ttl_and_fails_under_another_secret(instance_id: str) -> None:
    ec2, cloudwatch = clients()
    now = datetime.now(UTC)
    token = str(
        start_server(ec2, cloudwatch, config(instance_id), secret=SECRET, now=now).body["token"]
    )
    with pytest.raises(TokenError) as expired:
        verify_token(token, SECRET, now=now.timestamp() + 900)
    assert expired.value.code == "token_expired"
    with pytest.raises(TokenError) as forged:
        verify_token(token, "x" * 48, now=now.timestamp())
    assert forged.value.code == "token_invalid"


def test_running_instance_is_reported_not_started_again(instance_id: str) -> None:
    ec2, cloudwatch = clients()
    launched = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0][
        "LaunchTime"
    ]
    for _ in range(2):
        outcome = start_server(
            ec2,
            cloudwatch,
            config(instance_id),
            secret=SECRET,
            now=launched + timedelta(seconds=50),
        )
        assert (outcome.status_code, outcome.body["state"]) == (200, "running")
        assert outcome.body["estimated_wait_s"] == 70
    assert state_of(instance_id) == "running"
    assert last_start_tag(instance_id) == (launched + timedelta(seconds=50)).isoformat()


def test_terminated_instance_is_a_clear_error(instance_id: str) -> None:
    ec2, cloudwatch = clients()
    ec2.terminate_instances(InstanceIds=[instance_id])
    with pytest.raises(AwsCallError) as error:
        start_server(ec2, cloudwatch, config(instance_id), secret=SECRET, now=datetime.now(UTC))
    assert error.value.code == "instance_missing"
    assert "terminated" in error.value.message
    assert error.value.retry_after_s is None


def test_unknown_instance_is_a_clear_error(moto_aws: None) -> None:
    ec2, cloudwatch = clients()
    with pytest.raises(AwsCallError) as error:
        start_server(ec2, cloudwatch, config(INSTANCE), secret=SECRET, now=datetime.now(UTC))
    assert error.value.code == "instance_missing"
    assert "redeploy" in error.value.message


def test_budget_guard_refuses_once_todays_gpu_hours_are_spent(instance_id: str) -> None:
    stop(instance_id)
    ec2, cloudwatch = clients()
    now = datetime.now(UTC).replace(hour=22, minute=0, second=0, microsecond=0)
    midnight = now.replace(hour=0)
    put_running_minutes(instance_id, midnight - timedelta(hours=1), 50)  # yesterday
    put_running_minutes(instance_id, midnight + timedelta(hours=8), 59)
    assert gpu_hours_today(cloudwatch, instance_id, now) == pytest.approx(59 / 60)
    outcome = start_server(ec2, cloudwatch, config(instance_id, 1.0), secret=SECRET, now=now)
    assert outcome.status_code == 200

    stop(instance_id)
    put_running_minutes(instance_id, midnight + timedelta(hours=9), 1)
    outcome = start_server(ec2, cloudwatch, config(instance_id, 1.0), secret=SECRET, now=now)
    assert outcome.status_code == 429
    assert outcome.body["error"] == "gpu_budget_reached"
    assert "00:00 UTC" in str(outcome.body["message"])
    assert outcome.retry_after_s == 2 * 3600 + 1
    assert "token" not in outcome.body
    assert state_of(instance_id) == "stopped"


@pytest.fixture
def stubbed_ec2(moto_aws: None) -> Iterator[tuple[Any, Stubber]]:
    """An EC2 client whose answers the test scripts (states and errors moto never shows)."""
    ec2 = boto3.client("ec2", region_name=REGION)
    with Stubber(ec2) as stubber:
        yield ec2, stubber
        stubber.assert_no_pending_responses()


def describe_answer(state: str, launched: datetime) -> dict[str, Any]:
    instance = {"InstanceId": INSTANCE, "State": {"Name": state}, "LaunchTime": launched}
    return {"Reservations": [{"Instances": [instance]}]}


def test_pending_instance_reports_the_remaining_boot_estimate(
    stubbed_ec2: tuple[Any, Stubber],
) -> None:
    ec2, stubber = stubbed_ec2
    now = datetime.now(UTC)
    stubber.add_response(
        "describe_instances", describe_answer("pending", now - timedelta(seconds=30))
    )
    stubber.add_response("create_tags", {})
    outcome = start_server(ec2, clients()[1], config(INSTANCE), secret=SECRET, now=now)
    assert (outcome.status_code, outcome.body["state"], outcome.body["estimated_wait_s"]) == (
        200,
        "pending",
        90,
    )


def test_stopping_instance_says_when_to_retry(stubbed_ec2: tuple[Any, Stubber]) -> None:
    ec2, stubber = stubbed_ec2
    now = datetime.now(UTC)
    stubber.add_response("describe_instances", describe_answer("stopping", now))
    outcome = start_server(ec2, clients()[1], config(INSTANCE), secret=SECRET, now=now)
    assert (outcome.status_code, outcome.retry_after_s) == (409, 30)
    assert outcome.body["error"] == "instance_stopping"
    assert "token" not in outcome.body


@pytest.mark.parametrize(
    ("code", "expected", "retry_after_s"),
    [
        ("InsufficientInstanceCapacity", "insufficient_capacity", 60),
        ("RequestLimitExceeded", "aws_throttled", 5),
        ("IncorrectInstanceState", "instance_busy", 30),
        ("UnauthorizedOperation", "permission_denied", None),
        ("InternalError", "aws_error", None),
    ],
)
def test_start_errors_are_clear_and_say_whether_to_retry(
    stubbed_ec2: tuple[Any, Stubber], code: str, expected: str, retry_after_s: int | None
) -> None:
    ec2, stubber = stubbed_ec2
    now = datetime.now(UTC)
    stubber.add_response("describe_instances", describe_answer("stopped", now))
    stubber.add_response("create_tags", {})
    stubber.add_client_error("start_instances", code, f"{code} from AWS")
    with pytest.raises(AwsCallError) as error:
        start_server(ec2, clients()[1], config(INSTANCE), secret=SECRET, now=now)
    assert (error.value.code, error.value.retry_after_s) == (expected, retry_after_s)
    assert error.value.message


def test_throttled_describe_is_retryable(stubbed_ec2: tuple[Any, Stubber]) -> None:
    ec2, stubber = stubbed_ec2
    stubber.add_client_error("describe_instances", "Throttling", "Rate exceeded")
    with pytest.raises(AwsCallError) as error:
        start_server(ec2, clients()[1], config(INSTANCE), secret=SECRET, now=datetime.now(UTC))
    assert (error.value.code, error.value.retry_after_s) == ("aws_throttled", 5)
    assert "ec2:DescribeInstances" in error.value.message


def test_a_start_that_cannot_be_recorded_is_refused(stubbed_ec2: tuple[Any, Stubber]) -> None:
    """Without the last-start tag idle_stop could stop the instance a minute later."""
    ec2, stubber = stubbed_ec2
    now = datetime.now(UTC)
    stubber.add_response("describe_instances", describe_answer("running", now))
    stubber.add_client_error("create_tags", "UnauthorizedOperation", "not allowed")
    with pytest.raises(AwsCallError) as error:
        start_server(ec2, clients()[1], config(INSTANCE), secret=SECRET, now=now)
    assert error.value.code == "permission_denied"
    assert "ec2:CreateTags" in error.value.message
