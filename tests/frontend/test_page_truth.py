"""The page says what is true, against the real stack: a dead Triton is red, a broken file
leaves the camera running, no picture means nothing drawn, counted or sent, a reconnect comes
as soon as the backend answers (or when asked), "Read text now" only with OCR on, a load
without failed requests, and controls a finger can hit on a phone."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, FilePayload, Page, ViewportSize

from backend.triton_server.local_server import LocalTritonServer
from tests.backend.service.conftest import BackendServer, backend_settings
from tests.frontend.conftest import (
    DETECTION_OVERRIDES,
    WAIT_MS,
    save_screenshot,
    snapshot,
    wait_for_results,
)

TOUCH_TARGET_PX = 44  # WCAG 2.5.5 and Apple's HIG
PHONE = ViewportSize(width=390, height=844)
# Long enough that the page could only beat it by cutting the wait short.
LONG_BACKOFF_MS = 120_000
STATE = "() => window.cvstack.state"
STATE_IS = "() => window.cvstack.state === {!r}"
CANVAS_IS_BLANK = """() => {
  const canvas = document.getElementById("view");
  const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
  return pixels.every((value) => value === 0);
}"""


def state_is(page: Page, state: str, timeout: float = WAIT_MS) -> None:
    page.wait_for_function(STATE_IS.format(state), timeout=timeout)


def errors_text(page: Page) -> str:
    return page.text_content("#errors") or ""


def test_a_dead_triton_turns_the_status_red_until_it_is_back(
    yolo_models_dir: Path, own_triton: LocalTritonServer, page: Page
) -> None:
    settings = backend_settings(
        yolo_models_dir, own_triton.address, triton_timeout_s=5.0, **DETECTION_OVERRIDES
    )
    backend = BackendServer(settings).start()
    try:
        page.goto(f"{backend.url}/")
        wait_for_results(page, 3)
        state_is(page, "running")

        own_triton.stop()
        state_is(page, "triton-down")
        status = page.text_content("#status") or ""
        assert "Triton is unreachable" in status and "restart it" in status, status
        color = page.eval_on_selector("#status", "element => getComputedStyle(element).color")
        assert color == "rgb(255, 102, 102)", "red, not amber"
        failing = snapshot(page)["errorResults"]
        page.wait_for_function(f"() => window.cvstack.snapshot().errorResults >= {failing + 3}")
        page.wait_for_function("() => window.cvstack.snapshot().inferenceFps === 0")
        page.wait_for_function(
            "() => document.querySelector('[data-stat=inferenceFps]').textContent === '0.0'"
        )
        assert page.evaluate(STATE) == "triton-down", "it stays red while Triton is away"

        own_triton.start(timeout_s=120)
        state_is(page, "running")
        page.wait_for_function("() => window.cvstack.snapshot().inferenceFps > 0")
    finally:
        backend.stop()


def test_a_broken_file_leaves_the_camera_running(live_backend: BackendServer, page: Page) -> None:
    page.goto(f"{live_backend.url}/")
    wait_for_results(page, 3)
    for name, mime in (("broken.mp4", "video/mp4"), ("broken.jpg", "image/jpeg")):
        broken = FilePayload(name=name, mimeType=mime, buffer=os.urandom(20_000))
        page.set_input_files("#file", files=[broken])
        page.wait_for_function(
            f"() => document.getElementById('errors').textContent.includes({name!r})"
        )
        assert "the current picture stays" in errors_text(page)

    before = snapshot(page)
    frame = page.evaluate("() => window.cvstack.lastResult.frame_idx")
    wait_for_results(page, 3)
    page.wait_for_function(
        f"() => window.cvstack.lastDrawn?.result.frame_idx > {frame}"
        f" && window.cvstack.snapshot().framesRendered > {before['framesRendered'] + 30}"
    )
    camera_plays = page.evaluate(
        "() => [...document.querySelectorAll('#pictures > *')].map("
        "(element) => [element.tagName, element.srcObject !== null && !element.paused])"
    )
    assert camera_plays == [["VIDEO", True]], "the camera alone, still playing"
    assert page.is_hidden("#no-source")
    state_is(page, "running")


def test_without_a_picture_nothing_is_drawn_counted_or_sent(
    live_backend: BackendServer, page: Page
) -> None:
    page.add_init_script(
        "navigator.mediaDevices.getUserMedia = async () => {"
        " throw new DOMException('denied', 'NotAllowedError'); };"
    )
    page.goto(f"{live_backend.url}/")
    page.wait_for_selector("#no-source", state="visible")
    assert "camera access was denied" in errors_text(page)
    state_is(page, "running")
    page.wait_for_timeout(1500)  # an interval in which a picture would have been drawn and sent
    counts = snapshot(page)
    assert (counts["framesRendered"], counts["framesSent"], counts["renderFps"]) == (0, 0, 0)
    assert page.text_content("[data-stat=renderFps]") == "0"
    assert page.evaluate(CANVAS_IS_BLANK)


def test_a_camera_that_stops_clears_the_picture_and_the_render_meter(
    live_backend: BackendServer, page: Page
) -> None:
    page.goto(f"{live_backend.url}/")
    wait_for_results(page, 3)
    page.wait_for_function("() => window.cvstack.lastDrawn?.boxes.length > 0")
    page.wait_for_function(
        "() => Number(document.querySelector('[data-stat=renderFps]').textContent) >= 20"
    )
    # What the browser does when the camera is unplugged or its permission withdrawn.
    page.evaluate(
        "() => document.querySelector('#pictures video').srcObject.getVideoTracks()[0]"
        ".dispatchEvent(new Event('ended'))"
    )
    page.wait_for_selector("#no-source", state="visible")
    assert "the camera stopped" in errors_text(page)
    page.wait_for_function(
        "() => document.querySelector('[data-stat=renderFps]').textContent === '0'"
    )
    stopped = snapshot(page)
    page.wait_for_timeout(1000)  # an interval in which frames would have been drawn and sent
    after = snapshot(page)
    assert after["framesRendered"] == stopped["framesRendered"]
    assert after["framesSent"] == stopped["framesSent"]
    assert page.evaluate("() => window.cvstack.lastDrawn") is None, "no overlays left"
    assert page.evaluate(CANVAS_IS_BLANK), "no frozen last frame"
    assert page.evaluate("() => document.querySelectorAll('#pictures > *').length") == 0


def test_the_page_reconnects_as_soon_as_the_backend_answers_and_on_retry_now(
    yolo_models_dir: Path, triton: LocalTritonServer, page: Page
) -> None:
    page.route(
        "**/config.json",
        lambda route: route.fulfill(
            json={"reconnectMinMs": LONG_BACKOFF_MS, "reconnectMaxMs": LONG_BACKOFF_MS}
        ),
    )
    sockets: list[str] = []
    page.on("websocket", lambda socket: sockets.append(socket.url))
    settings = backend_settings(yolo_models_dir, triton.address, **DETECTION_OVERRIDES)
    servers = [BackendServer(settings).start()]
    try:
        page.goto(f"{servers[0].url}/")
        wait_for_results(page, 3)
        assert page.is_hidden("#retry")
        servers.pop().stop()
        state_is(page, "reconnecting")
        assert page.is_visible("#retry")

        attempts = len(sockets)
        with page.expect_websocket():
            page.click("#retry")
        assert len(sockets) == attempts + 1, "Retry now makes one attempt"
        state_is(page, "reconnecting")
        assert snapshot(page)["reconnects"] == 0, "a failed attempt is no reconnection"

        servers.append(BackendServer(settings).start())
        started = time.monotonic()
        # The backoff is at least 96 s now; the page must not wait it out.
        state_is(page, "running", timeout=LONG_BACKOFF_MS * 0.8 / 2)
        print(f"running {time.monotonic() - started:.1f} s after the backend started")
        wait_for_results(page, 3)
        assert snapshot(page)["reconnects"] == 1
        assert page.text_content("[data-stat=reconnects]") == "1"
        assert page.is_hidden("#retry")
    finally:
        for server in servers:
            server.stop()


def test_read_text_now_only_with_ocr_on_in_a_session(
    live_backend: BackendServer, page: Page
) -> None:
    page.goto(f"{live_backend.url}/")
    state_is(page, "running")
    ocr = "#stages input[name=ocr]"
    assert not page.is_checked(ocr) and page.is_disabled("#ocr")
    page.check(ocr)
    assert page.is_enabled("#ocr")
    page.uncheck(ocr)
    assert page.is_disabled("#ocr")
    page.check(ocr)
    page.click("#stop")
    assert page.is_disabled("#ocr"), "no session, nothing to read text for"
    page.click("#start")
    assert page.is_enabled("#ocr")
    page.click("#ocr")
    page.wait_for_function("() => window.cvstack.lastResult?.ocr_info != null")


def test_loading_the_page_requests_nothing_that_fails(
    live_backend: BackendServer, page: Page
) -> None:
    responses: list[tuple[int, str]] = []
    failed: list[str] = []
    page.on("response", lambda response: responses.append((response.status, response.url)))
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.goto(f"{live_backend.url}/")
    wait_for_results(page, 2)
    errors = [f"{status} {url}" for status, url in responses if status >= 400]
    assert errors == [], "the page load asked for something that is not there"
    assert failed == []
    loaded = {url.removeprefix(live_backend.url) for _, url in responses}
    assert {"/", "/config.json", "/js/main.js", "/css/style.css"} <= loaded
    icon = page.get_attribute("link[rel=icon]", "href")
    assert icon and page.request.get(f"{live_backend.url}/{icon}").ok


def test_the_page_fits_a_phone_and_its_controls_are_touch_sized(
    live_backend: BackendServer, browser: Browser
) -> None:
    context = browser.new_context(
        viewport=PHONE, is_mobile=True, has_touch=True, device_scale_factor=3
    )
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        uncaught: list[str] = []
        page.on("pageerror", lambda error: uncaught.append(str(error)))
        page.goto(f"{live_backend.url}/")
        wait_for_results(page, 2)
        # A long unbroken name in the error list must wrap, not widen the page.
        page.set_input_files(
            "#file",
            files=[FilePayload(name=f"{'x' * 120}.mp4", mimeType="video/mp4", buffer=b"\0" * 64)],
        )
        page.wait_for_function("() => document.querySelectorAll('#errors li').length > 0")
        save_screenshot(page, "frontend-phone.png")

        sizes: list[dict[str, Any]] = page.evaluate(
            """() => [...document.querySelectorAll("button, label")]
              .filter((element) => element.getClientRects().length > 0)
              .map((element) => {
                const { width, height, right } = element.getBoundingClientRect();
                return { text: element.textContent.trim(), width, height, right };
              })"""
        )
        assert len(sizes) >= 10, sizes
        small = [
            size
            for size in sizes
            if min(size["width"], size["height"]) < TOUCH_TARGET_PX
            or size["right"] > PHONE["width"]
        ]
        assert small == [], "touch targets under 44 px, or off the screen"
        scroll_width = page.evaluate("() => document.documentElement.scrollWidth")
        assert scroll_width <= PHONE["width"], "the page scrolls sideways"
        # Inside the page's margins, not just the screen: the layout column fits the width.
        overhang = page.evaluate(
            """() => {
              const main = document.querySelector("main");
              const edge = main.getBoundingClientRect().right
                - parseFloat(getComputedStyle(main).paddingRight);
              return [...document.querySelectorAll("#view, fieldset")]
                .map((element) => element.getBoundingClientRect().right - edge)
                .filter((over) => over > 0.5);
            }"""
        )
        assert overhang == [], "the canvas or a panel runs into the right margin"
        assert uncaught == []
    finally:
        context.close()
