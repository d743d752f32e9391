"""The two display modes against the real stack: in sync mode every sent frame, when shown, has
exactly its own result drawn on it; live mode shows the video at once, boxes near their result."""

from __future__ import annotations

import json
import re
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
from playwright.sync_api import Page, WebSocketRoute

from tests.backend.service.conftest import BackendServer, bus_photo
from tests.frontend.conftest import CAMERA_SIZE, snapshot, wait_for_results

PROBE_ROW = 240
# The probe: the green channel of one row of the picture just drawn, every second pixel.
PROBE = f"""(context) => Array.from(
  context.getImageData(0, {PROBE_ROW}, context.canvas.width, 1).data
).filter((_, i) => i % 8 === 1)"""
SHIFTS = range(0, 81, 4)  # the fake camera's clip: the bus photo rolled right by these


def clip_shift(row: npt.NDArray[np.float64]) -> int:
    """Which of the clip's frames (its shift) a row of green values every second pixel shows."""
    photo = cv2.resize(cv2.imread(str(bus_photo())), CAMERA_SIZE)
    errors = {
        shift: float(np.abs(np.roll(photo, shift, axis=1)[PROBE_ROW, ::2, 1] - row).mean())
        for shift in SHIFTS
    }
    return min(errors, key=errors.__getitem__)


def sent_shift(jpeg: bytes) -> int:
    """The clip shift of a frame the page sent (downscaled: scaled back up to compare)."""
    frame = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    row = cv2.resize(frame, CAMERA_SIZE)[PROBE_ROW, ::2, 1].astype(np.float64)
    return clip_shift(row)


def canvas_boxes(result: dict[str, Any], canvas: tuple[int, int]) -> list[list[float]]:
    """A result's boxes scaled to the canvas."""
    sx, sy = canvas[0] / result["width"], canvas[1] / result["height"]
    return [[b[0] * sx, b[1] * sy, b[2] * sx, b[3] * sy] for b in result["yolo"]["boxes"]]


def same_boxes(a: list[list[float]], b: list[list[float]]) -> bool:
    """Equal within the 1 px the page rounds drawn boxes to."""
    return len(a) == len(b) and all(
        abs(p - q) <= 1
        for box_a, box_b in zip(a, b, strict=True)
        for p, q in zip(box_a, box_b, strict=True)
    )


def record_wire(page: Page) -> tuple[list[bytes], list[dict[str, Any]]]:
    """The frames the page sends and the results it receives, in order, as they pass."""
    sent: list[bytes] = []
    results: list[dict[str, Any]] = []

    def route(socket: WebSocketRoute) -> None:
        server = socket.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if isinstance(message, bytes):
                sent.append(message)
            server.send(message)

        def from_server(message: str | bytes) -> None:
            if isinstance(message, str) and json.loads(message).get("type") == "inference":
                results.append(json.loads(message)["data"])
            socket.send(message)

        socket.on_message(from_page)
        server.on_message(from_server)

    page.route_web_socket(re.compile(r".*/ws/inference.*"), route)
    return sent, results


def render_for(page: Page, frames: int) -> list[dict[str, Any]]:
    """Collect `frames` rendered frames through the measurement hook, with the probe on."""
    page.evaluate(f"() => {{ window.cvstack.probe = {PROBE}; window.cvstack.rendered = []; }}")
    page.wait_for_function(f"() => window.cvstack.rendered.length >= {frames}")
    rendered: list[dict[str, Any]] = page.evaluate(
        "() => { const r = window.cvstack.rendered; window.cvstack.rendered = null; return r; }"
    )
    return rendered


def test_sync_mode_draws_on_each_sent_frame_exactly_that_frames_result(
    live_backend: BackendServer, page: Page
) -> None:
    sent, results = record_wire(page)
    page.goto(f"{live_backend.url}/")
    wait_for_results(page, 6)
    assert page.evaluate("() => window.cvstack.displayMode") == "sync"
    page.wait_for_function("() => window.cvstack.displayDelayMs > 100")
    rendered = render_for(page, 240)

    assert [r["frame_idx"] for r in results] == list(range(len(results))), "one answer per frame"
    shifts = [sent_shift(jpeg) for jpeg in sent[: len(results)]]
    exact = [entry for entry in rendered if entry["resultAt"] == entry["pictureAt"]]
    assert len({entry["pictureAt"] for entry in exact}) >= 3, "sent frames are shown"
    for entry in exact:
        result = results[entry["resultFrameIdx"]]
        assert same_boxes([b["box"] for b in entry["boxes"]], canvas_boxes(result, CAMERA_SIZE))
        assert same_boxes([b["box"] for b in entry["held"]], canvas_boxes(result, CAMERA_SIZE))
        shown = clip_shift(np.array(entry["probe"], np.float64))
        answered = shifts[entry["resultFrameIdx"]]
        assert shown == answered, f"clip frame {shown} shown with the result of frame {answered}"
    pictures = [entry["pictureAt"] for entry in rendered]
    assert pictures == sorted(pictures), "the delayed video never runs backwards"
    assert all(e["resultAt"] is None or e["resultAt"] <= e["pictureAt"] for e in rendered)
    assert page.text_content("[data-stat=displayMode]") == "sync"
    assert int(page.text_content("[data-stat=displayDelayMs]") or "0") > 100


def test_live_mode_shows_the_video_at_once_with_boxes_near_their_result(
    live_backend: BackendServer, page: Page
) -> None:
    page.goto(f"{live_backend.url}/")
    wait_for_results(page, 3)
    page.select_option("#display-mode", "live")
    page.wait_for_function("() => window.cvstack.displayMode === 'live'")
    wait_for_results(page, 3)
    before = snapshot(page)
    rendered = render_for(page, 150)
    after = snapshot(page)

    seconds = (after["at"] - before["at"]) / 1000
    render_fps = (after["framesRendered"] - before["framesRendered"]) / seconds
    assert render_fps >= 30, f"the page rendered only {render_fps:.1f} fps"
    assert after["displayDelayMs"] == 0 and after["displayMode"] == "live"
    assert page.text_content("[data-stat=displayMode]") == "live"
    slow = after["inferenceFps"] < 4  # well below live mode's 6 results/s
    drawn = [entry for entry in rendered if entry["boxes"]]
    assert drawn, "boxes are drawn"
    for entry in drawn:
        assert entry["resultAt"] < entry["pictureAt"], "the picture is the camera's newest"
        for box, held in zip(entry["boxes"], entry["held"], strict=True):
            x1, y1, x2, y2 = held["box"]
            dx, dy = box["box"][0] - x1, box["box"][1] - y1
            assert abs(dx) <= 0.25 * (x2 - x1) + 1 and abs(dy) <= 0.25 * (y2 - y1) + 1
            if slow:
                assert abs(dx) <= 1 and abs(dy) <= 1, "no extrapolation at a low result rate"
