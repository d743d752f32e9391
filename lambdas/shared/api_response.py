"""API Gateway REST proxy events in, JSON responses out, with CORS headers for other allowed
origins (the stack's own page calls through CloudFront on its own origin and needs none)."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class ApiAnswer:
    """An HTTP status, a JSON body and, for refusals worth retrying, a Retry-After."""

    status_code: int
    body: dict[str, object]
    retry_after_s: int | None = None


def serve_api_request(
    event: object,
    method: str,
    route: str,
    answer: Callable[[], ApiAnswer],
    logger: logging.Logger,
    *,
    allowed_origins: Collection[str],
) -> dict[str, object]:
    """Validate the event, run `answer`, and format its result or AWS failure, with CORS
    headers for an origin in `allowed_origins` (empty: same-origin calls only)."""
    try:
        request = require_method(event, method, route)
    except BadEventError as error:
        logger.warning("bad event", extra={"error": str(error)})
        return json_response(
            400, {"error": "bad_request", "message": str(error)}, origin=None, allowed_origins=()
        )
    origin = request_origin(request)
    try:
        result = answer()
    except AwsCallError as failure:
        logger.error(f"{route} failed", extra={"code": failure.code, "error": failure.message})
        return json_response(
            failure_status(failure),
            failure_body(failure),
            origin=origin,
            allowed_origins=allowed_origins,
            retry_after_s=failure.retry_after_s,
        )
    return json_response(
        result.status_code,
        result.body,
        origin=origin,
        allowed_origins=allowed_origins,
        retry_after_s=result.retry_after_s,
    )
