"""`cvstack bench overlay`: the page in real Chromium, its drawn boxes against the clip's truth.

The clip (`overlay_clip`) plays as Chromium's fake camera; the backend, capped at each rate with
`CVSTACK_MAX_RESULTS_PER_S`, runs the exact detector (`overlay_detector`) on the real local
Triton. The page gets its settings from a `config.json` served by the runner: frames sent at the
camera's 640x480 (so the detector sees every pixel), detection only, and the display mode. Its
measurement hook (`window.cvstack.probe` and `rendered`) records, per rendered frame, the frame
code read from the canvas, the boxes drawn and the last result's boxes unmoved.

A page without a `displayMode` setting refuses the key: it then has only the live behaviour,
so "live" runs without the key and "sync" is reported as not measured. `page_dir` measures
another version of the page (a folder like `frontend/`, e.g. another branch's before a merge):
a static server on loopback serves it, and its config.json points it at the backend.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.bench.headless_chromium import CHROMIUM, chromium_args
from backend.bench.overlay_clip import HEIGHT, WIDTH, probe_script, write_y4m
from backend.bench.overlay_detector import write_overlay_models
from backend.bench.overlay_report import OverlayRun, measure
from backend.bench.stack import backend_process, triton_on_cpu

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

MODES = ("sync", "live")
WAIT_MS = 60_000  # generous: the machine may be loaded
JPEG_QUALITY = 0.9
CONFIG_ERROR = "configuration error"


@dataclass(frozen=True)
class OverlayOptions:
    """What to measure: modes, capped rates, seconds collected after `warmup_s`."""

    modes: tuple[str, ...] = MODES
    rates: tuple[float, ...] = (2.0, 5.0, 15.0)
    seconds: float = 20.0
    warmup_s: float = 3.0
    page_dir: Path | None = None  # None: the page the backend serves

    def __post_init__(self) -> None:
        unknown = [mode for mode in self.modes if mode not in MODES]
        if unknown or not self.modes:
            raise ValueError(f"modes must be among {', '.join(MODES)}, got {self.modes}")
        if not self.rates or any(rate <= 0 for rate in self.rates):
            raise ValueError(f"rates must be positive results per second, got {self.rates}")
        if self.seconds <= 0 or self.warmup_s < 0:
            raise ValueError("seconds must be positive and the warm-up not negative")
        if self.page_dir is not None and not (self.page_dir / "index.html").is_file():
            raise ValueError(
                f"--page-dir {self.page_dir} holds no index.html; name a folder like frontend/"
            )


@dataclass
class OverlayResult:
    """Every measured run, and the (mode, rate) pairs the page could not run, with why."""

    runs: list[OverlayRun] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def run_overlay_bench(options: OverlayOptions, work_dir: Path | None = None) -> OverlayResult:
    """Run every (rate, mode) of `options` on a fresh local stack; nothing outlives the call."""
    with contextlib.ExitStack() as stack:
        work = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory("-overlay")))
        clip = write_y4m(work / "overlay.y4m")
        models_dir = work / "models"
        write_overlay_models(models_dir)
        browser = stack.enter_context(chromium(clip))
        page_url = stack.enter_context(static_site(options.page_dir)) if options.page_dir else None
        triton = stack.enter_context(triton_on_cpu(models_dir))
        result = OverlayResult()
        for rate in options.rates:
            with (
                (work / f"backend-{rate:g}.log").open("wb") as log,
                backend_process(
                    models_dir,
                    triton.address,
                    settings={"CVSTACK_MAX_RESULTS_PER_S": f"{rate:g}"},
                    log=log,
                ) as backend,
            ):
                for mode in options.modes:
                    site = Site(page_url or backend.url, backend.url)
                    run = measure_page(browser, site, mode, rate, options)
                    if isinstance(run, str):
                        result.skipped.append(f"{mode} at {rate:g} results/s: {run}")
                    else:
                        result.runs.append(run)
        return result


@contextlib.contextmanager
def chromium(clip: Path) -> Iterator[Browser]:
    """Debian's Chromium, headless, with `clip` as its camera (flags as tests/frontend)."""
    try:
        from playwright.sync_api import sync_playwright  # noqa: PLC0415 - a dev-only dependency
    except ImportError as exc:
        raise RuntimeError(
            "the overlay benchmark drives Chromium with Playwright: pip install playwright "
            "(the dev extra), then apt-get install chromium"
        ) from exc
    if not CHROMIUM.exists():
        raise RuntimeError(f"the overlay benchmark needs Debian's Chromium at {CHROMIUM}: "
                           "apt-get install chromium")  # fmt: skip
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=chromium_args(clip)
        )
        try:
            yield browser
        finally:
            browser.close()


@dataclass(frozen=True)
class Site:
    """Where the page is loaded from, and the backend it talks to."""

    page_url: str
    backend_url: str

    @property
    def ws_url(self) -> str:
        return self.backend_url.replace("http://", "ws://") + "/ws/inference"


@contextlib.contextmanager
def static_site(page_dir: Path) -> Iterator[str]:
    """Serve the files of `page_dir` on a free loopback port; yields the site's URL."""
    handler = functools.partial(_QuietFiles, directory=str(page_dir))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


class _QuietFiles(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log on the benchmark's output."""


def page_config(mode: str | None, ws_url: str) -> dict[str, Any]:
    """The page's `config.json`: the backend, camera-sized frames, detection only, `mode`
    unless None."""
    config: dict[str, Any] = {
        "wsUrl": ws_url,
        "frameWidth": WIDTH,
        "frameHeight": HEIGHT,
        "jpegQuality": JPEG_QUALITY,
        "stages": {"detection": True, "pose": False, "ocr": False, "motion": False, "llm": False},
    }
    if mode is not None:
        config["displayMode"] = mode
    return config


def measure_page(
    browser: Browser, site: Site, mode: str, rate: float, options: OverlayOptions
) -> OverlayRun | str:
    """One page in `mode` on `site`; a string says why it could not run."""
    from playwright.sync_api import TimeoutError as WaitTimeout  # noqa: PLC0415 - dev-only

    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.set_default_timeout(WAIT_MS)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        refused = open_page(page, site.page_url, page_config(mode, site.ws_url))
        if refused is not None:
            if "displayMode" in refused and mode == "sync":
                return f"this page has no displayMode setting, so no synchronised mode ({refused})"
            if "displayMode" not in refused:
                return f"the page refused its configuration ({refused})"
            errors.clear()  # the refusal's own uncaught error; the page has only live
            refused = open_page(page, site.page_url, page_config(None, site.ws_url))
            if refused is not None:
                return f"the page refused its configuration ({refused})"
        page.evaluate(f"() => {{ window.cvstack.probe = {probe_script()}; }}")
        try:
            page.wait_for_function("() => window.cvstack.stats.results >= 3")
        except WaitTimeout:
            status = page.text_content("#status")
            return f"no results within {WAIT_MS // 1000} s (the page says {status!r}; {errors})"
        page.wait_for_timeout(options.warmup_s * 1000)
        before = page.evaluate("() => [performance.now(), window.cvstack.stats.results]")
        page.evaluate("() => { window.cvstack.rendered = []; }")
        page.wait_for_timeout(options.seconds * 1000)  # the measurement window, not a sync
        rendered, after = page.evaluate(
            "() => { const r = window.cvstack.rendered; window.cvstack.rendered = null;"
            " return [r, [performance.now(), window.cvstack.stats.results]]; }"
        )
        if errors:
            return f"uncaught errors in the page: {errors}"
        results_per_s = (after[1] - before[1]) / ((after[0] - before[0]) / 1000)
        return measure(mode, rate, results_per_s, rendered, os.getloadavg()[0])
    finally:
        context.close()


def open_page(page: Page, url: str, config: dict[str, Any]) -> str | None:
    """Load the page with `config` as its config.json; the page's refusal, or None when it runs."""
    body = json.dumps(config)
    page.unroute("**/config.json")
    page.route(
        "**/config.json",
        lambda route: route.fulfill(status=200, content_type="application/json", body=body),
    )
    page.goto(f"{url}/")
    page.wait_for_function(
        f"() => window.cvstack !== undefined || "
        f"document.getElementById('status').textContent.startsWith('{CONFIG_ERROR}')"
    )
    status: str = page.text_content("#status") or ""
    return status if status.startswith(CONFIG_ERROR) else None


def parse_rates(text: str) -> tuple[float, ...]:
    """`--rates 2,5,15`."""
    try:
        rates = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        rates = ()
    if not rates or any(rate <= 0 for rate in rates):
        raise ValueError(f"--rates takes positive results per second like 2,5,15, not {text!r}")
    return rates


def parse_modes(text: str) -> tuple[str, ...]:
    """`--modes sync,live`."""
    modes = tuple(part.strip() for part in text.split(",") if part.strip())
    if not modes or any(mode not in MODES for mode in modes):
        raise ValueError(f"--modes takes {' and/or '.join(MODES)} like sync,live, not {text!r}")
    return modes


def as_json(result: OverlayResult, machine: str, command: Sequence[str]) -> str:
    """The runs as JSON (`--json`): the summary numbers of every run, and what was skipped."""
    runs = [
        {
            "mode": run.mode,
            "rate": run.rate,
            "results_per_s": round(run.results_per_s, 2),
            "rendered": run.rendered,
            "unreadable": run.unreadable,
            "measured": run.measured,
            "missed_share": round(run.missed_share, 4),
            "load_1min": round(run.load, 2),
            "error_px": _summary(run.drawn.percentile),
            "unmoved_error_px": _summary(run.held.percentile),
        }
        for run in result.runs
    ]
    return json.dumps(
        {"machine": machine, "command": list(command), "runs": runs, "skipped": result.skipped},
        indent=2,
    )


def _summary(percentile: Any) -> dict[str, float | None]:
    return {name: percentile(q) for name, q in (("median", 50), ("p90", 90), ("max", 100))}
