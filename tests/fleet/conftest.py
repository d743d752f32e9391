"""A real two-instance fleet on loopback: two backends, each with its own Triton on CPU, behind a
real nginx as the load balancer (`load_balancer.conf.template`).

Each backend is `cvstack serve` in a process of its own (so a test can SIGKILL it, as an
instance dies) over its own `tritonserver`, with its own drain file (`CVSTACK_DRAIN_FILE`), which
its instance's fleet agent creates when IMDS says the instance is leaving (`leaving.py`).
The models are the random-weight 320 px exports the other real-Triton tests use: these tests
check placement and lifecycle (where a session lands, what a drain or a death does to it), not
detection quality, and two Tritons plus two backends must fit on CI's 2 cores.

How nginx stands in for the fleet's ALB (infra_cdk/fleet_load_balancer.py):
- Routing: the target group's least-outstanding-requests algorithm is `least_conn`: a new
  WebSocket goes to the backend with the fewest open connections.
- Health: the ALB checks each target's `/ready` actively and stops routing to an unhealthy
  target; nginx OSS has passive checks only: `max_fails=1 fail_timeout=10s` takes a backend out
  of rotation for 10 s after one failed attempt, where a failure is a refused or timed-out
  connection or (listed in `proxy_next_upstream`) a 503.
- Drain: Auto Scaling deregisters a leaving instance from the target group (the deregistration
  delay lets its open connections run on) and its `/ready` turns 503; either way the ALB sends
  it no new session. nginx learns it from the handshake itself: a draining backend refuses it
  with 503 `draining`, and `proxy_next_upstream ... http_503` retries it on the other backend
  before anything reaches the client. Behind the ALB the same 503 is the backstop until the
  health checks (every 10 s, unhealthy after 3) react, and the page reconnects at once on
  `draining`.
- Death: the ALB's health check marks the target unhealthy and a reconnecting page lands on a
  healthy one; nginx's connect is refused, the attempt fails over to the other backend
  (`proxy_next_upstream error`) and the dead one is out of rotation for `fail_timeout`.

nginx reports, on the handshake's response, every backend it offered the request to and each
answer (`X-Cvstack-Upstream`, `X-Cvstack-Upstream-Status`): that is how a test knows where a
session landed. Each backend's own `/metrics` confirms it.

One package-scoped harness (`fleet_harness`) holds the Tritons and backends for every test
here; `fleet` gives each test both backends alive, ready, idle and not draining (a backend a
test killed is started again), and a fresh nginx in front of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.sync.client import connect

from backend.instance.fleet_member import Action
from backend.paths import REPO_ROOT
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from tests.backend.service.conftest import Client, jpeg_frame
from tests.conftest import cpu_triton
from tests.fleet.leaving import LeavingInstance
from tests.instance.conftest import nginx_serving

T = TypeVar("T")
TEMPLATE = Path(__file__).with_name("load_balancer.conf.template")
UPSTREAM_HEADER = "X-Cvstack-Upstream"
UPSTREAM_STATUS_HEADER = "X-Cvstack-Upstream-Status"
FAIL_TIMEOUT_S = 10
START_TIMEOUT_S = 120.0  # a backend's start-up to /ready, on 2 loaded cores
WAIT_S = 60.0  # generous deadline for anything else awaited
SERVE_COMMAND = (sys.executable, "-m", "backend.cli", "serve")


def poll(condition: Callable[[], T | None], what: str, timeout_s: float = WAIT_S) -> T:
    """The first truthy value of `condition()`, asked every 50 ms until the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout_s:.0f} s")
        time.sleep(0.05)


def http_get(url: str, timeout_s: float = 10.0) -> tuple[int, str]:
    """Status and body of a GET; an HTTP error status is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class LoadBalancerTemplate(string.Template):
    delimiter = "@"  # nginx's own variables start with `$`


class FleetBackend:
    """One instance's backend: `cvstack serve` in its own process over its own Triton."""

    def __init__(self, name: str, triton: LocalTritonServer, models_dir: Path, work_dir: Path):
        self.name = name
        self.triton = triton
        self.models_dir = models_dir
        self.work_dir = work_dir
        self.drain_file = work_dir / "drain"
        self.log_path = work_dir / "backend.log"
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"backend {self.name} (127.0.0.1:{self.port})"

    @property
    def instance_id(self) -> str:
        return f"i-0f1ee70000000000{self.name}"

    @property
    def address(self) -> str:
        """How nginx names it in `$upstream_addr`."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.address}/ws/inference"

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self} was never started"
        return self._process.pid

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start on a port free right now (a restart gets a new one) and wait for `/ready`."""
        self.port = ServerAddress.on_free_ports().http_port
        environment = {
            **{k: v for k, v in os.environ.items() if not k.startswith("CVSTACK_")},
            "CVSTACK_HOME": os.environ["CVSTACK_HOME"],
            "CVSTACK_HOST": "127.0.0.1",
            "CVSTACK_PORT": str(self.port),
            "CVSTACK_MODELS_DIR": str(self.models_dir),
            "CVSTACK_TRITON_GRPC_URL": self.triton.address.grpc_url,
            "CVSTACK_TRITON_METRICS_URL": self.triton.address.metrics_url,
            "CVSTACK_TRITON_TIMEOUT_S": "10",
            "CVSTACK_SUMMARY_DIR": str(self.work_dir / "summaries"),
            "CVSTACK_DRAIN_FILE": str(self.drain_file),
            # 4 slots as on a fleet instance; a wait of 30 s (the instances send a waiting
            # session away after 5 s), so a test's waiting session still waits when it drains
            # the backend on loaded CI cores.
            "CVSTACK_MAX_SESSIONS": "4",
            "CVSTACK_MAX_WAIT_S": "30",
        }
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                # The backend gets SIGTERM should the test process die first.
                ["setpriv", "--pdeathsig", "TERM", "--", *SERVE_COMMAND],
                cwd=REPO_ROOT,
                env=environment,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        poll(self._ready_or_dead, f"{self} ready", START_TIMEOUT_S)

    def _ready_or_dead(self) -> bool:
        if not self.alive():
            pytest.fail(f"{self} exited during start-up:\n{self.log_tail()}")
        try:
            return http_get(f"{self.url}/ready", timeout_s=2)[0] == 200
        except OSError:
            return False

    def kill(self) -> None:
        """SIGKILL the uvicorn process, as an instance dies: no shutdown, no close frames."""
        assert self._process is not None and self.alive(), f"{self} is not running"
        os.kill(self._process.pid, signal.SIGKILL)
        self._process.wait(WAIT_S)

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def metrics(self) -> dict[str, float]:
        """Its own `/metrics`: every sample without labels, by name."""
        status, text = http_get(f"{self.url}/metrics")
        assert status == 200, f"{self} /metrics answered {status}"
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }

    def active_sessions(self) -> int:
        return int(self.metrics()["cvstack_active_sessions"])

    def idle_and_ready(self) -> bool:
        return self.ready()[0] == 200 and self.metrics()["cvstack_connections"] == 0

    def ready(self) -> tuple[int, dict[str, Any]]:
        status, body = http_get(f"{self.url}/ready")
        return status, json.loads(body)

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


@dataclass
class FleetSession:
    """A session through the load balancer, and where nginx placed it."""

    client: Client
    backend: FleetBackend
    tried: list[str]  # every backend nginx offered the handshake to, in order
    answers: list[str]  # each one's answer (`101`, `503`, `502` for a refused connection)
    results: int = 0

    def result(self) -> dict[str, Any]:
        """Send a frame and take its result, which must be this session's next one."""
        self.client.connection.send(jpeg_frame(seed=self.results))
        result = self.client.receive_type("inference")
        assert result["data"]["frame_idx"] == self.results, result["data"]
        self.results += 1
        return result


@dataclass
class Fleet:
    """Both backends and the nginx in front of them, for one test."""

    backends: tuple[FleetBackend, FleetBackend]
    port: int
    log_dir: Path
    _closing: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws/inference"

    def backend_at(self, address: str) -> FleetBackend:
        return next(b for b in self.backends if b.address == address)

    def other(self, backend: FleetBackend) -> FleetBackend:
        return next(b for b in self.backends if b is not backend)

    def connect(self) -> FleetSession:
        """A WebSocket through nginx (closed after the test); the backend's first message
        (`queue_status` waiting) is read."""
        connection = self._closing.enter_context(
            connect(self.ws_url, max_size=None, open_timeout=30)
        )
        assert connection.response is not None
        headers = connection.response.headers
        tried = headers[UPSTREAM_HEADER].split(", ")
        answers = headers[UPSTREAM_STATUS_HEADER].split(", ")
        client = Client(connection)
        first = client.receive()
        assert first["type"] == "queue_status" and first["state"] == "waiting", first
        return FleetSession(client, self.backend_at(tried[-1]), tried, answers)

    def open_session(self) -> FleetSession:
        """`connect`, start a detection session and take its first result."""
        session = self.connect()
        session.client.start(use_yolo=True)
        session.result()
        return session

    def drain(self, backend: FleetBackend) -> LeavingInstance:
        """Auto Scaling takes `backend`'s instance out: its IMDS answers `Terminated` and its
        fleet agent's first step starts the drain and keeps the termination hook alive."""
        leaving = LeavingInstance.start(backend.instance_id, backend.url, backend.drain_file)
        self._closing.callback(leaving.stop)
        leaving.step(Action.KEEP_DRAINING)
        return leaving

    def active_sessions(self) -> tuple[int, int]:
        return (self.backends[0].active_sessions(), self.backends[1].active_sessions())

    def wait_active(self, expected: tuple[int, int]) -> None:
        """Until each backend's own gauge shows `expected` sessions."""
        poll(lambda: self.active_sessions() == expected, f"active sessions {expected}")

    def close(self) -> None:
        self._closing.close()


class FleetHarness:
    """Two Tritons and two backends, started once for every fleet test."""

    def __init__(self, models_dir: Path, work_dir: Path, stack: contextlib.ExitStack):
        self.work_dir = work_dir
        backends = []
        for name in ("a", "b"):
            own = work_dir / name
            own.mkdir()
            triton = stack.enter_context(cpu_triton(models_dir, own))
            backend = FleetBackend(name, triton, models_dir, own)
            stack.callback(backend.stop)
            backend.start()
            backends.append(backend)
        self.backends = (backends[0], backends[1])

    def restore(self) -> None:
        """Both backends alive (a killed one started again), not draining, ready and idle."""
        for backend in self.backends:
            backend.drain_file.unlink(missing_ok=True)
            if not backend.alive():
                backend.start()
        for backend in self.backends:
            poll(backend.idle_and_ready, f"{backend} ready, without an earlier test's connections")

    @contextlib.contextmanager
    def load_balancer(self, prefix: Path) -> Iterator[Fleet]:
        """A fresh nginx (no failure memory from an earlier test) in front of both."""
        port = ServerAddress.on_free_ports().http_port
        site = prefix / "load_balancer.conf"
        site.write_text(
            LoadBalancerTemplate(TEMPLATE.read_text()).substitute(
                listen_port=port,
                port_a=self.backends[0].port,
                port_b=self.backends[1].port,
                fail_timeout_s=FAIL_TIMEOUT_S,
                log_dir=prefix,
            )
        )
        with nginx_serving(prefix, site, [port]):
            fleet = Fleet(self.backends, port, prefix)
            try:
                yield fleet
            finally:
                fleet.close()


@pytest.fixture(scope="package")
def fleet_harness(
    yolo_models_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FleetHarness]:
    with contextlib.ExitStack() as stack:
        yield FleetHarness(yolo_models_dir, tmp_path_factory.mktemp("fleet"), stack)


@pytest.fixture
def fleet(fleet_harness: FleetHarness, tmp_path: Path) -> Iterator[Fleet]:
    fleet_harness.restore()
    with fleet_harness.load_balancer(tmp_path) as fleet:
        yield fleet
