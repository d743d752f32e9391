"""Demand-aware /start in fleet mode on moto (Auto Scaling, CloudWatch, the DynamoDB demand
table): the group is raised for the fleet's live + waiting sessions or the window's /start
calls, never lowered, capped at its maximum, within the budget, and a burst of concurrent
calls ends where the demand needs it; a Stubber for warm-pool instances, which moto never
returns."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import boto3
import pytest
from botocore.stub import Stubber

from lambdas.shared.api_response import ApiAnswer
from lambdas.shared.demand import recent_starts, record_start
from lambdas.shared.metrics import FLEET_DIMENSION, INSTANCES_RUNNING, NAMESPACE, WAITING_SESSIONS
from lambdas.start_server import handler as start_handler
from lambdas.start_server.fleet import start_fleet
from lambdas.start_server.fleet_demand import MAX_WRITES
from tests.lambdas.conftest import REGION, api_event
from tests.lambdas.fleet_fixtures import (
    DEMAND_TABLE,
    GROUP,
    SerialClient,
    desired_capacity,
    make_demand_table,
    make_fleet,
    member_ids,
    publish_sessions,
    start_clients,
    start_config,
)

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

SECRET = "s" * 48
BURST = 20


@pytest.fixture(autouse=True)
def demand_table(moto_aws: None) -> str:
    return make_demand_table()


def start(now: datetime | None = None, budget_h: float = 4.0, autoscaling: Any = None) -> ApiAnswer:
    autoscaling_client, cloudwatch, dynamodb = start_clients()
    return start_fleet(
        autoscaling or autoscaling_client,
        cloudwatch,
        dynamodb,
        start_config(budget_h),
        secret=SECRET,
        now=now or datetime.now(UTC),
    )


def earlier_starts(count: int, at: datetime | None = None) -> None:
    """Visitors who called /start moments ago."""
    dynamodb = start_clients()[2]
    for _ in range(count):
        record_start(dynamodb, DEMAND_TABLE, at or datetime.now(UTC))


def starts_in_window(now: datetime | None = None) -> int:
    return recent_starts(start_clients()[2], DEMAND_TABLE, now or datetime.now(UTC), 600)


def fleet_of(answer: ApiAnswer) -> dict[str, Any]:
    fleet = answer.body["fleet"]
    assert isinstance(fleet, dict)
    return fleet


def test_recent_starts_size_a_fleet_at_zero(moto_aws: None) -> None:
    """Six visitors a minute or two ago and this one: 7 sessions coming need 2 instances."""
    make_fleet()
    now = datetime.now(UTC)
    earlier_starts(6, now - timedelta(minutes=2))
    answer = start(now)
    assert answer.status_code == 200
    assert desired_capacity() == 2
    fleet = fleet_of(answer)
    assert (fleet["desired"], fleet["demand"], fleet["scale_out_withheld"]) == (2, 7, False)
    assert (answer.body["state"], answer.body["estimated_wait_s"]) == ("pending", 330)
    assert starts_in_window(now) == 7


def test_starts_outside_the_window_are_no_demand(moto_aws: None) -> None:
    make_fleet()
    now = datetime.now(UTC)
    earlier_starts(12, now - timedelta(minutes=11))
    answer = start(now)
    assert (desired_capacity(), fleet_of(answer)["demand"]) == (1, 1)


def test_live_and_waiting_sessions_raise_a_running_fleet(moto_aws: None) -> None:
    """One instance, full (4 live) with 3 waiting: 7 sessions need a second instance."""
    make_fleet(desired=1)
    now = datetime.now(UTC)
    (instance,) = member_ids()
    publish_sessions(instance, now - timedelta(minutes=1), 4)
    publish_sessions(instance, now - timedelta(minutes=1), 3, WAITING_SESSIONS)
    answer = start(now)
    assert desired_capacity() == 2
    fleet = fleet_of(answer)
    assert (fleet["sessions"], fleet["waiting"], fleet["free_slots"], fleet["demand"]) == (
        7,
        3,
        0,
        1,
    )
    # The visitor waits for the new instance; moto has no warm pool: a fresh launch.
    assert (answer.body["state"], answer.body["estimated_wait_s"]) == ("running", 330)


def test_a_fleet_with_room_answers_no_wait_and_stays(moto_aws: None) -> None:
    make_fleet(desired=1)
    now = datetime.now(UTC)
    publish_sessions(member_ids()[0], now - timedelta(minutes=1), 2)
    answer = start(now)
    assert desired_capacity() == 1
    assert (answer.body["state"], answer.body["estimated_wait_s"]) == ("running", 0)
    assert (fleet_of(answer)["sessions"], fleet_of(answer)["free_slots"]) == (2, 2)


def test_the_maximum_caps_the_demand(moto_aws: None) -> None:
    make_fleet(max_size=3)
    earlier_starts(29)
    answer = start()
    assert desired_capacity() == 3
    assert (fleet_of(answer)["desired"], fleet_of(answer)["demand"]) == (3, 30)


def test_a_fleet_above_the_demand_is_never_lowered(moto_aws: None) -> None:
    make_fleet(desired=4)
    answer = start()
    assert desired_capacity() == 4
    assert fleet_of(answer)["desired"] == 4


def put_fleet_running_minutes(at: datetime, instance_minutes: int) -> None:
    """idle_stop's per-minute count of the group's running instances (3 at a time)."""
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


def a_spent_day() -> datetime:
    """22:00 today, after 5 GPU hours ran from 09:00 (the budget is 4)."""
    now = datetime.now(UTC).replace(hour=22, minute=0, second=0, microsecond=0)
    put_fleet_running_minutes(now.replace(hour=9), 300)
    return now


def test_the_budget_keeps_a_fleet_at_zero_and_counts_no_demand(moto_aws: None) -> None:
    make_fleet()
    now = a_spent_day()
    earlier_starts(8, now - timedelta(minutes=1))
    answer = start(now)
    assert (answer.status_code, answer.body["error"]) == (429, "gpu_budget_reached")
    assert desired_capacity() == 0
    assert starts_in_window(now) == 8


def test_over_budget_a_running_fleet_serves_but_is_not_raised(moto_aws: None) -> None:
    make_fleet(desired=1)
    now = a_spent_day()
    earlier_starts(11, now - timedelta(minutes=1))
    answer = start(now)
    assert answer.status_code == 200
    assert desired_capacity() == 1
    fleet = fleet_of(answer)
    assert (fleet["desired"], fleet["demand"], fleet["scale_out_withheld"]) == (1, 12, True)
    message = str(answer.body["message"])
    assert "today's GPU budget is spent (5.00 of 4 h)" in message
    assert "adds none until 00:00 UTC" in message
    # Under the budget the same demand (and this call: 13) is served with 4 instances.
    assert fleet_of(start(now, budget_h=6.0))["desired"] == 4


def test_a_burst_of_concurrent_starts_ends_at_what_it_needs(moto_aws: None) -> None:
    """20 visitors call /start at once on a fleet at zero (max 6): 20 sessions need 5."""
    make_fleet(max_size=6)
    lock = threading.Lock()
    autoscaling, cloudwatch, dynamodb = (SerialClient(client, lock) for client in start_clients())
    ready = threading.Barrier(BURST)

    def visitor() -> ApiAnswer:
        ready.wait(timeout=60)
        return start_fleet(
            autoscaling,
            cast("CloudWatchClient", cloudwatch),
            dynamodb,
            start_config(),
            secret=SECRET,
            now=datetime.now(UTC),
        )

    with ThreadPoolExecutor(max_workers=BURST) as pool:
        futures = [pool.submit(visitor) for _ in range(BURST)]
        answers = [future.result(timeout=120) for future in futures]
    assert [answer.status_code for answer in answers] == [200] * BURST
    assert desired_capacity() == 5
    assert starts_in_window() == BURST
    assert max(fleet_of(answer)["demand"] for answer in answers) == BURST
    assert all(1 <= fleet_of(answer)["desired"] <= 5 for answer in answers)


def test_a_stale_lower_write_is_repaired_by_its_own_writer(moto_aws: None) -> None:
    """Another /start writes 5 while this one, which read 16 starts, is about to write 4: this
    one's 4 lands last, then its check reads 20 starts and writes 5 again."""
    make_fleet(max_size=6)
    now = datetime.now(UTC)
    earlier_starts(15, now)
    plain = start_clients()[0]
    written: list[int] = []

    def other_caller(operation: str, arguments: dict[str, Any]) -> None:
        if operation != "set_desired_capacity":
            return
        written.append(arguments["DesiredCapacity"])
        if written == [4]:
            earlier_starts(4, now)
            plain.set_desired_capacity(
                AutoScalingGroupName=GROUP, DesiredCapacity=5, HonorCooldown=False
            )

    answer = start(now, autoscaling=SerialClient(plain, before=other_caller))
    assert written == [4, 5]
    assert desired_capacity() == 5
    assert (fleet_of(answer)["desired"], fleet_of(answer)["demand"]) == (5, 20)


def test_a_call_stops_after_its_writes_when_the_group_keeps_going_down(
    moto_aws: None,
) -> None:
    """Something lowers the group after each write: the call gives up after MAX_WRITES."""
    make_fleet(max_size=6)
    earlier_starts(19)
    plain = start_clients()[0]
    written: list[int] = []

    def lower_after_each_write(operation: str, arguments: dict[str, Any]) -> None:
        if operation == "set_desired_capacity":
            written.append(arguments["DesiredCapacity"])
        elif operation == "describe_auto_scaling_groups" and written:
            plain.set_desired_capacity(AutoScalingGroupName=GROUP, DesiredCapacity=1)

    answer = start(autoscaling=SerialClient(plain, before=lower_after_each_write))
    assert answer.status_code == 200
    assert written == [5] * MAX_WRITES
    assert fleet_of(answer)["desired"] == 1


@pytest.fixture
def stubbed_autoscaling(moto_aws: None) -> Iterator[tuple[Any, Stubber]]:
    autoscaling = boto3.client("autoscaling", region_name=REGION)
    with Stubber(autoscaling) as stubber:
        yield autoscaling, stubber
        stubber.assert_no_pending_responses()


def group_answer(desired: int, in_service: int) -> dict[str, Any]:
    instances = [
        {
            "InstanceId": f"i-{n:017x}",
            "LifecycleState": "InService",
            "ProtectedFromScaleIn": True,
            "AvailabilityZone": f"{REGION}a",
            "HealthStatus": "Healthy",
        }
        for n in range(in_service)
    ]
    group = {
        "AutoScalingGroupName": GROUP,
        "MinSize": 0,
        "MaxSize": 6,
        "DesiredCapacity": desired,
        "DefaultCooldown": 300,
        "AvailabilityZones": [f"{REGION}a"],
        "HealthCheckType": "EC2",
        "CreatedTime": datetime(2026, 12, 1, tzinfo=UTC),
        "Instances": instances,
    }
    return {"AutoScalingGroups": [group]}


def warm_answer(stopped: int) -> dict[str, Any]:
    instances = [
        {
            "InstanceId": f"i-{100 + n:017x}",
            "LifecycleState": "Warmed:Stopped",
            "ProtectedFromScaleIn": False,
            "AvailabilityZone": f"{REGION}a",
            "HealthStatus": "Healthy",
        }
        for n in range(stopped)
    ]
    return {"Instances": instances}


@pytest.mark.parametrize(("warm_stopped", "wait_s"), [(2, 120), (1, 330)])
def test_the_wait_is_a_warm_boot_when_the_pool_covers_the_scale_out(
    stubbed_autoscaling: tuple[Any, Stubber], warm_stopped: int, wait_s: int
) -> None:
    """One full instance and 9 visitors coming: 2 more instances, from the warm pool when it
    holds 2 stopped ones, otherwise one of them is a fresh launch."""
    autoscaling, stubber = stubbed_autoscaling
    now = datetime.now(UTC)
    publish_sessions(f"i-{0:017x}", now - timedelta(minutes=1), 4)
    earlier_starts(8, now)
    stubber.add_response("describe_auto_scaling_groups", group_answer(1, 1))
    stubber.add_response("describe_warm_pool", warm_answer(warm_stopped))
    stubber.add_response("create_or_update_tags", {})
    stubber.add_response(
        "set_desired_capacity",
        {},
        {"AutoScalingGroupName": GROUP, "DesiredCapacity": 3, "HonorCooldown": False},
    )
    stubber.add_response("describe_auto_scaling_groups", group_answer(3, 1))
    answer = start(now, autoscaling=autoscaling)
    assert (answer.body["state"], answer.body["estimated_wait_s"]) == ("running", wait_s)
    assert (fleet_of(answer)["desired"], fleet_of(answer)["warm_stopped"]) == (3, warm_stopped)


@pytest.fixture
def fleet_deployed(moto_aws: None, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """start_server's environment in fleet mode, as the stack sets it."""
    secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name="cvstack/session-token-secret", SecretString=SECRET
    )
    monkeypatch.delenv("INSTANCE_ID", raising=False)
    for name, value in {
        "MODE": "fleet",
        "FLEET_GROUP_NAME": GROUP,
        "DEMAND_TABLE_NAME": DEMAND_TABLE,
        "SESSIONS_PER_INSTANCE": "4",
        "DEMAND_WINDOW_S": "600",
        "ENDPOINT_HOST": "gpu.example.com",
        "SESSION_SECRET_ARN": secret["ARN"],
        "DAILY_BUDGET_GPU_HOURS": "4",
        "BOOT_ESTIMATE_S": "120",
        "TOKEN_TTL_S": "900",
    }.items():
        monkeypatch.setenv(name, value)
    start_handler._session_secret.cache_clear()
    yield
    start_handler._session_secret.cache_clear()


def test_the_handler_in_fleet_mode(fleet_deployed: None) -> None:
    make_fleet()
    earlier_starts(4)
    response = start_handler.handler(api_event("POST", "/start"), None)
    assert response["statusCode"] == 200
    body = json.loads(str(response["body"]))
    assert (body["fleet"]["desired"], body["fleet"]["demand"]) == (2, 5)
    assert desired_capacity() == 2


def test_the_handler_answers_a_missing_demand_table_clearly(
    fleet_deployed: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_fleet()
    monkeypatch.setenv("DEMAND_TABLE_NAME", "cvstack-no-such-table")
    response = start_handler.handler(api_event("POST", "/start"), None)
    body = json.loads(str(response["body"]))
    assert (response["statusCode"], body["error"]) == (500, "demand_table_missing")
    assert "cvstack-no-such-table does not exist" in body["message"]
    assert desired_capacity() == 0
