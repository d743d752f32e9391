"""The shipped nginx site in a real nginx, on loopback, in front of the real backend and Triton."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import threading
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from backend.instance.nginx_config import NginxSite, render_nginx_site
from tests.backend.service.conftest import Client, jpeg_frame
from tests.instance.conftest import (
    MAX_FRAME_BYTES,
    NginxFront,
    make_self_signed,
    nginx_main_config,
    require_tool,
    running_nginx,
)

SECURITY_HEADERS = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Content-Security-Policy",
    "Referrer-Policy",
)


def https_request(
    front: NginxFront, method: str, path: str, body: bytes | None = None
) -> http.client.HTTPResponse:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", front.site.https_port, context=front.tls(), timeout=30
    )
    connection.request(method, path, body=body)
    return connection.getresponse()


def test_production_rendering_passes_nginx_t(tmp_path: Path) -> None:
    """Ports 80/443 as the image renders them; only the certificate folder is a test's."""
    nginx = require_tool("nginx")
    site = NginxSite(tls_dir=tmp_path / "tls", acme_root=tmp_path / "acme")
    make_self_signed(site.tls_dir)
    text = render_nginx_site(site)
    assert "listen 80 default_server;" in text and "listen 443 ssl http2 default_server;" in text
    assert "return 301 https://$host$request_uri;" in text
    assert "client_max_body_size 2000000;" in text
    (tmp_path / "site.conf").write_text(text)
    config = nginx_main_config(tmp_path, tmp_path / "site.conf")
    result = subprocess.run(
        [nginx, "-t", "-c", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_health_and_ready_are_proxied_with_security_headers(nginx_front: NginxFront) -> None:
    for path in ("/health", "/ready"):
        response = https_request(nginx_front, "GET", path)
        assert response.status == 200, (path, response.read())
        for header in SECURITY_HEADERS:
            assert response.getheader(header), f"{header} missing on {path}"
    page = https_request(nginx_front, "GET", "/")
    assert page.status == 200 and b"<script" in page.read()


def test_tls_12_and_13_work_and_older_versions_are_refused(nginx_front: NginxFront) -> None:
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = nginx_front.tls()
        context.minimum_version = context.maximum_version = version
        with urllib.request.urlopen(f"{nginx_front.https}/health", context=context) as response:
            assert response.status == 200
    old = nginx_front.tls()
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client would speak TLS 1.1 if nginx did
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    with pytest.raises(urllib.error.URLError) as refused:
        urllib.request.urlopen(f"{nginx_front.https}/health", context=old)
    assert "ALERT_PROTOCOL_VERSION" in str(refused.value)  # nginx's refusal, not the client's


def test_http_redirects_to_https(nginx_front: NginxFront) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", nginx_front.site.http_port, timeout=10)
    connection.request("GET", "/ready?probe=1")
    response = connection.getresponse()
    assert response.status == 301
    assert response.getheader("Location") == f"{nginx_front.https}/ready?probe=1"


def test_metrics_are_refused_through_nginx_but_served_on_loopback(
    nginx_front: NginxFront,
) -> None:
    for path in ("/metrics", "//metrics", "/metrics/", "/%6Detrics"):
        assert https_request(nginx_front, "GET", path).status == 403, path
    with urllib.request.urlopen(f"{nginx_front.backend.url}/metrics") as response:
        assert b"cvstack_active_sessions" in response.read()


def test_request_bodies_over_the_frame_limit_are_refused(nginx_front: NginxFront) -> None:
    small = https_request(nginx_front, "POST", "/health", body=b"x" * 100)
    assert small.status == 405  # reached the backend, which takes no POST
    large = https_request(nginx_front, "POST", "/health", body=b"x" * (MAX_FRAME_BYTES + 1))
    assert large.status == 413


def test_wss_session_through_nginx_with_the_self_signed_certificate(
    nginx_front: NginxFront,
) -> None:
    with connect(nginx_front.wss, ssl=nginx_front.tls(), max_size=None) as connection:
        client = Client(connection)
        assert client.receive()["state"] == "waiting"
        client.start(use_yolo=True)
        connection.send(jpeg_frame())
        result = client.receive_type("inference")
        assert result["data"]["width"] == 320 and not result["data"]["errors"]
        assert "yolo" in result["data"]["stage_ms"]  # detection ran on Triton
        # Over CVSTACK_MAX_FRAME_BYTES: refused by the backend, the session goes on.
        connection.send(b"\xff\xd8" + b"\0" * MAX_FRAME_BYTES)
        error = client.receive_type("error")
        assert error["code"] == "frame_too_large" and error["fatal"] is False
        connection.send(jpeg_frame(seed=1))
        assert client.receive_type("inference")["data"]["frame_idx"] == 1
        # Over the WebSocket limit (4x): the backend closes the connection (1009) through nginx.
        # The server closes while the client is still sending: under load the close can reach
        # the client inside send() itself, or later in receive(); the close frame can also be
        # lost in the reset. When it arrives, it says why.
        with pytest.raises(ConnectionClosed) as closed:
            connection.send(b"\xff\xd8" + b"\0" * (4 * MAX_FRAME_BYTES + 1))
            while True:
                client.receive(timeout=30)
        assert closed.value.rcvd is None or closed.value.rcvd.code == 1009


def test_websocket_upgrade_keeps_the_forwarding_headers(tmp_path: Path) -> None:
    """A `proxy_set_header` inside a location drops every inherited one: /ws/ must repeat
    Host, X-Real-IP, X-Forwarded-For and X-Forwarded-Proto, or the backend sees none of them
    on the WebSocket. A loopback WebSocket server answers with the headers it received."""

    def echo_headers(connection: ServerConnection) -> None:
        assert connection.request is not None
        connection.send(json.dumps(dict(connection.request.headers.raw_items())))

    with serve(echo_headers, "127.0.0.1", 0) as echo:
        backend_port = echo.socket.getsockname()[1]
        thread = threading.Thread(target=echo.serve_forever, daemon=True)
        thread.start()
        with running_nginx(tmp_path, backend_port, MAX_FRAME_BYTES) as site:
            tls = ssl.create_default_context(cafile=str(site.tls_dir / "fullchain.pem"))
            url = f"wss://127.0.0.1:{site.https_port}/ws/inference"
            with connect(url, ssl=tls) as connection:
                received = {k.lower(): v for k, v in json.loads(connection.recv(10)).items()}
        echo.shutdown()
    assert received["host"] == "127.0.0.1"  # the client's, not the upstream's name
    assert received["x-real-ip"] == "127.0.0.1"
    assert received["x-forwarded-for"] == "127.0.0.1"
    assert received["x-forwarded-proto"] == "https"
    assert received["upgrade"].lower() == "websocket"
