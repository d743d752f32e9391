"""The browser-facing API: POST /start and GET /status behind an API key and usage plan.

Access control: an API key with a usage plan. The frontend is a public page for anonymous
visitors, so the key is not a secret; it meters and throttles each frontend, while the
daily GPU budget bounds cost and the session token gates the backend. Cognito or IAM
would require visitors to sign in, which this product does not ask of them.

The key's value is derived in CloudFormation from the stack's id, so the CloudFront front door
can add it as an origin header and the page it serves needs no key of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import Aws, Fn, RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra_cdk.config import StackConfig

STAGE = "prod"


def api_key_value() -> str:
    """`cvstack-<the UUID of the stack's id>`: stable for the stack's life, known to CloudFront
    and API Gateway alike, new for every stack (a meter, not a secret)."""
    return Fn.join("", ["cvstack-", Fn.select(2, Fn.split("/", Aws.STACK_ID))])


class LifecycleApi(Construct):
    """`api` (stage `prod`), its `api_key` (value `api_key_value`), `usage_plan`, and the
    `origin_domain` and `origin_path` the front door forwards /start and /status to."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
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
            rest_api_name=f"{Stack.of(self).stack_name}-lifecycle",
            description="cvstack lifecycle: start the GPU server and poll its status",
            endpoint_types=[apigw.EndpointType.REGIONAL],
            # The stage's access logs need API Gateway's account-level CloudWatch role
            # (AWS::ApiGateway::Account, one per account and region): CDK creates the role and
            # the setting, and orders the stage after it. Retained on `cdk destroy`, so other
            # APIs in the account keep logging.
            cloud_watch_role=True,
            cloud_watch_role_removal_policy=RemovalPolicy.RETAIN,
            api_key_source_type=apigw.ApiKeySourceType.HEADER,
            # The stack's own page calls the API on its own origin (no CORS); other configured
            # origins get preflight answers.
            default_cors_preflight_options=apigw.CorsOptions(
                allow_origins=list(config.allowed_origins),
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Content-Type", "X-Api-Key"],
            )
            if config.allowed_origins
            else None,
            deploy_options=apigw.StageOptions(
                stage_name=STAGE,
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
        self.api_key = self.api.add_api_key(
            "FrontendKey", description="cvstack frontend", value=api_key_value()
        )
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
        self._add_gateway_responses(config)
        # From the API's id, not its stage: the stage depends on the Lambdas, which name the
        # distribution's domain, so referring to the stage would close a dependency cycle.
        self.origin_domain = f"{self.api.rest_api_id}.execute-api.{Aws.REGION}.{Aws.URL_SUFFIX}"
        self.origin_path = f"/{STAGE}"

    def add_routes(self, *, start_server: lambda_.IFunction, status: lambda_.IFunction) -> None:
        """POST /start and GET /status, each behind the API key (added once the Lambdas exist:
        they name the front door, which names this API)."""
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

    def _add_gateway_responses(self, config: StackConfig) -> None:
        """API Gateway's own refusals (throttled, quota, bad key, integration failures) in the
        Lambdas' error shape, so the page reads them instead of seeing a network error. The
        stack's own page is same-origin and needs no CORS headers; for other configured
        origins, one is named and several are answered by echoing the request's Origin
        (gateway responses cannot choose among origins; these bodies hold no data)."""
        cors: dict[str, str] = {"Cache-Control": "'no-store'"}
        if config.allowed_origins:
            cors["Access-Control-Allow-Origin"] = (
                f"'{config.allowed_origins[0]}'"
                if len(config.allowed_origins) == 1
                else "method.request.header.Origin"
            )
            cors["Access-Control-Allow-Headers"] = "'Content-Type,X-Api-Key'"
            cors["Vary"] = "'Origin'"
        for response in gateway_responses(config):
            headers = dict(cors)
            if response.retry_after_s is not None:
                headers["Retry-After"] = f"'{response.retry_after_s}'"
            self.api.add_gateway_response(
                response.type.response_type,
                type=response.type,
                response_headers=headers,
                templates={"application/json": response.body()},
            )


@dataclass(frozen=True)
class GatewayError:
    """One gateway response: the body's `error` code, message and retry advice."""

    type: apigw.ResponseType
    error: str
    message: str
    retry_after_s: int | None = None

    def body(self) -> str:
        """The JSON template; a message starting with `$context` is API Gateway's own text."""
        message = self.message if self.message.startswith("$context") else json.dumps(self.message)
        retry = "null" if self.retry_after_s is None else str(self.retry_after_s)
        retryable = "false" if self.retry_after_s is None else "true"
        return (
            f'{{"error": "{self.error}", "message": {message}, '
            f'"retryable": {retryable}, "retry_after_s": {retry}}}'
        )


def gateway_responses(config: StackConfig) -> list[GatewayError]:
    """The refusals API Gateway answers itself, before any Lambda runs."""
    own_text = "$context.error.messageString"
    return [
        GatewayError(
            apigw.ResponseType.THROTTLED,
            "api_throttled",
            f"the lifecycle API allows {config.api_rate_per_second} requests/s (burst "
            f"{config.api_burst}); retrying shortly",
            2,
        ),
        GatewayError(
            apigw.ResponseType.QUOTA_EXCEEDED,
            "api_quota_exceeded",
            f"this frontend's {config.api_daily_quota} requests for today are used up; the "
            "quota resets at 00:00 UTC",
        ),
        GatewayError(
            apigw.ResponseType.INVALID_API_KEY,
            "api_key_invalid",
            "the API key is missing or wrong: the stack's CloudFront URL adds it; a page on "
            "another origin sets its apiKey to the value of the stack's ApiKeyId output (aws "
            "apigateway get-api-key --include-value)",
        ),
        GatewayError(apigw.ResponseType.DEFAULT_4_XX, "request_refused", own_text),
        GatewayError(apigw.ResponseType.DEFAULT_5_XX, "api_unavailable", own_text, 5),
    ]
