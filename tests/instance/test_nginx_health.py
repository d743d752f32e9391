"""Fleet mode's health listener in a real nginx on loopback: the load balancer's health checks
reach the backend's /ready without the origin secret (a health check cannot send one), and
nothing else is served there; a draining backend fails the check, so the load balancer stops
routing sessions to it."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.instance.nginx_config import NginxSite
from tests.backend.service.conftest import BackendServer
from tests.instance.conftest import MAX_FRAME_BYTES, NginxFront, Upstream, running_nginx

# What an Application Load Balancer's health check sends: no secret, no X-Forwarded-For.
HEALTH_CHECKER = {"User-Agent": "ELB-HealthChecker/2.0", "Host": "10.40.0.17:8082"}


def get(port: int, path: str, method: str = "GET") -> tuple[int, bytes]:
    """(status, body) of a request as the load balancer's health check makes it."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request(method, path, headers=HEALTH_CHECKER)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


@pytest.fixture
def upstream_site(tmp_path: Path, upstream: Upstream) -> Iterator[NginxSite]:
    """nginx in front of the recording stand-in."""
    with running_nginx(tmp_path, upstream.port, MAX_FRAME_BYTES) as site:
        yield site


def test_the_health_check_gets_the_backends_ready_without_the_secret(
    nginx_front: NginxFront,
) -> None:
    status, body = get(nginx_front.site.health_port, "/ready")
    assert status == 200, body
    answer = json.loads(body)
    assert answer["ready"] is True and answer["draining"] is False
    # The origin listener still refuses the same request: it carries no secret.
    assert get(nginx_front.site.origin_port, "/ready")[0] == 403


def test_the_health_listener_serves_nothing_but_ready(
    upstream_site: NginxSite, upstream: Upstream
) -> None:
    paths = ("/health", "/ws/inference?token=x", "/metrics", "/", "/index.html", "/ready/x")
    for path in paths:
        assert get(upstream_site.health_port, path)[0] == 404, path
    assert get(upstream_site.health_port, "/ready", method="POST")[0] == 403
    assert upstream.requests == []
    assert get(upstream_site.health_port, "/ready")[0] == 200
    assert [request.path for request in upstream.requests] == ["/ready"]


def test_a_draining_backend_fails_the_health_check(
    start_backend: Callable[..., BackendServer], tmp_path: Path
) -> None:
    """The fleet agent's drain file turns /ready to 503 on the health listener too: the load
    balancer takes the instance out of rotation while its live sessions run on."""
    drain_file = tmp_path / "fleet" / "drain"
    drain_file.parent.mkdir()
    backend = start_backend(drain_file=drain_file, max_frame_bytes=MAX_FRAME_BYTES)
    with running_nginx(tmp_path / "nginx", backend.settings.port, MAX_FRAME_BYTES) as site:
        assert get(site.health_port, "/ready")[0] == 200
        drain_file.touch()
        status, body = get(site.health_port, "/ready")
        assert status == 503 and json.loads(body)["draining"] is True
        drain_file.unlink()
        assert get(site.health_port, "/ready")[0] == 200
