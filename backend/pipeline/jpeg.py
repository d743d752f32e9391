"""Validate and decode client JPEG frames, rejecting bad input before any pixel is decoded.

The header walk reads the frame size from the SOFn segment, so a small file that claims a
huge image (a pixel bomb) costs microseconds, not a full decode.

The declared size alone does not bound the decode cost: a progressive JPEG may carry any
number of scans, and libjpeg passes over every block of a component once per scan, so a
2 MB file of ~150k tiny scans takes minutes of CPU at 1920x1080 (a "scan bomb"). Before
decoding, a structure walk therefore visits every marker up to the end-of-image marker (in
C-speed searches through the entropy-coded data) and refuses files with more than
`FrameLimits.max_scans` scans or `max_segments` marker segments, or whose pixels times
scans exceed `max_pixel_scans` (`frame_too_complex`: the cost bound, whatever the declared
size), and markers libjpeg does not support (`corrupt_jpeg`). Bytes after the end-of-image
marker are ignored (cameras and browsers append some), and never reach the decoder.

EXIF orientation is ignored: the frame is decoded as stored, so the reported width and
height, the pixel limit and every coordinate refer to the same image the models see.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from backend.protocol.error_codes import ErrorCode

RejectCode = Literal[
    ErrorCode.EMPTY_FRAME,
    ErrorCode.NOT_JPEG,
    ErrorCode.CORRUPT_JPEG,
    ErrorCode.FRAME_TOO_LARGE,
    ErrorCode.FRAME_TOO_MANY_PIXELS,
    ErrorCode.FRAME_TOO_COMPLEX,
]

_SOI = b"\xff\xd8"
_EOI = b"\xff\xd9"
_SOS = 0xDA
_EOI_MARKER = 0xD9
# Markers that stand alone, without a length: TEM and the restart markers RST0-RST7.
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# Start-of-frame markers SOF0-SOF15, minus DHT (C4), JPG (C8) and DAC (CC).
_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Frame types libjpeg decodes: baseline, extended, progressive, lossless (Huffman, arithmetic).
_SOF_SUPPORTED = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC9, 0xCA, 0xCB})
# Segments with a length that libjpeg reads or skips: DHT, DAC, DQT, DNL, DRI, APP0-15, COM.
_TABLES_AND_METADATA = frozenset({0xC4, 0xCC, 0xDB, 0xDC, 0xDD, *range(0xE0, 0xF0), 0xFE})
# In entropy-coded data a marker is FF followed by anything but 00 (a stuffed FF byte), FF
# (fill) or a restart marker RST0-RST7 (part of the scan).
_NEXT_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")


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
    # Decoding costs about one pass over the image per scan. libjpeg writes 10 scans for a
    # progressive colour image, optimisers (mozjpeg, jpegtran) a few dozen at most.
    max_scans: int = 100
    # Marker segments of any kind (tables, metadata, scans): bounds the walk itself.
    max_segments: int = 1000
    # Pixels times scans: what a decode really costs (about 2 ms per million on one core of
    # the 2-core dev machine, measured in docs/security.md). Twice a 1080p progressive image.
    max_pixel_scans: int = 1920 * 1080 * 20


def decode_jpeg(data: bytes, limits: FrameLimits) -> NDArray[np.uint8]:
    """Decode one JPEG frame into a BGR (H, W, 3) image, or raise `FrameRejectedError`."""
    if not data:
        raise FrameRejectedError(
            ErrorCode.EMPTY_FRAME, "the frame is empty; send one JPEG image per message"
        )
    if len(data) > limits.max_bytes:
        raise FrameRejectedError(
            ErrorCode.FRAME_TOO_LARGE,
            f"the frame is {len(data):,} bytes, over the {limits.max_bytes:,} byte limit; "
            "lower the JPEG quality or the resolution",
        )
    if not data.startswith(_SOI):
        raise FrameRejectedError(
            ErrorCode.NOT_JPEG,
            "the frame does not start with the JPEG marker FFD8; send JPEG-encoded frames "
            "(e.g. canvas.toBlob(callback, 'image/jpeg'))",
        )
    width, height = jpeg_size(data)
    if width * height > limits.max_pixels:
        raise FrameRejectedError(
            ErrorCode.FRAME_TOO_MANY_PIXELS,
            f"the frame is {width}x{height} = {width * height:,} pixels, over the "
            f"{limits.max_pixels:,} pixel limit; downscale it before sending",
        )
    end, scans = _image_end(data, limits)
    if width * height * scans > limits.max_pixel_scans:
        raise _too_complex(
            f"decoding its {scans} scans at {width}x{height} would cost "
            f"{width * height * scans:,} pixel passes, over the {limits.max_pixel_scans:,} limit; "
            "send baseline JPEGs (one scan) or fewer pixels"
        )
    # Only the bytes up to EOI, and EXIF orientation ignored: see the module docstring.
    encoded = np.frombuffer(memoryview(data)[:end], dtype=np.uint8)
    image = cv2.imdecode(encoded, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise _corrupt("OpenCV could not decode it")
    if image.shape[:2] != (height, width):
        raise _corrupt(f"it decodes to {image.shape[1]}x{image.shape[0]}, not {width}x{height}")
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


def _image_end(data: bytes, limits: FrameLimits) -> tuple[int, int]:
    """The offset just past the end-of-image marker and the number of scans, after checking
    every marker before it.

    Raises `frame_too_complex` past `limits.max_scans` scans or `limits.max_segments`
    segments, and `corrupt_jpeg` for a marker libjpeg cannot decode or a missing end marker.
    The Python loop runs once per segment, so its cost is bounded by `max_segments`; the
    entropy-coded data after each scan header is searched by the regex engine.
    """
    pos, scans, segments, frame_seen = len(_SOI), 0, 0, False
    while True:
        if pos >= len(data):
            raise _corrupt("it does not end with the end-of-image marker FFD9 (truncated?)")
        if data[pos] != 0xFF:
            raise _corrupt(f"byte {pos} should start a marker segment")
        while pos < len(data) and data[pos] == 0xFF:  # fill bytes before the marker
            pos += 1
        if pos >= len(data):
            continue  # reported as truncated above
        marker = data[pos]
        pos += 1
        segments += 1
        if segments > limits.max_segments:
            raise _too_complex(f"it has over {limits.max_segments:,} marker segments")
        if marker == _EOI_MARKER:
            if scans == 0:
                raise _corrupt("it ends before any image data")
            return pos, scans
        if marker in _STANDALONE:
            continue
        if marker == _SOS:
            scans += 1
            if scans > limits.max_scans:
                raise _too_complex(
                    f"it has over {limits.max_scans} scans (progressive passes); each costs "
                    "a pass over the whole image"
                )
        elif marker in _SOF_SUPPORTED:
            if frame_seen:
                raise _corrupt("it has more than one frame header (SOFn)")
            frame_seen = True
        elif marker not in _TABLES_AND_METADATA:
            raise _corrupt(f"it has the marker FF{marker:02X}, which the decoder does not support")
        if pos + 2 > len(data):
            raise _corrupt("it does not end with the end-of-image marker FFD9 (truncated?)")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            raise _corrupt(f"the segment at byte {pos - 2} declares a length of {length}")
        pos += length
        if marker == _SOS:
            if not frame_seen:
                raise _corrupt("the image data starts before any frame header (SOFn)")
            found = _NEXT_MARKER.search(data, pos)
            if found is None:
                raise _corrupt("it does not end with the end-of-image marker FFD9 (truncated?)")
            pos = found.start()


def _too_complex(reason: str) -> FrameRejectedError:
    return FrameRejectedError(
        ErrorCode.FRAME_TOO_COMPLEX,
        f"the frame is too costly to decode: {reason}; send a baseline JPEG "
        "(e.g. canvas.toBlob(callback, 'image/jpeg')) or a standard progressive one",
    )


def _corrupt(reason: str) -> FrameRejectedError:
    return FrameRejectedError(
        ErrorCode.CORRUPT_JPEG,
        f"the frame is not a valid JPEG: {reason}; send a complete JPEG image",
    )
