"""The model manifest: what each prepared model is, where it came from and how to call it.

`manifest.json` sits next to the ONNX files. The Triton repository renderer and the backend
read it, so it is the single description of every model's contract.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1

Task = Literal["detect", "pose", "ocr_det", "ocr_rec", "ocr_cls"]
OutputFormat = Literal["yolo_raw", "yolo_end2end", "ocr_det_map", "ocr_rec_ctc", "ocr_cls_logits"]
SourceKind = Literal["official", "pretrained", "user", "random", "rapidocr"]

COCO_KEYPOINTS: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow",
    "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip
COCO_SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6), (5, 7),
    (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 3), (2, 4), (3, 5), (4, 6),
)  # fmt: skip


class ManifestError(ValueError):
    """The manifest or a file it names is missing or inconsistent."""


@dataclass(frozen=True)
class TensorSpec:
    """One input or output tensor, without the batch dimension. -1 marks a dynamic dim."""

    name: str
    dtype: str  # Triton data type, e.g. "TYPE_FP32"
    dims: tuple[int, ...]


@dataclass(frozen=True)
class KeypointLayout:
    """How keypoints are laid out in a pose model's output."""

    count: int
    values_per_point: int  # 3: x, y, visibility/confidence; 2: x, y
    names: tuple[str, ...]
    skeleton: tuple[tuple[int, int], ...]


@dataclass(frozen=True)
class ModelSource:
    """Where the weights came from; `meaningful` is False for random weights."""

    kind: SourceKind
    detail: str
    meaningful: bool


@dataclass(frozen=True)
class ModelEntry:
    """One prepared model file and its calling contract."""

    name: str
    task: Task
    file: str
    sha256: str
    source: ModelSource
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    output_format: OutputFormat
    input_size: int | None = None  # square input side in pixels (YOLO)
    batch: int | None = None  # static batch of the ONNX graph; None when dynamic
    class_names: tuple[str, ...] = ()
    keypoints: KeypointLayout | None = None
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def served_by_triton(self) -> bool:
        """Detection and pose run on Triton; OCR runs in the backend process, and the page's
        own detector (`extra["runs_in"] == "browser"`) in the browser."""
        return self.task in ("detect", "pose") and not self.runs_in_browser

    @property
    def runs_in_browser(self) -> bool:
        """The page's own detector (`browser_detect`): served by the front door, not the
        instance."""
        return self.extra.get("runs_in") == "browser"


@dataclass(frozen=True)
class Manifest:
    """All prepared models, keyed by their serving name (`yolo`, `yolo_pose`, ...)."""

    models: dict[str, ModelEntry]
    schema_version: int = SCHEMA_VERSION

    def entry(self, name: str) -> ModelEntry:
        try:
            return self.models[name]
        except KeyError:
            known = ", ".join(sorted(self.models)) or "none"
            raise ManifestError(
                f"model '{name}' is not in the manifest (prepared: {known}); "
                "run `cvstack models prepare`"
            ) from None


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def save_manifest(manifest: Manifest, models_dir: Path) -> Path:
    """Write `manifest.json` atomically next to the model files."""
    models_dir.mkdir(parents=True, exist_ok=True)
    target = models_dir / MANIFEST_NAME
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(asdict(manifest), indent=2, sort_keys=True) + "\n")
    tmp.replace(target)
    return target


def load_manifest(models_dir: Path) -> Manifest:
    """Read and validate `manifest.json`; every error says how to fix it."""
    path = models_dir / MANIFEST_NAME
    if not path.is_file():
        raise ManifestError(
            f"no model manifest at {path}; run `cvstack models prepare` "
            "(add --random-weights on a machine without internet)"
        )
    try:
        raw = json.loads(path.read_text())
        if raw.get("schema_version") != SCHEMA_VERSION:
            raise ManifestError(
                f"{path} has schema version {raw.get('schema_version')!r}, expected "
                f"{SCHEMA_VERSION}; run `cvstack models prepare` again"
            )
        models = {name: _entry_from_dict(data) for name, data in raw["models"].items()}
    except (KeyError, TypeError, json.JSONDecodeError) as exc:
        raise ManifestError(
            f"{path} is damaged ({exc!r}); run `cvstack models prepare` again"
        ) from exc
    return Manifest(models=models)


def verify_files(manifest: Manifest, models_dir: Path, names: list[str] | None = None) -> None:
    """Check that the named models' files exist and match their recorded SHA-256."""
    for name in names if names is not None else list(manifest.models):
        entry = manifest.entry(name)
        path = models_dir / entry.file
        if not path.is_file():
            raise ManifestError(
                f"model file {path} for '{name}' is missing; run `cvstack models prepare`"
            )
        if sha256_of(path) != entry.sha256:
            raise ManifestError(
                f"model file {path} does not match the sha256 in the manifest; "
                "run `cvstack models prepare` again"
            )


def _entry_from_dict(data: dict[str, Any]) -> ModelEntry:
    keypoints = data.get("keypoints")
    return ModelEntry(
        name=data["name"],
        task=data["task"],
        file=data["file"],
        sha256=data["sha256"],
        source=ModelSource(**data["source"]),
        inputs=tuple(_tensor(t) for t in data["inputs"]),
        outputs=tuple(_tensor(t) for t in data["outputs"]),
        output_format=data["output_format"],
        input_size=data.get("input_size"),
        batch=data.get("batch"),
        class_names=tuple(data.get("class_names", ())),
        keypoints=(
            KeypointLayout(
                count=keypoints["count"],
                values_per_point=keypoints["values_per_point"],
                names=tuple(keypoints["names"]),
                skeleton=tuple((a, b) for a, b in keypoints["skeleton"]),
            )
            if keypoints
            else None
        ),
        extra=dict(data.get("extra", {})),
    )


def _tensor(data: dict[str, Any]) -> TensorSpec:
    return TensorSpec(name=data["name"], dtype=data["dtype"], dims=tuple(data["dims"]))
