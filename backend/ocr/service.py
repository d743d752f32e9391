"""The process's one OCR engine, loaded in the background, and the pool every session reads on.

Loading the PP-OCR models takes seconds, so the backend starts serving while they load; a
session that asks for OCR meanwhile (or when the models are not prepared) is told why not.
"""

from __future__ import annotations

from concurrent.futures import Executor, Future, ThreadPoolExecutor
from pathlib import Path

from backend.model_prep.manifest import Manifest
from backend.ocr.engine import OcrEngine
from backend.ocr.scheduler import OcrScheduler, TextReader

OCR_MODELS = ("ocr_det", "ocr_rec")


class OcrService:
    """Hands each session an `OcrScheduler` on the shared pool once the engine is ready."""

    def __init__(self, pool: Executor, engine: Future[TextReader] | None) -> None:
        """`engine` None: no OCR models in this process. The service owns `pool`."""
        self.pool = pool
        self.engine = engine

    @classmethod
    def start(cls, manifest: Manifest, models_dir: Path, *, max_side: int) -> OcrService:
        """Start loading the prepared OCR models, if the manifest has them, on a new pool."""
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cvstack-ocr")
        if not all(name in manifest.models for name in OCR_MODELS):
            return cls(pool, None)

        def load() -> TextReader:
            return OcrEngine.from_manifest(models_dir, max_side=max_side)

        return cls(pool, pool.submit(load))

    def scheduler(self) -> OcrScheduler | None:
        """A new scheduler for one session; None while the engine loads or when it cannot."""
        engine = self.engine
        if engine is None or not engine.done() or engine.exception() is not None:
            return None
        return OcrScheduler(engine.result(), self.pool)

    def problem(self) -> str | None:
        """Why OCR cannot run right now, or None when it can."""
        if self.engine is None:
            return "OCR models are not prepared; run `cvstack models prepare`"
        if not self.engine.done():
            return "the OCR engine is still loading"
        error = self.engine.exception()
        return f"the OCR engine failed to load: {error}" if error else None

    def close(self) -> None:
        """Stop the pool: a job not yet started is dropped, a running one is waited for."""
        self.pool.shutdown(wait=True, cancel_futures=True)
