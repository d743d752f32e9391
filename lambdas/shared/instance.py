"""Look up the one GPU instance this stack manages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.aws_errors import AwsCallError, aws_call_error

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

GONE_STATES = frozenset({"terminated", "shutting-down"})
# Instance tag start_server writes on every /start (ISO 8601, UTC) and idle_stop reads back:
# EC2 tags are read-after-write consistent, unlike CloudWatch datapoints (1-3 min late).
LAST_START_TAG = "cvstack:last-start"
# Written with it only when a /start boots the instance (lambdas/shared/boot_times.py).
BOOT_REQUESTED_TAG = "cvstack:boot-requested"


@dataclass(frozen=True)
class InstanceInfo:
    """What the lifecycle functions need to know about the instance."""

    instance_id: str
    state: str
    launched_at: datetime
    last_start_at: datetime | None = None
    boot_requested_at: datetime | None = None


def describe_instance(ec2: EC2Client, instance_id: str) -> InstanceInfo:
    """The instance's state and last launch (start) time; `AwsCallError` if it is gone."""
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except (ClientError, BotoCoreError) as error:
        raise aws_call_error(error, "ec2:DescribeInstances") from error
    instances = [i for r in reservations for i in r.get("Instances", [])]
    if not instances:
        raise AwsCallError(
            "instance_missing",
            f"the GPU instance {instance_id} does not exist; redeploy the CDK stack",
        )
    instance = instances[0]
    state = instance["State"]["Name"]
    if state in GONE_STATES:
        raise AwsCallError(
            "instance_missing",
            f"the GPU instance {instance_id} is {state}; redeploy the CDK stack to replace it",
        )
    tags = {t.get("Key"): t.get("Value", "") for t in instance.get("Tags", [])}
    return InstanceInfo(
        instance_id,
        state,
        instance["LaunchTime"],
        parse_time(tags.get(LAST_START_TAG)),
        parse_time(tags.get(BOOT_REQUESTED_TAG)),
    )


def record_start(ec2: EC2Client, instance_id: str, now: datetime, *, boot: bool = False) -> None:
    """Write the /start time on the instance's `LAST_START_TAG` (strongly consistent) and, when
    this /start boots the instance (`boot`), on `BOOT_REQUESTED_TAG` too, in the same call."""
    stamp = now.astimezone(UTC).isoformat()
    keys = [LAST_START_TAG, BOOT_REQUESTED_TAG] if boot else [LAST_START_TAG]
    try:
        ec2.create_tags(
            Resources=[instance_id], Tags=[{"Key": key, "Value": stamp} for key in keys]
        )
    except (ClientError, BotoCoreError) as error:
        raise aws_call_error(error, "ec2:CreateTags") from error


def parse_time(value: str | None) -> datetime | None:
    """A tag's ISO 8601 time; None when absent or not a time (a hand-edited tag)."""
    try:
        parsed = datetime.fromisoformat(value) if value else None
    except ValueError:
        return None
    return parsed if parsed is None or parsed.tzinfo else parsed.replace(tzinfo=UTC)
