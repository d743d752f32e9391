"""Fixtures of the instance-image tests: a real nginx on loopback in front of the real backend."""

from __future__ import annotations

import http
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from moto import mock_aws
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from backend.instance.backend_env import write_origin_secret_map
from backend.instance.nginx_config import ClientLimits, NginxSite, render_nginx_site
from backend.paths import REPO_ROOT
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from tests.backend.service.conftest import (  # fixtures re-exported for this package
    BackendServer,
    backend_settings,
    open_client,
    start_backend,
)

TLS_SETUP = REPO_ROOT / "ami" / "scripts" / "tls-setup.sh"
MAX_FRAME_BYTES = 100_000  # small, so the oversized-frame tests send little
# What CloudFront adds to every request it forwards (X-Cvstack-Origin-Secret).
ORIGIN_SECRET = "Cvst4ckOrigin" * 4
ORIGIN_SECRET_HEADER = "X-Cvstack-Origin-Secret"
FLOOD_MESSAGE = b"\0" * 262_144
__all__ = ["open_client", "start_backend"]


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """moto in-process with fake credentials, so nothing can reach a real AWS account."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        yield


def require_tool(name: str) -> str:
    """The tool's path; `make test` installs them (Makefile SYSTEM_PACKAGES)."""
    path = shutil.which(name) or (
        f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").is_file() else None
    )
    if path is None:
        pytest.fail(f"{name} is not installed; run `make system-deps` (apt-get install {name})")
    return path


def make_self_signed(tls_dir: Path) -> Path:
    """Run the unit's own script; returns the certificate (also the client's trust anchor)."""
    subprocess.run(
        ["bash", str(TLS_SETUP), "self-signed"],
        env={**os.environ, "CVSTACK_TLS_DIR": str(tls_dir)},
        check=True,
        capture_output=True,
    )
    return tls_dir / "fullchain.pem"


def nginx_main_config(prefix: Path, site: Path) -> Path:
    """A minimal nginx.conf around the shipped site (Debian's own would bind port 80)."""
    config = prefix / "nginx.conf"
    config.write_text(
        f"""
user root;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    include /etc/nginx/mime.types;
    include {site};
}}
"""
    )
    return config


@dataclass
class NginxFront:
    site: NginxSite
    certificate: Path
    backend: BackendServer

    @property
    def https(self) -> str:
        return f"https://127.0.0.1:{self.site.https_port}"

    @property
    def origin(self) -> str:
        """The origin listener, where CloudFront connects (plain HTTP)."""
        return f"http://127.0.0.1:{self.site.origin_port}"

    @property
    def wss(self) -> str:
        return f"wss://127.0.0.1:{self.site.https_port}/ws/inference"

    def tls(self) -> ssl.SSLContext:
        """Trusts exactly the instance's self-signed certificate, and checks the name."""
        return ssl.create_default_context(cafile=str(self.certificate))


def _wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        assert process.poll() is None, f"nginx exited: {log.read_text(errors='replace')}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail("nginx did not listen within 20 s")


class Upstream:
    """Stands in for the backend: 200 on plain HTTP; on /ws/silent it never writes, on
    /ws/pinging it writes every 0.5 s, on /ws/flood it writes as fast as it can, and on any
    other /ws/ path it echoes. `requests` records every request as the backend got it (path,
    query, headers), `paths` every WebSocket's path and query, `events` how flood connections
    ended."""

    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.paths: list[str] = []
        self.events: list[str] = []
        self.server: Server = serve(
            self._session, "127.0.0.1", 0, process_request=self._http, max_size=None
        )
        self.port: int = self.server.socket.getsockname()[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self._thread.join(10)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        self.requests.append(request)
        if request.path.startswith("/ws/"):
            return None
        return connection.respond(http.HTTPStatus.OK, "upstream\n")

    def _session(self, connection: ServerConnection) -> None:
        assert connection.request is not None
        self.paths.append(connection.request.path)
        path = connection.request.path.split("?")[0]
        try:
            if path == "/ws/silent":
                connection.wait_closed()
            elif path == "/ws/pinging":
                while True:
                    connection.send("ping")
                    time.sleep(0.5)
            elif path == "/ws/flood":
                started = time.monotonic()
                try:
                    while True:
                        connection.send(FLOOD_MESSAGE)
                except (ConnectionClosed, OSError):
                    self.events.append(f"flood ended after {time.monotonic() - started:.1f} s")
            else:
                for message in connection:
                    connection.send(message)
        except ConnectionClosed:
            pass


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    server = Upstream()
    yield server
    server.stop()


@contextmanager
def running_nginx(
    prefix: Path,
    backend_port: int,
    max_body_bytes: int,
    limits: ClientLimits | None = None,
    origin_secret: str | None = ORIGIN_SECRET,
) -> Iterator[NginxSite]:
    """The shipped site in a real nginx on free loopback ports, with a self-signed certificate
    from the unit's own script (`<site.tls_dir>/fullchain.pem`) and the origin secret's map file
    as the boot writes it (none when `origin_secret` is None), in front of `backend_port`.
    Every log nginx writes lies in `prefix` (the site's own: `cvstack-access.log`,
    `cvstack-error.log`)."""
    ports = ServerAddress.on_free_ports()
    site = NginxSite(
        origin_port=ports.http_port,
        https_port=ports.grpc_port,
        health_port=ports.metrics_port,
        backend_port=backend_port,
        max_body_bytes=max_body_bytes,
        tls_dir=prefix / "tls",
        origin_secret_dir=prefix / "origin-secret",
        log_dir=prefix,
        limits=limits or ClientLimits(),
    )
    make_self_signed(site.tls_dir)
    if origin_secret is not None:
        write_origin_secret_map(origin_secret, site.origin_secret_dir)
    site_file = prefix / "cvstack.conf"
    site_file.write_text(render_nginx_site(site))
    with nginx_serving(prefix, site_file, [site.https_port, site.origin_port, site.health_port]):
        yield site


@contextmanager
def nginx_serving(prefix: Path, site_file: Path, ports: list[int]) -> Iterator[None]:
    """A real nginx with `site_file` (checked with `nginx -t` first), once it listens on every
    port in `ports`; its own logs and temporary files lie in `prefix`."""
    nginx = require_tool("nginx")
    config = nginx_main_config(prefix, site_file)
    subprocess.run([nginx, "-t", "-q", "-c", str(config)], check=True)
    process = subprocess.Popen(
        [nginx, "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for port in ports:
            _wait_listening(port, process, prefix / "error.log")
        yield
    finally:
        process.send_signal(signal.SIGTERM)  # fast shutdown: open WebSockets must not hold it
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def nginx_front(
    yolo_models_dir: Path, triton: LocalTritonServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NginxFront]:
    """nginx in front of the real backend, which allows its own origin only ("self"), as in
    production behind the front door."""
    backend = BackendServer(
        backend_settings(
            yolo_models_dir,
            triton.address,
            max_frame_bytes=MAX_FRAME_BYTES,
            allowed_origins=["self"],
        )
    ).start()
    try:
        with running_nginx(
            tmp_path_factory.mktemp("nginx"), backend.settings.port, MAX_FRAME_BYTES
        ) as site:
            yield NginxFront(site, site.tls_dir / "fullchain.pem", backend)
    finally:
        backend.stop()
