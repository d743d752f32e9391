"""Fleet mode's alarms and dashboard widgets: the group, its sessions, its GPU hours and the
load balancer's targets (single mode's per-instance ones are in infra_cdk/monitoring.py)."""

from __future__ import annotations

from aws_cdk import Duration
from aws_cdk import aws_cloudwatch as cw
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.fleet_group import GpuFleet
from infra_cdk.fleet_load_balancer import FleetLoadBalancer
from lambdas.shared.metrics import FLEET_DIMENSION, INSTANCES_RUNNING, NAMESPACE

MINUTE = Duration.minutes(1)
DAY = Duration.days(1)
# Auto Scaling's group metrics (collected: the group enables them).
DESIRED = "GroupDesiredCapacity"
IN_SERVICE = "GroupInServiceInstances"
WARM = "WarmPoolWarmedCapacity"


class FleetMetrics:
    """The fleet's metrics, by what they count."""

    def __init__(self, fleet: GpuFleet, load_balancer: FleetLoadBalancer) -> None:
        self.fleet = fleet
        self.load_balancer = load_balancer
        self.session_load = fleet.session_load

    def group(self, name: str, statistic: str = "Maximum") -> cw.Metric:
        """One of Auto Scaling's group metrics, per minute."""
        return cw.Metric(
            namespace="AWS/AutoScaling",
            metric_name=name,
            dimensions_map={"AutoScalingGroupName": self.fleet.group_name},
            statistic=statistic,
            period=MINUTE,
        )

    def instances_running(self, statistic: str, period: Duration) -> cw.Metric:
        """idle_stop's count of the group's running instances (each one billed), per minute;
        its Sum over a day is GPU minutes."""
        return cw.Metric(
            namespace=NAMESPACE,
            metric_name=INSTANCES_RUNNING,
            dimensions_map={FLEET_DIMENSION: self.fleet.group_name},
            statistic=statistic,
            period=period,
        )


def fleet_alarms(
    scope: Construct, config: StackConfig, metrics: FleetMetrics
) -> dict[str, cw.Alarm]:
    """The fleet's budget, capacity, health and idle-cost alarms, by name."""
    targets = metrics.load_balancer.target_group.metrics
    full = cw.MathExpression(
        expression=(
            f"IF(FILL(in_service, 0) >= {config.fleet_max_size} AND "
            f"FILL(load, 0) > {config.sessions_per_instance}, 1, 0)"
        ),
        using_metrics={"in_service": metrics.group(IN_SERVICE), "load": metrics.session_load},
        label="at maximum size with sessions waiting",
        period=MINUTE,
    )
    idle = cw.MathExpression(
        expression="IF(FILL(running, 0) >= 1 AND FILL(load, 0) == 0, 1, 0)",
        using_metrics={
            "running": metrics.instances_running("Maximum", MINUTE),
            "load": metrics.session_load.with_(statistic="Maximum"),
        },
        label="instances running with no session",
        period=MINUTE,
    )
    idle_limit = config.boot_grace_minutes + config.idle_minutes + 3
    return {
        "FleetGpuBudgetReached": metrics.instances_running("Sum", DAY).create_alarm(
            scope,
            "FleetGpuBudgetReached",
            alarm_description=(
                f"the fleet's GPU hours in the last 24 h reached the "
                f"{config.daily_budget_gpu_hours:g} h budget; /start refuses to start it from "
                "zero until 00:00 UTC"
            ),
            threshold=config.daily_budget_gpu_hours * 60,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ),
        "FleetFullSessionsWaiting": full.create_alarm(
            scope,
            "FleetFullSessionsWaiting",
            alarm_description=(
                f"the fleet is at its maximum size ({config.fleet_max_size} instances) and "
                f"sessions wait for one of the {config.sessions_per_instance} slots per instance "
                "for 5 min: raise fleetMaxSize in cdk.json (and the account's GPU quota)"
            ),
            threshold=1,
            evaluation_periods=5,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ),
        "FleetUnhealthyHosts": targets.unhealthy_host_count(
            statistic="Maximum", period=MINUTE
        ).create_alarm(
            scope,
            "FleetUnhealthyHosts",
            alarm_description=(
                "a fleet instance's /ready has failed the load balancer's health checks past "
                "the boot grace period; Auto Scaling replaces it after its health check grace"
            ),
            threshold=1,
            evaluation_periods=config.boot_grace_minutes + 5,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ),
        "FleetIdleNotStopped": idle.create_alarm(
            scope,
            "FleetIdleNotStopped",
            alarm_description=(
                f"fleet instances running with no session for {idle_limit} min: idle_stop "
                "should have taken the group to zero"
            ),
            threshold=1,
            evaluation_periods=idle_limit,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        ),
    }


def fleet_widgets(config: StackConfig, metrics: FleetMetrics) -> list[cw.IWidget]:
    """The dashboard's fleet row: sizes, load, GPU hours, targets, connections."""
    targets = metrics.load_balancer.target_group.metrics
    balancer = metrics.load_balancer.load_balancer.metrics
    return [
        cw.GraphWidget(
            title="Fleet instances",
            left=[
                metrics.group(DESIRED).with_(label="desired"),
                metrics.group(IN_SERVICE).with_(label="in service"),
                metrics.group(WARM).with_(label="warm pool (stopped, initialised)"),
                metrics.instances_running("Maximum", MINUTE).with_(label="running (billed)"),
            ],
            width=8,
        ),
        cw.GraphWidget(
            title="Sessions per in-service instance (SessionLoad)",
            left=[metrics.session_load.with_(label="live + waiting, average")],
            left_annotations=[
                cw.HorizontalAnnotation(value=config.fleet_target_sessions, label="scaling target"),
                cw.HorizontalAnnotation(
                    value=config.sessions_per_instance, label="slots per instance"
                ),
            ],
            width=8,
        ),
        cw.SingleValueWidget(
            title="Fleet GPU hours, last 24 h",
            metrics=[
                cw.MathExpression(
                    expression="gpu_minutes / 60",
                    using_metrics={"gpu_minutes": metrics.instances_running("Sum", DAY)},
                    label="GPU hours",
                    period=DAY,
                )
            ],
            width=8,
        ),
        cw.GraphWidget(
            title="Load balancer targets",
            left=[
                targets.healthy_host_count(statistic="Minimum", period=MINUTE),
                targets.unhealthy_host_count(statistic="Maximum", period=MINUTE),
            ],
            width=8,
        ),
        cw.GraphWidget(
            title="Load balancer connections (each WebSocket is one)",
            left=[
                balancer.active_connection_count(period=MINUTE, label="open"),
                targets.target_connection_error_count(period=MINUTE, label="to targets failed"),
            ],
            width=8,
        ),
    ]
