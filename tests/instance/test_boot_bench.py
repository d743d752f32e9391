"""`cvstack bench boot` end to end, one short run: S3 (moto server) -> the boot steps' `cvstack
instance` processes -> Triton and backend ready, the previous arrangement beside the current."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from backend.bench.boot_bench import EAGER_CLI, LAZY_CLI, render_markdown, run_boot_bench
from backend.paths import REPO_ROOT

SERVICE_MODULES = ("backend.app", "fastapi", "onnxruntime", "rapidocr")


def test_one_boot_is_timed_before_and_after_and_rendered(yolo_models_dir: Path) -> None:
    [run] = run_boot_bench(yolo_models_dir, runs=1)
    before, after = run.before, run.after
    assert run.cold_sync_s > 0
    # Before: two processes before Triton, then Triton alone, then the backend.
    assert before.sync_s > 0 and before.render_s > 0 and before.triton_s > 0
    assert before.backend_s > 0 and before.together_s == 0
    # After: one process, then Triton and the backend at once.
    assert after.sync_s > 0 and after.render_s == after.triton_s == after.backend_s == 0
    assert after.together_s > 0
    assert after.cli_start_s > 0 and before.cli_start_s > 0
    table = render_markdown([run])
    assert "chain: sync to /ready 200" in table and "after / before" in table


def imported_after(program: str, args: list[str]) -> set[str]:
    """The service's modules loaded by a `cvstack` command run as `program` does."""
    probe = (
        f"import sys; sys.argv[1:] = {args!r}\n"
        "try:\n"
        f"    exec({program!r})\n"
        "except SystemExit:\n"
        f"    print('LOADED', *(m for m in {SERVICE_MODULES!r} if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    )
    return set(result.stdout.rpartition("LOADED")[2].split())


def test_a_boot_step_does_not_import_the_service_and_the_previous_cli_did() -> None:
    """Each boot step is a `docker run` of `cvstack instance ...`: its process start is on the
    boot's critical path, and the service's imports were most of it."""
    assert imported_after(LAZY_CLI, ["instance", "--help"]) == set()
    assert imported_after(EAGER_CLI, ["instance", "--help"]) == set(SERVICE_MODULES)
    assert "backend.app" in imported_after(LAZY_CLI, ["--help"])  # every group for the overview
