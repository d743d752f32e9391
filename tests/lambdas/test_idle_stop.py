"""idle_stop against moto with an injected clock: publishes the running flag, reads activity,
stops only when idle past the limit."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.idle_stop import handler as idle_handler
from lambdas.idle_stop.logic import check_idle
from lambdas.idle_stop.policy import IdlePolicy
from lambdas.shared.aws_errors import AwsCallError
from lambdas.shared.instance import LAST_START_TAG
from lambdas.shared.metrics import ACTIVE_SESSIONS, DIMENSION, INSTANCE_RUNNING, NAMESPACE
from lambdas.shared.settings import SettingsError
from lambdas.start_server.logic import StartConfig, start_server
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
    # Judged up to the latest published minute (28), not to now (30): 28 - 26.
    assert report["idle_s"] == 120
    assert state_of(instance_id) == "running"


def test_idle_past_the_limit_is_stopped(instance_id: str) -> None:
    launch = launched_at(instance_id)
    put(instance_id, ACTIVE_SESSIONS, launch + timedelta(minutes=14), 1)
    for minute in range(15, 31):
        put(instance_id, ACTIVE_SESSIONS, launch + timedelta(minutes=minute), 0)
    report = check_idle(*clients(), instance_id, POLICY, now=launch + timedelta(minutes=31))
    assert (report["action"], report["reason"], report["idle_s"]) == ("stop", "idle", 900)
    assert state_of(instance_id) == "stopped"


def heartbeat(instance_id: str, first: datetime, last: datetime, value: float = 0) -> None:
    """ActiveSessions datapoints, one a minute, from `first` to `last` included."""
    minute = first
    while minute <= last:
        put(instance_id, ACTIVE_SESSIONS, minute, value)
        minute += timedelta(minutes=1)


def test_a_start_just_before_the_idle_limit_keeps_it_running(instance_id: str) -> None:
    """The race of issue 10: /start at 19:30 after launch (idle since the 5 min grace), the
    check at 20:00. CloudWatch has no datapoint of that start yet; the instance tag has."""
    launch = launched_at(instance_id)
    ec2, cloudwatch = clients()
    heartbeat(instance_id, launch + timedelta(minutes=5), launch + timedelta(minutes=19))
    started = start_server(
        ec2,
        cloudwatch,
        StartConfig(instance_id, "gpu.example.com", 4.0, 120, 900),
        secret="s" * 48,
        now=launch + timedelta(minutes=19, seconds=30),
    )
    assert started.status_code == 200
    report = check_idle(ec2, cloudwatch, instance_id, POLICY, now=launch + timedelta(minutes=20))
    assert (report["action"], report["reason"]) == ("none", "recently_active")
    assert state_of(instance_id) == "running"
    # The idle clock restarts at the start: stopped 15 min after it, not before.
    heartbeat(instance_id, launch + timedelta(minutes=20), launch + timedelta(minutes=36))
    at_limit = launch + timedelta(minutes=34, seconds=29)
    assert check_idle(ec2, cloudwatch, instance_id, POLICY, now=at_limit)["action"] == "none"
    later = launch + timedelta(minutes=35, seconds=30)
    assert check_idle(ec2, cloudwatch, instance_id, POLICY, now=later)["action"] == "stop"


def test_a_session_not_yet_published_is_not_idleness(instance_id: str) -> None:
    """A session opened at 19:30; CloudWatch, 2 min behind, shows the heartbeat up to 18:00.
    The unpublished minutes are not counted as idle, so the check at 20:00 waits."""
    launch = launched_at(instance_id)
    heartbeat(instance_id, launch + timedelta(minutes=5), launch + timedelta(minutes=18))
    now = launch + timedelta(minutes=20)
    report = check_idle(*clients(), instance_id, POLICY, now=now)
    assert (report["action"], report["idle_s"]) == ("none", 780)
    heartbeat(instance_id, launch + timedelta(minutes=19), launch + timedelta(minutes=20), 1)
    report = check_idle(*clients(), instance_id, POLICY, now=now + timedelta(minutes=2))
    assert (report["action"], report["reason"]) == ("none", "recently_active")
    assert state_of(instance_id) == "running"


def test_a_silent_heartbeat_counts_as_idle_past_the_lag_allowance(instance_id: str) -> None:
    launch = launched_at(instance_id)
    heartbeat(instance_id, launch + timedelta(minutes=5), launch + timedelta(minutes=10))
    almost = check_idle(*clients(), instance_id, POLICY, now=launch + timedelta(minutes=22))
    assert (almost["action"], almost["idle_s"]) == ("none", 840)
    report = check_idle(*clients(), instance_id, POLICY, now=launch + timedelta(minutes=23))
    assert (report["action"], report["idle_s"]) == ("stop", 900)
    assert state_of(instance_id) == "stopped"


def test_a_malformed_start_tag_is_ignored(instance_id: str) -> None:
    ec2, cloudwatch = clients()
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": LAST_START_TAG, "Value": "soon"}])
    now = launched_at(instance_id) + timedelta(minutes=20)
    assert check_idle(ec2, cloudwatch, instance_id, POLICY, now=now)["action"] == "stop"


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
    monkeypatch.setenv("IDLE_MINUTES", "15")
    monkeypatch.setenv("BOOT_GRACE_MINUTES", "5")
    with pytest.raises(AwsCallError, match="instance_missing"):
        idle_handler.handler(SCHEDULED_EVENT, None)


def test_handler_takes_a_zero_boot_grace(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """cdk.json allows bootGraceMinutes 0, and so does the Lambda (it once refused it)."""
    monkeypatch.setenv("INSTANCE_ID", run_instance())
    monkeypatch.setenv("IDLE_MINUTES", "15")
    monkeypatch.setenv("BOOT_GRACE_MINUTES", "0")
    assert idle_handler.handler(SCHEDULED_EVENT, None)["reason"] != "boot_grace"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("IDLE_MINUTES", "0", "IDLE_MINUTES='0': Input should be greater than 0"),
        ("BOOT_GRACE_MINUTES", "-1", "BOOT_GRACE_MINUTES='-1': Input should be greater than or"),
        ("IDLE_MINUTES", "", "IDLE_MINUTES='': Input should be a valid number"),
    ],
)
def test_handler_refuses_a_bad_policy_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv("INSTANCE_ID", "i-0123456789abcdef0")
    monkeypatch.setenv("IDLE_MINUTES", "15")
    monkeypatch.setenv("BOOT_GRACE_MINUTES", "5")
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=re.escape(message)):
        idle_handler.handler(SCHEDULED_EVENT, None)
