"""A detection or pose model run in this process by onnxruntime: the `Detector` without a server.

It runs the ONNX file that Triton would serve, checked against the same contract, so the
pipeline can be tested and benchmarked end to end without Triton.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

from backend.inference.yolo_contract import YoloContract
from backend.model_prep.manifest import ModelEntry, load_manifest


class OnnxDetector:
    """One prepared YOLO model on onnxruntime's CPU provider; `infer` runs in `executor`."""

    def __init__(
        self,
        path: Path,
        entry: ModelEntry,
        *,
        executor: Executor | None = None,
        threads: int | None = None,
    ) -> None:
        """Load `path`; `executor` None runs inference in the event loop's default executor."""
        self.entry = entry
        self.contract = YoloContract.of(entry)
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._executor = executor

    @classmethod
    def prepared(
        cls,
        models_dir: Path,
        name: str,
        *,
        executor: Executor | None = None,
        threads: int | None = None,
    ) -> OnnxDetector:
        """The model `name` of the manifest in `models_dir`, as `cvstack models prepare` made it."""
        entry = load_manifest(models_dir).entry(name)
        return cls(models_dir / entry.file, entry, executor=executor, threads=threads)

    def run(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        """`infer`, synchronously, in the calling thread."""
        contract = self.contract
        (output,) = self.session.run(
            [contract.output_name],
            {contract.input_name: images.astype(contract.input_type, copy=False)},
        )
        return np.asarray(output[0], dtype=np.float32)

    async def infer(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        """Run one `[1, 3, S, S]` batch off the event loop; the output without the batch axis."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self.run, images)
