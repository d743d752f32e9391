"""Production mode: the page served as static files boots the backend through the start/status
API (a loopback stand-in speaking the Lambdas' contract), then connects with its token."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, Route

from backend.paths import FRONTEND_DIR
from backend.security.session_token import issue_token
from backend.triton_server.local_server import LocalTritonServer
from tests.backend.service.conftest import BackendServer, backend_settings
from tests.frontend.conftest import DETECTION_OVERRIDES, snapshot, wait_for_results
from tests.frontend.start_api import (
    API_KEY,
    SECRET,
    TOKEN_TTL_S,
    LoopbackServer,
    StartStatusApi,
)


class PageServer(LoopbackServer):
    """The frontend as static files (what S3/CloudFront serve), with a chosen `config.json`."""

    def __init__(self) -> None:
        super().__init__(PageHandler)
        self.config: dict[str, Any] = {}


class PageHandler(SimpleHTTPRequestHandler):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(FRONTEND_DIR), **kwargs)

    def do_GET(self) -> None:
        if self.path != "/config.json":
            super().do_GET()
            return
        assert isinstance(self.server, PageServer)
        body = json.dumps(self.server.config).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read the page, not the access log."""


@pytest.fixture(scope="module")
def page_server() -> Iterator[PageServer]:
    with PageServer() as server:
        yield server


@pytest.fixture(scope="module")
def locked_backend(
    yolo_models_dir: Path, triton: LocalTritonServer, page_server: PageServer
) -> Iterator[BackendServer]:
    """A backend locked down as in production: session tokens and the page's origin only."""
    settings = backend_settings(
        yolo_models_dir,
        triton.address,
        session_token_secret=SECRET,
        allowed_origins=[page_server.url],
        **DETECTION_OVERRIDES,
    )
    server = BackendServer(settings).start()
    yield server
    server.stop()


def test_cold_start_boots_polls_and_connects_with_the_token(
    page_server: PageServer, locked_backend: BackendServer, page: Page
) -> None:
    with StartStatusApi(locked_backend, page_server.url) as api:
        page_server.config = {
            "startApiUrl": f"{api.url}/",
            "apiKey": API_KEY,
            "statusPollMs": 500,
        }
        sockets: list[str] = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        page.goto(f"{page_server.url}/")
        page.wait_for_function(
            "() => document.getElementById('status').textContent.startsWith('starting: pending')"
        )
        booting = page.text_content("#status") or ""
        assert re.search(r"^starting: pending, boot estimate 5 s \(\d+ s\)$", booting), booting

        page.wait_for_function("() => window.cvstack.state === 'running'")
        wait_for_results(page, 3)

    states = page.evaluate("() => window.cvstack.coldStartStates")
    assert states[0] == "stopping", "a retryable refusal is shown, then /start is called again"
    assert {"pending", "running"} <= set(states)
    assert api.calls[:2] == ["start", "start"], "the API key was accepted"
    assert api.preflights >= 1, "x-api-key makes the browser ask CORS first"
    assert api.calls.count("status") == StartStatusApi.PENDING_POLLS + 2
    assert len(sockets) == 1
    assert sockets[0].startswith(f"{locked_backend.ws_url}?token=v1.")


def test_behind_the_front_door_the_api_and_the_websocket_are_on_the_pages_origin(
    yolo_models_dir: Path, triton: LocalTritonServer, page: Page
) -> None:
    """`{"startApiUrl": "/"}`, as the front door's config.json has it: the page calls /start and
    /status on its own origin and connects its WebSocket there too, not to the host the API's
    `endpoint` names; the backend allows it with the allowlist `["self"]` alone."""
    settings = backend_settings(
        yolo_models_dir,
        triton.address,
        session_token_secret=SECRET,
        allowed_origins=["self"],
        **DETECTION_OVERRIDES,
    )
    backend = BackendServer(settings).start()  # serves the page at `/`, like the front door
    now = time.time()
    endpoint = "wss://instance.example.invalid/ws/inference"
    answers: dict[str, dict[str, object]] = {
        "config.json": {"startApiUrl": "/", "statusPollMs": 200},
        "start": {
            "state": "running",
            "endpoint": endpoint,
            "estimated_wait_s": 0,
            "token": issue_token(SECRET, now=now, ttl_s=TOKEN_TTL_S),
            "token_expires_at": int(now) + TOKEN_TTL_S,
        },
        "status": {"state": "running", "endpoint": endpoint, "ready": True, "backend": None},
    }
    calls: list[str] = []

    def answer(route: Route) -> None:  # what CloudFront serves from S3 and API Gateway
        name = route.request.url.removeprefix(f"{backend.url}/")
        calls.append(f"{route.request.method} {name}")
        route.fulfill(json=answers[name])

    try:
        for name in answers:
            page.route(f"{backend.url}/{name}", answer)
        sockets: list[str] = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        page.goto(f"{backend.url}/")
        page.wait_for_function("() => window.cvstack?.state === 'running'")
        wait_for_results(page, 3)
    finally:
        backend.stop()
    assert calls == ["GET config.json", "POST start", "GET status"]
    assert len(sockets) == 1
    assert sockets[0].startswith(f"{backend.ws_url}?token=v1.")


def test_a_fatal_server_error_is_shown_and_not_retried(
    page_server: PageServer, locked_backend: BackendServer, page: Page
) -> None:
    page_server.config = {"wsUrl": locked_backend.ws_url}
    page.goto(f"{page_server.url}/")
    page.wait_for_function("() => window.cvstack?.state === 'failed'")
    errors = page.text_content("#errors") or ""
    assert "token_missing: this server needs a session token" in errors
    page.wait_for_timeout(1000)
    assert snapshot(page)["reconnects"] == 0
    assert page.is_enabled("#start"), "the user can try again"
