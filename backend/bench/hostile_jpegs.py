"""Expensive JPEGs built in code: progressive "scan bombs" and the costliest legal frames.

Mirrors tests/backend/pipeline/hostile_jpegs.py with OpenCV (its progressive script is
libjpeg's, 10 scans), so the bench needs no Pillow.
"""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

_SOS = b"\xff\xda"
_EOI = b"\xff\xd9"
FULL_HD = (1920, 1080)


def scan_bomb(width: int, height: int, scans: int) -> bytes:
    """A progressive JPEG of a flat image whose last scan (a 12-byte luma AC refinement) is
    repeated until the file has `scans` scans: libjpeg passes over every luma block again for
    each, so decoding cost grows with `scans` while the file grows by 12 bytes a scan."""
    data = _encode(np.full((height, width, 3), (120, 130, 140), np.uint8), quality=75)
    last_scan = data[data.rindex(_SOS) : -len(_EOI)]
    return data[: -len(_EOI)] + last_scan * (scans - data.count(_SOS)) + _EOI


def largest_scan_bomb(max_bytes: int) -> bytes:
    """The Full HD scan bomb with as many scans as fit in `max_bytes`."""
    small = scan_bomb(*FULL_HD, scans=11)
    scan_bytes = len(small) - len(scan_bomb(*FULL_HD, scans=10))
    return scan_bomb(*FULL_HD, scans=11 + (max_bytes - len(small)) // scan_bytes)


def heaviest_progressive(max_bytes: int, seed: int = 0) -> bytes:
    """Full HD noise, progressive, at the best quality that fits in `max_bytes`: the most
    entropy-coded data (the real decoding cost) a legal frame of libjpeg's script carries."""
    width, height = FULL_HD
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    for quality in range(95, 0, -5):
        data = _encode(noise, quality=quality)
        if len(data) <= max_bytes:
            return data
    raise ValueError(f"no Full HD progressive JPEG fits in {max_bytes} bytes")


def _encode(image: NDArray[np.uint8], *, quality: int) -> bytes:
    params = [cv2.IMWRITE_JPEG_PROGRESSIVE, 1, cv2.IMWRITE_JPEG_QUALITY, quality]
    ok, encoded = cv2.imencode(".jpg", image, params)
    if not ok:
        raise RuntimeError("OpenCV could not encode a progressive JPEG")
    return encoded.tobytes()
