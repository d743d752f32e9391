"""What the pipeline needs from a detection or pose model, checked once when the backend starts.

Input size, input type and output layout come from the model's manifest entry. An entry the
pipeline cannot call or decode is refused at start-up with the fix, so no frame ever fails
for a configuration reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NoReturn

import numpy as np

from backend.model_prep.manifest import KeypointLayout, ManifestError, ModelEntry

BOX_VALUES = 4  # raw: cx, cy, w, h
END2END_VALUES = 6  # end-to-end: x1, y1, x2, y2, score, class
_INPUT_TYPES: dict[str, tuple[type[np.generic], str]] = {
    "TYPE_UINT8": (np.uint8, "UINT8"),
    "TYPE_FP32": (np.float32, "FP32"),
    "TYPE_FP16": (np.float16, "FP16"),
}
_FIX = (
    "run `cvstack models prepare` again (pass your own export with --detector or --pose), "
    "render the Triton repository from the new manifest, and restart"
)


class ModelContractError(ManifestError):
    """A model's manifest entry describes something the pipeline cannot call or decode."""


@dataclass(frozen=True)
class YoloContract:
    """How to call one detection or pose model on Triton and decode its output."""

    name: str
    input_name: str
    input_type: type[np.generic]  # what the `[1, 3, S, S]` tensor is cast to
    input_triton_type: str
    input_size: int
    output_name: str
    output_format: Literal["yolo_raw", "yolo_end2end"]
    num_classes: int
    keypoints: KeypointLayout | None

    @property
    def values_per_detection(self) -> int:
        """Channels of a raw output, or values per row of an end-to-end one."""
        points = self.keypoints.count * self.keypoints.values_per_point if self.keypoints else 0
        if self.output_format == "yolo_raw":
            return BOX_VALUES + self.num_classes + points
        return END2END_VALUES + points

    @classmethod
    def of(cls, entry: ModelEntry) -> YoloContract:
        """The contract of `entry`; raises `ModelContractError` naming what does not fit."""
        if entry.task not in ("detect", "pose"):
            _refuse(entry, "task", entry.task, "'detect' or 'pose'")
        if len(entry.inputs) != 1 or len(entry.outputs) != 1:
            _refuse(
                entry,
                "tensor count",
                f"{len(entry.inputs)} inputs and {len(entry.outputs)} outputs",
                "one image input and one output",
            )
        image, output = entry.inputs[0], entry.outputs[0]
        if image.dtype not in _INPUT_TYPES:
            _refuse(entry, f"input '{image.name}' type", image.dtype, " or ".join(_INPUT_TYPES))
        size = entry.input_size
        if size is None or size <= 0 or image.dims != (3, size, size):
            _refuse(
                entry,
                f"input '{image.name}' (size {size})",
                f"dims {list(image.dims)}",
                "square 3-channel images [3, size, size] with the size recorded",
            )
        if entry.output_format not in ("yolo_raw", "yolo_end2end"):
            _refuse(entry, "output format", entry.output_format, "'yolo_raw' or 'yolo_end2end'")
        if not entry.class_names:
            _refuse(entry, "class list", "empty", "at least one class name")
        if (entry.keypoints is not None) != (entry.task == "pose"):
            _refuse(
                entry,
                "keypoint layout",
                "present" if entry.keypoints else "missing",
                "one for a pose model and none for a detector",
            )
        contract = cls(
            name=entry.name,
            input_name=image.name,
            input_type=_INPUT_TYPES[image.dtype][0],
            input_triton_type=_INPUT_TYPES[image.dtype][1],
            input_size=size,
            output_name=output.name,
            output_format=entry.output_format,
            num_classes=len(entry.class_names),
            keypoints=entry.keypoints,
        )
        contract._check_output(entry)
        return contract

    def _check_output(self, entry: ModelEntry) -> None:
        dims = entry.outputs[0].dims
        axis = 0 if self.output_format == "yolo_raw" else 1
        if len(dims) == 2 and dims[axis] == self.values_per_detection:
            return
        points = " + keypoint values" if self.keypoints else ""
        expected = (
            f"[{self.values_per_detection}, anchors] (4 box values + {self.num_classes} "
            f"class scores{points})"
            if axis == 0
            else f"[detections, {self.values_per_detection}] (box, score, class{points})"
        )
        _refuse(entry, f"{self.output_format} output '{self.output_name}'", list(dims), expected)


def _refuse(entry: ModelEntry, what: str, found: object, expected: str) -> NoReturn:
    raise ModelContractError(
        f"model '{entry.name}' ({entry.file}): {what} is {found}, expected {expected}; {_FIX}"
    )
