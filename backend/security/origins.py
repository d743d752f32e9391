"""The browser-origin allowlist for WebSocket connections."""

from __future__ import annotations


def origin_allowed(origin: str | None, allowed: list[str]) -> bool:
    """An empty allowlist allows every origin (local mode); otherwise an exact match is needed.

    Clients that are not browsers send no Origin header; they are allowed, since the session
    token, not the origin, is what authenticates them.
    """
    if not allowed or origin is None:
        return True
    return origin.rstrip("/") in {entry.rstrip("/") for entry in allowed}
