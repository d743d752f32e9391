"""Render the instance's nginx site (`ami/nginx/cvstack.conf.j2`) for given ports.

The image renders it with 80 (the CloudFront origin listener), 443 (the operator's TLS
listener) and 8082 (the fleet load balancer's health checks) at bake time; the tests render the
very same template on free high ports and run it in a real nginx.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import jinja2

from backend.paths import REPO_ROOT

TEMPLATE = REPO_ROOT / "ami" / "nginx" / "cvstack.conf.j2"
TLS_DIR = Path("/etc/cvstack/tls")
# Where the boot writes the origin secret's map file (backend/instance/backend_env.py).
ORIGIN_SECRET_DIR = Path("/run/cvstack/nginx")
LOG_DIR = Path("/var/log/nginx")
MAX_TIMEOUT_S = 3600
MAX_CONNECTIONS_PER_IP = 65535  # nginx refuses a larger limit_conn
MAX_RATE = 100_000
# Fleet mode: the load balancer's health checks GET /ready here, without the origin secret (a
# health check cannot send headers); only the load balancer's security group reaches the port.
HEALTH_PORT = 8082
# Idle keep-alive on the listeners a proxy connects to (CloudFront, the fleet's load balancer):
# longer than the load balancer's idle timeout (infra_cdk/fleet_load_balancer.py), so the proxy
# always closes an idle connection first and never sends a request on one nginx is closing
# (which it answers with 502). Viewers never reach these listeners directly.
FRONT_DOOR_KEEPALIVE_S = 150


@dataclass(frozen=True)
class ClientLimits:
    """What one client may hold or ask of nginx (issue 11: no client can lock everyone out).

    The defaults come from measurements through a real nginx (docs/security.md): one Chromium
    page makes 14-15 requests, up to 10 at once over HTTP/2 (with a limit of 8 or less some
    page loads failed: a refused module script is not retried), then holds 1 WebSocket; a tab
    whose backend keeps dropping it reconnects at most every 0.5 s (2 handshakes in any 1 s);
    a TCP + TLS + WebSocket handshake on loopback takes 10 ms (p50) to 50 ms (max).
    """

    # Whole request head, TLS handshake included (nginx starts the clock at the accept): a link
    # with a 1 s round trip needs ~3 s (TLS 1.2: 2 round trips, then the request).
    header_timeout_s: int = 10
    # Between two reads of a request body / two writes to the client (slow readers, WebSocket
    # clients that stop reading included).
    body_timeout_s: int = 10
    send_timeout_s: int = 30
    # An idle keep-alive connection (HTTP/1.1, and HTTP/2 on nginx >= 1.19.7).
    keepalive_timeout_s: int = 20
    # WebSocket: nginx closes it when the backend sent nothing for this long; the backend pings
    # every 15 s (CVSTACK_PING_INTERVAL_S), so 60 s is four missed pings.
    ws_idle_timeout_s: int = 60
    # Requests in progress per client address, WebSockets included (each HTTP/2 stream counts):
    # three page loads at once, or a page load and 20 WebSockets behind one NAT address.
    connections_per_ip: int = 32
    # WebSocket handshakes per client address: 2.5x a reconnecting tab, and a burst for 20 tabs
    # or NAT neighbours reconnecting at once after a backend restart.
    handshakes_per_s: int = 5
    handshake_burst: int = 20

    def __post_init__(self) -> None:
        for limit in dataclasses.fields(self):
            value = getattr(self, limit.name)
            if limit.name.endswith("_timeout_s"):
                most = MAX_TIMEOUT_S
            elif limit.name == "connections_per_ip":
                most = MAX_CONNECTIONS_PER_IP
            else:
                most = MAX_RATE
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
                raise ValueError(f"{limit.name} must be a whole number 1..{most}, got {value!r}")


@dataclass(frozen=True)
class NginxSite:
    """Everything that differs between the instance and a test."""

    origin_port: int = 80  # CloudFront's VPC origin: plain HTTP, the origin secret required
    https_port: int = 443  # the operator's access, self-signed TLS
    health_port: int = HEALTH_PORT  # fleet mode's load balancer health checks, /ready only
    backend_port: int = 8080
    max_body_bytes: int = 2_000_000  # CVSTACK_MAX_FRAME_BYTES
    tls_dir: Path = TLS_DIR
    origin_secret_dir: Path = ORIGIN_SECRET_DIR
    log_dir: Path = LOG_DIR
    limits: ClientLimits = field(default_factory=ClientLimits)


def render_nginx_site(site: NginxSite) -> str:
    """The site configuration text."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return environment.get_template(TEMPLATE.name).render(
        origin_port=site.origin_port,
        https_port=site.https_port,
        health_port=site.health_port,
        front_door_keepalive_s=FRONT_DOOR_KEEPALIVE_S,
        backend_port=site.backend_port,
        max_body_bytes=site.max_body_bytes,
        tls_dir=site.tls_dir,
        origin_secret_dir=site.origin_secret_dir,
        log_dir=site.log_dir,
        limits=site.limits,
    )
