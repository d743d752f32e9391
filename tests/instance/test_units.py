"""The systemd units: `systemd-analyze verify` clean, no ordering cycle with Debian's real
cloud-init units installed and enabled as on the image, and the boot order the design needs."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from backend.paths import REPO_ROOT
from tests.instance.conftest import require_tool

UNITS_DIR = REPO_ROOT / "systemd"
UNITS = sorted(p for p in UNITS_DIR.iterdir() if p.suffix in (".service", ".timer"))
SETTINGS = "cvstack-settings.service"
INSTALL_PREFIX = "/opt/cvstack/"
CLOUD_INIT_CACHE = REPO_ROOT / ".cvstack" / "cloud-init-deb"
CLOUD_INIT_UNITS = (
    "cloud-init-local.service",
    "cloud-init.service",
    "cloud-config.service",
    "cloud-final.service",
)
# Stand-ins with the ordering of Debian's docker.io and nginx units (the host may lack them).
PACKAGED_UNITS = {
    "docker.socket": "[Socket]\nListenStream=/run/docker.sock\n",
    "docker.service": (
        "[Unit]\nAfter=network-online.target docker.socket firewalld.service containerd.service"
        " time-set.target\nWants=network-online.target containerd.service\n"
        "Requires=docker.socket\n[Service]\nExecStart=/bin/true\n"
        "[Install]\nWantedBy=multi-user.target\n"
    ),
    "nginx.service": (
        "[Unit]\nAfter=network-online.target remote-fs.target nss-lookup.target\n"
        "Wants=network-online.target\n[Service]\nExecStart=/bin/true\n"
        "[Install]\nWantedBy=multi-user.target\n"
    ),
}
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


def enabled_by_provisioning() -> list[str]:
    """The units `ami/provision.sh` enables, in its order."""
    provision = (REPO_ROOT / "ami" / "provision.sh").read_text()
    enable = re.search(r"systemctl enable (nginx\.service(?:\\\n|[^\n])*)", provision)
    assert enable is not None
    return enable.group(1).replace("\\\n", " ").split()


def cloud_init_units() -> Path:
    """Debian's cloud-init unit files, from its package (downloaded once into .cvstack/, never
    installed on this machine)."""
    units = CLOUD_INIT_CACHE / "root" / "lib" / "systemd" / "system"
    if (units / "cloud-final.service").is_file():
        return units
    CLOUD_INIT_CACHE.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=CLOUD_INIT_CACHE) as work:
        download = subprocess.run(
            [require_tool("apt-get"), "download", "cloud-init"],
            cwd=work,
            capture_output=True,
            text=True,
            check=False,
        )
        if download.returncode != 0:
            pytest.fail(f"`apt-get download cloud-init` failed: {download.stderr.strip()}")
        [package] = Path(work).glob("cloud-init_*.deb")
        subprocess.run([require_tool("dpkg-deb"), "-x", str(package), f"{work}/root"], check=True)
        shutil.rmtree(CLOUD_INIT_CACHE / "root", ignore_errors=True)
        os.replace(f"{work}/root", CLOUD_INIT_CACHE / "root")
    return units


def image_root(tmp_path: Path, extra: dict[str, str] | None = None) -> Path:
    """A root folder with the units as the booted image has them: systemd's own, Debian's
    cloud-init enabled (plus the `cloud-init.target` link its generator makes at boot), Docker,
    nginx, and the repository's units enabled as `ami/provision.sh` does."""
    root = tmp_path / "root"
    system = root / "lib" / "systemd" / "system"
    shutil.copytree(Path("/lib/systemd/system"), system, symlinks=True)
    for unit in cloud_init_units().iterdir():
        shutil.copy2(unit, system / unit.name)
    for name, text in PACKAGED_UNITS.items():
        (system / name).unlink(missing_ok=True)
        (system / name).write_text(text)
    local = root / "etc" / "systemd" / "system"
    (local / "multi-user.target.wants").mkdir(parents=True)
    (local / "multi-user.target.wants" / "cloud-init.target").symlink_to(
        "/lib/systemd/system/cloud-init.target"
    )
    for unit in UNITS:
        shutil.copy2(unit, local / unit.name)
    for name, text in (extra or {}).items():
        (local / name).write_text(text)
    subprocess.run(
        [
            require_tool("systemctl"),
            f"--root={root}",
            "enable",
            *CLOUD_INIT_UNITS,
            "docker.service",
            *enabled_by_provisioning(),
            *(extra or {}),
        ],
        capture_output=True,
        check=True,
    )
    return root


def boot_findings(root: Path) -> str:
    """What systemd would say about the boot transaction (verify exits 0 even with cycles)."""
    result = subprocess.run(
        [require_tool("systemd-analyze"), "verify", "--man=no", f"--root={root}", "default.target"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.stdout + result.stderr


def test_every_unit_verifies_clean() -> None:
    assert len(UNITS) >= 8
    assert verify(UNITS) == []


def test_no_ordering_cycle_with_cloud_init(tmp_path: Path) -> None:
    """On Debian and Ubuntu cloud-final.service runs after multi-user.target: a unit wanted by
    multi-user.target and ordered after cloud-final makes a cycle, and systemd deletes jobs."""
    findings = boot_findings(image_root(tmp_path))
    assert "ordering cycle" not in findings, findings
    for unit in UNITS:
        assert "cloud-final" not in re.sub(r"#.*", "", unit.read_text()), unit.name


def test_the_cycle_check_catches_an_unit_ordered_after_cloud_final(tmp_path: Path) -> None:
    late = (
        "[Unit]\nAfter=cloud-final.service\n[Service]\nType=oneshot\nExecStart=/bin/true\n"
        "[Install]\nWantedBy=multi-user.target\n"
    )
    findings = boot_findings(image_root(tmp_path, {"cvstack-late.service": late}))
    assert "Found ordering cycle" in findings and "cvstack-late.service" in findings


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    broken = tmp_path / "cvstack-broken.service"
    broken.write_text(
        "[Unit]\nDescription=x\n\n[Service]\nExecStart=/usr/bin/true\nRestrat=always\n"
    )
    assert any("Restrat" in finding for finding in verify([broken]))


@pytest.mark.parametrize(
    ("unit", "requires", "after"),
    [
        (SETTINGS, {"docker.service"}, {"docker.service", "network-online.target"}),
        ("cvstack-model-sync.service", {"docker.service", SETTINGS}, {SETTINGS}),
        ("cvstack-backend-env.service", {"docker.service", SETTINGS}, {SETTINGS}),
        ("cvstack-tls.service", {SETTINGS}, {SETTINGS}),
        (
            "cvstack-engines.service",
            {"cvstack-model-sync.service", SETTINGS},
            {"cvstack-model-sync.service", SETTINGS},
        ),
        (
            "cvstack-stack.service",
            {"cvstack-engines.service", "cvstack-backend-env.service", "docker.service"},
            {"cvstack-engines.service", "cvstack-backend-env.service", "docker.service"},
        ),
    ],
)
def test_boot_order(unit: str, requires: set[str], after: set[str]) -> None:
    settings = unit_settings(UNITS_DIR / unit)
    assert requires <= words(settings, "Unit.Requires")
    assert after <= words(settings, "Unit.After")


def test_settings_come_from_the_boot_not_from_user_data() -> None:
    """Every unit reads /run/cvstack/stack.env, which cvstack-settings writes at every boot;
    the heartbeat needs only the region from user data (so a failed boot still reports)."""
    for unit in UNITS:
        assert "/etc/cvstack/stack.env" not in unit.read_text(), unit.name
    stack_env = {"cvstack-model-sync", "cvstack-backend-env"}
    for name in stack_env:
        text = (UNITS_DIR / f"{name}.service").read_text()
        assert "/run/cvstack/stack.env" in text, name
    settings = unit_settings(UNITS_DIR / SETTINGS)
    assert settings["Unit.ConditionPathExists"] == ["/etc/cvstack/instance.env"]
    assert "cvstack instance settings" in settings["Service.ExecStart"][0]
    assert "--out /run/cvstack/stack.env" in settings["Service.ExecStart"][0]
    for name in (SETTINGS, "cvstack-backend-env.service"):  # both write into /run/cvstack
        writer = unit_settings(UNITS_DIR / name)
        assert writer["Service.RuntimeDirectory"] == ["cvstack"], name
        assert writer["Service.RuntimeDirectoryPreserve"] == ["yes"], name
        assert writer["Service.RuntimeDirectoryMode"] == ["0700"], name
    for name in (SETTINGS, "cvstack-model-sync.service", "cvstack-backend-env.service"):
        aws = unit_settings(UNITS_DIR / name)
        assert "-/etc/cvstack/aws.env" in aws["Service.EnvironmentFile"], name
        assert "-e AWS_ENDPOINT_URL" in aws["Service.ExecStart"][0], name
    heartbeat = unit_settings(UNITS_DIR / "cvstack-heartbeat.service")
    assert SETTINGS not in words(heartbeat, "Unit.Requires")
    assert "--env-file /etc/cvstack/instance.env" in heartbeat["Service.ExecStart"][0]


def test_tls_comes_before_nginx_and_heartbeat_runs_every_minute() -> None:
    tls = unit_settings(UNITS_DIR / "cvstack-tls.service")
    assert "nginx.service" in words(tls, "Unit.Before")
    assert "nginx.service" in words(tls, "Install.RequiredBy")
    assert not (UNITS_DIR / "cvstack-certbot.service").exists()  # CloudFront's TLS instead
    timer = unit_settings(UNITS_DIR / "cvstack-heartbeat.timer")
    assert timer["Timer.OnUnitActiveSec"] == ["1min"]


def test_the_origin_secret_is_written_before_nginx_starts_and_its_failure_fails_closed() -> None:
    """nginx reads origin-secret.map when it starts: backend-env, which writes it, comes first.
    Ordered, not required: when backend-env fails nginx still starts, its origin listener
    refuses everything (no map entry) and the operator's TLS listener stays reachable."""
    backend_env = unit_settings(UNITS_DIR / "cvstack-backend-env.service")
    assert "nginx.service" in words(backend_env, "Unit.Before")
    assert "nginx.service" not in words(backend_env, "Install.RequiredBy")
    assert "-v /run/cvstack:/run/cvstack" in backend_env["Service.ExecStart"][0]


def test_stack_removes_its_containers_on_stop_and_compose_restarts_crashes() -> None:
    stack = unit_settings(UNITS_DIR / "cvstack-stack.service")
    assert stack["Service.ExecStart"] == ["/opt/cvstack/ami/scripts/compose.sh up"]
    assert stack["Service.ExecStop"] == ["/opt/cvstack/ami/scripts/compose.sh down"]
    assert stack["Service.Restart"] == ["on-failure"]
    assert "/opt/cvstack/ami/versions.env" in stack["Service.EnvironmentFile"]  # TRITON_FLAVOUR


def test_provisioning_installs_and_enables_every_unit() -> None:
    enabled = set(enabled_by_provisioning())
    installable = {
        path.name
        for path in UNITS
        if {"Install.WantedBy", "Install.RequiredBy"} & set(unit_settings(path))
    }
    assert installable <= enabled, installable - enabled


def test_the_fleet_agent_runs_only_in_fleet_mode_and_shares_its_drain_folder() -> None:
    """Skipped (not failed) unless stack.env names a fleet group; restarted whenever it stops;
    its folder, which the backend's container bind-mounts, outlives its restarts."""
    agent = unit_settings(UNITS_DIR / "cvstack-fleet-agent.service")
    assert agent["Service.ExecCondition"] == [
        "/usr/bin/grep -q ^CVSTACK_FLEET_GROUP_NAME=. /run/cvstack/stack.env"
    ]
    assert {SETTINGS, "docker.service"} <= words(agent, "Unit.Requires") & words(
        agent, "Unit.After"
    )
    assert agent["Service.Restart"] == ["always"]
    assert agent["Service.RuntimeDirectory"] == ["cvstack-fleet"]
    assert agent["Service.RuntimeDirectoryMode"] == ["0755"]
    assert agent["Service.RuntimeDirectoryPreserve"] == ["yes"]
    command = agent["Service.ExecStart"][0]
    assert "--env-file /run/cvstack/stack.env" in command
    assert "-v /run/cvstack-fleet:/run/cvstack-fleet " in command
    assert "cvstack instance fleet-agent --drain-file /run/cvstack-fleet/drain" in command
    heartbeat = unit_settings(UNITS_DIR / "cvstack-heartbeat.service")
    assert "-/run/cvstack/stack.env" in heartbeat["Service.EnvironmentFile"]  # optional
    assert "-e CVSTACK_FLEET_GROUP_NAME" in heartbeat["Service.ExecStart"][0]


def test_no_unit_that_others_require_restarts_itself() -> None:
    """systemd before 254 (Debian 12 has 252, Ubuntu 22.04 249) fails every unit that
    Requires= a oneshot at the oneshot's first failure and never starts them again after its
    Restart= succeeds (seen under systemd-nspawn: "Dependency failed"). Steps that others need
    retry inside themselves (ami/scripts/retry.sh) instead."""
    required = {word for path in UNITS for word in words(unit_settings(path), "Unit.Requires")} | {
        path.name for path in UNITS if "Install.RequiredBy" in unit_settings(path)
    }
    ours = {path.name for path in UNITS} & required
    assert {"cvstack-settings.service", "cvstack-model-sync.service"} <= ours
    for name in ours:
        settings = unit_settings(UNITS_DIR / name)
        assert settings.get("Service.Restart", ["no"]) == ["no"], name
    for name in ("cvstack-settings", "cvstack-model-sync", "cvstack-backend-env"):
        exec_start = unit_settings(UNITS_DIR / f"{name}.service")["Service.ExecStart"][0]
        assert exec_start.startswith("/opt/cvstack/ami/scripts/retry.sh "), name
