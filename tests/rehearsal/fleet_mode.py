"""The boot rehearsal's second boot as a fleet instance (docs/fleet.md), for real.

Between the boots the instance becomes what `cdk deploy` with cdk.json's mode `fleet` makes of
it: the settings parameter gains the fleet keys (as infra_cdk/fleet_group.py writes them) and
IMDS answers a target lifecycle state, `InService` first. So `cvstack-fleet-agent.service`,
which the first (single-mode) boot skipped by its ExecCondition, runs: the backend image's
agent in a container of its own, reaching IMDS and the backend on the host network, with
/run/cvstack-fleet (its RuntimeDirectory) bind-mounted into it and, read-only, into the
backend's container.

moto_server has no Auto Scaling group holding this instance and lacks the lifecycle-hook calls:
each call the agent makes fails there (an HTTP 500 page), and the agent logs it and tries again
at its next poll, as with any Auto Scaling error. Then IMDS switches to `Terminated`: the agent
itself creates the drain file, the backend answers `/ready` 503 "draining" on nginx's origin and
health listeners and refuses new sessions, and a session opened before the switch keeps getting
results until its user stops it.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from backend.instance.fleet_agent import DRAIN_FILE
from backend.instance.settings import (
    DRAIN_LIMIT_S,
    FLEET_GROUP_NAME,
    FLEET_HOOK_NAME,
    FLEET_LAUNCH_HOOK_NAME,
    MAX_WAIT_S,
    parse_settings,
)
from infra_cdk.app import cdk_json_context
from infra_cdk.config import StackConfig
from infra_cdk.fleet_group import DRAIN_HOOK_NAME, FULL_INSTANCE_MAX_WAIT_S, READY_HOOK_NAME
from infra_cdk.front_door import ORIGIN_SECRET_HEADER
from tests.backend.service.conftest import Client, jpeg_frame
from tests.rehearsal.harness import INSTANCE_ADDRESS, STACK_NAME, Boot, Rehearsal
from tests.tls_websocket import serialized

T = TypeVar("T")
AGENT_UNIT = "cvstack-fleet-agent.service"
GROUP_NAME = f"{STACK_NAME}-gpu-fleet"  # infra_cdk/fleet_group.py's group_name
HEALTH_PORT = 8082  # nginx's health listener, for the fleet's load balancer
# What is awaited here is one or two of the agent's 5-s polls away: a generous deadline.
WAIT_S = 60.0
AGENT_LINES = 500  # the agent's whole journal in a rehearsal (it says each fact once)
_MONOTONIC = re.compile(r"^\[\s*([0-9]+\.[0-9]+)\]")


def fleet_settings(settings: dict[str, str]) -> dict[str, str]:
    """`settings` plus the fleet keys as infra_cdk/fleet_group.py writes them (the drain limit
    from cdk.json), checked by the instance's own parser."""
    config = StackConfig.from_context(cdk_json_context())
    fleet = {
        **settings,
        FLEET_GROUP_NAME: GROUP_NAME,
        FLEET_HOOK_NAME: DRAIN_HOOK_NAME,
        FLEET_LAUNCH_HOOK_NAME: READY_HOOK_NAME,
        DRAIN_LIMIT_S: str(config.fleet_drain_minutes * 60),
        MAX_WAIT_S: str(FULL_INSTANCE_MAX_WAIT_S),
    }
    parse_settings(json.dumps(fleet), "the rehearsal's fleet settings")
    return fleet


def wait_for(condition: Callable[[], T | None], what: str, diagnosis: Callable[[], str]) -> T:
    """The first truthy value of `condition()`, asked every half second until `WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {WAIT_S:.0f} s\n{diagnosis()}")
        time.sleep(0.5)


def agent_journal(boot: Boot) -> str:
    return boot.journal(AGENT_UNIT, lines=AGENT_LINES)


def agent_line(boot: Boot, text: str) -> str | None:
    """The agent's first journal line holding `text`."""
    return next((line for line in agent_journal(boot).splitlines() if text in line), None)


def check_agent_skipped(boot: Boot) -> None:
    """Single mode: stack.env names no fleet group, so the unit's ExecCondition skips it: not
    failed, not running."""
    unit = boot.unit_times([AGENT_UNIT])[AGENT_UNIT]
    assert (unit.result, unit.state) == ("exec-condition", "inactive"), unit
    assert "Skipped due to 'exec-condition'" in agent_journal(boot), agent_journal(boot)
    assert "CVSTACK_DRAIN_FILE" not in boot.exec(["cat", "/run/cvstack/backend.env"])


def check_agent_running(boot: Boot) -> None:
    """Running since the boot, never restarted (the container did not crash)."""
    unit = boot.unit_times([AGENT_UNIT])[AGENT_UNIT]
    assert (unit.state, unit.restarts) == ("active", 0), f"{unit}\n{agent_journal(boot)}"


def check_agent_restart(boot: Boot) -> None:
    """systemd restarts the agent (as an update of the image or a crash would): `docker run`
    passes SIGTERM on, the agent stops between two polls, and its folder stays the one the
    backend's container has bind-mounted (RuntimeDirectoryPreserve), so what the new agent
    writes there still reaches the backend (check_leave)."""
    folder = ["stat", "-c", "%i", str(DRAIN_FILE.parent)]
    before = boot.exec(folder)
    boot.exec(["systemctl", "restart", AGENT_UNIT])
    assert agent_line(boot, "fleet agent stopped"), agent_journal(boot)
    assert boot.exec(folder) == before, "a new /run/cvstack-fleet: the backend cannot see it"
    check_agent_running(boot)


def check_agent_joins(rehearsal: Rehearsal, boot: Boot) -> float:
    """The agent watches the group, sees `InService`, and once the backend is ready tries to
    complete the launch hook; moto_server fails the call, and the agent tries again at its next
    poll. Returns when the first try was, in seconds since the machine started."""
    assert rehearsal.cloud is not None
    backend_env = boot.exec(["cat", "/run/cvstack/backend.env"])
    assert f"CVSTACK_DRAIN_FILE={DRAIN_FILE}" in backend_env, backend_env
    assert f"CVSTACK_MAX_WAIT_S={FULL_INSTANCE_MAX_WAIT_S}" in backend_env, backend_env
    attempt = (
        f"Auto Scaling CompleteLifecycleAction on hook {READY_HOOK_NAME} for "
        f"{rehearsal.cloud.instance_id} in {GROUP_NAME} failed"
    )
    line = wait_for(
        lambda: agent_line(boot, attempt),
        "the agent's launch-hook call",
        lambda: agent_journal(boot),
    )
    assert line.endswith("(backend ready: launch into InService)"), line
    watching = f"watching {GROUP_NAME} (hook {DRAIN_HOOK_NAME}, launch hook {READY_HOOK_NAME})"
    assert agent_line(boot, watching), agent_journal(boot)
    failed = rehearsal.failed_aws_calls()
    wait_for(
        lambda: rehearsal.failed_aws_calls() > failed,
        "the agent trying the launch hook again",
        lambda: agent_journal(boot),
    )
    check_agent_running(boot)
    return since_start(boot, line)


def since_start(boot: Boot, journal_line: str) -> float:
    """A `short-monotonic` journal line's time, in seconds since the machine started."""
    match = _MONOTONIC.match(journal_line)
    assert match, journal_line
    seconds = boot.since_start(int(float(match.group(1)) * 1e6))
    assert seconds is not None
    return seconds


class RehearsalSession:
    """A detection session through nginx's TLS listener: a frame, then its result, in turn."""

    def __init__(self, connection: ClientConnection) -> None:
        self.client = Client(connection)
        self.results = 0

    def result(self) -> dict[str, Any]:
        self.client.connection.send(jpeg_frame(seed=self.results))
        result = self.client.receive_type("inference")
        assert result["data"]["frame_idx"] == self.results, result["data"]
        self.results += 1
        return result

    def stop(self) -> int | None:
        """Stop as its user does; the close code (1000: it ended, nobody cut it)."""
        self.client.send_json({"type": "stop"})
        assert self.client.receive_type("queue_status")["state"] == "finished"
        self.client.connection.close()
        return self.client.connection.close_code


def wss_connect(context: ssl.SSLContext, origin: str, token: str) -> ClientConnection:
    return connect(
        f"wss://{INSTANCE_ADDRESS}/ws/inference?token={token}",
        ssl=serialized(context),
        origin=Origin(origin),
        open_timeout=10,
        max_size=None,
    )


@contextlib.contextmanager
def open_session(context: ssl.SSLContext, origin: str, token: str) -> Iterator[RehearsalSession]:
    """A running session (a slot held) with its first result taken."""
    with wss_connect(context, origin, token) as connection:
        session = RehearsalSession(connection)
        first = session.client.receive()
        assert first["type"] == "queue_status" and first["state"] == "waiting", first
        session.client.start(use_yolo=True)
        session.result()
        yield session


def ready_answer(port: int, secret: str | None) -> tuple[int, dict[str, Any]]:
    """Status and JSON body of `/ready` on one of nginx's plain-HTTP listeners (80: the origin
    listener, with CloudFront's secret; 8082: the health listener, without)."""
    headers = {ORIGIN_SECRET_HEADER: secret} if secret else {}
    request = urllib.request.Request(f"http://{INSTANCE_ADDRESS}:{port}/ready", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def result_then_not_ready(
    session: RehearsalSession, port: int, secret: str | None
) -> dict[str, Any] | None:
    """One more result for `session`, then `/ready`'s body on `port` if it answered 503."""
    session.result()
    status, body = ready_answer(port, secret)
    return body if status == 503 else None


def drain_file_text(boot: Boot) -> str:
    """The drain file's text in the machine; empty while there is none."""
    return boot.exec(["sh", "-c", f"test ! -e {DRAIN_FILE} || cat {DRAIN_FILE}"])


def result_then_drain_file(session: RehearsalSession, boot: Boot) -> str:
    """One more result for `session`, then the drain file's text (empty: none yet)."""
    session.result()
    return drain_file_text(boot)


@dataclass(frozen=True)
class Leave:
    """The leave, in seconds since IMDS said `Terminated`."""

    drain_file_s: float  # until the agent's drain file was there
    not_ready_s: float  # until /ready answered 503 "draining" on both listeners
    results: int  # results the session opened before got after the switch


def check_leave(
    rehearsal: Rehearsal, boot: Boot, context: ssl.SSLContext, origin: str, token: str
) -> Leave:
    """IMDS says `Terminated` while a session runs, just after the agent restarted: the new
    agent drains the instance, the backend takes no new session and the running one goes on
    until it stops."""
    assert rehearsal.cloud is not None
    listeners = {80: rehearsal.origin_secret, HEALTH_PORT: None}
    for port, secret in listeners.items():
        assert ready_answer(port, secret)[0] == 200, (port, ready_answer(port, secret))
    with open_session(context, origin, token) as session:
        before = session.results
        check_agent_restart(boot)
        switched = time.monotonic()
        rehearsal.target_lifecycle_state("Terminated")
        reason = wait_for(
            functools.partial(result_then_drain_file, session, boot),
            "the agent's drain file",
            lambda: agent_journal(boot),
        )
        drain_file_s = time.monotonic() - switched
        assert reason.strip() == "leaving the fleet: target state Terminated", reason
        owner = boot.exec(["stat", "-c", "%U %a %n", str(DRAIN_FILE), str(DRAIN_FILE.parent)])
        assert owner.split("\n")[:2] == [
            f"root 644 {DRAIN_FILE}",
            f"root 755 {DRAIN_FILE.parent}",
        ], owner
        for port, secret in listeners.items():
            body = wait_for(
                functools.partial(result_then_not_ready, session, port, secret),
                f"/ready 503 on port {port}",
                lambda: agent_journal(boot),
            )
            assert body["draining"] is True and body["ready"] is True, (port, body)
        not_ready_s = time.monotonic() - switched
        with pytest.raises(InvalidStatus) as refused:
            wss_connect(context, origin, token).close()
        assert refused.value.response.status_code == 503
        assert json.loads(refused.value.response.body)["error"]["code"] == "draining"
        assert agent_line(boot, "draining: target lifecycle state Terminated")
        heartbeat = wait_for(
            lambda: agent_line(boot, f"RecordLifecycleActionHeartbeat on hook {DRAIN_HOOK_NAME}"),
            "the agent keeping the termination hook alive",
            lambda: agent_journal(boot),
        )
        assert heartbeat.endswith("(1 sessions open)"), heartbeat
        for _ in range(3):
            session.result()
        results = session.results - before
        assert session.stop() == 1000
    completion = wait_for(
        lambda: agent_line(boot, f"CompleteLifecycleAction on hook {DRAIN_HOOK_NAME}"),
        "the agent completing the termination hook once the session ended",
        lambda: agent_journal(boot),
    )
    assert completion.endswith("(drained)"), completion
    check_agent_running(boot)
    return Leave(drain_file_s, not_ready_s, results)


@dataclass(frozen=True)
class FleetRun:
    """What the fleet checks saw, for the report."""

    launch_attempt_s: float  # since the machine started: the agent's first launch-hook call
    leave: Leave
    checks_s: float  # the wall time these checks added to the rehearsal

    def summary(self) -> str:
        return (
            "The second boot is a fleet instance (the fleet keys in its settings, IMDS "
            f"`InService`): `{AGENT_UNIT}` runs (the first boot skipped it: ExecCondition) and "
            f"tries to complete the launch hook at {self.launch_attempt_s:.1f} s, once the "
            "backend is ready (moto_server fails the call; the agent tries again at its next "
            "poll). During a session, systemd restarts the agent (it stops on SIGTERM; its "
            "folder, bind-mounted into the backend, is kept) and IMDS says `Terminated`: the new "
            f"agent's drain file after {self.leave.drain_file_s:.1f} s, `/ready` 503 `draining` "
            "on the origin and health "
            f"listeners after {self.leave.not_ready_s:.1f} s, a new session refused (503 "
            f"`draining`), the open one {self.leave.results} more results and a normal stop "
            "(1000), then the agent's try to complete the termination hook. These fleet checks "
            f"took {self.checks_s:.1f} s."
        )


def check_fleet_instance(
    rehearsal: Rehearsal, boot: Boot, context: ssl.SSLContext, origin: str, token: str
) -> FleetRun:
    """The agent joins, then Auto Scaling takes the instance out during a session; the agent's
    journal is kept in the rehearsal's logs (`journal-fleet-agent.log`)."""
    started = time.monotonic()
    try:
        launch_attempt_s = check_agent_joins(rehearsal, boot)
        leave = check_leave(rehearsal, boot, context, origin, token)
    finally:
        (rehearsal.logs / "journal-fleet-agent.log").write_text(agent_journal(boot))
    return FleetRun(launch_attempt_s, leave, time.monotonic() - started)
