"""The start_server handler end to end against a real moto_server on loopback: the secret
from Secrets Manager, CORS, bad events, and a token the backend's own check accepts."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator

import boto3
import pytest

from backend.security.session_token import verify_token
from lambdas.shared.settings import SettingsError
from lambdas.start_server import handler as start_handler
from tests.lambdas.conftest import api_event, forget_lambda_settings, run_instance

ORIGIN = "https://app.example.com"
SECRET = "k" * 64


@pytest.fixture
def deployed(moto_server: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The stack's environment, with the instance stopped and the secret stored."""
    instance_id = run_instance()
    boto3.client("ec2").stop_instances(InstanceIds=[instance_id])
    secret = boto3.client("secretsmanager").create_secret(
        Name="cvstack/session-token-secret", SecretString=SECRET
    )
    for name, value in {
        "INSTANCE_ID": instance_id,
        "ENDPOINT_HOST": "gpu.example.com",
        "ALLOWED_ORIGINS": f"{ORIGIN},http://localhost:5173",
        "SESSION_SECRET_ARN": secret["ARN"],
        "DAILY_BUDGET_GPU_HOURS": "4",
        "BOOT_ESTIMATE_S": "120",
        "TOKEN_TTL_S": "900",
    }.items():
        monkeypatch.setenv(name, value)
    start_handler._session_secret.cache_clear()
    yield instance_id
    start_handler._session_secret.cache_clear()


def body_of(response: dict[str, object]) -> dict[str, object]:
    return json.loads(str(response["body"]))  # type: ignore[no-any-return]


def test_start_then_start_again(deployed: str) -> None:
    first = start_handler.handler(api_event("POST", "/start", ORIGIN), None)
    assert first["statusCode"] == 200
    headers = first["headers"]
    assert isinstance(headers, dict)
    assert headers["Access-Control-Allow-Origin"] == ORIGIN
    assert headers["Cache-Control"] == "no-store"
    body = body_of(first)
    assert body["state"] == "pending"
    verify_token(str(body["token"]), SECRET, now=time.time())

    again = body_of(start_handler.handler(api_event("POST", "/start", ORIGIN), None))
    assert again["state"] == "running"
    assert again["token"] != body["token"]


def test_other_origins_get_no_cors_header(deployed: str) -> None:
    response = start_handler.handler(api_event("POST", "/start", "https://evil.example"), None)
    assert response["statusCode"] == 200
    assert "Access-Control-Allow-Origin" not in response["headers"]  # type: ignore[operator]


@pytest.mark.parametrize("allowed", ["", " , "])
def test_no_allowed_origins_answers_same_origin_calls_without_cors(
    deployed: str, monkeypatch: pytest.MonkeyPatch, allowed: str
) -> None:
    """The stack's page calls through CloudFront on its own origin: no CORS header needed,
    and none is given to any other origin."""
    monkeypatch.setenv("ALLOWED_ORIGINS", allowed)
    for origin in (None, ORIGIN):
        response = start_handler.handler(api_event("POST", "/start", origin), None)
        assert response["statusCode"] == 200, response
        assert "Access-Control-Allow-Origin" not in response["headers"]  # type: ignore[operator]
    monkeypatch.delenv("ALLOWED_ORIGINS")
    forget_lambda_settings()
    assert start_handler.handler(api_event("POST", "/start"), None)["statusCode"] == 200


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("not an event", "expected an API Gateway REST proxy event for POST /start"),
        (
            {"detail-type": "Scheduled Event"},
            "expected an API Gateway REST proxy event for POST /start",
        ),
        (api_event("GET", "/start"), "/start accepts POST only, not GET"),
    ],
)
def test_bad_events_get_a_400_that_says_why(deployed: str, event: object, message: str) -> None:
    response = start_handler.handler(event, None)
    assert response["statusCode"] == 400
    assert body_of(response) == {"error": "bad_request", "message": message}


def test_missing_secret_is_a_clear_500(deployed: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SESSION_SECRET_ARN", "cvstack/no-such-secret")
    response = start_handler.handler(api_event("POST", "/start", ORIGIN), None)
    assert response["statusCode"] == 500
    body = body_of(response)
    assert body["error"] == "aws_error"
    assert "secretsmanager:GetSecretValue failed with ResourceNotFoundException" in str(
        body["message"]
    )
    assert body["retryable"] is False


def test_unset_configuration_names_the_variable(
    deployed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ENDPOINT_HOST")
    with pytest.raises(SettingsError, match="ENDPOINT_HOST is not set") as error:
        start_handler.handler(api_event("POST", "/start", ORIGIN), None)
    assert "The CDK stack sets these variables" in str(error.value)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ENDPOINT_HOST", " ", "environment variable ENDPOINT_HOST is empty"),
        ("TOKEN_TTL_S", "0", "TOKEN_TTL_S='0': Input should be greater than 0"),
        ("TOKEN_TTL_S", "15m", "TOKEN_TTL_S='15m': Input should be a valid integer"),
        ("DAILY_BUDGET_GPU_HOURS", "four", "DAILY_BUDGET_GPU_HOURS='four': Input should be a"),
    ],
)
def test_bad_configuration_names_the_variable_and_its_value(
    deployed: str, monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SettingsError, match=re.escape(message)):
        start_handler.handler(api_event("POST", "/start", ORIGIN), None)
