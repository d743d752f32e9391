"""The one cvstack stack: composes the constructs and tags everything."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack, Tags
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.gpu_instance import GpuInstance
from infra_cdk.lifecycle_api import LifecycleApi
from infra_cdk.lifecycle_functions import LifecycleFunctions
from infra_cdk.model_store import ModelStore
from infra_cdk.monitoring import Monitoring
from infra_cdk.network import Network
from infra_cdk.session_secret import SessionSecret


class CvstackStack(Stack):
    """Network, model store, session secret, GPU instance, Lambdas, API, monitoring."""

    def __init__(
        self, scope: Construct, construct_id: str, *, config: StackConfig, **kwargs: Any
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.network = Network(
            self,
            "Network",
            allowed_cidrs=config.allowed_cidrs,
            availability_zones=config.availability_zones,
        )
        self.model_store = ModelStore(self, "ModelStore")
        self.session_secret = SessionSecret(self, "SessionSecret")
        self.gpu = GpuInstance(
            self,
            "Gpu",
            config=config,
            network=self.network,
            model_store=self.model_store,
            session_secret=self.session_secret,
        )
        self.functions = LifecycleFunctions(
            self, "Lifecycle", config=config, gpu=self.gpu, session_secret=self.session_secret
        )
        self.api = LifecycleApi(
            self,
            "LifecycleApi",
            config=config,
            start_server=self.functions.start_server,
            status=self.functions.status,
        )
        self.monitoring = Monitoring(
            self,
            "Monitoring",
            config=config,
            instance_id=self.gpu.instance.instance_id,
            functions=self.functions.functions,
            idle_stop=self.functions.idle_stop,
            api=self.api.api,
        )
        Tags.of(self).add("project", "cvstack")
        for name, value in (
            ("ApiUrl", self.api.api.url),
            ("ApiKeyId", self.api.api_key.key_id),
            ("InstanceId", self.gpu.instance.instance_id),
            ("Endpoint", self.gpu.endpoint_host),
            ("ModelBucket", self.model_store.bucket.bucket_name),
            ("SessionSecretArn", self.session_secret.secret.secret_arn),
            ("SettingsParameter", self.gpu.settings.parameter_name),
            ("DashboardName", self.monitoring.dashboard.dashboard_name),
        ):
            CfnOutput(self, name, value=value)
