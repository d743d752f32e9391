"""The boot report: the boot-requested tag read through an IMDSv2 stand-in (instance-metadata
tags), the real backend's /ready waited for, BootSeconds published to moto's CloudWatch and read
back by the /status Lambda's own code; boots it must not time publish nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from http.server import HTTPServer
from pathlib import Path
from threading import Thread
from typing import ClassVar

import boto3
import pytest

from backend.cli import main
from backend.instance.boot_report import (
    BOOT_REQUESTED_TAG,
    BOOT_SECONDS,
    MAX_PENDING_S,
    BootNotTimedError,
    time_boot,
)
from backend.instance.imds import IMDS_ENDPOINT_VARIABLE
from backend.triton_server.local_server import ServerAddress
from lambdas.shared import boot_times, instance
from lambdas.shared.boot_times import boot_estimate
from tests.backend.service.conftest import BackendServer
from tests.instance.test_heartbeat import INSTANCE, ImdsV2
from tests.instance.test_units import UNITS_DIR, unit_settings, words

REGION = "eu-west-1"
GROUP = "CvStack-gpu-fleet"


class TaggedImds(ImdsV2):
    """IMDSv2 with instance-metadata tags on; each test sets the boot-requested tag or not."""

    tags: ClassVar[dict[str, str]] = {}
    url: ClassVar[str] = ""

    @classmethod
    def set_tag(cls, value: str | None) -> None:
        cls.tags = {} if value is None else {BOOT_REQUESTED_TAG: value}


@pytest.fixture
def tagged_imds(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[TaggedImds]]:
    server = HTTPServer(("127.0.0.1", 0), TaggedImds)
    Thread(target=server.serve_forever, daemon=True).start()
    TaggedImds.url = f"http://127.0.0.1:{server.server_port}"
    monkeypatch.setenv(IMDS_ENDPOINT_VARIABLE, TaggedImds.url)
    monkeypatch.setenv("CVSTACK_AWS_REGION", REGION)
    TaggedImds.set_tag(None)
    yield TaggedImds
    server.shutdown()


@pytest.fixture
def uptime(tmp_path: Path) -> Path:
    """This boot's /proc/uptime: up 20 s."""
    return uptime_file(tmp_path, 20)


def uptime_file(tmp_path: Path, seconds: float) -> Path:
    """A /proc/uptime as the kernel writes it: up `seconds`."""
    path = tmp_path / "uptime"
    path.write_text(f"{seconds:.2f} 12.34\n")
    return path


def report(backend_url: str, uptime: Path, *extra: str) -> int:
    """`cvstack instance boot-report` as the unit runs it, with this boot's uptime."""
    return main(
        [
            "instance",
            "boot-report",
            "--backend-url",
            backend_url,
            "--uptime-file",
            str(uptime),
            *extra,
        ]
    )


def test_names_match_the_contract_status_reads() -> None:
    assert (BOOT_REQUESTED_TAG, BOOT_SECONDS) == (
        instance.BOOT_REQUESTED_TAG,
        boot_times.BOOT_SECONDS,
    )


def test_a_boot_is_timed_to_the_ready_backend_and_status_reads_it_back(
    fake_aws: None,
    tagged_imds: type[TaggedImds],
    start_backend: Callable[..., BackendServer],
    capsys: pytest.CaptureFixture[str],
    uptime: Path,
) -> None:
    """As the unit runs it: the id from IMDS, the region from instance.env; the /status code
    then answers this boot as its estimate."""
    backend = start_backend()
    tagged_imds.set_tag((datetime.now(UTC) - timedelta(seconds=37)).isoformat())
    assert report(backend.url, uptime) == 0
    assert "boot took 37." in capsys.readouterr().out
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    answer = boot_estimate(
        cloudwatch,
        ("InstanceId", INSTANCE),
        default_s=120,
        now=datetime.now(UTC) + timedelta(minutes=1),
    )
    assert (answer.seconds, answer.samples) == (37, 1)


def test_a_fleet_boot_is_published_for_the_group(
    fake_aws: None,
    tagged_imds: type[TaggedImds],
    start_backend: Callable[..., BackendServer],
    uptime: Path,
) -> None:
    backend = start_backend()
    tagged_imds.set_tag((datetime.now(UTC) - timedelta(seconds=50)).isoformat())
    assert report(backend.url, uptime, "--fleet-group-name", GROUP) == 0
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    later = datetime.now(UTC) + timedelta(minutes=1)
    group = boot_estimate(cloudwatch, ("AutoScalingGroupName", GROUP), default_s=1, now=later)
    alone = boot_estimate(cloudwatch, ("InstanceId", INSTANCE), default_s=1, now=later)
    assert (group.samples, alone.samples) == (1, 0)


@pytest.mark.parametrize(
    ("tag", "said"),
    [
        (None, "no cvstack:boot-requested tag in the instance metadata"),
        ("last tuesday", "the cvstack:boot-requested tag is not a time: 'last tuesday'"),
    ],
)
@pytest.mark.usefixtures("fake_aws")
def test_a_boot_no_start_asked_for_is_not_timed_and_publishes_nothing(
    tagged_imds: type[TaggedImds],
    capsys: pytest.CaptureFixture[str],
    uptime: Path,
    tag: str | None,
    said: str,
) -> None:
    """Not a failure (the unit succeeds), and the backend is not even waited for."""
    tagged_imds.set_tag(tag)
    closed = f"http://127.0.0.1:{ServerAddress.on_free_ports().http_port}"
    assert report(closed, uptime, "--timeout-s", "600") == 0
    assert said in capsys.readouterr().out
    listed = boto3.client("cloudwatch", region_name=REGION).list_metrics(MetricName=BOOT_SECONDS)
    assert listed["Metrics"] == []


@pytest.mark.parametrize(
    ("requested_before_kernel_s", "timed"),
    [(0.0, True), (MAX_PENDING_S - 5, True), (MAX_PENDING_S + 60, False), (-5.0, False)],
)
def test_only_a_request_from_this_boot_is_timed(
    tagged_imds: type[TaggedImds],
    start_backend: Callable[..., BackendServer],
    tmp_path: Path,
    requested_before_kernel_s: float,
    timed: bool,
) -> None:
    """A tag left from an earlier boot (an operator's stop and start since) or written after
    the kernel started (a clock gone wrong) must not teach the estimate a wrong boot."""
    backend = start_backend()
    up_s = 30.0
    requested = datetime.now(UTC) - timedelta(seconds=up_s + requested_before_kernel_s)
    tagged_imds.set_tag(requested.isoformat())
    uptime = uptime_file(tmp_path, up_s)
    if timed:
        result = time_boot(tagged_imds.url, backend.url, timeout_s=30, uptime=uptime)
        assert result.seconds >= up_s + requested_before_kernel_s
    else:
        with pytest.raises(BootNotTimedError, match="is not from this boot"):
            time_boot(tagged_imds.url, backend.url, timeout_s=30, uptime=uptime)


def test_a_backend_never_ready_fails_the_unit_with_the_reason(
    fake_aws: None,
    tagged_imds: type[TaggedImds],
    capsys: pytest.CaptureFixture[str],
    uptime: Path,
) -> None:
    tagged_imds.set_tag((datetime.now(UTC) - timedelta(seconds=25)).isoformat())
    closed = f"http://127.0.0.1:{ServerAddress.on_free_ports().http_port}"
    assert report(closed, uptime, "--timeout-s", "1") == 2
    assert f"{closed}/ready did not answer ready within 1 s" in capsys.readouterr().err


def test_the_unit_runs_once_early_with_the_fleet_group() -> None:
    """Early (after the settings, which write stack.env, not after the stack: it must see the
    backend become ready, not notice it late), and without holding multi-user.target."""
    unit = unit_settings(UNITS_DIR / "cvstack-boot-report.service")
    assert "cvstack-settings.service" in words(unit, "Unit.After")
    assert "cvstack-stack.service" not in words(unit, "Unit.After")
    assert "cvstack-settings.service" not in words(unit, "Unit.Requires")
    assert unit["Service.Type"] == ["exec"]
    assert unit["Service.RuntimeMaxSec"] == ["16min"]
    assert "-/run/cvstack/stack.env" in unit["Service.EnvironmentFile"]
    assert "-e CVSTACK_FLEET_GROUP_NAME" in unit["Service.ExecStart"][0]
    assert "cvstack instance boot-report" in unit["Service.ExecStart"][0]
