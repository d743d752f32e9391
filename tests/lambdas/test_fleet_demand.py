"""Demand-aware /start in fleet mode: start_server's demand settings."""

from __future__ import annotations

import re

import pytest

from lambdas.shared.settings import SettingsError
from lambdas.start_server.settings import StartServerSettings
from tests.lambdas.fleet_fixtures import GROUP

DEMAND_TABLE = "cvstack-demand"
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
