"""cdk.json context: documented defaults, validation with messages that name the key."""

from __future__ import annotations

from typing import Any

import pytest

from infra_cdk.app import cdk_json_context
from infra_cdk.config import StackConfig


def test_cdk_json_lists_every_setting_with_the_coded_default() -> None:
    assert StackConfig.from_context(cdk_json_context()) == StackConfig()
    assert len(cdk_json_context()["cvstack"]) == len(StackConfig.__dataclass_fields__)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"idleMinutes": 0}, "cvstack.idleMinutes must be positive"),
        ({"idleMinutes": "15"}, "cvstack.idleMinutes must be like 15"),
        ({"allowedOrigins": ["*"]}, "allowedOrigins must list the frontend origins"),
        ({"allowedOrigins": ["http://app.example.com"]}, "plain http are refused"),
        ({"allowedCidrs": ["10.0.0.300/32"]}, "bad CIDR '10.0.0.300/32'"),
        ({"hostedZoneId": "Z123"}, "set all or none"),
        ({"instanceTyp": "g5.xlarge"}, "unknown cdk.json context keys cvstack.['instanceTyp']"),
    ],
)
def test_bad_settings_are_refused_with_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as error:
        StackConfig.from_context({"cvstack": settings})
    assert message in str(error.value)


def test_open_to_world() -> None:
    assert StackConfig().open_to_world
    assert not StackConfig(allowed_cidrs=("203.0.113.0/24",)).open_to_world
