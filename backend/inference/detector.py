"""What the pipeline calls a detection or pose model through, wherever the model runs.

`TritonDetector` (backend/inference/triton_models.py) is the one the service uses;
`OnnxDetector` (backend/inference/onnx_detector.py) runs the same ONNX file in this process,
for tests and benchmarks without a server. Both check the model's contract when built.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from backend.inference.yolo_contract import YoloContract
from backend.model_prep.manifest import ModelEntry


class Detector(Protocol):
    """One YOLO detection or pose model: its manifest entry, its checked contract, `infer`."""

    @property
    def entry(self) -> ModelEntry:
        """The manifest entry: the model's name and class names."""
        ...

    @property
    def contract(self) -> YoloContract:
        """Input size and type, output layout: checked when the detector was built."""
        ...

    async def infer(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Run one `[1, 3, S, S]` batch; the first output without the batch axis.

        A failure the caller should report for this frame raises `StageError`.
        """
        ...
