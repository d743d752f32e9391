"""Lambda entry point for POST /start (API Gateway REST proxy integration)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.api_response import ApiAnswer, serve_api_request
from lambdas.shared.aws_errors import AwsCallError, aws_call_error
from lambdas.start_server.fleet import FleetStartConfig, start_fleet
from lambdas.start_server.fleet_demand import DemandSettings
from lambdas.start_server.logic import StartConfig, start_server
from lambdas.start_server.settings import StartServerSettings

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event: object, context: object) -> dict[str, object]:
    """Answer one /start request."""
    settings = StartServerSettings.load()
    return serve_api_request(
        event,
        "POST",
        "/start",
        lambda: _start(settings),
        logger,
        allowed_origins=settings.allowed_origins,
    )


def _start(settings: StartServerSettings) -> ApiAnswer:
    answer = _start_fleet(settings) if settings.mode == "fleet" else _start_single(settings)
    logger.info("start answered", extra={"status": answer.status_code, **_loggable(answer.body)})
    return answer


def _start_fleet(settings: StartServerSettings) -> ApiAnswer:
    return start_fleet(
        boto3.client("autoscaling"),
        boto3.client("cloudwatch"),
        boto3.client("dynamodb"),
        FleetStartConfig(
            group_name=settings.fleet_group_name,
            endpoint_host=settings.endpoint_host,
            daily_budget_gpu_hours=settings.daily_budget_gpu_hours,
            boot_estimate_s=settings.boot_estimate_s,
            launch_estimate_s=settings.fleet_launch_estimate_s,
            token_ttl_s=settings.token_ttl_s,
            demand=DemandSettings(
                table=settings.demand_table_name,
                window_s=settings.demand_window_s,
                sessions_per_instance=settings.sessions_per_instance,
            ),
        ),
        secret=_session_secret(settings.session_secret_arn),
        now=datetime.now(UTC),
    )


def _start_single(settings: StartServerSettings) -> ApiAnswer:
    return start_server(
        boto3.client("ec2"),
        boto3.client("cloudwatch"),
        StartConfig(
            instance_id=settings.instance_id,
            endpoint_host=settings.endpoint_host,
            daily_budget_gpu_hours=settings.daily_budget_gpu_hours,
            boot_estimate_s=settings.boot_estimate_s,
            token_ttl_s=settings.token_ttl_s,
        ),
        secret=_session_secret(settings.session_secret_arn),
        now=datetime.now(UTC),
    )


@cache
def _session_secret(secret_arn: str) -> str:
    """The token-signing secret, fetched once per Lambda container."""
    try:
        value = boto3.client("secretsmanager").get_secret_value(SecretId=secret_arn)
    except (ClientError, BotoCoreError) as error:
        raise aws_call_error(error, "secretsmanager:GetSecretValue") from error
    secret = value.get("SecretString", "")
    if not secret:
        raise AwsCallError("secret_empty", f"the session-token secret {secret_arn} has no value")
    return secret


def _loggable(body: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in body.items() if k != "token"}
