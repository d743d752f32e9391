"""Every knob of the backend service, as `CVSTACK_*` environment variables with defaults."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.paths import default_models_dir, state_dir
from backend.security.origins import allowlist_error

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Settings that no longer exist, and what to do instead: set, they stop start-up.
REMOVED_SETTINGS = {
    "CVSTACK_LLM_MAX_RETRIES": (
        "LLM calls are retried by the summariser's one policy (docs/summaries.md), not by the "
        "client; unset it"
    ),
}


class Settings(BaseSettings):
    """Backend settings; `environment=production` refuses unsafe values."""

    model_config = SettingsConfigDict(env_prefix="CVSTACK_", extra="ignore")

    environment: Literal["local", "production"] = "local"
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)

    # Triton
    triton_grpc_url: str = "127.0.0.1:8001"
    triton_metrics_url: str | None = "http://127.0.0.1:8002/metrics"
    triton_timeout_s: float = Field(2.0, gt=0, le=60)
    detector_model: str = "yolo"
    pose_model: str = "yolo_pose"
    models_dir: Path = Field(default_factory=default_models_dir)

    # Sessions and backpressure
    max_sessions: int = Field(4, ge=1, le=256)
    max_wait_s: float = Field(30.0, ge=0)
    queue_status_interval_s: float = Field(1.0, gt=0)
    frame_queue_size: int = Field(1, ge=1, le=32)
    # Results per second one session may get (0: no cap): caps a session's share of the GPU;
    # the overlay benchmark runs the page at 2, 5 and 15 with it (backend/session/result_pace.py)
    max_results_per_s: float = Field(0.0, ge=0, le=1000)
    ping_interval_s: float = Field(15.0, gt=0)
    # Fleet mode: while this file exists, no new sessions (backend/session/drain.py); unset:
    # never draining. In production /run/cvstack-fleet/drain, written by the fleet agent.
    drain_file: Path | None = None

    # Connection limits, enforced below the app (backend/api/connection_limits.py)
    max_connections: int = Field(1000, ge=8, le=1_000_000)
    handshake_timeout_s: float = Field(10.0, gt=0, le=300)
    send_timeout_s: float = Field(10.0, gt=0, le=300)
    max_message_fragments: int = Field(64, ge=1, le=100_000)
    sessions_per_token: int = Field(1, ge=1, le=64)
    # Cores of decode + motion time one session may use; unset: CPUs / (4 x max_sessions)
    session_cpu_share: float | None = Field(None, gt=0, le=256)

    # Input limits
    max_frame_bytes: int = Field(2_000_000, ge=1_000)
    max_frame_pixels: int = Field(1920 * 1080, ge=64 * 64)
    max_text_bytes: int = Field(16_384, ge=256)
    max_text_messages_per_s: float = Field(20.0, gt=0, le=10_000)  # burst: twice as many

    # Detection and pose post-processing
    conf_threshold: float = Field(0.25, ge=0, le=1)
    iou_threshold: float = Field(0.45, ge=0, le=1)
    max_detections: int = Field(100, ge=1, le=1000)

    # Tracking (ByteTrack, backend/pipeline/tracker.py): confident detections match first,
    # low-score ones only continue tracks, new tracks need new_track_thresh
    track_high_thresh: float = Field(0.4, ge=0, le=1)
    track_low_thresh: float = Field(0.1, ge=0, le=1)
    new_track_thresh: float = Field(0.4, ge=0, le=1)
    track_match_iou: float = Field(0.2, gt=0, le=1)
    track_buffer: int = Field(30, ge=0, le=10_000)  # updates a lost track is kept

    # Motion and OCR
    motion_method: Literal["dis", "farneback"] = "dis"
    flow_step: int = Field(16, ge=4, le=128)
    ocr_min_interval_s: float = Field(2.0, ge=0)
    ocr_max_side: int = Field(640, ge=160, le=4096)

    # Access control (off in local mode)
    session_token_secret: SecretStr | None = None
    # Browser origins allowed to open /ws/inference: "self" (same origin) or scheme://host[:port];
    # empty allows every origin (local mode only)
    allowed_origins: list[str] = Field(default_factory=list)

    # LLM scene summaries (`use_langchain`); provider `none` means the template summariser
    llm_provider: Literal["none", "openai", "bedrock"] = "none"
    llm_base_url: str | None = None  # OpenAI-compatible endpoint; unset: api.openai.com
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    llm_timeout_s: float = Field(20.0, gt=0, le=300)
    llm_streaming: bool = False
    llm_backoff_max_s: float = Field(60.0, gt=0, le=3600)
    bedrock_region: str | None = None
    summary_window_s: float = Field(10.0, gt=0, le=3600)
    summary_max_merge: int = Field(12, ge=1, le=100)
    summary_ram_items: int = Field(32, ge=1, le=10_000)
    summary_max_items: int = Field(2_000, ge=1, le=1_000_000)
    summary_dir: Path = Field(default_factory=lambda: state_dir() / "summaries")

    @model_validator(mode="after")
    def _no_removed_settings(self) -> Settings:
        for name, instead in REMOVED_SETTINGS.items():
            if name in os.environ:
                raise ValueError(f"{name} was removed: {instead}")
        return self

    @model_validator(mode="after")
    def _track_thresholds_are_ordered(self) -> Settings:
        if not self.track_low_thresh <= self.track_high_thresh <= self.new_track_thresh:
            raise ValueError(
                "tracker thresholds must satisfy CVSTACK_TRACK_LOW_THRESH "
                f"({self.track_low_thresh}) <= CVSTACK_TRACK_HIGH_THRESH "
                f"({self.track_high_thresh}) <= CVSTACK_NEW_TRACK_THRESH ({self.new_track_thresh})"
            )
        return self

    @field_validator("allowed_origins")
    @classmethod
    def _origins_are_origins(cls, origins: list[str]) -> list[str]:
        for entry in origins:
            if error := allowlist_error(entry):
                raise ValueError(f"CVSTACK_ALLOWED_ORIGINS: {error}")
        return origins

    @field_validator("drain_file")
    @classmethod
    def _drain_file_is_absolute(cls, path: Path | None) -> Path | None:
        """Only the form here: the folder is checked where the backend runs (Runtime.start)."""
        if path is not None and not path.is_absolute():
            raise ValueError(
                f"CVSTACK_DRAIN_FILE={path} must be an absolute path, e.g. /run/cvstack-fleet/drain"
            )
        return path

    @model_validator(mode="after")
    def _llm_is_complete(self) -> Settings:
        if self.llm_provider == "none":
            return self
        if not self.llm_model:
            raise ValueError(
                f"CVSTACK_LLM_MODEL must name the model when CVSTACK_LLM_PROVIDER is "
                f"'{self.llm_provider}' (e.g. gpt-4o-mini, or a Bedrock model id)"
            )
        if self.llm_provider == "openai":
            if self.llm_base_url is None and self.llm_api_key is None:
                raise ValueError(
                    "CVSTACK_LLM_API_KEY must be set for api.openai.com; for another "
                    "OpenAI-compatible endpoint set CVSTACK_LLM_BASE_URL"
                )
            url = urlsplit(self.llm_base_url or "https://api.openai.com/v1")
            if url.scheme not in ("http", "https") or not url.hostname:
                raise ValueError(
                    f"CVSTACK_LLM_BASE_URL must be an http(s) URL such as "
                    f"http://127.0.0.1:11434/v1, not {self.llm_base_url!r}"
                )
            if (
                self.environment == "production"
                and url.scheme == "http"
                and url.hostname not in LOOPBACK_HOSTS
            ):
                raise ValueError(
                    "CVSTACK_LLM_BASE_URL must use https in production unless it is on loopback"
                )
        elif not self.bedrock_region:
            raise ValueError(
                "CVSTACK_BEDROCK_REGION must be set for the bedrock provider, e.g. us-east-1"
            )
        return self

    @model_validator(mode="after")
    def _production_is_locked_down(self) -> Settings:
        if self.environment == "production":
            secret = (
                self.session_token_secret.get_secret_value() if self.session_token_secret else ""
            )
            if len(secret) < 32:
                raise ValueError(
                    "CVSTACK_SESSION_TOKEN_SECRET must be set to at least 32 characters in "
                    "production (the start-server Lambda signs session tokens with it)"
                )
            if not self.allowed_origins:
                raise ValueError(
                    "CVSTACK_ALLOWED_ORIGINS must list the frontend origins in production, e.g. "
                    "'[\"self\"]' for a page served by this host (the CloudFront front door) or "
                    '\'["self","https://app.example.com"]\''
                )
        return self

    @property
    def ws_max_message_bytes(self) -> int:
        """Hard WebSocket message limit: up to it, an oversized frame gets an `error` and the
        session goes on; beyond it the connection is closed with 1009 (message too big)."""
        return 4 * max(self.max_frame_bytes, self.max_text_bytes)
