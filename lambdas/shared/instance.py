"""Look up the one GPU instance this stack manages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.aws_errors import AwsCallError, aws_call_error

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

GONE_STATES = frozenset({"terminated", "shutting-down"})


@dataclass(frozen=True)
class InstanceInfo:
    """What the lifecycle functions need to know about the instance."""

    instance_id: str
    state: str
    launched_at: datetime


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
    return InstanceInfo(instance_id, state, instance["LaunchTime"])
