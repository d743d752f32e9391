"""The GPU instance: hardened, reached only through the front door, its settings in SSM read at
every boot."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_ssm as ssm
from constructs import Construct

from infra_cdk import permissions
from infra_cdk.config import StackConfig
from infra_cdk.generated_secret import GeneratedSecret
from infra_cdk.model_store import ModelStore
from infra_cdk.network import Network

INSTANCE_ENV_FILE = "/etc/cvstack/instance.env"


def settings_parameter_name(stack_name: str) -> str:
    """The SSM String parameter holding the instance's settings (one per stack)."""
    return f"/cvstack/{stack_name}/instance-settings"


def cloud_config(*, region: str, parameter: str) -> str:
    """User data: a #cloud-config whose write_files (cloud-init's init stage, before
    network-online.target) writes only the bootstrap lines that never change after launch."""
    return "\n".join(
        [
            "#cloud-config",
            "write_files:",
            f"  - path: {INSTANCE_ENV_FILE}",
            '    permissions: "0644"',
            "    owner: root:root",
            "    content: |",
            f"      CVSTACK_AWS_REGION={region}",
            f"      CVSTACK_SETTINGS_PARAMETER={parameter}",
            "",
        ]
    )


def instance_role(
    scope: Construct,
    *,
    config: StackConfig,
    model_store: ModelStore,
    session_secret: GeneratedSecret,
    origin_secret: GeneratedSecret,
) -> iam.Role:
    """`Role` in `scope`: what every GPU instance (single or fleet) may do."""
    stack = Stack.of(scope)
    role = iam.Role(
        scope,
        "Role",
        assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
        description="cvstack GPU instance: Session Manager, settings, models, secret, metrics",
    )
    role.add_to_principal_policy(permissions.session_manager())
    model_store.grant_models_read(role)
    session_secret.grant_read(role)
    origin_secret.grant_read(role)
    role.add_to_principal_policy(permissions.put_metrics())
    if config.bedrock_model_ids:
        role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["bedrock:InvokeModel"],
                resources=[
                    stack.format_arn(
                        service="bedrock",
                        account="",
                        resource="foundation-model",
                        resource_name=model_id,
                    )
                    for model_id in config.bedrock_model_ids
                ],
            )
        )
    return role


def instance_settings(
    scope: Construct,
    *,
    config: StackConfig,
    role: iam.Role,
    model_store: ModelStore,
    session_secret: GeneratedSecret,
    origin_secret: GeneratedSecret,
    fleet_settings: Mapping[str, str] | None = None,
) -> ssm.StringParameter:
    """`Settings` in `scope`, readable by `role`: the instance settings parameter.

    Settings that may change after launch live in SSM, read at every boot
    (cvstack-settings.service): a changed origin or domain updates only this parameter. The
    distribution's own domain cannot be listed (the parameter exists before the instance, the
    distribution after it): "self" admits the page's own origin. `fleet_settings` adds fleet
    mode's values (docs/infrastructure.md, "Fleet mode").
    """
    stack = Stack.of(scope)
    settings = ssm.StringParameter(
        scope,
        "Settings",
        parameter_name=settings_parameter_name(stack.stack_name),
        description="cvstack instance settings, read at every boot (JSON: env name -> value)",
        tier=ssm.ParameterTier.STANDARD,
        string_value=stack.to_json_string(
            {
                "CVSTACK_MODELS_S3_URI": model_store.models_uri,
                "CVSTACK_SESSION_SECRET_ID": session_secret.secret.secret_arn,
                "CVSTACK_ORIGIN_SECRET_ID": origin_secret.secret.secret_arn,
                # Comma-separated: the image turns them into the backend's JSON list.
                "CVSTACK_FRONTEND_ORIGINS": ",".join(config.instance_origins),
                **(fleet_settings or {}),
            }
        ),
    )
    role.add_to_principal_policy(
        iam.PolicyStatement(actions=["ssm:GetParameter"], resources=[settings.parameter_arn])
    )
    return settings


def instance_user_data(scope: Construct) -> ec2.UserData:
    """The #cloud-config naming the region and the settings parameter."""
    stack = Stack.of(scope)
    return ec2.UserData.custom(
        cloud_config(region=stack.region, parameter=settings_parameter_name(stack.stack_name))
    )


def root_volume(config: StackConfig) -> ec2.BlockDevice:
    """The encrypted gp3 root volume, deleted with the instance."""
    return ec2.BlockDevice(
        device_name=config.root_device_name,
        volume=ec2.BlockDeviceVolume.ebs(
            config.root_volume_gib,
            encrypted=True,
            volume_type=ec2.EbsDeviceVolumeType.GP3,
            delete_on_termination=True,
        ),
    )


class GpuInstance(Construct):
    """`instance`, its `instance_arn`, `role` and `settings` parameter.

    No Elastic IP and no DNS record: browsers reach the instance through the CloudFront VPC
    origin (infra_cdk/front_door.py). Its auto-assigned public IPv4 (billed only while it runs,
    released on stop) carries its own calls to AWS APIs, with no NAT gateway to pay for.
    """

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
        self.role = instance_role(
            self,
            config=config,
            model_store=model_store,
            session_secret=session_secret,
            origin_secret=origin_secret,
        )
        self.settings = instance_settings(
            self,
            config=config,
            role=self.role,
            model_store=model_store,
            session_secret=session_secret,
            origin_secret=origin_secret,
        )
        self.instance = ec2.Instance(
            self,
            "Instance",
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(
                subnet_type=ec2.SubnetType.PUBLIC,
                availability_zones=[config.instance_zone] if config.instance_zone else None,
            ),
            security_group=network.security_group,
            instance_type=ec2.InstanceType(config.instance_type),
            machine_image=ec2.MachineImage.from_ssm_parameter(config.ami_parameter_name),
            role=self.role,
            # IMDSv2 only; 2 hops so containers on a Docker bridge network reach it too.
            http_endpoint=True,
            http_tokens=ec2.HttpTokens.REQUIRED,
            http_put_response_hop_limit=2,
            # The boot report reads its cvstack:boot-requested tag here, with no IAM permission
            # (lambdas/shared/boot_times.py); tag keys must then avoid "/" and spaces.
            instance_metadata_tags=True,
            detailed_monitoring=True,
            disable_api_termination=config.termination_protection,
            user_data=instance_user_data(self),
            block_devices=[root_volume(config)],
        )
        # The first boot reads the parameter: it must exist before the instance does.
        self.instance.node.add_dependency(self.settings)
        self.instance_arn = Stack.of(self).format_arn(
            service="ec2", resource="instance", resource_name=self.instance.instance_id
        )
