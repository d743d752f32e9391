"""The fleet agent against a real loopback IMDS (IMDSv2 tokens, a switchable target lifecycle
state) and a real loopback backend: /metrics in the backend's own Prometheus format, /ready with
its status codes and JSON body. SetInstanceProtection runs on moto; the lifecycle-hook calls,
which moto 5 lacks, and Auto Scaling's errors on a botocore Stubber. Every Auto Scaling call the
agent makes is recorded from botocore's own event hook, so a test sees exactly which calls a
step made."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from prometheus_client import generate_latest

from backend.cli import main
from backend.instance.fleet_agent import DRAIN_FILE, FleetAgent
from backend.instance.fleet_member import Action
from backend.instance.imds import IMDS_ENDPOINT_VARIABLE
from backend.instance.settings import (
    FleetSettings,
    SettingsError,
    fleet_settings,
    parse_settings,
)
from backend.observability.metrics import BackendMetrics
from backend.session.drain import DrainSignal
from tests.lambdas.conftest import moto_server_url

__all__ = ["moto_server_url"]

REGION = "eu-west-1"
GROUP = "CvStack-gpu-fleet"
HOOK = "cvstack-drain"
LIMIT_S = 600
STUB_INSTANCE = "i-0123456789abcdef0"
T0 = 1_000.0  # the agent's clock in these tests: wall-clock seconds, injected
TOKEN = "imds-session-token"


class _Server:
    """A ThreadingHTTPServer on a free loopback port, in a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _reply(handler: BaseHTTPRequestHandler, status: int, body: bytes, kind: str) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


class _ImdsHandler(BaseHTTPRequestHandler):
    def do_PUT(self) -> None:
        imds: ImdsServer = self.server.owner  # type: ignore[attr-defined]
        if imds.failing:
            _reply(self, 500, b"", "text/plain")
        elif (
            self.path == "/latest/api/token"
            and self.headers["X-aws-ec2-metadata-token-ttl-seconds"]
        ):
            _reply(self, 200, TOKEN.encode(), "text/plain")
        else:
            _reply(self, 400, b"", "text/plain")

    def do_GET(self) -> None:
        imds: ImdsServer = self.server.owner  # type: ignore[attr-defined]
        items = {
            "/latest/meta-data/instance-id": imds.instance_id,
            "/latest/meta-data/autoscaling/target-lifecycle-state": imds.target_state,
        }
        value = items.get(self.path)
        if self.path.endswith("/target-lifecycle-state"):
            imds.state_reads += 1
        if self.headers["X-aws-ec2-metadata-token"] != TOKEN:
            _reply(self, 401, b"", "text/plain")  # IMDSv1 is refused
        elif value is None:
            _reply(self, 404, b"", "text/plain")
        else:
            _reply(self, 200, value.encode(), "text/plain")

    def log_message(self, *args: Any) -> None:
        pass


class ImdsServer(_Server):
    """EC2's metadata service with tokens required; `target_state` None answers 404 (an
    instance outside an Auto Scaling group), `failing` answers 500 to everything."""

    def __init__(self, instance_id: str, target_state: str | None = "InService") -> None:
        self.instance_id = instance_id
        self.target_state = target_state
        self.failing = False
        self.state_reads = 0
        super().__init__(_ImdsHandler)


class _BackendHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        backend: BackendServer = self.server.owner  # type: ignore[attr-defined]
        if not backend.up:
            self.close_connection = True  # no answer at all: the process is not serving yet
        elif self.path == "/metrics":
            body = generate_latest(backend.metrics.registry)
            _reply(self, 200, body, "text/plain; version=0.0.4")
        elif self.path == "/ready":
            draining = DrainSignal(backend.drain_file).draining()
            body = json.dumps({"ready": backend.ready, "draining": draining}).encode()
            status = 200 if backend.ready and not draining else 503
            _reply(self, status, body, "application/json")
        else:
            _reply(self, 404, b"", "text/plain")

    def log_message(self, *args: Any) -> None:
        pass


class BackendServer(_Server):
    """The backend on loopback: /metrics from its own registry (BackendMetrics), sessions set
    by the test; /ready as backend/api/routes/health.py answers it, `ready` set by the test and
    draining while `drain_file` exists (503 either way when not serving); `up` False answers
    nothing (a backend still starting, its engines building)."""

    def __init__(self, drain_file: Path, *, ready: bool = True, up: bool = True) -> None:
        self.metrics = BackendMetrics()
        self.drain_file = drain_file
        self.ready = ready
        self.up = up
        super().__init__(_BackendHandler)

    def sessions(self, active: int) -> None:
        self.metrics.active_sessions.set(active)


@dataclass
class Calls:
    """Auto Scaling operations as the client sent them: (name, parameters)."""

    made: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def record(self, model: Any, params: dict[str, Any], **_: Any) -> None:
        self.made.append((model.name, params))

    def take(self) -> list[str]:
        """The calls since the last `take`, minus the tests' own Describe* reads."""
        names = [name for name, _ in self.made if not name.startswith("Describe")]
        self.made.clear()
        return names


def recorded(client: Any) -> Calls:
    calls = Calls()
    client.meta.events.register("before-parameter-build.auto-scaling", calls.record)
    return calls


@pytest.fixture
def backend_metrics(tmp_path: Path) -> Iterator[BackendServer]:
    server = BackendServer(tmp_path / "drain")
    yield server
    server.stop()


def make_agent(
    imds: ImdsServer,
    backend: str,
    drain_file: Path,
    autoscaling: Any,
    launch_hook: str | None = None,
) -> FleetAgent:
    return FleetAgent(
        imds_url=imds.url,
        backend_url=backend,
        drain_file=drain_file,
        autoscaling=autoscaling,
        group_name=GROUP,
        hook_name=HOOK,
        drain_limit_s=LIMIT_S,
        launch_hook_name=launch_hook,
        poll_s=5.0,
    )


# --- In service: scale-in protection on moto --------------------------------------------------


@dataclass
class MotoFleet:
    autoscaling: Any
    instance_id: str

    def protected(self) -> bool:
        found = self.autoscaling.describe_auto_scaling_instances(InstanceIds=[self.instance_id])
        return bool(found["AutoScalingInstances"][0]["ProtectedFromScaleIn"])


def create_group(autoscaling: Any, ec2: Any) -> str:
    """A group of one in-service instance; returns its id."""
    ec2.create_launch_template(
        LaunchTemplateName="gpu-template",
        LaunchTemplateData={"ImageId": "ami-12c6146b", "InstanceType": "g4dn.xlarge"},
    )
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName=GROUP,
        MinSize=0,
        MaxSize=3,
        DesiredCapacity=1,
        LaunchTemplate={"LaunchTemplateName": "gpu-template"},
        AvailabilityZones=[f"{REGION}a"],
    )
    found = autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[GROUP])
    return str(found["AutoScalingGroups"][0]["Instances"][0]["InstanceId"])


@pytest.fixture
def moto_fleet(monkeypatch: pytest.MonkeyPatch) -> Iterator[MotoFleet]:
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        autoscaling = boto3.client("autoscaling", region_name=REGION)
        instance_id = create_group(autoscaling, boto3.client("ec2", region_name=REGION))
        yield MotoFleet(autoscaling, instance_id)


def test_protected_while_sessions_run_unprotected_when_idle(
    moto_fleet: MotoFleet, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    imds = ImdsServer(moto_fleet.instance_id)
    calls = recorded(moto_fleet.autoscaling)
    agent = make_agent(imds, backend_metrics.url, tmp_path / "drain", moto_fleet.autoscaling)
    moto_fleet.autoscaling.set_instance_protection(
        AutoScalingGroupName=GROUP, InstanceIds=[moto_fleet.instance_id], ProtectedFromScaleIn=True
    )  # left by an agent that stopped: a new one does not know, and matches the sessions
    calls.take()

    first = agent.step(T0)
    assert first is not None and first.action is Action.UNPROTECT and first.admit_sessions
    assert not moto_fleet.protected() and calls.take() == ["SetInstanceProtection"]

    backend_metrics.sessions(2)
    assert agent.step(T0 + 5).action is Action.PROTECT  # type: ignore[union-attr]
    assert moto_fleet.protected()
    assert agent.step(T0 + 10).action is Action.NOTHING  # type: ignore[union-attr]
    assert calls.take() == ["SetInstanceProtection"]  # once, not every poll

    backend_metrics.sessions(0)
    assert agent.step(T0 + 15).action is Action.UNPROTECT  # type: ignore[union-attr]
    assert not moto_fleet.protected()
    assert not (tmp_path / "drain").exists()
    imds.stop()


def test_outside_a_group_the_agent_does_nothing(
    moto_fleet: MotoFleet, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    imds = ImdsServer(moto_fleet.instance_id, target_state=None)
    calls = recorded(moto_fleet.autoscaling)
    backend_metrics.sessions(1)
    decision = make_agent(imds, backend_metrics.url, tmp_path / "drain", moto_fleet.autoscaling)
    assert decision.step(T0).action is Action.NOTHING  # type: ignore[union-attr]
    assert calls.take() == [] and not (tmp_path / "drain").exists()
    imds.stop()


# --- Leaving: the drain, on a Stubber for the lifecycle calls ----------------------------------


@dataclass
class Stubbed:
    autoscaling: Any
    stubber: Stubber
    calls: Calls

    def heartbeat(self) -> None:
        self.stubber.add_response("record_lifecycle_action_heartbeat", {}, self._target())

    def complete(self, hook: str = HOOK) -> None:
        self.stubber.add_response(
            "complete_lifecycle_action",
            {},
            {**self._target(hook), "LifecycleActionResult": "CONTINUE"},
        )

    def protection(self, protected: bool) -> None:
        self.stubber.add_response(
            "set_instance_protection",
            {},
            {
                "AutoScalingGroupName": GROUP,
                "InstanceIds": [STUB_INSTANCE],
                "ProtectedFromScaleIn": protected,
            },
        )

    def hooks(self) -> list[tuple[str, str]]:
        """The lifecycle calls since the last `take`, with the hook each named."""
        made = [
            (name, params["LifecycleHookName"])
            for name, params in self.calls.made
            if "LifecycleHookName" in params
        ]
        self.calls.made.clear()
        return made

    @staticmethod
    def _target(hook: str = HOOK) -> dict[str, str]:
        return {
            "AutoScalingGroupName": GROUP,
            "LifecycleHookName": hook,
            "InstanceId": STUB_INSTANCE,
        }


def serve_first(agent: FleetAgent, imds: ImdsServer, stubbed: Stubbed, now: float) -> None:
    """A step in service without sessions (its first: protection set to match, off)."""
    imds.target_state = "InService"
    stubbed.protection(False)
    assert agent.step(now).action is Action.UNPROTECT  # type: ignore[union-attr]
    stubbed.calls.take()


@pytest.fixture
def stubbed() -> Iterator[Stubbed]:
    autoscaling = boto3.client(
        "autoscaling",
        region_name=REGION,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    calls = recorded(autoscaling)
    with Stubber(autoscaling) as stubber:
        yield Stubbed(autoscaling, stubber, calls)
        stubber.assert_no_pending_responses()


@pytest.fixture
def imds() -> Iterator[ImdsServer]:
    server = ImdsServer(STUB_INSTANCE)
    yield server
    server.stop()


def test_terminated_drains_keeps_the_hook_alive_and_completes_when_sessions_end(
    stubbed: Stubbed, imds: ImdsServer, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    drain_file = tmp_path / "drain"
    agent = make_agent(imds, backend_metrics.url, drain_file, stubbed.autoscaling)
    backend_metrics.sessions(2)
    imds.target_state = "Terminated"

    stubbed.heartbeat()
    decision = agent.step(T0)
    assert decision is not None and decision.action is Action.KEEP_DRAINING
    assert not decision.admit_sessions
    assert DrainSignal(drain_file).draining(), "the backend sees the drain at once"
    assert "Terminated" in drain_file.read_text()
    assert stubbed.calls.take() == ["RecordLifecycleActionHeartbeat"]

    assert agent.step(T0 + 5).action is Action.KEEP_DRAINING  # type: ignore[union-attr]
    assert stubbed.calls.take() == [], "one heartbeat a minute, not one per poll"
    stubbed.heartbeat()
    agent.step(T0 + 65)
    assert stubbed.calls.take() == ["RecordLifecycleActionHeartbeat"]

    backend_metrics.sessions(0)
    stubbed.complete()
    assert agent.step(T0 + 70).action is Action.COMPLETE  # type: ignore[union-attr]
    assert stubbed.calls.take() == ["CompleteLifecycleAction"]
    assert agent.step(T0 + 75) is None and stubbed.calls.take() == []  # done: nothing more
    assert drain_file.exists()


@pytest.mark.parametrize("target", ["Warmed:Stopped", "Warmed:Running", "Warmed:Hibernated"])
def test_a_return_to_the_warm_pool_is_a_leave_too(
    target: str,
    stubbed: Stubbed,
    imds: ImdsServer,
    backend_metrics: BackendServer,
    tmp_path: Path,
) -> None:
    """After this boot has been in service; a launch into the pool is not (tests below)."""
    agent = make_agent(imds, backend_metrics.url, tmp_path / "drain", stubbed.autoscaling)
    serve_first(agent, imds, stubbed, T0)
    imds.target_state = target
    stubbed.complete()
    assert agent.step(T0 + 5).action is Action.COMPLETE  # type: ignore[union-attr]
    assert (tmp_path / "drain").exists()


def test_the_drain_limit_completes_with_sessions_still_open(
    stubbed: Stubbed, imds: ImdsServer, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    agent = make_agent(imds, backend_metrics.url, tmp_path / "drain", stubbed.autoscaling)
    backend_metrics.sessions(3)
    imds.target_state = "Terminated"
    stubbed.heartbeat()
    assert agent.step(T0).action is Action.KEEP_DRAINING  # type: ignore[union-attr]
    stubbed.heartbeat()
    assert agent.step(T0 + LIMIT_S - 1).action is Action.KEEP_DRAINING  # type: ignore[union-attr]
    stubbed.complete()
    decision = agent.step(T0 + LIMIT_S)
    assert decision is not None and decision.action is Action.COMPLETE
    assert decision.reason == "drain limit reached with 3 sessions open"


def test_an_agent_restarted_mid_drain_keeps_the_drain_s_start(
    stubbed: Stubbed, imds: ImdsServer, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    """The drain began when the file was made: a new agent (systemd restarted it) does not
    grant the sessions a fresh limit."""
    drain_file = tmp_path / "drain"
    drain_file.write_text("leaving the fleet: target state Terminated\n")
    os.utime(drain_file, (T0, T0))
    backend_metrics.sessions(1)
    imds.target_state = "Terminated"
    stubbed.complete()
    agent = make_agent(imds, backend_metrics.url, drain_file, stubbed.autoscaling)
    assert agent.step(T0 + LIMIT_S).action is Action.COMPLETE  # type: ignore[union-attr]


def test_no_pending_lifecycle_action_yet_is_asked_again(
    stubbed: Stubbed, imds: ImdsServer, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    agent = make_agent(imds, backend_metrics.url, tmp_path / "drain", stubbed.autoscaling)
    imds.target_state = "Terminated"
    stubbed.stubber.add_client_error(
        "complete_lifecycle_action",
        "ValidationError",
        f"No active Lifecycle Action found with instance ID {STUB_INSTANCE}",
    )
    assert agent.step(T0).action is Action.COMPLETE  # type: ignore[union-attr]
    assert not agent.completed
    stubbed.complete()
    agent.step(T0 + 5)
    assert agent.completed
    assert stubbed.calls.take() == ["CompleteLifecycleAction", "CompleteLifecycleAction"]


def test_back_in_service_without_a_reboot_ends_the_drain(
    stubbed: Stubbed, imds: ImdsServer, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    """A warm pool of running instances takes one back without a reboot: /run is not cleared,
    so the agent removes its drain file and the backend serves again."""
    drain_file = tmp_path / "drain"
    agent = make_agent(imds, backend_metrics.url, drain_file, stubbed.autoscaling)
    serve_first(agent, imds, stubbed, T0)
    imds.target_state = "Warmed:Running"
    stubbed.complete()
    agent.step(T0 + 5)
    assert drain_file.exists() and agent.completed
    imds.target_state = "InService"
    decision = agent.step(T0 + 600)
    assert decision is not None and decision.admit_sessions
    assert not drain_file.exists() and not agent.completed


# --- Launching: the launch hook once the backend is ready --------------------------------------

LAUNCH_HOOK = "cvstack-ready"


@pytest.fixture
def starting_backend(tmp_path: Path) -> Iterator[BackendServer]:
    """A backend still starting: it answers nothing yet."""
    server = BackendServer(tmp_path / "drain", ready=False, up=False)
    yield server
    server.stop()


def test_a_launch_into_the_warm_pool_initialises_completes_the_hook_once_and_never_drains(
    stubbed: Stubbed, imds: ImdsServer, starting_backend: BackendServer, tmp_path: Path
) -> None:
    drain_file = tmp_path / "drain"
    agent = make_agent(imds, starting_backend.url, drain_file, stubbed.autoscaling, LAUNCH_HOOK)
    imds.target_state = "Warmed:Stopped"

    first = agent.step(T0)  # nothing answers: the engines are building
    assert first is not None and first.action is Action.NOTHING and not first.admit_sessions
    starting_backend.up = True  # up, Triton still loading the models: 503, ready false
    assert agent.step(T0 + 5).action is Action.NOTHING  # type: ignore[union-attr]
    assert stubbed.hooks() == [] and not drain_file.exists()

    starting_backend.ready = True
    stubbed.complete(LAUNCH_HOOK)
    ready = agent.step(T0 + 10)
    assert ready is not None and ready.action is Action.COMPLETE_LAUNCH
    assert not ready.admit_sessions, "into the pool, not into service"
    assert stubbed.hooks() == [("CompleteLifecycleAction", LAUNCH_HOOK)]

    for now in (T0 + 15, T0 + 20):  # until Auto Scaling stops it: nothing more, no drain
        assert agent.step(now).action is Action.NOTHING  # type: ignore[union-attr]
    assert stubbed.calls.take() == [] and not drain_file.exists()
    assert not agent.boot.served


def test_a_warm_start_waits_for_the_backend_then_completes_the_hook_once_and_serves(
    stubbed: Stubbed, imds: ImdsServer, starting_backend: BackendServer, tmp_path: Path
) -> None:
    """Leaving the pool (InService): held in Pending:Wait, so out of the load balancer, until
    the backend is ready; then protection follows the sessions as before."""
    agent = make_agent(
        imds, starting_backend.url, tmp_path / "drain", stubbed.autoscaling, LAUNCH_HOOK
    )
    starting_backend.up = True
    waiting = agent.step(T0)
    assert waiting is not None and waiting.action is Action.NOTHING
    assert not waiting.admit_sessions and stubbed.calls.take() == []

    starting_backend.ready = True
    stubbed.complete(LAUNCH_HOOK)
    ready = agent.step(T0 + 5)
    assert ready is not None and ready.action is Action.COMPLETE_LAUNCH and ready.admit_sessions
    assert stubbed.hooks() == [("CompleteLifecycleAction", LAUNCH_HOOK)]
    assert agent.boot.served

    stubbed.protection(False)  # first protection step: matches the sessions (none)
    assert agent.step(T0 + 10).action is Action.UNPROTECT  # type: ignore[union-attr]
    starting_backend.sessions(1)
    stubbed.protection(True)
    assert agent.step(T0 + 15).action is Action.PROTECT  # type: ignore[union-attr]
    assert stubbed.calls.take() == ["SetInstanceProtection"] * 2, "no second launch completion"


def test_a_boot_that_waits_for_its_backend_says_so_once_not_every_poll(
    stubbed: Stubbed,
    imds: ImdsServer,
    starting_backend: BackendServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """While the engines build (minutes), each step finds the backend silent and holds the
    launch: two facts, each said once, however many polls it takes; a silence after the backend
    has answered is said again."""
    agent = make_agent(
        imds, starting_backend.url, tmp_path / "drain", stubbed.autoscaling, LAUNCH_HOOK
    )
    with caplog.at_level(logging.INFO):
        for now in (T0, T0 + 5, T0 + 10):
            assert agent.step(now).action is Action.NOTHING  # type: ignore[union-attr]
        starting_backend.up = True  # answers /metrics; /ready still 503, not ready
        agent.step(T0 + 15)
        starting_backend.up = False
        agent.step(T0 + 20)
    said = [record.getMessage() for record in caplog.records]
    assert [m.split(";")[0] for m in said] == [
        f"the backend at {starting_backend.url} does not report its sessions yet",
        "nothing to do: initialising for InService: backend not ready",
        f"the backend at {starting_backend.url} does not report its sessions yet",
    ], said
    assert stubbed.calls.take() == []


def test_a_draining_backend_counts_as_ready_for_the_launch_hook(
    stubbed: Stubbed, imds: ImdsServer, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    """/ready answers 503 while draining, but its `ready` says the backend works."""
    (tmp_path / "drain").write_text("left by a test\n")
    agent = make_agent(
        imds, backend_metrics.url, tmp_path / "other-drain", stubbed.autoscaling, LAUNCH_HOOK
    )
    stubbed.complete(LAUNCH_HOOK)
    assert agent.step(T0).action is Action.COMPLETE_LAUNCH  # type: ignore[union-attr]


def test_a_scale_in_back_to_the_pool_after_service_drains_on_the_termination_hook(
    stubbed: Stubbed, imds: ImdsServer, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    drain_file = tmp_path / "drain"
    agent = make_agent(imds, backend_metrics.url, drain_file, stubbed.autoscaling, LAUNCH_HOOK)
    stubbed.complete(LAUNCH_HOOK)
    assert agent.step(T0).action is Action.COMPLETE_LAUNCH  # type: ignore[union-attr]
    backend_metrics.sessions(1)
    stubbed.protection(True)
    assert agent.step(T0 + 5).action is Action.PROTECT  # type: ignore[union-attr]
    stubbed.calls.take()

    imds.target_state = "Warmed:Stopped"  # protection came too late: back to the pool
    stubbed.heartbeat()
    leaving = agent.step(T0 + 10)
    assert leaving is not None and leaving.action is Action.KEEP_DRAINING
    assert DrainSignal(drain_file).draining()
    backend_metrics.sessions(0)
    stubbed.complete()
    assert agent.step(T0 + 15).action is Action.COMPLETE  # type: ignore[union-attr]
    assert stubbed.hooks() == [
        ("RecordLifecycleActionHeartbeat", HOOK),
        ("CompleteLifecycleAction", HOOK),
    ]


@pytest.mark.parametrize("launch_hook", [LAUNCH_HOOK, None])
def test_terminated_before_service_completes_the_termination_hook_at_once(
    launch_hook: str | None,
    stubbed: Stubbed,
    imds: ImdsServer,
    starting_backend: BackendServer,
    tmp_path: Path,
) -> None:
    """Terminated while it was still initialising (into the pool, or into service): no
    session can be open, so nothing to drain and no wait for a backend that never answers."""
    drain_file = tmp_path / "drain"
    agent = make_agent(imds, starting_backend.url, drain_file, stubbed.autoscaling, launch_hook)
    imds.target_state = "Warmed:Stopped"
    assert agent.step(T0).action is Action.NOTHING  # type: ignore[union-attr]
    imds.target_state = "Terminated"
    stubbed.complete()
    done = agent.step(T0 + 5)
    assert done is not None and done.action is Action.COMPLETE
    assert done.reason == "terminated before it served: nothing to drain"
    assert stubbed.hooks() == [("CompleteLifecycleAction", HOOK)]
    assert agent.step(T0 + 10) is None and stubbed.calls.take() == []
    assert not drain_file.exists()


def test_a_restarted_agent_remembers_what_this_boot_did(
    stubbed: Stubbed, imds: ImdsServer, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    """systemd restarts the agent: the boot's marks beside the drain file say the launch hook
    is done and whether the instance served, so a pool launch is not completed twice and a
    return to the pool after service still drains."""
    drain_file = tmp_path / "drain"
    imds.target_state = "Warmed:Stopped"
    stubbed.complete(LAUNCH_HOOK)
    pool_launch = make_agent(
        imds, backend_metrics.url, drain_file, stubbed.autoscaling, LAUNCH_HOOK
    )
    assert pool_launch.step(T0).action is Action.COMPLETE_LAUNCH  # type: ignore[union-attr]
    restarted = make_agent(imds, backend_metrics.url, drain_file, stubbed.autoscaling, LAUNCH_HOOK)
    assert restarted.step(T0 + 5).action is Action.NOTHING  # type: ignore[union-attr]
    assert stubbed.hooks() == [("CompleteLifecycleAction", LAUNCH_HOOK)]

    imds.target_state = "InService"  # the next boot would clear the marks; here: one boot
    stubbed.protection(False)
    assert restarted.step(T0 + 10).action is Action.UNPROTECT  # type: ignore[union-attr]
    imds.target_state = "Warmed:Stopped"
    stubbed.complete()
    again = make_agent(imds, backend_metrics.url, drain_file, stubbed.autoscaling, LAUNCH_HOOK)
    assert again.step(T0 + 15).action is Action.COMPLETE  # type: ignore[union-attr]
    assert drain_file.exists(), "a leave after service: drained"


def test_back_in_service_from_a_running_pool_completes_the_launch_hook_again(
    stubbed: Stubbed, imds: ImdsServer, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    """Leaving a pool of running instances holds the launch hook again, in the same boot."""
    agent = make_agent(
        imds, backend_metrics.url, tmp_path / "drain", stubbed.autoscaling, LAUNCH_HOOK
    )
    stubbed.complete(LAUNCH_HOOK)
    agent.step(T0)
    imds.target_state = "Warmed:Running"
    stubbed.complete()
    assert agent.step(T0 + 5).action is Action.COMPLETE  # type: ignore[union-attr]
    imds.target_state = "InService"
    stubbed.complete(LAUNCH_HOOK)
    assert agent.step(T0 + 600).action is Action.COMPLETE_LAUNCH  # type: ignore[union-attr]
    assert stubbed.hooks() == [
        ("CompleteLifecycleAction", LAUNCH_HOOK),
        ("CompleteLifecycleAction", HOOK),
        ("CompleteLifecycleAction", LAUNCH_HOOK),
    ]


def test_no_pending_launch_action_counts_as_done_and_a_throttled_one_is_retried(
    stubbed: Stubbed,
    imds: ImdsServer,
    backend_metrics: BackendServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = make_agent(
        imds, backend_metrics.url, tmp_path / "drain", stubbed.autoscaling, LAUNCH_HOOK
    )
    stubbed.stubber.add_client_error(
        "complete_lifecycle_action", "Throttling", "Rate exceeded", 400
    )
    with caplog.at_level(logging.WARNING):
        assert agent.step(T0).action is Action.COMPLETE_LAUNCH  # type: ignore[union-attr]
    assert "CompleteLifecycleAction" in caplog.text and "Throttling" in caplog.text
    assert not agent.boot.launched
    stubbed.stubber.add_client_error(
        "complete_lifecycle_action",
        "ValidationError",
        f"No active Lifecycle Action found with instance ID {STUB_INSTANCE}",
    )
    with caplog.at_level(logging.INFO):
        assert agent.step(T0 + 5).action is Action.COMPLETE_LAUNCH  # type: ignore[union-attr]
    assert f"no {LAUNCH_HOOK} action was pending" in caplog.text
    assert (agent.boot.launched, agent.boot.served) == (True, True)
    stubbed.protection(False)
    assert agent.step(T0 + 10).action is Action.UNPROTECT  # type: ignore[union-attr]


# --- Failures: logged, retried at the next step, never raised ---------------------------------


def test_imds_down_and_auto_scaling_throttling_do_not_crash_the_step(
    stubbed: Stubbed,
    imds: ImdsServer,
    backend_metrics: BackendServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = make_agent(imds, backend_metrics.url, tmp_path / "drain", stubbed.autoscaling)
    backend_metrics.sessions(1)
    imds.failing = True
    with caplog.at_level(logging.WARNING):
        assert agent.step(T0) is None
    assert "cannot read the target lifecycle state from IMDS" in caplog.text
    assert "500" in caplog.text and stubbed.calls.take() == []

    imds.failing = False
    stubbed.stubber.add_client_error("set_instance_protection", "Throttling", "Rate exceeded", 400)
    with caplog.at_level(logging.WARNING):
        assert agent.step(T0 + 5).action is Action.PROTECT  # type: ignore[union-attr]
    assert "SetInstanceProtection" in caplog.text and "Throttling: Rate exceeded" in caplog.text
    assert agent.protected is None, "not protected until Auto Scaling says so"

    stubbed.stubber.add_response(
        "set_instance_protection",
        {},
        {
            "AutoScalingGroupName": GROUP,
            "InstanceIds": [STUB_INSTANCE],
            "ProtectedFromScaleIn": True,
        },
    )
    assert agent.step(T0 + 10).action is Action.PROTECT  # type: ignore[union-attr]
    assert agent.protected is True


class _ErrorPageHandler(BaseHTTPRequestHandler):
    """An Auto Scaling endpoint answering every call with an HTML error page, not AWS's XML: what
    moto_server answers for a call it lacks (the boot rehearsal meets it), and what a proxy or an
    endpoint in front of AWS can answer."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        page = b"<!doctype html>\n<title>500 Internal Server Error</title>\n<h1>Oops</h1>\n"
        _reply(self, 500, page, "text/html")

    def log_message(self, *args: Any) -> None:
        pass


def test_an_answer_that_is_not_aws_s_is_logged_once_and_retried(
    imds: ImdsServer,
    backend_metrics: BackendServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """botocore cannot parse such a page and raises ResponseParserError (no BotoCoreError): the
    step still returns its decision, and the failure is one line naming the call, its hook and
    what the agent acted on, not a traceback every poll."""
    endpoint = _Server(_ErrorPageHandler)
    autoscaling = boto3.client(
        "autoscaling",
        region_name=REGION,
        endpoint_url=endpoint.url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    agent = make_agent(imds, backend_metrics.url, tmp_path / "drain", autoscaling, LAUNCH_HOOK)
    try:
        with caplog.at_level(logging.WARNING):
            for now in (T0, T0 + 5):
                assert agent.step(now).action is Action.COMPLETE_LAUNCH  # type: ignore[union-attr]
    finally:
        endpoint.stop()
    failures = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(failures) == 1, failures  # the same failure again is not said again
    assert failures[0].startswith(
        f"Auto Scaling CompleteLifecycleAction on hook {LAUNCH_HOOK} for {STUB_INSTANCE} in "
        f"{GROUP} failed (an answer that is not AWS's: Unable to parse response"
    ), failures
    assert failures[0].endswith("(backend ready: launch into InService)"), failures
    assert "Traceback" not in caplog.text and not agent.boot.launched


def test_a_denied_heartbeat_is_retried_at_the_next_step(
    stubbed: Stubbed, imds: ImdsServer, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    agent = make_agent(imds, backend_metrics.url, tmp_path / "drain", stubbed.autoscaling)
    backend_metrics.sessions(1)
    imds.target_state = "Terminated"
    stubbed.stubber.add_client_error("record_lifecycle_action_heartbeat", "AccessDenied", "no")
    agent.step(T0)
    stubbed.heartbeat()
    agent.step(T0 + 5)
    assert stubbed.calls.take() == ["RecordLifecycleActionHeartbeat"] * 2


def test_a_silent_backend_keeps_protection_in_service_and_its_last_sessions_when_leaving(
    stubbed: Stubbed, imds: ImdsServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = BackendServer(tmp_path / "drain")
    backend.sessions(2)
    agent = make_agent(imds, backend.url, tmp_path / "drain", stubbed.autoscaling)
    stubbed.stubber.add_response(
        "set_instance_protection",
        {},
        {
            "AutoScalingGroupName": GROUP,
            "InstanceIds": [STUB_INSTANCE],
            "ProtectedFromScaleIn": True,
        },
    )
    agent.step(T0)
    backend.stop()  # connection refused from now on
    with caplog.at_level(logging.WARNING):
        assert agent.step(T0 + 5) is None
    assert "does not report its sessions" in caplog.text and stubbed.calls.take() == [
        "SetInstanceProtection"
    ]

    imds.target_state = "Terminated"
    stubbed.heartbeat()
    decision = agent.step(T0 + 10)
    assert decision is not None and decision.action is Action.KEEP_DRAINING
    assert decision.reason == "2 sessions open"
    stubbed.complete()
    assert agent.step(T0 + 10 + LIMIT_S).action is Action.COMPLETE  # type: ignore[union-attr]


def test_an_unwritable_drain_folder_is_logged_and_the_drain_still_runs(
    stubbed: Stubbed,
    imds: ImdsServer,
    backend_metrics: BackendServer,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    agent = make_agent(
        imds, backend_metrics.url, tmp_path / "missing" / "drain", stubbed.autoscaling
    )
    backend_metrics.sessions(1)
    imds.target_state = "Terminated"
    stubbed.heartbeat()
    with caplog.at_level(logging.WARNING):
        assert agent.step(T0).action is Action.KEEP_DRAINING  # type: ignore[union-attr]
    assert "cannot create the drain file" in caplog.text
    assert "cannot write in-service" in caplog.text, "the boot's mark is missing too: said so"


# --- Settings and the command ------------------------------------------------------------------

FLEET = {
    "CVSTACK_FLEET_GROUP_NAME": GROUP,
    "CVSTACK_FLEET_HOOK_NAME": HOOK,
    "CVSTACK_DRAIN_LIMIT_S": "1800",
}
SINGLE = {
    "CVSTACK_MODELS_S3_URI": "s3://cvstack-models-123/models/",
    "CVSTACK_SESSION_SECRET_ID": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:s",
    "CVSTACK_ORIGIN_SECRET_ID": "arn:aws:secretsmanager:eu-west-1:123456789012:secret:o",
    "CVSTACK_FRONTEND_ORIGINS": "self",
}


def test_fleet_settings_from_the_ssm_parameter_reach_stack_env_checked() -> None:
    values = parse_settings(
        json_text({**SINGLE, **FLEET, "CVSTACK_MAX_WAIT_S": "5"}), "/cvstack/settings"
    )
    assert {key: values[key] for key in FLEET} == FLEET and values["CVSTACK_MAX_WAIT_S"] == "5"
    fleet = fleet_settings(values)
    assert fleet == FleetSettings(GROUP, HOOK, 1800, launch_hook_name=None)
    assert fleet_settings(parse_settings(json_text(SINGLE), "/cvstack/settings")) is None
    with_launch_hook = {**SINGLE, **FLEET, "CVSTACK_FLEET_LAUNCH_HOOK_NAME": LAUNCH_HOOK}
    values = parse_settings(json_text(with_launch_hook), "/cvstack/settings")
    assert values["CVSTACK_FLEET_LAUNCH_HOOK_NAME"] == LAUNCH_HOOK
    assert fleet_settings(values) == FleetSettings(GROUP, HOOK, 1800, LAUNCH_HOOK)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"CVSTACK_FLEET_HOOK_NAME": None}, "CVSTACK_FLEET_HOOK_NAME is not set but"),
        ({"CVSTACK_DRAIN_LIMIT_S": "0"}, "CVSTACK_DRAIN_LIMIT_S must be whole seconds from 1"),
        ({"CVSTACK_DRAIN_LIMIT_S": "30m"}, "not '30m'"),
        ({"CVSTACK_DRAIN_LIMIT_S": 1800}, "CVSTACK_DRAIN_LIMIT_S must be a string"),
        ({"CVSTACK_FLEET_GROUP_NAME": "my group"}, "has a space"),
        ({"CVSTACK_FLEET_GROUP_NAME": "-fleet"}, "must name the Auto Scaling group"),
        ({"CVSTACK_FLEET_HOOK_NAME": "drain:1"}, "must name the group's termination lifecycle"),
        ({"CVSTACK_MAX_WAIT_S": "soon"}, "CVSTACK_MAX_WAIT_S must be seconds"),
        (
            {"CVSTACK_FLEET_LAUNCH_HOOK_NAME": "ready:1"},
            "CVSTACK_FLEET_LAUNCH_HOOK_NAME must name the group's launch lifecycle hook",
        ),
        ({"CVSTACK_FLEET_LAUNCH_HOOK_NAME": ""}, "not ''"),
        ({"CVSTACK_FLEET_LAUNCH_HOOK_NAME": HOOK}, "are both 'cvstack-drain'"),
        (
            {key: None for key in FLEET} | {"CVSTACK_FLEET_LAUNCH_HOOK_NAME": "cvstack-ready"},
            "CVSTACK_FLEET_LAUNCH_HOOK_NAME is set but CVSTACK_FLEET_GROUP_NAME is not",
        ),
        ({"CVSTACK_FLEET_SIZE": "4"}, "unknown key CVSTACK_FLEET_SIZE"),
    ],
)
def test_bad_fleet_settings_are_named(change: dict[str, Any], message: str) -> None:
    document = {k: v for k, v in {**SINGLE, **FLEET, **change}.items() if v is not None}
    with pytest.raises(SettingsError, match=message) as refused:
        parse_settings(json_text(document), "/cvstack/settings")
    assert "SSM parameter /cvstack/settings" in str(refused.value)


def json_text(document: dict[str, Any]) -> str:
    return json.dumps(document)


def test_the_command_refuses_to_run_outside_fleet_mode(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for key in FLEET:
        monkeypatch.delenv(key, raising=False)
    assert main(["instance", "fleet-agent", "--region", REGION]) == 2
    assert "not in fleet mode: CVSTACK_FLEET_GROUP_NAME is not set" in capsys.readouterr().err
    monkeypatch.setenv("CVSTACK_FLEET_GROUP_NAME", GROUP)
    assert main(["instance", "fleet-agent", "--region", REGION]) == 2
    assert "CVSTACK_FLEET_HOOK_NAME is not set" in capsys.readouterr().err


def test_the_unit_s_command_protects_the_instance_and_stops_on_sigterm(
    moto_server_url: str, backend_metrics: BackendServer, tmp_path: Path
) -> None:
    """`cvstack instance fleet-agent` as the unit runs it: settings from the environment
    (stack.env), IMDS at botocore's endpoint variable, Auto Scaling at AWS_ENDPOINT_URL; it runs
    until SIGTERM (it is PID 1 in its container) and then exits 0."""
    aws = {
        "AWS_ENDPOINT_URL": moto_server_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    autoscaling = on_moto_server("autoscaling", moto_server_url)
    instance_id = create_group(autoscaling, on_moto_server("ec2", moto_server_url))
    fleet = MotoFleet(autoscaling, instance_id)
    imds = ImdsServer(instance_id)
    backend_metrics.sessions(1)
    env = {
        **os.environ,
        **aws,
        **FLEET,
        "CVSTACK_AWS_REGION": REGION,
        IMDS_ENDPOINT_VARIABLE: imds.url,
    }
    agent = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backend.cli",
            "instance",
            "fleet-agent",
            "--backend-url",
            backend_metrics.url,
            "--drain-file",
            str(tmp_path / "drain"),
            "--poll-s",
            "0.2",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not fleet.protected():
            assert agent.poll() is None, agent.communicate()
            assert time.monotonic() < deadline, "the agent did not protect the instance"
            time.sleep(0.1)
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
        imds.stop()
    assert agent.returncode == 0, stderr
    assert "protect: sessions open" in stderr and "fleet agent stopped" in stderr


def test_the_unit_s_command_holds_the_launch_hook_until_the_backend_is_ready(
    tmp_path: Path,
) -> None:
    """With CVSTACK_FLEET_LAUNCH_HOOK_NAME in stack.env the command waits for /ready: no Auto
    Scaling call at all (none reaches the unused endpoint) while the backend is not ready."""
    backend = BackendServer(tmp_path / "drain", ready=False)
    imds = ImdsServer(STUB_INSTANCE)
    env = {
        **os.environ,
        **FLEET,
        "CVSTACK_FLEET_LAUNCH_HOOK_NAME": "cvstack-ready",
        "CVSTACK_AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # discard: any call would fail and be logged
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        IMDS_ENDPOINT_VARIABLE: imds.url,
    }
    command = ["instance", "fleet-agent", "--backend-url", backend.url, "--poll-s", "0.2"]
    agent = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", *command, "--drain-file", str(tmp_path / "drain")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while imds.state_reads < 3:  # two whole steps done
            assert agent.poll() is None, agent.communicate()
            assert time.monotonic() < deadline, "the agent did not poll IMDS"
            time.sleep(0.1)
        agent.send_signal(signal.SIGTERM)
        _, stderr = agent.communicate(timeout=30)
    finally:
        if agent.poll() is None:
            agent.kill()
        imds.stop()
        backend.stop()
    assert agent.returncode == 0, stderr
    assert f"(hook {HOOK}, launch hook cvstack-ready)" in stderr
    assert "initialising for InService: backend not ready" in stderr
    assert "Auto Scaling" not in stderr, stderr


def on_moto_server(service: str, url: str) -> Any:
    return boto3.client(  # type: ignore[call-overload]
        service,
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


@pytest.mark.parametrize("mode", ["single", "fleet"])
def test_in_fleet_mode_the_backend_gets_the_short_wait_and_the_agent_s_drain_file(
    mode: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`cvstack instance backend-env` as its unit runs it, with stack.env in its environment."""
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(key, "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for key, value in {**FLEET, "CVSTACK_MAX_WAIT_S": "5"}.items():
        if mode == "fleet":
            monkeypatch.setenv(key, value)
        else:
            monkeypatch.delenv(key, raising=False)
    out = tmp_path / "backend.env"
    with mock_aws():
        secrets = boto3.client("secretsmanager", region_name=REGION)
        secret = secrets.create_secret(Name="session", SecretString="k" * 64)["ARN"]
        origin = secrets.create_secret(Name="origin", SecretString="Ab3" * 16)["ARN"]
        code = main(
            [
                "instance",
                "backend-env",
                "--secret-id",
                secret,
                "--origin-secret-id",
                origin,
                "--origin-secret-dir",
                str(tmp_path / "nginx"),
                "--allowed-origins",
                "self",
                "--out",
                str(out),
                "--region",
                REGION,
            ]
        )
    assert code == 0
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines())
    if mode == "fleet":
        assert lines["CVSTACK_MAX_WAIT_S"] == "5"
        assert lines["CVSTACK_DRAIN_FILE"] == str(DRAIN_FILE) == "/run/cvstack-fleet/drain"
    else:
        assert "CVSTACK_MAX_WAIT_S" not in lines and "CVSTACK_DRAIN_FILE" not in lines
