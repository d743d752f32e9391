"""A real tritonserver on CPU: health, metadata, exact outputs and real dynamic batching."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc.aio as grpcclient
from numpy.typing import NDArray

from backend.model_prep.manifest import Manifest
from backend.triton_server.local_server import LocalTritonServer
from backend.triton_server.metrics import read_model_counters

MODELS = ["yolo", "yolo_pose"]


async def infer(
    client: grpcclient.InferenceServerClient, model: str, images: NDArray[np.uint8]
) -> NDArray[np.float32]:
    request = grpcclient.InferInput("images", list(images.shape), "UINT8")
    request.set_data_from_numpy(images)
    result = await client.infer(
        model, [request], outputs=[grpcclient.InferRequestedOutput("output0")]
    )
    output: NDArray[np.float32] = result.as_numpy("output0")
    return output


def random_images(batch: int, seed: int) -> NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, (batch, 3, 320, 320), dtype=np.uint8)


def test_server_and_models_report_ready_with_the_manifest_metadata(
    triton: LocalTritonServer, manifest: Manifest
) -> None:
    async def check() -> dict[str, Any]:
        client = grpcclient.InferenceServerClient(triton.address.grpc_url)
        try:
            assert await client.is_server_live()
            assert await client.is_server_ready()
            metadata = {}
            for model in MODELS:
                assert await client.is_model_ready(model)
                metadata[model] = await client.get_model_metadata(model, as_json=True)
            return metadata
        finally:
            await client.close()

    metadata = asyncio.run(check())
    for model in MODELS:
        entry = manifest.entry(model)
        assert metadata[model]["inputs"] == [
            {"name": "images", "datatype": "UINT8", "shape": ["-1", "3", "320", "320"]}
        ]
        (output,) = metadata[model]["outputs"]
        assert output["name"] == "output0"
        assert output["shape"] == ["-1", *(str(d) for d in entry.outputs[0].dims)]


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("batch", [1, 3])
def test_triton_output_equals_onnxruntime_in_process(
    triton: LocalTritonServer, yolo_models_dir: Path, manifest: Manifest, model: str, batch: int
) -> None:
    images = random_images(batch, seed=batch)
    session = ort.InferenceSession(
        str(yolo_models_dir / manifest.entry(model).file), providers=["CPUExecutionProvider"]
    )
    (expected,) = session.run(["output0"], {"images": images})

    async def run() -> NDArray[np.float32]:
        client = grpcclient.InferenceServerClient(triton.address.grpc_url)
        try:
            return await infer(client, model, images)
        finally:
            await client.close()

    actual = asyncio.run(run())
    assert actual.shape == expected.shape == (batch, *manifest.entry(model).outputs[0].dims)
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-3)


def test_concurrent_requests_are_batched_into_fewer_executions(triton: LocalTritonServer) -> None:
    requests = 32
    before = read_model_counters(triton.address.metrics_url, "yolo")

    async def burst() -> list[NDArray[np.float32]]:
        client = grpcclient.InferenceServerClient(triton.address.grpc_url)
        try:
            return await asyncio.gather(
                *(infer(client, "yolo", random_images(1, seed=i)) for i in range(requests))
            )
        finally:
            await client.close()

    outputs = asyncio.run(burst())
    # Triton's metrics endpoint can trail the last responses under load: read until it caught up.
    deadline = time.monotonic() + 10
    delta = read_model_counters(triton.address.metrics_url, "yolo").since(before)
    while delta.requests < requests and time.monotonic() < deadline:
        time.sleep(0.2)
        delta = read_model_counters(triton.address.metrics_url, "yolo").since(before)

    assert all(output.shape == (1, 84, 2100) for output in outputs)
    assert delta.requests == requests
    assert delta.inferences == requests
    assert delta.executions < requests, "Triton ran every request alone: no dynamic batching"
    assert delta.average_batch > 1.0
