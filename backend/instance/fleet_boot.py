"""What this boot of a fleet instance has done so far, as its fleet agent remembers it.

Two facts decide how the agent reads a target lifecycle state: whether this boot's launch
lifecycle hook is completed, and whether this boot has been in service (only then is `Warmed:*`
a return to the warm pool, with sessions to drain, rather than a launch into it). Each is kept
in memory and as an empty file beside the drain file: /run/cvstack-fleet is a tmpfs, so a new
boot starts without them, while an agent that systemd restarts reads them back.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

LAUNCHED = "launched"
IN_SERVICE = "in-service"


class BootMarks:
    """This boot's `launched` and `served` facts, in `folder` (the drain file's)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.launched = (folder / LAUNCHED).exists()
        self.served = (folder / IN_SERVICE).exists()

    def mark_launched(self) -> None:
        """The launch hook is completed (or there was none pending) for this boot."""
        if not self.launched:
            self.launched = True
            self._touch(LAUNCHED)

    def forget_launch(self) -> None:
        """Back in service without a reboot (a warm pool of running instances): leaving the
        pool holds the launch hook again."""
        self.launched = False
        self._remove(LAUNCHED)

    def mark_served(self) -> None:
        """This boot has been in service: a `Warmed:*` target state is a leave from now on."""
        if not self.served:
            self.served = True
            self._touch(IN_SERVICE)

    def _touch(self, name: str) -> None:
        try:
            (self.folder / name).touch()
        except OSError as error:
            log.warning(
                "cannot write %s in %s (%s): kept in memory only, so an agent restarted in this "
                "boot would not know it; check that the folder exists and is writable",
                name,
                self.folder,
                error.strerror,
            )

    def _remove(self, name: str) -> None:
        try:
            (self.folder / name).unlink(missing_ok=True)
        except OSError as error:
            log.warning("cannot remove %s in %s (%s)", name, self.folder, error.strerror)
