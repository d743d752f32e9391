"""Lambda entry point for the every-minute EventBridge schedule."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime

import boto3

from lambdas.idle_stop.fleet import check_fleet_idle
from lambdas.idle_stop.logic import check_idle
from lambdas.idle_stop.policy import IdlePolicy
from lambdas.idle_stop.settings import IdleStopSettings
from lambdas.shared.aws_errors import AwsCallError

logger = logging.getLogger(__name__)
logger.setLevel(logging.INFO)


def handler(event: object, context: object) -> dict[str, object]:
    """Check once; raise (so the invocation counts as an error) when AWS calls fail."""
    if not (
        isinstance(event, Mapping)
        and event.get("source") == "aws.events"
        and event.get("detail-type") == "Scheduled Event"
    ):
        raise ValueError(
            "idle_stop expects an EventBridge 'Scheduled Event' from source aws.events, "
            f"got {str(event)[:200]}"
        )
    settings = IdleStopSettings.load()
    policy = IdlePolicy(
        idle_minutes=settings.idle_minutes, boot_grace_minutes=settings.boot_grace_minutes
    )
    try:
        if settings.mode == "fleet":
            report = check_fleet_idle(
                boto3.client("autoscaling"),
                boto3.client("ec2"),
                boto3.client("cloudwatch"),
                settings.fleet_group_name,
                policy,
                now=datetime.now(UTC),
            )
        else:
            report = check_idle(
                boto3.client("ec2"),
                boto3.client("cloudwatch"),
                settings.instance_id,
                policy,
                now=datetime.now(UTC),
            )
    except AwsCallError as failure:
        logger.error("idle check failed", extra={"code": failure.code, "error": failure.message})
        raise
    logger.info("idle check", extra=report)
    return report
