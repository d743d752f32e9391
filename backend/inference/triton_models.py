"""The process-wide async gRPC client to Triton and the models the pipeline calls on it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpcclient
from numpy.typing import NDArray
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE, KeepAliveOptions
from tritonclient.utils import InferenceServerException

from backend.inference.yolo_contract import YoloContract
from backend.model_prep.manifest import ModelEntry
from backend.protocol.error_codes import ErrorCode, StageError

# gRPC waits longer after each failed connect (1 s, 1.6 s, 2.6 s ... up to 120 s). The backend
# starts beside Triton at boot (ami/compose.yaml) and reaches it only once Triton listens: with
# those defaults its `/ready` saw a Triton that had been ready for seconds. Try again every
# 0.1-1 s instead, on loopback.
RECONNECT_BACKOFF_MS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


def channel_args() -> list[tuple[str, Any]]:
    """tritonclient's own channel options (message sizes, keepalive) plus the short backoff."""
    keepalive = KeepAliveOptions()
    return [
        ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
        ("grpc.keepalive_time_ms", keepalive.keepalive_time_ms),
        ("grpc.keepalive_timeout_ms", keepalive.keepalive_timeout_ms),
        ("grpc.keepalive_permit_without_calls", keepalive.keepalive_permit_without_calls),
        ("grpc.http2.max_pings_without_data", keepalive.http2_max_pings_without_data),
        *RECONNECT_BACKOFF_MS,
    ]


class TritonModels:
    """One shared `tritonclient.grpc.aio` client; per-call timeouts; errors as `StageError`.

    Every model's contract is checked when this is built (at start-up): a model the pipeline
    cannot call or decode raises `ModelContractError` here, never on a frame. gRPC reconnects
    by itself, so a restarted Triton is picked up without any action here.
    """

    def __init__(self, url: str, timeout_s: float, models: dict[str, ModelEntry]) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self.models = models
        self.contracts = {name: YoloContract.of(entry) for name, entry in models.items()}
        self._client = grpcclient.InferenceServerClient(url, channel_args=channel_args())

    async def infer(self, model: str, images: NDArray[Any]) -> NDArray[np.float32]:
        """Run one `[1, 3, S, S]` batch; returns the first output without the batch axis."""
        contract = self.contracts[model]
        request = grpcclient.InferInput(
            contract.input_name, list(images.shape), contract.input_triton_type
        )
        request.set_data_from_numpy(images.astype(contract.input_type, copy=False))
        output_name = contract.output_name
        try:
            result = await self._client.infer(
                model,
                [request],
                outputs=[grpcclient.InferRequestedOutput(output_name)],
                client_timeout=self.timeout_s,
            )
        except InferenceServerException as exc:
            raise _stage_error(model, exc) from None
        output = result.as_numpy(output_name)
        if output is None:
            raise StageError(ErrorCode.TRITON_ERROR, f"{model}: Triton returned no '{output_name}'")
        first: NDArray[np.float32] = output[0].astype(np.float32, copy=False)
        return first

    def detector(self, model: str) -> TritonDetector:
        """`model` as the pipeline's `Detector`."""
        return TritonDetector(self, model)

    async def readiness(self, timeout_s: float = 1.0) -> dict[str, bool]:
        """Whether the server and each model answer ready, within `timeout_s`."""
        names = ["server", *self.models]
        checks = [self._client.is_server_ready(client_timeout=timeout_s)] + [
            self._client.is_model_ready(name, client_timeout=timeout_s) for name in self.models
        ]
        results = await asyncio.gather(*checks, return_exceptions=True)
        return {name: result is True for name, result in zip(names, results, strict=True)}

    async def close(self) -> None:
        await self._client.close()


@dataclass(frozen=True)
class TritonDetector:
    """One model served by Triton, called through the shared client: a `Detector`."""

    models: TritonModels
    name: str

    @property
    def entry(self) -> ModelEntry:
        return self.models.models[self.name]

    @property
    def contract(self) -> YoloContract:
        return self.models.contracts[self.name]

    async def infer(self, images: NDArray[np.uint8]) -> NDArray[np.float32]:
        return await self.models.infer(self.name, images)


def _stage_error(model: str, exc: InferenceServerException) -> StageError:
    status = str(exc.status() or "")
    if "DEADLINE_EXCEEDED" in status:
        return StageError(ErrorCode.TRITON_TIMEOUT, f"{model}: Triton did not answer in time")
    if "UNAVAILABLE" in status:
        return StageError(ErrorCode.TRITON_UNAVAILABLE, f"{model}: Triton is not reachable")
    return StageError(ErrorCode.TRITON_ERROR, f"{model}: {exc.message()}")
