"""Read a Lambda's configuration from its environment, failing with the variable's name."""

from __future__ import annotations

import os


def require_env(name: str) -> str:
    """A required, non-empty environment variable."""
    value = os.environ.get(name, "").strip()
    if not value:
        raise RuntimeError(f"environment variable {name} is not set; the CDK stack sets it")
    return value


def env_list(name: str) -> tuple[str, ...]:
    """An optional comma-separated list; unset or empty is the empty list."""
    return tuple(item.strip() for item in os.environ.get(name, "").split(",") if item.strip())


def env_number(name: str, default: float) -> float:
    """An optional positive number from the environment."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise RuntimeError(f"environment variable {name}={raw!r} is not a number") from None
    if value <= 0:
        raise RuntimeError(f"environment variable {name}={raw!r} must be positive")
    return value
