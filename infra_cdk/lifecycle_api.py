"""The browser-facing API: POST /start and GET /status behind an API key and usage plan.

Access control: an API key with a usage plan. The frontend is a public page for anonymous
visitors, so the key is not a secret; it meters and throttles each frontend, while the
daily GPU budget bounds cost and the session token gates the backend. Cognito or IAM
would require visitors to sign in, which this product does not ask of them.
"""

from __future__ import annotations

from aws_cdk import RemovalPolicy
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra_cdk.config import StackConfig


class LifecycleApi(Construct):
    """`api` (stage `prod`), its `api_key` and `usage_plan`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        start_server: lambda_.IFunction,
        status: lambda_.IFunction,
    ) -> None:
        super().__init__(scope, construct_id)
        access_logs = logs.LogGroup(
            self,
            "AccessLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.api = apigw.RestApi(
            self,
            "Api",
            description="cvstack lifecycle: start the GPU server and poll its status",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            cloud_watch_role=False,
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=list(config.allowed_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Content-Type", "X-Api-Key"],
            ),
            deploy_options=apigw.StageOptions(
                stage_name="prod",
                throttling_rate_limit=config.api_rate_per_second,
                throttling_burst_limit=config.api_burst,
                access_log_destination=apigw.LogGroupLogDestination(access_logs),
                access_log_format=apigw.AccessLogFormat.json_with_standard_fields(
                    caller=False,
                    http_method=True,
                    ip=True,
                    protocol=True,
                    request_time=True,
                    resource_path=True,
                    response_length=True,
                    status=True,
                    user=False,
                ),
            ),
        )
        validator = self.api.add_request_validator(
            "Validator", validate_request_body=True, validate_request_parameters=True
        )
        for path, method, function in (("start", "POST", start_server), ("status", "GET", status)):
            self.api.root.add_resource(path).add_method(
                method,
                apigw.LambdaIntegration(function),
                api_key_required=True,
                request_validator=validator,
            )
        self.api_key = self.api.add_api_key("FrontendKey", description="cvstack frontend")
        self.usage_plan = self.api.add_usage_plan(
            "UsagePlan",
            description="cvstack frontend: throttle and daily quota",
            throttle=apigw.ThrottleSettings(
                rate_limit=config.api_rate_per_second, burst_limit=config.api_burst
            ),
            quota=apigw.QuotaSettings(limit=config.api_daily_quota, period=apigw.Period.DAY),
        )
        self.usage_plan.add_api_key(self.api_key)
        self.usage_plan.add_api_stage(stage=self.api.deployment_stage)
