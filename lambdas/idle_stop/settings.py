"""idle_stop's environment."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from lambdas.shared.settings import InstanceSettings, PositiveFloat


class IdleStopSettings(InstanceSettings):
    """The idle policy: stop after `idle_minutes` without activity, never within
    `boot_grace_minutes` (0 allowed) of a launch."""

    function = "idle_stop"
    idle_minutes: PositiveFloat = Field(alias="IDLE_MINUTES")
    boot_grace_minutes: Annotated[float, Field(ge=0)] = Field(alias="BOOT_GRACE_MINUTES")
