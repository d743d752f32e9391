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
from lambdas.shared.settings import env_number, require_env
from lambdas.start_server.logic import StartConfig, start_server

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event: object, context: object) -> dict[str, object]:
    """Answer one /start request."""
    return serve_api_request(event, "POST", "/start", _start, logger)


def _start() -> ApiAnswer:
    answer = start_server(
        boto3.client("ec2"),
        boto3.client("cloudwatch"),
        _config(),
        secret=_session_secret(require_env("SESSION_SECRET_ARN")),
        now=datetime.now(UTC),
    )
    logger.info("start answered", extra={"status": answer.status_code, **_loggable(answer.body)})
    return answer


def _config() -> StartConfig:
    return StartConfig(
        instance_id=require_env("INSTANCE_ID"),
        endpoint_host=require_env("ENDPOINT_HOST"),
        daily_budget_gpu_hours=env_number("DAILY_BUDGET_GPU_HOURS", 4.0),
        boot_estimate_s=int(env_number("BOOT_ESTIMATE_S", 120)),
        token_ttl_s=int(env_number("TOKEN_TTL_S", 900)),
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
