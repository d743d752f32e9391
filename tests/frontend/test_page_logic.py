"""The page's counters and words, run in Node on the page's own modules (no browser needed)."""

from __future__ import annotations

import itertools
import json
from typing import Any

import pytest

from tests.frontend.page_modules import run_page_module

PAGE_IMPORTS = {
    "stats.js": "Stats",
    "connection.js": "closeCodeText",
    "stage_errors.js": "stageErrorStatus",
    "server_probe.js": "ServerProbe, healthUrl",
    "source.js": "CurrentPicture",
    "overlay.js": "flowArrows",
}


def run_module(body: str) -> Any:
    """Run `body` as an ES module in Node beside the page's modules; it prints one JSON value."""
    return run_page_module(PAGE_IMPORTS, body)


def test_results_with_stage_errors_are_not_counted_in_inference_fps_or_latency() -> None:
    snap = run_module(
        """
        const stats = new Stats();
        for (let i = 0; i < 3; i++) stats.resultArrived(100 * i, 200, 0);
        const clean = stats.snapshot(300);
        for (let i = 3; i < 60; i++) stats.resultArrived(100 * i, 5, 0, true);
        console.log(JSON.stringify({ clean, failing: stats.snapshot(6000) }));
        """
    )
    assert snap["clean"]["inferenceFps"] > 0 and snap["clean"]["latencyMs"] == 200
    failing = snap["failing"]
    assert failing["inferenceFps"] == 0, "error results must not look like inference"
    assert failing["latencyMs"] == 200, "fast error answers must not lower the latency"
    assert (failing["results"], failing["errorResults"]) == (60, 57)


def test_close_codes_are_shown_in_words() -> None:
    codes = [1000, 1001, 1006, 1008, 1009, 1011, 1013, 4000, 3001]
    words = run_module(f"console.log(JSON.stringify({codes}.map(closeCodeText)));")
    assert dict(zip(codes[:7], words[:7], strict=True)) == {
        1000: "closed normally",
        1001: "the server is going away",
        1006: "connection lost",
        1008: "refused by policy",
        1009: "message too big",
        1011: "server error",
        1013: "the server is busy, try again later",
    }
    assert words[7:] == ["closed by the application (code 4000)", "closed (code 3001)"]


def test_triton_unreachable_is_red_other_stage_errors_amber() -> None:
    statuses = run_module(
        """
        console.log(JSON.stringify([
          stageErrorStatus({}),
          stageErrorStatus(null),
          stageErrorStatus({ motion: "motion_failed: flow failed" }),
          stageErrorStatus({ yolo: "triton_timeout: no answer within 2 s" }),
          stageErrorStatus({ yolo: "triton_unavailable: connection refused",
                             pose: "triton_unavailable: connection refused" }),
          stageErrorStatus({ ocr: "ocr_failed: says triton_unavailable: in its text" }),
        ]));
        """
    )
    clean, absent, motion, timeout, down, ocr = statuses
    assert clean is None and absent is None
    assert [s["state"] for s in (motion, timeout, ocr)] == ["degraded"] * 3
    assert timeout["detail"] == "stage errors: yolo: triton_timeout: no answer within 2 s"
    assert down["state"] == "triton-down"
    assert down["detail"].startswith("Triton is unreachable: no detection or pose results")
    assert "restart it" in down["detail"]
    assert down["text"].startswith("yolo: triton_unavailable: connection refused; pose: ")


def probe_calls(answers: list[str]) -> dict[str, Any]:
    """A ServerProbe polling every 1 ms through a fetch that answers `answers` in turn
    ("ok", "503" or "refused", the last one repeated): which poll brought `onBack`."""
    script = f"""
        const answers = {json.dumps(answers)};
        const asked = [];
        const fetchImpl = async (url) => {{
          const answer = answers[Math.min(asked.length, answers.length - 1)];
          asked.push(url);
          if (answer === "refused") throw new TypeError("Failed to fetch");
          return {{ ok: answer === "ok" }};
        }};
        const probe = new ServerProbe(1, fetchImpl);
        const back = await new Promise((resolve) => {{
          const url = "wss://example.test:8443/ws/inference?token=secret";
          probe.watch(url, () => resolve(asked.length));
          setTimeout(() => resolve(null), 300);
        }});
        probe.stop();
        console.log(JSON.stringify({{ back, polls: asked.length, url: asked[0] }}));
    """
    result: dict[str, Any] = run_module(script)
    return result


def test_the_probe_reports_a_server_that_answers_again_and_nothing_else() -> None:
    """Reconnect at once only after the server was seen unreachable: a server that always
    answers /health (one that refuses sessions while draining) must not end every backoff."""
    back = probe_calls(["refused", "503", "refused", "ok"])
    assert back["back"] == 4, "the first answer after the outage ends the wait"
    assert back["url"] == "https://example.test:8443/health", "the origin, without the token"
    always_up = probe_calls(["ok"])
    assert always_up["back"] is None and always_up["polls"] > 3
    never_back = probe_calls(["refused"])
    assert never_back["back"] is None
    local = run_module('console.log(JSON.stringify(healthUrl("ws://127.0.0.1:8080/ws/inference")))')
    assert local == "http://127.0.0.1:8080/health"


def test_a_new_picture_source_replaces_the_current_one_only_once_it_works() -> None:
    events = run_module(
        """
        const log = [];
        const fake = (name) => ({ name, release: () => log.push(`release ${name}`), onLost: null,
                                  lose(reason) { this.onLost?.(reason); } });
        const show = (source, lost) => `show ${source?.name ?? "none"}${lost ? `: ${lost}` : ""}`;
        const picture = new CurrentPicture((source, lost) => log.push(show(source, lost)));
        await picture.use(async () => fake("camera"));
        const camera = picture.source;
        const broken = async () => { throw new Error("broken.mp4 is not a video"); };
        await picture.use(broken).catch((error) => log.push(error.message));
        log.push(`current ${picture.source.name}`);
        let finishSlow;
        const opening = new Promise((resolve) => { finishSlow = () => resolve(fake("slow")); });
        const slow = picture.use(() => opening);
        await picture.use(async () => fake("image"));
        finishSlow();
        await slow;
        log.push(`current ${picture.source.name}`);
        camera.lose("stale camera");
        picture.source.lose("decode failed");
        log.push(`current ${picture.source}`);
        console.log(JSON.stringify(log));
        """
    )
    assert events == [
        "show camera",
        "broken.mp4 is not a video",
        "current camera",
        "release camera",
        "show image",
        "release slow",
        "current image",
        "release image",
        "show none: decode failed",
        "current null",
    ]


@pytest.mark.parametrize(("step", "scale"), [(16, 2.0), (8, 1.0), (4, 1.0)])
def test_motion_arrows_stay_apart_however_long_the_vectors(step: int, scale: float) -> None:
    """Long vectors (a low result rate) on a dense grid once merged into solid stripes."""
    arrows = run_module(
        f"""
        const rows = 240 / {step}, cols = 320 / {step};
        const grid = (value) => Array.from({{ length: rows }}, () => new Array(cols).fill(value));
        const fx = grid(60);
        fx[0][0] = 0.2;  // under half a pixel: no arrow
        const flow = {{ fx, fy: grid(0), step: {step} }};
        console.log(JSON.stringify(flowArrows(flow, {scale}, {scale})));
        """
    )
    origins = sorted({(x0, y0) for x0, y0, _, _ in arrows})
    xs = sorted({x for x, _ in origins})
    ys = sorted({y for _, y in origins})
    spacing = min(b - a for a, b in itertools.pairwise(xs))
    assert spacing >= 24, f"arrows {spacing} px apart"
    assert min(b - a for a, b in itertools.pairwise(ys)) >= 24
    for x0, y0, x1, y1 in arrows:
        assert y1 == y0 and x1 > x0, "the direction is kept"
        assert x1 - x0 <= 0.7 * spacing + 1e-9, "an arrow ends well before the next one starts"
    assert len(arrows) == len(xs) * len(ys) - 1, "one arrow per drawn cell but the still one"
