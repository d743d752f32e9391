"""Keeps session tokens out of the logs: uvicorn logs every request's path with its query.

The WebSocket handshake carries the token as `?token=...`; uvicorn writes that path into its
access log (`uvicorn.access`) and its WebSocket "accepted"/"rejected" lines (`uvicorn.error`).
A filter on those loggers rewrites every record before any handler formats it.
"""

from __future__ import annotations

import logging
import re
from urllib.parse import unquote_plus

REDACTED = "[redacted]"
SECRET_PARAMS = frozenset({"token"})
# A query string: from "?" up to whitespace, a quote or the end of the text.
_QUERY = re.compile(r"\?[^\s\"'<>]*")
# Loggers whose records may hold a request's path; records are filtered where they are logged.
REQUEST_LOGGERS = ("uvicorn.access", "uvicorn.error", "uvicorn", "websockets.server")


def redact_query_secrets(text: str) -> str:
    """`text` with the value of every `token` query parameter replaced by `[redacted]`."""
    if "?" not in text:
        return text
    return _QUERY.sub(_redact_query, text)


def _redact_query(match: re.Match[str]) -> str:
    pairs = match.group(0)[1:].split("&")
    for index, pair in enumerate(pairs):
        name, equals, _ = pair.partition("=")
        if unquote_plus(name).strip().lower() in SECRET_PARAMS:
            pairs[index] = f"{name}{equals or '='}{REDACTED}"
    return "?" + "&".join(pairs)


class TokenRedactingFilter(logging.Filter):
    """Rewrites a record's message and arguments so no token query value is left in them."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_query_secrets(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_value(arg) for arg in record.args)
        elif isinstance(record.args, dict):
            record.args = {key: _redact_value(value) for key, value in record.args.items()}
        return True


def _redact_value(value: object) -> object:
    return redact_query_secrets(value) if isinstance(value, str) else value


_FILTER = TokenRedactingFilter()


def install_token_redaction() -> None:
    """Filter the request loggers (idempotent: the same filter is added once)."""
    for name in REQUEST_LOGGERS:
        logging.getLogger(name).addFilter(_FILTER)
