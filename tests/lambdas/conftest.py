"""Fixtures for the Lambda tests: fake AWS credentials, moto (in-process and on loopback),
a GPU instance, a loopback HTTP server that plays the backend's /ready, and settings read
afresh from each test's environment."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
from moto import mock_aws

from lambdas.idle_stop.settings import IdleStopSettings
from lambdas.shared.settings import LambdaSettings
from lambdas.start_server.settings import StartServerSettings
from lambdas.status.settings import StatusSettings

REGION = "eu-west-1"
MOTO_IMAGE = "ami-12c6146b"  # one of the images moto ships


SETTINGS: tuple[type[LambdaSettings], ...] = (StartServerSettings, StatusSettings, IdleStopSettings)


def forget_lambda_settings() -> None:
    """Make each function read its environment again, as a new container would (the settings
    are cached per container)."""
    for settings in SETTINGS:
        settings.settings_clear_cache()


@pytest.fixture(autouse=True)
def fresh_settings() -> Iterator[None]:
    forget_lambda_settings()
    yield
    forget_lambda_settings()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, so nothing can reach a real AWS account."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.setenv(name, "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@pytest.fixture
def moto_aws(aws_env: None) -> Iterator[None]:
    """moto in-process."""
    with mock_aws():
        yield


def run_instance(region: str = REGION) -> str:
    """A g4dn.xlarge-sized stand-in instance; moto starts it running."""
    ec2 = boto3.client("ec2", region_name=region)
    reservation = ec2.run_instances(
        ImageId=MOTO_IMAGE, MinCount=1, MaxCount=1, InstanceType="g4dn.xlarge"
    )
    return reservation["Instances"][0]["InstanceId"]


@pytest.fixture
def instance_id(moto_aws: None) -> str:
    return run_instance()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def moto_server_url() -> Iterator[str]:
    """A real `moto_server` process on loopback for the whole session."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise RuntimeError("moto_server did not start on loopback") from None
            time.sleep(0.05)
    yield url
    process.terminate()
    process.wait(timeout=10)


@pytest.fixture
def moto_server(moto_server_url: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The loopback moto_server, reset, with boto3 pointed at it through AWS_ENDPOINT_URL."""
    request = urllib.request.Request(f"{moto_server_url}/moto-api/reset", method="POST")
    urllib.request.urlopen(request, timeout=5).close()
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server_url)
    return moto_server_url


@dataclass
class ReadyServer:
    """A loopback HTTP server whose GET /ready answers `status` with `body` after `delay_s`."""

    status: int = 200
    body: dict[str, object] = field(default_factory=lambda: {"ready": True})
    delay_s: float = 0.0
    host: str = ""
    requests: list[str] = field(default_factory=list)


@pytest.fixture
def ready_server() -> Iterator[ReadyServer]:
    state = ReadyServer()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            time.sleep(state.delay_s)
            payload = json.dumps(state.body).encode()
            self.send_response(state.status if self.path == "/ready" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: object) -> None:
            """Keep test output quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.host = f"127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def api_event(method: str, path: str, origin: str | None = None) -> dict[str, object]:
    """An API Gateway REST proxy event as the lifecycle API sends it."""
    return {
        "httpMethod": method,
        "resource": path,
        "path": path,
        "headers": {"origin": origin} if origin else {},
        "body": None,
    }
