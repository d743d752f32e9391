"""`cvstack bench coldstart`: the page's cold start in headless Chromium, measured.

The real local stack (CPU Triton, the backend) runs behind a `ColdStartDoor` that says
"pending" for `boot_s` seconds after Start. Meanwhile the page runs its own detector; then it
hands over to the server. From the page's measurement hook (`window.cvstack`) this reports the
seconds from Start to the first drawn detection, the longest time between frames with overlays
from then on (the hand-over included) against the server's result interval, and which
execution provider ran the page's detector.
"""

from __future__ import annotations

import contextlib
import itertools
import statistics
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from backend.bench.coldstart_door import ColdStartDoor
from backend.bench.headless_chromium import CHROMIUM, chromium_args
from backend.bench.stack import backend_process, triton_on_cpu
from backend.model_prep.browser_model import DESCRIPTOR_FILE
from backend.model_prep.manifest import ManifestError

if TYPE_CHECKING:
    from playwright.sync_api import Page

WAIT_MS = 60_000
CAMERA_SIZE = (640, 480)
SERVER_RESULTS = 10  # collected after the hand-over
PAGE_STATE = """() => ({
  startedAt: window.cvstack.startedAt,
  firstDrawnAt: window.cvstack.firstDrawnAt,
  local: window.cvstack.local,
  rendered: window.cvstack.rendered,
})"""


@dataclass(frozen=True)
class HandOver:
    """One cold start as the page drew it."""

    first_detection_s: float  # Start -> first frame drawn with the device's detections
    longest_gap_ms: float  # most time between two frames with overlays, from then on
    result_interval_ms: float  # the server's median time between results
    provider: str  # the execution provider of the page's detector ("wasm", "webgpu")
    steps: dict[str, float]  # Start -> the end of each step of the page's detector, in s
    device_labels: frozenset[str]  # classes drawn from the device's results
    server_labels: frozenset[str]


def measure(state: dict[str, Any]) -> HandOver:
    """A `HandOver` from the page's hook (`PAGE_STATE`) after the server took over."""
    device_at = state["firstDrawnAt"]["device"]
    if device_at is None:
        raise ValueError(f"the page drew no detection of its own (its detector: {state['local']})")
    frames = [f for f in state["rendered"] if f["renderedAt"] >= device_at]
    drawn = [f["renderedAt"] for f in frames if f["runsOn"] is not None]
    server = [f for f in frames if f["runsOn"] == "server"]
    result_times = sorted({f["resultAt"] for f in server})
    if len(result_times) < 3:
        raise ValueError(f"too few server results drawn to measure ({len(result_times)})")
    return HandOver(
        first_detection_s=(device_at - state["startedAt"]) / 1000,
        longest_gap_ms=max(b - a for a, b in itertools.pairwise(drawn)),
        result_interval_ms=statistics.median(np.diff(result_times).tolist()),
        provider=str(state["local"]["provider"]),
        steps={
            step: (at - state["startedAt"]) / 1000 for step, at in state["local"]["marks"].items()
        },
        device_labels=_labels(f for f in frames if f["runsOn"] == "device"),
        server_labels=_labels(server),
    )


def _labels(frames: Any) -> frozenset[str]:
    return frozenset(box["label"] for frame in frames for box in frame["boxes"])


def press_start(page: Page, door: ColdStartDoor) -> None:
    """Open the page through `door` (not booted) and press Start as soon as it works (the
    page's state "idle": its controls bound), the camera perhaps not open yet: the worst case
    for the page's own detector, which starts loading as the page opens."""
    door.booted.clear()
    page.goto(f"{door.url}/")
    page.wait_for_function("() => window.cvstack?.state === 'idle'", polling=10)
    page.evaluate("() => { window.cvstack.rendered = []; }")
    page.click("#start")


def handed_over(page: Page) -> HandOver:
    """Wait until the server's results are drawn (`door.boot()` called), then measure."""
    page.wait_for_function("() => window.cvstack.runsOn === 'server'", timeout=WAIT_MS)
    target = SERVER_RESULTS + page.evaluate("() => window.cvstack.stats.results")
    page.wait_for_function(f"() => window.cvstack.stats.results >= {target}", timeout=WAIT_MS)
    return measure(page.evaluate(PAGE_STATE))


def sample_photo() -> Path:
    """ultralytics' bus photo (a bus and four people), shipped in its wheel."""
    import ultralytics  # noqa: PLC0415 - only for the path of its bundled sample photo

    return Path(ultralytics.__file__).parent / "assets" / "bus.jpg"


def write_photo_y4m(photo: Path, target: Path) -> Path:
    """A one-second Y4M of `photo` sliding sideways, for Chromium's fake camera."""
    width, height = CAMERA_SIZE
    image = cv2.resize(cv2.imread(str(photo)), (width, height))
    with target.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for shift in [*range(0, 60, 4), *range(60, 0, -4)]:
            frame = np.roll(image, shift, axis=1)
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return target


@contextlib.contextmanager
def _door_in_front_of_the_stack(models_dir: Path) -> Iterator[ColdStartDoor]:
    with triton_on_cpu(models_dir) as triton:
        door = ColdStartDoor("", models_dir)
        settings = {"CVSTACK_SESSION_TOKEN_SECRET": door.secret}
        with backend_process(models_dir, triton.address, settings=settings) as backend:
            door.backend_url = backend.url
            with door:
                yield door


def run_coldstart_bench(
    models_dir: Path, photo: Path, *, boot_s: float, runs: int
) -> list[HandOver]:
    """`runs` cold starts of the page (a fresh browser context each: nothing cached)."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 - optional, heavy

    if not (models_dir / DESCRIPTOR_FILE).is_file():
        raise ManifestError(f"no page detector in {models_dir}; run `cvstack models prepare`")
    if not CHROMIUM.exists():
        raise RuntimeError(
            "the cold-start benchmark needs Debian's chromium: apt-get install chromium"
        )
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="cvstack-coldstart-") as tmp,
        _door_in_front_of_the_stack(models_dir) as door,
        sync_playwright() as playwright,
    ):
        camera = write_photo_y4m(photo, Path(tmp) / "camera.y4m")
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=chromium_args(camera)
        )
        for _ in range(runs):
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            context.set_default_timeout(WAIT_MS)
            page = context.new_page()
            press_start(page, door)
            threading.Timer(boot_s, door.boot).start()
            results.append(handed_over(page))
            context.close()
        browser.close()
    return results


def render_markdown(runs: Sequence[HandOver], machine: str, boot_s: float) -> str:
    """The results table for docs/benchmarks.md."""
    lines = [
        f"Cold start in the page, {len(runs)} runs, simulated boot {boot_s:.0f} s ({machine})",
        "",
        "| run | provider | Start -> first detection drawn | steps (s after Start) "
        "| longest gap between overlays | server result interval | classes drawn on the device |",
        "|---|---|---|---|---|---|---|",
    ]
    for index, run in enumerate(runs, 1):
        lines.append(
            f"| {index} | {run.provider} | {run.first_detection_s:.2f} s | "
            f"{', '.join(f'{step} {at:.2f}' for step, at in run.steps.items())} | "
            f"{run.longest_gap_ms:.0f} ms | {run.result_interval_ms:.0f} ms | "
            f"{', '.join(sorted(run.device_labels))} |"
        )
    return "\n".join(lines) + "\n"
