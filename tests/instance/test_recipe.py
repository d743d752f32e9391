"""The image recipe's files: compose (docker-compose config), Prometheus (promtool), Packer
template and Dockerfile against the CDK stack and the repository."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from typing import Any

import hcl2
import pytest
import yaml

from backend.cli import build_parser
from backend.core.config import Settings
from backend.instance.backend_env import write_env_file
from backend.paths import REPO_ROOT
from infra_cdk.config import StackConfig
from tests.instance.conftest import require_tool

AMI = REPO_ROOT / "ami"
VERSIONS = AMI / "versions.env"
PRODUCTION_ENV = {  # what `cvstack instance backend-env` writes at boot
    "CVSTACK_ENVIRONMENT": "production",
    "CVSTACK_SESSION_TOKEN_SECRET": "s" * 64,
    "CVSTACK_ALLOWED_ORIGINS": '["https://app.example.com"]',
}


def versions() -> dict[str, str]:
    lines = VERSIONS.read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def compose_config(
    tmp_path: Path, *extra: str, gpu: bool = True
) -> subprocess.CompletedProcess[str]:
    run_dir = tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    write_env_file(PRODUCTION_ENV, run_dir / "backend.env")
    env = {
        **{k: v for k, v in os.environ.items() if k not in versions()},
        "CVSTACK_RUN_DIR": str(run_dir),
        "CVSTACK_STATE_DIR": str(tmp_path / "state"),
    }
    files = ["-f", str(AMI / "compose.yaml")]
    if gpu:  # as ami/scripts/compose.sh does for TRITON_FLAVOUR=gpu
        files += ["-f", str(AMI / "compose.gpu.yaml")]
    return subprocess.run(
        [require_tool("docker-compose"), *extra, *files, "config"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )


@pytest.fixture(scope="module")
def compose(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    result = compose_config(tmp_path_factory.mktemp("compose"), "--env-file", str(VERSIONS))
    assert result.returncode == 0, result.stderr
    services: dict[str, Any] = yaml.safe_load(result.stdout)["services"]
    return services


def test_compose_refuses_to_run_without_pinned_images(tmp_path: Path) -> None:
    result = compose_config(tmp_path)
    assert result.returncode != 0 and "TRITON_IMAGE" in result.stderr


def test_images_are_pinned(compose: dict[str, Any]) -> None:
    pinned = versions()
    assert pinned["TRITON_FLAVOUR"] == "gpu"  # the image is baked for the GPU
    assert re.fullmatch(r"nvcr\.io/nvidia/tritonserver:\d\d\.\d\d-py3", pinned["TRITON_IMAGE"])
    assert re.fullmatch(r"prom/prometheus:v\d+\.\d+\.\d+", pinned["PROMETHEUS_IMAGE"])
    assert compose["triton"]["image"] == pinned["TRITON_IMAGE"]
    assert compose["prometheus"]["image"] == pinned["PROMETHEUS_IMAGE"]
    assert compose["backend"]["image"] == pinned["BACKEND_IMAGE"]


def test_start_order_health_checks_and_restart_policies(compose: dict[str, Any]) -> None:
    # The backend starts with Triton (its imports overlap the model load), not once it is healthy.
    assert compose["backend"]["depends_on"] == {"triton": {"condition": "service_started"}}
    assert compose["prometheus"]["depends_on"] == {"backend": {"condition": "service_started"}}
    for name in ("triton", "backend"):
        assert compose[name]["healthcheck"]["test"][0] == "CMD", name
    assert "/v2/health/ready" in compose["triton"]["healthcheck"]["test"][-1]
    assert "/ready" in compose["backend"]["healthcheck"]["test"][-1]
    assert {service["restart"] for service in compose.values()} == {"unless-stopped"}


def test_triton_gets_the_gpu_shared_memory_and_loopback_only(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    triton = compose["triton"]
    devices = triton["deploy"]["resources"]["reservations"]["devices"]
    [device] = devices
    assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
    assert device["count"] in ("all", -1)  # compose versions print "all" differently
    assert triton["shm_size"] in ("1gb", "1g", 1 << 30, "1073741824")
    for flag in ("--http-address", "--grpc-address", "--metrics-address"):
        assert f"{flag}=127.0.0.1" in triton["command"]
    assert "--web.listen-address=127.0.0.1:9090" in compose["prometheus"]["command"]
    cpu = compose_config(tmp_path, "--env-file", str(VERSIONS), gpu=False)
    assert cpu.returncode == 0, cpu.stderr
    assert "deploy" not in yaml.safe_load(cpu.stdout)["services"]["triton"]  # CPU-clean alone


def test_backend_environment_is_a_valid_production_configuration(
    compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    environment = compose["backend"]["environment"]  # env_file merged in by compose
    fields = {f"CVSTACK_{name.upper()}" for name in Settings.model_fields}
    assert set(environment) <= fields, set(environment) - fields
    for key, value in environment.items():
        monkeypatch.setenv(key, str(value))
    settings = Settings()
    assert settings.environment == "production" and settings.host == "127.0.0.1"
    assert settings.allowed_origins == ["https://app.example.com"]
    assert settings.triton_grpc_url == "127.0.0.1:8001" and settings.port == 8080


def test_prometheus_config_passes_promtool_and_scrapes_backend_and_triton() -> None:
    config = AMI / "prometheus" / "prometheus.yml"
    result = subprocess.run(
        [require_tool("promtool"), "check", "config", str(config)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {job["job_name"]: job for job in yaml.safe_load(config.read_text())["scrape_configs"]}
    assert jobs["cvstack-backend"]["static_configs"][0]["targets"] == ["127.0.0.1:8080"]
    assert jobs["triton"]["static_configs"][0]["targets"] == ["127.0.0.1:8002"]


def test_promtool_catches_a_broken_config(tmp_path: Path) -> None:
    broken = tmp_path / "prometheus.yml"
    broken.write_text("scrape_configs:\n  - job_name: x\n    scrape_interval: often\n")
    result = subprocess.run([require_tool("promtool"), "check", "config", str(broken)], check=False)
    assert result.returncode != 0


def _unquote(value: Any) -> Any:
    return value.strip('"') if isinstance(value, str) else value


def test_packer_template_matches_the_stack() -> None:
    template = hcl2.load((AMI / "cvstack.pkr.hcl").open())
    variables = {
        _unquote(name): _unquote(spec.get("default"))
        for block in template["variable"]
        for name, spec in block.items()
    }
    stack = StackConfig()
    assert variables["ami_parameter_name"] == stack.ami_parameter_name
    assert variables["root_volume_gib"] <= stack.root_volume_gib
    source = template["source"][0]['"amazon-ebs"']['"cvstack"']
    devices = source["launch_block_device_mappings"][0]
    assert _unquote(devices["device_name"]) == stack.root_device_name
    assert source["metadata_options"][0]["http_tokens"] == '"required"'
    build = template["build"][0]
    scripts = [p['"shell"']["script"] for p in build["provisioner"] if '"shell"' in p]
    assert scripts == ['"${path.root}/provision.sh"']
    for name in ("provision.sh", "publish-ami-id.sh"):
        assert os.access(AMI / name, os.X_OK), name


def test_packer_bakes_without_a_default_vpc() -> None:
    """Accounts without a default VPC pass a subnet; empty values leave Packer's default."""
    template = hcl2.load((AMI / "cvstack.pkr.hcl").open())
    variables = {
        _unquote(name): spec for block in template["variable"] for name, spec in block.items()
    }
    for name, kind, default in (
        ("vpc_id", "string", '""'),
        ("subnet_id", "string", '""'),
        ("associate_public_ip_address", "bool", True),
    ):
        assert variables[name]["type"] == kind and variables[name]["default"] == default, name
        assert variables[name]["description"], name
    source = template["source"][0]['"amazon-ebs"']['"cvstack"']
    assert source["vpc_id"] == '${var.vpc_id == "" ? null : var.vpc_id}'
    assert source["subnet_id"] == '${var.subnet_id == "" ? null : var.subnet_id}'
    assert source["associate_public_ip_address"] == "${var.associate_public_ip_address}"


def test_provisioning_waits_for_cloud_init_and_the_apt_locks_then_smoke_tests_the_gpu() -> None:
    provision = (AMI / "provision.sh").read_text()
    body = provision[provision.index('step "wait for cloud-init') :]
    assert provision.index("cloud-init status --wait") < provision.index("apt_install nginx")
    assert 'timeout "$CLOUD_INIT_TIMEOUT_S" cloud-init status --wait' in body
    # Every apt-get goes through the wrapper that waits for the dpkg lock.
    apt_calls = re.findall(r"^\s*(apt-get\b.*|apt_get\b.*)$", provision, re.MULTILINE)
    wrapper = 'apt-get -o "DPkg::Lock::Timeout=$APT_LOCK_TIMEOUT_S" "$@"'
    assert wrapper in apt_calls
    assert all(c.startswith("apt_get") or c in (wrapper, "apt-get clean") for c in apt_calls)
    smoke = provision.index('"$PREFIX/ami/scripts/gpu-smoke.sh" "$TRITON_IMAGE"')
    assert provision.index('docker pull --quiet "$TRITON_IMAGE"') < smoke
    assert smoke < provision.index('step "systemd units"')


def test_dockerfile_copies_what_exists_and_runs_a_real_command() -> None:
    dockerfile = (REPO_ROOT / "backend" / "Dockerfile").read_text()
    ignore = (REPO_ROOT / ".dockerignore").read_text().splitlines()
    sources = [
        part
        for line in dockerfile.splitlines()
        if line.startswith("COPY ")
        for part in line.split()[1:-1]
    ]
    assert "ami/nginx/" in sources  # backend/instance/nginx_config.py renders from it
    for source in sources:
        assert (REPO_ROOT / source).exists(), source
        assert f"!{source}" in ignore, f"{source} is excluded from the build context"
    command = re.search(r'^CMD \["cvstack", "(\w+)"\]', dockerfile, re.MULTILINE)
    assert command is not None
    assert build_parser().parse_args([command.group(1)]).handler is not None
