"""Where cvstack keeps its files: the repository's own folders and a writable state folder."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TRITON_DIR = REPO_ROOT / "triton"
FRONTEND_DIR = REPO_ROOT / "frontend"  # the static browser page, served at `/`


def state_dir() -> Path:
    """Writable folder for prepared models and rendered repositories (`CVSTACK_HOME`)."""
    return Path(os.environ.get("CVSTACK_HOME", REPO_ROOT / ".cvstack")).resolve()


def default_models_dir() -> Path:
    """Folder holding the prepared ONNX models and `manifest.json`."""
    return state_dir() / "models"
