"""The PP-OCR text detection, recognition and angle models that ship inside the rapidocr wheel.

They run offline (rapidocr's other models download at run time) and are Apache-2.0.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import shutil
from dataclasses import dataclass
from pathlib import Path

from backend.model_prep.manifest import ModelEntry, ModelSource, OutputFormat, Task, sha256_of
from backend.model_prep.onnx_inspect import load_onnx, onnx_metadata, tensor_specs

CHARACTER_KEY = "character"  # ONNX metadata key holding the recogniser's characters (CTC blank = 0)


@dataclass(frozen=True)
class OcrModel:
    """One bundled OCR model: its manifest name and contract, and where the wheel keeps it."""

    name: str
    task: Task
    output_format: OutputFormat
    path: Path
    source: ModelSource


_KINDS: tuple[tuple[str, Task, OutputFormat, str], ...] = (
    ("ocr_det", "ocr_det", "ocr_det_map", "det"),
    ("ocr_rec", "ocr_rec", "ocr_rec_ctc", "rec"),
    ("ocr_cls", "ocr_cls", "ocr_cls_logits", "cls"),
)


def bundled_ocr_models() -> tuple[OcrModel, ...]:
    """The det, rec and cls ONNX files inside the installed rapidocr wheel."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        raise FileNotFoundError(
            "the OCR models ship in the rapidocr wheel, which is not installed; run "
            "`make install`, or pass --no-ocr"
        )
    models_dir = Path(spec.origin).parent / "models"
    version = importlib.metadata.version("rapidocr")
    found = []
    for name, task, output_format, marker in _KINDS:
        matches = sorted(models_dir.glob(f"*_{marker}_*.onnx"))
        if len(matches) != 1:
            raise FileNotFoundError(
                f"expected one *_{marker}_*.onnx model in {models_dir} (rapidocr {version}), "
                f"found {len(matches)}; install the rapidocr version in pyproject.toml"
            )
        source = ModelSource("rapidocr", f"rapidocr {version}: {matches[0].name}", True)
        found.append(OcrModel(name, task, output_format, matches[0], source))
    return tuple(found)


def stage_ocr_model(model: OcrModel, target: Path) -> ModelEntry:
    """Copy a bundled model to `target` and describe it from its ONNX graph."""
    shutil.copyfile(model.path, target)
    onnx_model = load_onnx(target)
    inputs, outputs = tensor_specs(onnx_model, f"{model.name} model {model.path}")
    extra = {}
    if model.task == "ocr_rec":
        if CHARACTER_KEY not in onnx_metadata(onnx_model):
            raise ValueError(f"{model.path} has no '{CHARACTER_KEY}' metadata; reinstall rapidocr")
        extra["character_key"] = CHARACTER_KEY
    return ModelEntry(
        name=model.name,
        task=model.task,
        file=target.name,
        sha256=sha256_of(target),
        source=model.source,
        inputs=inputs,
        outputs=outputs,
        output_format=model.output_format,
        extra=extra,
    )
