"""status's environment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lambdas.shared.settings import ApiSettings, PositiveFloat, PositiveInt


class StatusSettings(ApiSettings):
    """How /ready is probed: through the front door over https, with a short timeout (the
    tests probe a loopback server over http); in fleet mode, the sessions one instance serves
    (the backend's CVSTACK_MAX_SESSIONS), for the free slots; the boot estimate answered
    while no boot has been measured (cdk.json's bootEstimateSeconds, as start_server's)."""

    function = "status"
    ready_scheme: Literal["https", "http"] = Field(default="https", alias="READY_SCHEME")
    ready_timeout_s: PositiveFloat = Field(default=2.0, alias="READY_TIMEOUT_S")
    sessions_per_instance: PositiveInt = Field(default=4, alias="SESSIONS_PER_INSTANCE")
    boot_estimate_s: PositiveInt = Field(default=120, alias="BOOT_ESTIMATE_S")
