"""The boot rehearsal (`make rehearse`, and part of `make test`): the instance image booted for
real, twice, the way EC2 boots the AMI.

systemd is PID 1 of a Debian bookworm machine (systemd-nspawn); cloud-init runs the user data
of the synthesized CDK template; Docker's daemon inside runs the real backend image and
`ami/compose.yaml` with a CPU Triton image; models, settings, secret and heartbeat go to a
moto_server, credentials and the instance id come from an IMDSv2 stand-in. The first boot is a
single-mode instance; the second, after a halt, a settings change and the fleet keys, a fleet
instance whose fleet agent runs and drains it when IMDS says `Terminated` (fleet_mode.py).
Step timings go to `.cvstack/rehearsal/report.md`.
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from websockets.sync.client import connect
from websockets.typing import Origin

from backend.instance.boot_report import BOOT_REQUESTED_TAG, BOOT_SECONDS
from backend.security.session_token import issue_token
from infra_cdk.front_door import ORIGIN_SECRET_HEADER
from tests.rehearsal.fleet_mode import (
    AGENT_UNIT,
    FleetRun,
    check_agent_skipped,
    check_fleet_instance,
    fleet_settings,
)
from tests.rehearsal.harness import (
    INSTANCE_ADDRESS,
    STATE_DIR,
    Boot,
    Rehearsal,
    UnitTimes,
    aws_client,
    instance_tls_context,
    wait_ready,
)
from tests.tls_websocket import serialized

pytestmark = [pytest.mark.rehearsal, pytest.mark.timeout(900)]

BOOT_REPORT_UNIT = "cvstack-boot-report.service"

# docs/deploy.md's boot order: (earlier, later) = `later` starts only once `earlier` is done.
ORDER = [
    ("cloud-init.service", "network-online.target"),
    ("network-online.target", "docker.service"),
    ("docker.service", "cvstack-settings.service"),
    ("network-online.target", "cvstack-settings.service"),
    ("cvstack-settings.service", "cvstack-model-sync.service"),
    ("cvstack-settings.service", "cvstack-backend-env.service"),
    ("cvstack-backend-env.service", "nginx.service"),
    ("cvstack-settings.service", "cvstack-tls.service"),
    ("cvstack-tls.service", "nginx.service"),
    ("cvstack-model-sync.service", "cvstack-engines.service"),
    ("cvstack-engines.service", "cvstack-stack.service"),
    ("cvstack-backend-env.service", "cvstack-stack.service"),
    ("cvstack-settings.service", AGENT_UNIT),
]
# The rows of the report, in boot order.
STEPS = [
    "cloud-init-local.service",
    "cloud-init.service",
    "network-online.target",
    "docker.service",
    "cvstack-settings.service",
    "cvstack-model-sync.service",
    "cvstack-backend-env.service",
    "cvstack-tls.service",
    "nginx.service",
    "cvstack-engines.service",
    "cvstack-stack.service",
    "multi-user.target",
    "cloud-final.service",
    "cvstack-heartbeat.service",
    AGENT_UNIT,
]
PREWARM_UNIT = "cvstack-prewarm.service"
NEW_ORIGIN = "https://second-boot.rehearsal.example"
HEARTBEAT_AFTER_S = 60  # cvstack-heartbeat.timer: OnBootSec=1min
BOOT_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def rehearsal() -> Iterator[Rehearsal]:
    if os.geteuid() != 0:
        pytest.skip("the boot rehearsal needs root (systemd-nspawn, network namespaces)")
    for tool in ("systemd-nspawn", "mmdebstrap", "dockerd", "nsenter"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; run `make system-deps`")
    with Rehearsal() as prepared:
        yield prepared


def check_boot(boot: Boot) -> dict[str, UnitTimes]:
    """No ordering cycle, no failed unit, the documented order; returns the unit times."""
    state = boot.wait_started(BOOT_TIMEOUT_S)
    console = boot.console_text()
    failed = boot.failed_units()
    diagnosis = "\n".join(f"--- journal of {unit}\n{boot.journal(unit)}" for unit in failed)
    assert "ordering cycle" not in console, console[-4000:]
    assert not failed, f"failed units: {failed} (system {state})\n{diagnosis}"
    assert state == "running", state
    times = boot.unit_times(STEPS)
    for earlier, later in ORDER:
        done, starts = times[earlier].finished, times[later].started
        assert done is not None, f"{earlier} never became active"
        assert starts is not None, f"{later} never started"
        assert done <= starts, f"{later} started at {starts:.2f} s, before {earlier} was done"
    return times


def websocket_reply(context: ssl.SSLContext, origin: str, token: str) -> dict[str, object]:
    """The first message of `/ws/inference` through nginx, for a page on `origin`."""
    with connect(
        f"wss://{INSTANCE_ADDRESS}/ws/inference?token={token}",
        ssl=serialized(context),
        origin=Origin(origin),
        open_timeout=10,
    ) as websocket:
        reply: dict[str, object] = json.loads(websocket.recv(timeout=10))
    return reply


def origin_status(path: str, secret: str | None) -> int:
    """The HTTP status of `path` on the origin listener (port 80, where CloudFront connects)."""
    headers = {ORIGIN_SECRET_HEADER: secret} if secret else {}
    request = urllib.request.Request(f"http://{INSTANCE_ADDRESS}{path}", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def origin_websocket_reply(secret: str, token: str) -> dict[str, object]:
    """The first message of `/ws/inference` through the origin listener, as CloudFront opens it
    for a page served by the distribution itself (Origin = the Host it forwards)."""
    with connect(
        f"ws://{INSTANCE_ADDRESS}/ws/inference?token={token}",
        origin=Origin(f"https://{INSTANCE_ADDRESS}"),
        additional_headers={ORIGIN_SECRET_HEADER: secret},
        open_timeout=10,
    ) as websocket:
        reply: dict[str, object] = json.loads(websocket.recv(timeout=10))
    return reply


def test_the_image_boots_twice_with_changed_settings(rehearsal: Rehearsal) -> None:
    cloudwatch = aws_client("cloudwatch")
    token = issue_token(rehearsal.session_secret, now=time.time())
    assert rehearsal.cloud is not None

    # First boot: user data, settings, model download, stack, heartbeat; start_server's
    # boot-requested tag (read through IMDS) makes the boot report time it.
    tagged = tag_boot_request(rehearsal)
    first = rehearsal.boot("first")
    ready_first = wait_ready(first, BOOT_TIMEOUT_S)
    times_first = check_boot(first)
    check_agent_skipped(first)
    context = instance_tls_context(rehearsal.root)
    refused = websocket_reply(context, NEW_ORIGIN, token)
    assert refused.get("code") == "origin_not_allowed", refused
    check_origin_listener(rehearsal.origin_secret, token)
    sync_first = first.journal("cvstack-model-sync.service")
    assert " 0 downloaded" not in sync_first, sync_first
    fetched_first, log_mark = rehearsal.s3_downloads()
    assert any(key.endswith(".onnx") for key in fetched_first), fetched_first
    heartbeat = wait_for_heartbeat(first, rehearsal.cloud.instance_id, cloudwatch)
    prewarm = wait_for_prewarm(first)
    boot_seconds = check_boot_seconds(
        rehearsal.cloud.instance_id, cloudwatch, ready_first + (first.t0 - tagged)
    )
    times_first = first.unit_times(STEPS)
    imds = rehearsal.imds_requests()
    assert any(r["method"] == "PUT" and r["status"] == 200 for r in imds), imds
    assert any(
        "/iam/security-credentials/" in r["path"] and r["status"] == 200 and r["token"]
        for r in imds
    ), imds
    assert all(r["token"] for r in imds if r["method"] == "GET"), "a GET without an IMDSv2 token"
    halt_first = first.halt()

    models_prefix = rehearsal.settings["CVSTACK_MODELS_S3_URI"].split("/", 3)[3]
    # Second boot: a new allowed origin and the fleet keys in the settings parameter, and IMDS
    # says the instance is in an Auto Scaling group, in service; models already current.
    rehearsal.put_settings(
        fleet_settings(
            {
                **rehearsal.settings,
                "CVSTACK_FRONTEND_ORIGINS": rehearsal.settings["CVSTACK_FRONTEND_ORIGINS"]
                + f",{NEW_ORIGIN}",
            }
        )
    )
    rehearsal.target_lifecycle_state("InService")
    # And IMDS without credentials for the first request, as early in a real boot: the first
    # AWS step fails once and retries inside itself, and nothing after it may fail for that
    # (systemd's Restart= would have failed every unit that requires it).
    rehearsal.imds_outage(1)
    rehearsal.instance_tag(BOOT_REQUESTED_TAG, None)  # an operator's start: not timed
    second = rehearsal.boot("second")
    ready_second = wait_ready(second, BOOT_TIMEOUT_S)
    times_second = check_boot(second)
    assert "retry: try 1 of 12 failed" in second.journal("cvstack-settings.service")
    check_prewarm_skipped(second)
    check_boot_not_timed(second)
    context_second = instance_tls_context(rehearsal.root)
    accepted = websocket_reply(context_second, NEW_ORIGIN, token)
    assert accepted.get("type") != "error", accepted
    assert NEW_ORIGIN in second.exec(["cat", "/run/cvstack/backend.env"])
    sync_second = second.journal("cvstack-model-sync.service")
    assert " 0 downloaded" in sync_second, sync_second
    fetched_second, _ = rehearsal.s3_downloads(log_mark)
    assert fetched_second == [f"{models_prefix}manifest.json"], fetched_second  # no GetObject
    # Fleet mode: the agent joins, then Auto Scaling takes the instance out during a session.
    fleet_token = issue_token(rehearsal.session_secret, now=time.time())
    fleet = check_fleet_instance(rehearsal, second, context_second, NEW_ORIGIN, fleet_token)

    report = render_report(
        rehearsal,
        [("first boot", times_first, ready_first), ("second boot", times_second, ready_second)],
        heartbeat=heartbeat,
        prewarm=prewarm,
        boot_seconds=boot_seconds,
        halt_s=halt_first,
        fleet=fleet,
    )
    (STATE_DIR / "report.md").write_text(report)
    print("\n" + report)


def wait_for_heartbeat(boot: Boot, instance_id: str, cloudwatch: object) -> float:
    """Seconds from start until the timer's first heartbeat reached moto CloudWatch with
    BackendReady=1 (the heartbeat saw the backend through /ready)."""
    deadline = boot.t0 + HEARTBEAT_AFTER_S + 60
    now = datetime.now(UTC)
    while time.monotonic() < deadline:
        statistics = cloudwatch.get_metric_statistics(  # type: ignore[attr-defined]
            Namespace="cvstack",
            MetricName="BackendReady",
            Dimensions=[{"Name": "InstanceId", "Value": instance_id}],
            StartTime=now - timedelta(minutes=10),
            EndTime=now + timedelta(minutes=10),
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
        if statistics:
            assert max(p["Maximum"] for p in statistics) == 1.0, statistics
            reached = time.monotonic() - boot.t0
            while (
                boot.unit_times(["cvstack-heartbeat.service"])["cvstack-heartbeat.service"].finished
                is None
                and time.monotonic() < deadline
            ):
                time.sleep(0.5)
            return reached
        time.sleep(1)
    raise AssertionError(
        "no heartbeat datapoint in CloudWatch\n" + boot.journal("cvstack-heartbeat.service")
    )


def wait_for_prewarm(boot: Boot, timeout_s: float = 120) -> str:
    """The first boot's read of the root volume (cvstack-prewarm.service): its own summary line,
    once it has exited successfully and left its stamp."""
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        state = boot.exec(["systemctl", "show", "--property=ActiveState,Result", PREWARM_UNIT])
        if "ActiveState=inactive" in state or "ActiveState=failed" in state:
            break
        time.sleep(0.5)
    journal = boot.journal(PREWARM_UNIT)
    assert "Result=success" in state and "ActiveState=inactive" in state, f"{state}\n{journal}"
    assert boot.exec(["cat", "/var/lib/cvstack/prewarmed"]).strip(), "no stamp"
    [line] = [line for line in journal.splitlines() if "prewarm: read" in line]
    return line.split("prewarm: ", 1)[1]


def check_origin_listener(secret: str, token: str) -> None:
    """The front door's listener: nothing without CloudFront's secret, the backend with it, and
    a same-origin page (allowlist "self" from the stack's settings) gets its session."""
    assert origin_status("/ready", None) == 403
    assert origin_status("/ready", "x" * len(secret)) == 403
    assert origin_status("/ready", secret) == 200
    assert origin_status("/metrics", secret) == 403
    same_origin = origin_websocket_reply(secret, token)
    assert same_origin.get("type") != "error", same_origin


def tag_boot_request(rehearsal: Rehearsal) -> float:
    """Tag the instance as start_server does when it boots it; returns when (monotonic)."""
    rehearsal.instance_tag(BOOT_REQUESTED_TAG, datetime.now(UTC).isoformat())
    return time.monotonic()


def check_boot_seconds(
    instance_id: str, cloudwatch: object, expected_s: float, timeout_s: float = 60
) -> float:
    """The tagged boot's one `BootSeconds` datapoint, as cvstack-boot-report published it to moto
    CloudWatch: the tag to /ready, as the test saw it (`expected_s`, through nginx and TLS),
    within 3 s (the report polls /ready on loopback every 0.5 s from early in the boot)."""
    deadline = time.monotonic() + timeout_s
    now = datetime.now(UTC)
    while time.monotonic() < deadline:
        points = cloudwatch.get_metric_statistics(  # type: ignore[attr-defined]
            Namespace="cvstack",
            MetricName=BOOT_SECONDS,
            Dimensions=[{"Name": "InstanceId", "Value": instance_id}],
            StartTime=now - timedelta(minutes=10),
            EndTime=now + timedelta(minutes=10),
            Period=60,
            Statistics=["Maximum", "SampleCount"],
        )["Datapoints"]
        if points:
            assert sum(p["SampleCount"] for p in points) == 1, points
            seconds = float(points[0]["Maximum"])
            assert expected_s - 3 <= seconds <= expected_s + 3, (seconds, expected_s)
            return seconds
        time.sleep(1)
    raise AssertionError(f"no {BOOT_SECONDS} datapoint in CloudWatch")


def check_boot_not_timed(boot: Boot, timeout_s: float = 60) -> None:
    """A boot without the boot-requested tag publishes nothing and says why; the unit succeeds."""
    deadline = time.monotonic() + timeout_s
    while boot.exec(["systemctl", "show", "--property=ActiveState", BOOT_REPORT_UNIT]).strip() != (
        "ActiveState=inactive"
    ):
        assert time.monotonic() < deadline, boot.journal(BOOT_REPORT_UNIT)
        time.sleep(0.5)
    journal = boot.journal(BOOT_REPORT_UNIT)
    assert f"boot not timed: no {BOOT_REQUESTED_TAG} tag" in journal, journal


def check_prewarm_skipped(boot: Boot) -> None:
    """The root volume was read once, on its first boot: not again."""
    skipped = boot.exec(["systemctl", "show", "--property=ConditionResult", PREWARM_UNIT])
    assert skipped.strip() == "ConditionResult=no", skipped


def render_report(
    rehearsal: Rehearsal,
    boots: list[tuple[str, dict[str, UnitTimes], float]],
    *,
    heartbeat: float,
    prewarm: str,
    boot_seconds: float,
    halt_s: float,
    fleet: FleetRun,
) -> str:
    """The markdown table for docs/benchmarks.md."""

    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f}"

    header = "| step | " + " | ".join(f"{name}: start → done (s)" for name, _, _ in boots) + " |"
    lines = [
        "Boot rehearsal (`make rehearse`): seconds since the machine was started, from "
        "systemd's own timestamps; 2-core CI machine, CPU Triton, random-weight models.",
        "",
        header,
        "|---|" + "---|" * len(boots),
    ]
    for unit in STEPS:
        cells = [f"{cell(t[unit].started)} → {cell(t[unit].finished)}" for _, t, _ in boots]
        lines.append(f"| `{unit}` | " + " | ".join(cells) + " |")
    lines.append(
        "| **`/ready` 200 through nginx (TLS)** | "
        + " | ".join(f"**{ready:.1f}**" for _, _, ready in boots)
        + " |"
    )
    lines += [
        "",
        f"First heartbeat in CloudWatch: {heartbeat:.1f} s after the first boot started "
        f"(timer OnBootSec=1min). Halt (power off, `compose down`): {halt_s:.1f} s. "
        "The second boot includes one injected IMDS credentials outage: cvstack-settings "
        "fails its first try and retries 5 s later. "
        f"The first boot's read of the root volume (`{PREWARM_UNIT}`, in the background): "
        f"{prewarm}; the second boot skipped it. "
        f"The first boot's report (`{BOOT_REPORT_UNIT}`) published {BOOT_SECONDS} "
        f"{boot_seconds:.1f} s (tag to the backend's /ready); the second, untagged, none.",
        *(
            f"Deviation on this host: {line.removeprefix('DEVIATION: ')}"
            for line in (rehearsal.logs / "install-image.log").read_text().splitlines()
            if line.startswith("DEVIATION: ")
        ),
        "",
        fleet.summary(),
        "",
        "| setup step | s |",
        "|---|---|",
        *(f"| {name} | {seconds:.1f} |" for name, seconds in rehearsal.timer.steps.items()),
        f"| total, setup and both boots | {time.monotonic() - rehearsal.started:.1f} |",
    ]
    return "\n".join(lines) + "\n"
