"""Fleet mode's demand: /start calls counted per minute in a DynamoDB table.

A /start call is a visitor about to open a session, so the calls of the last few minutes show
a burst before any heartbeat metric can. Each call adds 1 to its minute's item (an atomic
`UpdateItem ADD`, so concurrent calls never lose a count); the count of a window is the sum of
its minutes' items, read in one `BatchGetItem` (a window is at most 61 minutes).

The table (made by the CDK stack): partition key `minute` (string, "YYYY-MM-DDTHH:MM", UTC),
attribute `starts` (number), TTL attribute `expires_at` (epoch seconds). DynamoDB deletes an
expired item within days, not at once, so the window is read by its keys, never by a scan.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lambdas.shared.aws_errors import AwsCallError, aws_call_error

# boto3's DynamoDB client (the venv has no mypy_boto3_dynamodb stubs).
DynamoDBClient = Any

MINUTE_FORMAT = "%Y-%m-%dT%H:%M"
# An item outlives the longest window it can be read in by this much (clock skew, late reads).
EXPIRY_MARGIN = timedelta(hours=1)
# The longest demand window: every item is kept this long (plus the margin) whatever window
# reads it, so changing DEMAND_WINDOW_S never reads minutes that expired early. Its 61 minutes
# fit one BatchGetItem (at most 100 keys).
MAX_WINDOW_S = 3600
# Keys DynamoDB leaves unprocessed (throughput exceeded) are asked again this many times,
# after 50, 100, 200 ... ms.
UNPROCESSED_RETRIES = 4
RETRY_BASE_S = 0.05


def minute_key(at: datetime) -> str:
    """The table key of the minute holding `at` (UTC)."""
    return at.astimezone(UTC).strftime(MINUTE_FORMAT)


def window_keys(now: datetime, window_s: int) -> list[str]:
    """The keys of every minute that overlaps the window (now - window_s, now], oldest first:
    a 600 s window read at 10:00:30 covers 09:50 to 10:00 (11 minutes), so a start 10 minutes
    and 30 seconds ago may still count, one 11 minutes ago never does."""
    if not 0 < window_s <= MAX_WINDOW_S:
        raise ValueError(f"window_s must be between 1 and {MAX_WINDOW_S}, got {window_s}")
    first = (now - timedelta(seconds=window_s)).astimezone(UTC).replace(second=0, microsecond=0)
    last = now.astimezone(UTC)
    keys = []
    while first <= last:
        keys.append(minute_key(first))
        first += timedelta(minutes=1)
    return keys


def record_start(dynamodb: DynamoDBClient, table: str, now: datetime) -> None:
    """Count one /start call in its minute's item (atomic), which expires once no window can
    read it any more."""
    minute = now.astimezone(UTC).replace(second=0, microsecond=0)
    expires_at = minute + timedelta(seconds=MAX_WINDOW_S) + EXPIRY_MARGIN
    _call(
        "UpdateItem",
        table,
        lambda: dynamodb.update_item(
            TableName=table,
            Key={"minute": {"S": minute_key(minute)}},
            UpdateExpression="SET #expires_at = :expires_at ADD #starts :one",
            ExpressionAttributeNames={"#starts": "starts", "#expires_at": "expires_at"},
            ExpressionAttributeValues={
                ":one": {"N": "1"},
                ":expires_at": {"N": str(int(expires_at.timestamp()))},
            },
        ),
    )


def recent_starts(dynamodb: DynamoDBClient, table: str, now: datetime, window_s: int) -> int:
    """The /start calls of the minutes overlapping the last `window_s` seconds."""
    items = _batch_get(dynamodb, table, window_keys(now, window_s))
    return sum(int(item.get("starts", {}).get("N", "0")) for item in items)


def _batch_get(dynamodb: DynamoDBClient, table: str, keys: list[str]) -> list[dict[str, Any]]:
    """The items of `keys` (missing minutes are absent), asking again for unprocessed keys."""
    request: dict[str, Any] = {
        table: {
            "Keys": [{"minute": {"S": key}} for key in keys],
            "ProjectionExpression": "#starts",
            "ExpressionAttributeNames": {"#starts": "starts"},
            "ConsistentRead": True,
        }
    }
    items: list[dict[str, Any]] = []
    for attempt in range(UNPROCESSED_RETRIES + 1):
        if attempt:
            time.sleep(RETRY_BASE_S * 2 ** (attempt - 1))
        answer = _call(
            "BatchGetItem", table, partial(dynamodb.batch_get_item, RequestItems=request)
        )
        items.extend(answer.get("Responses", {}).get(table, []))
        request = answer.get("UnprocessedKeys") or {}
        if not request:
            return items
    left = len(request.get(table, {}).get("Keys", []))
    raise AwsCallError(
        "aws_throttled",
        f"DynamoDB left {left} of the demand table {table}'s minutes unread after "
        f"{UNPROCESSED_RETRIES + 1} tries (its throughput is exhausted); retry in a few seconds",
        5,
    )


def _call(action: str, table: str, call: Callable[[], Any]) -> Any:
    """One DynamoDB call, its errors in words a caller can act on."""
    try:
        return call()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise AwsCallError(
                "demand_table_missing",
                f"the demand table {table} does not exist (dynamodb:{action}); "
                "redeploy the CDK stack",
            ) from error
        raise aws_call_error(error, f"dynamodb:{action}") from error
    except BotoCoreError as error:
        raise aws_call_error(error, f"dynamodb:{action}") from error
