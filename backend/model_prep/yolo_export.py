"""Export YOLOv8n detection and pose models to ONNX with ultralytics (an optional tool).

ultralytics (AGPL-3.0) is imported only here and only while exporting. Exports use a dynamic
batch by default so Triton can batch requests; everything happens inside a scratch folder
because ultralytics writes its output next to the weights (or into the working directory).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path

from backend.model_prep.onnx_inspect import YoloTask

OFFICIAL_WEIGHTS: dict[YoloTask, str] = {"detect": "yolov8n.pt", "pose": "yolov8n-pose.pt"}
OFFICIAL_LICENCE = "AGPL-3.0, Ultralytics"
RANDOM_CONFIGS: dict[YoloTask, str] = {"detect": "yolov8n.yaml", "pose": "yolov8n-pose.yaml"}
USER_FLAGS: dict[YoloTask, str] = {"detect": "--detector", "pose": "--pose"}

_DOWNLOAD_HOST = ("github.com", 443)  # ultralytics serves its weights from GitHub releases
_CONNECT_TIMEOUT_S = 3.0


class ExportError(RuntimeError):
    """A YOLO model could not be exported to ONNX; the message says what to do."""


class WeightsUnavailableError(ExportError):
    """Pretrained weights could not be downloaded; `reason` says which, in a few words."""

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def export_official(task: YoloTask, *, imgsz: int, work_dir: Path, config_dir: Path) -> Path:
    """Download (once, cached under `config_dir`) and export the official pretrained weights."""
    cached = config_dir / "weights" / OFFICIAL_WEIGHTS[task]
    if not cached.is_file():
        _download(cached, task, config_dir)
    local = work_dir / cached.name
    shutil.copyfile(cached, local)
    return _export(str(local), imgsz=imgsz, work_dir=work_dir, config_dir=config_dir)


def export_checkpoint(
    checkpoint: Path,
    *,
    imgsz: int,
    work_dir: Path,
    config_dir: Path,
    dynamic: bool = True,
    nms_free: bool = False,
) -> Path:
    """Export an ultralytics `.pt` checkpoint (copied first, so nothing lands beside it).

    `dynamic=False` fixes the batch at 1; `nms_free` exports a YOLOv10-style head's one-to-one
    branch (`[N, 300, 6]` detections, no NMS needed) where the model has one.
    """
    local = work_dir / checkpoint.name
    shutil.copyfile(checkpoint, local)
    options: dict[str, object] = {"dynamic": dynamic}
    if nms_free:
        options["nms"] = False  # ultralytics: None = raw head (default), False = NMS-free head
    return _export(
        str(local), imgsz=imgsz, work_dir=work_dir, config_dir=config_dir, options=options
    )


def export_random(task: YoloTask, *, imgsz: int, work_dir: Path, config_dir: Path) -> Path:
    """Build the architecture with random weights and export it: right shapes, no detections."""
    return _export(
        RANDOM_CONFIGS[task], imgsz=imgsz, work_dir=work_dir, config_dir=config_dir, offline=True
    )


def github_reachable() -> bool:
    """Whether a TCP connection to GitHub opens within a few seconds."""
    try:
        socket.create_connection(_DOWNLOAD_HOST, timeout=_CONNECT_TIMEOUT_S).close()
    except OSError:
        return False
    return True


def _download(target: Path, task: YoloTask, config_dir: Path) -> None:
    failure = _weights_unavailable(task, target.name)
    if not github_reachable():  # ultralytics would retry for minutes behind a silent firewall
        raise failure
    target.parent.mkdir(parents=True, exist_ok=True)
    with _ultralytics_env(config_dir, offline=False):
        try:
            from ultralytics.utils.downloads import attempt_download_asset  # noqa: PLC0415

            attempt_download_asset(str(target))
        except ImportError as exc:
            raise _not_installed() from exc
        except Exception as exc:  # ultralytics raises ConnectionError, requests errors, ...
            raise failure from exc
    if not target.is_file():
        raise failure


def _weights_unavailable(task: YoloTask, name: str) -> WeightsUnavailableError:
    reason = f"could not download the official {task} weights {name} from GitHub (no internet?)"
    return WeightsUnavailableError(
        f"{reason}; pass your own weights with {USER_FLAGS[task]} PATH.pt|PATH.onnx, or use "
        "--random-weights (right shapes and timing, meaningless detections)",
        reason=reason,
    )


def _not_installed() -> ExportError:
    return ExportError(
        "ultralytics is needed to export YOLO models but is not installed; run "
        "`make install` (installs the models extra and ultralytics), or pass ONNX files "
        "with --detector and --pose"
    )


def _export(
    weights: str,
    *,
    imgsz: int,
    work_dir: Path,
    config_dir: Path,
    offline: bool = False,
    options: dict[str, object] | None = None,
) -> Path:
    with _ultralytics_env(config_dir, offline), contextlib.chdir(work_dir):
        try:
            from ultralytics.models import YOLO  # noqa: PLC0415
            from ultralytics.utils import LOGGER  # noqa: PLC0415
        except ImportError as exc:
            raise _not_installed() from exc
        arguments = {"format": "onnx", "dynamic": True, "simplify": False, "imgsz": imgsz}
        level = LOGGER.level
        LOGGER.setLevel(logging.WARNING)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # torch's exporter notices
                exported = YOLO(weights).export(**(arguments | (options or {})))
        except Exception as exc:  # torch, onnx and ultralytics errors share no base class
            raise ExportError(f"ultralytics could not export {weights} to ONNX: {exc}") from exc
        finally:
            LOGGER.setLevel(level)
        return Path(str(exported)).resolve()


@contextlib.contextmanager
def _ultralytics_env(config_dir: Path, offline: bool) -> Iterator[None]:
    """Keep ultralytics quiet, from installing packages and from writing outside `config_dir`."""
    config_dir.mkdir(parents=True, exist_ok=True)
    values = {"YOLO_AUTOINSTALL": "0", "YOLO_CONFIG_DIR": str(config_dir), "YOLO_VERBOSE": "0"}
    if offline:
        values["YOLO_OFFLINE"] = "1"
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
