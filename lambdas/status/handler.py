"""Lambda entry point for GET /status (API Gateway REST proxy integration)."""

from __future__ import annotations

import logging
import os

import boto3

from lambdas.shared.api_response import ApiAnswer, serve_api_request
from lambdas.shared.settings import env_number, require_env
from lambdas.status.logic import instance_status

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event: object, context: object) -> dict[str, object]:
    """Answer one /status request."""
    return serve_api_request(event, "GET", "/status", _status, logger)


def _status() -> ApiAnswer:
    body = instance_status(
        boto3.client("ec2"),
        require_env("INSTANCE_ID"),
        require_env("ENDPOINT_HOST"),
        scheme=os.environ.get("READY_SCHEME", "https"),
        timeout_s=env_number("READY_TIMEOUT_S", 2.0),
    )
    logger.info("status answered", extra={"state": body["state"], "ready": body["ready"]})
    return ApiAnswer(200, body)
