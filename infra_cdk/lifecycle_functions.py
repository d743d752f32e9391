"""The start_server, status and idle_stop Lambdas, each with its own least-privilege role."""

from __future__ import annotations

from collections.abc import Mapping

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra_cdk.config import StackConfig
from infra_cdk.generated_secret import GeneratedSecret
from infra_cdk.lambda_assets import ARCHITECTURE, RUNTIME, lambda_code
from infra_cdk.lifecycle_targets import LifecycleTarget
from lambdas.idle_stop.settings import IdleStopSettings
from lambdas.start_server.settings import StartServerSettings
from lambdas.status.settings import StatusSettings

SESSION_TOKEN_MODULE = "backend/security/session_token.py"
SCHEDULE_PERIOD = Duration.minutes(1)


class LifecycleFunctions(Construct):
    """`start_server`, `status`, `idle_stop` (with their `roles`, by function in
    `functions`) and the `idle_schedule`. status checks https://<endpoint_host>/ready through
    CloudFront, which adds the origin secret nginx requires. Each function's environment is
    built by its settings class (lambdas/<function>/settings.py), which names the variables;
    what it acts on, and may call, comes from the mode's `target`
    (infra_cdk/lifecycle_targets.py)."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: StackConfig,
        target: LifecycleTarget,
        session_secret: GeneratedSecret,
        endpoint_host: str,
    ) -> None:
        super().__init__(scope, construct_id)
        self.roles: list[iam.Role] = []
        api = {
            # The front door's host: the page, /ready and the WebSocket all go through it.
            "endpoint_host": endpoint_host,
            # Other origins that get CORS headers; empty when only the stack's page calls.
            "allowed_origins": config.allowed_origins,
        }
        start = target.start_server()
        self.start_server = self._function(
            "StartServer",
            "start_server",
            environment=StartServerSettings.environment(
                **api,
                **start.settings,
                session_secret_arn=session_secret.secret.secret_arn,
                daily_budget_gpu_hours=config.daily_budget_gpu_hours,
                boot_estimate_s=config.boot_estimate_seconds,
                token_ttl_s=config.token_ttl_seconds,
            ),
            statements=start.statements,
            extra_files=[SESSION_TOKEN_MODULE],
        )
        session_secret.grant_read(self.start_server)
        status = target.status()
        self.status = self._function(
            "Status",
            "status",
            environment=StatusSettings.environment(
                **api, **status.settings, boot_estimate_s=config.boot_estimate_seconds
            ),
            statements=status.statements,
        )
        idle = target.idle_stop()
        self.idle_stop = self._function(
            "IdleStop",
            "idle_stop",
            environment=IdleStopSettings.environment(
                **idle.settings,
                idle_minutes=config.idle_minutes,
                boot_grace_minutes=config.boot_grace_minutes,
            ),
            statements=idle.statements,
        )
        self.functions = {
            "StartServer": self.start_server,
            "Status": self.status,
            "IdleStop": self.idle_stop,
        }
        self.idle_schedule = events.Rule(
            self,
            "IdleSchedule",
            description="cvstack: check every minute whether the GPU instance is idle",
            schedule=events.Schedule.rate(SCHEDULE_PERIOD),
            targets=[targets.LambdaFunction(self.idle_stop, retry_attempts=0)],
        )

    def _function(
        self,
        construct_id: str,
        folder: str,
        *,
        environment: Mapping[str, str],
        statements: list[iam.PolicyStatement],
        extra_files: list[str] | None = None,
    ) -> lambda_.Function:
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            f"{construct_id}Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"cvstack {folder} Lambda",
        )
        log_group.grant_write(role)
        self.roles.append(role)
        for statement in statements:
            role.add_to_principal_policy(statement)
        return lambda_.Function(
            self,
            construct_id,
            description=f"cvstack lifecycle: {folder}",
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"lambdas.{folder}.handler.handler",
            code=lambda_code(folder, extra_files or []),
            role=role,
            log_group=log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            timeout=Duration.seconds(10),
            memory_size=256,
            environment=dict(environment),
        )
