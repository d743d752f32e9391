"""The deployed page end to end through one front door, wired as `cdk deploy` wires it.

A real nginx stands in for CloudFront and routes the distribution's own path patterns
(`infra_cdk.front_door`): the page with the stack-generated `config.json` as static files, the
start/status API with the API key added by the front door, and the instance's paths to the
instance's nginx origin listener (the shipped template) with the origin secret header, in front
of the real backend locked down as on the instance (session tokens, allowlist "self").
Chromium opens the one URL and goes through the cold start with no CORS and no key in the page.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Page

from backend.paths import FRONTEND_DIR
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from infra_cdk.front_door import (
    API_KEY_HEADER,
    API_PATHS,
    INSTANCE_PATHS,
    ORIGIN_SECRET_HEADER,
    page_config,
)
from tests.backend.service.conftest import BackendServer, backend_settings
from tests.frontend.conftest import DETECTION_OVERRIDES, snapshot, wait_for_results
from tests.frontend.start_api import API_KEY, SECRET, StartStatusApi
from tests.instance.conftest import nginx_serving, running_nginx

ORIGIN_SECRET = "OriginSecretForTheFrontDoorTest0123456789abcdef"
MAX_FRAME_BYTES = 2_000_000
TRANSFER_REPORT = Path("test-artifacts") / "front-door-transfer.json"


def nginx_location(pattern: str) -> str:
    """A CloudFront path pattern as the nginx location that matches the same requests."""
    if pattern.endswith("/*"):
        return f"location {pattern[:-1]}"
    assert "*" not in pattern, f"no nginx translation for {pattern!r}"
    return f"location = {pattern}"


def front_door_site(port: int, site: Path, api: str, origin: str, log: Path) -> str:
    """CloudFront's behaviors for the stand-in: static page, API with its key, instance paths
    with the origin secret and the WebSocket handshake forwarded (origin request policy
    ALL_VIEWER: Host, Origin, Sec-WebSocket-*, the query string)."""
    api_locations = "\n".join(
        f"""
    {nginx_location(path)} {{
        proxy_pass {api};
        proxy_set_header {API_KEY_HEADER} "{API_KEY}";
    }}"""
        for path in API_PATHS
    )
    instance_locations = "\n".join(
        f"""
    {nginx_location(path)} {{
        proxy_pass {origin};
        proxy_http_version 1.1;
        proxy_set_header Host $http_host;
        proxy_set_header Upgrade $http_upgrade;
        proxy_set_header Connection $connection_upgrade;
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
        proxy_set_header {ORIGIN_SECRET_HEADER} "{ORIGIN_SECRET}";
        proxy_buffering off;
        proxy_read_timeout 60s;
    }}"""
        for path in INSTANCE_PATHS
    )
    return f"""
log_format front_door '$request_method $uri $status bytes_in=$request_length '
                      'bytes_out=$bytes_sent upstream_in=$upstream_bytes_received '
                      'upstream_out=$upstream_bytes_sent seconds=$request_time';
map $http_upgrade $connection_upgrade {{
    default upgrade;
    ""      close;
}}
server {{
    listen 127.0.0.1:{port};
    access_log {log} front_door;
    root {site};
    index index.html;
    {api_locations}
    {instance_locations}
}}
"""


@dataclass
class FrontDoor:
    """The stand-in's URL, the API behind it, its access log and the instance's backend."""

    url: str
    api: StartStatusApi
    log: Path
    backend: BackendServer

    def transfers(self, path: str) -> list[dict[str, str]]:
        """The access log's `key=value` fields of each request for `path`."""
        entries = []
        for line in self.log.read_text().splitlines():
            method, uri, status, *fields = line.split()
            if uri == path:
                entries.append(
                    {"method": method, "status": status}
                    | dict(field.split("=", 1) for field in fields)
                )
        return entries


@pytest.fixture(scope="module")
def front_door(
    yolo_models_dir: Path, triton: LocalTritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FrontDoor]:
    """Page, API stand-in, instance nginx and the locked-down backend behind one URL."""
    prefix = tmp_path_factory.mktemp("front-door")
    site = prefix / "site"
    shutil.copytree(FRONTEND_DIR, site)
    (site / "config.json").write_text(json.dumps(page_config()))
    port = ServerAddress.on_free_ports().http_port
    url = f"http://127.0.0.1:{port}"
    settings = backend_settings(
        yolo_models_dir,
        triton.address,
        session_token_secret=SECRET,
        allowed_origins=["self"],
        max_frame_bytes=MAX_FRAME_BYTES,
        **DETECTION_OVERRIDES,
    )
    backend = BackendServer(settings).start()
    log = prefix / "front-door-access.log"
    try:
        with (
            running_nginx(
                prefix / "instance",
                settings.port,
                MAX_FRAME_BYTES,
                origin_secret=ORIGIN_SECRET,
            ) as instance,
            StartStatusApi(
                backend,
                url,
                endpoint=f"wss://{port}.front-door.example.invalid/ws/inference",
                ready_host=f"127.0.0.1:{port}",
            ) as api,
        ):
            origin = f"http://127.0.0.1:{instance.origin_port}"
            site_file = prefix / "front-door.conf"
            site_file.write_text(front_door_site(port, site, api.url, origin, log))
            with nginx_serving(prefix, site_file, [port]):
                yield FrontDoor(url, api, log, backend)
    finally:
        backend.stop()


def test_the_page_boots_the_server_and_streams_through_one_url(
    front_door: FrontDoor, page: Page
) -> None:
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    page.goto(f"{front_door.url}/")
    page.wait_for_function("() => window.cvstack?.state === 'idle'")
    page.wait_for_timeout(500)
    assert front_door.api.calls == [], "loading the page must not boot the GPU"
    page.click("#start")
    page.wait_for_function("() => window.cvstack?.state === 'running'")
    wait_for_results(page, 30)
    page.click("#stop")
    page.wait_for_function("() => window.cvstack.state !== 'running'")
    counts = snapshot(page)

    api = front_door.api
    assert api.calls[:2] == ["start", "start"], "the front door added the API key"
    assert api.preflights == 0, "same origin: the browser never asks CORS"
    assert api.calls.count("status") == StartStatusApi.PENDING_POLLS + 2
    assert len(sockets) == 1
    assert re.fullmatch(
        rf"ws://127\.0\.0\.1:{front_door.url.rsplit(':', 1)[1]}/ws/inference\?token=v1\.\S+",
        sockets[0],
    ), "the WebSocket goes to the page's own origin, not to the API's endpoint host"
    ready = front_door.transfers("/ready")
    assert ready and ready[-1]["status"] == "200", "status checked /ready through the front door"
    deadline = time.monotonic() + 10
    while not front_door.transfers("/ws/inference"):  # logged once nginx saw the close
        assert time.monotonic() < deadline, "the WebSocket never closed at the front door"
        time.sleep(0.1)
    (session,) = front_door.transfers("/ws/inference")
    assert session["status"] == "101"
    # What one session moved through the front door (docs/deploy.md prices it).
    report = {
        "frames_sent": counts["framesSent"],
        "results": counts["results"],
        "seconds": float(session["seconds"]),
        "bytes_viewer_to_origin": int(session["upstream_out"]),
        "bytes_origin_to_viewer": int(session["bytes_out"]),
    }
    TRANSFER_REPORT.parent.mkdir(exist_ok=True)
    TRANSFER_REPORT.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nfront door transfer: {report}")
