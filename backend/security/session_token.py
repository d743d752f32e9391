"""Signed, expiring session tokens: issued by the start-server Lambda, checked by the backend.

Format: `v1.<expires unix seconds>.<nonce>.<signature>` where the signature is the
URL-safe base64 (unpadded) HMAC-SHA256 of `v1.<expires>.<nonce>` under a shared secret.
Standard library only, so the Lambda can bundle this one file unchanged.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

VERSION = "v1"
MAX_TOKEN_LENGTH = 256


class TokenError(ValueError):
    """A token was missing, malformed, forged or expired; `code` names which."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class SessionClaims:
    """What a valid token says."""

    expires_at: int
    nonce: str


def issue_token(secret: str, *, now: float, ttl_s: int = 900) -> str:
    """A token valid for `ttl_s` seconds from `now`."""
    if ttl_s <= 0:
        raise ValueError("ttl_s must be positive")
    payload = f"{VERSION}.{int(now) + ttl_s}.{secrets.token_urlsafe(12)}"
    return f"{payload}.{_sign(secret, payload)}"


def verify_token(token: str | None, secret: str, *, now: float) -> SessionClaims:
    """Check signature and expiry; raise `TokenError` saying what to do otherwise."""
    if not token:
        raise TokenError(
            "token_missing", "this server needs a session token: pass ?token=... from /start"
        )
    parts = token.split(".")
    if len(token) > MAX_TOKEN_LENGTH or len(parts) != 4 or parts[0] != VERSION:
        raise TokenError("token_malformed", "the session token is malformed; get a new one")
    version, expires, nonce, signature = parts
    if not hmac.compare_digest(signature, _sign(secret, f"{version}.{expires}.{nonce}")):
        raise TokenError("token_invalid", "the session token signature is not valid")
    if not expires.isdigit():
        raise TokenError("token_malformed", "the session token is malformed; get a new one")
    if int(expires) <= now:
        raise TokenError("token_expired", "the session token has expired; call /start again")
    return SessionClaims(expires_at=int(expires), nonce=nonce)


def _sign(secret: str, payload: str) -> str:
    digest = hmac.new(secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
