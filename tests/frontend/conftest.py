"""Headless Chromium with a fake camera, the real backend serving the page, and page helpers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from backend.bench.headless_chromium import CHROMIUM, chromium_args
from backend.paths import REPO_ROOT
from backend.triton_server.local_server import LocalTritonServer
from tests.backend.service.conftest import BackendServer, backend_settings, bus_photo

ARTIFACTS = REPO_ROOT / "test-artifacts"
CAMERA_SIZE = (640, 480)
WAIT_MS = 60_000  # generous: the machine may be loaded

# Random-weight models score every box far below the default 0.25; accept them all, so the
# page always has a few real (if meaningless) boxes to draw.
DETECTION_OVERRIDES: dict[str, Any] = {"conf_threshold": 0.0, "max_detections": 5}


@pytest.fixture(scope="session")
def camera_video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Y4M clip for Chromium's fake camera: the bus photo sliding left and right."""
    width, height = CAMERA_SIZE
    photo = cv2.resize(cv2.imread(str(bus_photo())), (width, height))
    shifts = [*range(0, 80, 4), *range(80, 0, -4)]
    path = tmp_path_factory.mktemp("camera") / "camera.y4m"
    with path.open("wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F30:1 Ip A1:1 C420jpeg\n".encode())
        for shift in shifts:
            frame = np.roll(photo, shift, axis=1)
            out.write(b"FRAME\n" + cv2.cvtColor(frame, cv2.COLOR_BGR2YUV_I420).tobytes())
    return path


@pytest.fixture(scope="package")
def browser(camera_video: Path) -> Iterator[Browser]:
    """Debian's Chromium, headless, with the fake camera playing `camera_video`.

    Package-scoped: Playwright's sync API keeps an event loop running in the main thread, so
    it must be gone before other packages' tests call `asyncio.run`.
    """
    if not CHROMIUM.exists():
        pytest.fail("the browser tests need Debian's chromium: apt-get install chromium")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=chromium_args(camera_video)
        )
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """One context per test, holding one page (a second page would throttle the first)."""
    browser_context = browser.new_context(viewport={"width": 1280, "height": 800})
    browser_context.set_default_timeout(WAIT_MS)
    yield browser_context
    browser_context.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    """The test's page; an uncaught script error fails the test."""
    new_page = context.new_page()
    uncaught: list[str] = []
    new_page.on("pageerror", lambda error: uncaught.append(str(error)))
    yield new_page
    assert not uncaught, f"uncaught errors in the page: {uncaught}"


@pytest.fixture(scope="module")
def live_backend(yolo_models_dir: Path, triton: LocalTritonServer) -> Iterator[BackendServer]:
    """The real backend on real Triton, serving the page at `/`."""
    settings = backend_settings(
        yolo_models_dir, triton.address, summary_window_s=1.0, **DETECTION_OVERRIDES
    )
    server = BackendServer(settings).start()
    yield server
    server.stop()


def snapshot(page: Page) -> dict[str, Any]:
    """The page's own counters (`window.cvstack.snapshot()`)."""
    values: dict[str, Any] = page.evaluate("() => window.cvstack.snapshot()")
    return values


def wait_for_results(page: Page, count: int) -> None:
    """Wait until the page has received `count` more results than now."""
    page.wait_for_function("() => window.cvstack !== undefined", timeout=WAIT_MS)
    target = snapshot(page)["results"] + count
    page.wait_for_function(f"() => window.cvstack.stats.results >= {target}", timeout=WAIT_MS)


def save_screenshot(page: Page, name: str) -> Path:
    """A PNG of the page under test-artifacts/."""
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path))
    return path
