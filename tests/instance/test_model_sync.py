"""Model sync against moto's S3: first boot, nothing changed, one file changed, tampering."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from backend.cli import main
from backend.instance.engines import JOBS_FILE
from backend.instance.model_sync import ModelSyncError, sync_models
from backend.model_prep.manifest import (
    MANIFEST_NAME,
    ModelEntry,
    load_manifest,
    sha256_of,
    verify_files,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

BUCKET = "cvstack-models"
SOURCE = f"s3://{BUCKET}/models/"


@pytest.fixture
def store(fake_aws: None) -> Iterator[S3Client]:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    yield s3


@pytest.fixture
def models(yolo_models_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the prepared models, free to change."""
    copy = tmp_path / "prepared"
    shutil.copytree(yolo_models_dir, copy)
    return copy


def upload(s3: S3Client, folder: Path, names: list[str] | None = None) -> None:
    for path in sorted(folder.iterdir()):
        if names is None or path.name in names:
            s3.upload_file(str(path), BUCKET, f"models/{path.name}")


def instance_models(folder: Path) -> list[ModelEntry]:
    """The models the instance runs: all but the page's own detector."""
    return [e for e in load_manifest(folder).models.values() if not e.runs_in_browser]


def change_model(folder: Path, name: str, payload: bytes) -> None:
    """Replace one model file and record its new sha256 in the manifest."""
    manifest_path = folder / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text())
    entry = manifest["models"][name]
    (folder / entry["file"]).write_bytes(payload)
    entry["sha256"] = sha256_of(folder / entry["file"])
    manifest_path.write_text(json.dumps(manifest))


def test_first_boot_then_unchanged_then_one_changed_file(
    store: S3Client, models: Path, tmp_path: Path
) -> None:
    upload(store, models)
    target = tmp_path / "state" / "models"
    files = sorted(e.file for e in instance_models(models))

    first = sync_models(store, SOURCE, target)
    assert sorted(first.downloaded) == files and first.swapped
    assert "browser_detect.onnx" not in files, "the page's detector is the front door's"
    assert not (target / "browser_detect.onnx").exists()
    verify_files(load_manifest(target), target, [e.name for e in instance_models(target)])
    assert target.is_symlink() and not Path(str(target.readlink())).is_absolute()

    again = sync_models(store, SOURCE, target)
    assert again.downloaded == [] and sorted(again.reused) == files and not again.swapped

    change_model(models, "yolo", b"new detector weights")
    upload(store, models, ["yolo.onnx", MANIFEST_NAME])
    third = sync_models(store, SOURCE, target)
    assert third.downloaded == ["yolo.onnx"] and third.swapped
    assert (target / "yolo.onnx").read_bytes() == b"new detector weights"
    verify_files(load_manifest(target), target, [e.name for e in instance_models(target)])
    assert [p.name for p in (target.parent / "models.d").iterdir()] == [third.version]


def test_a_checksum_mismatch_is_refused_and_the_current_models_stay(
    store: S3Client, models: Path, tmp_path: Path
) -> None:
    upload(store, models)
    target = tmp_path / "models"
    good = sync_models(store, SOURCE, target)
    change_model(models, "yolo_pose", b"pose v2")
    upload(store, models, [MANIFEST_NAME])
    store.put_object(Bucket=BUCKET, Key="models/yolo_pose.onnx", Body=b"tampered in transit")
    with pytest.raises(ModelSyncError, match=r"yolo_pose\.onnx has sha256 .* refusing"):
        sync_models(store, SOURCE, target)
    assert target.resolve().name == good.version
    verify_files(load_manifest(target), target, [e.name for e in instance_models(target)])
    assert not [p for p in (tmp_path / "models.d").iterdir() if p.name != good.version]


def test_a_file_missing_from_the_store_names_the_fix(
    store: S3Client, models: Path, tmp_path: Path
) -> None:
    upload(store, models)
    store.delete_object(Bucket=BUCKET, Key="models/ocr_rec.onnx")
    with pytest.raises(ModelSyncError, match=r"ocr_rec\.onnx is missing.*aws s3 sync"):
        sync_models(store, SOURCE, tmp_path / "models")
    assert not (tmp_path / "models").exists()


def test_a_manifest_pointing_outside_its_folder_is_refused(
    store: S3Client, models: Path, tmp_path: Path
) -> None:
    manifest = json.loads((models / MANIFEST_NAME).read_text())
    manifest["models"]["yolo"]["file"] = "../../etc/passwd"
    (models / MANIFEST_NAME).write_text(json.dumps(manifest))
    upload(store, models)
    with pytest.raises(ModelSyncError, match=r"must sit next to manifest\.json"):
        sync_models(store, SOURCE, tmp_path / "models")


def test_the_cli_syncs_and_reports(
    store: S3Client, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upload(store, models)
    target = tmp_path / "models"
    args = ["instance", "sync-models", "--source", SOURCE, "--target", str(target)]
    assert main([*args, "--region", "us-east-1"]) == 0
    assert "switched to version" in capsys.readouterr().out
    assert main([*args, "--region", "us-east-1"]) == 0
    assert "already current" in capsys.readouterr().out
    assert main(["instance", "sync-models", "--source", "http://x", "--target", "y"]) == 2
    assert "s3://bucket/prefix/" in capsys.readouterr().err


def test_the_cli_renders_the_repository_in_the_same_process(
    store: S3Client, models: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One container start at boot for the sync and the repository Triton serves."""
    upload(store, models)
    target, repository = tmp_path / "models", tmp_path / "repository"
    args = ["instance", "sync-models", "--source", SOURCE, "--target", str(target)]
    args += ["--region", "us-east-1", "--repository", str(repository)]
    assert main(args) == 2  # no flavour: refused before anything is synced
    assert "--flavour cpu|gpu" in capsys.readouterr().err and not target.exists()
    assert main([*args, "--flavour", "gpu"]) == 0
    assert "gpu repository at" in capsys.readouterr().out
    assert (repository / JOBS_FILE).is_file()
    served = {p.name for p in repository.iterdir() if p.is_dir()}
    assert served == {n for n, e in load_manifest(target).models.items() if e.served_by_triton}
