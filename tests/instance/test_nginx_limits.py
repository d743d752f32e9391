"""The shipped nginx site's defences against slow and greedy clients (issue 11), in a real nginx.

nginx runs the rendered site on loopback in front of a loopback upstream (HTTP 200 on every
path, WebSockets on /ws/...), with limits small enough to reach in a test. Clients come from
127.0.0.1 and, to show that a limit is per address, from 127.0.0.2; through the origin listener
every request comes from one address (a CloudFront edge) and names its viewer in
X-Forwarded-For.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from backend.instance.nginx_config import ClientLimits, NginxSite
from tests.instance.conftest import (
    MAX_FRAME_BYTES,
    ORIGIN_SECRET,
    ORIGIN_SECRET_HEADER,
    Upstream,
    running_nginx,
)
from tests.tls_websocket import serialized

OTHER_CLIENT = "127.0.0.2"  # loopback too: a second client address on the same machine
SLACK_S = 4.0  # on top of a timeout before a test calls it missing (the machine may be busy)


@dataclass
class Front:
    site: NginxSite
    prefix: Path
    upstream: Upstream

    def url(self, path: str) -> str:
        return f"wss://127.0.0.1:{self.site.https_port}{path}"

    def tls(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.site.tls_dir / "fullchain.pem"))

    def socket_from(self, address: str, port: int | None = None) -> socket.socket:
        """A TCP connection to nginx (the HTTPS port unless told) from the given address."""
        sock = socket.socket()
        sock.bind((address, 0))
        sock.settimeout(30)
        sock.connect(("127.0.0.1", port or self.site.https_port))
        return sock

    def tls_socket(self, source: str = "127.0.0.1") -> ssl.SSLSocket:
        """A TLS connection to nginx's HTTPS port from the given address."""
        return self.tls().wrap_socket(self.socket_from(source), server_hostname="127.0.0.1")

    def websocket(self, path: str = "/ws/inference", source: str = "127.0.0.1") -> ClientConnection:
        """An open WebSocket through nginx; raises InvalidStatus when nginx refuses it."""
        return connect(
            self.url(path),
            sock=self.socket_from(source),
            ssl=serialized(self.tls()),
            server_hostname="127.0.0.1",
            ping_interval=None,
            max_size=None,
        )

    def handshake_status(self, path: str = "/ws/inference", source: str = "127.0.0.1") -> int:
        """101 when the WebSocket opened (it is closed again at once), else nginx's status."""
        try:
            with self.websocket(path, source):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    def https_status(self, path: str, source: str = "127.0.0.1") -> int:
        with self.tls_socket(source) as tls:
            tls.sendall(
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
            )
            return int(tls.recv(4096).split(b" ", 2)[1])

    def origin_websocket(self, viewer: str, path: str = "/ws/inference") -> ClientConnection:
        """An open WebSocket through the origin listener as CloudFront opens it for `viewer`:
        the secret, and X-Forwarded-For with what the viewer sent (a spoofed 1.2.3.4) followed
        by the viewer's address."""
        return connect(
            f"ws://127.0.0.1:{self.site.origin_port}{path}",
            additional_headers={
                ORIGIN_SECRET_HEADER: ORIGIN_SECRET,
                "X-Forwarded-For": f"1.2.3.4, {viewer}",
            },
            ping_interval=None,
        )

    def origin_handshake_status(self, viewer: str, path: str = "/ws/inference") -> int:
        try:
            with self.origin_websocket(viewer, path):
                return 101
        except InvalidStatus as refused:
            return refused.response.status_code

    def access_log(self) -> list[str]:
        return (self.prefix / "cvstack-access.log").read_text().splitlines()


@pytest.fixture
def start_front(tmp_path: Path, upstream: Upstream) -> Iterator[Callable[..., Front]]:
    """Starts nginx with the given ClientLimits fields in front of `upstream`."""
    with ExitStack() as stack:

        def start(**limits: int) -> Front:
            site = stack.enter_context(
                running_nginx(tmp_path, upstream.port, MAX_FRAME_BYTES, ClientLimits(**limits))
            )
            return Front(site, tmp_path, upstream)

        yield start


def seconds_until_closed(receive: Callable[[], bytes], trickle: Callable[[], object]) -> float:
    """Calls `receive` (which times out every 0.25 s) and `trickle` in turn until the peer closes
    the connection; gives up after 60 s (nginx's default timeouts)."""
    started = time.monotonic()
    while time.monotonic() - started < 60:
        try:
            if not receive():
                break
        except TimeoutError:
            trickle()
        except (ConnectionResetError, ssl.SSLEOFError, BrokenPipeError):
            break
    return time.monotonic() - started


@contextmanager
def held_websockets(front: Front, count: int) -> Iterator[None]:
    with ExitStack() as stack:
        for _ in range(count):
            stack.enter_context(front.websocket())
        yield


# --- slow clients ---------------------------------------------------------------------------


def test_slow_clients_are_cut_off_within_the_header_timeout(
    start_front: Callable[..., Front],
) -> None:
    """Slowloris: a connection that never starts TLS, one that finishes TLS and sends nothing,
    and one that trickles its request head a byte every 0.25 s (so it is never idle) are all
    closed within client_header_timeout of the accept, not nginx's default 60 s."""
    front = start_front(header_timeout_s=2)
    results: dict[str, float] = {}

    def silent_tcp() -> None:
        with front.socket_from("127.0.0.1") as raw:
            raw.settimeout(0.25)
            results["no TLS"] = seconds_until_closed(lambda: raw.recv(1), lambda: None)

    def silent_tls() -> None:
        with front.tls_socket("127.0.0.1") as tls:
            tls.settimeout(0.25)
            results["TLS, no request"] = seconds_until_closed(lambda: tls.recv(1), lambda: None)

    def trickling_tls() -> None:
        with front.tls_socket("127.0.0.1") as tls:
            tls.sendall(b"GET /ws/inference HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            tls.settimeout(0.25)
            results["trickled head"] = seconds_until_closed(
                lambda: tls.recv(1), lambda: tls.sendall(b"X")
            )

    threads = [threading.Thread(target=run) for run in (silent_tcp, silent_tls, trickling_tls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(90)
    assert set(results) == {"no TLS", "TLS, no request", "trickled head"}
    for kind, seconds in results.items():
        assert seconds < 2 + SLACK_S, f"{kind}: open for {seconds:.1f} s"
    assert any(" 408 " in line for line in front.access_log())  # the trickler is logged


def test_a_timed_out_request_is_reset_not_closed_gracefully(
    start_front: Callable[..., Front],
) -> None:
    """reset_timedout_connection: the socket of a timed-out request is freed at once (RST), not
    left in FIN_WAIT for the client to finish. Plain HTTP, where the client can tell the two."""
    front = start_front(header_timeout_s=2)
    with front.socket_from("127.0.0.1", front.site.origin_port) as raw:
        raw.sendall(b"GET / HTTP/1.1\r\n")
        raw.settimeout(2 + SLACK_S)
        with pytest.raises(ConnectionResetError):  # b"" after a FIN; TimeoutError if neither
            raw.recv(1)


def test_a_websocket_the_backend_stopped_writing_to_is_closed(
    start_front: Callable[..., Front],
) -> None:
    """proxy_read_timeout on /ws/: a WebSocket whose backend has written nothing for the idle
    timeout is closed; one whose backend keeps writing (the real one pings every 15 s) lives on."""
    front = start_front(ws_idle_timeout_s=2)
    with front.websocket("/ws/pinging") as pinging, front.websocket("/ws/silent") as silent:
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            silent.recv(2 + SLACK_S)
        assert time.monotonic() - started < 2 + SLACK_S
        while time.monotonic() - started < 3 * 2:
            assert pinging.recv(2 + SLACK_S) == "ping"


def test_a_client_that_stops_reading_is_dropped_after_the_send_timeout(
    start_front: Callable[..., Front],
) -> None:
    """send_timeout: a WebSocket client that stops reading while the backend writes blocks
    nginx's writes to it; nginx gives up after send_timeout and closes both sides, so the
    backend's blocked send ends too. The client is a bare TLS socket that does the handshake
    and never reads again (a WebSocket library would keep reading in the background)."""
    front = start_front(send_timeout_s=2, ws_idle_timeout_s=600)
    key = base64.b64encode(os.urandom(16)).decode()
    with front.tls_socket("127.0.0.1") as tls:
        tls.sendall(
            "GET /ws/flood HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        assert tls.recv(12) == b"HTTP/1.1 101"
        deadline = time.monotonic() + 60
        while not front.upstream.events and time.monotonic() < deadline:
            time.sleep(0.1)
    assert front.upstream.events, "the backend was still blocked after 60 s"
    seconds = float(front.upstream.events[0].split()[3])
    assert seconds < 2 + 2 * SLACK_S, front.upstream.events


# --- per-client limits ------------------------------------------------------------------------


def test_one_address_cannot_hold_more_than_its_connections(
    start_front: Callable[..., Front],
) -> None:
    """limit_conn: with 4 WebSockets open, a fifth request from the same address, WebSocket or
    plain, is refused with 429; another address still gets through; once the 4 close, the
    first address gets through again."""
    front = start_front(connections_per_ip=4)
    with held_websockets(front, 4):
        assert front.handshake_status() == 429
        assert front.https_status("/health") == 429
        assert front.handshake_status(source=OTHER_CLIENT) == 101
        assert front.https_status("/health", source=OTHER_CLIENT) == 200
    deadline = time.monotonic() + 10  # nginx counts a connection off when it has closed it
    while front.handshake_status() != 101:
        assert time.monotonic() < deadline, "the address stayed locked out after closing"
        time.sleep(0.1)
    assert any("limit_conn=REJECTED" in line and " 429 " in line for line in front.access_log())


def test_handshake_bursts_beyond_the_limit_are_refused(start_front: Callable[..., Front]) -> None:
    """limit_req on /ws/: at 1 handshake/s with a burst of 5, a rapid series of 30 handshakes
    from one address opens the burst (plus what the rate refilled meanwhile) and gets 429 for
    the rest; another address and plain requests are not affected."""
    front = start_front(handshakes_per_s=1, handshake_burst=5)
    started = time.monotonic()
    statuses = [front.handshake_status() for _ in range(30)]
    elapsed = time.monotonic() - started
    opened = statuses.count(101)
    assert set(statuses) <= {101, 429}, statuses
    assert statuses[:6] == [101] * 6  # the first plus the burst: no wait, nobody delayed
    assert opened <= 6 + int(elapsed) + 1, (statuses, elapsed)  # then 1/s at most
    assert front.handshake_status(source=OTHER_CLIENT) == 101
    assert front.https_status("/health") == 200  # only handshakes are rate-limited
    assert any("limit_req=REJECTED" in line and " 429 " in line for line in front.access_log())


def test_the_origin_listener_counts_viewers_not_the_cloudfront_edge(
    start_front: Callable[..., Front],
) -> None:
    """Every request through the front door comes from a CloudFront address; the limits key on
    the viewer, the last X-Forwarded-For entry (the one CloudFront appended), never on an entry
    the viewer wrote itself. One viewer that used its handshake burst is refused while another
    behind the same edge (and with the same spoofed first entry) still gets through; a third
    whose own address is the first viewer's shares its count. limit_conn likewise."""
    front = start_front(handshakes_per_s=1, handshake_burst=2, connections_per_ip=2)
    statuses = [front.origin_handshake_status("5.6.7.8") for _ in range(10)]
    assert statuses[:3] == [101] * 3 and 429 in statuses, statuses
    assert front.origin_handshake_status("9.9.9.9") == 101
    assert front.origin_handshake_status("5.6.7.8") == 429
    with front.origin_websocket("10.0.0.1"), front.origin_websocket("10.0.0.1"):
        assert front.origin_handshake_status("10.0.0.1") == 429  # limit_conn, 2 held
        assert front.origin_handshake_status("10.0.0.2") == 101
    access = front.access_log()
    assert any(line.startswith("5.6.7.8 ") and "limit_req=REJECTED" in line for line in access)
    assert any(line.startswith("10.0.0.1 ") and "limit_conn=REJECTED" in line for line in access)
    assert not any(line.startswith(("1.2.3.4 ", "127.0.0.1 ")) for line in access), access
    handshake = front.upstream.requests[0]
    assert handshake.headers["X-Real-IP"] == "5.6.7.8"
    assert handshake.headers["X-Forwarded-For"] == "1.2.3.4, 5.6.7.8"  # CloudFront's, as is
    assert handshake.headers["X-Forwarded-Proto"] == "https"


# --- tokens stay out of the logs ------------------------------------------------------------


def test_no_session_token_reaches_any_nginx_log(start_front: Callable[..., Front]) -> None:
    """Every way a request with `?token=` can end (opened, refused by either limit, timed out,
    too large, refused by the origin listener, backend down) is logged, and no log file nginx
    wrote holds the token: the access log writes the path without the query, the error log
    (whose lines about a request quote the request line) keeps only crit and worse. The backend
    still gets the token. Each case comes from its own address, so the limits do not mix."""
    front = start_front(
        header_timeout_s=2, connections_per_ip=2, handshakes_per_s=1, handshake_burst=2
    )
    secret = "TOKEN-3f9c1e7a"
    wss = f"/ws/inference?token={secret}"

    assert front.handshake_status(wss) == 101
    statuses = [front.handshake_status(wss) for _ in range(10)]
    assert 429 in statuses  # the burst used up: refused by limit_req
    with front.websocket(wss, "127.0.0.2"), front.websocket(wss, "127.0.0.2"):
        assert front.handshake_status(wss, "127.0.0.2") == 429  # refused by limit_conn
    with front.tls_socket("127.0.0.3") as tls:
        tls.sendall(f"GET {wss} HTTP/1.1\r\nHost: x\r\n".encode())  # never finished: 408
        tls.settimeout(0.25)
        assert seconds_until_closed(lambda: tls.recv(1), lambda: None) < 2 + SLACK_S
    with front.tls_socket("127.0.0.3") as tls:
        tls.sendall(
            f"POST {wss} HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_FRAME_BYTES + 1}\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        assert b" 413 " in tls.recv(4096)
    with front.socket_from("127.0.0.3", front.site.origin_port) as plain:  # no origin secret
        plain.sendall(f"GET {wss} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        assert b" 403 " in plain.recv(4096)
    assert f"/ws/inference?token={secret}" in front.upstream.paths  # the backend got it
    front.upstream.stop()
    assert front.handshake_status(wss, "127.0.0.4") == 502  # the backend is down (restarting)

    logged = {path.name: path.read_bytes() for path in front.prefix.iterdir() if path.is_file()}
    for name, text in logged.items():
        assert secret.encode() not in text, f"{name} holds the token:\n{text.decode()}"
    assert {"cvstack-access.log", "cvstack-error.log"} <= set(logged)
    access = front.access_log()
    for status in ("101", "429", "408", "413", "403", "502"):
        assert any(f'/ws/inference HTTP/1.1" {status} ' in line for line in access), status
    assert any("limit_req=REJECTED" in line for line in access)
    assert any("limit_conn=REJECTED" in line for line in access)
