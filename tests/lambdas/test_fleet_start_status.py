"""Fleet mode's /start and /status against moto (Auto Scaling groups, warm pools, CloudWatch,
the DynamoDB demand table), and a botocore Stubber for what moto does not model (warm-pool
instances, arriving and leaving lifecycle states, Auto Scaling's errors)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from backend.security.session_token import verify_token
from lambdas.shared.aws_errors import AwsCallError
from lambdas.shared.fleet import describe_fleet
from lambdas.shared.instance import LAST_START_TAG
from lambdas.shared.metrics import (
    FLEET_DIMENSION,
    INSTANCES_RUNNING,
    NAMESPACE,
    WAITING_SESSIONS,
)
from lambdas.start_server.fleet import start_fleet
from lambdas.status.fleet import fleet_status
from tests.lambdas.conftest import REGION, ReadyServer
from tests.lambdas.fleet_fixtures import (
    GROUP,
    desired_capacity,
    make_demand_table,
    make_fleet,
    member_ids,
    publish_sessions,
    start_clients,
    start_config,
)

SECRET = "s" * 48


@pytest.fixture(autouse=True)
def demand_table(moto_aws: None) -> str:
    """Every test here runs on moto, with the stack's demand table."""
    return make_demand_table()


def start(now: datetime | None = None, budget_h: float = 4.0) -> Any:
    return start_fleet(
        *start_clients(), start_config(budget_h), secret=SECRET, now=now or datetime.now(UTC)
    )


def test_a_fleet_at_zero_is_scaled_to_one_and_a_valid_token_returned(moto_aws: None) -> None:
    make_fleet()
    now = datetime.now(UTC)
    answer = start(now)
    assert answer.status_code == 200
    assert desired_capacity() == 1
    body = answer.body
    # moto has no warm-pool instances and starts nothing "pending": a fresh launch's estimate.
    assert (body["state"], body["estimated_wait_s"]) == ("pending", 330)
    assert body["fleet"]["desired"] == 1
    verify_token(str(body["token"]), SECRET, now=now.timestamp())
    assert describe_fleet(start_clients()[0], GROUP).last_start_at == now


def test_start_never_lowers_a_scaled_out_fleet(moto_aws: None) -> None:
    make_fleet(desired=3)
    answer = start()
    assert desired_capacity() == 3
    assert (answer.body["state"], answer.body["estimated_wait_s"]) == ("running", 0)
    assert answer.body["fleet"]["in_service"] == 3


def test_a_fleet_whose_maximum_is_zero_is_a_clear_error(moto_aws: None) -> None:
    make_fleet(max_size=0)
    with pytest.raises(AwsCallError) as error:
        start()
    assert error.value.code == "fleet_disabled"
    assert "maximum size of 0" in error.value.message
    assert error.value.retry_after_s is None


def test_a_missing_group_is_a_clear_error(moto_aws: None) -> None:
    with pytest.raises(AwsCallError) as error:
        start()
    assert error.value.code == "fleet_missing"
    assert "redeploy" in error.value.message


def put_fleet_running_minutes(at: datetime, instance_minutes: int) -> None:
    start_clients()[1].put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": INSTANCES_RUNNING,
                "Dimensions": [{"Name": FLEET_DIMENSION, "Value": GROUP}],
                "Timestamp": at + timedelta(minutes=i),
                "Value": 3,
            }
            for i in range(instance_minutes // 3)
        ],
    )


def test_budget_counts_gpu_hours_across_the_fleet(moto_aws: None) -> None:
    """Three instances for 80 minutes are 4 GPU hours: a fleet at zero stays there."""
    make_fleet()
    now = datetime.now(UTC).replace(hour=22, minute=0, second=0, microsecond=0)
    put_fleet_running_minutes(now.replace(hour=9), 240)
    answer = start(now, budget_h=4.0)
    assert (answer.status_code, answer.body["error"]) == (429, "gpu_budget_reached")
    assert answer.retry_after_s == 2 * 3600 + 1
    assert desired_capacity() == 0
    assert start(now, budget_h=4.5).status_code == 200


def test_a_fleet_already_up_still_serves_once_the_budget_is_spent(moto_aws: None) -> None:
    """As in single mode, the budget stops starts, not users of a running GPU."""
    make_fleet(desired=2)
    now = datetime.now(UTC).replace(hour=22, minute=0, second=0, microsecond=0)
    put_fleet_running_minutes(now.replace(hour=9), 600)
    assert start(now).status_code == 200


@pytest.fixture
def stubbed_autoscaling(moto_aws: None) -> Iterator[tuple[Any, Stubber]]:
    """An Auto Scaling client whose answers the test scripts."""
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    with Stubber(autoscaling) as stubber:
        yield autoscaling, stubber
        stubber.assert_no_pending_responses()


def group_answer(desired: int, states: list[str], max_size: int = 5) -> dict[str, Any]:
    instances = [
        {
            "InstanceId": f"i-{n:017x}",
            "LifecycleState": state,
            "ProtectedFromScaleIn": state == "InService",
            "AvailabilityZone": f"{REGION}a",
            "HealthStatus": "Healthy",
        }
        for n, state in enumerate(states)
    ]
    group = {
        "AutoScalingGroupName": GROUP,
        "MinSize": 0,
        "MaxSize": max_size,
        "DesiredCapacity": desired,
        "DefaultCooldown": 300,
        "AvailabilityZones": [f"{REGION}a"],
        "HealthCheckType": "EC2",
        "CreatedTime": datetime(2026, 12, 1, tzinfo=UTC),
        "Instances": instances,
    }
    return {"AutoScalingGroups": [group]}


def warm_answer(states: list[str]) -> dict[str, Any]:
    instances = [
        {
            "InstanceId": f"i-{100 + n:017x}",
            "LifecycleState": state,
            "ProtectedFromScaleIn": False,
            "AvailabilityZone": f"{REGION}a",
            "HealthStatus": "Healthy",
        }
        for n, state in enumerate(states)
    ]
    return {"Instances": instances}


def test_a_warm_pool_start_promises_the_boot_estimate(
    stubbed_autoscaling: tuple[Any, Stubber],
) -> None:
    autoscaling, stubber = stubbed_autoscaling
    stubber.add_response("describe_auto_scaling_groups", group_answer(0, []))
    stubber.add_response("describe_warm_pool", warm_answer(["Warmed:Stopped", "Warmed:Pending"]))
    stubber.add_response("create_or_update_tags", {})
    stubber.add_response(
        "set_desired_capacity",
        {},
        {"AutoScalingGroupName": GROUP, "DesiredCapacity": 1, "HonorCooldown": False},
    )
    stubber.add_response("describe_auto_scaling_groups", group_answer(1, ["Pending"]))
    answer = start_fleet(
        autoscaling, *start_clients()[1:], start_config(), secret=SECRET, now=datetime.now(UTC)
    )
    assert (answer.body["state"], answer.body["estimated_wait_s"]) == ("pending", 120)
    fleet = answer.body["fleet"]
    assert isinstance(fleet, dict)
    assert (fleet["warm_stopped"], fleet["warm_pending"]) == (1, 1)


@pytest.mark.parametrize(
    ("operation", "code", "expected", "retry_after_s"),
    [
        ("set_desired_capacity", "ScalingActivityInProgress", "fleet_busy", 5),
        ("set_desired_capacity", "ResourceContention", "fleet_busy", 5),
        ("set_desired_capacity", "AccessDenied", "permission_denied", None),
        ("create_or_update_tags", "AccessDenied", "permission_denied", None),
        ("create_or_update_tags", "Throttling", "aws_throttled", 5),
    ],
)
def test_auto_scaling_errors_are_clear_and_say_whether_to_retry(
    stubbed_autoscaling: tuple[Any, Stubber],
    operation: str,
    code: str,
    expected: str,
    retry_after_s: int | None,
) -> None:
    autoscaling, stubber = stubbed_autoscaling
    stubber.add_response("describe_auto_scaling_groups", group_answer(0, []))
    stubber.add_response("describe_warm_pool", warm_answer([]))
    if operation == "set_desired_capacity":
        stubber.add_response("create_or_update_tags", {})
    stubber.add_client_error(operation, code, f"{code} from AWS")
    with pytest.raises(AwsCallError) as error:
        start_fleet(
            autoscaling, *start_clients()[1:], start_config(), secret=SECRET, now=datetime.now(UTC)
        )
    assert (error.value.code, error.value.retry_after_s) == (expected, retry_after_s)
    assert error.value.message


def test_a_group_deleted_meanwhile_is_fleet_missing(
    stubbed_autoscaling: tuple[Any, Stubber],
) -> None:
    autoscaling, stubber = stubbed_autoscaling
    stubber.add_response("describe_auto_scaling_groups", group_answer(0, []))
    stubber.add_response("describe_warm_pool", warm_answer([]))
    stubber.add_response("create_or_update_tags", {})
    stubber.add_client_error(
        "set_desired_capacity", "ValidationError", f"AutoScalingGroup name not found - {GROUP}"
    )
    with pytest.raises(AwsCallError) as error:
        start_fleet(
            autoscaling, *start_clients()[1:], start_config(), secret=SECRET, now=datetime.now(UTC)
        )
    assert error.value.code == "fleet_missing"


def status(ready_host: str = "127.0.0.1:9", autoscaling: Any = None) -> dict[str, object]:
    return fleet_status(
        autoscaling or start_clients()[0],
        start_clients()[1],
        GROUP,
        ready_host,
        sessions_per_instance=4,
        scheme="http",
        timeout_s=1.0,
        boot_default_s=120,
        now=datetime.now(UTC),
    )


def test_status_of_a_fleet_at_zero(moto_aws: None) -> None:
    make_fleet()
    body = status()
    assert (body["state"], body["ready"], body["backend"]) == ("stopped", False, None)
    assert body["fleet"] == {
        "desired": 0,
        "min_size": 0,
        "max_size": 5,
        "in_service": 0,
        "pending": 0,
        "leaving": 0,
        "warm_stopped": 0,
        "warm_pending": 0,
        "sessions": 0,
        "waiting": 0,
        "sessions_reported_by": 0,
        "capacity": 0,
        "free_slots": 0,
    }


def test_status_counts_sessions_and_free_slots_and_probes_ready(
    moto_aws: None, ready_server: ReadyServer
) -> None:
    make_fleet(desired=3)
    now = datetime.now(UTC)
    first, second, third = member_ids()
    publish_sessions(first, now - timedelta(minutes=3), 1)
    publish_sessions(first, now - timedelta(minutes=1), 4)  # the latest datapoint counts
    publish_sessions(second, now - timedelta(minutes=2), 3)
    publish_sessions(first, now - timedelta(minutes=1), 2, WAITING_SESSIONS)
    body = status(ready_server.host)
    assert (body["state"], body["ready"]) == ("running", True)
    fleet = body["fleet"]
    assert isinstance(fleet, dict)
    # 4 + 3 live and 2 waiting (they take the next free slots); `third` reported nothing yet.
    assert (fleet["in_service"], fleet["sessions"], fleet["waiting"]) == (3, 9, 2)
    assert fleet["sessions_reported_by"] == 2
    assert (fleet["capacity"], fleet["free_slots"]) == (12, 3)
    assert ready_server.requests == ["/ready"]
    assert third not in {first, second}


def test_waiting_sessions_beyond_the_capacity_leave_no_free_slot(moto_aws: None) -> None:
    make_fleet(desired=1)
    now = datetime.now(UTC)
    (instance,) = member_ids()
    publish_sessions(instance, now - timedelta(minutes=1), 4)
    publish_sessions(instance, now - timedelta(minutes=1), 5, WAITING_SESSIONS)
    fleet = status()["fleet"]
    assert isinstance(fleet, dict)
    assert (fleet["sessions"], fleet["waiting"], fleet["capacity"], fleet["free_slots"]) == (
        9,
        5,
        4,
        0,
    )


def test_status_is_not_ready_while_the_backend_is_not(
    moto_aws: None, ready_server: ReadyServer
) -> None:
    make_fleet(desired=1)
    ready_server.status = 503
    ready_server.body = {"ready": False, "reason": "triton not ready"}
    body = status(ready_server.host)
    assert (body["state"], body["ready"]) == ("running", False)


@pytest.mark.parametrize(
    ("desired", "states", "expected"),
    [
        (1, ["Pending"], "pending"),
        (1, [], "pending"),
        (0, ["Terminating:Wait"], "stopping"),
        (0, ["Warmed:Pending:Wait"], "stopping"),
    ],
)
def test_status_words_for_a_fleet_on_its_way_up_or_down(
    stubbed_autoscaling: tuple[Any, Stubber], desired: int, states: list[str], expected: str
) -> None:
    autoscaling, stubber = stubbed_autoscaling
    stubber.add_response("describe_auto_scaling_groups", group_answer(desired, states))
    stubber.add_response("describe_warm_pool", warm_answer([]))
    body = status(autoscaling=autoscaling)
    assert (body["state"], body["ready"]) == (expected, False)


def test_status_of_a_missing_group_is_a_clear_error(moto_aws: None) -> None:
    with pytest.raises(AwsCallError) as error:
        status()
    assert error.value.code == "fleet_missing"


def test_last_start_tag_is_written_on_the_group(moto_aws: None) -> None:
    make_fleet()
    now = datetime(2026, 12, 2, 9, 30, tzinfo=UTC)
    start(now)
    found = start_clients()[0].describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
    tags = {t["Key"]: t["Value"] for t in found["AutoScalingGroups"][0]["Tags"]}
    assert tags[LAST_START_TAG] == "2026-12-02T09:30:00+00:00"
