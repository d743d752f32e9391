"""The stack under attack: Triton on CPU and `cvstack serve` with production-like access
settings, the backend's PID for /proc, and a tiny tmpfs for the summary backlog."""

from __future__ import annotations

import contextlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from backend.model_prep.manifest import load_manifest
from backend.paths import REPO_ROOT
from backend.triton_server.local_server import LocalTritonServer, ServerAddress
from backend.triton_server.repository import render_repository

TMPFS_BYTES = 8 << 20


@dataclass(frozen=True)
class Usage:
    rss_mb: float
    fds: int
    cpu_s: float  # user + system time since the process started


@dataclass(frozen=True)
class Leftovers:
    """What sessions left behind: slots held or queued, backlog files on disk."""

    active: int
    waiting: int
    backlog_files: int

    def more_than(self, other: Leftovers) -> bool:
        return (
            self.active > other.active
            or self.waiting > other.waiting
            or self.backlog_files > other.backlog_files
        )


@dataclass(frozen=True)
class Backend:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def exit_code(self) -> int | None:
        """None while the backend runs."""
        return self.process.poll()

    def usage(self) -> Usage:
        """Resident memory (VmRSS), open descriptors and CPU time, from /proc."""
        rss_kb = 0
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss_kb = int(line.split()[1])
        # Fields after the parenthesised command name; utime and stime are the 12th and 13th.
        stat = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu_s = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        return Usage(rss_kb / 1024, len(os.listdir(f"/proc/{self.pid}/fd")), cpu_s)

    def sessions(self) -> tuple[int, int] | None:
        """(active, waiting) sessions from /ready, or None if it does not answer."""
        try:
            with urllib.request.urlopen(f"{self.url}/ready", timeout=5) as response:
                body = json.load(response)
        except urllib.error.HTTPError as exc:  # 503 still carries the counts
            body = json.load(exc)
        except (OSError, ValueError):
            return None
        return int(body["active_sessions"]), int(body["waiting_sessions"])


@contextlib.contextmanager
def triton_on_cpu(models_dir: Path) -> Iterator[ServerAddress]:
    """The real Triton on free ports with the prepared models."""
    with tempfile.TemporaryDirectory(prefix="cvstack-hostile-") as tmp:
        repository = Path(tmp) / "repository"
        names = render_repository(load_manifest(models_dir), models_dir, repository, "cpu")
        triton = LocalTritonServer(repository, names, Path(tmp), ServerAddress.on_free_ports())
        triton.start()
        try:
            yield triton.address
        finally:
            triton.stop()


@contextlib.contextmanager
def backend(
    models_dir: Path,
    triton: ServerAddress,
    settings: Mapping[str, str],
    log: IO[bytes] | None = None,
    timeout_s: float = 120,
) -> Iterator[Backend]:
    """`cvstack serve` on a free port with `settings` (CVSTACK_* variables) on top of ours."""
    port = ServerAddress.on_free_ports().http_port
    env = {
        **os.environ,
        "CVSTACK_PORT": str(port),
        "CVSTACK_MODELS_DIR": str(models_dir),
        "CVSTACK_TRITON_GRPC_URL": triton.grpc_url,
        "CVSTACK_TRITON_METRICS_URL": triton.metrics_url,
        **settings,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "serve"],
        cwd=REPO_ROOT,
        env=env,
        stdout=log or subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    server = Backend(port, process)
    try:
        deadline = time.monotonic() + timeout_s
        while not _ready(server.url):
            if process.poll() is not None:
                raise RuntimeError(f"the backend exited with code {process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("the backend did not become ready in time")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        process.wait(30)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ready", timeout=1) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def small_tmpfs(size_bytes: int = TMPFS_BYTES) -> Iterator[tuple[Path, str | None]]:
    """A folder on a fresh tmpfs of `size_bytes` (a disk that can fill up), or a plain
    folder and the reason no tmpfs could be mounted."""
    with tempfile.TemporaryDirectory(prefix="cvstack-hostile-disk-") as folder:
        if os.geteuid() != 0:
            yield Path(folder), "mounting a tmpfs needs root"
            return
        mounted = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", folder],
            capture_output=True,
            text=True,
            check=False,
        )
        if mounted.returncode != 0:
            yield Path(folder), f"mount -t tmpfs failed: {mounted.stderr.strip()}"
            return
        try:
            yield Path(folder), None
        finally:
            subprocess.run(["umount", "--lazy", folder], check=False)


def raise_fd_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (children inherit it); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard
