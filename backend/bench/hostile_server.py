"""The stack under attack: Triton on CPU and `cvstack serve` with production-like access
settings, the backend's PID for /proc, and a tiny tmpfs for the summary backlog."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from backend.bench.stack import BackendProcess, backend_process
from backend.triton_server.local_server import ServerAddress

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
    """The attacked `cvstack serve`, seen from outside: /proc and /ready."""

    started: BackendProcess

    @property
    def url(self) -> str:
        return self.started.url

    @property
    def port(self) -> int:
        return self.started.port

    @property
    def pid(self) -> int:
        return self.started.process.pid

    def exit_code(self) -> int | None:
        """None while the backend runs."""
        return self.started.process.poll()

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
def backend(
    models_dir: Path,
    triton: ServerAddress,
    settings: Mapping[str, str],
    log: IO[bytes] | None = None,
) -> Iterator[Backend]:
    """`cvstack serve` on a free port with `settings` (CVSTACK_* variables) on top."""
    with backend_process(models_dir, triton, settings=settings, log=log) as started:
        yield Backend(started)


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
