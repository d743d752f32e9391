"""Limits enforced where uvicorn reads and writes sockets, below the ASGI app.

The app never sees a connection that has not finished its request, a message still being
assembled from fragments, or a write stuck behind a client that stopped reading; so these
limits live in subclasses of uvicorn's own protocols (`uvicorn_config` installs them):

- at most `max_connections` open TCP connections; at the cap, a new connection evicts the
  oldest one still sending its request headers, or is refused when there is none;
- `handshake_timeout_s` to finish the request headers (slowloris);
- at most `max_message_fragments` frames per WebSocket message (close 1009), and input fed to
  the frame parser a slice at a time, only while the app keeps up, so a read full of tiny
  messages or fragments cannot hold the event loop;
- `send_timeout_s` for results to be taken: a client whose waiting results (asyncio's buffer
  plus the kernel's unacknowledged bytes, both bounded) never shrink for that long, or whose
  write finds no room for that long, loses the connection (close 1008 `send_timeout`, then
  the socket is dropped), and the app sees the disconnect and releases the session's slot.

docs/security.md lists the numbers and what each protects.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import resource
import socket
import struct
import termios
import time
from asyncio import BaseTransport, TimerHandle
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, ClassVar

import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.protocols.utils import ClientDisconnected
from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from websockets.exceptions import InvalidState
from websockets.frames import Frame

from backend.core.config import Settings

log = logging.getLogger("cvstack.connections")
FEED_SLICE_BYTES = 4096  # parsed per loop turn: ~680 empty frames at most
CLOSE_GRACE_S = 2.0  # time for a stalled client to read our close frame before the drop
WARN_INTERVAL_S = 10.0
DRAIN_CHECK_S = 0.5  # how often each WebSocket's waiting results are looked at
# What may wait for a client that does not read: the kernel's send buffer (which it doubles
# for its own bookkeeping) and asyncio's. A page needs its round trip's worth of results
# (30 fps of 2 KB results at 300 ms: 18 KB); loopback autotunes the kernel's to 4 MB, minutes
# of results, and a send deadline only starts once both are full.
SEND_BUFFER_BYTES = 32_768
WRITE_BUFFER_BYTES = 16_384
FD_RESERVE = 256  # Triton channels, thread pools, model and backlog files, logs
SEND_TIMEOUT_CODE = 1008
TOO_MANY_FRAGMENTS_CODE = 1009
INVALID_TEXT_CODE = 1007


@dataclass(frozen=True)
class ConnectionLimits:
    max_connections: int
    handshake_timeout_s: float
    send_timeout_s: float
    max_message_fragments: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            max_connections=settings.max_connections,
            handshake_timeout_s=settings.handshake_timeout_s,
            send_timeout_s=settings.send_timeout_s,
            max_message_fragments=settings.max_message_fragments,
        )


class ThrottledWarning:
    """Logs one line per `interval_s` at most, saying how many events it stands for."""

    def __init__(self, message: str, interval_s: float = WARN_INTERVAL_S) -> None:
        self.message = message
        self.interval_s = interval_s
        self.count = 0  # events since the process started
        self._unlogged = 0
        self._last = -interval_s

    def __call__(self, *args: object) -> None:
        self.count += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last >= self.interval_s:
            log.warning("%s (%d since the last such line)", self.message % args, self._unlogged)
            self._unlogged = 0
            self._last = now


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's HTTP protocol with a connection cap and a deadline for request headers."""

    limits: ClassVar[ConnectionLimits]
    pending: ClassVar[OrderedDict[GuardedHttpProtocol, None]]  # still sending headers
    refused: ClassVar[ThrottledWarning]
    evicted: ClassVar[ThrottledWarning]
    timed_out: ClassVar[ThrottledWarning]
    _header_deadline: TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.limits.max_connections and not self._evict_oldest():
            self.refused(len(self.connections) - 1, self.limits.max_connections)
            transport.abort()
            return
        sock = transport.get_extra_info("socket")
        if sock is not None:  # results waiting for a slow reader: bounded, so are the stalls
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_BYTES)
        self._arm_header_deadline()

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self._header_deadline is None:  # the next request on a kept-alive connection
            self._arm_header_deadline()

    def on_headers_complete(self) -> None:
        self._disarm_header_deadline()
        super().on_headers_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_header_deadline()
        super().connection_lost(exc)

    def _arm_header_deadline(self) -> None:
        self._header_deadline = self.loop.call_later(
            self.limits.handshake_timeout_s, self._headers_too_slow
        )
        self.pending[self] = None

    def _disarm_header_deadline(self) -> None:
        if self._header_deadline is not None:
            self._header_deadline.cancel()
            self._header_deadline = None
        self.pending.pop(self, None)

    def _headers_too_slow(self) -> None:
        self._header_deadline = None
        self.pending.pop(self, None)
        self.timed_out(self.limits.handshake_timeout_s)
        self.transport.abort()

    def _evict_oldest(self) -> bool:
        """Make room by dropping the oldest connection still sending its headers."""
        for victim in self.pending:
            if victim is not self:
                victim._disarm_header_deadline()
                self.evicted(self.limits.max_connections)
                victim.transport.abort()
                return True
        return False


class GuardedWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's WebSocket protocol with a fragment limit and a deadline for each send."""

    limits: ClassVar[ConnectionLimits]
    fragmented: ClassVar[ThrottledWarning]
    stalled: ClassVar[ThrottledWarning]
    bad_text: ClassVar[ThrottledWarning]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._unparsed = bytearray()  # read from the socket, not yet given to the parser
        self._fragments = 0
        self._failed = False  # closed by a limit: the rest of the input is ignored
        self._send_expired = False
        self._drop_timer: TimerHandle | None = None
        self._drain_check: TimerHandle | None = None
        self._queued = 0  # bytes waiting for the client at the last check
        self._stuck_since: float | None = None

    def connection_made(self, transport: BaseTransport) -> None:
        super().connection_made(transport)
        self._drain_check = self.loop.call_later(DRAIN_CHECK_S, self._check_draining)

    def _check_draining(self) -> None:
        """Results waiting for the client that never shrink for `send_timeout_s`: the client
        does not read, even if the buffers are not full yet (a slow result rate)."""
        self._drain_check = None
        if self.transport.is_closing() or self._send_expired:
            return
        queued = self.transport.get_write_buffer_size() + _unacknowledged(self.transport)
        now = self.loop.time()
        if queued == 0 or queued < self._queued:
            self._stuck_since = None
        elif self._stuck_since is None:
            self._stuck_since = now
        elif now - self._stuck_since >= self.limits.send_timeout_s:
            self._expire_sends()
            self.queue.put_nowait({"type": "websocket.disconnect", "code": SEND_TIMEOUT_CODE})
            return
        self._queued = queued
        self._drain_check = self.loop.call_later(DRAIN_CHECK_S, self._check_draining)

    def data_received(self, data: bytes) -> None:
        self._unparsed += data
        self._feed()

    async def receive(self) -> Any:
        message = await super().receive()
        if self._unparsed and self.queue.empty():
            self.loop.call_soon(self._feed)  # after the other tasks' turn
        return message

    def _feed(self) -> None:
        """Parse input a slice at a time while the app has read every message so far, so
        one read full of tiny messages or fragments is spread over many loop turns."""
        while self._unparsed and not self._failed and self.queue.empty():
            chunk = bytes(self._unparsed[:FEED_SLICE_BYTES])
            del self._unparsed[:FEED_SLICE_BYTES]
            super().data_received(chunk)
        if self._unparsed and not self.read_paused and not self.transport.is_closing():
            self.read_paused = True  # uvicorn's receive() resumes once the app caught up
            self.transport.pause_reading()

    def handle_text(self, event: Frame) -> None:
        self._fragments = 1
        super().handle_text(event)

    def handle_bytes(self, event: Frame) -> None:
        self._fragments = 1
        super().handle_bytes(event)

    def handle_cont(self, event: Frame) -> None:
        if self._failed:
            return
        self._fragments += 1
        if self._fragments <= self.limits.max_message_fragments:
            super().handle_cont(event)
            return
        self._failed = True
        self.frames = []
        self.fragmented(self.limits.max_message_fragments)
        self.conn.fail(
            TOO_MANY_FRAGMENTS_CODE,
            f"message in over {self.limits.max_message_fragments} fragments",
        )
        self.handle_parser_exception()

    def send_receive_event_to_app(self) -> None:
        if self.curr_msg_data_type == "text" and not self.close_sent:
            try:
                b"".join(self.frames).decode()
            except UnicodeDecodeError:  # uvicorn would log a traceback for each one
                self.frames = []
                self._failed = True
                self.bad_text()
                self.conn.fail(INVALID_TEXT_CODE, "text message is not UTF-8")
                self.handle_parser_exception()
                return
        super().send_receive_event_to_app()

    def keepalive_timeout(self) -> None:
        super().keepalive_timeout()
        self.transport.abort()  # close() would wait for a buffer an absent client never reads

    async def send(self, message: Any) -> None:
        if self._send_expired:
            raise ClientDisconnected
        if not self.writable.is_set():
            try:
                await asyncio.wait_for(self.writable.wait(), self.limits.send_timeout_s)
            except TimeoutError:
                self._expire_sends()
                raise ClientDisconnected from None
        await super().send(message)
        if message["type"] == "websocket.close" and self.close_timer is not None:
            self.close_timer.cancel()  # uvicorn's timer closes gracefully: it waits for reads
            self.close_timer = self.loop.call_later(self.close_timeout, self.transport.abort)

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._drop_timer, self._drain_check):
            if timer is not None:
                timer.cancel()
        self._drop_timer = self._drain_check = None
        super().connection_lost(exc)

    def _expire_sends(self) -> None:
        """The client took nothing for `send_timeout_s`: tell it why, then drop it."""
        self._send_expired = True
        self.stalled(self.limits.send_timeout_s)
        if not self.close_sent and self.handshake_complete:
            try:
                self.conn.send_close(SEND_TIMEOUT_CODE, "send_timeout")
                self.transport.write(b"".join(self.conn.data_to_send()))
            except InvalidState:
                pass
            self.close_sent = True
        self._drop_timer = self.loop.call_later(CLOSE_GRACE_S, self.transport.abort)


def _unacknowledged(transport: BaseTransport) -> int:
    """Bytes in the kernel's send queue not yet acknowledged by the client (SIOCOUTQ)."""
    sock = transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        answer = fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, b"\0\0\0\0")
    except OSError:
        return 0
    return int(struct.unpack("i", answer)[0])


def guarded_protocols(
    limits: ConnectionLimits,
) -> tuple[type[GuardedHttpProtocol], type[GuardedWebSocketProtocol]]:
    """Protocol classes bound to `limits`, with counters of their own (one pair per server)."""
    http = type(
        "CvstackHttpProtocol",
        (GuardedHttpProtocol,),
        {
            "limits": limits,
            "pending": OrderedDict(),
            "refused": ThrottledWarning(
                "refused a connection: %d open, the limit is CVSTACK_MAX_CONNECTIONS=%d"
            ),
            "evicted": ThrottledWarning(
                "at CVSTACK_MAX_CONNECTIONS=%d, dropped the oldest connection still sending "
                "its request"
            ),
            "timed_out": ThrottledWarning(
                "closed a connection that sent no complete request within "
                "CVSTACK_HANDSHAKE_TIMEOUT_S=%.0f s"
            ),
        },
    )
    ws = type(
        "CvstackWebSocketProtocol",
        (GuardedWebSocketProtocol,),
        {
            "limits": limits,
            "fragmented": ThrottledWarning(
                "closed a WebSocket (1009) whose message came in over "
                "CVSTACK_MAX_MESSAGE_FRAGMENTS=%d fragments"
            ),
            "stalled": ThrottledWarning(
                "closed a WebSocket (1008 send_timeout) that read nothing for "
                "CVSTACK_SEND_TIMEOUT_S=%.0f s"
            ),
            "bad_text": ThrottledWarning("closed a WebSocket (1007) that sent text not in UTF-8"),
        },
    )
    return http, ws


def raise_fd_limit(max_connections: int) -> str | None:
    """Raise this process's open-file limit to its hard limit; a warning if still too low."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    needed = max_connections + FD_RESERVE
    if hard != resource.RLIM_INFINITY and hard < needed:
        return (
            f"CVSTACK_MAX_CONNECTIONS={max_connections} needs about {needed} file descriptors, "
            f"but this process may open {hard}: lower CVSTACK_MAX_CONNECTIONS or raise the "
            "limit (LimitNOFILE= in systemd, ulimits: in Compose)"
        )
    return None


def uvicorn_config(app: Any, settings: Settings, *, log_level: str = "info") -> uvicorn.Config:
    """The one uvicorn configuration of `cvstack serve` and the tests: limits included."""
    http, ws = guarded_protocols(ConnectionLimits.from_settings(settings))
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        http=http,
        ws=ws,
        ws_max_size=settings.ws_max_message_bytes,
        ws_per_message_deflate=False,  # JPEG frames do not compress; deflate only costs CPU
    )
