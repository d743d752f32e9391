"""Fleet mode: the GPU fleet is one EC2 Auto Scaling group (min 0, max N, a warm pool of
stopped instances). Read its state from Auto Scaling and its GPU hours from CloudWatch, record
/start calls on the group and change its desired capacity (its sessions: fleet_sessions.py).

Scaling on load is AWS's (target tracking on sessions per in-service instance); the Lambdas
only raise the group for the demand /start sees coming (never lower it) and take it to zero
when the whole fleet is idle (idle_stop). docs/fleet.md describes the design.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.aws_errors import AwsCallError, aws_call_error
from lambdas.shared.instance import LAST_START_TAG, parse_time
from lambdas.shared.metrics import FLEET_DIMENSION, INSTANCES_RUNNING, minute_values

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

# boto3's Auto Scaling client (the venv has no mypy_boto3_autoscaling stubs).
AutoScalingClient = Any

IN_SERVICE = "InService"
# Lifecycle states of an instance on its way into service (a warm-pool start or a launch).
ARRIVING_STATES = frozenset({"Pending", "Pending:Wait", "Pending:Proceed"})


@dataclass(frozen=True)
class FleetMember:
    """One instance of the group (not of its warm pool) and its Auto Scaling lifecycle state."""

    instance_id: str
    lifecycle_state: str
    protected: bool


@dataclass(frozen=True)
class FleetState:
    """The group's sizes, members and warm pool, and the latest /start recorded on it."""

    group_name: str
    desired: int
    min_size: int
    max_size: int
    members: tuple[FleetMember, ...]
    warm_stopped: int
    warm_pending: int
    last_start_at: datetime | None = None

    @property
    def in_service(self) -> tuple[str, ...]:
        """Instances the load balancer may route sessions to."""
        return tuple(m.instance_id for m in self.members if m.lifecycle_state == IN_SERVICE)

    @property
    def arriving(self) -> tuple[str, ...]:
        """Instances starting from the warm pool or launching, not yet in service."""
        return tuple(m.instance_id for m in self.members if m.lifecycle_state in ARRIVING_STATES)

    @property
    def leaving(self) -> tuple[str, ...]:
        """Instances on their way out (draining, terminating, back to the warm pool)."""
        staying = ARRIVING_STATES | {IN_SERVICE}
        return tuple(m.instance_id for m in self.members if m.lifecycle_state not in staying)

    def summary(self) -> dict[str, object]:
        """The fleet as /start and /status report it."""
        return {
            "desired": self.desired,
            "min_size": self.min_size,
            "max_size": self.max_size,
            "in_service": len(self.in_service),
            "pending": len(self.arriving),
            "leaving": len(self.leaving),
            "warm_stopped": self.warm_stopped,
            "warm_pending": self.warm_pending,
        }


def describe_fleet(autoscaling: AutoScalingClient, group_name: str) -> FleetState:
    """The group and its warm pool; `AwsCallError` `fleet_missing` when the group is gone."""
    group = _describe_group(autoscaling, group_name)
    warm = _call(
        "DescribeWarmPool",
        group_name,
        lambda: autoscaling.describe_warm_pool(AutoScalingGroupName=group_name),
    )
    tags = {t.get("Key"): t.get("Value", "") for t in group.get("Tags", [])}
    warm_states = [i.get("LifecycleState", "") for i in warm.get("Instances", [])]
    return FleetState(
        group_name=group_name,
        desired=int(group["DesiredCapacity"]),
        min_size=int(group["MinSize"]),
        max_size=int(group["MaxSize"]),
        members=tuple(
            FleetMember(i["InstanceId"], i["LifecycleState"], bool(i.get("ProtectedFromScaleIn")))
            for i in group.get("Instances", [])
        ),
        warm_stopped=sum(s == "Warmed:Stopped" for s in warm_states),
        warm_pending=sum(s.startswith("Warmed:Pending") for s in warm_states),
        last_start_at=parse_time(tags.get(LAST_START_TAG)),
    )


def record_fleet_start(autoscaling: AutoScalingClient, group_name: str, now: datetime) -> None:
    """Write the /start time on the group's `LAST_START_TAG` (read back at once by idle_stop)."""
    try:
        autoscaling.create_or_update_tags(
            Tags=[
                {
                    "ResourceId": group_name,
                    "ResourceType": "auto-scaling-group",
                    "Key": LAST_START_TAG,
                    "Value": now.astimezone(UTC).isoformat(),
                    "PropagateAtLaunch": False,
                }
            ]
        )
    except (ClientError, BotoCoreError) as error:
        raise aws_call_error(error, "autoscaling:CreateOrUpdateTags") from error


def check_can_start(fleet: FleetState) -> None:
    """`AwsCallError` `fleet_disabled` when the group may hold no instance at all."""
    if fleet.max_size < 1:
        raise AwsCallError(
            "fleet_disabled",
            f"the Auto Scaling group {fleet.group_name} has a maximum size of 0, so no GPU can "
            "start; raise it (cdk.json) and redeploy the CDK stack",
        )


def read_desired(autoscaling: AutoScalingClient, group_name: str) -> int:
    """The group's desired capacity now (one DescribeAutoScalingGroups call)."""
    return int(_describe_group(autoscaling, group_name)["DesiredCapacity"])


def set_desired_capacity(autoscaling: AutoScalingClient, group_name: str, desired: int) -> None:
    """SetDesiredCapacity, with the group's errors in words a caller can act on."""
    _call(
        "SetDesiredCapacity",
        group_name,
        lambda: autoscaling.set_desired_capacity(
            AutoScalingGroupName=group_name, DesiredCapacity=desired, HonorCooldown=False
        ),
    )


def fleet_gpu_hours_today(cloudwatch: CloudWatchClient, group_name: str, now: datetime) -> float:
    """GPU hours the whole group ran since 00:00 UTC: idle_stop's per-minute running count."""
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    sums = minute_values(
        cloudwatch,
        group_name,
        INSTANCES_RUNNING,
        statistic="Sum",
        start=midnight,
        end=now,
        period_s=86400,
        dimension=FLEET_DIMENSION,
    )
    return sum(sums.values()) / 60


def _describe_group(autoscaling: AutoScalingClient, group_name: str) -> Any:
    """The group's description; `fleet_missing` when there is none."""
    groups = _call(
        "DescribeAutoScalingGroups",
        group_name,
        lambda: autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[group_name]),
    )
    if not groups["AutoScalingGroups"]:
        raise _fleet_missing(group_name)
    return groups["AutoScalingGroups"][0]


def _call(action: str, group_name: str, call: Callable[[], Any]) -> Any:
    """One Auto Scaling call, its errors in words a caller can act on."""
    try:
        return call()
    except ClientError as error:
        if _is_missing_group(error):
            raise _fleet_missing(group_name) from error
        raise aws_call_error(error, f"autoscaling:{action}") from error
    except BotoCoreError as error:
        raise aws_call_error(error, f"autoscaling:{action}") from error


def _is_missing_group(error: ClientError) -> bool:
    """Auto Scaling answers ValidationError ('... not found') for a group that does not exist."""
    detail = error.response.get("Error", {})
    return detail.get("Code") == "ValidationError" and "not found" in detail.get("Message", "")


def _fleet_missing(group_name: str) -> AwsCallError:
    return AwsCallError(
        "fleet_missing",
        f"the Auto Scaling group {group_name} does not exist; redeploy the CDK stack",
    )
