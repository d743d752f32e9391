"""The one HTTPS front door: a CloudFront distribution serving the page, the API and the instance.

    /*                        the page, from a private S3 bucket (origin access control)
    /models/browser_detect.*  the page's own detector, from the model store (origin access
                              control, read of those two objects only), revalidated each time
    /start, /status           the lifecycle API (CloudFront adds the API key header)
    /ws/*, /ready, /health    the GPU instance through a CloudFront VPC origin (HTTP, port 80;
                              CloudFront adds the origin secret header nginx checks); in fleet
                              mode the fleet's internal load balancer instead

Anything else (`/metrics` included) falls to the bucket and is refused there. The instance's
(fleet mode: the load balancer's) security group admits port 80 only from CloudFront's
VPC-origin service security group, which AWS creates in the VPC with the first VPC origin; a
custom resource looks its id up.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aws_cdk import Annotations, Duration, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_s3_deployment as s3_deployment
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.generated_secret import GeneratedSecret
from infra_cdk.lambda_assets import REPO_ROOT
from infra_cdk.lifecycle_api import LifecycleApi, api_key_value
from infra_cdk.prestart_cost import pre_start_cost

FRONTEND_DIR = REPO_ROOT / "frontend"
API_KEY_HEADER = "x-api-key"
ORIGIN_SECRET_HEADER = "X-Cvstack-Origin-Secret"
VPC_ORIGINS_SECURITY_GROUP = "CloudFront-VPCOrigins-Service-SG"
API_PATHS = ("/start", "/status")
INSTANCE_PATHS = ("/ws/*", "/ready", "/health")
# `cvstack models prepare` writes browser_detect.{onnx,json}; `aws s3 sync` puts them at these
# keys of the model store, the paths the page fetches beside itself.
BROWSER_MODEL_PATH = "/models/browser_detect.*"
# Page files the deployment leaves out: `make vendor`'s stamp.
PAGE_EXCLUDES = ("**/.vendor-stamp",)
# Everything the deployment replaces: the page's modules have no content hashes in their names,
# so index.html alone would leave old scripts cached. One wildcard path is one invalidation path.
INVALIDATION_PATHS = ("/*",)


@dataclass(frozen=True)
class BackendOrigin:
    """What CloudFront's VPC origin reaches for the instance paths: the GPU instance (single
    mode) or the fleet's internal load balancer, and the security group that admits it."""

    target: ec2.Instance | elbv2.ApplicationLoadBalancer
    security_group: ec2.ISecurityGroup

    @property
    def is_load_balancer(self) -> bool:
        return isinstance(self.target, elbv2.ApplicationLoadBalancer)

    def vpc_origin(self, custom_headers: dict[str, str]) -> origins.VpcOrigin:
        """Plain HTTP on port 80 inside the VPC, with `custom_headers` added."""
        options: dict[str, Any] = {
            "http_port": 80,
            "protocol_policy": cloudfront.OriginProtocolPolicy.HTTP_ONLY,
            "custom_headers": custom_headers,
        }
        if isinstance(self.target, elbv2.ApplicationLoadBalancer):
            return origins.VpcOrigin.with_application_load_balancer(self.target, **options)
        return origins.VpcOrigin.with_ec2_instance(self.target, **options)


def page_config(config: StackConfig | None = None) -> dict[str, Any]:
    """The page's config.json: the start/status API on the page's own origin (the page then
    opens its WebSocket to the same origin). Nothing secret: CloudFront adds the API key.
    The GPU boots when a visitor presses Start, never because a page (or a crawler) loaded,
    unless cdk.json's `preStart` says so; the page then states what that costs at most.
    Without `config`: cdk.json's defaults."""
    config = config or StackConfig()
    cost = pre_start_cost(config.instance_type, config.idle_minutes, config.boot_grace_minutes)
    return {
        "startApiUrl": "/",
        "autoStart": False,
        "preStart": config.pre_start,
        "preStartCost": cost,
    }


class FrontDoor(Construct):
    """`distribution`, its `url` and `host` (custom domain or CloudFront's), the `site_bucket`,
    the `deployment` of the page, and the `instance_ingress` from CloudFront's VPC origins
    (with the `vpc_origins_lookup` custom resource that finds their security group)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        vpc: ec2.IVpc,
        backend: BackendOrigin,
        api: LifecycleApi,
        origin_secret: GeneratedSecret,
        access_logs: s3.IBucket,
        model_bucket: s3.Bucket,
    ) -> None:
        super().__init__(scope, construct_id)
        self.site_bucket = s3.Bucket(
            self,
            "SiteBucket",
            server_access_logs_bucket=access_logs,
            server_access_logs_prefix="site/",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            # Only the deployment's copy of frontend/: `cdk destroy` empties and removes it.
            removal_policy=RemovalPolicy.DESTROY,
            auto_delete_objects=True,
        )
        api_behavior = cloudfront.BehaviorOptions(
            origin=origins.HttpOrigin(
                api.origin_domain,
                origin_path=api.origin_path,
                protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY,
                custom_headers={API_KEY_HEADER: api_key_value()},
            ),
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_ALL,
            cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
            # API Gateway answers only to its own Host name.
            origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER_EXCEPT_HOST_HEADER,
        )
        instance_behavior = cloudfront.BehaviorOptions(
            origin=backend.vpc_origin({ORIGIN_SECRET_HEADER: origin_secret.dynamic_reference}),
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
            cache_policy=cloudfront.CachePolicy.CACHING_DISABLED,
            # Host and Origin (the backend's same-origin check), the Sec-WebSocket-* handshake
            # headers and the ?token= query string.
            origin_request_policy=cloudfront.OriginRequestPolicy.ALL_VIEWER,
        )
        certificate = (
            acm.Certificate.from_certificate_arn(self, "Certificate", config.certificate_arn)
            if config.certificate_arn
            else None
        )
        self.distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"cvstack {Stack.of(self).stack_name}: page, lifecycle API and GPU instance",
            default_behavior=cloudfront.BehaviorOptions(
                origin=origins.S3BucketOrigin.with_origin_access_control(self.site_bucket),
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                cache_policy=cloudfront.CachePolicy.CACHING_OPTIMIZED,
                response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
            ),
            additional_behaviors={
                **dict.fromkeys(API_PATHS, api_behavior),
                **dict.fromkeys(INSTANCE_PATHS, instance_behavior),
                BROWSER_MODEL_PATH: self._browser_model_behavior(model_bucket),
            },
            default_root_object="index.html",
            domain_names=[config.domain_name] if config.domain_name else None,
            certificate=certificate,
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021
            if certificate
            else None,
            # "PriceClass_100" (CloudFormation's spelling, as in cdk.json) -> PRICE_CLASS_100.
            price_class=cloudfront.PriceClass[
                config.price_class.upper().replace("PRICECLASS", "PRICE_CLASS")
            ],
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
        )
        self.host = config.domain_name or self.distribution.distribution_domain_name
        self.url = f"https://{self.host}"
        self.deployment = s3_deployment.BucketDeployment(
            self,
            "Page",
            destination_bucket=self.site_bucket,
            sources=[
                s3_deployment.Source.asset(str(FRONTEND_DIR), exclude=list(PAGE_EXCLUDES)),
                s3_deployment.Source.json_data("config.json", page_config(config)),
            ],
            distribution=self.distribution,
            distribution_paths=list(INVALIDATION_PATHS),
            memory_limit=256,
            log_group=self._log_group("PageDeploymentLogs"),
        )
        self._let_distribution_read_browser_model(model_bucket)
        self.instance_ingress = self._admit_vpc_origins(vpc, backend)
        if config.hosted_zone_id:
            self._alias_records(config)

    def _browser_model_behavior(self, model_bucket: s3.Bucket) -> cloudfront.BehaviorOptions:
        """The model store through origin access control. The bucket goes in by reference so
        that CDK does not grant the distribution every object (its warning says so);
        `_let_distribution_read_browser_model` grants the two files. A store updated under the
        same names shows at once: edge copies are revalidated with S3 on every request (TTL 0;
        an unchanged file is not sent again)."""
        reference = s3.Bucket.from_bucket_attributes(
            self,
            "ModelStoreForPage",
            bucket_arn=model_bucket.bucket_arn,
            bucket_regional_domain_name=model_bucket.bucket_regional_domain_name,
        )
        Annotations.of(self).acknowledge_warning(
            "@aws-cdk/aws-cloudfront-origins:updateImportedBucketPolicyOac",
            "the model store's policy is set by _let_distribution_read_browser_model",
        )
        return cloudfront.BehaviorOptions(
            origin=origins.S3BucketOrigin.with_origin_access_control(reference),
            viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
            allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
            cache_policy=cloudfront.CachePolicy(
                self,
                "BrowserModelCache",
                comment="the page's detector: cached at the edge, revalidated every request",
                default_ttl=Duration.seconds(0),
                min_ttl=Duration.seconds(0),
                max_ttl=Duration.days(1),
            ),
            response_headers_policy=cloudfront.ResponseHeadersPolicy.SECURITY_HEADERS,
        )

    def _let_distribution_read_browser_model(self, model_bucket: s3.Bucket) -> None:
        """s3:GetObject on the page's detector files for this distribution only."""
        model_bucket.add_to_resource_policy(
            iam.PolicyStatement(
                actions=["s3:GetObject"],
                principals=[iam.ServicePrincipal("cloudfront.amazonaws.com")],
                resources=[model_bucket.arn_for_objects(BROWSER_MODEL_PATH.removeprefix("/"))],
                conditions={
                    "StringEquals": {
                        "AWS:SourceArn": Stack.of(self).format_arn(
                            service="cloudfront",
                            region="",
                            resource="distribution",
                            resource_name=self.distribution.distribution_id,
                        )
                    }
                },
            )
        )

    def _admit_vpc_origins(
        self, vpc: ec2.IVpc, backend: BackendOrigin
    ) -> ec2.CfnSecurityGroupIngress:
        """Port 80 from CloudFront's VPC-origin service group, which AWS creates in the VPC
        with the VPC origin (so it is looked up after the distribution exists)."""
        self.vpc_origins_lookup = lookup = cr.AwsCustomResource(
            self,
            "VpcOriginsSecurityGroup",
            on_update=cr.AwsSdkCall(
                service="EC2",
                action="describeSecurityGroups",
                parameters={
                    "Filters": [
                        {"Name": "vpc-id", "Values": [vpc.vpc_id]},
                        {"Name": "group-name", "Values": [VPC_ORIGINS_SECURITY_GROUP]},
                    ]
                },
                physical_resource_id=cr.PhysicalResourceId.of(VPC_ORIGINS_SECURITY_GROUP),
                output_paths=["SecurityGroups.0.GroupId"],
            ),
            # ec2:DescribeSecurityGroups has no resource-level permissions.
            policy=cr.AwsCustomResourcePolicy.from_sdk_calls(
                resources=cr.AwsCustomResourcePolicy.ANY_RESOURCE
            ),
            install_latest_aws_sdk=False,
            log_group=self._log_group("VpcOriginsLookupLogs"),
        )
        lookup.node.add_dependency(self.distribution)
        to_load_balancer = backend.is_load_balancer
        return ec2.CfnSecurityGroupIngress(
            self,
            "LoadBalancerFromVpcOrigins" if to_load_balancer else "InstanceFromVpcOrigins",
            group_id=backend.security_group.security_group_id,
            ip_protocol="tcp",
            from_port=80,
            to_port=80,
            source_security_group_id=lookup.get_response_field("SecurityGroups.0.GroupId"),
            description="HTTP from CloudFront VPC origins (nginx checks the origin secret)"
            if not to_load_balancer
            else "HTTP from CloudFront VPC origins (nginx behind checks the origin secret)",
        )

    def _log_group(self, construct_id: str) -> logs.LogGroup:
        """A month of logs for a deploy-time helper Lambda (not Lambda's never-expiring default)."""
        return logs.LogGroup(
            self,
            construct_id,
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )

    def _alias_records(self, config: StackConfig) -> None:
        zone = route53.HostedZone.from_hosted_zone_attributes(
            self,
            "Zone",
            hosted_zone_id=config.hosted_zone_id,
            zone_name=config.hosted_zone_name,
        )
        target = route53.RecordTarget.from_alias(
            route53_targets.CloudFrontTarget(self.distribution)
        )
        route53.ARecord(self, "AliasV4", zone=zone, record_name=config.domain_name, target=target)
        route53.AaaaRecord(
            self, "AliasV6", zone=zone, record_name=config.domain_name, target=target
        )
