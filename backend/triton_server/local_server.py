"""Run the real `tritonserver` binary on CPU as a child process, and stop it without leftovers."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from backend.triton_server.install import TritonInstall, TritonLaunchError

SHM_DIR = Path("/dev/shm")


@dataclass(frozen=True)
class ServerAddress:
    """Where the server listens."""

    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002

    @property
    def grpc_url(self) -> str:
        return f"{self.host}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.host}:{self.metrics_port}/metrics"

    @classmethod
    def on_free_ports(cls, host: str = "127.0.0.1") -> ServerAddress:
        """Three ports nobody listens on right now (for benchmarks and throwaway servers)."""
        holders = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(3)]
        try:
            for holder in holders:
                holder.bind((host, 0))
            http, grpc, metrics = (int(holder.getsockname()[1]) for holder in holders)
        finally:
            for holder in holders:
                holder.close()
        return cls(host, http, grpc, metrics)

    def ports(self) -> dict[str, int]:
        return {"http": self.http_port, "grpc": self.grpc_port, "metrics": self.metrics_port}


class LocalTritonServer:
    """A `tritonserver` process over a rendered model repository (context manager)."""

    def __init__(
        self,
        repository: Path,
        models: list[str],
        work_dir: Path,
        address: ServerAddress | None = None,
        install: TritonInstall | None = None,
    ) -> None:
        self.repository = repository
        self.models = models
        self.work_dir = work_dir
        self.address = address or ServerAddress()
        self.install = install or TritonInstall.locate()
        self.log_path = work_dir / "logs" / "tritonserver.log"
        self.shm_prefix = f"cvstack_{uuid.uuid4().hex[:10]}_"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def exit_code(self) -> int | None:
        """The exit status once a started server has exited by itself (negative: its signal)."""
        return self._process.poll() if self._process else None

    def start(self, timeout_s: float = 60.0) -> float:
        """Start and wait until every model is ready; returns seconds to ready."""
        self._preflight()
        backends = self.install.prepare_backend_dir(self.work_dir / "backends")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self.log_path.open("wb") as log:
            self._process = subprocess.Popen(
                self._command(backends),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.install.environment(dict(os.environ)),
                start_new_session=True,
            )
        try:
            self._wait_ready(started + timeout_s)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - started

    def stop(self, timeout_s: float = 15.0) -> None:
        """SIGTERM the server's process group, SIGKILL after a grace period, clean /dev/shm."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # stray stubs left in the group
        for region in SHM_DIR.glob(f"{self.shm_prefix}*"):
            region.unlink(missing_ok=True)

    def wait(self) -> int:
        """Block until the server exits by itself; returns its exit code."""
        if self._process is None:
            raise TritonLaunchError("the Triton server was not started")
        return self._process.wait()

    def log_tail(self, lines: int = 20) -> str:
        if not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def __enter__(self) -> LocalTritonServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _preflight(self) -> None:
        if self.running():
            raise TritonLaunchError("this Triton server is already running")
        for model in self.models:
            config = self.repository / model / "config.pbtxt"
            if not config.is_file():
                raise TritonLaunchError(
                    f"model '{model}' has no {config}; run `cvstack models prepare` and let "
                    "`cvstack triton serve` render the repository"
                )
        for kind, port in self.address.ports().items():
            if not _port_free(self.address.host, port):
                raise TritonLaunchError(
                    f"port {port} ({kind}) on {self.address.host} is already in use; stop "
                    f"what holds it or choose another with --{kind}-port"
                )

    def _command(self, backends: Path) -> list[str]:
        a = self.address
        command = [
            *_die_with_parent_prefix(),
            str(self.install.binary),
            f"--model-repository={self.repository}",
            f"--backend-directory={backends}",
            f"--cache-directory={self.install.caches_dir}",
            "--model-control-mode=explicit",
            *(f"--load-model={model}" for model in self.models),
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--http-address={a.host}",
            f"--http-port={a.http_port}",
            f"--grpc-address={a.host}",
            f"--grpc-port={a.grpc_port}",
            f"--metrics-address={a.host}",
            f"--metrics-port={a.metrics_port}",
            "--allow-gpu-metrics=false",
            "--allow-cpu-metrics=true",
            "--pinned-memory-pool-byte-size=0",
            "--cuda-memory-pool-byte-size=0:0",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            "--backend-config=python,shm-default-byte-size=4194304",
            "--disable-auto-complete-config",
        ]
        return command

    def _wait_ready(self, deadline: float) -> None:
        """Until the models answer ready and the metrics endpoint serves: Triton opens its
        metrics port after it reports ready, and a scrape in between was refused."""
        waiting_for = [f"{self.address.http_url}/v2/health/ready", self.address.metrics_url]
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise TritonLaunchError(self._exit_reason())
            if _answers_ok(waiting_for[0]):
                waiting_for.pop(0)
                if not waiting_for:
                    return
                continue
            time.sleep(0.05)
        raise TritonLaunchError(
            f"Triton was not ready within the time limit; its log is {self.log_path}"
        )

    def _exit_reason(self) -> str:
        log = self.log_tail(200)
        if "address already in use" in log.lower():
            return (
                "Triton could not bind its ports (address already in use); stop what holds "
                "them or choose other ports with --http-port/--grpc-port/--metrics-port"
            )
        errors = [line for line in log.splitlines() if line.startswith("E") or "error" in line]
        detail = errors[-1].strip() if errors else "no error line in the log"
        return f"Triton exited during start-up: {detail} (full log: {self.log_path})"


def _answers_ok(url: str) -> bool:
    """Whether `url` answers 200 now."""
    with (
        contextlib.suppress(urllib.error.URLError, ConnectionError, TimeoutError),
        urllib.request.urlopen(url, timeout=0.5) as response,
    ):
        return bool(response.status == 200)
    return False


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def _die_with_parent_prefix() -> list[str]:
    """`setpriv --pdeathsig`: the server gets SIGTERM if its launcher dies, so none is orphaned.

    The death signal follows the launching thread: start the server from a long-lived thread.
    """
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
