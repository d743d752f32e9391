"""Triton Python-backend model that runs an ONNX graph with onnxruntime (the `cpu` flavour).

Triton's dynamic batcher hands `execute` several requests at once; they are concatenated
along the batch axis and run as one onnxruntime call, then split back into one response per
request. That single run is what makes batching real on CPU.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils
from numpy.typing import NDArray


class TritonPythonModel:
    """Serves one ONNX model; its tensors and batch limit come from config.pbtxt."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        onnx_path = Path(args["model_repository"]) / args["model_version"] / params["onnx_file"]
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(
            str(onnx_path), options, providers=["CPUExecutionProvider"]
        )
        self.input_names = [tensor["name"] for tensor in config["input"]]
        self.output_names = [tensor["name"] for tensor in config["output"]]
        self.batched = int(config["max_batch_size"]) > 0
        self.logger = pb_utils.Logger

    def execute(self, requests: list[Any]) -> list[Any]:
        try:
            feeds = [self._inputs_of(request) for request in requests]
            if self.batched and self._concatenable(feeds):
                results = self._run_batched(feeds)
            else:
                results = [self.session.run(self.output_names, feed) for feed in feeds]
        except Exception as exc:  # one failed run must answer every request, not hang them
            self.logger.log_error(f"inference failed: {exc!r}")
            error = pb_utils.TritonError(f"inference failed: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        return [
            pb_utils.InferenceResponse(
                output_tensors=[
                    pb_utils.Tensor(name, np.ascontiguousarray(value))
                    for name, value in zip(self.output_names, outputs, strict=True)
                ]
            )
            for outputs in results
        ]

    def _inputs_of(self, request: Any) -> dict[str, NDArray[Any]]:
        return {
            name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
            for name in self.input_names
        }

    def _concatenable(self, feeds: list[dict[str, NDArray[Any]]]) -> bool:
        return all(len({feed[name].shape[1:] for feed in feeds}) == 1 for name in self.input_names)

    def _run_batched(self, feeds: list[dict[str, NDArray[Any]]]) -> list[list[NDArray[Any]]]:
        sizes = [feed[self.input_names[0]].shape[0] for feed in feeds]
        joined = {name: np.concatenate([feed[name] for feed in feeds]) for name in self.input_names}
        outputs = self.session.run(self.output_names, joined)
        bounds = np.cumsum(sizes)[:-1]
        per_output = [np.split(output, bounds) for output in outputs]
        return [[parts[i] for parts in per_output] for i in range(len(feeds))]

    def finalize(self) -> None:
        del self.session
