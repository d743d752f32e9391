"""start_server's environment."""

from __future__ import annotations

from pydantic import Field

from lambdas.shared.settings import ApiSettings, NonEmpty, PositiveFloat, PositiveInt


class StartServerSettings(ApiSettings):
    """The secret that signs session tokens, the daily budget and what /start promises."""

    function = "start_server"
    session_secret_arn: NonEmpty = Field(alias="SESSION_SECRET_ARN")
    daily_budget_gpu_hours: PositiveFloat = Field(alias="DAILY_BUDGET_GPU_HOURS")
    boot_estimate_s: PositiveInt = Field(alias="BOOT_ESTIMATE_S")
    token_ttl_s: PositiveInt = Field(alias="TOKEN_TTL_S")
