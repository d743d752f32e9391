"""The image's shell scripts: shellcheck, the TLS setup, the engine cache of build-engines.sh,
the flavours of engines.sh and the bake's GPU smoke test, run for real with stand-ins for the
GPU tools (nvidia-smi, trtexec) and for docker (tests/instance/fake_docker.py)."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from backend.instance.engines import JOBS_FILE, write_repository
from backend.model_prep.manifest import Manifest
from backend.paths import REPO_ROOT
from backend.triton_server.local_server import ServerAddress
from backend.triton_server.repository import Flavour
from tests.instance import fake_docker
from tests.instance.conftest import make_self_signed, require_tool

SCRIPTS = sorted((REPO_ROOT / "ami").rglob("*.sh"))
BUILD_ENGINES = REPO_ROOT / "ami" / "scripts" / "build-engines.sh"
ENGINES = REPO_ROOT / "ami" / "scripts" / "engines.sh"
GPU_SMOKE = REPO_ROOT / "ami" / "scripts" / "gpu-smoke.sh"
SMOKE = REPO_ROOT / "ami" / "smoke"
FAKE_DOCKER = Path(fake_docker.__file__)
BACKEND_IMAGE = "cvstack-backend:test"
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:test"


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


def test_the_certificate_needs_no_dns_name_and_certbot_is_gone(tmp_path: Path) -> None:
    """The operator's listener is reached by address (or a tunnel to localhost); the front
    door's TLS is CloudFront's, so the image has no Let's Encrypt mode any more."""
    certificate = make_self_signed(tmp_path / "tls")
    text = subprocess.run(
        [require_tool("openssl"), "x509", "-noout", "-ext", "subjectAltName", "-in", certificate],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text
    result = subprocess.run(
        ["bash", str(REPO_ROOT / "ami" / "scripts" / "tls-setup.sh"), "letsencrypt"],
        env={**os.environ, "CVSTACK_TLS_DIR": str(tmp_path / "other")},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1 and "usage: tls-setup.sh self-signed" in result.stderr
    for path in (REPO_ROOT / "ami").rglob("*"):
        if path.is_file() and path.suffix in {".sh", ".hcl", ".j2", ".yaml", ".env"}:
            assert "certbot" not in path.read_text().lower(), path


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
    write_repository(manifest, yolo_models_dir, repository, "gpu")
    jobs = (repository / JOBS_FILE).read_text().splitlines()
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
    write_repository(manifest, yolo_models_dir, repository, "gpu")
    result = _build(repository, cache, _fake_tools(tmp_path, "Tesla T4", "10.5.0", fail=True))
    assert result.returncode != 0 and "trtexec failed for yolo" in result.stderr
    assert not list(cache.rglob("*.plan"))


@pytest.mark.parametrize("missing", ["jobs", "tensorrt"])
def test_build_engines_names_what_is_missing(
    missing: str, manifest: Manifest, yolo_models_dir: Path, tmp_path: Path
) -> None:
    repository = tmp_path / "repository"
    write_repository(manifest, yolo_models_dir, repository, "gpu")
    env = _fake_tools(tmp_path, "Tesla T4", "10.5.0")
    if missing == "jobs":
        (repository / "engine-jobs.txt").unlink()
    else:
        env["TRT_LIB_DIR"] = str(tmp_path)
    result = _build(repository, tmp_path / "engines", env)
    assert result.returncode != 0
    assert ("cvstack instance repository --flavour gpu" if missing == "jobs" else "libnvinfer") in (
        result.stderr
    )


def _fake_docker(root: Path, tools_env: dict[str, str], mode: str = "") -> dict[str, str]:
    """PATH with tests/instance/fake_docker.py as `docker`; the images run this machine's tools."""
    bin_dir = root / "docker-bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(f'#!/bin/sh\nexec {sys.executable} {FAKE_DOCKER} "$@"\n')
    docker.chmod(0o755)
    config = root / "fake-docker.json"
    config.write_text(
        json.dumps(
            {
                "log": str(root / "docker.log"),
                "mode": mode,
                "images": {
                    BACKEND_IMAGE: {"cvstack": str(Path(sys.executable).parent / "cvstack")},
                    TRITON_IMAGE: {
                        "build-engines.sh": "/usr/local/bin/build-engines.sh",
                        "/usr/src/tensorrt/bin/trtexec": tools_env["TRTEXEC"],
                        "tritonserver": "serve",
                    },
                },
            }
        )
    )
    return {
        **tools_env,
        "PATH": f"{bin_dir}:{tools_env['PATH']}",
        "FAKE_DOCKER_CONFIG": str(config),
        "BACKEND_IMAGE": BACKEND_IMAGE,
        "TRITON_IMAGE": TRITON_IMAGE,
    }


def _docker_calls(root: Path) -> list[str]:
    return (root / "docker.log").read_text().splitlines()


def _engines(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(ENGINES)], env=env, capture_output=True, text=True, check=False
    )


def _state_with_repository(
    tmp_path: Path, manifest: Manifest, models_dir: Path, flavour: Flavour
) -> Path:
    """The state folder as the model sync leaves it: models plus the rendered repository."""
    state = tmp_path / "state"
    state.mkdir()
    (state / "models").symlink_to(models_dir)
    write_repository(manifest, models_dir, state / "repository", flavour)
    return state


def test_engines_cpu_flavour_has_nothing_to_do_and_starts_no_container(
    manifest: Manifest, yolo_models_dir: Path, tmp_path: Path
) -> None:
    state = _state_with_repository(tmp_path, manifest, yolo_models_dir, "cpu")
    env = _fake_docker(tmp_path, _fake_tools(tmp_path, "Tesla T4", "10.5.0"))
    env.update(TRITON_FLAVOUR="cpu", CVSTACK_STATE_DIR=str(state))
    result = _engines(env)
    assert result.returncode == 0, result.stderr
    assert not (tmp_path / "docker.log").exists()  # no container start
    assert _calls(tmp_path) == 0
    shutil.rmtree(state / "repository")
    missing = _engines(env)
    assert missing.returncode != 0 and "sync-models --repository" in missing.stderr


def test_engines_gpu_builds_plans_in_the_triton_image_once_then_links_them_on_the_host(
    manifest: Manifest, yolo_models_dir: Path, tmp_path: Path
) -> None:
    state = _state_with_repository(tmp_path, manifest, yolo_models_dir, "gpu")
    env = _fake_docker(tmp_path, _fake_tools(tmp_path, "Tesla T4", "10.5.0"))
    env.update(TRITON_FLAVOUR="gpu", CVSTACK_STATE_DIR=str(state))
    jobs = (state / "repository" / JOBS_FILE).read_text().splitlines()

    first = _engines(env)  # the first boot: the build runs in the Triton image, with the GPU
    assert first.returncode == 0, first.stderr
    [build] = _docker_calls(tmp_path)
    assert "--gpus all" in build and TRITON_IMAGE in build and "build-engines.sh" in build
    assert _calls(tmp_path) == len(jobs) > 0
    [version] = (state / "engines").glob("tensorrt-version-*")
    assert version.read_text() == "10.5.0\n"  # what the next boot links with, on the host

    for job in jobs:  # every later boot (a fresh repository, as the model sync renders it)
        (state / "repository" / job.split()[0] / "1" / "model.plan").unlink()
    later = _engines(env)
    assert later.returncode == 0, later.stderr
    assert "linked without a container" in later.stdout
    assert len(_docker_calls(tmp_path)) == 1 and _calls(tmp_path) == len(jobs)  # no rebuild
    for job in jobs:
        assert (state / "repository" / job.split()[0] / "1" / "model.plan").is_file()

    (tmp_path / "a10g").mkdir()
    a10g = _fake_docker(tmp_path / "a10g", _fake_tools(tmp_path, "NVIDIA A10G", "10.5.0"))
    a10g.update(TRITON_FLAVOUR="gpu", CVSTACK_STATE_DIR=str(state))
    other_gpu = _engines(a10g)  # a plan not cached for this GPU: built in the image, not skipped
    assert other_gpu.returncode == 0, other_gpu.stderr
    assert "no cached plan for NVIDIA_A10G" in other_gpu.stderr
    assert _calls(tmp_path) == 2 * len(jobs)
    wrong = _engines({**env, "TRITON_FLAVOUR": "tpu"})
    assert wrong.returncode != 0 and "must be cpu or gpu" in wrong.stderr


def test_the_smoke_model_is_x_plus_one_and_matches_its_triton_config() -> None:
    session = onnxruntime.InferenceSession(str(SMOKE / "model.onnx"))
    [y] = session.run(None, {"x": np.array([[0, 1, 2, 3]], dtype=np.float32)})
    assert y.tolist() == [[1.0, 2.0, 3.0, 4.0]]
    config = text_format.Parse((SMOKE / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert config.platform == "tensorrt_plan" and config.name == "smoke"
    for tensor, declared in ((session.get_inputs()[0], config.input[0]),
                             (session.get_outputs()[0], config.output[0])):  # fmt: skip
        assert (tensor.name, tensor.shape) == (declared.name, list(declared.dims))


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("", ""),
        ("trtexec-fails", "trtexec could not build a plan"),
        ("exits", "Triton exited before it was ready"),
        ("wrong", "Triton answered [2.0, 3.0, 4.0, 5.0] for x + 1"),
    ],
)
def test_gpu_smoke_builds_a_plan_serves_it_on_the_gpu_and_checks_one_inference(
    mode: str, message: str, tmp_path: Path
) -> None:
    tools = _fake_tools(tmp_path, "Tesla T4", "10.5.0", fail=mode == "trtexec-fails")
    env = _fake_docker(tmp_path, tools, mode)
    port = ServerAddress.on_free_ports().http_port
    env.update(CVSTACK_SMOKE_PORT=str(port), CVSTACK_SMOKE_READY_TIMEOUT_S="20")
    result = subprocess.run(
        ["bash", str(GPU_SMOKE), TRITON_IMAGE], env=env, capture_output=True, text=True,
        check=False, timeout=60,
    )  # fmt: skip
    calls = _docker_calls(tmp_path)
    if mode == "":
        assert result.returncode == 0, result.stderr
        assert "y = [1.0, 2.0, 3.0, 4.0]" in result.stdout
        build, serve = (c for c in calls if c.startswith("run"))
        assert "--gpus all" in build and "--saveEngine=/work/repository/smoke/1/model.plan" in build
        assert "--gpus all" in serve and f"--http-port={port}" in serve
    else:
        assert result.returncode != 0 and message in result.stderr, result.stderr
    assert calls[-1] == "rm -f cvstack-gpu-smoke"  # nothing left running after the bake step


RETRY = REPO_ROOT / "ami" / "scripts" / "retry.sh"


def test_retry_runs_a_step_again_until_it_succeeds(tmp_path: Path) -> None:
    tries = tmp_path / "tries"
    # Fails twice (as a boot step does while IMDS or S3 is not there yet), then succeeds.
    step = f'echo x >> {tries}; [ "$(wc -l < {tries})" -ge 3 ]'
    result = subprocess.run(
        ["bash", str(RETRY), "5", "0", "sh", "-c", step],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert tries.read_text().count("x") == 3
    assert "try 2 of 5 failed (exit status 1)" in result.stderr


def test_retry_gives_up_with_the_step_s_own_status(tmp_path: Path) -> None:
    result = subprocess.run(
        ["bash", str(RETRY), "3", "0", "sh", "-c", "exit 7"],
        check=False,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 7
    assert "sh failed 3 times (last exit status 7); giving up" in result.stderr


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["3", "0"], "usage: retry.sh ATTEMPTS DELAY_S COMMAND"),
        (["0", "5", "true"], "ATTEMPTS must be a positive integer, got '0'"),
        (["3", "5s", "true"], "DELAY_S must be a whole number of seconds, got '5s'"),
    ],
)
def test_retry_refuses_bad_arguments(arguments: list[str], message: str) -> None:
    result = subprocess.run(
        ["bash", str(RETRY), *arguments], check=False, capture_output=True, text=True
    )
    assert result.returncode == 2 and message in result.stderr
