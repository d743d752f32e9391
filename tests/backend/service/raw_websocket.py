"""A blocking WebSocket client on a bare socket, for what library clients never do: stop
reading, split a message into many fragments, or leave the request unfinished."""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any
from urllib.parse import urlsplit

from backend.bench.hostile_ws import OP_BINARY, OP_CLOSE, OP_CONTINUATION, OP_TEXT, encode_frame


def fragmented(payload: bytes, pieces: int) -> bytes:
    """A binary message split into `pieces` frames of (about) equal size."""
    size = max(1, -(-len(payload) // pieces))
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    return b"".join(
        encode_frame(OP_BINARY if i == 0 else OP_CONTINUATION, chunk, fin=i == len(chunks) - 1)
        for i, chunk in enumerate(chunks)
    )


class RawWebSocket:
    """A WebSocket whose socket is read only when the test says so."""

    def __init__(self, url: str, *, receive_buffer: int | None = None) -> None:
        parts = urlsplit(url)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connect: the window stays small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(10)
        self.sock.connect((parts.hostname, parts.port))
        key = base64.b64encode(os.urandom(16)).decode()
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        self.sock.sendall(
            f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n\r\n".encode()
        )
        response = b""
        while b"\r\n\r\n" not in response:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the server closed the connection during the handshake")
            response += chunk
        head, _, self.buffer = response.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101"), head

    def send_json(self, message: dict[str, Any]) -> None:
        self.sock.sendall(encode_frame(OP_TEXT, json.dumps(message).encode()))

    def close_code(self, timeout: float) -> tuple[int, str] | None:
        """Read until the server's close frame (its code and reason) or the end of the
        connection (None); fails if neither comes within `timeout` seconds."""
        self.sock.settimeout(timeout)
        data = self.buffer
        while True:
            while len(data) >= 2:
                opcode, length, offset = data[0] & 0x0F, data[1] & 0x7F, 2
                if length == 126:
                    (length,), offset = struct.unpack("!H", data[2:4]), 4
                elif length == 127:
                    (length,), offset = struct.unpack("!Q", data[2:10]), 10
                if len(data) < offset + length:
                    break
                payload, data = data[offset : offset + length], data[offset + length :]
                if opcode == OP_CLOSE:
                    return struct.unpack("!H", payload[:2])[0], payload[2:].decode()
            try:
                chunk = self.sock.recv(1 << 20)
            except ConnectionResetError:
                return None
            if not chunk:
                return None
            data += chunk

    def close(self) -> None:
        self.sock.close()
