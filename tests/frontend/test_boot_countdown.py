"""In Chromium, against the start/status stand-in and the real backend: the boot countdown is
shown and goes down, says so past the estimate, and is gone once the session runs; pre-start
asks for the GPU when the page opens, without a click, only when configured."""

from __future__ import annotations

import re
from typing import ClassVar

import pytest
from playwright.sync_api import BrowserContext, Page

from tests.backend.service.conftest import BackendServer
from tests.frontend.conftest import wait_for_results
from tests.frontend.start_api import API_KEY, StartStatusApi
from tests.frontend.test_cold_start import (  # fixtures: the static page and a locked backend
    PageServer,
    locked_backend,
    page_server,
)

__all__ = ["locked_backend", "page_server"]
COST = "An unused pre-start costs at most $0.21 (g4dn.xlarge, 24 min)."


class SlowBootApi(StartStatusApi):
    """A boot of several polls, with a 30 s estimate from recent boots."""

    PENDING_POLLS: ClassVar[int] = 8
    BOOT_ESTIMATE_S: ClassVar[int] = 30


class LongerThanUsualApi(SlowBootApi):
    """Recent boots took 1 s: this one takes longer."""

    BOOT_ESTIMATE_S: ClassVar[int] = 1


def open_production_page(page: Page, page_server: PageServer, api: StartStatusApi) -> None:
    page_server.config = {
        "startApiUrl": f"{api.url}/",
        "apiKey": API_KEY,
        "statusPollMs": 500,
        **page_server.config,
    }
    page.goto(f"{page_server.url}/")


def pre_start_outcome(page: Page) -> str:
    """What pre-start did, once the page has set itself up (prestart.js)."""
    page.wait_for_function("() => window.cvstack?.preStart !== undefined")
    outcome: str = page.evaluate("() => window.cvstack.preStart")
    return outcome


def countdown_seconds(page: Page) -> int:
    text = page.text_content("#countdown") or ""
    match = re.fullmatch(r"GPU ready in about (\d+) s", text)
    assert match, text
    return int(match.group(1))


def test_the_countdown_is_shown_goes_down_and_is_gone_once_running(
    page_server: PageServer, locked_backend: BackendServer, page: Page
) -> None:
    page_server.config = {}
    with SlowBootApi(locked_backend, page_server.url) as api:
        open_production_page(page, page_server, api)
        page.wait_for_selector("#countdown:not([hidden])")
        first = countdown_seconds(page)
        assert 25 <= first <= 30, "30 s estimated, counted from the start request"
        page.wait_for_function(
            "(first) => /about (\\d+) s/.exec(document.getElementById('countdown').textContent)"
            "?.[1] < first",
            arg=first,
        )
        assert countdown_seconds(page) < first
        page.wait_for_function("() => window.cvstack.state === 'running'")
        wait_for_results(page, 1)
    assert page.is_hidden("#countdown")


def test_past_the_estimate_it_says_it_takes_longer_than_usual(
    page_server: PageServer, locked_backend: BackendServer, page: Page
) -> None:
    page_server.config = {}
    with LongerThanUsualApi(locked_backend, page_server.url) as api:
        open_production_page(page, page_server, api)
        page.wait_for_function(
            "() => document.getElementById('countdown').textContent"
            ".startsWith('taking longer than usual')"
        )
        text = page.text_content("#countdown") or ""
        assert re.fullmatch(r"taking longer than usual \(\d+ s so far\); still starting", text)


def test_pre_start_asks_for_the_gpu_when_the_page_opens_without_a_click(
    page_server: PageServer, locked_backend: BackendServer, page: Page
) -> None:
    """The stand-in refuses the first /start (stopping): pre-start only reports it, and
    pressing Start later runs the cold start as usual."""
    page_server.config = {"autoStart": False, "preStart": True, "preStartCost": COST}
    with StartStatusApi(locked_backend, page_server.url) as api:
        sockets: list[str] = []
        page.on("websocket", lambda socket: sockets.append(socket.url))
        open_production_page(page, page_server, api)
        outcome = pre_start_outcome(page)
        assert outcome.startswith("refused: the server is stopping")
        assert api.calls == ["start"], "one /start, before any click"
        assert page.evaluate("() => window.cvstack.state") == "idle"
        assert sockets == []
        note = page.text_content("#prestart") or ""
        assert page.is_visible("#prestart")
        assert note == f"Pre-start is on: opening this page starts the GPU. {COST}"

        page.click("#start")
        page.wait_for_function("() => window.cvstack.state === 'running'")
        wait_for_results(page, 1)
    assert api.calls[:2] == ["start", "start"]


def test_without_pre_start_opening_the_page_asks_for_nothing(
    page_server: PageServer, locked_backend: BackendServer, page: Page
) -> None:
    page_server.config = {"autoStart": False}
    with StartStatusApi(locked_backend, page_server.url) as api:
        open_production_page(page, page_server, api)
        assert pre_start_outcome(page) == "off"
        page.wait_for_function("() => window.cvstack.state === 'idle'")
        assert api.calls == []
        assert page.is_hidden("#prestart")


@pytest.mark.parametrize(
    ("setting", "said"),
    [
        ({"preStart": "yes"}, 'preStart must be true or false, not "yes"'),
        ({"preStart": True, "startApiUrl": None}, "preStart needs startApiUrl"),
    ],
)
def test_a_bad_pre_start_setting_is_a_clear_configuration_error(
    page_server: PageServer, context: BrowserContext, setting: dict[str, object], said: str
) -> None:
    """The page stops at its settings (an uncaught error, which the `page` fixture would
    refuse) and says which one is wrong."""
    page_server.config = setting
    bad = context.new_page()
    bad.goto(f"{page_server.url}/")
    bad.wait_for_function(
        "() => document.getElementById('status').textContent.startsWith('configuration error')"
    )
    assert said in (bad.text_content("#status") or "")
    bad.close()
