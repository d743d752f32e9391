"""The origin listener CloudFront's VPC origin connects to, in a real nginx on loopback: only
requests carrying the origin secret pass, and only to /ws/, /ready and /health of the real
backend (or of a recording stand-in, to show what never reached it)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from backend.instance.nginx_config import NginxSite
from tests.backend.service.conftest import Client, jpeg_frame
from tests.instance.conftest import (
    MAX_FRAME_BYTES,
    ORIGIN_SECRET,
    ORIGIN_SECRET_HEADER,
    NginxFront,
    Upstream,
    running_nginx,
)

FRONT_DOOR = "d111abcdef8.cloudfront.net"  # the Host and Origin a viewer's browser sends
PATHS = ("/health", "/ready", "/ws/inference?token=x", "/metrics", "/", "/index.html", "/start")
REFUSAL = b"requests must come through this stack's CloudFront distribution"


def origin_get(
    port: int, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, bytes]:
    """(status, content type, body) of a GET to the origin listener."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type", ""), response.read()
    finally:
        connection.close()


def with_secret(secret: str = ORIGIN_SECRET, **headers: str) -> dict[str, str]:
    return {ORIGIN_SECRET_HEADER: secret, "X-Forwarded-For": "203.0.113.9", **headers}


def origin_websocket(front: NginxFront, host: str, origin: str) -> ClientConnection:
    """A WebSocket through the origin listener as CloudFront opens it: the viewer's Host and
    Origin, the Sec-WebSocket-* handshake headers, plus the secret and X-Forwarded-For."""
    sock = socket.create_connection(("127.0.0.1", front.site.origin_port), timeout=30)
    return connect(
        f"ws://{host}/ws/inference",
        sock=sock,
        origin=Origin(origin),
        additional_headers=with_secret(),
        max_size=None,
    )


def operator_get(site: NginxSite, path: str) -> int:
    """The status of a GET on the operator's TLS listener."""
    tls = ssl.create_default_context(cafile=str(site.tls_dir / "fullchain.pem"))
    connection = http.client.HTTPSConnection("127.0.0.1", site.https_port, context=tls, timeout=30)
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


@pytest.fixture
def upstream_site(tmp_path: Path, upstream: Upstream) -> Iterator[NginxSite]:
    """nginx with the origin secret in front of the recording stand-in."""
    with running_nginx(tmp_path, upstream.port, MAX_FRAME_BYTES) as site:
        yield site


def test_without_the_right_secret_nothing_reaches_the_backend(
    upstream_site: NginxSite, upstream: Upstream
) -> None:
    port = upstream_site.origin_port
    wrong: tuple[dict[str, str], ...] = (
        {},
        with_secret("0" * 48),
        with_secret(ORIGIN_SECRET[:-1]),  # a prefix
        with_secret(ORIGIN_SECRET + "x"),
        with_secret(""),
    )
    for headers in wrong:
        for path in PATHS:
            status, content_type, body = origin_get(port, path, headers)
            assert status == 403, (headers, path, status)
            assert REFUSAL in body and content_type.startswith("text/plain"), body
    assert upstream.requests == []
    status, _, body = origin_get(port, "/health", with_secret())
    assert (status, body) == (200, b"upstream\n")
    assert [request.path for request in upstream.requests] == ["/health"]


def test_without_a_secret_file_every_request_is_refused(tmp_path: Path, upstream: Upstream) -> None:
    """Fail closed: before the boot wrote the map file (or when it could not), nginx starts
    anyway and its origin listener refuses everything, the right secret included; the
    operator's TLS listener still serves."""
    with running_nginx(tmp_path, upstream.port, MAX_FRAME_BYTES, origin_secret=None) as site:
        assert not list(site.origin_secret_dir.glob("*"))
        for path in PATHS:
            for headers in ({}, with_secret()):
                status, _, body = origin_get(site.origin_port, path, headers)
                assert status == 403 and REFUSAL in body, (path, status)
        assert upstream.requests == []
        assert operator_get(site, "/health") == 200


def test_the_backend_gets_the_host_with_its_port_on_both_listeners(
    upstream_site: NginxSite, upstream: Upstream
) -> None:
    """The same-origin check compares exact host:port, so nginx passes the Host as the client
    sent it: CloudFront's name through the origin listener, host:port when a port is named."""
    port = upstream_site.origin_port
    assert origin_get(port, "/ready", with_secret(Host=FRONT_DOOR))[0] == 200
    assert origin_get(port, "/ready", with_secret())[0] == 200  # Host: 127.0.0.1:<port>
    assert operator_get(upstream_site, "/ready") == 200
    hosts = [request.headers["Host"] for request in upstream.requests]
    assert hosts == [FRONT_DOOR, f"127.0.0.1:{port}", f"127.0.0.1:{upstream_site.https_port}"]


def test_health_and_ready_come_from_the_backend_and_nothing_else_is_served(
    nginx_front: NginxFront,
) -> None:
    port = nginx_front.site.origin_port
    for path in ("/health", "/ready"):
        status, content_type, body = origin_get(port, path, with_secret(Host=FRONT_DOOR))
        assert status == 200 and content_type == "application/json", (path, body)
        json.loads(body)
    for path in ("/metrics", "//metrics", "/metrics/", "/%6Detrics"):
        assert origin_get(port, path, with_secret())[0] == 403, path
    for path in ("/", "/index.html", "/app.js", "/start", "/status", "/ws", "/readyz"):
        assert origin_get(port, path, with_secret())[0] == 404, path


def test_a_websocket_session_through_the_front_door(nginx_front: NginxFront) -> None:
    """As a viewer's browser on the CloudFront URL opens it: Host and Origin are the
    distribution's, and the backend allows its own origin ("self"). Frames in, results out."""
    origin = f"https://{FRONT_DOOR}"
    with origin_websocket(nginx_front, FRONT_DOOR, origin) as connection:
        client = Client(connection)
        assert client.receive()["state"] == "waiting"
        client.start(use_yolo=True)
        connection.send(jpeg_frame())
        result = client.receive_type("inference")
        assert result["data"]["width"] == 320 and not result["data"]["errors"]


def test_the_same_origin_check_sees_the_port_and_refuses_other_pages(
    nginx_front: NginxFront,
) -> None:
    """A page on http://127.0.0.1:<port> may connect to that same host:port, which the backend
    knows only because nginx kept the port in the Host; a page from elsewhere may not."""
    host = f"127.0.0.1:{nginx_front.site.origin_port}"
    with origin_websocket(nginx_front, host, f"http://{host}") as connection:
        assert Client(connection).receive()["state"] == "waiting"
    with origin_websocket(nginx_front, FRONT_DOOR, "https://evil.example.com") as connection:
        first = Client(connection).receive()
        assert (first["code"], first["fatal"]) == ("origin_not_allowed", True)
