"""A loopback stand-in for the start/status API (lambdas/start_server, lambdas/status): their
contract, their CORS answers and API Gateway's key check, in front of a backend on loopback."""

from __future__ import annotations

import threading
import time
from dataclasses import asdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self

from backend.security.session_token import issue_token
from lambdas.shared.api_response import json_response
from lambdas.status.logic import check_ready
from tests.backend.service.conftest import BackendServer

SECRET = "frontend-tests-session-token-secret-0123456789"
TOKEN_TTL_S = 900
API_KEY = "frontend-tests-api-key"


class LoopbackServer(ThreadingHTTPServer):
    """An HTTP server on a free loopback port, serving from a thread."""

    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class StartStatusApi(LoopbackServer):
    """POST /start and GET /status answering as lambdas/start_server and lambdas/status do,
    for a backend on loopback: first 'stopping' (retry later), then 'pending' for a few polls,
    then 'running' but not ready, then the backend's real /ready check."""

    PENDING_POLLS: ClassVar[int] = 2
    # /status's boot estimate (lambdas/shared/boot_times.py): the median of BOOT_SAMPLES boots.
    BOOT_ESTIMATE_S: ClassVar[int] = 5
    BOOT_SAMPLES: ClassVar[int] = 3

    def __init__(
        self,
        backend: BackendServer,
        page_origin: str,
        *,
        endpoint: str | None = None,
        ready_host: str | None = None,
    ) -> None:
        """`endpoint` is what the API names as the WebSocket (default: the backend's own) and
        `ready_host` where the status check asks GET /ready over http (default: the backend)."""
        super().__init__(ApiHandler)
        self.backend = backend
        self.page_origin = page_origin
        self.endpoint = endpoint or backend.ws_url
        self.ready_host = ready_host or backend.url.removeprefix("http://")
        self.calls: list[str] = []
        self.preflights = 0
        self.boot_requested_at: float | None = None

    def start(self) -> tuple[int, dict[str, object], int | None]:
        if self.calls.count("start") == 1:
            return 409, _refusal("stopping", "instance_stopping", retry_after_s=1), 1
        now = time.time()
        if self.boot_requested_at is None:
            self.boot_requested_at = now
        body: dict[str, object] = {
            "state": "pending",
            "endpoint": self.endpoint,
            "estimated_wait_s": 5,
            "token": issue_token(SECRET, now=now, ttl_s=TOKEN_TTL_S),
            "token_expires_at": int(now) + TOKEN_TTL_S,
        }
        return 200, body, None

    def status(self) -> tuple[int, dict[str, object], int | None]:
        polls = self.calls.count("status")
        body: dict[str, object] = {
            "state": "pending" if polls <= self.PENDING_POLLS else "running",
            "endpoint": self.endpoint,
            "ready": False,
            "backend": None,
            "boot_estimate_s": self.BOOT_ESTIMATE_S,
            "boot_samples": self.BOOT_SAMPLES,
        }
        if polls > self.PENDING_POLLS + 1:
            check = check_ready(self.ready_host, scheme="http", timeout_s=5)
            body.update(ready=check.ready, backend=asdict(check))
        requested = self.boot_requested_at
        booting = requested is not None and not body["ready"]
        elapsed = int(time.time() - requested) if booting and requested is not None else None
        return 200, {**body, "boot_elapsed_s": elapsed}, None


def _refusal(state: str, code: str, *, retry_after_s: int) -> dict[str, object]:
    return {
        "state": state,
        "error": code,
        "message": f"the server is {state}; call /start again in {retry_after_s} s",
        "retryable": True,
        "retry_after_s": retry_after_s,
    }


class ApiHandler(BaseHTTPRequestHandler):
    def do_OPTIONS(self) -> None:
        """CORS preflight, as API Gateway answers it for the stack's CORS options."""
        api = self.server
        assert isinstance(api, StartStatusApi)
        api.preflights += 1
        self.send_response(204)
        if self.headers.get("Origin") == api.page_origin:
            self.send_header("Access-Control-Allow-Origin", api.page_origin)
            self.send_header("Access-Control-Allow-Methods", "GET,POST,OPTIONS")
            self.send_header("Access-Control-Allow-Headers", "Content-Type,X-Api-Key")
        self.end_headers()

    def do_POST(self) -> None:
        self._answer("POST", "/start")

    def do_GET(self) -> None:
        self._answer("GET", "/status")

    def _answer(self, method: str, route: str) -> None:
        api = self.server
        assert isinstance(api, StartStatusApi)
        body: dict[str, object]
        if self.path != route:
            status, body, retry = 404, {"error": "not_found", "message": self.path}, None
        elif self.headers.get("x-api-key") != API_KEY:  # API Gateway with api_key_required
            api.calls.append("forbidden")
            status, body, retry = 403, {"message": "Forbidden"}, None
        else:
            api.calls.append(route.strip("/"))
            status, body, retry = api.start() if method == "POST" else api.status()
        response = json_response(
            status,
            body,
            origin=self.headers.get("Origin"),
            allowed_origins=[api.page_origin],
            retry_after_s=retry,
        )
        payload = str(response["body"]).encode()
        self.send_response(int(str(response["statusCode"])))
        headers = response["headers"]
        assert isinstance(headers, dict)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `calls`, not the access log."""
