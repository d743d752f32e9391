"""When a failed LLM summary request is tried again: the one retry policy of the summaries.

The chat clients are built with their own retries off and `ask` makes exactly one attempt,
so the summariser alone retries, by this policy. A *transient* failure (a timeout, a broken
connection, HTTP 408, 409, 429 or 5xx) is retried after an exponential backoff (1 s, 2 s,
4 s ... up to a cap) while the windows wait in the durable backlog. A *permanent* one (any
other HTTP status such as a bad key or an unknown model, or an error the provider's client
raises about the request itself) is not retried: the same request would fail the same way,
so its windows are summarised by the template instead and nothing is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from backend.core.config import Settings

BACKOFF_INITIAL_S = 1.0
RETRYABLE_STATUSES = frozenset({408, 409, 429})  # and every 5xx


@dataclass(frozen=True)
class RetryPolicy:
    """Attempts, backoff and retryable errors of one summary request.

    `attempts` bounds the tries of one batch of windows; None (the server's policy) retries
    a transient failure until the provider answers, the backlog's cap bounding what waits.
    """

    backoff_initial_s: float = BACKOFF_INITIAL_S
    backoff_max_s: float = 60.0
    attempts: int | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RetryPolicy:
        return cls(backoff_max_s=settings.llm_backoff_max_s)

    def retry_after(self, error: BaseException, attempt: int) -> float | None:
        """Seconds to wait before trying again after `error` ended try number `attempt`
        (1 for the first); None: do not retry (a permanent error, or the attempts are spent).
        """
        if not is_retryable(error):
            return None
        if self.attempts is not None and attempt >= self.attempts:
            return None
        return min(self.backoff_max_s, self.backoff_initial_s * 2.0 ** (attempt - 1))


def is_timeout(error: BaseException) -> bool:
    """Whether a provider call failed by taking too long (asyncio, httpx, openai, botocore)."""
    return isinstance(error, TimeoutError) or "timeout" in type(error).__name__.lower()


def is_retryable(error: BaseException) -> bool:
    """Whether trying the same request again may succeed (see the module's docstring)."""
    status = http_status(error)
    if status is not None:
        return status in RETRYABLE_STATUSES or status >= 500
    return (
        is_timeout(error)
        or isinstance(error, OSError | httpx.TransportError)
        or any("Connection" in cls.__name__ for cls in type(error).__mro__)  # openai, botocore
    )


def http_status(error: BaseException) -> int | None:
    """The HTTP status a provider answered with (openai, httpx, botocore), if any."""
    status = getattr(error, "status_code", None)  # openai.APIStatusError
    if isinstance(status, int):
        return status
    response = getattr(error, "response", None)
    if isinstance(response, httpx.Response):  # httpx.HTTPStatusError
        return response.status_code
    if isinstance(response, dict):  # botocore.exceptions.ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status if isinstance(status, int) else None
    return None
