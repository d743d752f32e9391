"""/status in fleet mode: the group's sizes, its sessions (live and waiting) and free slots,
and whether the backend answers /ready through the front door."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime
from typing import TYPE_CHECKING

from lambdas.shared.boot_times import boot_estimate
from lambdas.shared.fleet import AutoScalingClient, FleetState, describe_fleet
from lambdas.shared.fleet_sessions import latest_sessions
from lambdas.shared.metrics import FLEET_DIMENSION
from lambdas.status.logic import check_ready

if TYPE_CHECKING:
    from mypy_boto3_cloudwatch import CloudWatchClient


def fleet_status(
    autoscaling: AutoScalingClient,
    cloudwatch: CloudWatchClient,
    group_name: str,
    endpoint_host: str,
    *,
    sessions_per_instance: int,
    scheme: str,
    timeout_s: float,
    boot_default_s: int,
    now: datetime,
) -> dict[str, object]:
    """The /status body: `ready` once an instance is in service and /ready answers 200 (the
    load balancer routes the probe to a healthy instance); the boot estimate from the group's
    series, and no elapsed time (nothing records when Auto Scaling started an instance:
    lambdas/shared/boot_times.py)."""
    fleet = describe_fleet(autoscaling, group_name)
    sessions = latest_sessions(cloudwatch, fleet.in_service, now)
    body: dict[str, object] = {
        "state": fleet_state(fleet),
        "endpoint": f"wss://{endpoint_host}/ws/inference",
        "ready": False,
        "backend": None,
        "fleet": {
            **fleet.summary(),
            **sessions.slots(len(fleet.in_service), sessions_per_instance),
        },
    }
    if fleet.in_service:
        check = check_ready(endpoint_host, scheme=scheme, timeout_s=timeout_s)
        body.update(ready=check.ready, backend=asdict(check))
    estimate = boot_estimate(
        cloudwatch, (FLEET_DIMENSION, group_name), default_s=boot_default_s, now=now
    )
    return {**body, **estimate.fields(), "boot_elapsed_s": None}


def fleet_state(fleet: FleetState) -> str:
    """The fleet in the words single mode uses for its instance, so the page needs no change:
    running (an instance in service), pending (on its way), stopping (at zero, instances still
    leaving) or stopped."""
    if fleet.in_service:
        return "running"
    if fleet.desired > 0:
        return "pending"
    return "stopping" if fleet.members else "stopped"
