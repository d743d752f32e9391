"""Detection in the page while the GPU boots: the page's own detector (the pretrained YOLOv10n
in onnxruntime-web) draws within 3 s of Start, then the page hands over to the server session
with no frame left without overlays longer than one result interval."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from backend.bench.coldstart_bench import handed_over, press_start
from backend.bench.coldstart_door import ColdStartDoor
from backend.triton_server.local_server import LocalTritonServer
from tests.backend.service.conftest import BackendServer, backend_settings
from tests.frontend.conftest import save_screenshot

FIRST_DETECTION_BOUND_S = 3.0  # the bound: model fetch and runtime start included


@pytest.fixture(scope="module")
def door(real_models_dir: Path, real_triton: LocalTritonServer) -> Iterator[ColdStartDoor]:
    """The page's origin with a start/status API that keeps the real backend "pending"."""
    with ColdStartDoor("", real_models_dir) as front:
        settings = backend_settings(
            real_models_dir, real_triton.address, session_token_secret=front.secret
        )
        backend = BackendServer(settings).start()
        front.backend_url = backend.url
        yield front
        backend.stop()


def test_the_page_detects_on_this_device_then_hands_over_to_the_server(
    door: ColdStartDoor, page: Page
) -> None:
    press_start(page, door)
    page.wait_for_function("() => window.cvstack.firstDrawnAt.device !== null")
    badge = page.locator("#runs-on")
    expect(badge).to_have_attribute("data-where", "device")
    expect(badge).to_contain_text("on this device (WebAssembly)")
    expect(badge).to_contain_text("licence")
    save_screenshot(page, "frontend-detection-on-this-device.png")
    assert page.evaluate("() => window.cvstack.stats.results") == 0, "the server is still booting"
    assert door.calls.count("status") >= 1 and "start" in door.calls

    door.boot()
    run = handed_over(page)

    expect(badge).to_have_attribute("data-where", "server")
    expect(badge).to_have_text("on the GPU server")
    assert page.evaluate("() => window.cvstack.local.state") == "stopped", "its session is freed"
    assert run.provider == "wasm", "headless Chromium without a GPU has no WebGPU adapter"
    assert run.first_detection_s <= FIRST_DETECTION_BOUND_S, run
    assert {"bus", "person"} <= run.device_labels, "the device's detector sees the photo"
    assert {"bus", "person"} <= run.server_labels
    assert run.longest_gap_ms <= run.result_interval_ms, run
    print(f"\ncold start in the page: {run}")


def test_without_the_browser_model_the_cold_start_carries_on(
    door: ColdStartDoor, page: Page
) -> None:
    page.route("**/models/browser_detect.json", lambda route: route.fulfill(status=404))
    press_start(page, door)
    page.wait_for_function("() => window.cvstack.local?.state === 'failed'")
    expect(page.locator("#errors")).to_contain_text("detection on this device is not available")
    door.boot()
    page.wait_for_function("() => window.cvstack.runsOn === 'server'")
    expect(page.locator("#runs-on")).to_have_text("on the GPU server")
