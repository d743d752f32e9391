"""JPEG frames for benchmarks: the photos shipped in the ultralytics wheel, or drawn scenes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray


def sample_frames(width: int = 320, height: int = 240, count: int = 16) -> list[bytes]:
    """`count` JPEGs that differ a little from one another, like a moving camera."""
    base = ultralytics_photos() or [_drawn_scene()]
    frames = []
    for index in range(count):
        image = base[index % len(base)]
        shifted = np.roll(image, (index * 3) % image.shape[1], axis=1)
        ok, encoded = cv2.imencode(".jpg", cv2.resize(shifted, (width, height)))
        if not ok:
            raise RuntimeError("OpenCV could not encode a benchmark frame")
        frames.append(encoded.tobytes())
    return frames


def ultralytics_photos() -> list[NDArray[np.uint8]]:
    """bus.jpg and zidane.jpg from the installed ultralytics package; none without it."""
    spec = importlib.util.find_spec("ultralytics")
    if spec is None or spec.origin is None:
        return []
    assets = Path(spec.origin).parent / "assets"
    images = [cv2.imread(str(assets / name)) for name in ("bus.jpg", "zidane.jpg")]
    return [np.asarray(image, np.uint8) for image in images if image is not None]


def _drawn_scene() -> NDArray[np.uint8]:
    rng = np.random.default_rng(7)
    image = np.full((480, 640, 3), 200, np.uint8)
    for _ in range(12):
        x, y = (int(v) for v in rng.integers(0, 560, 2))
        color = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(image, (x, y % 400), (x + 80, y % 400 + 80), color, -1)
    return image
