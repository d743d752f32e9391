"""Validate and decode client JPEG frames, rejecting bad input before any pixel is decoded.

The header walk reads the frame size from the SOFn segment, so a small file that claims a
huge image (a pixel bomb) costs microseconds, not a full decode.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

RejectCode = Literal[
    "empty_frame", "not_jpeg", "corrupt_jpeg", "frame_too_large", "frame_too_many_pixels"
]

_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_SOS = 0xDA
_EOI_MARKER = 0xD9
# Markers that stand alone, without a length: TEM and the restart markers RST0-RST7.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# Start-of-frame markers SOF0-SOF15, minus DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


class FrameRejectedError(ValueError):  # the protocol's name for a refused frame
    """A client frame that cannot be used; `code` names why for the client."""

    def __init__(self, code: RejectCode, message: str) -> None:
        super().__init__(message)
        self.code: RejectCode = code


@dataclass(frozen=True)
class FrameLimits:
    """The largest frame accepted, in encoded bytes and in decoded pixels."""

    max_bytes: int = 2_000_000
    max_pixels: int = 1920 * 1080


def decode_jpeg(data: bytes, limits: FrameLimits) -> NDArray[np.uint8]:
    """Decode one JPEG frame into a BGR (H, W, 3) image, or raise `FrameRejectedError`."""
    if not data:
        raise FrameRejectedError(
            "empty_frame", "the frame is empty; send one JPEG image per message"
        )
    if len(data) > limits.max_bytes:
        raise FrameRejectedError(
            "frame_too_large",
            f"the frame is {len(data):,} bytes, over the {limits.max_bytes:,} byte limit; "
            "lower the JPEG quality or the resolution",
        )
    if not data.startswith(_SOI):
        raise FrameRejectedError(
            "not_jpeg",
            "the frame does not start with the JPEG marker FFD8; send JPEG-encoded frames "
            "(e.g. canvas.toBlob(callback, 'image/jpeg'))",
        )
    width, height = jpeg_size(data)
    if width * height > limits.max_pixels:
        raise FrameRejectedError(
            "frame_too_many_pixels",
            f"the frame is {width}x{height} = {width * height:,} pixels, over the "
            f"{limits.max_pixels:,} pixel limit; downscale it before sending",
        )
    if not data.rstrip(b"\x00").endswith(_EOI):
        raise _corrupt("it does not end with the end-of-image marker FFD9 (truncated?)")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise _corrupt("OpenCV could not decode it")
    return np.asarray(image, dtype=np.uint8)


def jpeg_size(data: bytes) -> tuple[int, int]:
    """Width and height from the SOFn header, found by walking the marker segments."""
    pos = len(_SOI)
    while pos < len(data):
        if data[pos] != 0xFF:
            raise _corrupt(f"byte {pos} should start a marker segment")
        while pos < len(data) and data[pos] == 0xFF:  # a marker may be preceded by fill bytes
            pos += 1
        if pos >= len(data):
            break
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (_SOS, _EOI_MARKER):
            raise _corrupt("the image data starts before any frame header (SOFn)")
        if pos + 2 > len(data):
            break
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2 or pos + length > len(data):
            break
        if marker in _SOF:
            if length < 8:
                raise _corrupt("its frame header is too short")
            height = int.from_bytes(data[pos + 3 : pos + 5], "big")
            width = int.from_bytes(data[pos + 5 : pos + 7], "big")
            if width == 0 or height == 0:
                raise _corrupt(f"its frame header declares a {width}x{height} image")
            return width, height
        pos += length
    raise _corrupt("its headers end before the frame header (SOFn)")


def _corrupt(reason: str) -> FrameRejectedError:
    return FrameRejectedError(
        "corrupt_jpeg", f"the frame is not a valid JPEG: {reason}; send a complete JPEG image"
    )
