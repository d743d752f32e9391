"""The retry policy alone: which provider errors are retried, and after how long."""

from __future__ import annotations

import httpx
import httpx2
import openai
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from backend.summaries.retry_policy import RetryPolicy, is_retryable

REQUEST = httpx2.Request("POST", "http://127.0.0.1/v1/chat/completions")  # openai's httpx


def openai_status(status: int) -> openai.APIStatusError:
    response = httpx2.Response(status, request=REQUEST)
    return openai.APIStatusError(f"HTTP {status}", response=response, body=None)


def bedrock_error(code: str, status: int) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "Converse")  # type: ignore[arg-type]


TRANSIENT = [
    TimeoutError(),
    openai_status(500),
    openai_status(503),
    openai_status(429),
    openai_status(408),
    openai.APIConnectionError(request=REQUEST),
    openai.APITimeoutError(request=REQUEST),
    httpx.ConnectError("refused"),
    ConnectionResetError(),
    bedrock_error("ThrottlingException", 429),
    bedrock_error("ServiceUnavailableException", 503),
    EndpointConnectionError(endpoint_url="https://bedrock-runtime.eu-west-1.amazonaws.com"),
    ReadTimeoutError(endpoint_url="https://bedrock-runtime.eu-west-1.amazonaws.com"),
]
PERMANENT = [
    openai_status(400),
    openai_status(401),
    openai_status(403),
    openai_status(404),
    openai_status(422),
    bedrock_error("ValidationException", 400),
    bedrock_error("AccessDeniedException", 403),
    ValueError("System tools require 'bedrock:InvokeTool' IAM permission"),
]


@pytest.mark.parametrize("error", TRANSIENT, ids=repr)
def test_transient_errors_are_retried(error: BaseException) -> None:
    assert is_retryable(error)
    assert RetryPolicy().retry_after(error, 1) == 1.0


@pytest.mark.parametrize("error", PERMANENT, ids=repr)
def test_permanent_errors_are_not(error: BaseException) -> None:
    assert not is_retryable(error)
    assert RetryPolicy().retry_after(error, 1) is None


def test_the_backoff_doubles_up_to_its_cap_and_the_attempts_bound_the_tries() -> None:
    unbounded = RetryPolicy(backoff_initial_s=1.0, backoff_max_s=60.0)
    delays = [unbounded.retry_after(TimeoutError(), attempt) for attempt in range(1, 9)]
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60]
    bounded = RetryPolicy(attempts=3)
    assert [bounded.retry_after(TimeoutError(), attempt) for attempt in (1, 2, 3)] == [1, 2, None]
