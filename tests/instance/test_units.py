"""The systemd units: `systemd-analyze verify` clean, and the boot order the design needs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from backend.paths import REPO_ROOT
from tests.instance.conftest import require_tool

UNITS_DIR = REPO_ROOT / "systemd"
UNITS = sorted(p for p in UNITS_DIR.iterdir() if p.suffix in (".service", ".timer"))
INSTALL_PREFIX = "/opt/cvstack/"
MISSING_INSTALLED = re.compile(
    r"Command (/opt/cvstack/\S+) is not executable: No such file or directory"
)


def unit_settings(path: Path) -> dict[str, list[str]]:
    """`Section.Key` -> values, with backslash continuations joined (enough for these units)."""
    text = re.sub(r"\\\n\s*", " ", path.read_text())
    settings: dict[str, list[str]] = {}
    section = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line.strip("[]")
        else:
            key, _, value = line.partition("=")
            settings.setdefault(f"{section}.{key}", []).append(value)
    return settings


def words(settings: dict[str, list[str]], key: str) -> set[str]:
    return {word for value in settings.get(key, []) for word in value.split()}


def verify(paths: list[Path]) -> list[str]:
    """verify's findings, minus "not executable" for scripts that the image installs under
    /opt/cvstack (checked against the repository instead)."""
    result = subprocess.run(
        [require_tool("systemd-analyze"), "verify", "--man=no", *map(str, paths)],
        capture_output=True,
        text=True,
        check=False,
    )
    findings = []
    for line in (result.stdout + result.stderr).splitlines():
        missing = MISSING_INSTALLED.search(line)
        if missing:
            script = REPO_ROOT / missing.group(1).removeprefix(INSTALL_PREFIX)
            assert script.is_file() and script.stat().st_mode & 0o111, f"{script} not executable"
        elif line.strip():
            findings.append(line)
    return findings


def test_every_unit_verifies_clean() -> None:
    assert len(UNITS) >= 8
    assert verify(UNITS) == []


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    broken = tmp_path / "cvstack-broken.service"
    broken.write_text(
        "[Unit]\nDescription=x\n\n[Service]\nExecStart=/usr/bin/true\nRestrat=always\n"
    )
    assert any("Restrat" in finding for finding in verify([broken]))


@pytest.mark.parametrize(
    ("unit", "requires", "after"),
    [
        ("cvstack-model-sync.service", {"docker.service"}, {"cloud-final.service"}),
        ("cvstack-engines.service", {"cvstack-model-sync.service"}, {"cvstack-model-sync.service"}),
        (
            "cvstack-stack.service",
            {"cvstack-engines.service", "cvstack-backend-env.service", "docker.service"},
            {"cvstack-engines.service", "cvstack-backend-env.service", "docker.service"},
        ),
        ("cvstack-certbot.service", {"nginx.service"}, {"nginx.service"}),
    ],
)
def test_boot_order(unit: str, requires: set[str], after: set[str]) -> None:
    settings = unit_settings(UNITS_DIR / unit)
    assert requires <= words(settings, "Unit.Requires")
    assert after <= words(settings, "Unit.After")


def test_tls_comes_before_nginx_and_heartbeat_runs_every_minute() -> None:
    tls = unit_settings(UNITS_DIR / "cvstack-tls.service")
    assert "nginx.service" in words(tls, "Unit.Before")
    assert "nginx.service" in words(tls, "Install.RequiredBy")
    timer = unit_settings(UNITS_DIR / "cvstack-heartbeat.timer")
    assert timer["Timer.OnUnitActiveSec"] == ["1min"]


def test_stack_removes_its_containers_on_stop_and_compose_restarts_crashes() -> None:
    stack = unit_settings(UNITS_DIR / "cvstack-stack.service")
    assert "up --detach --wait" in stack["Service.ExecStart"][0]
    assert stack["Service.ExecStop"][0].endswith("down")
    assert stack["Service.Restart"] == ["on-failure"]


def test_provisioning_installs_and_enables_every_unit() -> None:
    provision = (REPO_ROOT / "ami" / "provision.sh").read_text()
    enable = re.search(r"systemctl enable (nginx\.service(?:\\\n|[^\n])*)", provision)
    assert enable is not None
    enabled = set(enable.group(1).replace("\\\n", " ").split())
    installable = {
        path.name
        for path in UNITS
        if {"Install.WantedBy", "Install.RequiredBy"} & set(unit_settings(path))
    }
    assert installable <= enabled, installable - enabled
