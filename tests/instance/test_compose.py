"""`ami/scripts/compose.sh`: the compose flavour of the instance (v2 plugin or v1), the gpu file
only for the gpu flavour, and the wait for health checks that v1 cannot do itself. The real
docker-compose parses the files; a stand-in `docker` plays the daemon's containers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from backend.instance.backend_env import write_env_file
from backend.paths import REPO_ROOT
from tests.instance.conftest import require_tool

AMI = REPO_ROOT / "ami"
COMPOSE_SH = AMI / "scripts" / "compose.sh"
# The stand-in docker (and docker-compose): logs each call, answers `compose version` only as
# the v2 plugin, lists the containers of state.json and plays their health one poll at a time.
FAKE_DOCKER = """#!{python}
import json, os, sys
from pathlib import Path
root = Path({root!r})
args = sys.argv[1:]
if Path(sys.argv[0]).name == "docker-compose":
    args = ["compose", *args]
with (root / "calls").open("a") as log:
    log.write(" ".join(args) + "\\n")
state = json.loads((root / "state.json").read_text())
if args[:2] == ["compose", "version"]:
    sys.exit(0 if state["v2"] else 1)
if args[0] == "compose":
    if "ps" in args:
        print("\\n".join(state["containers"]))
    elif "up" in args:
        sys.exit(state.get("up_rc", 0))
    sys.exit(0)
if args[0] == "inspect":
    fmt, cid = args[2], args[3]
    c = state["containers"][cid]
    if "Health.Log" in fmt:
        print("\\n".join(c["log"]))
    else:
        polls = c.setdefault("polls", 0)
        health = c["health"][min(polls, len(c["health"]) - 1)]
        c["polls"] = polls + 1
        (root / "state.json").write_text(json.dumps(state))
        print(c["service"], health, c.get("state", "running"))
    sys.exit(0)
sys.exit(f"stand-in docker: unexpected {{args}}")
"""


def stand_in(
    tmp_path: Path, containers: dict[str, dict[str, Any]], *, v2: bool = True, up_rc: int = 0
) -> dict[str, str]:
    """A PATH with the stand-in `docker`, plus `docker-compose` unless the v2 plugin is there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = FAKE_DOCKER.format(python=sys.executable, root=str(tmp_path))
    names = ["docker"] if v2 else ["docker", "docker-compose"]
    for name in names:
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    (tmp_path / "state.json").write_text(
        json.dumps({"v2": v2, "up_rc": up_rc, "containers": containers})
    )
    tools = tmp_path / "tools"  # what compose.sh needs besides docker, and nothing more
    tools.mkdir()
    for tool in ("sed", "tail", "dirname", "sleep"):
        (tools / tool).symlink_to(require_tool(tool))
    env = {k: v for k, v in os.environ.items() if k != "TRITON_FLAVOUR"}
    return {**env, "PATH": f"{bin_dir}:{tools}", "CVSTACK_HEALTH_POLL_S": "0"}


def compose_sh(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("bash"), str(COMPOSE_SH), *args],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def calls(tmp_path: Path) -> list[str]:
    return (tmp_path / "calls").read_text().splitlines()


def compose_calls(tmp_path: Path) -> list[str]:
    return [call for call in calls(tmp_path) if call.startswith("compose --project-name")]


HEALTHY = {
    "c-triton": {"service": "triton", "health": ["starting", "starting", "healthy"], "log": []},
    "c-backend": {"service": "backend", "health": ["starting", "healthy"], "log": []},
    "c-prometheus": {"service": "prometheus", "health": ["none"], "log": []},
}


def test_up_with_the_v2_plugin_waits_for_every_health_check(tmp_path: Path) -> None:
    env = stand_in(tmp_path, HEALTHY)
    result = compose_sh(env, "up")
    assert result.returncode == 0, result.stderr
    assert "every service with a health check is healthy" in result.stdout
    up, ps = compose_calls(tmp_path)
    files = f"-f {AMI}/compose.yaml -f {AMI}/compose.gpu.yaml"  # versions.env: gpu
    assert up == f"compose --project-name cvstack --env-file {AMI}/versions.env {files} up --detach"
    assert ps.endswith(f"{files} ps --all -q")
    polls = [c for c in calls(tmp_path) if c.startswith("inspect") and "c-triton" in c]
    assert len(polls) == 3  # starting, starting, healthy


def test_v1_docker_compose_and_the_cpu_flavour_without_the_gpu_file(tmp_path: Path) -> None:
    env = {**stand_in(tmp_path, HEALTHY, v2=False), "TRITON_FLAVOUR": "cpu"}
    assert compose_sh(env, "up").returncode == 0
    assert calls(tmp_path)[0] == "compose version"  # tried the plugin first
    up = compose_calls(tmp_path)[0]
    assert f"-f {AMI}/compose.yaml up --detach" in up and "compose.gpu.yaml" not in up


def test_an_unhealthy_service_fails_with_its_last_health_check(tmp_path: Path) -> None:
    containers = {
        **HEALTHY,
        "c-backend": {
            "service": "backend",
            "health": ["starting", "unhealthy"],
            "log": ['exit 1: "old"', 'exit 1: "urlopen error [Errno 111] Connection refused"'],
        },
    }
    result = compose_sh(stand_in(tmp_path, containers), "up")
    assert result.returncode != 0
    assert result.stderr.strip() == (
        'compose: service backend is unhealthy; last health check: exit 1: "urlopen error '
        '[Errno 111] Connection refused"'
    )


def test_a_service_that_never_gets_healthy_times_out_by_name(tmp_path: Path) -> None:
    containers = {
        "c-triton": {"service": "triton", "health": ["starting"], "log": ['exit 1: "not ready"']}
    }
    env = {**stand_in(tmp_path, containers), "CVSTACK_HEALTH_TIMEOUT_S": "1"}
    env["CVSTACK_HEALTH_POLL_S"] = "0.2"
    result = compose_sh(env, "up")
    assert result.returncode != 0
    assert "service triton not healthy after 1s; last health check: exit 1: " in result.stderr


def test_a_failed_up_names_the_unhealthy_dependency(tmp_path: Path) -> None:
    containers = {
        "c-triton": {"service": "triton", "health": ["unhealthy"], "log": ['exit 1: "503"']},
    }
    result = compose_sh(stand_in(tmp_path, containers, up_rc=1), "up")
    assert result.returncode != 0
    assert 'service triton is unhealthy; last health check: exit 1: "503"' in result.stderr


def test_an_exited_container_fails_at_once(tmp_path: Path) -> None:
    containers = {
        "c-triton": {"service": "triton", "health": ["starting"], "state": "exited", "log": []}
    }
    result = compose_sh(stand_in(tmp_path, containers), "up")
    assert result.returncode != 0 and "service triton exited during start" in result.stderr


def test_other_commands_pass_through_and_bad_setups_are_named(tmp_path: Path) -> None:
    env = stand_in(tmp_path, HEALTHY)
    assert compose_sh(env, "down", "--remove-orphans").returncode == 0
    assert compose_calls(tmp_path)[-1].endswith("compose.gpu.yaml down --remove-orphans")
    wrong = compose_sh({**env, "TRITON_FLAVOUR": "tpu"}, "up")
    assert wrong.returncode != 0 and "TRITON_FLAVOUR must be cpu or gpu" in wrong.stderr
    state = json.loads((tmp_path / "state.json").read_text())
    (tmp_path / "state.json").write_text(json.dumps({**state, "v2": False}))
    neither = compose_sh(env, "up")  # no plugin and no docker-compose on PATH
    assert neither.returncode != 0 and "neither the compose plugin" in neither.stderr


@pytest.mark.parametrize("flavour", ["cpu", "gpu"])
def test_the_real_docker_compose_parses_each_flavour(flavour: str, tmp_path: Path) -> None:
    """`compose.sh config` with Debian's docker-compose: gpu reserves the GPU, cpu does not."""
    env = stand_in(tmp_path, {}, v2=False)
    (tmp_path / "bin" / "docker-compose").unlink()
    compose = Path(require_tool("docker-compose"))
    (tmp_path / "bin" / "docker-compose").symlink_to(compose)
    run_dir = tmp_path / "run"
    write_env_file({"CVSTACK_ENVIRONMENT": "production"}, run_dir / "backend.env")
    env.update(TRITON_FLAVOUR=flavour, CVSTACK_RUN_DIR=str(run_dir))
    result = compose_sh(env, "config")
    assert result.returncode == 0, result.stderr
    triton = yaml.safe_load(result.stdout)["services"]["triton"]
    if flavour == "cpu":
        assert "deploy" not in triton
    else:
        [device] = triton["deploy"]["resources"]["reservations"]["devices"]
        assert device["driver"] == "nvidia" and device["capabilities"] == ["gpu"]
        assert device["count"] in ("all", -1)
