"""A raw WebSocket client on a plain socket, for what a library client will not do: stop
reading, split a message into tiny fragments, reset the connection, send invalid UTF-8."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
from typing import Any

import numpy as np

from backend.bench.hostile_target import RefusedError, Target

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0, 1, 2, 8, 9, 10
_TCP_ESTABLISHED = 1


class ServerClosedError(RefusedError):
    """The server closed the WebSocket (close frame), the TCP connection, or reset it."""


def encode_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """One client frame, masked as RFC 6455 requires of clients."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", opcode | (0x80 if fin else 0), 0x80 | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", opcode | (0x80 if fin else 0), 0x80 | 126, length)
    else:
        header = struct.pack("!BBQ", opcode | (0x80 if fin else 0), 0x80 | 127, length)
    key = os.urandom(4)
    data = np.frombuffer(payload, np.uint8)
    masked = data ^ np.resize(np.frombuffer(key, np.uint8), len(data))
    return header + key + masked.tobytes()


class RawWebSocket:
    """A client connection whose socket the caller reads from only when it chooses to."""

    def __init__(self, sock: socket.socket, buffered: bytes) -> None:
        self.sock = sock
        self._buffer = bytearray(buffered)
        self._loop = asyncio.get_running_loop()
        self._send_lock = asyncio.Lock()  # a pong must not land inside another frame

    @classmethod
    async def connect(
        cls, target: Target, token: str, *, receive_buffer: int | None = None, timeout: float = 10
    ) -> RawWebSocket:
        """Open TCP (optionally with a tiny receive buffer) and do the opening handshake."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        if receive_buffer is not None:  # before connect, so the window is small from the start
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                await loop.sock_connect(sock, (target.host, target.port))
                key = base64.b64encode(os.urandom(16)).decode()
                request = (
                    f"GET {target.ws_path(token)} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
                    f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    f"Sec-WebSocket-Version: 13\r\nOrigin: {target.origin}\r\n\r\n"
                )
                await loop.sock_sendall(sock, request.encode())
                response = b""
                while b"\r\n\r\n" not in response:
                    chunk = await loop.sock_recv(sock, 4096)
                    if not chunk:
                        raise ServerClosedError("eof before the handshake answer")
                    response += chunk
        except BaseException:
            sock.close()
            raise
        head, _, rest = response.partition(b"\r\n\r\n")
        status = head.split(b"\r\n", 1)[0].decode(errors="replace").split(" ")
        if len(status) < 2 or status[1] != "101":
            sock.close()
            raise ServerClosedError(f"refused HTTP {' '.join(status[1:2]) or '?'}")
        return cls(sock, rest)

    async def send(self, data: bytes) -> None:
        """Write whole frames (several at once if the caller likes)."""
        async with self._send_lock:
            await self._loop.sock_sendall(self.sock, data)

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(encode_frame(OP_TEXT, json.dumps(message).encode()))

    async def receive(self) -> tuple[int, bytes]:
        """The next data message (opcode, payload); answers pings; a close raises
        `ServerClosedError("close CODE REASON")`."""
        message, opcode = bytearray(), None
        while True:
            first, second = await self._read(2)
            length = second & 0x7F
            if length == 126:
                (length,) = struct.unpack("!H", await self._read(2))
            elif length == 127:
                (length,) = struct.unpack("!Q", await self._read(8))
            payload = await self._read(length)
            frame_opcode = first & 0x0F
            if frame_opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else "none"
                reason = payload[2:].decode(errors="replace")
                raise ServerClosedError(f"close {code} {reason}".rstrip())
            if frame_opcode == OP_PING:
                await self.send(encode_frame(OP_PONG, payload))
                continue
            if frame_opcode == OP_PONG:
                continue
            opcode = opcode if frame_opcode == OP_CONTINUATION else frame_opcode
            message += payload
            if first & 0x80 and opcode is not None:
                return opcode, bytes(message)

    async def receive_json(self) -> dict[str, Any]:
        while True:
            opcode, payload = await self.receive()
            if opcode == OP_TEXT:
                parsed: dict[str, Any] = json.loads(payload)
                return parsed

    def peer_gone(self) -> bool:
        """Whether the server has sent FIN or RST, seen without reading anything."""
        if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
            return True
        return self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0] != _TCP_ESTABLISHED

    def close(self, *, reset: bool = False) -> None:
        """Close; `reset` sends RST instead of FIN (the client vanishes mid-stream)."""
        if reset:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    async def _read(self, count: int) -> bytes:
        while len(self._buffer) < count:
            try:
                chunk = await self._loop.sock_recv(self.sock, 65536)
            except ConnectionResetError:
                raise ServerClosedError("reset by server") from None
            if not chunk:
                raise ServerClosedError("eof")
            self._buffer += chunk
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data
