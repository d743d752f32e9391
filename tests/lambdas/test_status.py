"""status: GET /ready against a real loopback HTTP server, the instance state from moto."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime

import boto3
import pytest

from lambdas.shared.settings import SettingsError
from lambdas.status import handler as status_handler
from lambdas.status.logic import check_ready, instance_status
from lambdas.status.settings import StatusSettings
from tests.lambdas.conftest import REGION, ReadyServer, api_event, forget_lambda_settings


def test_ready_backend(ready_server: ReadyServer) -> None:
    check = check_ready(ready_server.host, scheme="http")
    assert (check.ready, check.http_status, check.detail) == (True, 200, {"ready": True})
    assert ready_server.requests == ["/ready"]


def test_not_ready_backend_passes_its_reason_on(ready_server: ReadyServer) -> None:
    ready_server.status, ready_server.body = 503, {"ready": False, "missing": ["yolo"]}
    check = check_ready(ready_server.host, scheme="http")
    assert (check.ready, check.http_status) == (False, 503)
    assert check.detail == {"ready": False, "missing": ["yolo"]}


def test_slow_backend_is_not_ready_within_the_timeout(ready_server: ReadyServer) -> None:
    ready_server.delay_s = 1.0
    began = time.monotonic()
    check = check_ready(ready_server.host, scheme="http", timeout_s=0.2)
    assert time.monotonic() - began < 0.9
    assert (check.ready, check.http_status) == (False, None)
    assert "unreachable" in str(check.detail)


def test_unreachable_backend_is_not_ready() -> None:
    check = check_ready("127.0.0.1:9", scheme="http", timeout_s=0.5)
    assert not check.ready
    assert "backend unreachable at http://127.0.0.1:9/ready" in str(check.detail)


def test_unknown_scheme_is_refused() -> None:
    with pytest.raises(ValueError, match="scheme must be one of"):
        check_ready("example.com", scheme="ftp")


def test_stopped_instance_is_not_probed(instance_id: str, ready_server: ReadyServer) -> None:
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.stop_instances(InstanceIds=[instance_id])
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    body = instance_status(
        ec2,
        cloudwatch,
        instance_id,
        ready_server.host,
        scheme="http",
        timeout_s=1,
        boot_default_s=120,
        now=datetime.now(UTC),
    )
    assert body == {
        "state": "stopped",
        "endpoint": f"wss://{ready_server.host}/ws/inference",
        "ready": False,
        "backend": None,
        "boot_estimate_s": 120,
        "boot_samples": 0,
        "boot_elapsed_s": None,
    }
    assert ready_server.requests == []


def test_handler_reports_state_and_readiness(
    instance_id: str, ready_server: ReadyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "INSTANCE_ID": instance_id,
        "ENDPOINT_HOST": ready_server.host,
        "ALLOWED_ORIGINS": "https://app.example.com",
        "READY_SCHEME": "http",
        "READY_TIMEOUT_S": "1",
    }.items():
        monkeypatch.setenv(name, value)
    response = status_handler.handler(api_event("GET", "/status", "https://app.example.com"), None)
    assert response["statusCode"] == 200
    assert response["headers"]["Access-Control-Allow-Origin"] == "https://app.example.com"  # type: ignore[index]
    body = json.loads(str(response["body"]))
    assert (body["state"], body["ready"], body["backend"]["http_status"]) == ("running", True, 200)

    wrong = status_handler.handler(api_event("POST", "/status"), None)
    assert wrong["statusCode"] == 400
    assert "accepts GET only" in str(wrong["body"])

    monkeypatch.setenv("INSTANCE_ID", "i-0000000000000000f")
    forget_lambda_settings()
    missing = status_handler.handler(api_event("GET", "/status"), None)
    assert missing["statusCode"] == 500
    assert json.loads(str(missing["body"]))["error"] == "instance_missing"


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"READY_SCHEME": "ftp"}, "READY_SCHEME='ftp': Input should be 'https' or 'http'"),
        ({"READY_TIMEOUT_S": "-1"}, "READY_TIMEOUT_S='-1': Input should be greater than 0"),
        ({}, "environment variable INSTANCE_ID is not set"),
    ],
)
def test_bad_configuration_fails_the_cold_start_with_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    monkeypatch.delenv("INSTANCE_ID", raising=False)
    monkeypatch.setenv("ENDPOINT_HOST", "gpu.example.com")
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    if variables:
        monkeypatch.setenv("INSTANCE_ID", "i-0123456789abcdef0")
    with pytest.raises(SettingsError, match=re.escape(message)):
        status_handler.handler(api_event("GET", "/status"), None)


def test_settings_defaults_and_comma_separated_origins(monkeypatch: pytest.MonkeyPatch) -> None:
    """READY_SCHEME and READY_TIMEOUT_S default to https and 2 s; blanks in ALLOWED_ORIGINS
    are dropped; the settings are read once per container."""
    for name in ("READY_SCHEME", "READY_TIMEOUT_S"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSTANCE_ID", "i-0123456789abcdef0")
    monkeypatch.setenv("ENDPOINT_HOST", " gpu.example.com ")
    monkeypatch.setenv("ALLOWED_ORIGINS", " https://a.example.com, ,http://localhost:5173,")
    settings = StatusSettings.load()
    assert (settings.ready_scheme, settings.ready_timeout_s) == ("https", 2.0)
    assert settings.endpoint_host == "gpu.example.com"
    assert settings.allowed_origins == ("https://a.example.com", "http://localhost:5173")
    monkeypatch.setenv("INSTANCE_ID", "i-0fedcba9876543210")
    assert StatusSettings.load() is settings
