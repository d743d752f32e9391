"""Run a script as an ES module in Node beside the page's own modules (no browser needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
from typing import Any

import pytest

from backend.paths import REPO_ROOT

JS_DIR = REPO_ROOT / "frontend" / "js"


def run_page_module(imports: dict[str, str], body: str) -> Any:
    """Run `body` after importing `names` from each page module (`{"stats.js": "Stats"}`);
    it prints one JSON value, which is returned."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("the page logic tests need Node.js: apt-get install nodejs")
    script = "".join(
        f'import {{ {names} }} from "{(JS_DIR / module).as_uri()}";\n'
        for module, names in imports.items()
    )
    done = subprocess.run(
        [node, "--no-warnings", "--input-type=module", "-"],
        input=script + body,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(done.stdout)
