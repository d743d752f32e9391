"""status's environment."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from lambdas.shared.settings import ApiSettings, PositiveFloat


class StatusSettings(ApiSettings):
    """How /ready is probed: through the front door over https, with a short timeout (the
    tests probe a loopback server over http)."""

    function = "status"
    ready_scheme: Literal["https", "http"] = Field(default="https", alias="READY_SCHEME")
    ready_timeout_s: PositiveFloat = Field(default=2.0, alias="READY_TIMEOUT_S")
