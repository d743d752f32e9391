"""Debian's Chromium as the browser tests and the overlay benchmark run it: headless, quiet, and
with a Y4M clip as its camera."""

from __future__ import annotations

import os
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")


def chromium_args(camera: Path) -> list[str]:
    """Launch flags: no GPU, no background traffic, camera access granted and `camera` played
    (looping) as the camera; no sandbox as root, where Chromium refuses to start with one."""
    args = [
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
    ]
    if os.geteuid() == 0:
        args.append("--no-sandbox")
    return args
