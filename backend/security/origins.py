"""The browser-origin allowlist for WebSocket connections.

An entry is an origin (`https://app.example.com`, `http://localhost:8000`) or `self`: the page
was served by the host the WebSocket connects to. `self` is what a deployment behind the
CloudFront front door relies on, whose domain name is not known when the settings are written.
"""

from __future__ import annotations

from urllib.parse import urlsplit

SAME_ORIGIN = "self"
DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_authority(origin: str) -> str | None:
    """The `host[:port]` of an http(s) origin as a browser's Host header carries it (lower case,
    the scheme's default port left out), or None if `origin` is not `scheme://host[:port]`."""
    try:
        url = urlsplit(origin.rstrip("/"))
        port = url.port
    except ValueError:
        return None
    if url.scheme not in DEFAULT_PORTS or not url.hostname:
        return None
    if url.username is not None or url.path or url.query or url.fragment:
        return None
    host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
    return host if port in (None, DEFAULT_PORTS[url.scheme]) else f"{host}:{port}"


def origin_allowed(origin: str | None, host: str | None, allowed: list[str]) -> bool:
    """Whether a WebSocket opened from `origin` to the server named by the `host` header may go on.

    An empty allowlist allows every origin (local mode). Otherwise the origin must equal an entry
    or, with the entry `self`, have the request's Host as its host[:port] (same origin). Clients
    that are not browsers send no Origin header; they are allowed, since the session token, not
    the origin, is what authenticates them.
    """
    if not allowed or origin is None:
        return True
    if SAME_ORIGIN in allowed and host and origin_authority(origin) == host.lower():
        return True
    return origin.rstrip("/") in {entry.rstrip("/") for entry in allowed}


def allowlist_error(entry: str) -> str | None:
    """Why `entry` cannot be in the allowlist, with what to write instead; None if it can."""
    if entry == SAME_ORIGIN or origin_authority(entry) is not None:
        return None
    return (
        f"{entry!r} is not an origin: write 'self' (the page is served by this server's own "
        "host, as through the CloudFront front door) or scheme://host[:port] such as "
        "'https://app.example.com', with no path; \"*\" is not allowed"
    )
