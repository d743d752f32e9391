"""idle_stop in fleet mode on moto: the fleet-wide running count for the budget, idle-to-zero
across every instance's sessions (live and waiting) and the group's last-start tag, and the
fleet settings."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from lambdas.idle_stop import handler as idle_handler
from lambdas.idle_stop.fleet import check_fleet_idle
from lambdas.idle_stop.policy import IdlePolicy
from lambdas.shared.fleet import fleet_gpu_hours_today, record_fleet_start
from lambdas.shared.metrics import WAITING_SESSIONS
from lambdas.shared.settings import SettingsError
from lambdas.status.settings import StatusSettings
from tests.lambdas.conftest import REGION
from tests.lambdas.fleet_fixtures import (
    GROUP,
    desired_capacity,
    make_fleet,
    member_ids,
    publish_sessions,
)

POLICY = IdlePolicy(idle_minutes=15, boot_grace_minutes=5)


def check(now: datetime) -> dict[str, object]:
    return check_fleet_idle(
        boto3.client("autoscaling", region_name=REGION),
        boto3.client("ec2", region_name=REGION),
        boto3.client("cloudwatch", region_name=REGION),
        GROUP,
        POLICY,
        now=now,
    )


def minutes_ago(now: datetime, minutes: int) -> datetime:
    return now - timedelta(minutes=minutes)


def publish_minutes(instance_id: str, now: datetime, sessions_by_age: dict[int, float]) -> None:
    for age, sessions in sessions_by_age.items():
        publish_sessions(instance_id, minutes_ago(now, age), sessions)


def later() -> datetime:
    """A moment well after moto launched the instances (beyond the boot grace)."""
    return datetime.now(UTC).replace(second=0, microsecond=0) + timedelta(minutes=40)


def test_a_fleet_at_zero_is_left_alone_and_counted_as_not_running(moto_aws: None) -> None:
    make_fleet()
    report = check(datetime.now(UTC))
    assert report == {"desired": 0, "running": 0, "action": "none", "reason": "at_zero"}


def test_a_fleet_idle_everywhere_goes_to_zero(moto_aws: None) -> None:
    make_fleet(desired=2)
    now = later()
    for instance_id in member_ids():
        publish_minutes(instance_id, now, {age: 0 for age in range(1, 20)})
    report = check(now)
    assert (report["action"], report["reason"], report["running"]) == ("scale_to_zero", "idle", 2)
    assert desired_capacity() == 0


def test_one_busy_instance_keeps_the_whole_fleet_up(moto_aws: None) -> None:
    make_fleet(desired=3)
    now = later()
    quiet, quiet_too, busy = member_ids()
    for instance_id in (quiet, quiet_too):
        publish_minutes(instance_id, now, {age: 0 for age in range(1, 20)})
    publish_minutes(busy, now, {age: (1 if age == 6 else 0) for age in range(1, 20)})
    report = check(now)
    assert (report["action"], report["reason"]) == ("none", "recently_active")
    assert desired_capacity() == 3


def test_waiting_sessions_keep_the_fleet_up(moto_aws: None) -> None:
    """Sessions queued for a slot are use too, even where no session is live."""
    make_fleet(desired=2)
    now = later()
    for instance_id in member_ids():
        publish_minutes(instance_id, now, {age: 0 for age in range(1, 20)})
    publish_sessions(member_ids()[0], minutes_ago(now, 6), 2, WAITING_SESSIONS)
    report = check(now)
    assert (report["action"], report["reason"]) == ("none", "recently_active")
    assert desired_capacity() == 2


def test_a_recent_start_on_the_group_keeps_it_up(moto_aws: None) -> None:
    make_fleet(desired=1)
    now = later()
    publish_minutes(member_ids()[0], now, {age: 0 for age in range(1, 20)})
    record_fleet_start(boto3.client("autoscaling", region_name=REGION), GROUP, minutes_ago(now, 2))
    assert check(now)["reason"] == "recently_active"
    assert desired_capacity() == 1


def test_a_floor_set_by_the_operator_is_respected(moto_aws: None) -> None:
    make_fleet(desired=1)
    boto3.client("autoscaling", region_name=REGION).update_auto_scaling_group(
        AutoScalingGroupName=GROUP, MinSize=1
    )
    now = later()
    publish_minutes(member_ids()[0], now, {age: 0 for age in range(1, 20)})
    assert check(now)["reason"] == "min_size_above_zero"
    assert desired_capacity() == 1


def test_running_instances_are_counted_for_the_fleet_budget(moto_aws: None) -> None:
    """Each check publishes how many of the group's instances run: three instances, one
    check, three GPU minutes for the budget."""
    make_fleet(desired=3)
    check(datetime.now(UTC))
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    now = datetime.now(UTC) + timedelta(minutes=1)
    assert fleet_gpu_hours_today(cloudwatch, GROUP, now) == pytest.approx(3 / 60)


def fleet_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    for name in ("INSTANCE_ID", "FLEET_GROUP_NAME", "MODE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in {"IDLE_MINUTES": "15", "BOOT_GRACE_MINUTES": "5", **extra}.items():
        monkeypatch.setenv(name, value)


def scheduled_event() -> dict[str, Any]:
    return {"source": "aws.events", "detail-type": "Scheduled Event"}


def test_the_handler_in_fleet_mode(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> None:
    make_fleet()
    fleet_env(monkeypatch, MODE="fleet", FLEET_GROUP_NAME=GROUP)
    report = idle_handler.handler(scheduled_event(), None)
    assert report["reason"] == "at_zero"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"MODE": "fleet"}, "environment variable FLEET_GROUP_NAME is not set (MODE=fleet)"),
        ({}, "environment variable INSTANCE_ID is not set (MODE=single)"),
        (
            {"MODE": "fleet", "FLEET_GROUP_NAME": GROUP, "INSTANCE_ID": "i-0123456789abcdef0"},
            "INSTANCE_ID='i-0123456789abcdef0' is set, but MODE=fleet uses FLEET_GROUP_NAME only",
        ),
        ({"MODE": "fleets"}, "MODE='fleets': Input should be 'single' or 'fleet'"),
    ],
)
def test_a_mode_without_its_target_fails_the_cold_start(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    fleet_env(monkeypatch, **variables)
    with pytest.raises(SettingsError, match=re.escape(message)):
        idle_handler.handler(scheduled_event(), None)


def test_fleet_settings_of_status(monkeypatch: pytest.MonkeyPatch) -> None:
    fleet_env(monkeypatch, MODE="fleet", FLEET_GROUP_NAME=f" {GROUP} ")
    monkeypatch.setenv("ENDPOINT_HOST", "gpu.example.com")
    settings = StatusSettings.load()
    assert (settings.fleet_group_name, settings.sessions_per_instance) == (GROUP, 4)
    monkeypatch.setenv("SESSIONS_PER_INSTANCE", "0")
    StatusSettings.settings_clear_cache()
    with pytest.raises(SettingsError, match="SESSIONS_PER_INSTANCE='0'"):
        StatusSettings.load()


def test_the_stack_can_write_a_fleet_environment() -> None:
    environment = StatusSettings.environment(
        mode="fleet", fleet_group_name=GROUP, endpoint_host="gpu.example.com"
    )
    assert environment["MODE"] == "fleet"
    assert environment["INSTANCE_ID"] == ""
    assert environment["SESSIONS_PER_INSTANCE"] == "4"
    with pytest.raises(ValueError, match="FLEET_GROUP_NAME is not set"):
        StatusSettings.environment(mode="fleet", endpoint_host="gpu.example.com")
