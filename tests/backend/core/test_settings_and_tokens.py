"""Settings refuse unsafe production values; session tokens are signed and expire."""

from __future__ import annotations

import re

import pytest
from pydantic import ValidationError

from backend.core.config import Settings
from backend.security.origins import origin_allowed
from backend.security.session_token import TokenError, issue_token, verify_token

SECRET = "k" * 32


def test_local_defaults_need_no_secret() -> None:
    settings = Settings()
    assert settings.environment == "local"
    assert settings.session_token_secret is None


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({}, "CVSTACK_SESSION_TOKEN_SECRET must be set"),
        ({"session_token_secret": "short"}, "at least 32 characters"),
        ({"session_token_secret": SECRET}, "CVSTACK_ALLOWED_ORIGINS must list"),
        ({"session_token_secret": SECRET, "allowed_origins": ["*"]}, '"\\*" is not allowed'),
    ],
)
def test_production_refuses_unsafe_settings(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(environment="production", **values)  # type: ignore[arg-type]


def test_production_with_secret_and_origins_is_accepted() -> None:
    settings = Settings(
        environment="production",
        session_token_secret=SECRET,
        allowed_origins=["https://app.example.com"],
    )
    assert settings.allowed_origins == ["https://app.example.com"]


def test_settings_come_from_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CVSTACK_MAX_SESSIONS", "7")
    monkeypatch.setenv("CVSTACK_ALLOWED_ORIGINS", '["https://a.example"]')
    settings = Settings()
    assert settings.max_sessions == 7
    assert settings.allowed_origins == ["https://a.example"]
    monkeypatch.setenv("CVSTACK_MAX_SESSIONS", "0")
    with pytest.raises(ValidationError, match="max_sessions"):
        Settings()


def test_a_removed_setting_stops_start_up_and_says_what_instead(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CVSTACK_LLM_MAX_RETRIES", "3")
    with pytest.raises(ValidationError, match=r"CVSTACK_LLM_MAX_RETRIES was removed: .*unset it"):
        Settings()


def test_a_token_verifies_until_it_expires() -> None:
    token = issue_token(SECRET, now=1000.0, ttl_s=60)
    claims = verify_token(token, SECRET, now=1059.0)
    assert claims.expires_at == 1060
    with pytest.raises(TokenError) as expired:
        verify_token(token, SECRET, now=1060.0)
    assert expired.value.code == "token_expired"


@pytest.mark.parametrize(
    ("mutate", "code"),
    [
        (lambda t: t.replace("v1.", "v2.", 1), "token_malformed"),
        (lambda t: t + ".extra", "token_malformed"),
        (lambda t: t.replace(t.split(".")[1], "99999999999"), "token_invalid"),
        (lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"), "token_invalid"),
        (lambda t: "", "token_missing"),
        (lambda t: "x" * 300, "token_malformed"),
    ],
    ids=["version", "parts", "extended-expiry", "signature", "missing", "huge"],
)  # fmt: skip
def test_tampered_tokens_are_refused(mutate: object, code: str) -> None:
    token = issue_token(SECRET, now=1000.0)
    with pytest.raises(TokenError) as refused:
        verify_token(mutate(token), SECRET, now=1001.0)  # type: ignore[operator]
    assert refused.value.code == code


def test_origin_allowlist() -> None:
    allowed = ["https://app.example.com/"]
    host = "backend.example.com"
    assert origin_allowed("https://app.example.com", host, allowed)
    assert not origin_allowed("https://app.example.com.evil.io", host, allowed)
    assert not origin_allowed("https://backend.example.com", host, allowed), "no 'self' entry"
    assert origin_allowed(None, host, allowed), "non-browser clients send no Origin"
    assert origin_allowed("http://anything", host, []), "an empty list is local mode"


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("https://d111.cloudfront.net", "d111.cloudfront.net", True),
        ("https://D111.CloudFront.net", "d111.cloudfront.NET", True),
        ("http://127.0.0.1:8080", "127.0.0.1:8080", True),
        ("http://[::1]:8080", "[::1]:8080", True),
        ("http://localhost", "localhost", True),
        ("https://d111.cloudfront.net", "d111.cloudfront.net:443", False),
        ("http://127.0.0.1:8080", "127.0.0.1:8081", False),
        ("http://127.0.0.1:8080", "127.0.0.1", False),
        ("https://evil.example", "d111.cloudfront.net", False),
        ("https://d111.cloudfront.net.evil.example", "d111.cloudfront.net", False),
        ("https://evil.example@d111.cloudfront.net", "d111.cloudfront.net", False),
        ("null", "d111.cloudfront.net", False),
        ("https://d111.cloudfront.net", None, False),
    ],
)
def test_self_allows_the_origin_whose_host_is_the_requests_host(
    origin: str, host: str | None, allowed: bool
) -> None:
    assert origin_allowed(origin, host, ["self"]) is allowed


def test_self_and_listed_origins_combine() -> None:
    allowed = ["self", "https://app.example.com"]
    assert origin_allowed("https://app.example.com", "d111.cloudfront.net", allowed)
    assert origin_allowed("https://d111.cloudfront.net", "d111.cloudfront.net", allowed)
    assert not origin_allowed("https://evil.example", "d111.cloudfront.net", allowed)


@pytest.mark.parametrize(
    "entry",
    ["*", "app.example.com", "https://app.example.com/page", "ftp://app.example.com", "SELF"],
)
def test_allowlist_entries_must_be_self_or_origins(entry: str) -> None:
    message = f"CVSTACK_ALLOWED_ORIGINS: '{entry}' is not an origin: write 'self'"
    with pytest.raises(ValidationError, match=re.escape(message)):
        Settings(allowed_origins=[entry])


def test_production_accepts_self_alone() -> None:
    settings = Settings(
        environment="production", session_token_secret=SECRET, allowed_origins=["self"]
    )
    assert settings.allowed_origins == ["self"]
