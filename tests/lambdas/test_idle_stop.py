"""idle_stop against moto with an injected clock: publishes the running flag, reads activity,
stops only when idle past the limit."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.idle_stop import handler as idle_handler
from lambdas.idle_stop.logic import check_idle
from lambdas.idle_stop.policy import IdlePolicy
from lambdas.shared.aws_errors import AwsCallError
from lambdas.shared.metrics import (
    ACTIVE_SESSIONS,
    DIMENSION,
    INSTANCE_RUNNING,
    NAMESPACE,
    START_REQUESTS,
)
from tests.lambdas.conftest import REGION, run_instance

POLICY = IdlePolicy(idle_minutes=15, boot_grace_minutes=5)
SCHEDULED_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event", "detail": {}}


def clients() -> tuple[Any, Any]:
    return boto3.client("ec2", region_name=REGION), boto3.client("cloudwatch", region_name=REGION)


def launched_at(instance_id: str) -> datetime:
    ec2, _ = clients()
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return instance["LaunchTime"]  # type: ignore[no-any-return]


def state_of(instance_id: str) -> str:
    ec2, _ = clients()
    instance = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]
    return str(instance["State"]["Name"])


def put(instance_id: str, name: str, at: datetime, value: float) -> None:
    clients()[1].put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": name,
                "Dimensions": [{"Name": DIMENSION, "Value": instance_id}],
                "Timestamp": at,
                "Value": value,
            }
        ],
    )


def running_flags(instance_id: str) -> list[float]:
    _, cloudwatch = clients()
    now = datetime.now(launched_at(instance_id).tzinfo)
    points = cloudwatch.get_metric_statistics(
        Namespace=NAMESPACE,
        MetricName=INSTANCE_RUNNING,
        Dimensions=[{"Name": DIMENSION, "Value": instance_id}],
        StartTime=now - timedelta(hours=1),
        EndTime=now + timedelta(hours=1),
        Period=3600,
        Statistics=["Maximum"],
    )["Datapoints"]
    return [p["Maximum"] for p in points]


def test_boot_grace_keeps_a_silent_instance(instance_id: str) -> None:
    now = launched_at(instance_id) + timedelta(minutes=3)
    report = check_idle(*clients(), instance_id, POLICY, now=now)
    assert (report["action"], report["reason"]) == ("none", "boot_grace")
    assert state_of(instance_id) == "running"
    assert running_flags(instance_id) == [1.0]


def test_an_open_session_keeps_it_running(instance_id: str) -> None:
    launch = launched_at(instance_id)
    for minute in range(5, 29):
        put(instance_id, ACTIVE_SESSIONS, launch + timedelta(minutes=minute), 0)
    put(instance_id, ACTIVE_SESSIONS, launch + timedelta(minutes=25), 2)
    report = check_idle(*clients(), instance_id, POLICY, now=launch + timedelta(minutes=30))
    assert (report["action"], report["reason"]) == ("none", "recently_active")
    assert report["idle_s"] == 240
    assert state_of(instance_id) == "running"


def test_a_start_call_counts_as_activity(instance_id: str) -> None:
    launch = launched_at(instance_id)
    put(instance_id, START_REQUESTS, launch + timedelta(minutes=20), 1)
    report = check_idle(*clients(), instance_id, POLICY, now=launch + timedelta(minutes=30))
    assert report["action"] == "none"


def test_idle_past_the_limit_is_stopped(instance_id: str) -> None:
    launch = launched_at(instance_id)
    put(instance_id, ACTIVE_SESSIONS, launch + timedelta(minutes=14), 1)
    for minute in range(15, 31):
        put(instance_id, ACTIVE_SESSIONS, launch + timedelta(minutes=minute), 0)
    report = check_idle(*clients(), instance_id, POLICY, now=launch + timedelta(minutes=31))
    assert (report["action"], report["reason"], report["idle_s"]) == ("stop", "idle", 960)
    assert state_of(instance_id) == "stopped"


def test_stopped_instance_only_publishes_the_flag(instance_id: str) -> None:
    clients()[0].stop_instances(InstanceIds=[instance_id])
    report = check_idle(*clients(), instance_id, POLICY, now=launched_at(instance_id))
    assert report == {"state": "stopped", "action": "none", "reason": "not_running"}
    assert running_flags(instance_id) == [0.0]


def test_a_failed_stop_is_a_clear_error(instance_id: str) -> None:
    ec2, cloudwatch = clients()
    launch = launched_at(instance_id)
    instance = {"InstanceId": instance_id, "State": {"Name": "running"}, "LaunchTime": launch}
    with Stubber(ec2) as stubber:
        stubber.add_response("describe_instances", {"Reservations": [{"Instances": [instance]}]})
        stubber.add_client_error("stop_instances", "UnauthorizedOperation", "not allowed")
        with pytest.raises(AwsCallError) as error:
            check_idle(ec2, cloudwatch, instance_id, POLICY, now=launch + timedelta(hours=1))
    assert error.value.code == "permission_denied"
    assert "ec2:StopInstances" in error.value.message


@pytest.mark.parametrize("event", [None, [], {"source": "aws.s3"}, {"source": "aws.events"}])
def test_handler_refuses_anything_but_a_scheduled_event(event: object) -> None:
    with pytest.raises(ValueError, match="expects an EventBridge 'Scheduled Event'"):
        idle_handler.handler(event, None)


def test_handler_against_moto_server(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    instance_id = run_instance()
    monkeypatch.setenv("INSTANCE_ID", instance_id)
    monkeypatch.setenv("IDLE_MINUTES", "15")
    monkeypatch.setenv("BOOT_GRACE_MINUTES", "5")
    report = idle_handler.handler(SCHEDULED_EVENT, None)
    assert (report["state"], report["action"], report["reason"]) == (
        "running",
        "none",
        "boot_grace",
    )
    assert running_flags(instance_id) == [1.0]


def test_handler_raises_on_a_missing_instance(
    moto_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INSTANCE_ID", "i-0000000000000000f")
    with pytest.raises(AwsCallError, match="instance_missing"):
        idle_handler.handler(SCHEDULED_EVENT, None)
