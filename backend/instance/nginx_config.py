"""Render the instance's nginx site (`ami/nginx/cvstack.conf.j2`) for given ports.

The image renders it with 80/443 at bake time; the tests render the very same template on free
high ports and run it in a real nginx.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import jinja2

from backend.paths import REPO_ROOT

TEMPLATE = REPO_ROOT / "ami" / "nginx" / "cvstack.conf.j2"
TLS_DIR = Path("/etc/cvstack/tls")
ACME_ROOT = Path("/var/lib/cvstack/acme")


@dataclass(frozen=True)
class NginxSite:
    """Everything that differs between the instance and a test."""

    http_port: int = 80
    https_port: int = 443
    backend_port: int = 8080
    max_body_bytes: int = 2_000_000  # CVSTACK_MAX_FRAME_BYTES
    tls_dir: Path = TLS_DIR
    acme_root: Path = ACME_ROOT


def render_nginx_site(site: NginxSite) -> str:
    """The site configuration text."""
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE.parent),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return environment.get_template(TEMPLATE.name).render(
        http_port=site.http_port,
        https_port=site.https_port,
        https_suffix="" if site.https_port == 443 else f":{site.https_port}",
        backend_port=site.backend_port,
        max_body_bytes=site.max_body_bytes,
        tls_dir=site.tls_dir,
        acme_root=site.acme_root,
    )
