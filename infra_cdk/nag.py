"""The one place cdk-nag's AwsSolutions checks are applied and findings acknowledged.

Each acknowledgment is scoped to the construct it concerns and says why it is acceptable.
"""

from __future__ import annotations

from typing import cast

import aws_cdk as cdk
from cdk_nag import AwsSolutionsChecks
from constructs import IConstruct

from infra_cdk.config import StackConfig
from infra_cdk.model_store import MODELS_PREFIX
from infra_cdk.stack import CvstackStack

NO_RESOURCE_LEVEL = (
    "Resource::* only for actions without resource-level permissions "
    "(ec2:DescribeInstances, cloudwatch:GetMetricStatistics; cloudwatch:PutMetricData is "
    "further limited to the cvstack namespace by a condition)"
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
    for role in stack.functions.roles:
        found.append((role, "AwsSolutions-IAM5[Resource::*]", NO_RESOURCE_LEVEL))
    found.append((stack.gpu.role, "AwsSolutions-IAM5[Resource::*]", INSTANCE_NO_RESOURCE_LEVEL))
    if not config.termination_protection:
        found.append(
            (
                stack.gpu.instance,
                "AwsSolutions-EC29",
                "termination protection is off by default so that `cdk destroy` works; the "
                "instance holds no data of its own (models come from S3, settings from SSM); "
                "set terminationProtection in cdk.json to turn it on",
            )
        )
    if config.open_to_world:
        found.append(
            (
                stack.network.security_group,
                "AwsSolutions-EC23",
                "allowedCidrs is 0.0.0.0/0: the HTTPS WebSocket endpoint serves browsers anywhere "
                "(only 443 and the 80 redirect; sessions need a signed token); narrow it in "
                "cdk.json",
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
