"""The page's counters and words, run in Node on the page's own modules (no browser needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from backend.paths import REPO_ROOT

JS_DIR = REPO_ROOT / "frontend" / "js"


def run_module(body: str) -> Any:
    """Run `body` as an ES module in Node beside the page's modules; it prints one JSON value."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("the page logic tests need Node.js: apt-get install nodejs")
    script = (
        f'import {{ Stats }} from "{(JS_DIR / "stats.js").as_uri()}";\n'
        f'import {{ closeCodeText }} from "{(JS_DIR / "connection.js").as_uri()}";\n'
        f"{body}\n"
    )
    done = subprocess.run(
        [node, "--no-warnings", "--input-type=module", "-"],
        input=script,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout)


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
