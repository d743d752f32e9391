"""Pull the prepared models from the S3 model store at boot: changed files only, verified, swapped
in atomically.

The store holds what `cvstack models prepare` writes (`manifest.json` and the ONNX files it
names), uploaded with `aws s3 sync .cvstack/models s3://<bucket>/models/`. The manifest's
sha256 is the truth: a local file whose hash matches is reused, anything else is downloaded
and must match before the new version replaces the current one. On the instance `models` is a
symlink to `models.d/<version>`; the swap is one `rename`, so the backend never sees a half
written folder, and a failed sync leaves the current version untouched.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from botocore.exceptions import BotoCoreError, ClientError

from backend.model_prep.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    load_manifest,
    sha256_of,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

VERSIONS_DIR = "models.d"


class ModelSyncError(RuntimeError):
    """The store or a downloaded file is not what the manifest promises; nothing was swapped."""


@dataclass(frozen=True)
class S3Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    @classmethod
    def parse(cls, uri: str) -> S3Location:
        parts = urlsplit(uri)
        if parts.scheme != "s3" or not parts.netloc:
            raise ModelSyncError(f"expected an s3://bucket/prefix/ URI, got {uri!r}")
        prefix = parts.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(parts.netloc, prefix)

    def key(self, name: str) -> str:
        return f"{self.prefix}{name}"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


@dataclass
class SyncReport:
    """What one sync did."""

    version: str
    path: Path
    downloaded: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    swapped: bool = False
    seconds: float = 0.0

    def summary(self) -> str:
        action = f"switched to version {self.version}" if self.swapped else "already current"
        return (
            f"models {action} at {self.path}: {len(self.downloaded)} downloaded "
            f"({', '.join(self.downloaded) or 'none'}), {len(self.reused)} unchanged, "
            f"{self.seconds:.2f} s"
        )


def sync_models(s3: S3Client, source: str, target: Path) -> SyncReport:
    """Make `target` (a symlink managed here) hold exactly the models the store's manifest names."""
    started = time.monotonic()
    location = S3Location.parse(source)
    versions = target.parent / VERSIONS_DIR
    if target.exists() and not target.is_symlink():
        raise ModelSyncError(
            f"{target} is a real folder; model sync manages it as a symlink into {versions}. "
            "Move it away and run the sync again"
        )
    versions.mkdir(parents=True, exist_ok=True)
    current = target.resolve() if target.is_symlink() else None
    with tempfile.TemporaryDirectory(prefix=".staging-", dir=versions) as tmp:
        staging = Path(tmp)
        _download(s3, location, MANIFEST_NAME, staging / MANIFEST_NAME)
        try:
            manifest = load_manifest(staging)
        except ManifestError as exc:
            raise ModelSyncError(f"the manifest in {location} is unusable: {exc}") from exc
        version = sha256_of(staging / MANIFEST_NAME)[:16]
        report = SyncReport(version=version, path=target)
        sizes = _listing(s3, location)
        for name, expected in _wanted_files(manifest).items():
            if name not in sizes:
                raise ModelSyncError(
                    f"{location}{name} is missing but the manifest names it; upload the whole "
                    f"folder: aws s3 sync .cvstack/models {location}"
                )
            local = current / name if current else None
            if local is not None and local.is_file() and sha256_of(local) == expected:
                os.link(local, staging / name)  # same file system: no copy, no download
                report.reused.append(name)
                continue
            _download(s3, location, name, staging / name)
            actual = sha256_of(staging / name)
            if actual != expected:
                raise ModelSyncError(
                    f"{location}{name} has sha256 {actual[:12]}..., the manifest says "
                    f"{expected[:12]}...; refusing it (re-upload the models folder with "
                    "`aws s3 sync`)"
                )
            report.downloaded.append(name)
        final = versions / version
        if current is not None and current == final.resolve() and not report.downloaded:
            report.seconds = time.monotonic() - started
            return report
        if final.exists():
            shutil.rmtree(final)
        staging.rename(final)
        final.chmod(0o755)  # mkdtemp made it 0700; the backend container reads it as non-root
        staging.mkdir()  # TemporaryDirectory removes its folder on exit
    _point(target, final)
    report.swapped = True
    for old in versions.iterdir():
        if old != final and not old.name.startswith(".staging-"):
            shutil.rmtree(old, ignore_errors=True)
    report.seconds = time.monotonic() - started
    return report


def _wanted_files(manifest: Manifest) -> dict[str, str]:
    """File name -> sha256 for every model the instance runs (not the page's own detector);
    names must be plain files beside the manifest."""
    wanted: dict[str, str] = {}
    for entry in manifest.models.values():
        if entry.runs_in_browser:
            continue
        path = PurePosixPath(entry.file)
        if len(path.parts) != 1 or entry.file in (".", "..", MANIFEST_NAME):
            raise ModelSyncError(
                f"the manifest names {entry.file!r} for '{entry.name}'; model files must sit "
                "next to manifest.json"
            )
        wanted[entry.file] = entry.sha256
    return wanted


def _listing(s3: S3Client, location: S3Location) -> dict[str, int]:
    sizes: dict[str, int] = {}
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(
            Bucket=location.bucket, Prefix=location.prefix
        ):
            for item in page.get("Contents", []):
                sizes[item["Key"][len(location.prefix) :]] = item["Size"]
    except (ClientError, BotoCoreError) as exc:
        raise ModelSyncError(f"cannot list {location}: {exc}") from exc
    return sizes


def _download(s3: S3Client, location: S3Location, name: str, path: Path) -> None:
    try:
        s3.download_file(location.bucket, location.key(name), str(path))
    except (ClientError, BotoCoreError) as exc:
        raise ModelSyncError(
            f"cannot download {location}{name}: {exc}; upload the models with "
            f"`aws s3 sync .cvstack/models {location}`"
        ) from exc


def _point(link: Path, target: Path) -> None:
    """Atomically make `link` a relative symlink to `target`."""
    temporary = link.with_name(f".{link.name}.new")
    temporary.unlink(missing_ok=True)
    temporary.symlink_to(os.path.relpath(target, link.parent))
    temporary.replace(link)
