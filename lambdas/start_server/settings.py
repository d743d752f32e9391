"""start_server's environment."""

from __future__ import annotations

from pydantic import Field

from lambdas.shared.settings import ApiSettings, NonEmpty, PositiveFloat, PositiveInt


class StartServerSettings(ApiSettings):
    """The secret that signs session tokens, the daily budget and what /start promises: the
    boot estimate (a stopped instance, or in fleet mode one from the warm pool) and, in fleet
    mode, the estimate for a fresh launch when the warm pool is empty."""

    function = "start_server"
    session_secret_arn: NonEmpty = Field(alias="SESSION_SECRET_ARN")
    daily_budget_gpu_hours: PositiveFloat = Field(alias="DAILY_BUDGET_GPU_HOURS")
    boot_estimate_s: PositiveInt = Field(alias="BOOT_ESTIMATE_S")
    token_ttl_s: PositiveInt = Field(alias="TOKEN_TTL_S")
    fleet_launch_estimate_s: PositiveInt = Field(default=330, alias="FLEET_LAUNCH_ESTIMATE_S")
