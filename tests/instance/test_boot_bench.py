"""`cvstack bench boot` end to end, one short run: S3 (moto server) -> Triton -> backend ready."""

from __future__ import annotations

from pathlib import Path

from backend.bench.boot_bench import render_markdown, run_boot_bench


def test_one_boot_is_timed_and_rendered(yolo_models_dir: Path) -> None:
    [run] = run_boot_bench(yolo_models_dir, runs=1)
    assert 0 < run.warm_sync_s < run.cold_sync_s
    assert run.triton_ready_s > 0 and run.backend_ready_s > 0
    table = render_markdown([run])
    assert "boot to ready, first boot" in table and "g4dn.xlarge cold start" in table
