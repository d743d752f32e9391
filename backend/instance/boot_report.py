"""The boot report: how long this boot took, from start_server's request to the backend's first
`/ready` 200, published for the /status estimate (the contract: lambdas/shared/boot_times.py).

`cvstack instance boot-report` runs once per boot (systemd/cvstack-boot-report.service, after
the stack). It reads this instance's `cvstack:boot-requested` tag from IMDS (instance-metadata
tags), waits for `/ready` on loopback and publishes `BootSeconds`: with the instance's
dimension, or in a fleet the group's. A boot it cannot time honestly publishes nothing, with
the reason: no tag (a start no /start asked for: an operator's, or Auto Scaling's in a fleet),
a tag that is not a time, or one not from this boot (after the kernel started, or more than
`MAX_PENDING_S` before it: a tag left from an earlier boot). The estimate never learns a boot
it did not see.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from backend.instance.heartbeat import DIMENSION, FLEET_DIMENSION, NAMESPACE, backend_works
from backend.instance.imds import read_metadata

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient

BOOT_REQUESTED_TAG = "cvstack:boot-requested"
BOOT_SECONDS = "BootSeconds"
# EC2's pending phase, from the start request to the kernel's first tick, stays well under this.
MAX_PENDING_S = 300.0
UPTIME = Path("/proc/uptime")


class BootNotTimedError(Exception):
    """This boot cannot be timed; the message says why."""


@dataclass(frozen=True)
class BootReport:
    """One timed boot: when it was asked for, when the backend was first ready."""

    requested_at: datetime
    ready_at: datetime

    @property
    def seconds(self) -> float:
        return (self.ready_at - self.requested_at).total_seconds()


def boot_requested_at(imds_url: str) -> datetime:
    """This instance's boot-requested tag, through IMDS; `BootNotTimedError` when absent or bad.
    IMDS failures raise OSError (as `read_metadata`)."""
    value = read_metadata(imds_url, f"tags/instance/{BOOT_REQUESTED_TAG}")
    if not value:
        raise BootNotTimedError(
            f"no {BOOT_REQUESTED_TAG} tag in the instance metadata: no /start asked for this "
            "boot (or instance-metadata tags are off), so it is not timed"
        )
    try:
        requested = datetime.fromisoformat(value)
    except ValueError:
        raise BootNotTimedError(f"the {BOOT_REQUESTED_TAG} tag is not a time: {value!r}") from None
    return requested if requested.tzinfo else requested.replace(tzinfo=UTC)


def kernel_started_at(now: datetime, uptime: Path = UPTIME) -> datetime:
    """When this boot's kernel started: `now` less the seconds in /proc/uptime."""
    return now - timedelta(seconds=float(uptime.read_text().split()[0]))


def check_this_boot(requested_at: datetime, kernel_started: datetime) -> None:
    """`BootNotTimedError` unless the request came before this kernel, by `MAX_PENDING_S` at
    most."""
    lead_s = (kernel_started - requested_at).total_seconds()
    if not 0 <= lead_s <= MAX_PENDING_S:
        raise BootNotTimedError(
            f"the {BOOT_REQUESTED_TAG} tag ({requested_at.isoformat()}) is not from this boot: "
            f"the kernel started {lead_s:.0f} s after it (expected 0 to {MAX_PENDING_S:.0f} s)"
        )


def wait_ready(
    backend_url: str,
    *,
    timeout_s: float,
    poll_s: float = 0.5,
    now: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> datetime:
    """The moment `/ready` first says ready; TimeoutError after `timeout_s` without it."""
    deadline = time.monotonic() + timeout_s
    while True:
        if backend_works(backend_url, timeout_s=min(2.0, timeout_s)):
            return now()
        if time.monotonic() >= deadline:
            raise TimeoutError(f"{backend_url}/ready did not answer ready within {timeout_s:g} s")
        time.sleep(poll_s)


def publish(
    cloudwatch: CloudWatchClient, report: BootReport, instance_id: str, group_name: str | None
) -> None:
    """One `BootSeconds` datapoint at the ready moment, for the instance or its group."""
    dimension = (FLEET_DIMENSION, group_name) if group_name else (DIMENSION, instance_id)
    cloudwatch.put_metric_data(
        Namespace=NAMESPACE,
        MetricData=[
            {
                "MetricName": BOOT_SECONDS,
                "Dimensions": [{"Name": dimension[0], "Value": dimension[1]}],
                "Timestamp": report.ready_at,
                "Value": report.seconds,
                "Unit": "Seconds",
            }
        ],
    )


def time_boot(
    imds_url: str, backend_url: str, *, timeout_s: float, uptime: Path = UPTIME
) -> BootReport:
    """Read and check the request time, then wait for the backend: `BootNotTimedError` for a boot
    not to time, TimeoutError for a backend never ready, OSError when IMDS fails."""
    requested = boot_requested_at(imds_url)
    check_this_boot(requested, kernel_started_at(datetime.now(UTC), uptime))
    return BootReport(requested, wait_ready(backend_url, timeout_s=timeout_s))
