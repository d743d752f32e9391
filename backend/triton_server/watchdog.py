"""Keeps `cvstack demo`'s local Triton alive, or stops the demo: no backend beside a dead Triton.

A thread polls the server process; when it exits, the watchdog reports the exit code and the
end of Triton's log, restarts it after a growing delay, and after `max_restarts` restarts in a
row that did not stay up for `stable_after_s` gives up and calls `on_give_up` with a message
saying what happened and where the log is.

Restarts happen in the watchdog's own thread, which lives until `stop()`: the server's
parent-death signal follows the thread that launched it (see `local_server.py`).
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from backend.triton_server.install import TritonLaunchError
from backend.triton_server.local_server import LocalTritonServer

LOG_TAIL_LINES = 10


@dataclass(frozen=True)
class RestartPolicy:
    """How often, and how soon, a Triton that exits is started again."""

    max_restarts: int = 3  # restarts in a row without a stable run, then give up
    first_delay_s: float = 1.0  # doubled for each further restart in a row
    stable_after_s: float = 60.0  # a run this long resets the count
    poll_s: float = 0.2  # how soon an exit is noticed


def exit_words(code: int) -> str:
    """A process exit status in words: `exit code 1`, `killed by SIGKILL`."""
    if code >= 0:
        return f"exit code {code}"
    try:
        return f"killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"killed by signal {-code}"


def report_to_stderr(message: str) -> None:
    print(f"triton watchdog: {message}", file=sys.stderr, flush=True)


class TritonWatchdog:
    """Restarts `server` when it exits; `failure` says why it gave up, if it did."""

    def __init__(
        self,
        server: LocalTritonServer,
        on_give_up: Callable[[str], None],
        policy: RestartPolicy | None = None,
        report: Callable[[str], None] = report_to_stderr,
    ) -> None:
        self.server = server
        self.policy = policy or RestartPolicy()
        self.failure: str | None = None
        self._on_give_up = on_give_up
        self._report = report
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="triton-watchdog", daemon=True)

    def start(self) -> None:
        """Watch the (running) server from now on."""
        self._thread.start()

    def stop(self) -> None:
        """Stop watching; a restart under way finishes first. Call before stopping the server."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join()

    def _watch(self) -> None:
        try:
            self._watch_until_stopped()
        except Exception as exc:  # a dead watchdog must not leave the backend unwatched
            self.failure = (
                f"the Triton watchdog failed ({exc!r}); Triton's log: {self.server.log_path}"
            )
            self._on_give_up(self.failure)
            raise

    def _watch_until_stopped(self) -> None:
        restarts, up_since = 0, time.monotonic()
        while not self._stopping.wait(self.policy.poll_s):
            code = self.server.exit_code()
            if code is None:
                continue
            if time.monotonic() - up_since >= self.policy.stable_after_s:
                restarts = 0
            self._report(
                f"Triton exited ({exit_words(code)}); the last lines of its log "
                f"{self.server.log_path}:\n{self.server.log_tail(LOG_TAIL_LINES)}"
            )
            restarts = self._restart(restarts, f"it exited ({exit_words(code)})")
            if restarts < 0:
                return
            up_since = time.monotonic()

    def _restart(self, restarts: int, cause: str) -> int:
        """Restart with backoff; the restarts in a row so far, or -1 when stopping or given up."""
        while restarts < self.policy.max_restarts:
            delay = self.policy.first_delay_s * 2**restarts
            restarts += 1
            self._report(
                f"restarting Triton in {delay:.0f} s (restart {restarts} of "
                f"{self.policy.max_restarts} in a row)"
            )
            if self._stopping.wait(delay):
                return -1
            self.server.stop()  # the exited server's leftovers: stray stubs, shared memory
            try:
                seconds = self.server.start()
            except (TritonLaunchError, OSError) as exc:
                cause = f"restart {restarts} failed: {exc}"
                self._report(cause)
                continue
            self._report(f"Triton is ready again after {seconds:.1f} s (pid {self.server.pid})")
            return restarts
        self.failure = (
            f"Triton kept exiting: {restarts} restarts in a row did not keep it up for "
            f"{self.policy.stable_after_s:.0f} s; last: {cause}. The demo stopped rather than "
            f"run the backend beside a dead server. Triton's log: {self.server.log_path}"
        )
        self._on_give_up(self.failure)
        return -1
