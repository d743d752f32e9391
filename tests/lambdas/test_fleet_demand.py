"""Demand-aware /start in fleet mode: start_server's demand settings, and the /start calls
counted per minute in the DynamoDB demand table (moto, with the table as the stack makes it;
a botocore Stubber for the answers moto never gives: throttling, refusals, unprocessed keys)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.stub import Stubber

from lambdas.shared import demand
from lambdas.shared.aws_errors import AwsCallError
from lambdas.shared.demand import (
    EXPIRY_MARGIN,
    MAX_WINDOW_S,
    recent_starts,
    record_start,
    window_keys,
)
from lambdas.shared.settings import SettingsError
from lambdas.start_server.settings import StartServerSettings
from tests.lambdas.conftest import REGION
from tests.lambdas.fleet_fixtures import DEMAND_TABLE, GROUP, make_demand_table

NOW = datetime(2026, 12, 2, 10, 0, 30, tzinfo=UTC)
BASE_ENV = {
    "ENDPOINT_HOST": "gpu.example.com",
    "SESSION_SECRET_ARN": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s",
    "DAILY_BUDGET_GPU_HOURS": "4",
    "BOOT_ESTIMATE_S": "120",
    "TOKEN_TTL_S": "900",
}
VARIABLES = (
    "MODE",
    "INSTANCE_ID",
    "FLEET_GROUP_NAME",
    "DEMAND_TABLE_NAME",
    "SESSIONS_PER_INSTANCE",
    "DEMAND_WINDOW_S",
)


def start_env(monkeypatch: pytest.MonkeyPatch, **extra: str) -> None:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    for name, value in {**BASE_ENV, **extra}.items():
        monkeypatch.setenv(name, value)


def test_fleet_demand_settings_and_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    start_env(monkeypatch, MODE="fleet", FLEET_GROUP_NAME=GROUP, DEMAND_TABLE_NAME=DEMAND_TABLE)
    settings = StartServerSettings.load()
    assert (settings.demand_table_name, settings.sessions_per_instance) == (DEMAND_TABLE, 4)
    assert settings.demand_window_s == 600


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        (
            {"MODE": "fleet", "FLEET_GROUP_NAME": GROUP},
            "environment variable DEMAND_TABLE_NAME is not set (MODE=fleet)",
        ),
        (
            {"MODE": "fleet", "FLEET_GROUP_NAME": GROUP, "DEMAND_TABLE_NAME": " "},
            "environment variable DEMAND_TABLE_NAME is not set (MODE=fleet)",
        ),
        (
            {"INSTANCE_ID": "i-0123456789abcdef0", "DEMAND_TABLE_NAME": DEMAND_TABLE},
            f"DEMAND_TABLE_NAME={DEMAND_TABLE!r} is set, but MODE=single has no demand table",
        ),
        (
            {
                "MODE": "fleet",
                "FLEET_GROUP_NAME": GROUP,
                "DEMAND_TABLE_NAME": DEMAND_TABLE,
                "SESSIONS_PER_INSTANCE": "0",
            },
            "SESSIONS_PER_INSTANCE='0': Input should be greater than 0",
        ),
        (
            {
                "MODE": "fleet",
                "FLEET_GROUP_NAME": GROUP,
                "DEMAND_TABLE_NAME": DEMAND_TABLE,
                "DEMAND_WINDOW_S": "ten minutes",
            },
            "DEMAND_WINDOW_S='ten minutes'",
        ),
    ],
)
def test_bad_demand_settings_fail_the_cold_start_clearly(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    start_env(monkeypatch, **variables)
    with pytest.raises(SettingsError, match=re.escape(message)):
        StartServerSettings.load()


def test_the_stack_can_write_both_environments() -> None:
    common = {
        "endpoint_host": "gpu.example.com",
        "session_secret_arn": BASE_ENV["SESSION_SECRET_ARN"],
        "daily_budget_gpu_hours": 4.0,
        "boot_estimate_s": 120,
        "token_ttl_s": 900,
    }
    fleet = StartServerSettings.environment(
        **common,
        mode="fleet",
        fleet_group_name=GROUP,
        demand_table_name=DEMAND_TABLE,
        demand_window_s=900,
    )
    assert (fleet["DEMAND_TABLE_NAME"], fleet["DEMAND_WINDOW_S"]) == (DEMAND_TABLE, "900")
    assert fleet["SESSIONS_PER_INSTANCE"] == "4"
    single = StartServerSettings.environment(**common, instance_id="i-0123456789abcdef0")
    assert single["DEMAND_TABLE_NAME"] == ""
    with pytest.raises(ValueError, match="DEMAND_TABLE_NAME is not set"):
        StartServerSettings.environment(**common, mode="fleet", fleet_group_name=GROUP)


def dynamodb_client() -> Any:
    return boto3.client("dynamodb", region_name=REGION)


@pytest.fixture
def table(moto_aws: None) -> str:
    return make_demand_table()


def test_each_start_is_counted_in_its_minute_which_expires_after_any_window(table: str) -> None:
    dynamodb = dynamodb_client()
    record_start(dynamodb, table, NOW)
    record_start(dynamodb, table, NOW + timedelta(seconds=29))
    item = dynamodb.get_item(TableName=table, Key={"minute": {"S": "2026-12-02T10:00"}})["Item"]
    minute = NOW.replace(second=0)
    expires_at = minute + timedelta(seconds=MAX_WINDOW_S) + EXPIRY_MARGIN
    assert item["starts"] == {"N": "2"}
    assert item["expires_at"] == {"N": str(int(expires_at.timestamp()))}
    assert recent_starts(dynamodb, table, NOW + timedelta(seconds=29), 600) == 2


@pytest.mark.parametrize(
    ("minutes_ago", "counted"),
    [(0, True), (9, True), (10, True), (11, False), (60, False)],
)
def test_the_window_holds_the_minutes_it_overlaps(
    table: str, minutes_ago: int, counted: bool
) -> None:
    """A 10-minute window read at 10:00:30 counts 09:50 to 10:00: a start 9 or 10 minutes ago
    counts, one 11 minutes ago does not."""
    dynamodb = dynamodb_client()
    record_start(dynamodb, table, NOW - timedelta(minutes=minutes_ago))
    assert recent_starts(dynamodb, table, NOW, 600) == int(counted)


def test_starts_9_and_11_minutes_ago_in_a_10_minute_window(table: str) -> None:
    dynamodb = dynamodb_client()
    for minutes_ago in (9, 9, 11, 11, 11):
        record_start(dynamodb, table, NOW - timedelta(minutes=minutes_ago))
    assert recent_starts(dynamodb, table, NOW, 600) == 2
    assert recent_starts(dynamodb, table, NOW, 720) == 5


def test_window_keys() -> None:
    keys = window_keys(NOW, 600)
    assert (len(keys), keys[0], keys[-1]) == (11, "2026-12-02T09:50", "2026-12-02T10:00")
    assert window_keys(NOW.replace(second=0), 60) == ["2026-12-02T09:59", "2026-12-02T10:00"]
    assert len(window_keys(NOW, MAX_WINDOW_S)) == 61
    for bad in (0, MAX_WINDOW_S + 1):
        with pytest.raises(ValueError, match="window_s must be between 1 and 3600"):
            window_keys(NOW, bad)


def test_a_window_longer_than_the_table_keeps_is_refused_at_cold_start(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    start_env(
        monkeypatch,
        MODE="fleet",
        FLEET_GROUP_NAME=GROUP,
        DEMAND_TABLE_NAME=DEMAND_TABLE,
        DEMAND_WINDOW_S=str(MAX_WINDOW_S + 1),
    )
    with pytest.raises(SettingsError, match="DEMAND_WINDOW_S='3601': Input should be less"):
        StartServerSettings.load()


def test_a_missing_table_is_a_clear_error(moto_aws: None) -> None:
    dynamodb = dynamodb_client()
    for call in (
        lambda: record_start(dynamodb, DEMAND_TABLE, NOW),
        lambda: recent_starts(dynamodb, DEMAND_TABLE, NOW, 600),
    ):
        with pytest.raises(AwsCallError) as error:
            call()
        assert error.value.code == "demand_table_missing"
        assert f"the demand table {DEMAND_TABLE} does not exist" in error.value.message
        assert "redeploy the CDK stack" in error.value.message
        assert error.value.retry_after_s is None


@pytest.fixture
def stubbed_dynamodb(moto_aws: None) -> Iterator[tuple[Any, Stubber]]:
    dynamodb = dynamodb_client()
    with Stubber(dynamodb) as stubber:
        yield dynamodb, stubber
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("aws_code", "expected"),
    [
        ("ThrottlingException", ("aws_throttled", "AWS throttled dynamodb:", 5)),
        ("ProvisionedThroughputExceededException", ("aws_throttled", "retry in a few", 5)),
        ("RequestLimitExceeded", ("aws_throttled", "retry in a few seconds", 5)),
        ("AccessDeniedException", ("permission_denied", "may not call dynamodb:", None)),
        ("ResourceNotFoundException", ("demand_table_missing", "does not exist", None)),
        ("InternalServerError", ("aws_error", "failed with InternalServerError", None)),
    ],
)
@pytest.mark.parametrize("operation", ["update_item", "batch_get_item"])
def test_dynamodb_errors_are_clear_and_say_whether_to_retry(
    stubbed_dynamodb: tuple[Any, Stubber],
    operation: str,
    aws_code: str,
    expected: tuple[str, str, int | None],
) -> None:
    dynamodb, stubber = stubbed_dynamodb
    code, words, retry_after_s = expected
    stubber.add_client_error(operation, aws_code, f"{aws_code} from AWS")
    with pytest.raises(AwsCallError) as error:
        if operation == "update_item":
            record_start(dynamodb, DEMAND_TABLE, NOW)
        else:
            recent_starts(dynamodb, DEMAND_TABLE, NOW, 600)
    assert (error.value.code, error.value.retry_after_s) == (code, retry_after_s)
    assert words in error.value.message
    action = "UpdateItem" if operation == "update_item" else "BatchGetItem"
    assert f"dynamodb:{action}" in error.value.message


def test_an_unreachable_dynamodb_is_a_retryable_error(aws_env: None) -> None:
    """A real connection refused (nothing listens on the discard port)."""
    dynamodb = boto3.client(
        "dynamodb",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        config=Config(retries={"max_attempts": 1}, connect_timeout=2),
    )
    with pytest.raises(AwsCallError) as error:
        record_start(dynamodb, DEMAND_TABLE, NOW)
    assert (error.value.code, error.value.retry_after_s) == ("aws_unreachable", 5)
    assert "dynamodb:UpdateItem failed before AWS answered" in error.value.message


def minutes_answer(*starts: int) -> dict[str, Any]:
    """BatchGetItem's answer: the items found, with only `starts` (the projection)."""
    items = [{"starts": {"N": str(n)}} for n in starts]
    return {"Responses": {DEMAND_TABLE: items}, "UnprocessedKeys": {}}


def unprocessed(keys: list[str]) -> dict[str, Any]:
    return {
        DEMAND_TABLE: {
            "Keys": [{"minute": {"S": key}} for key in keys],
            "ProjectionExpression": "#starts",
            "ExpressionAttributeNames": {"#starts": "starts"},
            "ConsistentRead": True,
        }
    }


def test_unprocessed_minutes_are_asked_again(
    stubbed_dynamodb: tuple[Any, Stubber], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demand, "RETRY_BASE_S", 0.0)
    dynamodb, stubber = stubbed_dynamodb
    keys = window_keys(NOW, 600)
    first = minutes_answer(3)
    first["UnprocessedKeys"] = unprocessed(keys[6:])
    stubber.add_response("batch_get_item", first)
    stubber.add_response(
        "batch_get_item",
        {"Responses": {DEMAND_TABLE: []}, "UnprocessedKeys": unprocessed(keys[8:])},
        {"RequestItems": unprocessed(keys[6:])},
    )
    stubber.add_response(
        "batch_get_item",
        minutes_answer(2, 1),
        {"RequestItems": unprocessed(keys[8:])},
    )
    assert recent_starts(dynamodb, DEMAND_TABLE, NOW, 600) == 6


def test_minutes_left_unprocessed_after_the_retries_are_a_retryable_error(
    stubbed_dynamodb: tuple[Any, Stubber], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demand, "RETRY_BASE_S", 0.0)
    dynamodb, stubber = stubbed_dynamodb
    left = window_keys(NOW, 600)[4:]
    for _ in range(demand.UNPROCESSED_RETRIES + 1):
        stubber.add_response(
            "batch_get_item",
            {"Responses": {DEMAND_TABLE: []}, "UnprocessedKeys": unprocessed(left)},
        )
    with pytest.raises(AwsCallError) as error:
        recent_starts(dynamodb, DEMAND_TABLE, NOW, 600)
    assert (error.value.code, error.value.retry_after_s) == ("aws_throttled", 5)
    assert (
        f"DynamoDB left 7 of the demand table {DEMAND_TABLE}'s minutes unread after 5 tries"
        in error.value.message
    )
