"""Text detection and recognition on one image with rapidocr's PP-OCR ONNX models, on the CPU.

The models are the ones `cvstack models prepare` copies from the rapidocr wheel (see
`backend.model_prep.ocr_models`); rapidocr does the pre- and post-processing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from rapidocr import RapidOCR
from rapidocr.utils.output import RapidOCROutput

from backend.model_prep.manifest import load_manifest, verify_files
from backend.model_prep.ocr_models import bundled_ocr_models

Box = tuple[float, float, float, float]
Region = tuple[int, int, int, int]


@dataclass(frozen=True)
class OcrText:
    """One line of text: its axis-aligned box (x1, y1, x2, y2) in the image's pixels."""

    box: Box
    text: str
    score: float

    def to_json(self) -> dict[str, Any]:
        """The wire form, `{"box": [x1, y1, x2, y2], "text": ..., "score": ...}`."""
        return {
            "box": [round(v, 1) for v in self.box],
            "text": self.text,
            "score": round(self.score, 3),
        }


class OcrEngine:
    """Finds and reads text lines in BGR images.

    `read` is synchronous and takes ~0.1-0.4 s on a CPU core, so call it from a worker
    thread, never from the event loop. Calls are serialised by a lock: one engine reads one
    image at a time, whichever thread calls it.
    """

    def __init__(
        self,
        *,
        det_model: Path,
        rec_model: Path,
        cls_model: Path | None,
        max_side: int = 640,
        threads: int = 1,
    ) -> None:
        """Load the models; `cls_model=None` skips the 180-degree angle classifier."""
        if max_side < 32:
            raise ValueError(f"max_side must be at least 32 px, got {max_side}")
        if threads < 1:
            raise ValueError(f"threads must be at least 1, got {threads}")
        params: dict[str, Any] = {
            "Global.use_cls": cls_model is not None,
            "Global.text_score": 0.0,  # `read` filters by its own min_score
            "Global.log_level": "error",  # not "warning": every image without text warns
            "Det.model_path": str(det_model),
            "Det.limit_side_len": max_side,
            "Det.limit_type": "max",  # shrink big images, never upscale small ones
            "Rec.model_path": str(rec_model),
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        if cls_model is not None:
            params["Cls.model_path"] = str(cls_model)
        self._ocr = RapidOCR(params=params)
        self._lock = threading.Lock()

    @classmethod
    def from_manifest(
        cls,
        models_dir: Path,
        *,
        max_side: int = 640,
        use_angle_classifier: bool = False,
        threads: int = 1,
    ) -> OcrEngine:
        """The prepared models named `ocr_det`, `ocr_rec` (and `ocr_cls`) in the manifest."""
        names = ["ocr_det", "ocr_rec"] + (["ocr_cls"] if use_angle_classifier else [])
        manifest = load_manifest(models_dir)
        paths = {name: models_dir / manifest.entry(name).file for name in names}
        verify_files(manifest, models_dir, names)
        return cls(
            det_model=paths["ocr_det"],
            rec_model=paths["ocr_rec"],
            cls_model=paths.get("ocr_cls"),
            max_side=max_side,
            threads=threads,
        )

    @classmethod
    def bundled(
        cls, *, max_side: int = 640, use_angle_classifier: bool = False, threads: int = 1
    ) -> OcrEngine:
        """The models inside the installed rapidocr wheel, for use without a models folder."""
        paths = {model.name: model.path for model in bundled_ocr_models()}
        return cls(
            det_model=paths["ocr_det"],
            rec_model=paths["ocr_rec"],
            cls_model=paths["ocr_cls"] if use_angle_classifier else None,
            max_side=max_side,
            threads=threads,
        )

    def read(
        self,
        image_bgr: NDArray[np.uint8],
        region: Region | None = None,
        min_score: float = 0.5,
    ) -> list[OcrText]:
        """Text lines scoring at least `min_score`, top to bottom, in full-image pixels.

        `region` (x1, y1, x2, y2) limits the search to that part of the image; it is clipped
        to the image, and an empty region gives no text.
        """
        if image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
            raise ValueError(f"expected an HxWx3 BGR image, got shape {image_bgr.shape}")
        height, width = image_bgr.shape[:2]
        x1, y1, x2, y2 = region if region is not None else (0, 0, width, height)
        x1, x2 = max(0, x1), min(width, x2)
        y1, y2 = max(0, y1), min(height, y2)
        if x2 <= x1 or y2 <= y1:
            return []
        with self._lock:
            output = self._ocr(np.ascontiguousarray(image_bgr[y1:y2, x1:x2]))
        # Without text, `output` is an empty RapidOCROutput (other types need det or rec off).
        if not isinstance(output, RapidOCROutput) or output.boxes is None:
            return []
        lines = zip(output.boxes, output.txts or (), output.scores or (), strict=True)
        return [
            OcrText(box=_bounding_box(quad, x1, y1), text=text, score=float(score))
            for quad, text, score in lines
            if score >= min_score
        ]


def _bounding_box(quad: NDArray[np.float32], dx: int, dy: int) -> Box:
    """The axis-aligned box around a 4x2 quad, shifted by (dx, dy)."""
    xs, ys = quad[:, 0], quad[:, 1]
    return (
        float(xs.min()) + dx,
        float(ys.min()) + dy,
        float(xs.max()) + dx,
        float(ys.max()) + dy,
    )
