"""The GPU instance: hardened, reachable at a stable address, configured through user data."""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_route53 as route53
from constructs import Construct

from infra_cdk import permissions
from infra_cdk.config import StackConfig
from infra_cdk.model_store import ModelStore
from infra_cdk.network import Network
from infra_cdk.session_secret import SessionSecret

ENV_FILE = "/etc/cvstack/stack.env"


class GpuInstance(Construct):
    """`instance`, its `instance_arn`, `role` and `endpoint_host` (domain name or Elastic IP)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        network: Network,
        model_store: ModelStore,
        session_secret: SessionSecret,
    ) -> None:
        super().__init__(scope, construct_id)
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("ec2.amazonaws.com"),
            description="cvstack GPU instance: Session Manager, models, token secret, metrics",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name("AmazonSSMManagedInstanceCore")
            ],
        )
        model_store.grant_models_read(self.role)
        session_secret.grant_read(self.role)
        self.role.add_to_principal_policy(permissions.put_metrics())
        if config.bedrock_model_ids:
            self.role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["bedrock:InvokeModel"],
                    resources=[
                        Stack.of(self).format_arn(
                            service="bedrock",
                            account="",
                            resource="foundation-model",
                            resource_name=model_id,
                        )
                        for model_id in config.bedrock_model_ids
                    ],
                )
            )
        user_data = ec2.UserData.for_linux()
        user_data.add_commands(
            "install -d -m 0755 /etc/cvstack",
            f"cat > {ENV_FILE} <<'CVSTACK_ENV'",
            f"CVSTACK_MODELS_S3_URI={model_store.models_uri}",
            f"CVSTACK_SESSION_SECRET_ID={session_secret.secret.secret_arn}",
            f"CVSTACK_AWS_REGION={Stack.of(self).region}",
            # Origins for the backend's CVSTACK_ALLOWED_ORIGINS (comma-separated: no quotes for
            # env-file parsers to mangle; the image turns them into the backend's JSON list)
            # and the domain nginx gets a Let's Encrypt certificate for (image: systemd/).
            f"CVSTACK_FRONTEND_ORIGINS={','.join(config.allowed_origins)}",
            f"CVSTACK_DOMAIN_NAME={config.domain_name}",
            "CVSTACK_ENV",
        )
        self.instance = ec2.Instance(
            self,
            "Instance",
            vpc=network.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=network.security_group,
            instance_type=ec2.InstanceType(config.instance_type),
            machine_image=ec2.MachineImage.from_ssm_parameter(config.ami_parameter_name),
            role=self.role,
            require_imdsv2=True,
            detailed_monitoring=True,
            disable_api_termination=True,
            user_data=user_data,
            block_devices=[
                ec2.BlockDevice(
                    device_name=config.root_device_name,
                    volume=ec2.BlockDeviceVolume.ebs(
                        config.root_volume_gib,
                        encrypted=True,
                        volume_type=ec2.EbsDeviceVolumeType.GP3,
                        delete_on_termination=True,
                    ),
                )
            ],
        )
        self.instance_arn = Stack.of(self).format_arn(
            service="ec2", resource="instance", resource_name=self.instance.instance_id
        )
        address = ec2.CfnEIP(self, "ElasticIp", domain="vpc")
        ec2.CfnEIPAssociation(
            self,
            "ElasticIpAssociation",
            allocation_id=address.attr_allocation_id,
            instance_id=self.instance.instance_id,
        )
        self.public_ip = address.attr_public_ip
        self.endpoint_host = config.domain_name or self.public_ip
        if config.hosted_zone_id:
            zone = route53.HostedZone.from_hosted_zone_attributes(
                self,
                "Zone",
                hosted_zone_id=config.hosted_zone_id,
                zone_name=config.hosted_zone_name,
            )
            route53.ARecord(
                self,
                "EndpointRecord",
                zone=zone,
                record_name=config.domain_name,
                target=route53.RecordTarget.from_ip_addresses(self.public_ip),
            )
