"""cdk.json context: documented defaults, validation with messages that name the key."""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import pytest
from pydantic import ValidationError

from infra_cdk.app import MODE_CONTEXT_KEY, cdk_json_context, with_mode_override
from infra_cdk.config import StackConfig
from tests.infra.conftest import CERTIFICATE_ARN


def test_cdk_json_lists_every_setting_with_the_coded_default() -> None:
    assert StackConfig.from_context(cdk_json_context()) == StackConfig()
    assert len(cdk_json_context()["cvstack"]) == len(StackConfig.model_fields)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"idleMinutes": 0}, "cvstack.idleMinutes must be positive"),
        ({"idleMinutes": "15"}, "cvstack.idleMinutes must be like 15"),
        ({"allowedOrigins": ["*"]}, "allowedOrigins lists other frontend origins"),
        ({"allowedOrigins": ["http://app.example.com"]}, "plain http are refused"),
        ({"operatorCidrs": ["10.0.0.300/32"]}, "bad CIDR '10.0.0.300/32'"),
        ({"operatorCidrs": ["0.0.0.0/0"]}, "cvstack.operatorCidrs may not hold 0.0.0.0/0"),
        ({"operatorCidrs": ["::/0"]}, "cvstack.operatorCidrs may not hold ::/0"),
        (
            {"allowedCidrs": ["0.0.0.0/0"]},
            "cvstack.allowedCidrs was removed: the instance takes no traffic from the internet",
        ),
        ({"hostedZoneId": "Z123"}, "go together, and with domainName"),
        (
            {"hostedZoneId": "Z123", "hostedZoneName": "example.org"},
            "go together, and with domainName",
        ),
        ({"domainName": "vision.example.org"}, "domainName and certificateArn go together"),
        ({"certificateArn": CERTIFICATE_ARN}, "domainName and certificateArn go together"),
        (
            {
                "domainName": "vision.example.org",
                "certificateArn": CERTIFICATE_ARN.replace("us-east-1", "eu-west-1"),
            },
            "is not an ACM certificate in us-east-1",
        ),
        ({"domainName": "https://vision.example.org"}, "is not a lower-case DNS name"),
        ({"priceClass": "PriceClass_50"}, "cvstack.priceClass must be one of"),
        ({"instanceTyp": "g5.xlarge"}, "unknown cdk.json context keys cvstack.['instanceTyp']"),
        (
            {"sessionSecretName": "cvstack/session-token-secret"},
            "cvstack.sessionSecretName was removed: the session secret's name is now generated",
        ),
        ({"terminationProtection": 1}, "cvstack.terminationProtection must be like false"),
        ({"idleMinutes": True}, "cvstack.idleMinutes must be like 15"),
        ({"availabilityZone": "euw1-az1"}, "are not availability zone names"),
        (
            {"availabilityZone": "eu-west-1c"},
            "cvstack.availabilityZone 'eu-west-1c' is not in the VPC's zones "
            "cvstack.availabilityZones []",
        ),
        (
            {"availabilityZones": ["eu-west-1a", "eu-west-1b"], "availabilityZone": "eu-west-1c"},
            "is not in the VPC's zones cvstack.availabilityZones ['eu-west-1a', 'eu-west-1b']",
        ),
        ({"availabilityZones": ["eu-west-1a", "eu-west-1a"]}, "lists a zone twice"),
    ],
)
def test_bad_settings_are_refused_with_the_key(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError) as error:
        StackConfig.from_context({"cvstack": settings})
    assert message in str(error.value)


def test_front_door_settings() -> None:
    """Defaults: no other origins, no operator access, CloudFront's own domain."""
    config = StackConfig()
    assert (config.allowed_origins, config.operator_cidrs, config.domain_name) == ((), (), "")
    assert config.instance_origins == ("self",)
    custom = StackConfig.from_context(
        {
            "cvstack": {
                "domainName": "vision.example.org",
                "certificateArn": CERTIFICATE_ARN,
                "hostedZoneId": "Z123",
                "hostedZoneName": "example.org",
                "allowedOrigins": ["https://app.example.com"],
                "operatorCidrs": ["203.0.113.7/32"],
                "priceClass": "PriceClass_All",
            }
        }
    )
    assert custom.instance_origins == (
        "self",
        "https://vision.example.org",
        "https://app.example.com",
    )


def test_zone_and_termination_protection_settings() -> None:
    assert StackConfig().instance_zone is None
    assert not StackConfig().termination_protection
    config = StackConfig.from_context(
        {
            "cvstack": {
                "availabilityZones": ["us-west-2-lax-1a", "us-west-2b"],
                "terminationProtection": True,
            }
        }
    )
    assert (config.instance_zone, config.termination_protection) == ("us-west-2-lax-1a", True)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"idleMinuts": 10},
            "unknown cdk.json context keys cvstack.['idleMinuts'] (did you mean: idleMinuts -> "
            "idleMinutes?): rename or delete them",
        ),
        (
            {"idle_minutes": 10},
            "cvstack.['idle_minutes'] (did you mean: idle_minutes -> idleMinutes?)",
        ),
        ({"rootVolumeGib": 0}, "cdk.json context cvstack.rootVolumeGib must be positive, got 0"),
        ({"bootGraceMinutes": -1}, "cvstack.bootGraceMinutes must not be negative, got -1"),
        ({"dailyBudgetGpuHours": "4"}, 'dailyBudgetGpuHours must be like 4.0 (a number), got "4"'),
        ({"idleMinutes": 2.5}, "cvstack.idleMinutes must be like 15 (a whole number), got 2.5"),
        (
            {"allowedOrigins": "https://app.example.com"},
            'cvstack.allowedOrigins must be like [] (a list of strings), got "https://app.',
        ),
        (
            {"operatorCidrs": ["203.0.113.7/32", 7]},
            'cvstack.operatorCidrs must be like [] (a list of strings), got ["203.0.113.7/32", 7]',
        ),
        ({"domainName": 7}, 'cvstack.domainName must be like "" (a string), got 7'),
    ],
)
def test_unknown_keys_and_wrong_types_name_the_key_and_the_value(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as error:
        StackConfig.from_context({"cvstack": settings})
    assert message in str(error.value)
    assert "cdk.json lists every key with its default" in str(error.value)


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ValueError) as error:
        StackConfig.from_context(
            {"cvstack": {"idleMinutes": "15", "priceClass": "PriceClass_50", "instanceTyp": "x"}}
        )
    lines = str(error.value).splitlines()
    assert lines[0] == "cdk.json context cvstack has 3 problems:"
    assert [line.split(" must ")[0] for line in lines[1:3]] == [
        "  - cdk.json context cvstack.idleMinutes",
        "  - cdk.json context cvstack.priceClass",
    ]
    assert lines[3].startswith("  - unknown cdk.json context keys cvstack.['instanceTyp']")


def test_the_context_must_be_an_object_and_the_config_is_frozen() -> None:
    with pytest.raises(ValueError, match=r"cdk\.json context 'cvstack' must be an object, got"):
        StackConfig.from_context({"cvstack": ["idleMinutes"]})
    with pytest.raises(ValidationError, match="frozen"):
        StackConfig().idle_minutes = 1  # type: ignore[misc]
    assert StackConfig(idle_minutes=20).idle_minutes == 20


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"mode": "fleets"}, "cvstack.mode must be one of 'single' or 'fleet', got \"fleets\""),
        ({"fleetMaxSize": 0}, "cvstack.fleetMaxSize must be positive, got 0"),
        ({"fleetMaxSize": 101}, "cvstack.fleetMaxSize must be 1..100 (the Auto Scaling group's"),
        ({"fleetWarmPoolSize": -2}, "cvstack.fleetWarmPoolSize must be -1 (AWS's default"),
        ({"fleetWarmPoolSize": 5}, "instances up to fleetMaxSize (4), got 5"),
        ({"fleetDrainMinutes": 61}, "cvstack.fleetDrainMinutes must be 1..60 (it is also the load"),
        ({"fleetDrainMinutes": 0}, "cvstack.fleetDrainMinutes must be positive, got 0"),
        ({"fleetTargetSessions": 4}, "cvstack.fleetTargetSessions (4) must be below"),
        (
            {"fleetTargetSessions": 6.5, "sessionsPerInstance": 6},
            "cvstack.fleetTargetSessions (6.5) must be below sessionsPerInstance (6)",
        ),
        ({"fleetTargetSessions": "3"}, "cvstack.fleetTargetSessions must be like 3.0 (a number)"),
        ({"sessionsPerInstance": 65}, "cvstack.sessionsPerInstance must be 1..64 (the backend's"),
        ({"fleetDemandWindowMinutes": 0}, "cvstack.fleetDemandWindowMinutes must be positive"),
        ({"fleetDemandWindowMinutes": 61}, "cvstack.fleetDemandWindowMinutes must be 1..60"),
        (
            {"mode": "fleet", "availabilityZones": ["eu-west-1a"]},
            'holds one zone, but mode "fleet" needs at least two',
        ),
        (
            {
                "mode": "fleet",
                "availabilityZones": ["eu-west-1a", "eu-west-1b"],
                "availabilityZone": "eu-west-1a",
            },
            "cvstack.availabilityZone 'eu-west-1a' places the single instance",
        ),
        ({"mode": "fleet", "terminationProtection": True}, "needs Auto Scaling to terminate"),
    ],
)
def test_bad_fleet_settings_are_refused_with_the_key(
    settings: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError) as error:
        StackConfig.from_context({"cvstack": settings})
    assert message in str(error.value)


def test_fleet_settings_and_their_defaults() -> None:
    config = StackConfig()
    assert (config.mode, config.fleet) == ("single", False)
    assert (config.fleet_max_size, config.fleet_warm_pool_size, config.fleet_drain_minutes) == (
        4,
        -1,
        30,
    )
    assert (config.fleet_target_sessions, config.sessions_per_instance) == (3.0, 4)
    assert config.fleet_demand_window_minutes == 10
    fleet = StackConfig.from_context(
        {
            "cvstack": {
                "mode": "fleet",
                "availabilityZones": ["eu-west-1a", "eu-west-1b", "eu-west-1c"],
                "fleetMaxSize": 8,
                "fleetWarmPoolSize": 0,
                "fleetTargetSessions": 2.5,
            }
        }
    )
    assert fleet.fleet and fleet.fleet_target_sessions == 2.5
    # Single mode keeps the single instance's keys as they are.
    single = {"availabilityZones": ["eu-west-1a"], "terminationProtection": True}
    assert StackConfig.from_context({"cvstack": single}).termination_protection


@pytest.mark.parametrize(
    ("override", "mode"), [(None, "single"), ("", "single"), ("fleet", "fleet")]
)
def test_the_mode_comes_from_cdk_json_or_the_command_line(override: str | None, mode: str) -> None:
    """`make synth MODE=fleet` passes `-c cvstackMode=fleet`; without it cdk.json decides."""
    app = cdk.App(context={} if override is None else {MODE_CONTEXT_KEY: override})
    settings = with_mode_override({"idleMinutes": 20}, app)
    assert StackConfig.from_context({"cvstack": settings}).mode == mode


def test_a_bad_mode_on_the_command_line_is_refused() -> None:
    app = cdk.App(context={MODE_CONTEXT_KEY: "fleeet"})
    with pytest.raises(ValueError, match=r"-c cvstackMode='fleeet' is not a mode: pass single or"):
        with_mode_override({}, app)
