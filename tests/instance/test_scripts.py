"""The image's shell scripts: shellcheck, the TLS setup, and the engine cache of build-engines.sh
run for real with stand-ins for the two GPU tools (nvidia-smi, trtexec)."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import pytest

from backend.instance.engines import write_gpu_repository
from backend.model_prep.manifest import Manifest
from backend.paths import REPO_ROOT
from tests.instance.conftest import make_self_signed, require_tool

SCRIPTS = sorted((REPO_ROOT / "ami").rglob("*.sh"))
BUILD_ENGINES = REPO_ROOT / "ami" / "scripts" / "build-engines.sh"


def test_shellcheck_passes_on_every_script() -> None:
    assert len(SCRIPTS) >= 4
    result = subprocess.run(
        [require_tool("shellcheck"), "--external-sources", *map(str, SCRIPTS)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stdout
    for script in SCRIPTS:
        assert "set -euo pipefail" in script.read_text(), script
        assert os.access(script, os.X_OK), f"{script} is not executable"


def test_self_signed_certificate_is_made_once_and_verifies(tmp_path: Path) -> None:
    certificate = make_self_signed(tmp_path / "tls")
    first = certificate.read_bytes()
    assert (tmp_path / "tls" / "privkey.pem").resolve().stat().st_mode & 0o077 == 0
    make_self_signed(tmp_path / "tls")  # every boot runs it: the key must not change
    assert certificate.read_bytes() == first
    context = ssl.create_default_context(cafile=str(certificate))
    assert context.cert_store_stats()["x509_ca"] == 1


def test_letsencrypt_without_a_domain_keeps_the_self_signed_certificate(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "ami" / "scripts" / "tls-setup.sh"), "letsencrypt"],
        env={**os.environ, "CVSTACK_TLS_DIR": str(tmp_path), "CVSTACK_DOMAIN_NAME": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0 and "keeping the self-signed" in result.stdout


def _fake_tools(root: Path, gpu: str, trt: str, fail: bool = False) -> dict[str, str]:
    """nvidia-smi prints `gpu`; trtexec writes a plan and logs its call; libnvinfer is `trt`."""
    bin_dir, lib_dir = root / "bin", root / f"lib-{trt}"
    bin_dir.mkdir(exist_ok=True)
    lib_dir.mkdir(exist_ok=True)
    (lib_dir / f"libnvinfer.so.{trt}").write_bytes(b"")
    (bin_dir / "nvidia-smi").write_text(f"#!/bin/sh\necho '{gpu}'\n")
    (bin_dir / "trtexec").write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{root}/trtexec-calls"\n'
        + ("exit 3\n" if fail else "")
        + 'for a in "$@"; do case "$a" in --saveEngine=*) echo plan > "${a#--saveEngine=}";; '
        "esac; done\n"
    )
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "TRTEXEC": str(bin_dir / "trtexec"),
        "TRT_LIB_DIR": str(lib_dir),
    }


def _build(repository: Path, cache: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(BUILD_ENGINES), str(repository), str(cache)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def _calls(root: Path) -> int:
    log = root / "trtexec-calls"
    return len(log.read_text().splitlines()) if log.exists() else 0


def test_engines_are_built_once_per_gpu_and_tensorrt_version(
    manifest: Manifest, yolo_models_dir: Path, tmp_path: Path
) -> None:
    repository, cache = tmp_path / "repository", tmp_path / "engines"
    jobs = write_gpu_repository(manifest, yolo_models_dir, repository)
    assert "--minShapes=images:1x3x320x320" in jobs[0] and "--maxShapes=images:16x" in jobs[0]

    t4 = _fake_tools(tmp_path, "Tesla T4", "10.5.0")
    first = _build(repository, cache, t4)
    assert first.returncode == 0, first.stderr
    assert _calls(tmp_path) == len(jobs)
    for job in jobs:
        model, plan_id = job.split()[:2]
        plan = cache / "Tesla_T4" / "trt-10.5.0" / f"{plan_id}.plan"
        assert plan.read_text() == "plan\n"
        assert (repository / model / "1" / "model.plan").samefile(plan)

    second = _build(repository, cache, t4)  # every later boot
    assert second.returncode == 0 and "cached plan" in second.stdout
    assert _calls(tmp_path) == len(jobs)

    a10g = _fake_tools(tmp_path, "NVIDIA A10G", "10.5.0")  # another instance type
    assert _build(repository, cache, a10g).returncode == 0
    assert _calls(tmp_path) == 2 * len(jobs)
    newer_trt = _fake_tools(tmp_path, "Tesla T4", "10.8.0")  # another Triton image
    assert _build(repository, cache, newer_trt).returncode == 0
    assert _calls(tmp_path) == 3 * len(jobs)


def test_a_failed_build_fails_loudly_and_caches_nothing(
    manifest: Manifest, yolo_models_dir: Path, tmp_path: Path
) -> None:
    repository, cache = tmp_path / "repository", tmp_path / "engines"
    write_gpu_repository(manifest, yolo_models_dir, repository)
    result = _build(repository, cache, _fake_tools(tmp_path, "Tesla T4", "10.5.0", fail=True))
    assert result.returncode != 0 and "trtexec failed for yolo" in result.stderr
    assert not list(cache.rglob("*.plan"))


@pytest.mark.parametrize("missing", ["jobs", "tensorrt"])
def test_build_engines_names_what_is_missing(
    missing: str, manifest: Manifest, yolo_models_dir: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "repository"
    write_gpu_repository(manifest, yolo_models_dir, repository)
    env = _fake_tools(tmp_path, "Tesla T4", "10.5.0")
    if missing == "jobs":
        (repository / "engine-jobs.txt").unlink()
    else:
        env["TRT_LIB_DIR"] = str(tmp_path)
    result = _build(repository, tmp_path / "engines", env)
    assert result.returncode != 0
    assert ("cvstack instance gpu-repository" if missing == "jobs" else "libnvinfer") in (
        result.stderr
    )
