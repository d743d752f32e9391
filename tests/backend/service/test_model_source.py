"""`/ready` and every session say what the models are, and warn when their weights are random."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from backend.triton_server.local_server import LocalTritonServer
from tests.backend.service.conftest import BackendServer, Client, backend_settings
from tests.backend.service.model_manifests import with_source

OpenClient = Callable[..., tuple[Client, dict[str, Any]]]


def test_ready_and_the_session_name_random_weights_and_the_fix(
    backend: BackendServer, open_client: OpenClient
) -> None:
    models = httpx.get(f"{backend.url}/ready", timeout=10).json()["models"]
    detection, pose = models["detection"], models["pose"]
    assert (detection["name"], pose["name"]) == ("yolo", "yolo_pose")
    assert detection["source"] == {
        "kind": "random",
        "detail": "yolov8n.yaml with random weights",
        "meaningful": False,
    }
    assert pose["source"]["kind"] == "random" and pose["source"]["meaningful"] is False
    assert detection["classes"] == len(detection["class_names"]) == 80
    assert detection["class_names"][:3] == ["person", "bicycle", "car"]
    assert (pose["classes"], pose["class_names"]) == (1, ["person"])
    warning = models["warning"]
    assert "random weights in detection (yolo) and pose (yolo_pose)" in warning
    assert "meaningless" in warning and "`cvstack models prepare`" in warning

    client, first = open_client(backend.ws_url)
    assert first["type"] == "queue_status"
    announced = client.receive()  # the very next message, schema-validated
    assert announced == {"type": "models", "data": models}


def test_real_weights_carry_no_warning_and_no_server_paths(
    triton: LocalTritonServer, yolo_models_dir: Path, tmp_path: Path, open_client: OpenClient
) -> None:
    detail = "/srv/weights/best.pt (sha256 0123456789abcdef)"
    models_dir = with_source(yolo_models_dir, tmp_path / "models", "user", detail)
    backend = BackendServer(backend_settings(models_dir, triton.address)).start()
    try:
        models = httpx.get(f"{backend.url}/ready", timeout=10).json()["models"]
        assert models["warning"] is None
        assert models["detection"]["source"] == {
            "kind": "user",
            "detail": "<server path> (sha256 0123456789abcdef)",
            "meaningful": True,
        }
        client, _ = open_client(backend.ws_url)
        assert client.receive() == {"type": "models", "data": models}
        client.connection.close()
    finally:
        backend.stop()
