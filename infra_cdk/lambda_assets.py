"""Lambda code assets staged from the repository at synth time, without Docker.

Each asset holds `lambdas/__init__.py`, `lambdas/shared/`, the function's own folder and
any extra repository files it imports (start_server: the backend's session-token module,
so the Lambda and the backend share one implementation). Paths keep their repository
layout, so imports read the same in the Lambda runtime and in the tests.

The runtime has boto3 but not pydantic: the wheels pinned in `lambdas/requirements.txt` are
downloaded from PyPI for the functions' Python version and architecture (pydantic-core is
compiled) and unpacked into each asset. Downloads are kept under `.cvstack/cache/lambda-wheels`
(one folder per target and requirements file), so synth needs PyPI only the first time.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from platform import machine
from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_lambda as lambda_

REPO_ROOT = Path(__file__).resolve().parents[1]
RUNTIME = lambda_.Runtime.PYTHON_3_14
ARCHITECTURE = lambda_.Architecture.ARM_64
REQUIREMENTS = REPO_ROOT / "lambdas" / "requirements.txt"
WHEEL_CACHE = REPO_ROOT / ".cvstack" / "cache" / "lambda-wheels"
_PIP_DEADLINE_S = 300
_MACHINES = {"arm64": "aarch64", "x86_64": "x86_64"}  # Lambda's architecture names


@dataclass(frozen=True)
class WheelTarget:
    """The Python version and manylinux platform whose wheels an asset gets."""

    python_version: str  # "3.14"
    platform: str  # "manylinux2014_aarch64"

    @classmethod
    def of_lambda(cls, runtime: lambda_.Runtime, architecture: lambda_.Architecture) -> WheelTarget:
        """A Lambda runtime's (`python3.14`) on an architecture (`arm64`)."""
        wheel_machine = _MACHINES[architecture.name]
        return cls(runtime.name.removeprefix("python"), f"manylinux2014_{wheel_machine}")

    @classmethod
    def this_machine(cls) -> WheelTarget:
        """The running interpreter's, for tests that import a built asset here."""
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        return cls(version, f"manylinux2014_{machine()}")


LAMBDA_TARGET = WheelTarget.of_lambda(RUNTIME, ARCHITECTURE)


def pinned_wheels(target: WheelTarget, cache: Path = WHEEL_CACHE) -> list[Path]:
    """The wheels of `lambdas/requirements.txt` for `target`: cached, else downloaded once."""
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()[:16]
    folder = cache / f"python{target.python_version}-{target.platform}-{digest}"
    if not folder.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=".download-", dir=cache) as scratch:
            _download(target, Path(scratch) / "wheels")
            try:
                (Path(scratch) / "wheels").rename(folder)
            except OSError:
                if not folder.is_dir():  # else another synth finished the same download first
                    raise
    return sorted(folder.glob("*.whl"))


def _download(target: WheelTarget, dest: Path) -> None:
    command = [
        sys.executable, "-m", "pip", "download", "--requirement", str(REQUIREMENTS),
        "--dest", str(dest), "--no-deps", "--only-binary", ":all:", "--implementation", "cp",
        "--python-version", target.python_version, "--platform", target.platform,
        "--disable-pip-version-check", "--no-input", "--quiet",
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=_PIP_DEADLINE_S, check=False
        )
    except subprocess.TimeoutExpired:
        raise _download_failed(target, f"pip download took over {_PIP_DEADLINE_S} s") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        raise _download_failed(target, f"pip said: {lines[-1] if lines else 'nothing'}")


def _download_failed(target: WheelTarget, why: str) -> RuntimeError:
    return RuntimeError(
        f"could not download the Lambdas' dependencies ({REQUIREMENTS.relative_to(REPO_ROOT)}) "
        f"for Python {target.python_version} on {target.platform}: {why}. The first synth "
        f"needs PyPI; later ones take the wheels from {WHEEL_CACHE.relative_to(REPO_ROOT)}."
    )


def unpack_wheels(wheels: Sequence[Path], output_dir: Path) -> None:
    """Unpack the wheels side by side, as `pip install --target` would, less the console
    scripts it writes with this machine's interpreter in their first line."""
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            data = [name for name in archive.namelist() if name.split("/")[0].endswith(".data")]
            if data:
                raise RuntimeError(f"{wheel.name} has a .data folder, which a Lambda asset lacks")
            archive.extractall(output_dir)


@jsii.implements(cdk.ILocalBundling)
class RepositoryFiles:
    """Local bundling that copies chosen repository files into the asset folder, beside the
    pinned dependencies for `target`."""

    def __init__(self, files: Sequence[str], target: WheelTarget = LAMBDA_TARGET) -> None:
        missing = [f for f in files if not (REPO_ROOT / f).is_file()]
        if missing:
            raise FileNotFoundError(f"Lambda asset files missing from the repository: {missing}")
        self.files = tuple(files)
        self.target = target

    def try_bundle(self, output_dir: str, *_options: Any, **_kw_options: Any) -> bool:
        """Stage the asset; returning True tells CDK no Docker bundling is needed."""
        unpack_wheels(pinned_wheels(self.target), Path(output_dir))
        for relative in self.files:
            target = Path(output_dir) / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(REPO_ROOT / relative, target)
        return True


def asset_files(function: str, extra_files: Sequence[str] = ()) -> list[str]:
    """The repository-relative files one function's asset holds."""
    folders = [REPO_ROOT / "lambdas" / "shared", REPO_ROOT / "lambdas" / function]
    sources = [REPO_ROOT / "lambdas" / "__init__.py"]
    sources += [path for folder in folders for path in sorted(folder.glob("*.py"))]
    return [str(path.relative_to(REPO_ROOT)) for path in sources] + list(extra_files)


def lambda_code(function: str, extra_files: Sequence[str] = ()) -> lambda_.Code:
    """The asset for `lambdas/<function>`, hashed by its staged content."""
    return lambda_.Code.from_asset(
        str(REPO_ROOT / "lambdas" / function),
        asset_hash_type=cdk.AssetHashType.OUTPUT,
        bundling=cdk.BundlingOptions(
            image=RUNTIME.bundling_image, local=RepositoryFiles(asset_files(function, extra_files))
        ),
    )
