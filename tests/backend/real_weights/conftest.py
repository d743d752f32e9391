"""Real pretrained weights served three ways, each by its own CPU Triton and backend.

- `dynamic-320`: `cvstack models prepare --detector yolov10n.pt --pose yolo11n-pose.pt` at
  320 px, as the other backend tests use (raw heads, dynamic batch);
- `static-640`: both exported at 640 px with a fixed batch of 1, given as `.onnx` files;
- `nms-free`: YOLOv10n's NMS-free head (`[N, 300, 6]`, dynamic batch) with the 320 px pose.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.model_prep.onnx_inspect import YoloTask
from backend.model_prep.prepare import prepare_models
from backend.model_prep.yolo_export import export_checkpoint
from backend.triton_server.local_server import LocalTritonServer
from tests.backend.real_weights.reference import (
    CONF_THRESHOLD,
    IOU_THRESHOLD,
    MAX_DETECTIONS,
    ReferenceModel,
)
from tests.backend.service.conftest import BackendServer, backend_settings
from tests.conftest import cpu_triton

VARIANTS = ("dynamic-320", "static-640", "nms-free")


@dataclass(frozen=True)
class Served:
    """One way of serving the real weights: the backend, and the reference for each model."""

    variant: str
    models_dir: Path
    backend: BackendServer
    detector: ReferenceModel
    pose: ReferenceModel


def _prepare_variant(variant: str, checkpoints: dict[YoloTask, Path], work: Path) -> Path:
    """Export the checkpoints as `variant` asks and prepare them like a user would."""
    config_dir = work / "ultralytics"
    if variant == "static-640":
        detector, pose = (
            export_checkpoint(
                checkpoints[task],
                imgsz=640,
                work_dir=_mkdir(work / task),
                config_dir=config_dir,
                dynamic=False,
            )
            for task in ("detect", "pose")
        )
    else:
        detector = export_checkpoint(
            checkpoints["detect"],
            imgsz=320,
            work_dir=_mkdir(work / "detect"),
            config_dir=config_dir,
            nms_free=True,
        )
        pose = checkpoints["pose"]
    models_dir = work / "models"
    prepare_models(models_dir, detector=detector, pose=pose, imgsz=320)
    return models_dir


@pytest.fixture(scope="session", params=VARIANTS)
def served(
    request: pytest.FixtureRequest,
    pretrained_checkpoints: dict[YoloTask, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Served]:
    variant: str = request.param
    with contextlib.ExitStack() as stack:
        if variant == "dynamic-320":  # the session's shared real-weight models and Triton
            models_dir: Path = request.getfixturevalue("real_models_dir")
            triton: LocalTritonServer = request.getfixturevalue("real_triton")
        else:
            work = tmp_path_factory.mktemp(f"real-{variant}")
            models_dir = _prepare_variant(variant, pretrained_checkpoints, work)
            triton = stack.enter_context(cpu_triton(models_dir, work))
        backend = _start_backend(models_dir, triton)
        stack.callback(backend.stop)
        yield Served(
            variant,
            models_dir,
            backend,
            ReferenceModel(models_dir / "yolo.onnx"),
            ReferenceModel(models_dir / "yolo_pose.onnx"),
        )


def _start_backend(models_dir: Path, triton: LocalTritonServer) -> BackendServer:
    settings = backend_settings(
        models_dir,
        triton.address,
        conf_threshold=CONF_THRESHOLD,
        iou_threshold=IOU_THRESHOLD,
        max_detections=MAX_DETECTIONS,
    )
    return BackendServer(settings).start()


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
