"""The page says what the models are, and warns in a visible banner when the weights are random."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import Page, expect

from backend.triton_server.local_server import LocalTritonServer
from tests.backend.service.conftest import BackendServer, backend_settings
from tests.backend.service.model_manifests import with_source
from tests.frontend.conftest import WAIT_MS, save_screenshot

MODELS_ARRIVED = "() => window.cvstack?.models != null"


def test_random_weights_show_a_warning_banner_and_the_source(
    live_backend: BackendServer, page: Page
) -> None:
    page.goto(f"{live_backend.url}/")
    page.wait_for_function(MODELS_ARRIVED, timeout=WAIT_MS)
    banner = page.locator("#model-warning")
    expect(banner).to_be_visible()
    expect(banner).to_have_attribute("role", "alert")
    expect(banner).to_contain_text("random weights in detection (yolo) and pose (yolo_pose)")
    expect(banner).to_contain_text("meaningless")
    expect(banner).to_contain_text("cvstack models prepare")
    expect(page.locator("#models")).to_have_text(
        "detector yolo: random weights (yolov8n.yaml with random weights), 80 classes; "
        "pose yolo_pose: random weights (yolov8n-pose.yaml with random weights), 1 class"
    )
    expect(page.locator("#class-names")).to_contain_text("person, bicycle, car")
    save_screenshot(page, "frontend-random-weights.png")


def test_real_weights_show_their_source_and_no_warning(
    triton: LocalTritonServer, yolo_models_dir: Path, tmp_path: Path, page: Page
) -> None:
    models_dir = with_source(yolo_models_dir, tmp_path / "models", "official", "yolov8n.pt")
    backend = BackendServer(backend_settings(models_dir, triton.address)).start()
    try:
        page.goto(f"{backend.url}/")
        page.wait_for_function(MODELS_ARRIVED, timeout=WAIT_MS)
        expect(page.locator("#models")).to_have_text(
            "detector yolo: official weights (yolov8n.pt), 80 classes; "
            "pose yolo_pose: official weights (yolov8n.pt), 1 class"
        )
        expect(page.locator("#model-warning")).to_be_hidden()
        page.close()
    finally:
        backend.stop()
