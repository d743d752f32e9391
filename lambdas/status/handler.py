"""Lambda entry point for GET /status (API Gateway REST proxy integration)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import boto3

from lambdas.shared.api_response import ApiAnswer, serve_api_request
from lambdas.status.fleet import fleet_status
from lambdas.status.logic import instance_status
from lambdas.status.settings import StatusSettings

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event: object, context: object) -> dict[str, object]:
    """Answer one /status request."""
    settings = StatusSettings.load()
    return serve_api_request(
        event,
        "GET",
        "/status",
        lambda: _status(settings),
        logger,
        allowed_origins=settings.allowed_origins,
    )


def _status(settings: StatusSettings) -> ApiAnswer:
    now = datetime.now(UTC)
    if settings.mode == "fleet":
        body = fleet_status(
            boto3.client("autoscaling"),
            boto3.client("cloudwatch"),
            settings.fleet_group_name,
            settings.endpoint_host,
            sessions_per_instance=settings.sessions_per_instance,
            scheme=settings.ready_scheme,
            timeout_s=settings.ready_timeout_s,
            boot_default_s=settings.boot_estimate_s,
            now=now,
        )
    else:
        body = instance_status(
            boto3.client("ec2"),
            boto3.client("cloudwatch"),
            settings.instance_id,
            settings.endpoint_host,
            scheme=settings.ready_scheme,
            timeout_s=settings.ready_timeout_s,
            boot_default_s=settings.boot_estimate_s,
            now=now,
        )
    logger.info("status answered", extra={"state": body["state"], "ready": body["ready"]})
    return ApiAnswer(200, body)
