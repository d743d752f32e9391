"""Turn botocore errors into answers a caller can act on: what failed, and whether to retry."""

from __future__ import annotations

from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",  # DynamoDB
    }
)
CAPACITY_CODES = frozenset({"InsufficientInstanceCapacity", "InsufficientCapacity"})
PERMISSION_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"})
# Auto Scaling: another change to the group is under way (a scaling activity, another call).
CONTENTION_CODES = frozenset({"ResourceContention", "ScalingActivityInProgress"})
MISSING_INSTANCE_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"})


@dataclass(frozen=True)
class AwsCallError(Exception):
    """An AWS call failed; `retry_after_s` is set when retrying later can succeed."""

    code: str
    message: str
    retry_after_s: int | None = None

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


def aws_call_error(error: ClientError | BotoCoreError, action: str) -> AwsCallError:
    """Describe a failed `action` (e.g. 'ec2:StartInstances') in words a caller can act on."""
    if isinstance(error, BotoCoreError):
        return AwsCallError("aws_unreachable", f"{action} failed before AWS answered: {error}", 5)
    code = str(error.response.get("Error", {}).get("Code", "Unknown"))
    detail = str(error.response.get("Error", {}).get("Message", "")).strip()
    if code in THROTTLING_CODES:
        return AwsCallError("aws_throttled", f"AWS throttled {action}; retry in a few seconds", 5)
    if code in CAPACITY_CODES:
        return AwsCallError(
            "insufficient_capacity",
            "AWS has no spare GPU capacity for this instance type in its availability zone "
            "right now; retry in a minute or two",
            60,
        )
    if code in CONTENTION_CODES:
        return AwsCallError(
            "fleet_busy",
            f"the Auto Scaling group is being changed right now ({action}: {code}); "
            "retry in a few seconds",
            5,
        )
    if code in PERMISSION_CODES:
        return AwsCallError(
            "permission_denied",
            f"this function's role may not call {action} ({detail}); redeploy the CDK stack",
        )
    if code in MISSING_INSTANCE_CODES:
        return AwsCallError(
            "instance_missing",
            f"the GPU instance does not exist ({detail}); redeploy the CDK stack",
        )
    return AwsCallError("aws_error", f"{action} failed with {code}: {detail}")
