"""The dashboard and the alarms that page an SNS topic: health, latency, idle cost, budget
(fleet mode's: infra_cdk/fleet_monitoring.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import cast

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.fleet_monitoring import FleetMetrics, fleet_alarms, fleet_widgets
from lambdas.shared.metrics import ACTIVE_SESSIONS, DIMENSION, NAMESPACE

# Published by the instance every minute (docs/infrastructure.md, "Metric contract").
BACKEND_READY = "BackendReady"
INFERENCE_LATENCY_MS = "InferenceLatencyMs"
PIPELINE_FPS = "PipelineFps"
GPU_UTILIZATION = "GpuUtilization"
MINUTE = Duration.minutes(1)
FIVE_MINUTES = Duration.minutes(5)
# EC2 publishes StatusCheckFailed once a minute while the instance runs, and never while it is
# stopped, free and whatever the monitoring setting: its SampleCount per minute is "running",
# measured by AWS itself, so the cost alarms do not depend on the idle_stop Lambda working.
EC2_RUNNING_METRIC = "StatusCheckFailed"


class Monitoring(Construct):
    """`topic`, `dashboard` and the `alarms` by name: the GPU instance's (`instance_id`) or,
    in fleet mode, the fleet's (`fleet`: infra_cdk/fleet_monitoring.py), and the Lambdas' and
    the API's in both modes."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        instance_id: str | None = None,
        fleet: FleetMetrics | None = None,
        functions: Mapping[str, lambda_.IFunction],
        idle_stop: lambda_.IFunction,
        api: apigw.RestApi,
    ) -> None:
        super().__init__(scope, construct_id)
        self.topic = sns.Topic(self, "Alarms", display_name="cvstack alarms", enforce_ssl=True)
        # enforce_ssl writes a topic policy, which replaces SNS's default one: CloudWatch may
        # publish only if this policy says so (alarms of this account).
        stack = Stack.of(self)
        self.topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AllowCloudWatchAlarms",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[self.topic.topic_arn],
                conditions={
                    "StringEquals": {"aws:SourceAccount": stack.account},
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="cloudwatch",
                            resource="alarm",
                            resource_name="*",
                            arn_format=ArnFormat.COLON_RESOURCE_NAME,
                        )
                    },
                },
            )
        )
        if config.alarm_email:
            self.topic.add_subscription(subscriptions.EmailSubscription(config.alarm_email))
        if fleet is not None:
            self.alarms = fleet_alarms(self, config, fleet)
            widgets = fleet_widgets(config, fleet)
            self._notify_fleet_errors(fleet)
        elif instance_id is not None:
            self.alarms, widgets = self._instance_alarms(config, instance_id)
        else:
            raise ValueError("Monitoring needs the instance_id (single mode) or fleet")
        self._function_alarms(functions, idle_stop, api)
        action = cw_actions.SnsAction(self.topic)
        for alarm in self.alarms.values():
            alarm.add_alarm_action(action)
        self.dashboard = cw.Dashboard(self, "Dashboard", default_interval=Duration.hours(12))
        self.dashboard.add_widgets(*widgets)

    def _instance_alarms(
        self, config: StackConfig, instance_id: str
    ) -> tuple[dict[str, cw.Alarm], list[cw.IWidget]]:
        """The GPU instance's alarms and dashboard widgets."""

        def metric(name: str, statistic: str, period: Duration = MINUTE) -> cw.Metric:
            return cw.Metric(
                namespace=NAMESPACE,
                metric_name=name,
                dimensions_map={DIMENSION: instance_id},
                statistic=statistic,
                period=period,
            )

        def ec2_running(period: Duration) -> cw.Metric:
            return cw.Metric(
                namespace="AWS/EC2",
                metric_name=EC2_RUNNING_METRIC,
                dimensions_map={"InstanceId": instance_id},
                statistic="SampleCount",
                period=period,
            )

        running, sessions = ec2_running(MINUTE), metric(ACTIVE_SESSIONS, "Maximum")
        latency_p95 = metric(INFERENCE_LATENCY_MS, "p95")
        gpu_minutes_day = ec2_running(Duration.days(1))
        idle_running = cw.MathExpression(
            expression="IF(FILL(running, 0) >= 1 AND FILL(sessions, 0) == 0, 1, 0)",
            using_metrics={"running": running, "sessions": sessions},
            label="running with no session",
            period=MINUTE,
        )
        idle_limit = config.boot_grace_minutes + config.idle_minutes + 3
        alarms = {
            "BackendNotReady": metric(BACKEND_READY, "Minimum").create_alarm(
                self,
                "BackendNotReady",
                alarm_description="backend /ready failing past the boot grace period",
                threshold=1,
                comparison_operator=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                evaluation_periods=config.boot_grace_minutes + 5,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            "InstanceStatusCheckFailed": cw.Metric(
                namespace="AWS/EC2",
                metric_name="StatusCheckFailed",
                dimensions_map={"InstanceId": instance_id},
                statistic="Maximum",
                period=MINUTE,
            ).create_alarm(
                self,
                "InstanceStatusCheckFailed",
                alarm_description="EC2 status checks failing on the GPU instance",
                threshold=1,
                evaluation_periods=2,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            "LatencyHigh": latency_p95.create_alarm(
                self,
                "LatencyHigh",
                alarm_description=f"p95 inference latency above {config.latency_alarm_ms} ms",
                threshold=config.latency_alarm_ms,
                evaluation_periods=5,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            "IdleNotStopped": idle_running.create_alarm(
                self,
                "IdleNotStopped",
                alarm_description=(
                    f"instance running with no session for {idle_limit} min: idle_stop "
                    "should have stopped it"
                ),
                threshold=1,
                evaluation_periods=idle_limit,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
            "GpuBudgetReached": gpu_minutes_day.create_alarm(
                self,
                "GpuBudgetReached",
                alarm_description=(
                    f"GPU hours in the last 24 h reached the {config.daily_budget_gpu_hours:g} h "
                    "budget; /start refuses until 00:00 UTC"
                ),
                threshold=config.daily_budget_gpu_hours * 60,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            ),
        }
        widgets: list[cw.IWidget] = [
            cw.GraphWidget(title="Instance running (1) / stopped (0)", left=[running], width=8),
            cw.GraphWidget(title="Active sessions", left=[sessions], width=8),
            cw.SingleValueWidget(
                title="GPU hours, last 24 h",
                metrics=[
                    cw.MathExpression(
                        expression="gpu_minutes / 60",
                        using_metrics={"gpu_minutes": gpu_minutes_day},
                        label="GPU hours",
                        period=Duration.days(1),
                    )
                ],
                width=8,
            ),
            cw.GraphWidget(title="Inference latency p95 (ms)", left=[latency_p95], width=8),
            cw.GraphWidget(title="Pipeline FPS", left=[metric(PIPELINE_FPS, "Average")], width=8),
            cw.GraphWidget(
                title="GPU utilisation (%)", left=[metric(GPU_UTILIZATION, "Average")], width=8
            ),
        ]
        return alarms, widgets

    def _function_alarms(
        self,
        functions: Mapping[str, lambda_.IFunction],
        idle_stop: lambda_.IFunction,
        api: apigw.RestApi,
    ) -> None:
        """The Lambdas' and the API's alarms, the same in both modes."""
        for name, function in functions.items():
            self.alarms[f"{name}Errors"] = function.metric_errors(
                period=FIVE_MINUTES, statistic="Sum"
            ).create_alarm(
                self,
                f"{name}Errors",
                alarm_description=f"the {name} Lambda failed (unhandled error); see its log group",
                threshold=1,
                evaluation_periods=1,
                treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
            )
        self.alarms["IdleStopNotInvoked"] = idle_stop.metric_invocations(
            period=FIVE_MINUTES, statistic="Sum"
        ).create_alarm(
            self,
            "IdleStopNotInvoked",
            alarm_description=(
                "idle_stop has not run for 10 minutes (schedule disabled or Lambda throttled): "
                "nothing stops an idle instance"
            ),
            threshold=1,
            comparison_operator=cw.ComparisonOperator.LESS_THAN_THRESHOLD,
            evaluation_periods=2,
            treat_missing_data=cw.TreatMissingData.BREACHING,
        )
        self.alarms["ApiServerErrors"] = api.metric_server_error(
            period=FIVE_MINUTES, statistic="Sum"
        ).create_alarm(
            self,
            "ApiServerErrors",
            alarm_description=(
                "the lifecycle API answered 5xx at least 3 times in 5 min (no GPU capacity in "
                "the zone, AWS throttling, a permission error or a failing Lambda)"
            ),
            threshold=3,
            evaluation_periods=1,
            treat_missing_data=cw.TreatMissingData.NOT_BREACHING,
        )

    def _notify_fleet_errors(self, fleet: FleetMetrics) -> None:
        """Auto Scaling's failed launches and terminations to the topic (no GPU capacity in the
        zones, a quota reached); its routine scale-outs and scale-ins are not worth a message."""
        group = cast(autoscaling.CfnAutoScalingGroup, fleet.fleet.group.node.default_child)
        group.notification_configurations = [
            autoscaling.CfnAutoScalingGroup.NotificationConfigurationProperty(
                topic_arn=self.topic.topic_arn,
                notification_types=[
                    "autoscaling:EC2_INSTANCE_LAUNCH_ERROR",
                    "autoscaling:EC2_INSTANCE_TERMINATE_ERROR",
                ],
            )
        ]
