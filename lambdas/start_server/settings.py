"""start_server's environment."""

from __future__ import annotations

from typing import Annotated, Self

from pydantic import Field, model_validator

from lambdas.shared.demand import MAX_WINDOW_S
from lambdas.shared.settings import ApiSettings, NonEmpty, PositiveFloat, PositiveInt, Stripped


class StartServerSettings(ApiSettings):
    """The secret that signs session tokens, the daily budget and what /start promises: the
    boot estimate (a stopped instance, or in fleet mode one from the warm pool) and, in fleet
    mode, the estimate for a fresh launch when the warm pool is empty.

    Fleet mode also sizes the group on demand: /start calls are counted per minute in the
    DEMAND_TABLE_NAME table, and those of the last DEMAND_WINDOW_S seconds, like the fleet's
    sessions, need one instance per SESSIONS_PER_INSTANCE (the backend's CVSTACK_MAX_SESSIONS);
    the window is at most an hour (the table keeps each minute that long).
    """

    function = "start_server"
    session_secret_arn: NonEmpty = Field(alias="SESSION_SECRET_ARN")
    daily_budget_gpu_hours: PositiveFloat = Field(alias="DAILY_BUDGET_GPU_HOURS")
    boot_estimate_s: PositiveInt = Field(alias="BOOT_ESTIMATE_S")
    token_ttl_s: PositiveInt = Field(alias="TOKEN_TTL_S")
    fleet_launch_estimate_s: PositiveInt = Field(default=330, alias="FLEET_LAUNCH_ESTIMATE_S")
    demand_table_name: Stripped = Field(default="", alias="DEMAND_TABLE_NAME")
    sessions_per_instance: PositiveInt = Field(default=4, alias="SESSIONS_PER_INSTANCE")
    demand_window_s: Annotated[int, Field(gt=0, le=MAX_WINDOW_S)] = Field(
        default=600, alias="DEMAND_WINDOW_S"
    )

    @model_validator(mode="after")
    def _demand_table_in_fleet_mode_only(self) -> Self:
        """Fleet mode counts /start calls in DEMAND_TABLE_NAME; single mode has no table."""
        if self.mode == "fleet" and not self.demand_table_name:
            raise ValueError("environment variable DEMAND_TABLE_NAME is not set (MODE=fleet)")
        if self.mode == "single" and self.demand_table_name:
            raise ValueError(
                f"environment variable DEMAND_TABLE_NAME={self.demand_table_name!r} is set, "
                "but MODE=single has no demand table (fleet mode uses it)"
            )
        return self
