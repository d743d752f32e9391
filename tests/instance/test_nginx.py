"""The shipped nginx site in a real nginx, on loopback, in front of the real backend and Triton."""

from __future__ import annotations

import http.client
import json
import os
import re
import ssl
import struct
import subprocess
import threading
import urllib.error
import urllib.request
import warnings
from pathlib import Path

import pytest
from playwright.sync_api import sync_playwright
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect
from websockets.sync.server import ServerConnection, serve

from backend.cli import main
from backend.instance.nginx_config import (
    FRONT_DOOR_KEEPALIVE_S,
    HEALTH_PORT,
    ClientLimits,
    NginxSite,
    render_nginx_site,
)
from tests.backend.service.conftest import Client, jpeg_frame
from tests.instance.conftest import (
    MAX_FRAME_BYTES,
    NginxFront,
    make_self_signed,
    nginx_main_config,
    require_tool,
    running_nginx,
)
from tests.tls_websocket import serialized

SECURITY_HEADERS = (
    "Strict-Transport-Security",
    "X-Content-Type-Options",
    "X-Frame-Options",
    "Content-Security-Policy",
    "Referrer-Policy",
)


def binary_frame_header(length: int) -> bytes:
    """A client's masked, final binary frame header announcing `length` payload bytes."""
    return struct.pack("!BBQ", 0x82, 0x80 | 127, length) + os.urandom(4)


def https_request(
    front: NginxFront, method: str, path: str, body: bytes | None = None
) -> http.client.HTTPResponse:
    connection = http.client.HTTPSConnection(
        "127.0.0.1", front.site.https_port, context=front.tls(), timeout=30
    )
    connection.request(method, path, body=body)
    return connection.getresponse()


def test_production_rendering_passes_nginx_t(tmp_path: Path) -> None:
    """Ports 80/443/8082 and the origin secret's folder as the image renders them; only the
    certificate folder is a test's (no map file: nginx starts without one, failing closed)."""
    nginx = require_tool("nginx")
    site = NginxSite(tls_dir=tmp_path / "tls")
    make_self_signed(site.tls_dir)
    text = render_nginx_site(site)
    assert "listen 80 default_server;" in text and "listen 443 ssl http2 default_server;" in text
    assert f"listen {HEALTH_PORT} default_server;" in text
    assert "include /run/cvstack/nginx/*.map;" in text
    assert "real_ip_header X-Forwarded-For;" in text and "real_ip_recursive off;" in text
    assert "return 301" not in text and "acme" not in text
    assert text.count("client_max_body_size 2000000;") == 2
    # Both listeners pass the Host with its port, on every proxied location (none uses $host).
    assert text.count("proxy_set_header Host $http_host;") == 4
    assert "$host" not in text.replace("$http_host", "")
    # The defences of issue 11 with their production numbers (tests/instance/test_nginx_limits.py
    # shows each one working), in every server where they are per server: the health listener
    # (fleet mode's load balancer only, tests/instance/test_nginx_health.py) logs no requests
    # and limits no client.
    limits = ClientLimits()
    for directive, servers in (
        (f"client_header_timeout {limits.header_timeout_s}s;", 3),
        ("reset_timedout_connection on;", 3),
        (f"limit_conn cvstack_conn {limits.connections_per_ip};", 2),
        ("access_log /var/log/nginx/cvstack-access.log cvstack_access;", 2),
        ("error_log /var/log/nginx/cvstack-error.log crit;", 3),
    ):
        assert text.count(directive) == servers, directive
    # Idle keep-alive: the viewer's limit on the operator's listener; on the proxies' listeners
    # (origin, health) longer than the fleet load balancer's idle timeout.
    assert text.count(f"keepalive_timeout {limits.keepalive_timeout_s}s;") == 1
    assert text.count(f"keepalive_timeout {FRONT_DOOR_KEEPALIVE_S}s;") == 2
    assert f"rate={limits.handshakes_per_s}r/s;" in text
    assert f"limit_req zone=cvstack_handshakes burst={limits.handshake_burst} nodelay;" in text
    assert f"proxy_read_timeout {limits.ws_idle_timeout_s}s;" in text
    log_format = text[text.index("log_format cvstack_access") :].split(";")[0]
    assert not re.findall(r"\$(?:request|request_uri|args|query_string|arg_\w+)\b", log_format)
    (tmp_path / "site.conf").write_text(text)
    config = nginx_main_config(tmp_path, tmp_path / "site.conf")
    result = subprocess.run(
        [nginx, "-t", "-c", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize(
    "limits",
    [
        {"connections_per_ip": 0},
        {"connections_per_ip": 65536},  # nginx's own maximum is 65535
        {"header_timeout_s": 3601},
        {"ws_idle_timeout_s": 1.5},
        {"handshake_burst": True},
        {"handshakes_per_s": -1},
    ],
)
def test_client_limits_out_of_range_are_refused(limits: dict[str, object]) -> None:
    with pytest.raises(ValueError, match=next(iter(limits))):
        ClientLimits(**limits)  # type: ignore[arg-type]


def test_the_cli_renders_tuned_limits_and_refuses_impossible_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "site.conf"
    argv = ["instance", "nginx-config", "--out", str(out)]
    assert main([*argv, "--connections-per-ip", "7", "--header-timeout-s", "4"]) == 0
    text = out.read_text()
    assert text.count("limit_conn cvstack_conn 7;") == 2
    assert text.count("client_header_timeout 4s;") == 3  # the health listener too
    assert "listen 80 default_server;" in text and "/run/cvstack/nginx/*.map;" in text
    ports = ["--origin-port", "8081", "--origin-secret-dir", str(tmp_path / "secret")]
    assert main([*argv, *ports]) == 0
    text = out.read_text()
    assert "listen 8081 default_server;" in text and f"{tmp_path}/secret/*.map;" in text
    assert f"burst={ClientLimits().handshake_burst} nodelay;" in text  # the rest: defaults
    assert main([*argv, "--connections-per-ip", "65536"]) == 2
    assert "connections_per_ip must be a whole number 1..65535" in capsys.readouterr().err


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
    with connect(nginx_front.wss, ssl=serialized(nginx_front.tls()), max_size=None) as connection:
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
        # Over the WebSocket limit (4x): the backend refuses the message from its header's
        # length and closes the connection (1009) through nginx. Only that header is sent:
        # with the payload in flight, the close leaves unread bytes at the backend and at
        # nginx, whose resets can destroy the 1009 frame before the client reads it (the race
        # seen under full-suite load). With nothing unread, the close frame always arrives.
        oversized = 4 * MAX_FRAME_BYTES + 1
        with connection.protocol_mutex:  # no library write in between
            connection.socket.sendall(binary_frame_header(oversized))
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                client.receive(timeout=30)
        assert closed.value.rcvd is not None, "the 1009 close frame never arrived"
        assert closed.value.rcvd.code == 1009, closed.value.rcvd


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
            with connect(url, ssl=serialized(tls)) as connection:
                received = {k.lower(): v for k, v in json.loads(connection.recv(10)).items()}
        echo.shutdown()
    assert received["host"] == f"127.0.0.1:{site.https_port}"  # the client's, with its port
    assert received["x-real-ip"] == "127.0.0.1"
    assert received["x-forwarded-for"] == "127.0.0.1"
    assert received["x-forwarded-proto"] == "https"
    assert received["upgrade"].lower() == "websocket"


@pytest.mark.browser  # Chromium through Playwright, without the `page` fixture
def test_a_browser_page_streams_through_nginx_within_the_default_limits(
    nginx_front: NginxFront,
) -> None:
    """The defaults leave room for real use: two Chromium tabs from one address load the page
    (about 15 requests, up to 10 of them at once over HTTP/2) and stream over their WebSockets,
    and nginx refuses none of it. A limit_conn below 10 breaks a lone page load: a refused
    module script is not retried."""
    args = [
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    access_log = nginx_front.site.log_dir / "cvstack-access.log"
    logged_before = len(access_log.read_text().splitlines())
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=require_tool("chromium"), args=args)
        try:
            contexts = [browser.new_context(ignore_https_errors=True) for _ in range(2)]
            pages = [context.new_page() for context in contexts]
            for page in pages:
                page.set_default_timeout(60_000)
                page.goto(f"{nginx_front.https}/", wait_until="commit")
            for page in pages:
                page.wait_for_function("() => window.cvstack?.stats.results >= 2")
            for context in contexts:
                context.close()
        finally:
            browser.close()
    requests = access_log.read_text().splitlines()[logged_before:]
    assert sum("/ws/inference" in line for line in requests) >= 2
    assert len(requests) >= 2 * 10, requests  # the page and its modules came through nginx
    assert not [line for line in requests if '" 429 ' in line], requests
