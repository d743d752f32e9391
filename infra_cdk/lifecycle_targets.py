"""What each lifecycle Lambda acts on, by mode: the one GPU instance or the fleet's group.

Each target gives a function its settings fields (names from lambdas/<function>/settings.py)
and the IAM statements of exactly the calls its code makes in that mode.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from aws_cdk import aws_iam as iam

from infra_cdk import permissions
from infra_cdk.config import StackConfig
from infra_cdk.demand_table import DemandTable
from lambdas.shared.instance import BOOT_REQUESTED_TAG, LAST_START_TAG


@dataclass(frozen=True)
class FunctionAccess:
    """A function's mode-specific settings (by field name) and IAM statements."""

    settings: dict[str, object]
    statements: list[iam.PolicyStatement] = field(default_factory=list)


class LifecycleTarget(Protocol):
    """What start_server, status and idle_stop are given in one mode."""

    def start_server(self) -> FunctionAccess: ...
    def status(self) -> FunctionAccess: ...
    def idle_stop(self) -> FunctionAccess: ...


@dataclass(frozen=True)
class InstanceTarget:
    """Single mode: the GPU instance, by id and ARN."""

    instance_id: str
    instance_arn: str

    def start_server(self) -> FunctionAccess:
        """DescribeInstances, StartInstances, the last-start and boot-requested tags, the
        budget's statistics."""
        return FunctionAccess(
            {"instance_id": self.instance_id},
            [
                permissions.describe_instances(),
                permissions.on_instance(self.instance_arn, "ec2:StartInstances"),
                permissions.tag_last_start(self.instance_arn, LAST_START_TAG, BOOT_REQUESTED_TAG),
                permissions.read_metrics(),
            ],
        )

    def status(self) -> FunctionAccess:
        """DescribeInstances, and the instance's boot times for the estimate
        (lambdas/shared/boot_times.py)."""
        return FunctionAccess(
            {"instance_id": self.instance_id},
            [permissions.describe_instances(), permissions.read_metric_data()],
        )

    def idle_stop(self) -> FunctionAccess:
        """DescribeInstances, StopInstances, activity statistics, its running flag."""
        return FunctionAccess(
            {"instance_id": self.instance_id},
            [
                permissions.describe_instances(),
                permissions.on_instance(self.instance_arn, "ec2:StopInstances"),
                permissions.read_metrics(),
                permissions.put_metrics(),
            ],
        )


@dataclass(frozen=True)
class FleetTarget:
    """Fleet mode: the Auto Scaling group (by name and ARN pattern) and the demand table."""

    group_name: str
    group_arn: str
    demand: DemandTable
    config: StackConfig

    def start_server(self) -> FunctionAccess:
        """The group and its warm pool, its desired capacity and last-start tag, the fleet's
        sessions and GPU hours, and /start calls counted in the demand table
        (lambdas/start_server/fleet.py)."""
        return FunctionAccess(
            {
                **self._group(),
                "demand_table_name": self.demand.table.table_name,
                "sessions_per_instance": self.config.sessions_per_instance,
                "demand_window_s": self.config.fleet_demand_window_minutes * 60,
            },
            [
                permissions.describe_fleet(),
                permissions.on_group(self.group_arn, "autoscaling:SetDesiredCapacity"),
                permissions.tag_group_last_start(self.group_arn, LAST_START_TAG),
                permissions.read_metrics(),
                permissions.read_metric_data(),
                self.demand.counting(),
            ],
        )

    def status(self) -> FunctionAccess:
        """The group and its warm pool, each in-service instance's sessions
        (lambdas/status/fleet.py)."""
        return FunctionAccess(
            {**self._group(), "sessions_per_instance": self.config.sessions_per_instance},
            [permissions.describe_fleet(), permissions.read_metric_data()],
        )

    def idle_stop(self) -> FunctionAccess:
        """The group, its running instances (InstancesRunning), their sessions, and desired
        capacity 0 once the fleet is idle (lambdas/idle_stop/fleet.py)."""
        return FunctionAccess(
            self._group(),
            [
                permissions.describe_fleet(),
                permissions.describe_instances(),
                permissions.on_group(self.group_arn, "autoscaling:SetDesiredCapacity"),
                permissions.read_metric_data(),
                permissions.put_metrics(),
            ],
        )

    def _group(self) -> dict[str, object]:
        return {"mode": "fleet", "fleet_group_name": self.group_name}
