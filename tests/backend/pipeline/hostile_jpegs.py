"""Hostile but well-formed JPEGs, written byte by byte: shared by the unit and service tests."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

_SOS = b"\xff\xda"
_EOI = b"\xff\xd9"


def progressive_jpeg(width: int, height: int, seed: int = 0) -> bytes:
    """A standard progressive colour JPEG from PIL (libjpeg's 10-scan script)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", progressive=True, quality=80)
    return buffer.getvalue()


def scan_bomb(width: int, height: int, scans: int) -> bytes:
    """A progressive JPEG of a flat image whose last scan is repeated until it has `scans`.

    The last scan of libjpeg's script is a 12-byte luma AC refinement; libjpeg accepts each
    repeat (with a warning) and passes over every luma block again for each, so decoding time
    grows with `scans` while the file grows by only 12 bytes a scan.
    """
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (120, 130, 140)).save(
        buffer, "JPEG", progressive=True, quality=75
    )
    data = buffer.getvalue()
    assert data.endswith(_EOI)
    last_scan = data[data.rindex(_SOS) : -len(_EOI)]
    script_scans = data.count(_SOS)  # a flat image: no FF DA inside the entropy data
    return data[: -len(_EOI)] + last_scan * (scans - script_scans) + _EOI


def exif_rotated_jpeg(width: int, height: int, orientation: int = 6) -> bytes:
    """A `width` x `height` JPEG whose EXIF says to rotate it (6: 90 degrees clockwise)."""
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[: height // 2] = (255, 0, 0)  # top half red, so a rotation would show
    exif = Image.Exif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", exif=exif, quality=90)
    return buffer.getvalue()
