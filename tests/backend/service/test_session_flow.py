"""A client streams real JPEG frames through the real backend, Triton and models."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import tritonclient.grpc.aio as grpcclient
from prometheus_client.parser import text_string_to_metric_families

from backend.model_prep.manifest import load_manifest
from backend.pipeline.letterbox import letterbox
from backend.pipeline.yolo_decode import decode_yolo
from backend.protocol import PROTOCOL_VERSION
from backend.triton_server.local_server import LocalTritonServer
from tests.backend.service.conftest import BackendServer, Client, backend_settings, jpeg_frame

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]


def test_first_message_announces_protocol_and_session(
    backend: BackendServer, open_client: OpenClient
) -> None:
    _, first = open_client(backend.ws_url)
    assert first["type"] == "queue_status"
    assert first["state"] == "waiting"
    assert first["protocol_version"] == PROTOCOL_VERSION
    assert len(first["session_id"]) == 12


def test_streamed_frames_get_results_from_every_stage(
    backend: BackendServer, open_client: OpenClient
) -> None:
    client, _ = open_client(backend.ws_url)
    running = client.start(use_yolo=True, use_yolo_pose=True, use_motion=True)
    assert running["active_sessions"] == 1

    results = []
    for seed in range(4):
        client.connection.send(jpeg_frame(seed=seed))
        results.append(client.receive_type("inference")["data"])

    assert [r["frame_idx"] for r in results] == [0, 1, 2, 3]
    for result in results:
        assert (result["width"], result["height"]) == (320, 240)
        assert result["errors"] == {}
        assert result["latency_ms"] > 0
        assert {"decode", "yolo", "pose"} <= set(result["stage_ms"])
        assert result["ocr"] is None
    assert results[0]["flow"] is None, "motion needs two frames"
    flow = results[1]["flow"]
    assert (flow["orig_w"], flow["orig_h"], flow["step"]) == (320, 240, 16)
    assert results[-1]["fps"] > 0


@pytest.fixture
def real_backend(real_models_dir: Path, real_triton: LocalTritonServer) -> Iterator[BackendServer]:
    """A backend serving the pretrained weights (`tests/conftest.py`), which find things."""
    server = BackendServer(backend_settings(real_models_dir, real_triton.address)).start()
    yield server
    server.stop()


@pytest.mark.real_weights
def test_detections_equal_the_model_run_directly_and_map_to_frame_pixels(
    real_backend: BackendServer,
    open_client: OpenClient,
    real_triton: LocalTritonServer,
    real_models_dir: Path,
) -> None:
    manifest = load_manifest(real_models_dir)
    frame = jpeg_frame(width=480, height=270)
    image = np.asarray(cv2.imdecode(np.frombuffer(frame, np.uint8), cv2.IMREAD_COLOR), np.uint8)
    tensor, box = letterbox(image, 320)

    async def direct() -> Any:
        client = grpcclient.InferenceServerClient(real_triton.address.grpc_url)
        try:
            request = grpcclient.InferInput("images", list(tensor.shape), "UINT8")
            request.set_data_from_numpy(tensor)
            return (await client.infer("yolo", [request])).as_numpy("output0")[0]
        finally:
            await client.close()

    entry = manifest.entry("yolo")
    expected = decode_yolo(
        asyncio.run(direct()),
        output_format=entry.output_format,
        num_classes=len(entry.class_names),
        letterbox=box,
    )

    client, _ = open_client(real_backend.ws_url)
    client.start(use_yolo=True)
    client.connection.send(frame)
    yolo = client.receive_type("inference")["data"]["yolo"]

    assert len(expected) > 0, "the pretrained detector finds the people on the bus photo"
    assert "person" in [entry.class_names[c] for c in expected.classes]
    assert yolo is not None
    assert np.allclose(yolo["boxes"], expected.boxes, atol=0.06)
    assert yolo["classes"] == expected.classes.tolist()
    assert yolo["labels"] == [entry.class_names[c] for c in expected.classes]
    boxes = np.asarray(yolo["boxes"])
    assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= 480).all()
    assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= 270).all()
    assert len(yolo["track_ids"]) == len(yolo["boxes"]) == len(yolo["velocities"])


def test_stop_finishes_then_start_resumes(backend: BackendServer, open_client: OpenClient) -> None:
    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True)
    client.connection.send(jpeg_frame())
    client.receive_type("inference")

    client.send_json({"type": "stop"})
    assert client.receive_type("queue_status")["state"] == "finished"
    client.connection.send(jpeg_frame())
    assert client.receive_type("error")["code"] == "not_started"

    client.send_json({"type": "start"})
    assert client.receive_type("queue_status")["state"] == "running"
    client.connection.send(jpeg_frame())
    assert client.receive_type("inference")["data"]["frame_idx"] == 0


def test_health_ready_and_metrics(backend: BackendServer, open_client: OpenClient) -> None:
    import httpx  # noqa: PLC0415

    assert httpx.get(f"{backend.url}/health").json() == {"status": "ok"}
    ready = httpx.get(f"{backend.url}/ready")
    assert ready.status_code == 200
    assert ready.json()["triton"] == {"server": True, "yolo": True, "yolo_pose": True}

    client, _ = open_client(backend.ws_url)
    client.start(use_yolo=True, use_yolo_pose=True)
    client.connection.send(jpeg_frame())
    client.receive_type("inference")
    metrics = httpx.get(f"{backend.url}/metrics").text
    assert 'cvstack_frames_total{stage="yolo"} 1.0' in metrics
    for stage in ("decode", "yolo", "pose"):  # every stage the frame ran is in the histogram
        assert f'cvstack_stage_latency_seconds_count{{stage="{stage}"}} 1.0' in metrics, stage
    assert "cvstack_frame_latency_seconds_count 1.0" in metrics
    assert "cvstack_active_sessions 1.0" in metrics
    labels = {
        label
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        for label in sample.labels
    }
    assert labels <= {"stage", "kind", "model", "le"}, "no per-session labels"
