"""The one cvstack stack: composes the constructs and tags everything."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.demand_table import DemandTable
from infra_cdk.fleet_group import GpuFleet
from infra_cdk.fleet_load_balancer import FleetLoadBalancer
from infra_cdk.fleet_monitoring import FleetMetrics
from infra_cdk.front_door import BackendOrigin, FrontDoor
from infra_cdk.generated_secret import GeneratedSecret
from infra_cdk.gpu_instance import GpuInstance
from infra_cdk.lifecycle_api import LifecycleApi
from infra_cdk.lifecycle_functions import LifecycleFunctions
from infra_cdk.lifecycle_targets import FleetTarget, InstanceTarget, LifecycleTarget
from infra_cdk.model_store import ModelStore
from infra_cdk.monitoring import Monitoring
from infra_cdk.network import Network


class CvstackStack(Stack):
    """Network, model store, secrets, the GPU instance (fleet mode: the GPU fleet, its load
    balancer and the demand table), Lambdas, API, front door, monitoring."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.network = Network(
            self,
            "Network",
            operator_cidrs=config.operator_cidrs,
            availability_zones=config.availability_zones,
            fleet=config.fleet,
        )
        self.model_store = ModelStore(self, "ModelStore")
        self.session_secret = GeneratedSecret(
            self,
            "SessionSecret",
            description="cvstack: HMAC key for session tokens (CVSTACK_SESSION_TOKEN_SECRET)",
            length=64,
        )
        self.origin_secret = GeneratedSecret(
            self,
            "OriginSecret",
            description=(
                "cvstack: the header CloudFront adds to requests for the instance; nginx refuses "
                "requests without it"
            ),
            length=48,
        )
        self.fleet_load_balancer: FleetLoadBalancer | None = None
        self.demand: DemandTable | None = None
        backend, target = self._gpu(config)
        self.api = LifecycleApi(self, "LifecycleApi", config=config)
        self.front_door = FrontDoor(
            self,
            "FrontDoor",
            config=config,
            vpc=self.network.vpc,
            backend=backend,
            api=self.api,
            origin_secret=self.origin_secret,
            access_logs=self.model_store.access_logs,
            model_bucket=self.model_store.bucket,
        )
        self.functions = LifecycleFunctions(
            self,
            "Lifecycle",
            config=config,
            target=target,
            session_secret=self.session_secret,
            endpoint_host=self.front_door.host,
        )
        self.api.add_routes(start_server=self.functions.start_server, status=self.functions.status)
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            instance_id=self.gpu.instance.instance_id
            if isinstance(self.gpu, GpuInstance)
            else None,
            fleet=self.fleet_metrics,
            functions=self.functions.functions,
            idle_stop=self.functions.idle_stop,
            api=self.api.api,
        )
        Tags.of(self).add("project", "cvstack")
        for name, value in (
            ("Url", self.front_door.url),
            ("DistributionId", self.front_door.distribution.distribution_id),
            ("SiteBucket", self.front_door.site_bucket.bucket_name),
            ("ApiUrl", self.api.api.url),
            ("ApiKeyId", self.api.api_key.key_id),
            (
                ("InstanceId", self.gpu.instance.instance_id)
                if isinstance(self.gpu, GpuInstance)
                else ("FleetGroupName", self.gpu.group_name)
            ),
            ("ModelBucket", self.model_store.bucket.bucket_name),
            ("SessionSecretArn", self.session_secret.secret.secret_arn),
            ("SettingsParameter", self.gpu.settings.parameter_name),
            ("DashboardName", self.monitoring.dashboard.dashboard_name),
        ):
            CfnOutput(self, name, value=value)

    def _gpu(self, config: StackConfig) -> tuple[BackendOrigin, LifecycleTarget]:
        """`gpu`: the GPU instance, or in fleet mode the GPU fleet with its load balancer and
        demand table; returns what the front door reaches and what the Lambdas act on."""
        self.fleet_metrics: FleetMetrics | None = None
        kind: type[GpuInstance | GpuFleet] = GpuFleet if config.fleet else GpuInstance
        self.gpu = gpu = kind(
            self,
            "Gpu",
            config=config,
            network=self.network,
            model_store=self.model_store,
            session_secret=self.session_secret,
            origin_secret=self.origin_secret,
        )
        if isinstance(gpu, GpuInstance):
            return (
                BackendOrigin(gpu.instance, self.network.security_group),
                InstanceTarget(gpu.instance.instance_id, gpu.instance_arn),
            )
        self.fleet_load_balancer = load_balancer = FleetLoadBalancer(
            self, "FleetLoadBalancer", config=config, network=self.network, fleet=gpu
        )
        self.demand = DemandTable(self, "Demand")
        self.fleet_metrics = FleetMetrics(gpu, load_balancer)
        return (
            BackendOrigin(load_balancer.load_balancer, load_balancer.security_group),
            FleetTarget(gpu.group_name, gpu.group_arn, self.demand, config),
        )
