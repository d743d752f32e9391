"""Errors a user can hit when starting the local Triton give one clear line and leave nothing."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from backend.model_prep.manifest import Manifest, ManifestError, load_manifest
from backend.paths import REPO_ROOT
from backend.triton_server.install import TritonInstall, TritonLaunchError
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from backend.triton_server.repository import render_repository


def test_port_in_use_is_named_and_nothing_is_started(
    cpu_repository: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repository, names = cpu_repository
    address = ServerAddress.on_free_ports()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", address.grpc_port))
        holder.listen()
        server = LocalTritonServer(repository, names, tmp_path, address)
        with pytest.raises(TritonLaunchError) as error:
            server.start()
    assert str(error.value) == (
        f"port {address.grpc_port} (grpc) on 127.0.0.1 is already in use; stop what holds it "
        "or choose another with --grpc-port"
    )
    assert server.pid is None and not server.running()


def test_model_without_a_rendered_config_is_refused(
    cpu_repository: tuple[Path, list[str]], tmp_path: Path
) -> None:
    repository, _ = cpu_repository
    server = LocalTritonServer(
        repository, ["missing_model"], tmp_path, ServerAddress.on_free_ports()
    )
    with pytest.raises(TritonLaunchError, match=r"model 'missing_model' has no .*config\.pbtxt"):
        server.start()
    assert server.pid is None


def test_missing_or_altered_model_file_is_reported_before_rendering(
    yolo_models_dir: Path, manifest: Manifest, tmp_path: Path
) -> None:
    models_dir = tmp_path / "models"
    models_dir.mkdir()
    for name in ("manifest.json", manifest.entry("yolo").file):
        (models_dir / name).write_bytes((yolo_models_dir / name).read_bytes())
    copied = load_manifest(models_dir)

    with pytest.raises(ManifestError, match=r"yolo_pose.onnx for 'yolo_pose' is missing"):
        render_repository(copied, models_dir, tmp_path / "repo", "cpu")

    (models_dir / "yolo.onnx").write_bytes(b"not the exported model")
    with pytest.raises(ManifestError, match="does not match the sha256"):
        render_repository(copied, models_dir, tmp_path / "repo", "cpu", names=["yolo"])


def test_unsupported_python_names_the_supported_versions() -> None:
    with pytest.raises(TritonLaunchError) as error:
        TritonInstall.locate((3, 7))
    message = str(error.value)
    assert message.startswith("Python 3.7 is not supported by the Triton Python backend")
    assert "3.11" in message and "recreate .venv" in message


def test_missing_wheel_says_how_to_install_it() -> None:
    hide_site_packages = (
        "import sys; sys.path = [p for p in sys.path if 'site-packages' not in p]; "
        "from backend.triton_server.install import TritonInstall, TritonLaunchError\n"
        "try:\n    TritonInstall.locate()\n"
        "except TritonLaunchError as exc:\n    print(exc)"
    )
    result = subprocess.run(
        [sys.executable, "-c", hide_site_packages],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == (
        "nvidia-pytriton is not installed, so there is no local tritonserver; "
        "run `make install` (or `pip install -e '.[triton-local]'`)"
    )


def test_serve_without_prepared_models_prints_one_error_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "backend.cli", "triton", "serve", "--models-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "CVSTACK_HOME": str(tmp_path / "home")},
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"error: no model manifest at {tmp_path}/manifest.json")
    assert "--random-weights" in lines[0]
