"""Instance state plus the backend's own readiness answer from GET /ready."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from lambdas.shared.boot_times import boot_elapsed_s, boot_estimate
from lambdas.shared.instance import describe_instance
from lambdas.shared.metrics import DIMENSION

if TYPE_CHECKING:
    from datetime import datetime

    from mypy_boto3_cloudwatch import CloudWatchClient
    from mypy_boto3_ec2 import EC2Client

READY_SCHEMES = frozenset({"https", "http"})
MAX_BODY_BYTES = 16_384


@dataclass(frozen=True)
class ReadyCheck:
    """The outcome of one GET /ready: `ready` only on HTTP 200."""

    ready: bool
    http_status: int | None
    detail: object


def check_ready(host: str, *, scheme: str = "https", timeout_s: float = 2.0) -> ReadyCheck:
    """GET `scheme://host/ready` once; any failure is 'not ready' with the reason."""
    if scheme not in READY_SCHEMES:
        raise ValueError(f"scheme must be one of {sorted(READY_SCHEMES)}, not {scheme!r}")
    url = f"{scheme}://{host}/ready"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return ReadyCheck(response.status == 200, response.status, _json(response.read()))
    except urllib.error.HTTPError as error:
        return ReadyCheck(False, error.code, _json(error.read()))
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        reason = getattr(error, "reason", error)
        return ReadyCheck(False, None, f"backend unreachable at {url}: {reason}")


def instance_status(
    ec2: EC2Client,
    cloudwatch: CloudWatchClient,
    instance_id: str,
    endpoint_host: str,
    *,
    scheme: str,
    timeout_s: float,
    boot_default_s: int,
    now: datetime,
) -> dict[str, object]:
    """The /status body: state, endpoint, (when running) the backend's readiness, the boot
    estimate from recent boots and, while booting, the seconds since the boot was asked for."""
    info = describe_instance(ec2, instance_id)
    body: dict[str, object] = {
        "state": info.state,
        "endpoint": f"wss://{endpoint_host}/ws/inference",
        "ready": False,
        "backend": None,
    }
    if info.state == "running":
        check = check_ready(endpoint_host, scheme=scheme, timeout_s=timeout_s)
        body.update(ready=check.ready, backend=asdict(check))
    estimate = boot_estimate(
        cloudwatch, (DIMENSION, instance_id), default_s=boot_default_s, now=now
    )
    booting = info.state == "pending" or (info.state == "running" and not body["ready"])
    elapsed = boot_elapsed_s(info.boot_requested_at, now) if booting else None
    return {**body, **estimate.fields(), "boot_elapsed_s": elapsed}


def _json(raw: bytes) -> object:
    text = raw[:MAX_BODY_BYTES].decode(errors="replace")
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text
