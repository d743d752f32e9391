"""A loopback front door for a simulated cold start: the page, its `config.json`, the browser
detector and the start/status API (lambdas/start_server, lambdas/status's contract) on one
origin, in front of a backend that is already running but reported "pending" until `boot()`.

`cvstack bench coldstart` and tests/frontend/test_browser_detection.py drive the page through it:
Start boots nothing real, the page runs its own detector meanwhile, and once `boot()` was called
`/status` answers with the backend's real `/ready`.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.error
import urllib.request
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from backend.model_prep.browser_model import BROWSER_FILE, DESCRIPTOR_FILE
from backend.paths import FRONTEND_DIR
from backend.security.session_token import issue_token

TOKEN_TTL_S = 900
STATUS_POLL_MS = 200


class ColdStartDoor(ThreadingHTTPServer):
    """The page's origin. `secret` signs the session tokens (give the backend the same)."""

    daemon_threads = True

    def __init__(self, backend_url: str, models_dir: Path, *, page: dict[str, Any] | None = None):
        super().__init__(("127.0.0.1", 0), _DoorHandler)
        self.backend_url = backend_url
        self.models_dir = models_dir
        self.page = page or {}
        self.secret = secrets.token_urlsafe(32)
        self.booted = threading.Event()
        self.calls: list[str] = []
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def boot(self) -> None:
        """From now on `/status` reports the backend's real readiness."""
        self.booted.set()

    def config(self) -> dict[str, Any]:
        """The page's settings: the API on this origin by absolute URL, so the page connects to
        the WebSocket endpoint `/start` names (the backend), as with a separate API host."""
        return {
            "startApiUrl": f"{self.url}/",
            "statusPollMs": STATUS_POLL_MS,
            "autoStart": False,
            **self.page,
        }

    def start(self) -> dict[str, Any]:
        now = time.time()
        return {
            "state": "pending",
            "endpoint": self.backend_url.replace("http://", "ws://") + "/ws/inference",
            "estimated_wait_s": 60,
            "token": issue_token(self.secret, now=now, ttl_s=TOKEN_TTL_S),
            "token_expires_at": int(now) + TOKEN_TTL_S,
        }

    def status(self) -> dict[str, Any]:
        ready = self.booted.is_set() and _answers_ready(self.backend_url)
        state = "running" if self.booted.is_set() else "pending"
        return {"state": state, "endpoint": None, "ready": ready, "backend": None}

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


def _answers_ready(backend_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{backend_url}/ready", timeout=5) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, ConnectionError):
        return False


class _DoorHandler(SimpleHTTPRequestHandler):
    server: ColdStartDoor

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, directory=str(FRONTEND_DIR), **kwargs)

    def do_POST(self) -> None:
        if self.path != "/start":
            self.send_error(404)
            return
        self.server.calls.append("start")
        self._json(self.server.start())

    def do_GET(self) -> None:
        if self.path == "/config.json":
            self._json(self.server.config())
        elif self.path == "/status":
            self.server.calls.append("status")
            self._json(self.server.status())
        elif self.path in (f"/models/{DESCRIPTOR_FILE}", f"/models/{BROWSER_FILE}"):
            self._file(self.server.models_dir / self.path.removeprefix("/models/"))
        else:
            super().do_GET()

    def _json(self, body: dict[str, Any]) -> None:
        self._send(json.dumps(body).encode(), "application/json")

    def _file(self, path: Path) -> None:
        if not path.is_file():
            self.send_error(404)
            return
        self._send(path.read_bytes(), "application/octet-stream")

    def _send(self, payload: bytes, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: callers read `calls` and the page, not the access log."""
