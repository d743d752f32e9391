"""API Gateway REST proxy events in, JSON responses with CORS headers out."""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from typing import Any

from lambdas.shared.aws_errors import AwsCallError


class BadEventError(ValueError):
    """The event is not the API Gateway request this function serves."""


def require_method(event: object, method: str, route: str) -> Mapping[str, Any]:
    """The event as a mapping, if it is an API Gateway proxy `method route` request."""
    if not isinstance(event, Mapping) or "httpMethod" not in event:
        raise BadEventError(f"expected an API Gateway REST proxy event for {method} {route}")
    if event["httpMethod"] != method:
        raise BadEventError(f"{route} accepts {method} only, not {event['httpMethod']}")
    return event


def request_origin(event: Mapping[str, Any]) -> str | None:
    """The browser's Origin header, whatever its case."""
    headers = event.get("headers") or {}
    return next((str(v) for k, v in headers.items() if k.lower() == "origin"), None)


def json_response(
    status_code: int,
    body: Mapping[str, object],
    *,
    origin: str | None,
    allowed_origins: Collection[str],
    retry_after_s: int | None = None,
) -> dict[str, object]:
    """A proxy response; CORS headers only for an allowed origin."""
    headers = {"Content-Type": "application/json", "Cache-Control": "no-store", "Vary": "Origin"}
    if origin is not None and origin in allowed_origins:
        headers["Access-Control-Allow-Origin"] = origin
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    return {"statusCode": status_code, "headers": headers, "body": json.dumps(body)}


def failure_body(failure: AwsCallError) -> dict[str, object]:
    """The JSON body for a failed AWS call."""
    return {
        "error": failure.code,
        "message": failure.message,
        "retryable": failure.retry_after_s is not None,
        "retry_after_s": failure.retry_after_s,
    }


def failure_status(failure: AwsCallError) -> int:
    """503 for what a retry can fix, 500 for what needs an operator."""
    return 503 if failure.retry_after_s is not None else 500
