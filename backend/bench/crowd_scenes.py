"""Frames with about 1, 10 or 50 real people: mosaics of the people in the ultralytics photos.

The detector itself finds the people in bus.jpg and zidane.jpg; each scene tiles their crops
in a grid of tall cells, so the number of objects grows with the grid while every person
stays big enough for a nano model at 640 px to see. What the models then find in a scene is
measured, not assumed: the grid size is only the nominal count.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from numpy.typing import NDArray

from backend.bench.sample_frames import ultralytics_photos
from backend.inference.onnx_detector import OnnxDetector
from backend.model_prep.manifest import ModelEntry
from backend.pipeline.letterbox import Letterbox, letterbox
from backend.pipeline.yolo_decode import Detections, decode_yolo

PERSON = 0  # COCO class index
CROP_MIN_SCORE = 0.7
CELL_ASPECT = 0.4  # width / height of a grid cell: a standing person
FRAME_SIZE = (640, 480)  # width, height: a VGA camera frame

Image = NDArray[np.uint8]


@dataclass(frozen=True)
class ModelRun:
    """One model's input and raw output for one frame, as Triton would return it."""

    prepared: tuple[NDArray[np.uint8], Letterbox]  # the letterboxed tensor and its mapping
    output: NDArray[np.float32]  # without the batch axis


class OnnxYolo:
    """A prepared YOLO model run in-process with onnxruntime, on whole frames."""

    def __init__(self, models_dir: Path, entry: ModelEntry) -> None:
        self.model = OnnxDetector(models_dir / entry.file, entry)
        self.entry = entry
        self.size = self.model.contract.input_size

    def run(self, image: Image) -> ModelRun:
        tensor, box = letterbox(image, self.size)
        return ModelRun((tensor, box), self.model.run(tensor))

    def detect(self, image: Image) -> Detections:
        """The backend's decode with its default thresholds (NMS included)."""
        run = self.run(image)
        return decode_yolo(
            run.output,
            output_format=self.entry.output_format,
            num_classes=len(self.entry.class_names),
            letterbox=run.prepared[1],
            keypoints=self.entry.keypoints,
        )


def person_crops(detector: OnnxYolo) -> list[Image]:
    """The confident people of the photos, with a margin; those that hold fewest others first."""
    crops: list[tuple[int, float, Image]] = []
    for photo in ultralytics_photos():
        found = detector.detect(photo)
        height, width = photo.shape[:2]
        for box, score, cls in zip(found.boxes, found.scores, found.classes, strict=True):
            if cls != PERSON or score < CROP_MIN_SCORE:
                continue
            x1, y1, x2, y2 = (float(v) for v in box)
            margin_x, margin_y = (x2 - x1) * 0.1, (y2 - y1) * 0.05
            left, top = max(0, int(x1 - margin_x)), max(0, int(y1 - margin_y))
            right, bottom = min(width, int(x2 + margin_x)), min(height, int(y2 + margin_y))
            inside = np.sum(
                (found.boxes[:, 0] < right) & (found.boxes[:, 2] > left)
                & (found.boxes[:, 1] < bottom) & (found.boxes[:, 3] > top)
            )  # fmt: skip
            crops.append((int(inside), -float(score), photo[top:bottom, left:right]))
    if not crops:
        raise RuntimeError(
            "the detector found no person in the ultralytics photos: its weights are not "
            "trained ones, so there is no real scene to build"
        )
    return [crop for _, _, crop in sorted(crops, key=lambda item: item[:2])]


def crowd_scene(crops: list[Image], count: int, frame_size: tuple[int, int] = FRAME_SIZE) -> Image:
    """A frame of `count` person crops in a grid of tall cells, on the letterbox grey."""
    width, height = frame_size
    cols = max(1, round(math.sqrt(count * width / height / CELL_ASPECT)))
    rows = math.ceil(count / cols)
    cell_w, cell_h = width // cols, height // rows
    frame = np.full((height, width, 3), 114, np.uint8)
    for index in range(count):
        crop = crops[index % len(crops)]
        scale = min(cell_w / crop.shape[1], cell_h / crop.shape[0])
        w, h = max(1, int(crop.shape[1] * scale)), max(1, int(crop.shape[0] * scale))
        tile = cv2.resize(crop, (w, h), interpolation=cv2.INTER_AREA)
        row, col = divmod(index, cols)
        y, x = row * cell_h + (cell_h - h) // 2, col * cell_w + (cell_w - w) // 2
        frame[y : y + h, x : x + w] = tile
    return frame
