"""Fleet mode's GPU instances: an EC2 Auto Scaling group of the single mode's instance, from
zero to `fleetMaxSize`, with a warm pool of stopped instances, a termination lifecycle hook
that lets a leaving instance drain, and target tracking on sessions per instance.

The group's name is fixed (`<stackName>-gpu-fleet`): the instance role, the Lambdas and the
scaling metric name it before it exists. Its desired capacity is not in the template, so a
deploy never resets it: /start raises it from zero, target tracking moves it, idle_stop takes it
back to zero (docs/fleet.md).
"""

from __future__ import annotations

from aws_cdk import ArnFormat, Duration, Stack
from aws_cdk import aws_autoscaling as autoscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra_cdk import permissions
from infra_cdk.config import StackConfig
from infra_cdk.generated_secret import GeneratedSecret
from infra_cdk.gpu_instance import instance_role, instance_settings, instance_user_data, root_volume
from infra_cdk.model_store import ModelStore
from infra_cdk.network import Network
from lambdas.shared.metrics import FLEET_DIMENSION, NAMESPACE, SESSION_LOAD

DRAIN_HOOK_NAME = "cvstack-drain"
# The fleet agent sends RecordLifecycleActionHeartbeat about once a minute while it drains; a
# silent instance (agent or host dead) is let go after this long.
DRAIN_HEARTBEAT = Duration.minutes(5)
READY_HOOK_NAME = "cvstack-ready"
# A launch (into service, or into the warm pool, where AWS stops it once the hook completes)
# waits until the fleet agent sees the backend ready; a boot that never gets there in this long
# (a fresh launch builds its TensorRT engines: minutes) is abandoned: terminated and replaced.
READY_TIMEOUT = Duration.minutes(30)
# A full instance sends extra sessions away after this long, so a reconnect lands elsewhere.
FULL_INSTANCE_MAX_WAIT_S = 5
# Before the first health check counts: a fresh launch builds its TensorRT engines on first
# boot (minutes); a warm-pool start is ready much sooner.
HEALTH_CHECK_GRACE = Duration.minutes(15)
# A new instance's metrics join the group's, and scale-in waits, after this long: a warm-pool
# start is ready in about bootEstimateSeconds, a fresh launch in about 5 minutes (the fleet's
# simulated day in docs/benchmarks.md assumes these 5 minutes, AWS's usual default).
INSTANCE_WARMUP = Duration.minutes(5)


def group_name(scope: Construct) -> str:
    """`<stackName>-gpu-fleet`."""
    return f"{Stack.of(scope).stack_name}-gpu-fleet"


def group_arn(scope: Construct) -> str:
    """The group's ARN by name (its id part is AWS's and unknown before it exists)."""
    return Stack.of(scope).format_arn(
        service="autoscaling",
        resource="autoScalingGroup",
        resource_name=f"*:autoScalingGroupName/{group_name(scope)}",
        arn_format=ArnFormat.COLON_RESOURCE_NAME,
    )


class GpuFleet(Construct):
    """`group` (named `group_name`, ARN pattern `group_arn`), its `launch_template`, the
    instances' `role` and `settings` parameter, the `drain_hook` and the `scaling` policy."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        network: Network,
        model_store: ModelStore,
        session_secret: GeneratedSecret,
        origin_secret: GeneratedSecret,
    ) -> None:
        super().__init__(scope, construct_id)
        self.group_name = group_name(self)
        self.group_arn = group_arn(self)
        self.role = instance_role(
            self,
            config=config,
            model_store=model_store,
            session_secret=session_secret,
            origin_secret=origin_secret,
        )
        # The fleet agent on each instance (contract 4): scale-in protection while it has
        # sessions, and the drain hook's heartbeats and completion.
        self.role.add_to_principal_policy(
            permissions.on_group(
                self.group_arn,
                "autoscaling:SetInstanceProtection",
                "autoscaling:RecordLifecycleActionHeartbeat",
                "autoscaling:CompleteLifecycleAction",
            )
        )
        self.settings = instance_settings(
            self,
            config=config,
            role=self.role,
            model_store=model_store,
            session_secret=session_secret,
            origin_secret=origin_secret,
            fleet_settings={
                "CVSTACK_FLEET_GROUP_NAME": self.group_name,
                "CVSTACK_FLEET_HOOK_NAME": DRAIN_HOOK_NAME,
                "CVSTACK_FLEET_LAUNCH_HOOK_NAME": READY_HOOK_NAME,
                "CVSTACK_DRAIN_LIMIT_S": str(config.fleet_drain_minutes * 60),
                "CVSTACK_MAX_WAIT_S": str(FULL_INSTANCE_MAX_WAIT_S),
            },
        )
        self.launch_template = ec2.LaunchTemplate(
            self,
            "LaunchTemplate",
            instance_type=ec2.InstanceType(config.instance_type),
            machine_image=ec2.MachineImage.from_ssm_parameter(config.ami_parameter_name),
            role=self.role,
            security_group=network.security_group,
            user_data=instance_user_data(self),
            block_devices=[root_volume(config)],
            # IMDSv2 only; 2 hops so containers on a Docker bridge network reach it too.
            http_endpoint=True,
            http_tokens=ec2.LaunchTemplateHttpTokens.REQUIRED,
            http_put_response_hop_limit=2,
            detailed_monitoring=True,
        )
        self.group = autoscaling.AutoScalingGroup(
            self,
            "Group",
            auto_scaling_group_name=self.group_name,
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            launch_template=self.launch_template,
            min_capacity=0,
            max_capacity=config.fleet_max_size,
            # An instance whose /ready keeps failing (past the grace period) is replaced; the
            # drain hook still lets its sessions finish.
            health_checks=autoscaling.HealthChecks.with_additional_checks(
                additional_types=[autoscaling.AdditionalHealthCheckType.ELB],
                grace_period=HEALTH_CHECK_GRACE,
            ),
            default_instance_warmup=INSTANCE_WARMUP,
            group_metrics=[autoscaling.GroupMetrics.all()],
        )
        # The first boot reads the parameter: it must exist before any instance does.
        self.group.node.add_dependency(self.settings)
        if config.fleet_warm_pool_size != 0:
            # AWS keeps max(MaxGroupPreparedCapacity - desired, MinSize) instances in the pool:
            # both at N keeps N stopped whatever the desired capacity; neither (-1) is AWS's
            # default, maxSize - desired.
            size = config.fleet_warm_pool_size if config.fleet_warm_pool_size > 0 else None
            self.group.add_warm_pool(
                pool_state=autoscaling.PoolState.STOPPED,
                reuse_on_scale_in=True,
                min_size=size,
                max_group_prepared_capacity=size,
            )
        # Launches wait for the backend: a warm-pool instance is stopped only once initialised
        # (engines built, models synced), and a started one joins the load balancer only ready.
        self.ready_hook = self.group.add_lifecycle_hook(
            "Ready",
            lifecycle_hook_name=READY_HOOK_NAME,
            lifecycle_transition=autoscaling.LifecycleTransition.INSTANCE_LAUNCHING,
            default_result=autoscaling.DefaultResult.ABANDON,
            heartbeat_timeout=READY_TIMEOUT,
        )
        self.drain_hook = self.group.add_lifecycle_hook(
            "Drain",
            lifecycle_hook_name=DRAIN_HOOK_NAME,
            lifecycle_transition=autoscaling.LifecycleTransition.INSTANCE_TERMINATING,
            default_result=autoscaling.DefaultResult.CONTINUE,
            heartbeat_timeout=DRAIN_HEARTBEAT,
        )
        self.session_load = cw.Metric(
            namespace=NAMESPACE,
            metric_name=SESSION_LOAD,
            dimensions_map={FLEET_DIMENSION: self.group_name},
            statistic="Average",
            period=Duration.minutes(1),
        )
        # Sessions (live + waiting) per in-service instance, held below the slots each one has,
        # so the fleet grows before sessions queue; scale-in takes only unprotected (idle)
        # instances, and a leaving one drains through the hook.
        self.scaling = self.group.scale_to_track_metric(
            "SessionLoadTracking",
            metric=self.session_load,
            target_value=config.fleet_target_sessions,
        )
