"""TLS for websockets' synchronous client that holds up under load: `serialized(context)`.

The sync client reads in a background thread while the caller writes, and Python's `SSLSocket`
is not safe for a read and a write at once (OpenSSL forbids concurrent calls on one session).
Under load the race shows: the background thread reads TLS 1.3's NewSessionTicket while the
handshake request is being written, the request never leaves, and the server times the
connection out ("client timed out ... while waiting for request" in nginx's log, an EOF here).
Every TLS call on a `SerializedTlsSocket` runs under one lock, which is never held while waiting
for the network, so reads and writes take turns and neither blocks the other.
"""

from __future__ import annotations

import select
import socket
import ssl
import threading
import time
from typing import Any, cast


class SerializedTlsSocket:
    """The socket methods websockets' sync connection uses, over a non-blocking `SSLSocket`."""

    def __init__(self, tls: ssl.SSLSocket) -> None:
        self._tls = tls
        self._lock = threading.Lock()
        self._timeout: float | None = tls.gettimeout()
        tls.setblocking(False)

    def recv(self, size: int) -> bytes:
        deadline = self._deadline()
        while True:
            with self._lock:
                try:
                    return self._tls.recv(size)
                except ssl.SSLWantReadError:
                    readable = True
                except ssl.SSLWantWriteError:
                    readable = False
            self._wait(readable, deadline)

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data).cast("B")
        deadline = self._deadline()
        while view:
            with self._lock:
                try:
                    view = view[self._tls.send(view) :]
                    continue
                except ssl.SSLWantReadError:
                    readable = True
                except ssl.SSLWantWriteError:
                    readable = False
            self._wait(readable, deadline)

    def settimeout(self, timeout: float | None) -> None:
        self._timeout = timeout

    def gettimeout(self) -> float | None:
        return self._timeout

    def shutdown(self, how: int) -> None:
        with self._lock:
            self._tls.shutdown(how)

    def close(self) -> None:
        with self._lock:
            self._tls.close()

    def fileno(self) -> int:
        return self._tls.fileno()

    def getsockname(self) -> Any:
        return self._tls.getsockname()

    def getpeername(self) -> Any:
        return self._tls.getpeername()

    def setsockopt(self, level: int, option: int, value: int) -> None:
        self._tls.setsockopt(level, option, value)

    def _deadline(self) -> float | None:
        return None if self._timeout is None else time.monotonic() + self._timeout

    def _wait(self, readable: bool, deadline: float | None) -> None:
        """Until the socket can be read (or written), without the lock."""
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
            raise TimeoutError("timed out")
        fd = [self._tls]
        ready = select.select(fd, [], [], left) if readable else select.select([], fd, [], left)
        if not any(ready):
            raise TimeoutError("timed out")


class _SerializingContext:
    """Wraps like `context`, then hands websockets a `SerializedTlsSocket`."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context

    def wrap_socket(self, sock: socket.socket, server_hostname: str | None = None) -> Any:
        return SerializedTlsSocket(self._context.wrap_socket(sock, server_hostname=server_hostname))


def serialized(context: ssl.SSLContext) -> ssl.SSLContext:
    """`context` for websockets' sync `connect(ssl=...)`: the same TLS, one call at a time."""
    return cast(ssl.SSLContext, _SerializingContext(context))
