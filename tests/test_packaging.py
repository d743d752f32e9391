"""The environment `make install` builds: one OpenCV, the `cvstack` entry point."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import distributions
from pathlib import Path

import pytest


def test_exactly_one_opencv_distribution_is_installed() -> None:
    opencv = sorted(
        dist.metadata["Name"].lower()
        for dist in distributions()
        if dist.metadata["Name"].lower().startswith("opencv")
    )
    assert opencv == ["opencv-python-headless"]


@pytest.mark.integration  # runs a child process
def test_cvstack_console_script_lists_its_commands() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cvstack"), "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("models", "triton", "bench"):
        assert command in result.stdout
