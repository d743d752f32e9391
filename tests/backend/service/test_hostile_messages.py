"""Hostile input against the real stack: each test is an attack that once hurt the server."""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from backend.security.session_token import issue_token
from tests.backend.service.conftest import BackendServer, Client, jpeg_frame

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]
SECRET = "s" * 40


def still_works(client: Client) -> None:
    client.connection.send(jpeg_frame())
    assert client.receive_type("inference")["data"]["errors"] == {}


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[" * 8000 + "]" * 8000, "nested"),
        ('{"type": "init", "params": ' + "[" * 8000 + "]" * 8000 + "}", "nested"),
        ('{"type": "init", "params": {"use_yolo": ' + "9" * 5000 + "}}", "digits"),
        ("9" * 5000, "digits"),
    ],
    ids=["deep-array", "deep-params", "long-int-param", "long-int"],
)
def test_json_that_breaks_the_parser_is_a_non_fatal_error(
    backend: BackendServer, open_client: OpenClient, text: str, says: str
) -> None:
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True)
    client.connection.send(text)
    error = client.receive_type("error")
    assert (error["code"], error["fatal"]) == ("invalid_json", False)
    assert says in error["message"], error["message"]
    still_works(client)


@pytest.mark.parametrize("value", ['"yes"', '"on"', '"true"', "1", "0", '"1"', "1.0", "null"])
@pytest.mark.parametrize("field", ["use_yolo", "use_motion"])
def test_booleans_are_strict_json_true_or_false(
    backend: BackendServer, open_client: OpenClient, field: str, value: str
) -> None:
    client, _ = open_client(backend.ws_url)
    client.connection.send(f'{{"type": "init", "params": {{"{field}": {value}}}}}')
    error = client.receive_type("error", timeout=10)  # before the fix: accepted in silence
    assert (error["code"], error["fatal"]) == ("invalid_params", False)
    assert field in error["message"] and "true or false" in error["message"], error["message"]
    client.start(use_yolo=True)
    still_works(client)


def test_session_tokens_never_reach_the_logs(
    start_backend: Callable[..., BackendServer],
    open_client: OpenClient,
    capfd: pytest.CaptureFixture[str],
) -> None:
    backend = start_backend(session_token_secret=SECRET, log_level="info")
    token = issue_token(SECRET, now=time.time())
    client, first = open_client(f"{backend.ws_url}?token={token}")
    assert first["type"] == "queue_status"
    client.start(use_yolo=True)
    still_works(client)
    client.connection.close()
    open_client(f"{backend.ws_url}?a=1&token={token}x")  # refused: logged with its query
    with urllib.request.urlopen(f"{backend.url}/health?token={token}", timeout=10) as response:
        assert response.status == 200
    time.sleep(0.5)  # the access lines are written after the responses
    logged = capfd.readouterr()
    lines = logged.out + logged.err
    assert "/ws/inference" in lines and "/health" in lines, lines  # the log itself is on
    assert token.split(".")[-1] not in lines, lines
    assert "token=[redacted]" in lines, lines


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


DOC_PAGES = ("/docs", "/redoc", "/openapi.json")


def test_api_docs_are_off_in_production(start_backend: Callable[..., BackendServer]) -> None:
    backend = start_backend(
        environment="production",
        session_token_secret=SECRET,
        allowed_origins=["https://app.example.com"],
    )
    assert {page: status_of(backend.url + page) for page in DOC_PAGES} == dict.fromkeys(
        DOC_PAGES, 404
    )
    assert status_of(backend.url + "/health") == 200


def test_api_docs_are_served_in_development(backend: BackendServer) -> None:
    assert {page: status_of(backend.url + page) for page in DOC_PAGES} == dict.fromkeys(
        DOC_PAGES, 200
    )
