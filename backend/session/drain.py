"""Drain mode: while the drain file exists, this backend takes no new sessions.

In fleet mode the instance's fleet agent (backend/instance/fleet_agent.py) creates the file
when Auto Scaling takes the instance out of service. Then `/ready` answers 503 (the load
balancer stops routing here), a new WebSocket handshake is refused with HTTP 503, and sessions
waiting for a slot are told `draining` and closed with 1013; live sessions run on until they
end. Removing the file ends the drain. The answer is one `stat` per question, no thread.
`start_drain` is what the agent (and the local fleet tests) call to begin one.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

DRAINING_MESSAGE = (
    "this server is leaving the fleet and takes no new sessions; reconnect: the load balancer "
    "sends new sessions to another instance"
)


def start_drain(path: Path, reason: str) -> None:
    """Create the drain file atomically (a temporary beside it, renamed over it), readable by
    all, holding `reason` for whoever looks. Its modification time is when the drain began."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(descriptor, "w") as handle:
        os.fchmod(descriptor, 0o644)
        handle.write(f"{reason}\n")
    temporary.replace(path)


class DrainFileError(ValueError):
    """`CVSTACK_DRAIN_FILE` cannot work where the backend runs; the message says why."""


def check_drain_file(path: Path | None) -> None:
    """Refuse a drain file whose folder is missing (the drain would never be seen) or that is a
    folder itself."""
    if path is None:
        return
    if not path.parent.is_dir():
        raise DrainFileError(
            f"CVSTACK_DRAIN_FILE={path}: its folder {path.parent} does not exist here: create "
            "it, or mount it into the backend's container (the fleet agent writes the file there)"
        )
    if path.is_dir():
        raise DrainFileError(
            f"CVSTACK_DRAIN_FILE={path} is a folder: name a file in it (the file's existence "
            "means draining)"
        )


class DrainSignal:
    """Whether the drain file (`CVSTACK_DRAIN_FILE`) exists; None: never draining."""

    def __init__(self, path: Path | None) -> None:
        check_drain_file(path)
        self.path = path
        self._warned = False

    def draining(self) -> bool:
        """True while the file exists. A file that cannot be looked at (its folder's permissions
        changed after start-up, a symlink loop) is logged once and counts as absent: the
        instance keeps serving."""
        if self.path is None:
            return False
        try:
            os.stat(self.path)
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            if not self._warned:
                log.warning(
                    "cannot look at the drain file %s (%s): not draining; check it, and that "
                    "the backend's user may search its folder",
                    self.path,
                    exc.strerror,
                )
                self._warned = True
            return False
        return True
