"""Lambda entry point for GET /status (API Gateway REST proxy integration)."""

from __future__ import annotations

import logging
import os

import boto3

from lambdas.shared.api_response import (
    BadEventError,
    failure_body,
    failure_status,
    json_response,
    request_origin,
    require_method,
)
from lambdas.shared.aws_errors import AwsCallError
from lambdas.shared.settings import env_number, require_env
from lambdas.status.logic import instance_status

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event: object, context: object) -> dict[str, object]:
    """Answer one /status request."""
    allowed = require_env("ALLOWED_ORIGINS").split(",")
    try:
        request = require_method(event, "GET", "/status")
    except BadEventError as error:
        logger.warning("bad event", extra={"error": str(error)})
        return json_response(
            400, {"error": "bad_request", "message": str(error)}, origin=None, allowed_origins=()
        )
    origin = request_origin(request)
    try:
        body = instance_status(
            boto3.client("ec2"),
            require_env("INSTANCE_ID"),
            require_env("ENDPOINT_HOST"),
            scheme=os.environ.get("READY_SCHEME", "https"),
            timeout_s=env_number("READY_TIMEOUT_S", 2.0),
        )
    except AwsCallError as failure:
        logger.error("status failed", extra={"code": failure.code, "error": failure.message})
        return json_response(
            failure_status(failure),
            failure_body(failure),
            origin=origin,
            allowed_origins=allowed,
            retry_after_s=failure.retry_after_s,
        )
    logger.info("status answered", extra={"state": body["state"], "ready": body["ready"]})
    return json_response(200, body, origin=origin, allowed_origins=allowed)
