"""Resize a frame into a square model input without distortion, and map results back.

This reproduces ultralytics' `LetterBox` (scale to fit, centred grey padding of 114), which
is how YOLO models are trained and validated, so detections keep their accuracy.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import ArrayLike, NDArray

PAD_VALUE = 114  # ultralytics' padding grey, before scaling to 0..1


@dataclass(frozen=True)
class Letterbox:
    """How a frame was placed into the square input: `input = original * scale + pad`."""

    scale: float
    pad_x: int
    pad_y: int
    size: int
    orig_w: int
    orig_h: int

    def points_to_original(self, xy: ArrayLike) -> NDArray[np.float32]:
        """Map (..., 2) input-pixel points to original-frame pixels, clipped to the frame."""
        points = np.asarray(xy, dtype=np.float32)
        if points.shape[-1:] != (2,):
            raise ValueError(f"points must have shape (..., 2), got {points.shape}")
        offset = np.array([self.pad_x, self.pad_y], dtype=np.float32)
        limit = np.array([self.orig_w, self.orig_h], dtype=np.float32)
        original = (points - offset) / np.float32(self.scale)
        return np.clip(original, 0, limit).astype(np.float32, copy=False)

    def boxes_to_original(self, boxes_xyxy: ArrayLike) -> NDArray[np.float32]:
        """Map (..., 4) x1,y1,x2,y2 input-pixel boxes to original-frame pixels, clipped."""
        boxes = np.asarray(boxes_xyxy, dtype=np.float32)
        if boxes.shape[-1:] != (4,):
            raise ValueError(f"boxes must have shape (..., 4), got {boxes.shape}")
        corners = self.points_to_original(boxes.reshape(*boxes.shape[:-1], 2, 2))
        return corners.reshape(boxes.shape)


def letterbox(image_bgr: NDArray[np.uint8], size: int) -> tuple[NDArray[np.uint8], Letterbox]:
    """A (1, 3, size, size) uint8 RGB tensor and the placement that produced it.

    The prepared models take raw pixels and scale them to 0..1 inside the graph.

    Frames are scaled up or down to fit `size` and padded evenly on both sides.
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.size == 0:
        raise ValueError(f"expected a non-empty BGR image (H, W, 3), got shape {image_bgr.shape}")
    if size <= 0:
        raise ValueError(f"the input size must be positive, got {size}")
    orig_h, orig_w = image_bgr.shape[:2]
    scale = min(size / orig_w, size / orig_h)
    new_w, new_h = max(1, round(orig_w * scale)), max(1, round(orig_h * scale))
    resized = (
        image_bgr
        if (new_w, new_h) == (orig_w, orig_h)
        else cv2.resize(image_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    )
    left = round((size - new_w) / 2 - 0.1)  # ultralytics puts an odd padding pixel last
    top = round((size - new_h) / 2 - 0.1)
    tensor = np.full((1, 3, size, size), PAD_VALUE, dtype=np.uint8)
    content = tensor[0, :, top : top + new_h, left : left + new_w]
    for channel, plane in enumerate(reversed(cv2.split(resized))):  # BGR planes -> RGB
        content[channel] = plane
    return tensor, Letterbox(scale, left, top, size, orig_w, orig_h)
