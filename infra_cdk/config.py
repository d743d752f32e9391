"""The stack's settings, read from the `cvstack` object in cdk.json context and validated."""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

CONTEXT_KEY = "cvstack"


@dataclass(frozen=True)
class StackConfig:
    """Every deploy-time knob; cdk.json holds the documented defaults."""

    instance_type: str = "g4dn.xlarge"
    ami_parameter_name: str = "/cvstack/ami-id"
    root_device_name: str = "/dev/sda1"
    root_volume_gib: int = 100
    idle_minutes: int = 15
    boot_grace_minutes: int = 5
    boot_estimate_seconds: int = 120
    daily_budget_gpu_hours: float = 4.0
    allowed_origins: tuple[str, ...] = ("https://app.example.com",)
    allowed_cidrs: tuple[str, ...] = ("0.0.0.0/0",)
    domain_name: str = ""
    hosted_zone_id: str = ""
    hosted_zone_name: str = ""
    alarm_email: str = ""
    latency_alarm_ms: int = 250
    session_secret_name: str = "cvstack/session-token-secret"
    token_ttl_seconds: int = 900
    api_rate_per_second: int = 2
    api_burst: int = 5
    api_daily_quota: int = 2000
    bedrock_model_ids: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in (
            "idle_minutes",
            "boot_estimate_seconds",
            "token_ttl_seconds",
            "api_rate_per_second",
            "api_burst",
            "api_daily_quota",
            "latency_alarm_ms",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"cdk.json context cvstack.{_camel(name)} must be positive")
        if self.boot_grace_minutes < 0 or self.daily_budget_gpu_hours <= 0:
            raise ValueError("cvstack.bootGraceMinutes must be >= 0, dailyBudgetGpuHours > 0")
        if not self.allowed_origins or any(
            o == "*" or not o.startswith(("https://", "http://localhost"))
            for o in self.allowed_origins
        ):
            raise ValueError(
                "cvstack.allowedOrigins must list the frontend origins, e.g. "
                '["https://app.example.com"]; "*" and plain http are refused'
            )
        for cidr in self.allowed_cidrs:
            try:
                ipaddress.ip_network(cidr)
            except ValueError as error:
                raise ValueError(f"cvstack.allowedCidrs has a bad CIDR {cidr!r}: {error}") from None
        if bool(self.hosted_zone_id) != bool(self.hosted_zone_name) or (
            self.hosted_zone_id and not self.domain_name
        ):
            raise ValueError(
                "cvstack.hostedZoneId, hostedZoneName and domainName go together: set all or none"
            )

    @property
    def open_to_world(self) -> bool:
        """True when the instance's HTTPS port is open to every address."""
        return any(ipaddress.ip_network(c).prefixlen == 0 for c in self.allowed_cidrs)

    @classmethod
    def from_context(cls, context: Mapping[str, Any]) -> StackConfig:
        """Build from `context["cvstack"]` (camelCase keys); unknown keys are an error."""
        raw = context.get(CONTEXT_KEY, {})
        if not isinstance(raw, Mapping):
            raise ValueError(f"cdk.json context {CONTEXT_KEY!r} must be an object")
        known = {_camel(f.name): f.name for f in fields(cls)}
        unknown = sorted(set(raw) - set(known))
        if unknown:
            raise ValueError(
                f"unknown cdk.json context keys cvstack.{unknown}; known: {sorted(known)}"
            )
        defaults = cls()
        values: dict[str, Any] = {}
        for key, raw_value in raw.items():
            name = known[key]
            default = getattr(defaults, name)
            value = tuple(raw_value) if isinstance(raw_value, list) else raw_value
            expected = (int, float) if isinstance(default, float) else type(default)
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ValueError(
                    f"cdk.json context cvstack.{key} must be like {default!r}, got {value!r}"
                )
            values[name] = value
        return cls(**values)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)
