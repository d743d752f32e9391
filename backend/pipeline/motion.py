"""Dense optical flow between consecutive frames, downsampled to a small grid for clients.

Flow is computed on grayscale frames shrunk to `work_width` (speed), then scaled back so
every value is in original-frame pixels per frame.

A frame whose work image is under `MIN_FLOW_SIDE` pixels on a side (1x1, or a thin strip)
has no usable motion (DIS refuses it outright): `update` raises `MotionSkippedError`, a
`StageError` with code `frame_too_small`, so the client gets the reason in `errors` and the
log gets one line, not a traceback. An OpenCV failure in the flow itself is reported the
same way with code `motion_failed`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
from numpy.typing import NDArray

from backend.protocol.error_codes import ErrorCode, StageError

log = logging.getLogger(__name__)

FlowMethod = Literal["farneback", "dis"]

# calcOpticalFlowFarneback: pyr_scale, levels, winsize, iterations, poly_n, poly_sigma, flags
_FARNEBACK_PARAMS = (0.5, 3, 15, 3, 5, 1.2, 0)
# The smallest work image flow is computed on (DIS needs 12 px on both sides).
MIN_FLOW_SIDE = 16


class MotionSkippedError(StageError):
    """No flow for this frame; `code` says why (`frame_too_small`, `motion_failed`)."""


@dataclass(frozen=True)
class FlowField:
    """Motion between two frames on a grid of `step` x `step` original-pixel cells.

    `fx[r][c]`, `fy[r][c]` are the mean flow of the cell whose top-left corner is at
    (c * step, r * step), in original-frame pixels per frame, rounded to 2 decimals; the grid
    has ceil(orig_h / step) rows and ceil(orig_w / step) columns, so the last row and column
    may cover partial cells. `mean_magnitude` is the mean flow length over the whole frame.
    """

    fx: list[list[float]]
    fy: list[list[float]]
    step: int
    orig_w: int
    orig_h: int
    mean_magnitude: float


class MotionEstimator:
    """Optical flow of one stream, frame after frame.

    Not thread-safe: use one estimator per stream, updated with frames in order.
    """

    def __init__(self, method: FlowMethod = "dis", work_width: int = 320, step: int = 16) -> None:
        if method not in ("farneback", "dis"):
            raise ValueError(f"unknown optical flow method '{method}'; use 'dis' or 'farneback'")
        if work_width <= 0 or step <= 0:
            raise ValueError(f"work_width ({work_width}) and step ({step}) must be positive")
        self.method: FlowMethod = method
        self.work_width = work_width
        self.step = step
        self._dis = (
            cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
            if method == "dis"
            else None
        )
        self._previous: NDArray[np.uint8] | None = None
        self._previous_size: tuple[int, int] | None = None

    def reset(self) -> None:
        """Forget the previous frame; the next update returns None."""
        self._previous = None
        self._previous_size = None

    def update(self, frame_bgr: NDArray[np.uint8]) -> FlowField | None:
        """Flow from the previous frame to this one; None on the first frame or a size change."""
        orig_h, orig_w = frame_bgr.shape[:2]
        gray = self._work_image(frame_bgr)
        previous, previous_size = self._previous, self._previous_size
        self._previous, self._previous_size = gray, (orig_w, orig_h)
        work_h, work_w = gray.shape
        if min(work_w, work_h) < MIN_FLOW_SIDE:
            self.reset()
            log.warning(
                "motion skipped: %dx%d frame, %dx%d at work size", orig_w, orig_h, work_w, work_h
            )
            raise MotionSkippedError(
                ErrorCode.FRAME_TOO_SMALL,
                f"motion needs a frame of at least {MIN_FLOW_SIDE} pixels on each side at "
                f"{self.work_width} pixels wide; this one is {orig_w}x{orig_h}",
            )
        if previous is None or previous_size != (orig_w, orig_h):
            return None
        try:
            flow = self._flow(previous, gray)
        except cv2.error as error:
            self.reset()
            log.warning("motion failed on a %dx%d frame: %s", orig_w, orig_h, _one_line(error))
            raise MotionSkippedError(
                ErrorCode.MOTION_FAILED, "optical flow failed on this frame"
            ) from error
        flow *= np.array([orig_w / gray.shape[1], orig_h / gray.shape[0]], dtype=np.float32)
        rows, cols = math.ceil(orig_h / self.step), math.ceil(orig_w / self.step)
        grid = cv2.resize(flow, (cols, rows), interpolation=cv2.INTER_AREA).reshape(rows, cols, 2)
        grid = grid.astype(np.float64)  # so the rounded values print as short decimals
        magnitude = float(np.mean(np.hypot(flow[..., 0], flow[..., 1])))
        return FlowField(
            fx=np.round(grid[..., 0], 2).tolist(),
            fy=np.round(grid[..., 1], 2).tolist(),
            step=self.step,
            orig_w=orig_w,
            orig_h=orig_h,
            mean_magnitude=round(magnitude, 2),
        )

    def _work_image(self, frame_bgr: NDArray[np.uint8]) -> NDArray[np.uint8]:
        """Grayscale, shrunk to `work_width` keeping the aspect ratio (never enlarged)."""
        gray = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2GRAY)
        orig_h, orig_w = gray.shape
        if orig_w <= self.work_width:
            return np.asarray(gray, dtype=np.uint8)
        work_h = max(1, round(orig_h * self.work_width / orig_w))
        small = cv2.resize(gray, (self.work_width, work_h), interpolation=cv2.INTER_AREA)
        return np.asarray(small, dtype=np.uint8)

    def _flow(self, previous: NDArray[np.uint8], current: NDArray[np.uint8]) -> NDArray[np.float32]:
        """(H, W, 2) flow in work-image pixels."""
        # flow=None: allocate the output (OpenCV accepts it; its stubs do not say so)
        if self._dis is not None:
            flow = self._dis.calc(previous, current, None)  # type: ignore[call-overload]
        else:
            flow = cv2.calcOpticalFlowFarneback(  # type: ignore[call-overload]
                previous, current, None, *_FARNEBACK_PARAMS
            )
        return np.asarray(flow, dtype=np.float32)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
