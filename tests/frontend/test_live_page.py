"""The page against the real local stack: fast rendering, frames out, overlays where results say."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import cv2
from playwright.sync_api import Page, WebSocketRoute
from websockets.sync.client import connect

from backend.triton_server.local_server import LocalTritonServer
from tests.backend.service.conftest import BackendServer, backend_settings, bus_photo
from tests.frontend.conftest import (
    DETECTION_OVERRIDES,
    WAIT_MS,
    save_screenshot,
    snapshot,
    wait_for_results,
)

# One task reads the boxes the page drew last and the canvas pixels under their edges, so
# both belong to the same rendered frame.
READ_DRAWN_BOXES = """() => {
  const { result, frames, boxes } = window.cvstack.lastDrawn;
  const canvas = document.getElementById("view");
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  const at = (x, y) => {
    if (x < 0 || y < 0 || x >= canvas.width || y >= canvas.height) return null;
    const i = 4 * (y * canvas.width + x);
    return [pixels[i], pixels[i + 1], pixels[i + 2]];
  };
  return {
    canvas: [canvas.width, canvas.height],
    result: { width: result.width, height: result.height, yolo: result.yolo },
    frames,
    boxes: boxes.map(({ box, color }) => ({
      box, color,
      edges: [at(box[0], (box[1] + box[3]) >> 1), at(box[2], (box[1] + box[3]) >> 1)],
    })),
  };
}"""


def wait_for_running(page: Page) -> None:
    """Wait until the status says `running`. Not asserted at one instant: on a loaded machine a
    result may carry a transient stage error (a cold Triton's first calls timing out), and the
    page then rightly says `degraded` until the next clean result."""
    page.wait_for_function("() => window.cvstack.state === 'running'", timeout=WAIT_MS)


def test_renders_at_30_fps_while_inference_runs_far_slower(
    live_backend: BackendServer, page: Page
) -> None:
    page.goto(f"{live_backend.url}/")
    wait_for_results(page, 5)
    before = snapshot(page)
    page.wait_for_timeout(4000)
    after = snapshot(page)

    seconds = (after["at"] - before["at"]) / 1000
    render_fps = (after["framesRendered"] - before["framesRendered"]) / seconds
    inference_fps = (after["results"] - before["results"]) / seconds
    print(f"render {render_fps:.1f} fps, inference {inference_fps:.1f} fps")
    assert render_fps >= 30, f"the page rendered only {render_fps:.1f} fps"
    assert 0 < inference_fps < render_fps / 2, "inference should run, and far slower here"
    in_flight = after["framesSent"] - after["results"] - after["lostFrames"]
    assert in_flight in (0, 1), "at most one frame may wait for its result"
    assert int(page.text_content("[data-stat=renderFps]") or "0") > 0
    assert page.text_content("[data-stat=latencyMs]") != "-"
    wait_for_running(page)


def test_overlays_are_drawn_where_the_results_put_the_boxes(
    live_backend: BackendServer, page: Page
) -> None:
    page.goto(f"{live_backend.url}/")
    wait_for_results(page, 3)
    page.wait_for_function("() => window.cvstack.lastDrawn?.boxes.length > 0")
    drawn: dict[str, Any] = page.evaluate(READ_DRAWN_BOXES)
    save_screenshot(page, "frontend-live.png")

    result, yolo = drawn["result"], drawn["result"]["yolo"]
    scale_x = drawn["canvas"][0] / result["width"]
    scale_y = drawn["canvas"][1] / result["height"]
    assert (drawn["canvas"], result["width"]) == ([640, 480], 320), "frames are downscaled"
    assert 0 <= drawn["frames"] <= 3
    assert len(drawn["boxes"]) == len(yolo["boxes"])
    matching = 0
    for box, source, velocity, track in zip(
        drawn["boxes"], yolo["boxes"], yolo["velocities"], yolo["track_ids"], strict=True
    ):
        vx, vy = velocity if track >= 0 else (0.0, 0.0)
        moved = [source[0] + vx * drawn["frames"], source[1] + vy * drawn["frames"]]
        moved += [source[2] + vx * drawn["frames"], source[3] + vy * drawn["frames"]]
        expected = [moved[0] * scale_x, moved[1] * scale_y, moved[2] * scale_x, moved[3] * scale_y]
        assert all(abs(a - b) <= 1 for a, b in zip(box["box"], expected, strict=True))
        edges = [pixel for pixel in box["edges"] if pixel is not None]
        matching += sum(
            all(abs(a - b) <= 8 for a, b in zip(pixel, box["color"], strict=True))
            for pixel in edges
        )
    assert matching >= len(drawn["boxes"]), "box outlines are missing from the canvas"


def test_toggles_choose_the_stages_and_stop_start_the_session(
    live_backend: BackendServer, page: Page
) -> None:
    page.goto(f"{live_backend.url}/")
    page.wait_for_function("() => window.cvstack.lastResult?.pose != null")
    page.uncheck("#stages input[name=pose]")
    page.check("#stages input[name=ocr]")
    page.check("#stages input[name=llm]")
    page.wait_for_function(
        "() => window.cvstack.lastResult?.pose === null && window.cvstack.lastResult.yolo !== null"
    )
    page.click("#ocr")
    page.wait_for_function("() => window.cvstack.lastResult?.ocr_info != null")
    page.wait_for_selector("#summaries li")
    assert page.evaluate("() => window.cvstack.errors") == []

    page.click("#stop")
    page.wait_for_function("() => window.cvstack.state === 'closed'")
    assert page.is_enabled("#start") and page.is_disabled("#stop")
    page.click("#start")
    wait_for_results(page, 2)
    assert page.evaluate("() => window.cvstack.lastResult.pose") is None


def test_without_a_camera_a_chosen_image_file_is_used(
    live_backend: BackendServer, page: Page, tmp_path: Path
) -> None:
    image = tmp_path / "bus.jpg"
    cv2.imwrite(str(image), cv2.resize(cv2.imread(str(bus_photo())), (480, 360)))
    page.add_init_script(
        "navigator.mediaDevices.getUserMedia = async () => {"
        " throw new DOMException('no device', 'NotFoundError'); };"
    )
    page.goto(f"{live_backend.url}/")
    page.wait_for_selector("#no-source", state="visible")
    assert "no camera was found" in (page.text_content("#errors") or "")

    page.set_input_files("#file", str(image))
    wait_for_results(page, 3)
    sizes = page.evaluate(
        "() => [document.getElementById('view').width, window.cvstack.lastResult.width]"
    )
    assert sizes == [480, 320], "drawn at the image's size, sent downscaled to 320 px"
    assert page.is_hidden("#no-source")


def test_the_page_survives_a_backend_restart(
    yolo_models_dir: Path, triton: LocalTritonServer, page: Page
) -> None:
    settings = backend_settings(yolo_models_dir, triton.address, **DETECTION_OVERRIDES)
    servers = [BackendServer(settings).start()]
    try:
        page.goto(f"{servers[0].url}/")
        wait_for_results(page, 3)
        servers.pop().stop()
        page.wait_for_function("() => window.cvstack.state === 'reconnecting'")
        status = page.text_content("#status") or ""
        assert not re.search(r"\b1\d{3}\b", status), f"a raw close code is shown: {status}"
        down = snapshot(page)
        page.wait_for_timeout(1500)
        still_down = snapshot(page)
        assert still_down["results"] == down["results"]
        seconds = (still_down["at"] - down["at"]) / 1000
        rendered = still_down["framesRendered"] - down["framesRendered"]
        assert rendered / seconds >= 20, "the video keeps rendering while the backend is away"

        page.wait_for_timeout(3000)  # several attempts fail meanwhile: they are no reconnects
        assert snapshot(page)["reconnects"] == 0
        servers.append(BackendServer(settings).start())
        page.wait_for_function("() => window.cvstack.state === 'running'")
        wait_for_results(page, 3)
        assert snapshot(page)["reconnects"] == 1
        assert page.text_content("[data-stat=reconnects]") == "1"
    finally:
        for server in servers:
            server.stop()


def test_the_page_reconnects_when_a_draining_server_sends_its_waiting_session_away(
    yolo_models_dir: Path, triton: LocalTritonServer, page: Page, tmp_path: Path
) -> None:
    """Fleet mode's drain: the page waits for a slot, is told `draining` (fatal, close 1013),
    and reconnects instead of giving up; once a server takes it (here the same one, drain
    over and the slot free) it runs."""
    drain_file = tmp_path / "drain"
    settings = backend_settings(
        yolo_models_dir,
        triton.address,
        max_sessions=1,
        max_wait_s=120,
        queue_status_interval_s=0.2,
        drain_file=drain_file,
        **DETECTION_OVERRIDES,
    )
    server = BackendServer(settings).start()
    try:
        with connect(server.ws_url) as blocker:
            blocker.send(json.dumps({"type": "init", "params": {}}))
            blocker.send(json.dumps({"type": "start"}))
            while json.loads(blocker.recv(timeout=30)).get("state") != "running":
                pass
            page.goto(f"{server.url}/")
            page.wait_for_function("() => window.cvstack.state === 'waiting'", timeout=WAIT_MS)
            drain_file.touch()
            page.wait_for_function(
                "() => window.cvstack.errors.includes('draining')", timeout=WAIT_MS
            )
            page.wait_for_function("() => window.cvstack.state === 'reconnecting'", timeout=WAIT_MS)
            drain_file.unlink()
        wait_for_results(page, 3)
        wait_for_running(page)
        assert snapshot(page)["reconnects"] >= 1
    finally:
        server.stop()


def test_results_with_stage_errors_turn_the_status_amber_and_are_not_inference(
    live_backend: BackendServer, page: Page
) -> None:
    """The real backend's results, with a Triton timeout written into their `errors` (as an
    overloaded Triton makes them) while `failing` is set: the status says so and inference fps
    falls to 0 instead of counting the fast error answers. (A Triton that cannot be reached
    turns it red: test_page_truth.py.)"""
    failing = {"on": False}

    def route(socket: WebSocketRoute) -> None:
        server = socket.connect_to_server()

        def from_server(message: str | bytes) -> None:
            if isinstance(message, str) and failing["on"]:
                parsed = json.loads(message)
                if parsed.get("type") == "inference":
                    parsed["data"]["errors"] = {"yolo": "triton_timeout: no answer within 10 s"}
                    message = json.dumps(parsed)
            socket.send(message)

        server.on_message(from_server)

    page.route_web_socket(re.compile(r".*/ws/inference.*"), route)
    page.goto(f"{live_backend.url}/")
    wait_for_results(page, 3)
    wait_for_running(page)

    failing["on"] = True
    page.wait_for_function("() => window.cvstack.state === 'degraded'")
    assert page.get_attribute("#status", "data-state") == "degraded"
    assert "triton_timeout" in (page.text_content("#status") or "")
    page.wait_for_function("() => window.cvstack.snapshot().errorResults >= 3")
    page.wait_for_timeout(3500)  # the inference meter's window
    failing_snapshot = snapshot(page)
    assert failing_snapshot["inferenceFps"] == 0, "error results are no inference"
    assert page.text_content("[data-stat=inferenceFps]") == "0.0"

    failing["on"] = False
    page.wait_for_function("() => window.cvstack.state === 'running'")
    page.wait_for_function("() => window.cvstack.snapshot().inferenceFps > 0")
