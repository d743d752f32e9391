"""The one place cdk-nag's AwsSolutions checks are applied and findings acknowledged.

Each acknowledgment is scoped to the construct it concerns and says why it is acceptable.
"""

from __future__ import annotations

from typing import cast

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from infra_cdk.config import StackConfig
from infra_cdk.fleet_group import GpuFleet
from infra_cdk.gpu_instance import GpuInstance
from infra_cdk.model_store import MODELS_PREFIX
from infra_cdk.stack import CvstackStack

NO_RESOURCE_LEVEL = (
    "Resource::* only for actions without resource-level permissions "
    "(ec2:DescribeInstances, cloudwatch:GetMetricStatistics; cloudwatch:PutMetricData is "
    "further limited to the cvstack namespace by a condition)"
)
FLEET_NO_RESOURCE_LEVEL = (
    "Resource::* only for actions without resource-level permissions "
    "(autoscaling:DescribeAutoScalingGroups, autoscaling:DescribeWarmPool, "
    "ec2:DescribeInstances, cloudwatch:GetMetricStatistics, cloudwatch:GetMetricData; "
    "cloudwatch:PutMetricData is further limited to the cvstack namespace by a condition)"
)
GROUP_ARN_BY_NAME = (
    "the fleet's one Auto Scaling group, named by the stack: its ARN's middle part is a UUID "
    "AWS assigns at creation (CloudFormation returns no ARN for a group), so the ARN names the "
    "group by its fixed name and leaves only that UUID open"
)
INSTANCE_NO_RESOURCE_LEVEL = (
    "Resource::* only for cloudwatch:PutMetricData (limited to the cvstack namespace by a "
    "condition) and Session Manager's documented minimum (ssmmessages channels, which have no "
    "resource types, and ssm:UpdateInstanceInformation, which could only name the instance "
    "this role is created before)"
)


def acknowledgments(stack: CvstackStack, config: StackConfig) -> list[tuple[IConstruct, str, str]]:
    """(scope, rule id, reason) for every accepted AwsSolutions finding."""
    api = stack.api.api
    bucket_resource = cast(cdk.CfnElement, stack.model_store.bucket.node.default_child)
    bucket = stack.resolve(stack.get_logical_id(bucket_resource))
    found: list[tuple[IConstruct, str, str]] = [
        (
            api.node.find_child("CloudWatchRole"),
            "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
            "AmazonAPIGatewayPushToCloudWatchLogs]",
            "API Gateway's account-level CloudWatch role (AWS::ApiGateway::Account), which the "
            "stage's access logs require; AWS maintains this policy for exactly that purpose",
        ),
        (
            stack.gpu.role,
            f"AwsSolutions-IAM5[Resource::<{bucket}.Arn>/{MODELS_PREFIX}*]",
            "the instance reads every object under the models/ prefix and nothing else",
        ),
        (
            stack.session_secret.secret,
            "AwsSolutions-SMG4",
            "rotation would need a rotation Lambda and a backend reload; tokens live 15 min and "
            "the secret never leaves Secrets Manager, the Lambda and the instance",
        ),
        (
            api,
            "AwsSolutions-APIG4",
            "access control is an API key with a usage plan (quota and throttling) for an "
            "anonymous public frontend; cost is bounded by the daily GPU budget and the backend "
            "is gated by signed session tokens (see infra_cdk/lifecycle_api.py)",
        ),
        (
            api,
            "AwsSolutions-COG4",
            "visitors do not sign in, so there is no Cognito user pool; see AwsSolutions-APIG4",
        ),
        (
            api,
            "AwsSolutions-APIG3",
            "no WAF: two Lambda routes behind an API key, stage throttling and a daily quota; a "
            "web ACL would cost more than the GPU time it protects",
        ),
        (
            api,
            "AwsSolutions-APIG6",
            "access logs record every request; execution logs would go to a log group API "
            "Gateway creates outside the stack, with no retention and request details",
        ),
    ]
    found += front_door_acknowledgments(stack, config)
    if isinstance(stack.gpu, GpuFleet):
        found += fleet_acknowledgments(stack, stack.gpu)
    unscoped = FLEET_NO_RESOURCE_LEVEL if config.fleet else NO_RESOURCE_LEVEL
    for role in stack.functions.roles:
        found.append((role, "AwsSolutions-IAM5[Resource::*]", unscoped))
    found.append((stack.gpu.role, "AwsSolutions-IAM5[Resource::*]", INSTANCE_NO_RESOURCE_LEVEL))
    if isinstance(stack.gpu, GpuInstance) and not config.termination_protection:
        found.append(
            (
                stack.gpu.instance,
                "AwsSolutions-EC29",
                "termination protection is off by default so that `cdk destroy` works; the "
                "instance holds no data of its own (models come from S3, settings from SSM); "
                "set terminationProtection in cdk.json to turn it on",
            )
        )
    return found


def fleet_acknowledgments(
    stack: CvstackStack, fleet: GpuFleet
) -> list[tuple[IConstruct, str, str]]:
    """The fleet's group ARN, its notifications, the load balancer's logs, the demand table."""
    arn = (
        "arn:<AWS::Partition>:autoscaling:<AWS::Region>:<AWS::AccountId>:autoScalingGroup:*:"
        f"autoScalingGroupName/{fleet.group_name}"
    )
    group_roles = (
        fleet.role,
        cast(IConstruct, stack.functions.start_server.role),
        cast(IConstruct, stack.functions.idle_stop.role),
    )
    found: list[tuple[IConstruct, str, str]] = [
        (role, f"AwsSolutions-IAM5[Resource::{arn}]", GROUP_ARN_BY_NAME) for role in group_roles
    ]
    found += [
        (
            fleet.group,
            "AwsSolutions-AS3",
            "only failed launches and terminations notify the alarm topic (no GPU capacity in "
            "the zones, a quota reached): every /start, scale-out, scale-in and idle stop is a "
            "scaling event, and a message for each would bury the alarms; the dashboard shows "
            "the group's sizes",
        ),
        (
            cast(IConstruct, stack.fleet_load_balancer),
            "AwsSolutions-ELB2",
            "no load balancer access logs: they record each request's full URL, and the "
            "WebSocket's carries the session token in its query string (?token=), which no "
            "log of this stack may hold; nginx on each instance logs every request without "
            "its query, with the viewer's address (the load balancer preserves "
            "X-Forwarded-For)",
        ),
        (
            cast(IConstruct, stack.demand),
            "AwsSolutions-DDB3",
            "the demand table holds /start counts of the last minutes, which expire through "
            "TTL and are re-created by the next /start: there is nothing to restore",
        ),
    ]
    return found


def front_door_acknowledgments(
    stack: CvstackStack, config: StackConfig
) -> list[tuple[IConstruct, str, str]]:
    """The distribution, the origin secret and the deploy-time Lambdas aws-cdk-lib brings
    (the page's BucketDeployment, the VPC-origins security group lookup)."""
    front_door = stack.front_door
    distribution = front_door.distribution
    deployment_role = front_door.deployment.handler_role
    site = stack.resolve(
        stack.get_logical_id(cast(cdk.CfnElement, front_door.site_bucket.node.default_child))
    )
    assets = "arn:<AWS::Partition>:s3:::cdk-hnb659fds-assets-<AWS::AccountId>-<AWS::Region>"
    copies = (
        "the page's deployment Lambda (aws-cdk-lib BucketDeployment, run only by CloudFormation "
        "on deploy) copies the page from CDK's asset bucket into the site bucket and prunes "
        "what frontend/ no longer holds; aws-cdk-lib's read/write grants name these actions "
        "with wildcards, on those two buckets only"
    )
    found: list[tuple[IConstruct, str, str]] = [
        (
            distribution,
            "AwsSolutions-CFR1",
            "no geo restriction: the page is for visitors anywhere; the API's usage plan and "
            "the daily GPU budget bound what any visitor can spend",
        ),
        (
            distribution,
            "AwsSolutions-CFR2",
            "no WAF: a web ACL bills ~$5/month plus rules while the instance is stopped, which "
            "breaks 'nothing but storage billed while stopped'; the API has a usage plan and "
            "throttling, the WebSocket needs a signed session token and nginx limits each "
            "viewer address",
        ),
        (
            distribution,
            "AwsSolutions-CFR3",
            "no CloudFront access logs: standard logs need an ACL-enabled log bucket and would "
            "keep every viewer's address; API Gateway's access logs, nginx's token-free logs "
            "and the S3 access logs of the site bucket record what operators need",
        ),
        (
            stack.origin_secret.secret,
            "AwsSolutions-SMG4",
            "rotating the origin secret needs CloudFront and nginx to change together (a "
            "redeploy and an instance restart); it only proves a request came through this "
            "distribution, which the security group already ensures, and never leaves "
            "Secrets Manager, CloudFront and the instance",
        ),
        (deployment_role, "AwsSolutions-IAM5[Action::s3:GetBucket*]", copies),
        (deployment_role, "AwsSolutions-IAM5[Action::s3:GetObject*]", copies),
        (deployment_role, "AwsSolutions-IAM5[Action::s3:List*]", copies),
        (deployment_role, "AwsSolutions-IAM5[Action::s3:Abort*]", copies),
        (deployment_role, "AwsSolutions-IAM5[Action::s3:DeleteObject*]", copies),
        (deployment_role, f"AwsSolutions-IAM5[Resource::{assets}/*]", copies),
        (deployment_role, f"AwsSolutions-IAM5[Resource::<{site}.Arn>/*]", copies),
        (
            deployment_role,
            "AwsSolutions-IAM5[Resource::*]",
            "cloudfront:CreateInvalidation and GetInvalidation after each page deployment: "
            "aws-cdk-lib's BucketDeployment grants them on every distribution, and only "
            "CloudFormation runs this Lambda, naming this stack's distribution",
        ),
        (
            cast(IConstruct, deployment_role.node.scope),
            "AwsSolutions-L1",
            "the page's deployment Lambda runs the Python runtime aws-cdk-lib pins together "
            "with its AWS CLI layer; it moves with aws-cdk-lib upgrades and runs only on deploy",
        ),
        (
            front_door.vpc_origins_lookup,
            "AwsSolutions-IAM5[Resource::*]",
            "ec2:DescribeSecurityGroups, which has no resource-level permissions: the lookup of "
            "CloudFront's VPC-origins security group in this VPC",
        ),
    ]
    lookup_role = cast(IConstruct, front_door.vpc_origins_lookup.grant_principal)
    for role in (deployment_role, lookup_role):
        found.append(
            (
                role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                "a deploy-time Lambda of aws-cdk-lib (page deployment, security group lookup): "
                "AWS's basic execution policy only lets it write its own logs",
            )
        )
    if not config.certificate_arn:
        found.append(
            (
                distribution,
                "AwsSolutions-CFR4",
                "without a custom domain CloudFront serves its *.cloudfront.net certificate, "
                "whose TLS policy AWS fixes (it cannot be raised); with domainName and "
                "certificateArn set the distribution requires TLS 1.2 (TLSv1.2_2021)",
            )
        )
    return found


def apply_nag(app: cdk.App, stack: CvstackStack, config: StackConfig) -> None:
    """Run AwsSolutions on synth (an unacknowledged finding fails it)."""
    cdk.Validations.of(app).add_plugins(AwsSolutionsChecks(app))
    for scope, rule, reason in acknowledgments(stack, config):
        cdk.Validations.of(scope).acknowledge(
            cdk.Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason)
        )
