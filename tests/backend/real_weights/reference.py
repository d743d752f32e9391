"""The models' own pre- and post-processing, written plainly: what the backend must agree with.

Deliberately independent of `backend.pipeline`: onnxruntime runs the same ONNX file the backend
serves through Triton, and ultralytics' letterbox, box decoding and class-aware greedy NMS are
spelled out here again.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

CONF_THRESHOLD = 0.25  # the backend's defaults, passed to it explicitly by the tests
IOU_THRESHOLD = 0.45
MAX_DETECTIONS = 100


@dataclass(frozen=True)
class Found:
    """One detection in original-frame pixels; `keypoints` is (17, 3) for pose models."""

    box: tuple[float, float, float, float]
    score: float
    class_id: int
    keypoints: NDArray[np.float32] | None = None


class ReferenceModel:
    """One YOLO ONNX file under onnxruntime, decoded the way ultralytics does."""

    def __init__(self, path: Path) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        meta = self.session.get_modelmeta().custom_metadata_map
        self.size = int(ast.literal_eval(meta["imgsz"])[0])  # ultralytics' export metadata
        self.end2end = (
            self.session.get_outputs()[0].shape[1] == 300 or meta.get("end2end") == "True"
        )
        self.kpt_shape = tuple(ast.literal_eval(meta["kpt_shape"])) if "kpt_shape" in meta else None

    def __call__(self, image_bgr: NDArray[np.uint8]) -> list[Found]:
        tensor, scale, (left, top) = _letterbox(image_bgr, self.size)
        (output,) = self.session.run(None, {self.session.get_inputs()[0].name: tensor})
        rows = output[0]
        if self.end2end:
            rows = rows[rows[:, 4] > CONF_THRESHOLD]
            rows = rows[np.argsort(-rows[:, 4], kind="stable")][:MAX_DETECTIONS]
            boxes, scores, classes, extra = rows[:, :4], rows[:, 4], rows[:, 5], rows[:, 6:]
        else:
            boxes, scores, classes, extra = _raw(rows, 0 if self.kpt_shape is None else 51)
        height, width = image_bgr.shape[:2]
        found = []
        for box, score, class_id, more in zip(boxes, scores, classes, extra, strict=True):
            x1, x2 = ((box[[0, 2]] - left) / scale).clip(0, width)
            y1, y2 = ((box[[1, 3]] - top) / scale).clip(0, height)
            keypoints = None
            if self.kpt_shape is not None:
                keypoints = more.reshape(self.kpt_shape).astype(np.float32).copy()
                keypoints[:, 0] = ((keypoints[:, 0] - left) / scale).clip(0, width)
                keypoints[:, 1] = ((keypoints[:, 1] - top) / scale).clip(0, height)
            box_xyxy = (float(x1), float(y1), float(x2), float(y2))
            found.append(Found(box_xyxy, float(score), int(class_id), keypoints))
        return found


def _letterbox(
    image: NDArray[np.uint8], size: int
) -> tuple[NDArray[np.uint8], float, tuple[int, int]]:
    """ultralytics' LetterBox: fit, resize bilinearly, pad with grey 114 (odd pixel last)."""
    height, width = image.shape[:2]
    scale = min(size / height, size / width)
    new_w, new_h = round(width * scale), round(height * scale)
    pad_w, pad_h = (size - new_w) / 2, (size - new_h) / 2
    resized: NDArray[Any] = image
    if (new_w, new_h) != (width, height):
        resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = round(pad_h - 0.1), round(pad_h + 0.1)
    left, right = round(pad_w - 0.1), round(pad_w + 0.1)
    padded = cv2.copyMakeBorder(
        resized, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(114, 114, 114)
    )
    rgb_chw = padded[:, :, ::-1].transpose(2, 0, 1)[None]  # BGR -> RGB, HWC -> NCHW
    # the prepared models take uint8 pixels and scale them to 0..1 inside the graph
    return np.ascontiguousarray(rgb_chw, dtype=np.uint8), scale, (left, top)


def _raw(
    rows: NDArray[np.float32], keypoint_values: int
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.int64], NDArray[np.float32]]:
    """[4 + classes + keypoints, anchors] -> boxes above the threshold after class-aware NMS."""
    anchors = rows.T
    class_scores = anchors[:, 4 : anchors.shape[1] - keypoint_values]
    classes = class_scores.argmax(axis=1)
    scores = class_scores.max(axis=1)
    keep = scores > CONF_THRESHOLD
    anchors, classes, scores = anchors[keep], classes[keep], scores[keep]
    centre, half = anchors[:, :2], anchors[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    kept: list[int] = []
    for index in np.argsort(-scores, kind="stable"):
        if len(kept) == MAX_DETECTIONS:
            break
        if all(
            classes[other] != classes[index]
            or iou(boxes[other].tolist(), boxes[index].tolist()) <= IOU_THRESHOLD
            for other in kept
        ):
            kept.append(int(index))
    extra = anchors[:, anchors.shape[1] - keypoint_values :]
    return boxes[kept], scores[kept], classes[kept], extra[kept]


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    inter = max(0.0, min(ax2, bx2) - max(ax1, bx1)) * max(0.0, min(ay2, by2) - max(ay1, by1))
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0
