"""Prepared models under another recorded source: the same ONNX files, a rewritten manifest."""

from __future__ import annotations

import json
from pathlib import Path

from backend.model_prep.manifest import MANIFEST_NAME


def with_source(models_dir: Path, target: Path, kind: str, detail: str) -> Path:
    """`target` with links to `models_dir`'s files and a manifest whose detection and pose
    models have real weights of `kind` described by `detail` (the files are not checked)."""
    target.mkdir(parents=True)
    for path in models_dir.iterdir():
        if path.name != MANIFEST_NAME:
            (target / path.name).symlink_to(path)
    manifest = json.loads((models_dir / MANIFEST_NAME).read_text())
    for entry in manifest["models"].values():
        if entry["task"] in ("detect", "pose"):
            entry["source"] = {"kind": kind, "detail": detail, "meaningful": True}
    (target / MANIFEST_NAME).write_text(json.dumps(manifest))
    return target
