"""Fixtures of the instance-image tests: a real nginx on loopback in front of the real backend."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from moto import mock_aws

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
        env={**os.environ, "CVSTACK_TLS_DIR": str(tls_dir), "CVSTACK_DOMAIN_NAME": ""},
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


@contextmanager
def running_nginx(
    prefix: Path,
    backend_port: int,
    max_body_bytes: int,
    limits: ClientLimits | None = None,
) -> Iterator[NginxSite]:
    """The shipped site in a real nginx on free loopback ports, with a self-signed certificate
    from the unit's own script (`<site.tls_dir>/fullchain.pem`), in front of `backend_port`.
    Every log nginx writes lies in `prefix` (the site's own: `cvstack-access.log`,
    `cvstack-error.log`)."""
    nginx = require_tool("nginx")
    ports = ServerAddress.on_free_ports()
    site = NginxSite(
        http_port=ports.http_port,
        https_port=ports.grpc_port,
        backend_port=backend_port,
        max_body_bytes=max_body_bytes,
        tls_dir=prefix / "tls",
        acme_root=prefix / "acme",
        log_dir=prefix,
        limits=limits or ClientLimits(),
    )
    make_self_signed(site.tls_dir)
    site_file = prefix / "cvstack.conf"
    site_file.write_text(render_nginx_site(site))
    config = nginx_main_config(prefix, site_file)
    subprocess.run([nginx, "-t", "-q", "-c", str(config)], check=True)
    process = subprocess.Popen(
        [nginx, "-c", str(config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        _wait_listening(site.https_port, process, prefix / "error.log")
        _wait_listening(site.http_port, process, prefix / "error.log")
        yield site
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
    backend = BackendServer(
        backend_settings(yolo_models_dir, triton.address, max_frame_bytes=MAX_FRAME_BYTES)
    ).start()
    try:
        with running_nginx(
            tmp_path_factory.mktemp("nginx"), backend.settings.port, MAX_FRAME_BYTES
        ) as site:
            yield NginxFront(site, site.tls_dir / "fullchain.pem", backend)
    finally:
        backend.stop()
