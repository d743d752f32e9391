"""The shared-memory regions of one Triton server, told apart from other servers' regions.

Every `LocalTritonServer` names its Python-backend regions with a prefix of its own, passed
on tritonserver's command line; checking only that prefix keeps a test blind to the servers
that other test processes on the same machine start and stop meanwhile.
"""

from __future__ import annotations

from collections.abc import Iterable

import psutil

from backend.triton_server.local_server import SHM_DIR

PREFIX_OPTION = "shm-region-prefix-name="


def triton_shm_prefix(processes: Iterable[psutil.Process]) -> str:
    """The region prefix of the tritonserver among `processes`."""
    for process in processes:
        if process.name() == "tritonserver":
            for arg in process.cmdline():
                if PREFIX_OPTION in arg:
                    return arg.split(PREFIX_OPTION, 1)[1].split(",", 1)[0]
    raise AssertionError(f"no tritonserver with {PREFIX_OPTION} among the processes")


def shm_regions(prefix: str) -> set[str]:
    return {path.name for path in SHM_DIR.glob(f"{prefix}*")}
