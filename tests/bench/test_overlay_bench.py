"""The overlay benchmark in real Chromium: the frame code read back from a rendered canvas, and
a short run of `cvstack bench overlay` end to end (Triton, the backend capped, the page).

Here, not in tests/frontend: the runner starts Playwright itself, which cannot run beside the
browser that package keeps open.
"""

from __future__ import annotations

import base64
from pathlib import Path

import cv2
import pytest
from playwright.sync_api import Page

from backend.bench import overlay_clip as clip
from backend.bench.overlay_runner import OverlayOptions, chromium, run_overlay_bench
from backend.paths import FRONTEND_DIR


@pytest.mark.browser
def test_the_frame_code_reads_back_from_chromiums_canvas(tmp_path: Path) -> None:
    with chromium(tmp_path / "no-camera-used.y4m") as browser:
        codes = read_codes(browser.new_page(), [0, 1, 2, 85, 127, 128, clip.FRAMES - 1])
    assert codes == [0, 1, 2, 85, 127, 128, clip.FRAMES - 1, None], (
        "each code reads back; a picture without one reads null"
    )


def read_codes(page: Page, frames: list[int]) -> list[int | None]:
    """The probe's reading of each frame drawn on a canvas, then of a plain grey canvas."""
    page.set_content(f'<canvas id="c" width="{clip.WIDTH}" height="{clip.HEIGHT}"></canvas>')
    pictures = []
    for frame in frames:
        ok, encoded = cv2.imencode(".jpg", clip.render_frame(frame), [cv2.IMWRITE_JPEG_QUALITY, 70])
        assert ok
        pictures.append("data:image/jpeg;base64," + base64.b64encode(encoded.tobytes()).decode())
    codes: list[int | None] = page.evaluate(
        f"""async (pictures) => {{
          const probe = {clip.probe_script()};
          const ctx = document.getElementById("c").getContext("2d");
          const codes = [];
          for (const src of pictures) {{
            const image = new Image();
            image.src = src;
            await image.decode();
            ctx.drawImage(image, 0, 0);
            codes.push(probe(ctx));
          }}
          ctx.fillStyle = "rgb(128, 128, 128)";
          ctx.fillRect(0, 0, {clip.WIDTH}, {clip.HEIGHT});
          codes.push(probe(ctx));
          return codes;
        }}""",
        pictures,
    )
    return codes


@pytest.mark.browser
def test_a_short_run_measures_the_pages_boxes_against_the_truth(tmp_path: Path) -> None:
    options = OverlayOptions(  # the page from a folder, as for another branch's page
        modes=("sync", "live"), rates=(5.0,), seconds=3.0, warmup_s=1.0, page_dir=FRONTEND_DIR
    )
    result = run_overlay_bench(options, tmp_path)

    live = [run for run in result.runs if run.mode == "live"]
    assert len(live) == 1, f"the live mode must run: {result.skipped}"
    run = live[0]
    assert run.results_per_s > 0
    assert run.measured > 30, f"only {run.measured} rendered frames were measured"
    assert run.unreadable <= run.rendered // 20, f"{run.unreadable} of {run.rendered} unreadable"
    assert len(run.drawn.errors) > 30 and len(run.held.errors) > 30
    assert run.missed_share < 0.5, "the exact detector finds every object"
    if not any(r.mode == "sync" for r in result.runs):  # a page without displayMode
        assert result.skipped and "no displayMode setting" in result.skipped[0]
