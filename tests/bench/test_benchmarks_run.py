"""The benchmark commands run end to end on small settings and report sane numbers."""

from __future__ import annotations

from pathlib import Path

from backend.bench import motion_bench, nms_bench, triton_bench, ws_bench
from backend.bench.bench_models import BenchModels


def test_triton_bench_measures_both_sides_and_batches(yolo_models_dir: Path) -> None:
    result = triton_bench.run_triton_bench(yolo_models_dir, repeats=8, starts=1, concurrency=4)
    assert result.models == ["yolo", "yolo_pose"]
    assert len(result.ready_s) == 1 and result.ready_s[0] > 0
    assert {(row.model, row.batch) for row in result.latency} == {
        ("yolo", 1), ("yolo", 8), ("yolo_pose", 1), ("yolo_pose", 8),
    }  # fmt: skip
    assert all(row.triton.p50_ms > 0 and row.onnxruntime.p50_ms > 0 for row in result.latency)
    assert all(row.average_batch >= 1 for row in result.throughput)
    assert "| yolo | 1 |" in triton_bench.render_markdown(result)


def test_stream_bench_drives_real_sessions(yolo_models_dir: Path) -> None:
    models = BenchModels.of(yolo_models_dir)
    result = ws_bench.run_ws_bench(
        models, frames=5, overload_s=2, overload_fps=30, sessions=2, concurrent_s=2
    )
    assert result.single.samples == 5 and result.direct_triton.samples == 5
    assert result.overload_results_per_s > 0
    assert 0 <= result.overload_drop_rate < 1
    assert result.one_session_per_s > 0 and result.concurrent_per_s > 0
    assert result.concurrent_batch >= 1
    table = ws_bench.render_markdown(result)
    assert "1 session sending 30 fps" in table
    assert "yolo: random" in table and "WARNING: random weights" in table


def test_motion_bench_finds_the_known_shift() -> None:
    _, rows = motion_bench.run_motion_bench(repeats=3)
    assert {(row.method, row.width) for row in rows} == {
        ("farneback", 320), ("dis", 320), ("farneback", 640), ("dis", 640),
    }  # fmt: skip
    assert all(row.error_px < 0.5 for row in rows)


def test_nms_bench_times_every_candidate_count() -> None:
    machine, rows = nms_bench.run_nms_bench(repeats=3)
    assert [row.candidates for row in rows] == [1, 10, 50, 300]
    assert all(0 < row.kept <= min(row.candidates, 100) for row in rows)
    assert all(row.latency.p50_ms > 0 for row in rows)
    assert "| 300 |" in nms_bench.render_markdown(machine, rows)
